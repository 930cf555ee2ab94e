//! Every error the SCIM API gives: status, `scimType`, a detail that says what is wrong, and
//! nothing stored damaged.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

fn assert_scim_error(body: &Value, status: &str, scim_type: Option<&str>, mentions: &str) {
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"]),
        "{body}"
    );
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["scimType"].as_str(), scim_type, "{body}");
    let detail = body["detail"].as_str().expect("detail");
    assert!(
        detail.contains(mentions),
        "{detail:?} should mention {mentions:?}"
    );
}

async fn authentication_failures_say_which_without_leaking_tenants(backend: Backend) {
    let server = TestServer::start(backend).await;
    let a = server.connection("a").await;
    let b = server.connection("b").await;

    let response = server
        .client
        .get(a.url("/Users"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"scimgate\""
    );
    let (_, body) = read(response).await;
    assert_scim_error(&body, "401", None, "Bearer");

    let (status, body) = read(
        server
            .client
            .get(a.url("/Users"))
            .bearer_auth("scim_nope")
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 401);
    assert_scim_error(&body, "401", None, "not a valid SCIM API key");

    let (_, created) = b.post("/Users", user("b-user")).await;
    let b_user = created["id"].as_str().expect("id").to_owned();
    let foreign = server
        .client
        .get(b.url(&format!("/Users/{b_user}")).replace(&b.id, &a.id))
        .bearer_auth(&b.key)
        .send()
        .await
        .expect("send");
    let (status, body) = read(foreign).await;
    assert_eq!(status, 401, "B's key on A's URL is just an invalid key");
    assert_scim_error(&body, "401", None, "not a valid SCIM API key");
    let (status, _) = a.get(&format!("/Users/{b_user}")).await;
    assert_eq!(status, 404, "A's key never sees B's users");
    let (_, list) = a.get("/Users").await;
    assert_eq!(list["totalResults"], 0);
}

async fn expired_and_replaced_keys_are_refused_with_the_reason(backend: Backend) {
    let server = TestServer::start(backend).await;
    let c = server.connection("keys").await;
    let (status, _) = c.get("/Users").await;
    assert_eq!(status, 200);

    let reset: Value = server
        .mgmt(
            Method::POST,
            &format!("/v1/connections/{}/scim-api-key", c.id),
        )
        .json(&json!({"previous_key_valid_for_seconds": 0}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let new_key = reset["scim_api_key"].as_str().expect("key").to_owned();
    let (status, body) = c.get("/Users").await;
    assert_eq!(status, 401, "without overlap the old key stops at once");
    assert_scim_error(&body, "401", None, "replaced");
    let fresh = Connection {
        key: new_key.clone(),
        ..c.clone()
    };
    assert_eq!(fresh.get("/Users").await.0, 200);

    let reset: Value = server
        .mgmt(
            Method::POST,
            &format!("/v1/connections/{}/scim-api-key", c.id),
        )
        .json(&json!({"previous_key_valid_for_seconds": 3600}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(
        fresh.get("/Users").await.0,
        200,
        "with overlap the previous key keeps working"
    );
    let newest = Connection {
        key: reset["scim_api_key"].as_str().expect("key").to_owned(),
        ..c.clone()
    };
    assert_eq!(newest.get("/Users").await.0, 200);

    let expiring = server
        .create_connection(json!({"customer_id": "expiring", "scim_api_key_expiration": time::OffsetDateTime::now_utc().unix_timestamp() + 2}))
        .await;
    assert_eq!(expiring.get("/Users").await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let (status, body) = expiring.get("/Users").await;
    assert_eq!(status, 401);
    assert_scim_error(&body, "401", None, "expired");
}

async fn bad_input_gets_a_precise_error_and_changes_nothing(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        Options {
            max_body_bytes: 64 * 1024,
            ..Options::default()
        },
    )
    .await;
    let c = server.connection("errors").await;
    let (_, created) = c.post("/Users", user("alice")).await;
    let id = created["id"].as_str().expect("id").to_owned();

    let (status, body) = c.post("/Users", user("ALICE")).await;
    assert_eq!(status, 409);
    assert_scim_error(&body, "409", Some("uniqueness"), "ALICE");

    let (status, body) = c.get("/Users?filter=userName%20eq%20%22x%22%20and").await;
    assert_eq!(status, 400);
    assert_scim_error(&body, "400", Some("invalidFilter"), "byte 19");
    let (status, body) = c.get("/Users?filter=active%20gt%20true").await;
    assert_eq!(status, 400);
    assert_scim_error(&body, "400", Some("invalidFilter"), "active");

    let (status, body) = c.send(Method::POST, "/Users", None).await;
    assert_eq!(status, 400);
    assert_scim_error(&body, "400", Some("invalidSyntax"), "JSON");
    let (status, body) = c
        .post("/Users", json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "nul\u{0}"}))
        .await;
    assert_eq!(status, 400, "NUL characters are refused on every backend");
    assert_scim_error(&body, "400", Some("invalidValue"), "NUL");
    let (status, body) = c.post("/Users", json!({"not": "a scim resource"})).await;
    assert_eq!(status, 400);
    assert_scim_error(&body, "400", Some("invalidValue"), "userName");
    let (status, body) = c.post("/Users", json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "x", "active": "sometimes"})).await;
    assert_eq!(status, 400);
    assert_scim_error(&body, "400", Some("invalidValue"), "active");

    let (status, body) = c
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "id", "value": "x"}]),
        )
        .await;
    assert_eq!(status, 400);
    assert_scim_error(&body, "400", Some("mutability"), "id");
    let (status, body) = c
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "add", "path": "emails[type eq]", "value": "x"}]),
        )
        .await;
    assert_eq!(status, 400);
    assert_scim_error(&body, "400", Some("invalidPath"), "emails");
    let (status, body) = c
        .patch(&format!("/Users/{id}"), json!([{"op": "remove"}]))
        .await;
    assert_eq!(status, 400);
    assert_scim_error(&body, "400", Some("noTarget"), "path");

    let big = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "big", "title": "x".repeat(70 * 1024)});
    let (status, body) = c.post("/Users", big).await;
    assert_eq!(status, 413);
    assert_eq!(
        body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );

    let (status, body) = c.get("/Users/does-not-exist").await;
    assert_eq!(status, 404);
    assert_scim_error(&body, "404", None, "does-not-exist");
    let (status, body) = c.get("/Nonsense").await;
    assert_eq!(status, 404);
    assert_scim_error(&body, "404", None, "no such SCIM endpoint");
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        for path in ["/ServiceProviderConfig", "/Schemas", "/ResourceTypes"] {
            let (status, body) = c.send(method.clone(), path, Some(json!({}))).await;
            assert_eq!(status, 405, "{method} {path}");
            assert_scim_error(&body, "405", None, "read-only");
        }
    }
    let (status, body) = c.get("/Users?cursor=garbage").await;
    assert_eq!(status, 400);
    assert_scim_error(&body, "400", Some("invalidCursor"), "cursor");
    let (status, body) = c.get("/Users?count=abc").await;
    assert_eq!(status, 400);
    assert_scim_error(&body, "400", Some("invalidValue"), "count");

    let (_, after) = c.get(&format!("/Users/{id}")).await;
    assert_eq!(after["userName"], "alice");
    assert_eq!(
        after["meta"]["version"], created["meta"]["version"],
        "no failed request wrote anything"
    );
}

