//! Two scimgate processes on one PostgreSQL database behave as one service, and a lost
//! database connection turns into fast 503s and a recovery without restarting scimgate.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use scimgate_store::postgres::PgStore;
use scimgate_store::testing::TempPostgres;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

fn on(c: &Connection, base: &str) -> Connection {
    Connection {
        base_url: format!("{base}/scim/v2/{}", c.id),
        ..c.clone()
    }
}

fn version(resource: &Value) -> u64 {
    resource["meta"]["version"]
        .as_str()
        .and_then(|v| v.trim_start_matches("W/").trim_matches('"').parse().ok())
        .expect("version")
}

#[tokio::test]
async fn two_instances_on_one_database_behave_as_one_service() {
    let db = TempPostgres::create().await.expect("database");
    let (a, b) = tokio::join!(
        spawn_scimgate(&db.url, &["--scim-rate-limit", "0"]),
        spawn_scimgate(&db.url, &["--scim-rate-limit", "0"])
    );
    let template = connection_on(&a.base, "shared").await;
    let (via_a, via_b) = (on(&template, &a.base), on(&template, &b.base));

    // The same userName created through both instances at once: one 201, one 409, every time.
    for round in 0..25 {
        let name = format!("race{round}@example.com");
        let (x, y) = tokio::join!(
            via_a.post("/Users", user(&name)),
            via_b.post("/Users", user(&name.to_uppercase()))
        );
        let mut statuses = [x.0, y.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 409], "round {round}: {x:?} {y:?}");
    }

    // Members added concurrently through both instances: none lost.
    let mut member_ids_created = Vec::new();
    for i in 0..40 {
        let via = if i % 2 == 0 { &via_a } else { &via_b };
        let (_, u) = via.post("/Users", user(&format!("member{i}"))).await;
        member_ids_created.push(u["id"].as_str().expect("id").to_owned());
    }
    let (_, group) = via_a.post("/Groups", common::group("Shared", &[])).await;
    let gid = group["id"].as_str().expect("id").to_owned();
    let mut tasks = Vec::new();
    for (i, chunk) in member_ids_created.chunks(4).enumerate() {
        let via = if i % 2 == 0 {
            via_a.clone()
        } else {
            via_b.clone()
        };
        let values: Vec<Value> = chunk.iter().map(|id| json!({"value": id})).collect();
        let path = format!("/Groups/{gid}");
        tasks.push(tokio::spawn(async move {
            via.patch(
                &path,
                json!([{"op": "add", "path": "members", "value": values}]),
            )
            .await
        }));
    }
    for task in tasks {
        let (status, body) = task.await.expect("task");
        assert_eq!(status, 200, "{body}");
    }
    let (_, group) = via_b.get(&format!("/Groups/{gid}")).await;
    let mut expected = member_ids_created.clone();
    expected.sort();
    assert_eq!(member_ids(&group), expected, "no member addition was lost");

    // Concurrent PATCHes of one user through both instances: all applied, versions monotonic.
    let (_, target) = via_a.post("/Users", user("contended")).await;
    let uid = target["id"].as_str().expect("id").to_owned();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let via = if i % 2 == 0 {
            via_a.clone()
        } else {
            via_b.clone()
        };
        let path = format!("/Users/{uid}");
        tasks.push(tokio::spawn(async move {
            via.patch(&path, json!([{"op": "add", "path": "emails", "value": [{"value": format!("alias{i}@example.com"), "type": "other"}]}])).await
        }));
    }
    let mut versions = Vec::new();
    for task in tasks {
        let (status, body) = task.await.expect("task");
        assert_eq!(status, 200, "{body}");
        versions.push(version(&body));
    }
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions.len(), 20, "every write produced its own version");
    let (_, final_user) = via_b.get(&format!("/Users/{uid}")).await;
    assert_eq!(version(&final_user), 21);
    assert_eq!(
        final_user["emails"].as_array().map(Vec::len),
        Some(21),
        "no PATCH was lost"
    );

    let (_, list) = via_a
        .get("/Users?filter=userName%20sw%20%22race%22&count=1000")
        .await;
    assert_eq!(list["totalResults"], 25, "one user per raced name");
}

