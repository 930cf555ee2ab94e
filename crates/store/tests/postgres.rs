//! The store suite against the real PostgreSQL, each test in a database of its own, plus what
//! only several instances on one database can show.

mod suite;

use scimgate_store::postgres::{PgStore, EVENTS_LOCK};
use scimgate_store::testing::TempPostgres;
use sqlx::{Connection, PgConnection};
use std::sync::Arc;

use scimgate_store::{
    ConnectionUpdate, EventSource, Kind, Load, Member, MemberOp, Store, StoreError, StoredMapping,
};

async fn fresh(events: Arc<dyn EventSource>) -> (PgStore, TempPostgres) {
    let db = TempPostgres::create()
        .await
        .expect("create a test database");
    let store = PgStore::open(&db.url, events).await.expect("open");
    (store, db)
}

store_suite!(fresh);

/// An event that took its sequence early but commits late: nothing after it is published until
/// it commits, so a reader following the log cannot pass it, and then it comes first.
#[tokio::test]
async fn an_event_numbered_early_and_committed_late_is_never_passed() {
    let (store, db) = fresh(suite::describer()).await;
    let (new, key) = suite::new_connection("slow");
    let c = store.create_connection(new, key).await.expect("connection");
    let published = suite::events_after(&store, 0).await.len() as i64;
    let mut slow = PgConnection::connect(&db.url).await.expect("connect");
    let mut slow = slow.begin().await.expect("begin");
    // What every write's event insert does: the shared lock, then the sequence.
    sqlx::query(&format!(
        "INSERT INTO events (id, event_type, connection_id, occurred_at, data, changes) \
         SELECT 'evt_slow', 'user.updated', $1, 0, '{{}}', '[]' FROM (SELECT pg_advisory_xact_lock_shared({EVENTS_LOCK})) AS events_lock"
    ))
    .bind(&c.id)
    .execute(&mut *slow)
    .await
    .expect("the slow writer's event");
    store
        .create_resource(&c.id, Kind::User, "fast", suite::user("fast", "f@x.org"))
        .await
        .expect("a write that commits first");
    assert_eq!(
        store.sequence_events().await.expect("sequence"),
        0,
        "the sequencer waits for the slow writer, then gives up"
    );
    assert_eq!(store.last_sequence().await.expect("last"), published);
    assert!(store
        .events(&suite::all(published))
        .await
        .expect("read")
        .is_empty());
    slow.commit().await.expect("the slow writer commits");
    let after = suite::events_after(&store, published).await;
    let types: Vec<&str> = after.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["user.updated", "user.created"]);
    assert_eq!(after[0].id, "evt_slow");
    assert!(after[0].sequence < after[1].sequence);
}

/// A mapping change waits for the group writes under way on its connection (they hold its
/// membership lock shared), so none of them touches members by the mapping it replaces.
#[tokio::test]
async fn a_mapping_change_waits_for_group_writes_under_way() {
    let (store, db) = fresh(suite::describer()).await;
    let (new, key) = suite::new_connection("mapped");
    let c = store.create_connection(new, key).await.expect("connection");
    let mut writer = PgConnection::connect(&db.url).await.expect("connect");
    let mut writer = writer.begin().await.expect("begin");
    // What every group write takes first.
    sqlx::query("SELECT pg_advisory_xact_lock_shared(hashtextextended('memberships:' || $1, 0))")
        .bind(&c.id)
        .execute(&mut *writer)
        .await
        .expect("a group write under way");
    let change = store.update_connection(
        &c.id,
        ConnectionUpdate {
            custom_mapping: Some(Some(StoredMapping {
                value: serde_json::json!({"group_role_mappings": [{"group": "G", "role": "admin"}]}),
                reads_groups: true,
            })),
            ..Default::default()
        },
    );
    tokio::pin!(change);
    let waited = tokio::time::timeout(std::time::Duration::from_millis(300), &mut change).await;
    assert!(waited.is_err(), "the mapping changed under a group write");
    writer.commit().await.expect("the group write commits");
    let changed = change.await.expect("update").expect("exists");
    assert!(
        changed.custom_mapping.is_some(),
        "the mapping changed once it could"
    );
}

