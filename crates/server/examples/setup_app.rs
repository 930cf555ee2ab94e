//! An app embedding the `<scim-setup>` web component: a small backend with the four routes the
//! component speaks to (`/api/setup/scim`), implemented against scimgate's management API for
//! one fixed customer, and a settings page that embeds the component.
//!
//! ```sh
//! cargo run --release -- serve &      # scimgate on 127.0.0.1:8080
//! SCIMGATE_INTEGRATION_KEY=... cargo run --release -p scimgate --example setup_app
//! # then open http://127.0.0.1:3000
//! ```
//!
//! `SCIMGATE_URL` (default `http://127.0.0.1:8080`), `SETUP_APP_LISTEN` (default
//! `127.0.0.1:3000`) and `SETUP_APP_CUSTOMER` (default `example-customer`) change the defaults.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

struct App {
    scimgate: String,
    key: String,
    customer: String,
    http: reqwest::Client,
}

type Shared = State<Arc<App>>;

/// The component's contract: `expiresAt` is UNIX seconds, or null for a key that never expires.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Expiry {
    expires_at: Option<i64>,
}

fn failure(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

impl App {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Response> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.scimgate))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| {
            failure(
                StatusCode::BAD_GATEWAY,
                format!("scimgate is unreachable: {e}"),
            )
        })?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(body)
        } else {
            let message = body["error_message"]
                .as_str()
                .unwrap_or("scimgate refused the request");
            Err(failure(StatusCode::BAD_REQUEST, message))
        }
    }

    /// The customer's connection, if it has one.
    async fn connection(&self) -> Result<Option<Value>, Response> {
        let found = self
            .call(
                reqwest::Method::GET,
                &format!("/v1/connections?customer_id={}", self.customer),
                None,
            )
            .await?;
        Ok(found["connections"]
            .as_array()
            .and_then(|c| c.first())
            .cloned())
    }

    async fn connection_id(&self) -> Result<String, Response> {
        match self.connection().await? {
            Some(c) => Ok(c["connection_id"].as_str().unwrap_or_default().to_owned()),
            None => Err(failure(
                StatusCode::NOT_FOUND,
                "there is no SCIM connection yet; generate a key first",
            )),
        }
    }
}

async fn status(State(app): Shared) -> Response {
    match app.connection().await {
        Ok(Some(c)) => Json(json!({"hasApiKey": true, "expiresAt": c["scim_api_key_expires_at"]}))
            .into_response(),
        Ok(None) => Json(json!({"hasApiKey": false})).into_response(),
        Err(e) => e,
    }
}

async fn generate(State(app): Shared, Json(body): Json<Expiry>) -> Response {
    let created = app
        .call(
            reqwest::Method::POST,
            "/v1/connections",
            Some(json!({"customer_id": app.customer, "scim_api_key_expiration": body.expires_at})),
        )
        .await;
    match created {
        Ok(c) => Json(json!({"scimApiKey": c["scim_api_key"]})).into_response(),
        Err(e) => e,
    }
}

async fn reset(State(app): Shared, Json(body): Json<Expiry>) -> Response {
    let result = async {
        let id = app.connection_id().await?;
        app.call(
            reqwest::Method::POST,
            &format!("/v1/connections/{id}/scim-api-key"),
            Some(json!({"scim_api_key_expiration": body.expires_at})),
        )
        .await
    }
    .await;
    match result {
        Ok(r) => Json(json!({"scimApiKey": r["scim_api_key"]})).into_response(),
        Err(e) => e,
    }
}

async fn delete(State(app): Shared) -> Response {
    let result = async {
        let id = app.connection_id().await?;
        app.call(
            reqwest::Method::DELETE,
            &format!("/v1/connections/{id}"),
            None,
        )
        .await
    }
    .await;
    match result {
        Ok(_) => Json(json!({"message": "SCIM connection deleted"})).into_response(),
        Err(e) => e,
    }
}

async fn page(State(app): Shared) -> Html<String> {
    let url = match app.connection().await {
        Ok(Some(c)) => c["scim_base_url"].as_str().unwrap_or_default().to_owned(),
        _ => String::new(),
    };
    Html(
        PAGE.replace("{scimgate}", &app.scimgate)
            .replace("{scim_url}", &url),
    )
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Acme Notes · Settings</title>
<script src="{scimgate}/ui/scim-setup.js"></script>
<style>
  body { margin: 0; font-family: system-ui, sans-serif; background: #f4f2ee; color: #222; }
  header { background: #2b2a33; color: #fff; padding: 14px 28px; font-weight: 650; }
  main { max-width: 720px; margin: 32px auto; padding: 0 20px; }
  h1 { font-size: 1.6rem; margin: 0 0 4px; }
  scim-setup { --scim-setup-accent: #0f766e; --scim-setup-radius: 14px; margin-top: 20px; }
  #log { font-family: ui-monospace, monospace; font-size: .85rem; color: #555; }
</style>
</head>
<body>
<header>Acme Notes</header>
<main>
  <h1>Organization settings</h1>
  <p>Let your identity provider manage who can use Acme Notes.</p>
  <scim-setup endpoint="/api/setup/scim" scim-endpoint-url="{scim_url}"></scim-setup>
  <ul id="log" aria-live="polite"></ul>
</main>
<script>
  for (const name of ["scim-generate", "scim-reset", "scim-delete"]) {
    document.addEventListener(name, (event) => {
      const item = document.createElement("li");
      item.textContent = event.detail ? `${name}: key ending …${event.detail.scimApiKey.slice(-6)}` : name;
      document.getElementById("log").append(item);
    });
  }
</script>
</body>
</html>
"#;

#[tokio::main]
async fn main() {
    let app = Arc::new(App {
        scimgate: std::env::var("SCIMGATE_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into()),
        key: std::env::var("SCIMGATE_INTEGRATION_KEY")
            .expect("set SCIMGATE_INTEGRATION_KEY to an integration key"),
        customer: std::env::var("SETUP_APP_CUSTOMER").unwrap_or_else(|_| "example-customer".into()),
        http: reqwest::Client::new(),
    });
    let listen = std::env::var("SETUP_APP_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let router = Router::new()
        .route("/", get(page))
        .route(
            "/api/setup/scim",
            get(status).post(generate).put(reset).delete(delete),
        )
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
    println!("the example app is on http://{listen}");
    axum::serve(listener, router).await.expect("serve");
}