/// Each process trusts a SCIM key it has read for `--scim-key-cache-ms`. A key reset takes
/// effect at once in the process that made it, and in the other one within that time.
#[tokio::test]
async fn a_revoked_key_stops_at_once_where_revoked_and_within_the_cache_time_elsewhere() {
    const CACHE: Duration = Duration::from_millis(3000);
    let db = TempPostgres::create().await.expect("database");
    let cache_ms = CACHE.as_millis().to_string();
    let args = ["--scim-rate-limit", "0", "--scim-key-cache-ms", &cache_ms];
    let (a, b) = tokio::join!(
        spawn_scimgate(&db.url, &args),
        spawn_scimgate(&db.url, &args)
    );
    let template = connection_on(&a.base, "revoked").await;
    let (via_a, via_b) = (on(&template, &a.base), on(&template, &b.base));
    assert_eq!(via_a.get("/Users").await.0, 200);
    assert_eq!(via_b.get("/Users").await.0, 200);

    let reset = reqwest::Client::new()
        .post(format!(
            "{}/v1/connections/{}/scim-api-key",
            a.base, template.id
        ))
        .bearer_auth(INTEGRATION_KEY)
        .json(&json!({"previous_key_valid_for_seconds": 0}))
        .send()
        .await
        .expect("send");
    let revoked_at = Instant::now();
    assert_eq!(reset.status(), 200);
    let new_key: Value = reset.json().await.expect("json");
    let renewed = |via: &Connection| Connection {
        key: new_key["scim_api_key"].as_str().expect("key").to_owned(),
        ..via.clone()
    };

    assert_eq!(
        via_a.get("/Users").await.0,
        401,
        "refused at once where revoked"
    );
    assert_eq!(
        via_b.get("/Users").await.0,
        200,
        "the other process still trusts what it read (so this test exercises its cache)"
    );
    assert_eq!(
        renewed(&via_b).get("/Users").await.0,
        200,
        "a new key works at once everywhere"
    );
    loop {
        let (status, body) = via_b.get("/Users").await;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            revoked_at.elapsed() < CACHE + Duration::from_millis(500),
            "the other process still accepted the revoked key after {:?}",
            revoked_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(renewed(&via_a).get("/Users").await.0, 200);
}

/// A TCP relay to PostgreSQL that a test can cut and restore.
struct Relay {
    port: u16,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Relay {
    async fn start() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let port = listener.local_addr().expect("addr").port();
        let relay = Relay {
            port,
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        relay.serve(listener);
        relay
    }

    fn serve(&self, listener: TcpListener) {
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let connection = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect("127.0.0.1:5432").await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                if let Ok(mut t) = tasks.lock() {
                    t.push(connection.abort_handle());
                }
            }
        });
        if let Ok(mut t) = self.tasks.lock() {
            t.push(accept.abort_handle());
        }
    }

    /// Drops every relayed connection and refuses new ones.
    fn cut(&self) {
        if let Ok(mut t) = self.tasks.lock() {
            for task in t.drain(..) {
                task.abort();
            }
        }
    }

    async fn restore(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("rebind relay");
        self.serve(listener);
    }
}

#[tokio::test]
async fn a_lost_database_gives_fast_503s_and_the_service_recovers_by_itself() {
    let db = TempPostgres::create().await.expect("database");
    let relay = Relay::start().await;
    let relayed_url = db
        .url
        .replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", relay.port), 1);
    assert_ne!(
        relayed_url, db.url,
        "the test database must be on 127.0.0.1:5432: {}",
        db.url
    );
    let store = Arc::new(
        PgStore::open(&relayed_url, describer("http://relayed.test"))
            .await
            .expect("open through the relay"),
    );
    let dir = tempfile::tempdir().expect("dir");
    let database = TestDatabase {
        url: relayed_url.clone(),
        postgres: None,
    };
    let server = TestServer::start_on(store, database, dir, Options::default()).await;
    let c = server.connection("outage").await;
    let (status, _) = c.post("/Users", user("before")).await;
    assert_eq!(status, 201);

    relay.cut();
    let started = Instant::now();
    let response = c
        .request(reqwest::Method::GET, "/Users")
        .send()
        .await
        .expect("send");
    assert_eq!(
        response.status(),
        503,
        "the SCIM API answers 503 while the database is away"
    );
    assert!(response.headers().contains_key("retry-after"));
    let (_, body) = read(response).await;
    assert_eq!(
        body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "it fails fast: {:?}",
        started.elapsed()
    );
    let ready = server
        .client
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .expect("send");
    assert_eq!(ready.status(), 503, "/readyz turns red");
    let mgmt = server
        .mgmt(reqwest::Method::GET, &format!("/v1/connections/{}", c.id))
        .send()
        .await
        .expect("send");
    assert_eq!(mgmt.status(), 503);
    let (_, body) = read(mgmt).await;
    assert_eq!(body["error_type"], "unavailable");

    relay.restore().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = c.post("/Users", user("after")).await;
        if status == 201 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "scimgate did not recover (last status {status})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = server
        .client
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .expect("send");
    assert_eq!(ready.status(), 200);
    let (_, list) = c.get("/Users").await;
    assert_eq!(list["totalResults"], 2, "nothing was lost or duplicated");
}
