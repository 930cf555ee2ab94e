//! Every error body pinned by a snapshot, so a change to what clients see is a reviewed change.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

fn without_request_id(mut body: Value) -> Value {
    if body.get("request_id").is_some() {
        body["request_id"] = json!("[request id]");
    }
    body
}

async fn management_error_bodies(backend: Backend) {
    let server = TestServer::start(backend).await;
    let cases: Vec<(&str, Method, &str, Option<Value>)> = vec![
        (
            "invalid_fields",
            Method::POST,
            "/v1/connections",
            Some(json!({"identity_provider": "nope"})),
        ),
        (
            "connection_exists",
            Method::POST,
            "/v1/connections",
            Some(json!({"customer_id": "taken"})),
        ),
        ("not_found", Method::GET, "/v1/connections/missing", None),
        ("unknown_endpoint", Method::GET, "/v1/nothing-here", None),
        (
            "events_invalid_query",
            Method::GET,
            "/v1/events?after=yesterday&limit=0&types=user.exploded",
            None,
        ),
        (
            "webhook_endpoint_invalid_fields",
            Method::POST,
            "/v1/webhook-endpoints",
            Some(
                json!({"url": "ftp://example.com/hooks", "event_types": ["user.created", "user.exploded"], "connection_id": "missing"}),
            ),
        ),
        (
            "webhook_endpoint_unknown_field",
            Method::POST,
            "/v1/webhook-endpoints",
            Some(json!({"url": "https://example.com/hooks", "secret": "whsec_mine"})),
        ),
        (
            "webhook_endpoint_not_found",
            Method::GET,
            "/v1/webhook-endpoints/whe_missing/deliveries",
            None,
        ),
    ];
    server.connection("taken").await;
    for (name, method, path, body) in cases {
        let mut request = server.mgmt(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let (status, body) = read(request.send().await.expect("send")).await;
        insta::assert_json_snapshot!(
            format!("management_{name}"),
            json!({"status": status, "body": without_request_id(body)})
        );
    }
    let (status, body) = read(
        server
            .client
            .get(format!("{}/v1/connections", server.base))
            .send()
            .await
            .expect("send"),
    )
    .await;
    insta::assert_json_snapshot!(
        "management_unauthorized",
        json!({"status": status, "body": without_request_id(body)})
    );
}

async fn scim_error_bodies(backend: Backend) {
    let server = TestServer::start(backend).await;
    let c = server.connection("errors").await;
    c.post("/Users", user("taken")).await;
    let cases: Vec<(&str, Method, &str, Option<Value>)> = vec![
        ("uniqueness", Method::POST, "/Users", Some(user("TAKEN"))),
        (
            "invalid_filter",
            Method::GET,
            "/Users?filter=userName%20eq",
            None,
        ),
        (
            "invalid_value",
            Method::POST,
            "/Users",
            Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]})),
        ),
        ("not_found", Method::GET, "/Users/missing", None),
        ("no_endpoint", Method::GET, "/Widgets", None),
        (
            "read_only_discovery",
            Method::POST,
            "/Schemas",
            Some(json!({})),
        ),
        (
            "invalid_patch",
            Method::PATCH,
            "/Users/missing",
            Some(json!({"Operations": [{"op": "jump"}]})),
        ),
    ];
    for (name, method, path, body) in cases {
        let (status, body) = c.send(method, path, body).await;
        insta::assert_json_snapshot!(
            format!("scim_{name}"),
            json!({"status": status, "body": body})
        );
    }
    let (status, body) = read(
        server
            .client
            .get(c.url("/Users"))
            .bearer_auth("scim_wrong")
            .send()
            .await
            .expect("send"),
    )
    .await;
    insta::assert_json_snapshot!("scim_unauthorized", json!({"status": status, "body": body}));
}

on_both_backends!(management_error_bodies, scim_error_bodies,);