async fn etags_guard_writes_and_save_reads(backend: Backend) {
    let server = TestServer::start(backend).await;
    let c = server.connection("etags").await;
    let (_, created) = c.post("/Users", user("etag")).await;
    let id = created["id"].as_str().expect("id").to_owned();
    let version = created["meta"]["version"]
        .as_str()
        .expect("version")
        .to_owned();

    let response = c
        .request(Method::GET, &format!("/Users/{id}"))
        .header("if-none-match", &version)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 304);

    let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "title", "value": "A"}]});
    let response = c
        .request(Method::PATCH, &format!("/Users/{id}"))
        .header("if-match", &version)
        .body(body.to_string())
        .send()
        .await
        .expect("send");
    let new_version = response.headers()["etag"]
        .to_str()
        .expect("etag")
        .to_owned();
    assert_eq!(response.status(), 200);
    assert_ne!(new_version, version, "every write changes the version");

    let response = c
        .request(Method::PATCH, &format!("/Users/{id}"))
        .header("if-match", &version)
        .body(body.to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 412, "a stale If-Match is refused");
    let response = c
        .request(Method::DELETE, &format!("/Users/{id}"))
        .header("if-match", &version)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 412);
    let response = c
        .request(Method::DELETE, &format!("/Users/{id}"))
        .header("if-match", &new_version)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 204);
}