#[tokio::test]
async fn instances_starting_together_migrate_once() {
    let db = TempPostgres::create()
        .await
        .expect("create a test database");
    let (a, b, c) = tokio::join!(
        PgStore::open(&db.url, suite::describer()),
        PgStore::open(&db.url, suite::describer()),
        PgStore::open(&db.url, suite::describer())
    );
    let (a, b, _c) = (a.expect("a"), b.expect("b"), c.expect("c"));
    let (new, key) = suite::new_connection("shared");
    a.create_connection(new.clone(), key)
        .await
        .expect("create on a");
    assert!(b.connection(&new.id).await.expect("read on b").is_some());
}

#[tokio::test]
async fn concurrent_creates_of_one_user_name_give_one_winner() {
    let db = TempPostgres::create()
        .await
        .expect("create a test database");
    let a = PgStore::open(&db.url, suite::describer()).await.expect("a");
    let b = PgStore::open(&db.url, suite::describer()).await.expect("b");
    let (new, key) = suite::new_connection("race");
    a.create_connection(new.clone(), key)
        .await
        .expect("connection");
    for round in 0..20 {
        let name = format!("racer{round}");
        let (id_a, id_b) = (format!("a{round}"), format!("b{round}"));
        let (x, y) = tokio::join!(
            a.create_resource(&new.id, Kind::User, &id_a, suite::user(&name, "a@x")),
            b.create_resource(
                &new.id,
                Kind::User,
                &id_b,
                suite::user(&name.to_uppercase(), "b@x")
            ),
        );
        let outcomes = [x.is_ok(), y.is_ok()];
        assert_eq!(
            outcomes.iter().filter(|ok| **ok).count(),
            1,
            "round {round}: exactly one create wins"
        );
        for result in [x, y] {
            if let Err(e) = result {
                assert!(matches!(e, StoreError::UserNameTaken(_)), "{e:?}");
            }
        }
    }
}

#[tokio::test]
async fn version_checks_hold_across_instances() {
    let db = TempPostgres::create()
        .await
        .expect("create a test database");
    let a = PgStore::open(&db.url, suite::describer()).await.expect("a");
    let b = PgStore::open(&db.url, suite::describer()).await.expect("b");
    let (new, key) = suite::new_connection("versions");
    a.create_connection(new.clone(), key)
        .await
        .expect("connection");
    a.create_resource(&new.id, Kind::User, "u", suite::user("u", "u@x"))
        .await
        .expect("user");
    let (x, y) = tokio::join!(
        a.update_resource(
            &new.id,
            Kind::User,
            "u",
            Some(1),
            suite::user("from-a", "u@x")
        ),
        b.update_resource(
            &new.id,
            Kind::User,
            "u",
            Some(1),
            suite::user("from-b", "u@x")
        ),
    );
    assert_eq!(
        [x.is_ok(), y.is_ok()].iter().filter(|ok| **ok).count(),
        1,
        "one of two writes of version 1 wins"
    );
    let stored = b
        .resource(&new.id, Kind::User, "u", Load::default())
        .await
        .expect("read")
        .expect("user");
    assert_eq!(stored.version, 2);
}

