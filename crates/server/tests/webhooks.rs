//! Events and webhooks end to end: realistic SCIM traffic in, signed webhooks out to a real
//! receiver on loopback, through outages, restarts and a second instance.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use common::receiver::{signed_with, Received, Receiver};
use common::*;
use reqwest::Method;
use scimgate::events::EVENT_TYPES;
use serde_json::{json, Value};

async fn create_endpoint(server: &TestServer, body: Value) -> (String, String) {
    let (status, created) = read(
        server
            .mgmt(Method::POST, "/v1/webhook-endpoints")
            .json(&body)
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    (
        created["webhook_endpoint_id"]
            .as_str()
            .expect("id")
            .to_owned(),
        created["secret"].as_str().expect("secret").to_owned(),
    )
}

async fn mgmt(
    server: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = server.mgmt(method, path);
    if let Some(body) = body {
        request = request.json(&body);
    }
    read(request.send().await.expect("send")).await
}

/// Every event, from the pull API.
async fn pull_all(server: &TestServer, query: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor = "0".to_owned();
    loop {
        let (status, page) = mgmt(
            server,
            Method::GET,
            &format!("/v1/events?after={cursor}&limit=1000{query}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let got = page["events"].as_array().cloned().unwrap_or_default();
        cursor = page["next_cursor"].as_str().expect("cursor").to_owned();
        if got.is_empty() {
            return events;
        }
        events.extend(got);
    }
}

fn types_of(received: &[Received], connection: &str) -> Vec<String> {
    received
        .iter()
        .filter(|r| r.connection() == Some(connection))
        .map(|r| r.event_type().to_owned())
        .collect()
}

/// Per connection, the first arrival of each event comes in sequence order, and every event
/// the log holds for the endpoint arrived.
fn assert_complete_and_ordered(received: &[Received], expected: &[Value]) {
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut seen = BTreeSet::new();
    for r in received {
        if !seen.insert(r.id.clone()) {
            continue;
        }
        let key = r.connection().unwrap_or_default().to_owned();
        let previous = last.insert(key.clone(), r.sequence()).unwrap_or(0);
        assert!(
            r.sequence() > previous,
            "connection {key}: event {} arrived after {previous}",
            r.sequence()
        );
    }
    let wanted: BTreeSet<String> = expected
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(seen, wanted, "every event arrived");
}

async fn every_event_type_reaches_the_app_signed(backend: Backend) {
    let options = Options {
        webhooks: scimgate::webhooks::WebhookSettings {
            retry_window: Duration::from_millis(300),
            ..fast_webhooks()
        },
        ..Options::default()
    };
    let server = TestServer::start_with(backend, options).await;
    let app = Receiver::start().await;
    let (_, secret) =
        create_endpoint(&server, json!({"url": app.url, "description": "the app"})).await;
    // Nothing listens on the discard port: this endpoint fails until it is disabled.
    let (dead, _) = create_endpoint(&server, json!({"url": "http://127.0.0.1:9/hooks"})).await;

    let expires = time::OffsetDateTime::now_utc().unix_timestamp() + 5 * 86_400;
    let c = server
        .create_connection(json!({"customer_id": "acme", "scim_api_key_expiration": expires}))
        .await;
    let (status, ada) = c.post("/Users", user("ada")).await;
    assert_eq!(status, 201);
    let ada_id = ada["id"].as_str().expect("id").to_owned();
    let ada_path = format!("/Users/{ada_id}");
    let new_email = json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "ada@new.example"}]);
    assert_eq!(c.patch(&ada_path, new_email.clone()).await.0, 200);
    assert_eq!(
        c.patch(&ada_path, new_email).await.0,
        200,
        "the same PATCH again: a no-op"
    );
    let (_, current) = c.get(&ada_path).await;
    assert_eq!(
        c.put(&ada_path, current).await.0,
        200,
        "the same state again: a no-op"
    );
    assert_eq!(
        c.patch(
            &ada_path,
            json!([{"op": "replace", "path": "active", "value": false}])
        )
        .await
        .0,
        200
    );
    assert_eq!(
        c.patch(
            &ada_path,
            json!([{"op": "replace", "path": "active", "value": true}])
        )
        .await
        .0,
        200
    );
    let (status, eng) = c.post("/Groups", group("Engineering", &[&ada_id])).await;
    assert_eq!(status, 201);
    let eng_path = format!("/Groups/{}", eng["id"].as_str().expect("id"));
    assert_eq!(
        c.patch(
            &eng_path,
            json!([{"op": "add", "path": "members", "value": [{"value": ada_id}]}])
        )
        .await
        .0,
        200,
        "already a member: a no-op"
    );
    assert_eq!(
        c.patch(
            &eng_path,
            json!([{"op": "replace", "path": "displayName", "value": "R&D"}])
        )
        .await
        .0,
        200
    );
    assert_eq!(
        c.patch(
            &eng_path,
            json!([{"op": "remove", "path": format!("members[value eq \"{ada_id}\"]")}])
        )
        .await
        .0,
        200
    );
    assert_eq!(c.delete(&eng_path).await.0, 204);
    assert_eq!(c.delete(&ada_path).await.0, 204);
    let conn_path = format!("/v1/connections/{}", c.id);
    // The second rename changes nothing, so it emits nothing.
    for _ in 0..2 {
        let rename = json!({"display_name": "Acme Corp"});
        let (status, _) = mgmt(&server, Method::PATCH, &conn_path, Some(rename)).await;
        assert_eq!(status, 200);
    }
    assert_eq!(
        mgmt(
            &server,
            Method::POST,
            &format!("{conn_path}/scim-api-key"),
            Some(json!({}))
        )
        .await
        .0,
        200
    );
    assert_eq!(mgmt(&server, Method::DELETE, &conn_path, None).await.0, 204);

    let received = app
        .wait_until(30, |got| {
            got.iter().any(|r| r.event_type() == "connection.deleted")
                && got
                    .iter()
                    .any(|r| r.event_type() == "webhook_endpoint.disabled")
        })
        .await;
    assert_eq!(
        types_of(&received, &c.id),
        [
            "connection.created",
            "connection.scim_api_key_expiring",
            "user.created",
            "user.updated",
            "user.deactivated",
            "user.reactivated",
            "group.created",
            "group.member_added",
            "group.updated",
            "group.member_removed",
            "group.deleted",
            "user.deleted",
            "connection.updated",
            "connection.scim_api_key_reset",
            "connection.deleted",
        ],
        "one event per change, in order, none for the no-ops"
    );
    let all_types: BTreeSet<&str> = received.iter().map(Received::event_type).collect();
    assert_eq!(
        all_types,
        EVENT_TYPES.iter().copied().collect(),
        "every event type"
    );
    for r in &received {
        assert!(signed_with(&secret, r), "signature of {}", r.id);
        assert!(r.id.starts_with("evt_"));
    }

    let find = |t: &str| {
        received
            .iter()
            .find(|r| r.event_type() == t)
            .expect(t)
            .body
            .clone()
    };
    let updated = find("user.updated");
    assert_eq!(
        updated["data"]["email"], "ada@new.example",
        "data is the mapped user"
    );
    assert_eq!(updated["data"]["customer_id"], "acme");
    assert!(
        updated["changes"]
            .as_array()
            .expect("changes")
            .contains(&json!({"field": "email", "previous": "ada@example.com"})),
        "{}",
        updated["changes"]
    );
    let deactivated = find("user.deactivated");
    assert_eq!(deactivated["data"]["state"], "inactive");
    assert!(deactivated["changes"]
        .as_array()
        .expect("changes")
        .contains(&json!({"field": "active", "previous": true})));
    assert_eq!(find("user.deleted")["data"]["state"], "deleted");
    let added = find("group.member_added");
    assert_eq!(added["data"]["group"]["display_name"], "Engineering");
    assert_eq!(added["data"]["member"]["member_id"], ada_id);
    assert_eq!(
        find("group.updated")["changes"],
        json!([{"field": "display_name", "previous": "Engineering"}])
    );
    assert_eq!(
        find("connection.updated")["changes"],
        json!([{"field": "display_name", "previous": null}])
    );
    let disabled = find("webhook_endpoint.disabled");
    assert_eq!(disabled["data"]["webhook_endpoint_id"], dead);
    assert!(disabled["data"]["disabled_reason"]
        .as_str()
        .is_some_and(|r| r.contains("retry window")));
    let (_, dead_now) = mgmt(
        &server,
        Method::GET,
        &format!("/v1/webhook-endpoints/{dead}"),
        None,
    )
    .await;
    assert_eq!(dead_now["enabled"], false);

    // The pull API holds the same log, in the same order.
    let pulled = pull_all(&server, &format!("&connection_id={}", c.id)).await;
    let pulled_types: Vec<&str> = pulled
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(pulled_types, types_of(&received, &c.id));
    assert_eq!(
        pulled.iter().map(|e| e["id"].clone()).collect::<Vec<_>>(),
        received
            .iter()
            .filter(|r| r.connection() == Some(c.id.as_str()))
            .map(|r| json!(r.id))
            .collect::<Vec<_>>()
    );
}

