//! `cargo bench -p scimgate-protocol`: the filter and PATCH costs an IdP sync pays per request.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use scimgate_protocol::{apply_patch, Filter, NormalizeOptions, PatchRequest, SchemaRegistry};
use serde_json::{json, Value};

fn user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "externalId": "701984",
        "userName": "bjensen@example.com",
        "name": {"familyName": "Jensen", "givenName": "Barbara"},
        "active": true,
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}, {"value": "babs@jensen.org", "type": "home"}],
        "meta": {"lastModified": "2011-05-13T04:42:34Z"},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "701984"}
    })
}

fn filters(c: &mut Criterion) {
    let registry = SchemaRegistry::standard();
    let users = registry.view("User").expect("User");
    let user = user();
    let mut group = c.benchmark_group("filter");
    for (name, text) in [
        (
            "entra_username_lookup",
            r#"userName eq "bjensen@example.com""#,
        ),
        (
            "okta_username_lookup",
            r#"userName eq "test.user@okta.local""#,
        ),
        (
            "complex_value_filter",
            r#"emails[type eq "work" and value co "@example.com"] and (active eq true or meta.lastModified gt "2011-01-01T00:00:00Z")"#,
        ),
    ] {
        group.bench_function(format!("parse_and_eval/{name}"), |b| {
            b.iter(|| {
                let f = Filter::parse(black_box(text)).expect("parses");
                black_box(f.matches(&user, &users))
            })
        });
    }
    group.finish();
}

fn big_group(size: usize) -> Value {
    let members: Vec<Value> = (0..size)
        .map(|i| json!({"value": format!("{i:08x}-0000-4000-8000-000000000000"), "display": format!("User {i}"), "type": "User"}))
        .collect();
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Everyone", "members": members})
}

fn patches(c: &mut Criterion) {
    let registry = SchemaRegistry::standard();
    let groups = registry.view("Group").expect("Group");
    let group = big_group(50_000);
    let added: Vec<Value> = (0..100)
        .map(|i| json!({"value": format!("new-{i:04}"), "display": format!("New {i}")}))
        .collect();
    let add = PatchRequest::parse(&json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Add", "path": "members", "value": added}]
    }))
    .expect("parses");
    let remove_one = PatchRequest::parse(&json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "remove", "path": "members[value eq \"00000400-0000-4000-8000-000000000000\"]"}]
    }))
    .expect("parses");

    let mut g = c.benchmark_group("patch");
    g.sample_size(20);
    g.bench_function("add_100_members_to_50k_group", |b| {
        b.iter_batched(
            || group.clone(),
            |g| {
                let out =
                    apply_patch(g, &add, &groups, NormalizeOptions::default()).expect("applies");
                assert_eq!(out.changes.len(), 1);
                out
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("remove_1_member_by_filter_from_50k_group", |b| {
        b.iter_batched(
            || group.clone(),
            |g| apply_patch(g, &remove_one, &groups, NormalizeOptions::default()).expect("applies"),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, filters, patches);
criterion_main!(benches);