/// Group writes that share members and nest each other, and deletes of some of those members,
/// all at once: PostgreSQL must pick no deadlock victim among them, and no membership may
/// outlive its member.
#[tokio::test]
async fn concurrent_group_writes_sharing_members_never_deadlock() {
    let db = TempPostgres::create()
        .await
        .expect("create a test database");
    let store = PgStore::open(&db.url, suite::describer())
        .await
        .expect("open");
    let (new, key) = suite::new_connection("contended");
    let c = store.create_connection(new, key).await.expect("connection");
    let users: Vec<String> = (0..60).map(|i| format!("u{i:02}")).collect();
    for id in &users {
        store
            .create_resource(&c.id, Kind::User, id, suite::user(id, "x@x.org"))
            .await
            .expect("user");
    }
    for g in 0..16 {
        store
            .create_resource(
                &c.id,
                Kind::Group,
                &format!("g{g}"),
                suite::group(&format!("g{g}"), vec![]),
            )
            .await
            .expect("group");
    }
    let writes = (0..16).map(|g| {
        // Each group takes the members in another order.
        let mut ids = users[..50].to_vec();
        ids.rotate_left(g * 3);
        let mut ops: Vec<MemberOp> = ids
            .iter()
            .map(|id| MemberOp::Add(suite::member(id)))
            .collect();
        // Pairs of groups add each other.
        ops.push(MemberOp::Add(Member {
            id: format!("g{}", g ^ 1),
            kind: Kind::Group,
            display: None,
        }));
        let (store, connection) = (&store, &c.id);
        async move {
            store
                .update_resource(
                    connection,
                    Kind::Group,
                    &format!("g{g}"),
                    None,
                    suite::group(&format!("g{g}"), ops),
                )
                .await
                .map(|_| ())
        }
    });
    // Half of them members being added.
    let deletes = users[40..].iter().map(|id| {
        let (store, connection) = (&store, &c.id);
        async move {
            store
                .delete_resource(connection, Kind::User, id, None)
                .await
        }
    });
    let (written, deleted) = tokio::join!(
        futures::future::join_all(writes),
        futures::future::join_all(deletes)
    );
    assert!(written.iter().all(Result::is_ok), "{written:?}");
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    for g in 0..16 {
        let group = store
            .resource(
                &c.id,
                Kind::Group,
                &format!("g{g}"),
                Load {
                    members: true,
                    ..Load::default()
                },
            )
            .await
            .expect("read")
            .expect("group");
        let members = group.members.expect("members");
        let mut ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
        ids.sort_unstable();
        let mut expected: Vec<String> = users[..40].to_vec();
        expected.push(format!("g{}", g ^ 1));
        expected.sort_unstable();
        assert_eq!(ids, expected, "group g{g}");
    }
}

/// A store with one connection, and a pool of its own to read PostgreSQL's statistics with.
async fn maintained(
    customer: &str,
) -> (
    PgStore,
    TempPostgres,
    scimgate_store::Connection,
    sqlx::PgPool,
) {
    let (store, db) = fresh(suite::describer()).await;
    let (new, key) = suite::new_connection(customer);
    let c = store.create_connection(new, key).await.expect("connection");
    let admin = sqlx::PgPool::connect(&db.url).await.expect("connect");
    (store, db, c, admin)
}

async fn create_users(store: &PgStore, connection_id: &str, n: usize) {
    for i in 0..n {
        let id = format!("u{i}");
        store
            .create_resource(connection_id, Kind::User, &id, suite::user(&id, "x@x.org"))
            .await
            .expect("user");
    }
}

/// Reads `read` every 100 ms until `done` holds of it, for 30 s at most, and returns the last
/// reading: backends report their counts within about 10 s, and the store's maintenance looks
/// every second.
async fn poll<T, F, Fut>(mut read: F, done: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut last = read().await;
    for _ in 0..300 {
        if done(&last) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        last = read().await;
    }
    last
}

/// How many times `table` has been vacuumed, as PostgreSQL's statistics say.
async fn vacuum_count(admin: &sqlx::PgPool, table: &str) -> i64 {
    sqlx::query_scalar("SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = $1")
        .bind(table)
        .fetch_one(admin)
        .await
        .expect("vacuum count")
}

/// A directory growing from nothing gets planner statistics without waiting for autovacuum
/// (which this machine's PostgreSQL has turned off), so cached plans are made again for its
/// real size.
#[tokio::test]
async fn statistics_follow_a_growing_directory() {
    let (store, _db, c, admin) = maintained("growing").await;
    let rows_seen = |pool: &sqlx::PgPool| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, f32>(
                "SELECT reltuples FROM pg_class WHERE relname = 'resources'",
            )
            .fetch_one(&pool)
            .await
            .expect("reltuples")
        }
    };
    assert!(rows_seen(&admin).await < 0.0, "never analyzed yet");
    create_users(&store, &c.id, 300).await;
    let seen = poll(|| rows_seen(&admin), |seen| *seen >= 100.0).await;
    assert!(seen >= 100.0, "statistics still say {seen} rows");
    admin.close().await;
}

