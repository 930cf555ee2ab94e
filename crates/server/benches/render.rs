//! `cargo bench -p scimgate --bench render`: what rendering a stored user costs a read, from
//! the stored resource to the response text (canonical form, projection, serialization).

use criterion::{criterion_group, criterion_main, Criterion};
use scimgate::scim::render::to_scim;
use scimgate_protocol::{Projection, SchemaRegistry};
use scimgate_store::{Kind, Member, StoredResource};
use serde_json::json;
use time::OffsetDateTime;

/// The server's allocator, so that the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A user as the benchmark tool's sync creates it, in ten groups.
fn stored_user() -> StoredResource {
    let enterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    StoredResource {
        id: "0193a4b2-7c1d-7e2f-9a3b-4c5d6e7f8091".into(),
        kind: Kind::User,
        version: 3,
        created: OffsetDateTime::UNIX_EPOCH,
        last_modified: OffsetDateTime::UNIX_EPOCH,
        body: json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", enterprise],
            "externalId": "b-ext-4711",
            "userName": "b.user4711@bench.example",
            "active": true,
            "displayName": "Bench User 4711",
            "name": {"givenName": "Bench", "familyName": "User4711", "formatted": "Bench User4711"},
            "emails": [{"value": "b.user4711@bench.example", "type": "work", "primary": true}],
            "phoneNumbers": [{"value": "+1 555 0004711", "type": "work"}],
            "title": "Engineer",
            enterprise: {
                "employeeNumber": "4711",
                "department": "Department 11",
                "manager": {"value": "b-ext-471"}
            }
        }),
        members: None,
        groups: Some(
            (0..10)
                .map(|g| Member {
                    id: format!("0193a4b2-0000-7000-8000-{g:012}"),
                    kind: Kind::Group,
                    display: Some(format!("Group {g}")),
                })
                .collect(),
        ),
        mapped: None,
        deleted_at: None,
    }
}

fn render(c: &mut Criterion) {
    let registry = SchemaRegistry::standard();
    let users = registry.view("User").expect("the User resource type");
    let base = "https://scim.example.com/scim/v2/0193a4b2-1111-7222-8333-444455556666";
    let user = stored_user();
    c.bench_function("render a user in ten groups, default projection", |b| {
        b.iter(|| {
            serde_json::to_string(&Projection::default().apply(&to_scim(&user, base), &users))
        })
    });
}

criterion_group!(benches, render);
criterion_main!(benches);