async fn an_outage_delays_but_loses_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let app = Receiver::start().await;
    app.set_up(false);
    let (hook, _) = create_endpoint(
        &server,
        json!({"url": app.url, "event_types": ["user.created", "user.updated"]}),
    )
    .await;
    let a = server.connection("a").await;
    let b = server.connection("b").await;
    for i in 0..15 {
        for (c, name) in [(&a, "a"), (&b, "b")] {
            let (status, body) = c.post("/Users", user(&format!("{name}{i}"))).await;
            assert_eq!(status, 201, "{body}");
        }
    }
    // Failures pile up: each connection's first event is retried; nothing behind it goes.
    while app.attempts() < 6 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(app.received().is_empty());
    let (_, log) = mgmt(
        &server,
        Method::GET,
        &format!("/v1/webhook-endpoints/{hook}/deliveries?limit=100"),
        None,
    )
    .await;
    let failing: Vec<&Value> = log["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .filter(|d| !d["attempts"].as_array().expect("attempts").is_empty())
        .collect();
    assert_eq!(
        failing.len(),
        2,
        "only the head of each connection's queue is tried: {log}"
    );
    for d in &failing {
        assert_eq!(d["state"], "pending");
        assert_eq!(d["attempts"][0]["status_code"], 503);
        assert_eq!(d["attempts"][0]["response"], "down for maintenance");
        assert!(d["next_attempt_at"].is_string());
    }

    app.set_up(true);
    let received = app.wait_until(30, |got| got.len() >= 30).await;
    // Read the log once everything arrived: on PostgreSQL the last events are numbered a
    // moment after their writes return.
    let expected = pull_all(&server, "&types=user.created,user.updated").await;
    assert_eq!(expected.len(), 30);
    assert_complete_and_ordered(&received, &expected);
    // The log records a success once the answer is in, a moment after the receiver saw it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, log) = mgmt(
            &server,
            Method::GET,
            &format!("/v1/webhook-endpoints/{hook}/deliveries?limit=100"),
            None,
        )
        .await;
        let deliveries = log["deliveries"].as_array().expect("deliveries");
        if deliveries.len() == 30 && deliveries.iter().all(|d| d["state"] == "delivered") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_failing_connection_does_not_hold_back_another(backend: Backend) {
    let server = TestServer::start(backend).await;
    let app = Receiver::start().await;
    let dead = Receiver::start().await;
    dead.set_up(false);
    let a = server.connection("a").await;
    let b = server.connection("b").await;
    create_endpoint(&server, json!({"url": dead.url, "connection_id": a.id})).await;
    create_endpoint(&server, json!({"url": app.url})).await;
    for i in 0..5 {
        a.post("/Users", user(&format!("a{i}"))).await;
        b.post("/Users", user(&format!("b{i}"))).await;
    }
    let received = app.wait_until(20, |got| got.len() >= 10).await;
    let expected = pull_all(&server, "&types=user.created").await;
    assert_complete_and_ordered(&received, &expected);
    assert!(dead.received().is_empty() && dead.attempts() > 0);
}