/// Whether autovacuum is off here, so that the store's own maintenance is what vacuums; where
/// it is on, a test of that maintenance has nothing to test.
async fn store_vacuums(admin: &sqlx::PgPool) -> bool {
    let autovacuum: String = sqlx::query_scalar("SELECT current_setting('autovacuum')")
        .fetch_one(admin)
        .await
        .expect("setting");
    if autovacuum != "off" {
        eprintln!("autovacuum is on here: it vacuums, not the store; nothing to test");
    }
    autovacuum == "off"
}

/// [`maintained`] with 300 users, where the store's maintenance is what vacuums; `None` where
/// autovacuum does it.
async fn vacuumed_directory(
    customer: &str,
) -> Option<(
    PgStore,
    TempPostgres,
    scimgate_store::Connection,
    sqlx::PgPool,
)> {
    let (store, db, c, admin) = maintained(customer).await;
    if !store_vacuums(&admin).await {
        return None;
    }
    create_users(&store, &c.id, 300).await;
    Some((store, db, c, admin))
}

/// Updates leave dead row versions, which the store's maintenance vacuums away where autovacuum
/// is off, even once PostgreSQL has pruned them from their pages and counts none dead (their
/// index entries stay, and the pages are not all-visible until a VACUUM). Updates change no
/// statistics a plan depends on, so the vacuum does not analyze again.
#[tokio::test]
async fn a_directory_under_updates_is_vacuumed_without_being_analyzed_again() {
    let Some((store, _db, c, admin)) = vacuumed_directory("updated").await else {
        return;
    };
    // Statistics for all 300 now, so the growth rule has nothing left to do.
    sqlx::query("ANALYZE resources")
        .execute(&admin)
        .await
        .expect("analyze");
    // Which ANALYZE wrote the statistics, from the catalog (each ANALYZE rewrites its rows, a
    // VACUUM leaves them): the statistics views would do, but a backend that goes idle reports
    // its counts up to 10 s late, so a count can rise long after the ANALYZE it counts.
    let analyzed_by = || {
        let admin = admin.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT string_agg(xmin::text, ',' ORDER BY staattnum) FROM pg_statistic WHERE starelid = 'resources'::regclass",
            )
            .fetch_one(&admin)
            .await
            .expect("statistics")
        }
    };
    // An ANALYZE the task chose before ours may still be running: wait for three quiet seconds.
    let analyzed = loop {
        let before = analyzed_by().await;
        tokio::time::sleep(std::time::Duration::from_millis(3000)).await;
        if analyzed_by().await == before {
            break before;
        }
    };
    let vacuumed = vacuum_count(&admin, "resources").await;
    for round in 0..5 {
        for i in 0..300 {
            let id = format!("u{i}");
            store
                .update_resource(
                    &c.id,
                    Kind::User,
                    &id,
                    None,
                    suite::user(&id, &format!("{round}@x.org")),
                )
                .await
                .expect("update");
        }
    }
    let now = poll(|| vacuum_count(&admin, "resources"), |n| *n > vacuumed).await;
    assert!(now > vacuumed, "1,500 updated users were never vacuumed");
    assert_eq!(
        analyzed_by().await,
        analyzed,
        "the vacuum analyzed the table again"
    );
    admin.close().await;
}

/// Memberships are only ever inserted and deleted, and a user's groups are read by an index-only
/// scan of them, which must visit every page not yet marked all-visible: a page that only gained
/// rows is not until a VACUUM. So inserts count toward vacuuming, as autovacuum counts them.
#[tokio::test]
async fn inserted_memberships_are_vacuumed_so_groups_read_from_the_index() {
    let Some((store, _db, c, admin)) = vacuumed_directory("inserted").await else {
        return;
    };
    for g in 0..5 {
        let members = (0..300)
            .map(|i| MemberOp::Add(suite::member(&format!("u{i}"))))
            .collect();
        store
            .create_resource(
                &c.id,
                Kind::Group,
                &format!("g{g}"),
                suite::group(&format!("group {g}"), members),
            )
            .await
            .expect("group");
    }
    let vacuumed = poll(|| vacuum_count(&admin, "memberships"), |n| *n > 0).await;
    assert!(
        vacuumed > 0,
        "1,500 inserted memberships were never vacuumed"
    );
    admin.close().await;
}
