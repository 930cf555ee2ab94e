//! A real scimgate server on a loopback port with a real SQLite file, driven over HTTP.

#![allow(dead_code)]

pub mod receiver;

use std::sync::Arc;
use std::time::Duration;

use scimgate::webhooks::WebhookSettings;

use reqwest::{Client, Method, RequestBuilder, Response};
use scimgate::app::{Server, Settings};
use scimgate_store::postgres::PgStore;
use scimgate_store::sqlite::SqliteStore;
use scimgate_store::testing::TempPostgres;
use scimgate_store::{EventSource, Store};
use serde_json::{json, Value};
use tokio::sync::oneshot;

pub const INTEGRATION_KEY: &str = "sgi_test-integration-key";

/// The events a server at `public_url` emits.
pub fn describer(public_url: &str) -> Arc<dyn EventSource> {
    Arc::new(scimgate::events::Describer::new(public_url))
}

fn free_addr() -> std::net::SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    probe.local_addr().expect("addr")
}

/// The store a test runs on. Every HTTP test runs once on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one `#[tokio::test]` per backend for each named `async fn(Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $name() { super::$name(super::Backend::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $name() { super::$name(super::Backend::Postgres).await } )*
        }
    };
}

/// A database for one test: a SQLite file in `dir`, or a throwaway PostgreSQL database.
pub struct TestDatabase {
    pub url: String,
    pub postgres: Option<TempPostgres>,
}

impl TestDatabase {
    pub async fn new(backend: Backend, dir: &std::path::Path) -> TestDatabase {
        match backend {
            Backend::Sqlite => TestDatabase {
                url: format!("sqlite://{}", dir.join("scimgate.db").display()),
                postgres: None,
            },
            Backend::Postgres => {
                let db = TempPostgres::create()
                    .await
                    .expect("create a test database");
                TestDatabase {
                    url: db.url.clone(),
                    postgres: Some(db),
                }
            }
        }
    }

    /// Opens the store as a server at `public_url` would.
    pub async fn open(&self, public_url: &str) -> Arc<dyn Store> {
        let events = describer(public_url);
        if self.url.starts_with("postgres") {
            Arc::new(
                PgStore::open(&self.url, events)
                    .await
                    .expect("open postgres"),
            )
        } else {
            Arc::new(
                SqliteStore::open(&self.url, events)
                    .await
                    .expect("open sqlite"),
            )
        }
    }
}

