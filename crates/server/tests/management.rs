//! The management API: the connection lifecycle, its errors, and the OpenAPI document.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

async fn call(
    server: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value, String) {
    let mut request = server.mgmt(method, path);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("send");
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (status, body) = read(response).await;
    (status, body, request_id)
}

fn assert_error(body: &Value, request_id: &str, status: u16, error_type: &str) {
    assert_eq!(body["request_id"], request_id, "{body}");
    assert!(!request_id.is_empty());
    assert_eq!(body["status_code"], status, "{body}");
    assert_eq!(body["error_type"], error_type, "{body}");
    assert!(body["error_message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

async fn the_connection_lifecycle(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, created, _) = call(
        &server,
        Method::POST,
        "/v1/connections",
        Some(json!({
            "customer_id": "acme", "display_name": "Acme", "identity_provider": "okta",
            "scim_api_key_expiration": time::OffsetDateTime::now_utc().unix_timestamp() + 86_400,
            "custom_mapping": {"user_schema": []}
        })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["connection_id"].as_str().expect("id").to_owned();
    let key = created["scim_api_key"].as_str().expect("key");
    assert!(key.starts_with(&format!("scim_{id}_")));
    assert_eq!(
        created["scim_base_url"],
        format!("{}/scim/v2/{id}", server.base)
    );
    let connection = &created["connection"];
    for field in [
        "status",
        "identity_provider",
        "scim_base_url",
        "scim_api_key_expires_at",
        "created_at",
        "updated_at",
    ] {
        assert!(
            !connection[field].is_null(),
            "{field} missing: {connection}"
        );
    }
    assert_eq!(connection["status"], "active");

    let (status, fetched, _) =
        call(&server, Method::GET, &format!("/v1/connections/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        fetched["mapping_status"],
        json!({"state": "up_to_date", "users": 0, "users_mapped": 0})
    );
    let mut without_status = fetched.clone();
    without_status
        .as_object_mut()
        .map(|o| o.remove("mapping_status"));
    assert_eq!(without_status, connection.clone());
    assert!(
        fetched.get("scim_api_key").is_none(),
        "the key is shown once"
    );
    let (_, by_customer, _) = call(
        &server,
        Method::GET,
        "/v1/connections?customer_id=acme",
        None,
    )
    .await;
    assert_eq!(by_customer["connections"][0]["connection_id"], id.as_str());
    let (_, none, _) = call(
        &server,
        Method::GET,
        "/v1/connections?customer_id=nobody",
        None,
    )
    .await;
    assert_eq!(none["connections"], json!([]));

    let (status, body, rid) = call(
        &server,
        Method::POST,
        "/v1/connections",
        Some(json!({"customer_id": "acme"})),
    )
    .await;
    assert_eq!(status, 409);
    assert_error(&body, &rid, 409, "connection_exists");

    let scim = Connection {
        id: id.clone(),
        key: key.to_owned(),
        base_url: created["scim_base_url"].as_str().expect("url").to_owned(),
        client: server.client.clone(),
    };
    let (_, u) = scim.post("/Users", user("someone")).await;
    assert!(u["id"].is_string());

    let (status, disabled, _) = call(
        &server,
        Method::PATCH,
        &format!("/v1/connections/{id}"),
        Some(json!({"status": "disabled", "display_name": null})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (disabled["status"].clone(), disabled["display_name"].clone()),
        (json!("disabled"), Value::Null)
    );
    let (status, body) = scim.get("/Users").await;
    assert_eq!(status, 403);
    assert!(body["detail"]
        .as_str()
        .expect("detail")
        .contains("disabled"));
    call(
        &server,
        Method::PATCH,
        &format!("/v1/connections/{id}"),
        Some(json!({"status": "active"})),
    )
    .await;
    assert_eq!(scim.get("/Users").await.0, 200);

    // The request log is written in the background, a moment after each response.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let requests2 = loop {
        let (status, requests, _) = call(
            &server,
            Method::GET,
            &format!("/v1/connections/{id}/requests"),
            None,
        )
        .await;
        assert_eq!(status, 200);
        if requests["requests"]
            .as_array()
            .is_some_and(|e| e.len() >= 3)
        {
            break requests;
        }
        assert!(std::time::Instant::now() < deadline, "{requests}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let entries = requests2["requests"].as_array().expect("requests");
    assert!(entries.iter().any(
        |e| e["status"] == 403 && e["detail"].as_str().is_some_and(|d| d.contains("disabled"))
    ));
    assert!(
        !requests2.to_string().contains(key),
        "no secrets in the log"
    );

    let (status, _, _) = call(
        &server,
        Method::DELETE,
        &format!("/v1/connections/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(scim.get("/Users").await.0, 401, "its key goes with it");
    let (status, body, rid) =
        call(&server, Method::GET, &format!("/v1/connections/{id}"), None).await;
    assert_eq!(status, 404);
    assert_error(&body, &rid, 404, "not_found");
    let (status, _, _) = call(
        &server,
        Method::POST,
        "/v1/connections",
        Some(json!({"customer_id": "acme"})),
    )
    .await;
    assert_eq!(status, 201, "the customer can be connected again");
}

async fn invalid_input_names_every_bad_field(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, body, rid) = call(&server, Method::POST, "/v1/connections", Some(json!({
        "customer_id": "  ", "identity_provider": "myspace", "scim_api_key_expiration": 1000, "custom_mapping": [1]
    }))).await;
    assert_eq!(status, 400);
    assert_error(&body, &rid, 400, "invalid_fields");
    let fields: Vec<&str> = body["details"]
        .as_array()
        .expect("details")
        .iter()
        .filter_map(|d| d["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "customer_id",
            "identity_provider",
            "scim_api_key_expiration",
            "custom_mapping"
        ]
    );

    let response = server
        .mgmt(Method::POST, "/v1/connections")
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .expect("send");
    let rid = response.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let (status, body) = read(response).await;
    assert_eq!(status, 400);
    assert_error(&body, &rid, 400, "invalid_json");
    let (status, body, _) = call(
        &server,
        Method::POST,
        "/v1/connections",
        Some(json!({"customer_id": "x", "surprise": 1})),
    )
    .await;
    assert_eq!(
        status, 400,
        "unknown fields are refused, not ignored: {body}"
    );

    let c = server.connection("keyed").await;
    let (status, body, _) = call(
        &server,
        Method::POST,
        &format!("/v1/connections/{}/scim-api-key", c.id),
        Some(json!({"previous_key_valid_for_seconds": -5})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["details"][0]["field"],
        "previous_key_valid_for_seconds"
    );
    let (status, body, _) = call(
        &server,
        Method::PATCH,
        &format!("/v1/connections/{}", c.id),
        Some(json!({"status": "paused"})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["details"][0]["field"], "status");
    assert_eq!(
        c.get("/Users").await.0,
        200,
        "failed updates changed nothing"
    );

    let (status, body, _) = call(&server, Method::GET, "/v1/connections?limit=0", None).await;
    assert_eq!(
        (status, body["details"][0]["field"].clone()),
        (400, json!("limit"))
    );
}

async fn integration_keys_guard_the_api_and_lists_page(backend: Backend) {
    let server = TestServer::start(backend).await;
    let response = server
        .client
        .get(format!("{}/v1/connections", server.base))
        .send()
        .await
        .expect("send");
    let rid = response.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let (status, body) = read(response).await;
    assert_eq!(status, 401);
    assert_error(&body, &rid, 401, "unauthorized");
    let response = server
        .client
        .get(format!("{}/v1/connections", server.base))
        .bearer_auth("sgi_wrong")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 401);

    for i in 0..5 {
        server.connection(&format!("customer-{i}")).await;
    }
    let (_, first, _) = call(&server, Method::GET, "/v1/connections?limit=2", None).await;
    let mut seen: Vec<String> = first["connections"]
        .as_array()
        .expect("list")
        .iter()
        .map(|c| c["connection_id"].as_str().unwrap_or("").to_owned())
        .collect();
    let mut cursor = first["next_cursor"].as_str().map(str::to_owned);
    while let Some(c) = cursor {
        let (_, page, _) = call(
            &server,
            Method::GET,
            &format!("/v1/connections?limit=2&cursor={c}"),
            None,
        )
        .await;
        seen.extend(
            page["connections"]
                .as_array()
                .expect("list")
                .iter()
                .map(|c| c["connection_id"].as_str().unwrap_or("").to_owned()),
        );
        cursor = page["next_cursor"].as_str().map(str::to_owned);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5);
}

async fn openapi_health_and_metrics(backend: Backend) {
    let server = TestServer::start(backend).await;
    let doc: Value = server
        .client
        .get(format!("{}/v1/openapi.json", server.base))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert!(doc["openapi"].as_str().expect("version").starts_with("3.1"));
    for path in [
        "/v1/connections",
        "/v1/connections/{connection_id}",
        "/v1/connections/{connection_id}/scim-api-key",
        "/v1/connections/{connection_id}/requests",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert_eq!(
        server
            .client
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .expect("send")
            .status(),
        200
    );
    assert_eq!(
        server
            .client
            .get(format!("{}/readyz", server.base))
            .send()
            .await
            .expect("send")
            .status(),
        200
    );
    let c = server.connection("metrics").await;
    c.get("/Users").await;
    let metrics = server
        .client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("scimgate_http_requests_total"),
        "{metrics}"
    );
    assert!(metrics.contains("surface=\"scim\""));
    assert!(metrics.contains("scimgate_connections"));
    assert!(metrics.contains("scimgate_http_request_duration_seconds_bucket"));
}

on_both_backends!(
    the_connection_lifecycle,
    invalid_input_names_every_bad_field,
    integration_keys_guard_the_api_and_lists_page,
    openapi_health_and_metrics,
);
