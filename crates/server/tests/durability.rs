//! The real binary: data survives restarts, an acknowledged write survives `kill -9`, and
//! SIGTERM lets the server finish and exit cleanly.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

struct Process {
    child: Child,
    base: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn spawn(dir: &std::path::Path) -> Process {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_scimgate"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--database-url")
        .arg(format!("sqlite://{}", dir.join("scimgate.db").display()))
        .env("SCIMGATE_INTEGRATION_KEY", INTEGRATION_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn scimgate");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "scimgate did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Process { child, base }
}

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

#[tokio::test]
async fn acknowledged_writes_survive_kill_9_and_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = reqwest::Client::new();
    let mut process = spawn(dir.path()).await;
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

    let process = spawn(dir.path()).await;
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

#[cfg(unix)]
#[tokio::test]
async fn sigterm_drains_and_exits_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = reqwest::Client::new();
    let mut process = spawn(dir.path()).await;
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
    let process = spawn(dir.path()).await;
    let c = at(&c, &process.base);
    let (_, list) = c.get("/Users").await;
    assert_eq!(list["totalResults"], 1);
}
