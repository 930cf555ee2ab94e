//! The store suite against a real SQLite file in a temporary directory, plus durability.

mod suite;

use scimgate_store::sqlite::SqliteStore;
use std::sync::Arc;

use scimgate_store::{EventSource, Kind, Load, Store};

async fn fresh(events: Arc<dyn EventSource>) -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(
        dir.path().join("test.db").to_str().expect("utf-8 path"),
        events,
    )
    .await
    .expect("open");
    (store, dir)
}

store_suite!(fresh);

#[tokio::test]
async fn data_survives_reopening_and_the_file_is_in_wal_mode() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("durable.db");
    let url = format!("sqlite://{}", path.display());
    let (new, key) = suite::new_connection("durable");
    {
        let store = SqliteStore::open(&url, suite::describer())
            .await
            .expect("open");
        store
            .create_connection(new.clone(), key)
            .await
            .expect("create");
        store
            .create_resource(&new.id, Kind::User, "u1", suite::user("kept", "k@x.org"))
            .await
            .expect("user");
    }
    let store = SqliteStore::open(&url, suite::describer())
        .await
        .expect("reopen runs migrations idempotently");
    let user = store
        .resource(&new.id, Kind::User, "u1", Load::default())
        .await
        .expect("get")
        .expect("still there");
    assert_eq!(user.body["userName"], "kept");
    assert!(
        dir.path().join("durable.db-wal").exists(),
        "WAL journal in use"
    );
}

/// The writer never checkpoints (so no commit pays for one); the background checkpointer must,
/// or the WAL would grow without end. Ten rounds of about 1 MB with pauses between them: the
/// WAL is reused once checkpointed, so it stays near one round's size.
#[tokio::test]
async fn the_wal_is_checkpointed_in_the_background() {
    let (store, dir) = fresh(suite::describer()).await;
    let (new, key) = suite::new_connection("wal");
    store
        .create_connection(new.clone(), key)
        .await
        .expect("create");
    let filler = "x".repeat(10_000);
    for round in 0..10 {
        for i in 0..10 {
            let name = format!("r{round}-{i}");
            let mut write = suite::user(&name, "w@x.org");
            write.body["title"] = serde_json::Value::String(filler.clone());
            store
                .create_resource(&new.id, Kind::User, &name, write)
                .await
                .expect("user");
        }
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    }
    let wal = std::fs::metadata(dir.path().join("test.db-wal"))
        .expect("WAL file")
        .len();
    assert!(
        wal < 4_000_000,
        "the WAL holds {wal} bytes: about 10 MB were written, so it was not checkpointed"
    );
}

