//! The real binary: data survives restarts, an acknowledged write survives `kill -9`, and
//! SIGTERM lets the server finish and exit cleanly.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

async fn create_connection(client: &reqwest::Client, base: &str) -> Connection {
    let created: Value = client
        .post(format!("{base}/v1/connections"))
        .bearer_auth(INTEGRATION_KEY)
        .json(&json!({"customer_id": "durable"}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    Connection {
        id: created["connection_id"].as_str().expect("id").to_owned(),
        key: created["scim_api_key"].as_str().expect("key").to_owned(),
        base_url: created["scim_base_url"].as_str().expect("url").to_owned(),
        client: client.clone(),
    }
}

fn at(c: &Connection, base: &str) -> Connection {
    let path = c.base_url.split("/scim/").nth(1).unwrap_or_default();
    Connection {
        base_url: format!("{base}/scim/{path}"),
        ..c.clone()
    }
}

async fn acknowledged_writes_survive_kill_9_and_restarts(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = TestDatabase::new(backend, dir.path()).await;
    let client = reqwest::Client::new();
    let mut process = spawn_scimgate(&db.url, &[]).await;
    let c = create_connection(&client, &process.base).await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let (status, created) = c.post("/Users", user(&format!("durable{i}"))).await;
        assert_eq!(status, 201);
        ids.push(created["id"].as_str().expect("id").to_owned());
    }
    let (_, group) = c
        .post("/Groups", common::group("Kept", &[&ids[0], &ids[1]]))
        .await;
    let gid = group["id"].as_str().expect("id").to_owned();
    // The last write is acknowledged; kill the process before it can do anything else.
    process.child.kill().expect("kill -9");
    process.child.wait().expect("wait");

    let process = spawn_scimgate(&db.url, &[]).await;
    let c = at(&c, &process.base);
    let (status, list) = c.get("/Users?count=1000").await;
    assert_eq!(status, 200, "the old key still works after the restart");
    assert_eq!(list["totalResults"], 40);
    for id in &ids {
        assert_eq!(
            c.get(&format!("/Users/{id}")).await.0,
            200,
            "{id} was acknowledged and must be there"
        );
    }
    let (_, group) = c.get(&format!("/Groups/{gid}")).await;
    assert_eq!(member_ids(&group).len(), 2);
}

async fn sigterm_drains_and_exits_cleanly(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = TestDatabase::new(backend, dir.path()).await;
    let client = reqwest::Client::new();
    let mut process = spawn_scimgate(&db.url, &[]).await;
    let c = create_connection(&client, &process.base).await;
    assert_eq!(c.post("/Users", user("before-term")).await.0, 201);
    let pid = process.child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = process.child.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "scimgate did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit status {exit:?}");
    let process = spawn_scimgate(&db.url, &[]).await;
    let c = at(&c, &process.base);
    let (_, list) = c.get("/Users").await;
    assert_eq!(list["totalResults"], 1);
}

fn cli(database_url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_scimgate"))
        .args(args)
        .args(["--database-url", database_url])
        .env_remove("SCIMGATE_INTEGRATION_KEY")
        .output()
        .expect("run scimgate")
}

async fn integration_keys_are_managed_from_the_command_line(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = TestDatabase::new(backend, dir.path()).await;
    let created = cli(
        &db.url,
        &["integration-keys", "create", "--name", "backend"],
    );
    assert!(created.status.success(), "{created:?}");
    let key = String::from_utf8(created.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    assert!(key.starts_with("sgi_"), "{key}");

    let listed = cli(&db.url, &["integration-keys", "list"]);
    let listing = String::from_utf8(listed.stdout).expect("utf-8");
    assert!(
        listing.contains("backend") && listing.contains("active"),
        "{listing}"
    );
    assert!(!listing.contains(&key), "secrets are never listed");
    let id = listing.split('\t').next().expect("id").to_owned();

    let process = spawn_scimgate(&db.url, &[]).await;
    let client = reqwest::Client::new();
    let status = |k: String| {
        let client = client.clone();
        let url = format!("{}/v1/connections", process.base);
        async move {
            client
                .get(url)
                .bearer_auth(k)
                .send()
                .await
                .expect("send")
                .status()
                .as_u16()
        }
    };
    assert_eq!(status(key.clone()).await, 200);
    let revoked = cli(&db.url, &["integration-keys", "revoke", &id]);
    assert!(revoked.status.success(), "{revoked:?}");
    assert_eq!(
        status(key).await,
        401,
        "a revoked key stops working at once"
    );
    let again = cli(&db.url, &["integration-keys", "revoke", &id]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains(&id));
}

async fn the_first_start_prints_an_integration_key_once(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = TestDatabase::new(backend, dir.path()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_scimgate"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--database-url", &db.url])
        .env_remove("SCIMGATE_INTEGRATION_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while client
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let output = child.wait_with_output().expect("output");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let key = stdout
        .split_whitespace()
        .find(|w| w.starts_with("sgi_"))
        .expect("a key is printed")
        .to_owned();
    assert!(stdout.contains("integration-keys create"), "{stdout}");

    let process = spawn_scimgate(&db.url, &[]).await;
    let response = client
        .get(format!("{}/v1/connections", process.base))
        .bearer_auth(&key)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200, "the printed key works");
    let listed = cli(&db.url, &["integration-keys", "list"]);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).lines().count(),
        1,
        "a second start creates no second key"
    );
}

async fn mapping_status(client: &reqwest::Client, base: &str, id: &str) -> Value {
    client
        .get(format!("{base}/v1/connections/{id}"))
        .bearer_auth(INTEGRATION_KEY)
        .send()
        .await
        .expect("send")
        .json::<Value>()
        .await
        .expect("json")["mapping_status"]
        .clone()
}

async fn a_recompute_cut_by_kill_9_finishes_after_the_restart(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = TestDatabase::new(backend, dir.path()).await;
    let client = reqwest::Client::new();
    let mut process = spawn_scimgate(&db.url, &[]).await;
    let c = create_connection(&client, &process.base).await;
    let mapping = |role: &str| json!({"custom_mapping": {"default_role": role}});
    let response = client
        .patch(format!("{}/v1/connections/{}", process.base, c.id))
        .bearer_auth(INTEGRATION_KEY)
        .json(&mapping("member"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let mut ids = Vec::new();
    for i in 0..300 {
        let (status, created) = c.post("/Users", user(&format!("remap{i}"))).await;
        assert_eq!(status, 201);
        ids.push(created["id"].as_str().expect("id").to_owned());
    }
    let response = client
        .patch(format!("{}/v1/connections/{}", process.base, c.id))
        .bearer_auth(INTEGRATION_KEY)
        .json(&mapping("viewer"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    process
        .child
        .kill()
        .expect("kill -9 in the middle of the recompute");
    process.child.wait().expect("wait");

    let process = spawn_scimgate(&db.url, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let status = mapping_status(&client, &process.base, &c.id).await;
        if status["state"] == "up_to_date" {
            assert_eq!(status["users"], 300);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the recompute did not resume: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let user: Value = client
        .get(format!(
            "{}/v1/connections/{}/users/{}",
            process.base, c.id, ids[299]
        ))
        .bearer_auth(INTEGRATION_KEY)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(user["roles"], json!(["viewer"]));
}

on_both_backends!(
    acknowledged_writes_survive_kill_9_and_restarts,
    sigterm_drains_and_exits_cleanly,
    integration_keys_are_managed_from_the_command_line,
    the_first_start_prints_an_integration_key_once,
    a_recompute_cut_by_kill_9_finishes_after_the_restart,
);