async fn pagination_is_truthful_and_cursors_are_advertised(backend: Backend) {
    let server = TestServer::start(backend).await;
    let c = server.connection("pages").await;
    for i in 0..12 {
        c.post("/Users", user(&format!("p{i:02}"))).await;
    }
    let (_, page) = c.get("/Users?startIndex=11&count=5").await;
    assert_eq!(
        (
            page["totalResults"].clone(),
            page["itemsPerPage"].clone(),
            page["startIndex"].clone()
        ),
        (json!(12), json!(2), json!(11))
    );
    let (_, page) = c.get("/Users?startIndex=0&count=-3").await;
    assert_eq!(
        (page["startIndex"].clone(), page["itemsPerPage"].clone()),
        (json!(1), json!(0))
    );
    let (_, page) = c.get("/Users?count=100000").await;
    assert_eq!(page["itemsPerPage"], 12, "count is capped, not refused");

    let (_, config) = c.get("/ServiceProviderConfig").await;
    assert_eq!(config["pagination"]["cursor"], true);
    assert_eq!(config["filter"]["maxResults"], 1000);

    let mut cursor = String::new();
    let mut seen = Vec::new();
    loop {
        let (status, page) = c.get(&format!("/Users?count=5&cursor={cursor}")).await;
        assert_eq!(status, 200);
        assert!(page.get("startIndex").is_none());
        seen.extend(
            page["Resources"]
                .as_array()
                .expect("resources")
                .iter()
                .map(|r| r["userName"].as_str().unwrap_or("").to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 12);

    let (status, search) = c.post("/Users/.search", json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "userName sw \"p1\"", "attributes": ["userName"], "count": 10})).await;
    assert_eq!(status, 200);
    assert_eq!(search["totalResults"], 2);
    assert!(
        search["Resources"][0].get("emails").is_none(),
        "attributes projects the result"
    );
}

async fn bursts_past_the_limit_get_429_with_retry_after(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        Options {
            scim_rate_limit: 2,
            ..Options::default()
        },
    )
    .await;
    let c = server.connection("burst").await;
    let mut limited = None;
    for _ in 0..20 {
        let response = c
            .request(Method::GET, "/ServiceProviderConfig")
            .send()
            .await
            .expect("send");
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let response = limited.expect("a burst of 20 exceeds 2/s");
    assert_eq!(response.headers()["retry-after"], "1");
    let other = server.connection("calm").await;
    assert_eq!(
        other.get("/ServiceProviderConfig").await.0,
        200,
        "limits are per connection"
    );
}

async fn repeated_writes_of_the_same_state_keep_the_version(backend: Backend) {
    let server = TestServer::start(backend).await;
    let c = server.connection("noop").await;
    let (_, created) = c.post("/Users", user("same")).await;
    let id = created["id"].as_str().expect("id").to_owned();
    let (_, first) = c.put(&format!("/Users/{id}"), user("same")).await;
    let (_, again) = c.put(&format!("/Users/{id}"), user("same")).await;
    assert_eq!(
        first["meta"]["version"], again["meta"]["version"],
        "an IdP re-sending a user changes nothing"
    );
    assert_eq!(first["meta"]["lastModified"], again["meta"]["lastModified"]);

    let (_, group) = c.post("/Groups", common::group("G", &[&id])).await;
    let gid = group["id"].as_str().expect("id").to_owned();
    let (status, readded) = c
        .patch(
            &format!("/Groups/{gid}"),
            json!([{"op": "add", "path": "members", "value": [{"value": id}]}]),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        readded["meta"]["version"], group["meta"]["version"],
        "re-adding a member changes nothing"
    );
    let (_, put_same) = c
        .put(&format!("/Groups/{gid}"), common::group("G", &[&id]))
        .await;
    assert_eq!(put_same["meta"]["version"], group["meta"]["version"]);
}

on_both_backends!(
    authentication_failures_say_which_without_leaking_tenants,
    expired_and_replaced_keys_are_refused_with_the_reason,
    bad_input_gets_a_precise_error_and_changes_nothing,
    etags_guard_writes_and_save_reads,
    pagination_is_truthful_and_cursors_are_advertised,
    bursts_past_the_limit_get_429_with_retry_after,
    repeated_writes_of_the_same_state_keep_the_version,
);
