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