pub struct TestServer {
    pub database: TestDatabase,
    pub base: String,
    pub client: Client,
    pub dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub struct Options {
    pub scim_rate_limit: u32,
    pub max_body_bytes: usize,
    pub patch_response_member_limit: u64,
    pub webhooks: WebhookSettings,
}

/// Webhook retries in tens of milliseconds, so outages fit in a test.
pub fn fast_webhooks() -> WebhookSettings {
    WebhookSettings {
        timeout: Duration::from_secs(2),
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        retry_window: Duration::from_secs(3600),
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            scim_rate_limit: 200,
            max_body_bytes: 2 * 1024 * 1024,
            patch_response_member_limit: 5000,
            webhooks: fast_webhooks(),
        }
    }
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, Options::default()).await
    }

    pub async fn start_with(backend: Backend, options: Options) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = TestDatabase::new(backend, dir.path()).await;
        let addr = free_addr();
        let store = database.open(&format!("http://{addr}")).await;
        Self::serve(store, database, dir, options, addr).await
    }

    /// Serves `store`, which may reach its database some other way than `database.url`.
    pub async fn start_on(
        store: Arc<dyn Store>,
        database: TestDatabase,
        dir: tempfile::TempDir,
        options: Options,
    ) -> TestServer {
        Self::serve(store, database, dir, options, free_addr()).await
    }

    async fn serve(
        store: Arc<dyn Store>,
        database: TestDatabase,
        dir: tempfile::TempDir,
        options: Options,
        addr: std::net::SocketAddr,
    ) -> TestServer {
        let base = format!("http://{addr}");
        let settings = Settings {
            public_url: base.clone(),
            integration_key: Some(INTEGRATION_KEY.into()),
            max_body_bytes: options.max_body_bytes,
            scim_rate_limit: options.scim_rate_limit,
            scim_key_cache_ttl: std::time::Duration::from_millis(1000),
            patch_response_member_limit: options.patch_response_member_limit,
            deleted_user_retention_days: 30,
            event_retention_days: 30,
            key_expiry_warning_days: 14,
            webhooks: options.webhooks,
        };
        let server = Server::bind(store, addr, settings)
            .await
            .expect("bind server");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        TestServer {
            database,
            base,
            client: Client::new(),
            dir,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn mgmt(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(INTEGRATION_KEY)
    }

    pub async fn create_connection(&self, body: Value) -> Connection {
        let response = self
            .mgmt(Method::POST, "/v1/connections")
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 201, "create connection");
        let created: Value = response.json().await.expect("json");
        Connection {
            id: created["connection_id"].as_str().expect("id").to_owned(),
            key: created["scim_api_key"].as_str().expect("key").to_owned(),
            base_url: created["scim_base_url"].as_str().expect("url").to_owned(),
            client: self.client.clone(),
        }
    }

    pub async fn connection(&self, customer: &str) -> Connection {
        self.create_connection(json!({"customer_id": customer}))
            .await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// One SCIM connection, as an IdP holds it: a base URL and a key.
#[derive(Clone)]
pub struct Connection {
    pub id: String,
    pub key: String,
    pub base_url: String,
    pub client: Client,
}

impl Connection {
    pub fn url(&self, path: &str) -> String {
        let base = self.base_url.split('?').next().unwrap_or_default();
        format!("{base}{path}")
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(&self.key)
            .header("content-type", "application/scim+json")
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        read(request.send().await.expect("send")).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(Method::PUT, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, operations: Value) -> (u16, Value) {
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations});
        self.send(Method::PATCH, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(Method::DELETE, path, None).await
    }
}

pub async fn read(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, value)
}

pub fn user(name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "name": {"givenName": "Test", "familyName": name},
        "emails": [{"value": if name.contains('@') { name.to_owned() } else { format!("{name}@example.com") }, "type": "work", "primary": true}],
        "active": true
    })
}

pub fn group(name: &str, members: &[&str]) -> Value {
    let members: Vec<Value> = members.iter().map(|id| json!({"value": id})).collect();
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name, "members": members})
}

pub fn member_ids(group: &Value) -> Vec<String> {
    let mut ids: Vec<String> = group["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|v| v["value"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// A new SCIM connection created through the management API of the server at `base`.
pub async fn connection_on(base: &str, customer: &str) -> Connection {
    let client = reqwest::Client::new();
    let created: Value = client
        .post(format!("{base}/v1/connections"))
        .bearer_auth(INTEGRATION_KEY)
        .json(&json!({"customer_id": customer}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    Connection {
        id: created["connection_id"].as_str().expect("id").to_owned(),
        key: created["scim_api_key"].as_str().expect("key").to_owned(),
        base_url: format!(
            "{base}/scim/v2/{}",
            created["connection_id"].as_str().expect("id")
        ),
        client,
    }
}

/// A scimgate process started from the built binary, killed when dropped.
pub struct Process {
    pub child: std::process::Child,
    pub base: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the real binary on a free port against `database_url` and waits until it answers.
pub async fn spawn_scimgate(database_url: &str, extra_args: &[&str]) -> Process {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_scimgate"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            database_url,
        ])
        .args(extra_args)
        .env("SCIMGATE_INTEGRATION_KEY", INTEGRATION_KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn scimgate");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while reqwest::get(format!("{base}/healthz"))
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "scimgate did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Process { child, base }
}
