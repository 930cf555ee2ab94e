//! `cargo bench -p scimgate-store`: membership changes on a 50,000-member group cost in
//! proportion to the members changed, not to the group's size.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use scimgate_store::sqlite::SqliteStore;
use scimgate_store::*;
use serde_json::json;

fn member(id: String) -> Member {
    Member {
        id,
        kind: Kind::User,
        display: None,
    }
}

fn group_write(members: Vec<MemberOp>) -> ResourceWrite {
    ResourceWrite {
        body: json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Everyone"}),
        indexed: IndexedFields {
            name: Some("Everyone".into()),
            ..IndexedFields::default()
        },
        members,
        mapped: None,
    }
}

fn members(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.db");
    let store = runtime
        .block_on(SqliteStore::open(
            path.to_str().expect("utf-8"),
            std::sync::Arc::new(|_: scimgate_store::Effect<'_>| Vec::new()),
        ))
        .expect("open");
    let connection = "bench-connection".to_owned();
    runtime
        .block_on(store.create_connection(
            NewConnection {
                id: connection.clone(),
                customer_id: "bench".into(),
                display_name: None,
                identity_provider: "generic".into(),
                strict_members: false,
                custom_mapping: None,
            },
            NewScimKey {
                hash: b"bench".to_vec(),
                expires_at: None,
            },
        ))
        .expect("connection");
    for (id, size) in [("small", 100usize), ("large", 50_000)] {
        let ops = (0..size)
            .map(|i| MemberOp::Add(member(format!("{id}-{i:06}"))))
            .collect();
        runtime
            .block_on(store.create_resource(&connection, Kind::Group, id, group_write(ops)))
            .expect("group");
    }

    let mut g = c.benchmark_group("members");
    g.sample_size(20);
    for id in ["small", "large"] {
        let mut round = 0u64;
        g.bench_function(format!("add_and_remove_100/{id}_group"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    let ids: Vec<String> = (0..100).map(|i| format!("new-{round}-{i}")).collect();
                    let add = ids
                        .iter()
                        .cloned()
                        .map(|i| MemberOp::Add(member(i)))
                        .collect();
                    let remove = ids.into_iter().map(MemberOp::Remove).collect();
                    let start = Instant::now();
                    for ops in [add, remove] {
                        runtime
                            .block_on(store.update_resource(
                                &connection,
                                Kind::Group,
                                id,
                                None,
                                group_write(ops),
                            ))
                            .expect("update");
                    }
                    total += start.elapsed();
                }
                total
            })
        });
    }
    g.bench_function("read_without_members/large_group", |b| {
        b.iter(|| {
            runtime
                .block_on(store.resource(&connection, Kind::Group, "large", Load::default()))
                .expect("read")
        })
    });
    g.bench_function("read_with_members/large_group", |b| {
        b.iter(|| {
            runtime
                .block_on(store.resource(
                    &connection,
                    Kind::Group,
                    "large",
                    Load {
                        members: true,
                        groups: false,
                        deleted: false,
                    },
                ))
                .expect("read")
        })
    });
    g.finish();
}

criterion_group!(benches, members);
criterion_main!(benches);