async fn the_endpoints_api_validates_rotates_tests_retries_and_replays(backend: Backend) {
    let server = TestServer::start(backend).await;
    let app = Receiver::start().await;
    for (body, field) in [
        (json!({}), "url"),
        (json!({"url": "ftp://x.example/"}), "url"),
        (json!({"url": "not a url"}), "url"),
        (
            json!({"url": app.url, "event_types": ["user.created", "user.exploded"]}),
            "event_types",
        ),
        (
            json!({"url": app.url, "connection_id": "nope"}),
            "connection_id",
        ),
    ] {
        let (status, error) = mgmt(
            &server,
            Method::POST,
            "/v1/webhook-endpoints",
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["details"][0]["field"], field, "{error}");
    }
    let (status, error) = mgmt(
        &server,
        Method::POST,
        "/v1/webhook-endpoints",
        Some(json!({"url": app.url, "secret": "mine"})),
    )
    .await;
    assert_eq!(status, 400, "unknown fields are refused: {error}");

    let (id, secret) = create_endpoint(
        &server,
        json!({"url": app.url, "event_types": ["user.created"]}),
    )
    .await;
    assert!(secret.starts_with("whsec_"));
    let (_, shown) = mgmt(
        &server,
        Method::GET,
        &format!("/v1/webhook-endpoints/{id}"),
        None,
    )
    .await;
    assert!(
        !shown.to_string().contains(&secret),
        "the secret is shown once"
    );
    let (_, listed) = mgmt(&server, Method::GET, "/v1/webhook-endpoints", None).await;
    assert_eq!(listed["webhook_endpoints"][0]["webhook_endpoint_id"], id);

    let (status, ping) = mgmt(
        &server,
        Method::POST,
        &format!("/v1/webhook-endpoints/{id}/test"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(ping["success"], true, "{ping}");
    assert_eq!(ping["status_code"], 204);
    let pinged = app.wait_until(5, |got| !got.is_empty()).await;
    assert_eq!(pinged[0].event_type(), "webhook_endpoint.test");
    assert!(signed_with(&secret, &pinged[0]));

    let (status, rotated) = mgmt(
        &server,
        Method::POST,
        &format!("/v1/webhook-endpoints/{id}/secret"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let new_secret = rotated["secret"].as_str().expect("secret").to_owned();
    assert_ne!(new_secret, secret);
    let c = server.connection("c").await;
    c.post("/Users", user("u1")).await;
    let got = app.wait_until(10, |got| got.len() >= 2).await;
    assert!(
        signed_with(&new_secret, &got[1]) && signed_with(&secret, &got[1]),
        "both secrets sign during the overlap"
    );
    let (status, _) = mgmt(
        &server,
        Method::POST,
        &format!("/v1/webhook-endpoints/{id}/secret"),
        Some(json!({"previous_secret_valid_for_seconds": 0})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, error) = mgmt(
        &server,
        Method::POST,
        &format!("/v1/webhook-endpoints/{id}/secret"),
        Some(json!({"previous_secret_valid_for_seconds": -1})),
    )
    .await;
    assert_eq!(status, 400, "{error}");

    let (status, error) = mgmt(
        &server,
        Method::PATCH,
        &format!("/v1/webhook-endpoints/{id}"),
        Some(json!({"event_types": ["nope"]})),
    )
    .await;
    assert_eq!(
        (status, error["details"][0]["field"].clone()),
        (400, json!("event_types"))
    );
    let (status, patched) = mgmt(
        &server,
        Method::PATCH,
        &format!("/v1/webhook-endpoints/{id}"),
        Some(json!({"description": "prod", "event_types": []})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(patched["description"], "prod");
    assert_eq!(patched["event_types"], json!([]));

    // A delivery is recorded once its answer is in, a moment after the receiver saw it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let log = loop {
        let (_, log) = mgmt(
            &server,
            Method::GET,
            &format!("/v1/webhook-endpoints/{id}/deliveries"),
            None,
        )
        .await;
        if log["deliveries"][0]["state"] == "delivered" {
            break log;
        }
        assert!(std::time::Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let delivery = log["deliveries"][0]["delivery_id"]
        .as_str()
        .expect("delivery")
        .to_owned();
    assert_eq!(log["deliveries"][0]["state"], "delivered");
    assert_eq!(log["deliveries"][0]["attempts"][0]["status_code"], 204);
    let (status, retried) = mgmt(
        &server,
        Method::POST,
        &format!("/v1/webhook-endpoints/{id}/deliveries/{delivery}/retry"),
        None,
    )
    .await;
    assert_eq!(status, 202, "{retried}");
    let got = app.wait_until(10, |got| got.len() >= 3).await;
    assert_eq!(
        got[2].id, got[1].id,
        "a retry resends the same event, same webhook-id"
    );
    assert_eq!(
        mgmt(
            &server,
            Method::POST,
            &format!("/v1/webhook-endpoints/{id}/deliveries/999999/retry"),
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        mgmt(
            &server,
            Method::GET,
            &format!("/v1/webhook-endpoints/{id}/deliveries?limit=0"),
            None
        )
        .await
        .0,
        400
    );

    let (status, replayed) = mgmt(
        &server,
        Method::POST,
        &format!("/v1/webhook-endpoints/{id}/replay"),
        Some(json!({"after": "0"})),
    )
    .await;
    assert_eq!(status, 202);
    assert!(
        replayed["queued"].as_u64().expect("queued") >= 1,
        "{replayed}"
    );
    let (status, error) = mgmt(
        &server,
        Method::POST,
        &format!("/v1/webhook-endpoints/{id}/replay"),
        Some(json!({"after": "yesterday"})),
    )
    .await;
    assert_eq!(
        (status, error["details"][0]["field"].clone()),
        (400, json!("after"))
    );

    assert_eq!(
        mgmt(
            &server,
            Method::DELETE,
            &format!("/v1/webhook-endpoints/{id}"),
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        mgmt(
            &server,
            Method::GET,
            &format!("/v1/webhook-endpoints/{id}"),
            None
        )
        .await
        .0,
        404
    );
}

async fn the_pull_api_validates_and_follows_concurrent_writers(backend: Backend) {
    let server = TestServer::start(backend).await;
    for query in [
        "after=-1",
        "after=abc",
        "limit=0",
        "limit=1001",
        "types=user.created,user.nope",
    ] {
        let (status, error) =
            mgmt(&server, Method::GET, &format!("/v1/events?{query}"), None).await;
        assert_eq!(status, 400, "{query}: {error}");
    }
    let c = server.connection("busy").await;
    let writers = (0..6).map(|w| {
        let c = c.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                let (status, _) = c.post("/Users", user(&format!("w{w}u{i}"))).await;
                assert_eq!(status, 201);
            }
        })
    });
    let writers: Vec<_> = writers.collect();
    let mut cursor = "0".to_owned();
    let mut seen: Vec<Value> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < 121 {
        assert!(std::time::Instant::now() < deadline, "saw {}", seen.len());
        let (_, page) = mgmt(
            &server,
            Method::GET,
            &format!("/v1/events?after={cursor}&limit=7"),
            None,
        )
        .await;
        for e in page["events"].as_array().expect("events") {
            let previous = seen
                .last()
                .map_or(0, |p| p["sequence"].as_i64().unwrap_or(0));
            assert!(e["sequence"].as_i64().expect("sequence") > previous);
            seen.push(e.clone());
        }
        cursor = page["next_cursor"].as_str().expect("cursor").to_owned();
    }
    for w in writers {
        w.await.expect("writer");
    }
    let everything = pull_all(&server, "").await;
    assert_eq!(seen, everything, "the follower saw exactly the final log");
    let (_, last) = mgmt(
        &server,
        Method::GET,
        &format!("/v1/events?after={cursor}"),
        None,
    )
    .await;
    assert_eq!(last["events"], json!([]));
    assert_eq!(
        last["next_cursor"],
        json!(cursor),
        "an empty page keeps the cursor"
    );
}

on_both_backends!(
    every_event_type_reaches_the_app_signed,
    an_outage_delays_but_loses_nothing,
    a_failing_connection_does_not_hold_back_another,
    the_endpoints_api_validates_rotates_tests_retries_and_replays,
    the_pull_api_validates_and_follows_concurrent_writers,
);

async fn endpoint_on(base: &str, url: &str) -> String {
    let created: Value = reqwest::Client::new()
        .post(format!("{base}/v1/webhook-endpoints"))
        .bearer_auth(INTEGRATION_KEY)
        .json(&json!({"url": url}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    created["secret"].as_str().expect("secret").to_owned()
}

async fn events_on(base: &str) -> Vec<Value> {
    let page: Value = reqwest::Client::new()
        .get(format!("{base}/v1/events?limit=1000"))
        .bearer_auth(INTEGRATION_KEY)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    page["events"].as_array().cloned().unwrap_or_default()
}

const FAST_RETRIES: &[&str] = &[
    "--webhook-backoff-base-ms",
    "30",
    "--webhook-backoff-max-secs",
    "1",
    "--scim-rate-limit",
    "0",
];

async fn a_restart_mid_retry_loses_nothing(backend: Backend) {
    let dir = tempfile::tempdir().expect("dir");
    let database = TestDatabase::new(backend, dir.path()).await;
    let app = Receiver::start().await;
    app.set_up(false);
    let first = spawn_scimgate(&database.url, FAST_RETRIES).await;
    let secret = endpoint_on(&first.base, &app.url).await;
    let c = connection_on(&first.base, "restart").await;
    for i in 0..20 {
        assert_eq!(c.post("/Users", user(&format!("u{i}"))).await.0, 201);
    }
    while app.attempts() < 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIGKILL mid-retry: no shutdown, no flush.
    drop(first);
    app.set_up(true);
    let second = spawn_scimgate(&database.url, FAST_RETRIES).await;
    // A kill that lands while a delivery attempt is out leaves that stream leased for a minute
    // (the dispatcher's lease), after which the second instance takes it over.
    let received = app.wait_until(90, |got| got.len() >= 21).await;
    let expected = events_on(&second.base).await;
    assert_eq!(expected.len(), 21, "connection.created and 20 users");
    assert_complete_and_ordered(&received, &expected);
    assert!(received.iter().all(|r| signed_with(&secret, r)));
}

/// Two instances dispatch from one database: every event goes out, in order per connection,
/// and never twice at the same time.
#[tokio::test]
async fn two_instances_share_delivery_without_overlap() {
    let dir = tempfile::tempdir().expect("dir");
    let database = TestDatabase::new(Backend::Postgres, dir.path()).await;
    let app = Receiver::start().await;
    app.set_delay(Duration::from_millis(5));
    let (a, b) = tokio::join!(
        spawn_scimgate(&database.url, FAST_RETRIES),
        spawn_scimgate(&database.url, FAST_RETRIES)
    );
    endpoint_on(&a.base, &app.url).await;
    let mut connections = Vec::new();
    for (i, base) in [&a.base, &b.base, &a.base, &b.base].into_iter().enumerate() {
        connections.push(connection_on(base, &format!("customer{i}")).await);
    }
    let writers: Vec<_> = connections
        .iter()
        .cloned()
        .map(|c| {
            tokio::spawn(async move {
                for i in 0..25 {
                    assert_eq!(c.post("/Users", user(&format!("u{i}"))).await.0, 201);
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    let received = app.wait_until(60, |got| got.len() >= 104).await;
    let expected = events_on(&b.base).await;
    assert_eq!(expected.len(), 104);
    assert_complete_and_ordered(&received, &expected);
    assert_eq!(app.overlaps(), 0, "no event was in flight twice at once");
    assert_eq!(received.len(), 104, "nothing delivered twice");
}

mod restart {
    use super::*;
    #[tokio::test]
    async fn sqlite() {
        a_restart_mid_retry_loses_nothing(Backend::Sqlite).await
    }
    #[tokio::test]
    async fn postgres() {
        a_restart_mid_retry_loses_nothing(Backend::Postgres).await
    }
}
