//! The store suite against a real SQLite file in a temporary directory, plus durability.

mod suite;

use scimgate_store::sqlite::SqliteStore;
use scimgate_store::{Kind, Load, Store};

async fn fresh() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(
        dir.path().join("test.db").to_str().expect("utf-8 path"),
        suite::describer(),
    )
    .await
    .expect("open");
    (store, dir)
}

store_suite!(fresh());

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