/// Under writes that never pause, SQLite never finds the moment to start the WAL over on its
/// own: commits keep landing while the checkpointer copies. Sixteen writers without pauses, about
/// 90 MB of WAL in all, against a limit of 256 pages (1 MiB): the WAL must start over again and
/// again (its header counts the times), and its file stay far smaller than what was written.
/// The checkpointer only looks every 200 ms, so the file still holds that long's writes.
#[tokio::test]
async fn the_wal_starts_over_under_writes_that_never_pause() {
    use scimgate_store::sqlite::SqliteTuning;

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("busy.db");
    let store = SqliteStore::open_with(
        path.to_str().expect("utf-8 path"),
        suite::describer(),
        SqliteTuning {
            wal_restart_pages: 256,
        },
    )
    .await
    .expect("open");
    let (new, key) = suite::new_connection("busy");
    let c = store.create_connection(new, key).await.expect("connection");
    let wal = dir.path().join("busy.db-wal");
    let writing = std::sync::atomic::AtomicBool::new(true);
    let largest = async {
        let mut largest = 0;
        while writing.load(std::sync::atomic::Ordering::Relaxed) {
            largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        largest
    };
    let filler = "x".repeat(10_000);
    let (store, id, filler) = (&store, &c.id, &filler);
    let writers = futures::future::join_all((0..16).map(|w| async move {
        for i in 0..200 {
            let name = format!("w{w}-{i}");
            let mut write = suite::user(&name, "w@x.org");
            write.body["title"] = serde_json::Value::String(filler.clone());
            store
                .create_resource(id, Kind::User, &name, write)
                .await
                .expect("user");
            let read = store
                .resource(id, Kind::User, &name, Load::default())
                .await
                .expect("read");
            assert!(read.is_some(), "{name} reads back");
        }
    }));
    let (largest, ()) = tokio::join!(largest, async {
        writers.await;
        writing.store(false, std::sync::atomic::Ordering::Relaxed);
    });
    let header = std::fs::read(&wal).expect("WAL file");
    let restarts = u32::from_be_bytes(header[12..16].try_into().expect("4 bytes"));
    assert!(restarts >= 3, "the WAL started over {restarts} times");
    assert!(
        largest < 40 << 20,
        "the WAL file reached {largest} bytes: it did not start over"
    );
    assert_eq!(
        store.count_resources(Kind::User).await.expect("count"),
        3200
    );
}

/// A user create sends its row, emails and events to SQLite together, in a savepoint of its
/// own: when a statement after the row's fails, the row goes with it, and the writes that shared
/// its commit still land. A trigger refuses one email, so the failure comes after the insert.
#[tokio::test]
async fn a_create_that_fails_after_its_row_leaves_nothing_and_its_batch_lands() {
    use sqlx::{ConnectOptions, Connection};
    use std::str::FromStr;

    let (store, dir) = fresh(suite::describer()).await;
    let (new, key) = suite::new_connection("refusing");
    let c = store.create_connection(new, key).await.expect("connection");
    let mut raw = sqlx::sqlite::SqliteConnectOptions::from_str(&format!(
        "sqlite://{}",
        dir.path().join("test.db").display()
    ))
    .expect("url")
    .connect()
    .await
    .expect("raw connection");
    sqlx::query(
        "CREATE TRIGGER refuse_email BEFORE INSERT ON resource_emails \
         WHEN NEW.value_lower = 'refused@x.org' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
    )
    .execute(&mut raw)
    .await
    .expect("trigger");
    raw.close().await.expect("close");

    let store = &store;
    let id = &c.id;
    let writes = (0..20).map(|i| async move {
        let (name, email) = if i == 10 {
            ("refused".to_owned(), "refused@x.org".to_owned())
        } else {
            (format!("ok-{i}"), format!("ok-{i}@x.org"))
        };
        let result = store
            .create_resource(id, Kind::User, &name, suite::user(&name, &email))
            .await;
        (name, result)
    });
    for (name, result) in futures::future::join_all(writes).await {
        match (name.as_str(), result) {
            ("refused", Err(e)) => assert!(e.to_string().contains("refused by the test"), "{e}"),
            ("refused", Ok(_)) => panic!("the trigger must refuse the write"),
            (_, result) => {
                result.unwrap_or_else(|e| panic!("{name} shares the batch and must land: {e}"));
            }
        }
    }
    let refused = store
        .resource(id, Kind::User, "refused", Load::default())
        .await
        .expect("read");
    assert!(refused.is_none(), "the refused user's row was rolled back");
    for i in (0..20).filter(|i| *i != 10) {
        let user = store
            .resource(id, Kind::User, &format!("ok-{i}"), Load::default())
            .await
            .expect("read");
        assert!(user.is_some(), "ok-{i} landed");
    }
    let events = suite::events_after(store, 0).await;
    let created: Vec<&str> = events
        .iter()
        .filter(|e| e.event_type == "user.created")
        .filter_map(|e| e.data["id"].as_str())
        .collect();
    assert_eq!(created.len(), 19, "one event per landed user: {created:?}");
    assert!(
        !created.contains(&"refused"),
        "no event for the refused user"
    );
}

/// Creates queued together share one transaction; when one of them fails (here, on a userName
/// another create of the batch took), the others must still land, each with its event, and the
/// one that failed must say why.
#[tokio::test]
async fn creates_queued_together_stand_or_fall_alone() {
    let (store, _dir) = fresh(suite::describer()).await;
    let (new, key) = suite::new_connection("together");
    let c = store.create_connection(new, key).await.expect("connection");
    let (store, id) = (&store, &c.id);
    let creates = (0..30).map(|i| async move {
        let name = match i {
            7 => "Twin".to_owned(),
            21 => "twin".to_owned(),
            _ => format!("user-{i}"),
        };
        let result = store
            .create_resource(
                id,
                Kind::User,
                &format!("u{i}"),
                suite::user(&name, &format!("{i}@x.org")),
            )
            .await;
        (i, result)
    });
    let mut twins = Vec::new();
    for (i, result) in futures::future::join_all(creates).await {
        match (i, result) {
            (7 | 21, result) => twins.push((i, result)),
            (i, result) => {
                result.unwrap_or_else(|e| panic!("u{i} must land: {e}"));
            }
        }
    }
    let (landed, taken): (Vec<_>, Vec<_>) = twins.into_iter().partition(|(_, r)| r.is_ok());
    assert_eq!(landed.len(), 1, "one of the twins lands");
    let (loser, error) = &taken[0];
    assert!(
        matches!(error, Err(scimgate_store::StoreError::UserNameTaken(name)) if name.eq_ignore_ascii_case("twin")),
        "the other is told its userName is taken: {error:?}"
    );
    let lost = store
        .resource(id, Kind::User, &format!("u{loser}"), Load::default())
        .await
        .expect("read");
    assert!(lost.is_none(), "u{loser} left no row");
    for i in (0..30).filter(|i| i != loser) {
        let user = store
            .resource(id, Kind::User, &format!("u{i}"), Load::default())
            .await
            .expect("read");
        assert!(user.is_some(), "u{i} is stored");
    }
    let created = suite::events_after(store, 0)
        .await
        .iter()
        .filter(|e| e.event_type == "user.created")
        .count();
    assert_eq!(created, 29, "one event per user that landed");
}
