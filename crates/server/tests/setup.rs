//! Setup links and the hosted setup page's API over HTTP. The page itself is tested in a real
//! browser by ui-tests/ (run from .ci/run).

mod common;

use common::*;
use reqwest::Method;
use scimgate_store::NewSetupLink;
use serde_json::{json, Value};

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

async fn get(server: &TestServer, url: &str) -> (u16, String, reqwest::header::HeaderMap) {
    let response = server.client.get(url).send().await.expect("send");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.text().await.expect("body"), headers)
}

async fn setup_links_open_the_page_until_they_expire_or_are_revoked(backend: Backend) {
    let server = TestServer::start(backend).await;
    let c = server.connection("acme").await;
    let links = format!("/v1/connections/{}/setup-links", c.id);
    for (body, field) in [
        (json!({"expires_in_seconds": 10}), "expires_in_seconds"),
        (
            json!({"expires_in_seconds": 31 * 86_400}),
            "expires_in_seconds",
        ),
    ] {
        let (status, error) = mgmt(&server, Method::POST, &links, Some(body)).await;
        assert_eq!(status, 400);
        assert_eq!(error["details"][0]["field"], field);
    }
    assert_eq!(
        mgmt(
            &server,
            Method::POST,
            "/v1/connections/nope/setup-links",
            None
        )
        .await
        .0,
        404
    );

    let (status, link) = mgmt(&server, Method::POST, &links, None).await;
    assert_eq!(status, 201, "{link}");
    let url = link["url"].as_str().expect("url").to_owned();
    assert!(url.starts_with(&format!("{}/setup/sgs_", server.base)));
    let expires = time::OffsetDateTime::parse(
        link["expires_at"].as_str().expect("expiry"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("rfc3339");
    let lifetime = expires - time::OffsetDateTime::now_utc();
    assert!(
        lifetime > time::Duration::hours(23) && lifetime <= time::Duration::hours(24),
        "a day by default"
    );

    let (status, html, headers) = get(&server, &url).await;
    assert_eq!(status, 200);
    assert!(html.contains("/ui/setup.js"));
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(headers["content-security-policy"]
        .to_str()
        .expect("csp")
        .contains("script-src 'self'"));

    let (status, state) = read(
        server
            .client
            .get(format!("{url}/api/state"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["connection"]["scim_base_url"], json!(c.base_url));
    assert_eq!(state["key"]["expired"], false);
    assert_eq!(state["users"], 0);
    assert_eq!(state["link_expires_at"], link["expires_at"]);

    // Generating a key from the page ends the old one at once.
    let (status, issued) = read(
        server
            .client
            .post(format!("{url}/api/key"))
            .json(&json!({"expires_at": time::OffsetDateTime::now_utc().unix_timestamp() + 86_400}))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 200, "{issued}");
    let key = issued["scim_api_key"].as_str().expect("key").to_owned();
    assert_eq!(c.get("/Users").await.0, 401, "the old key stopped");
    let fresh = Connection {
        key: key.clone(),
        ..c.clone()
    };
    assert_eq!(fresh.post("/Users", user("ada")).await.0, 201);
    let (status, error) = read(
        server
            .client
            .post(format!("{url}/api/key"))
            .json(&json!({"expires_at": 1}))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(
        (status, error["details"][0]["field"].clone()),
        (400, json!("expires_at"))
    );

    // The activity list shows both: the 401 with its reason, then the 201.
    // The request log is written in the background, a moment after the response.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let requests = loop {
        let (_, page) = read(
            server
                .client
                .get(format!("{url}/api/requests"))
                .send()
                .await
                .expect("send"),
        )
        .await;
        let requests = page["requests"].as_array().expect("requests").clone();
        if requests.len() >= 2 {
            break requests;
        }
        assert!(std::time::Instant::now() < deadline, "{page}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(requests[0]["status"], 201);
    assert_eq!(requests[1]["status"], 401);
    assert!(requests[1]["detail"]
        .as_str()
        .is_some_and(|d| d.contains("replaced")));
    let (_, state) = read(
        server
            .client
            .get(format!("{url}/api/state"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(state["users"], 1);
    assert!(state["key"]["last_used_at"].is_string());
    assert!(state["key"]["expires_at"].is_string());

    // Revoked: the page and its API say so.
    let (_, listed) = mgmt(&server, Method::GET, &links, None).await;
    assert_eq!(listed["setup_links"][0]["state"], "active");
    assert!(
        !listed.to_string().contains("sgs_"),
        "the token is never shown again"
    );
    let id = link["setup_link_id"].as_str().expect("id");
    assert_eq!(
        mgmt(&server, Method::DELETE, &format!("{links}/{id}"), None)
            .await
            .0,
        204
    );
    assert_eq!(
        mgmt(&server, Method::DELETE, &format!("{links}/sul_nope"), None)
            .await
            .0,
        404
    );
    let (status, html, _) = get(&server, &url).await;
    assert_eq!(status, 410);
    assert!(html.contains("This setup link no longer works"));
    let (status, error) = read(
        server
            .client
            .post(format!("{url}/api/key"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!((status, error["error_type"].clone()), (410, json!("gone")));
    let (_, listed) = mgmt(&server, Method::GET, &links, None).await;
    assert_eq!(listed["setup_links"][0]["state"], "revoked");

    // Expired: a link whose time has passed.
    let store = server.database.open(&server.base).await;
    let token = "sgs_expired-token-for-the-test";
    store
        .create_setup_link(NewSetupLink {
            id: "sul_expired".into(),
            connection_id: c.id.clone(),
            token_hash: scimgate::secrets::hash(token),
            expires_at: time::OffsetDateTime::now_utc() - time::Duration::seconds(1),
        })
        .await
        .expect("store")
        .expect("connection");
    let (status, html, _) = get(&server, &format!("{}/setup/{token}", server.base)).await;
    assert_eq!(status, 410);
    assert!(html.contains("This setup link no longer works"));
    let (status, _, _) = get(&server, &format!("{}/setup/sgs_unknown", server.base)).await;
    assert_eq!(status, 404);
    let (status, _) = read(
        server
            .client
            .get(format!("{}/setup/sgs_unknown/api/state", server.base))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 404);

    // Deleting the connection ends its links.
    let (_, live) = mgmt(
        &server,
        Method::POST,
        &links,
        Some(json!({"expires_in_seconds": 600})),
    )
    .await;
    assert_eq!(
        mgmt(
            &server,
            Method::DELETE,
            &format!("/v1/connections/{}", c.id),
            None
        )
        .await
        .0,
        204
    );
    let (status, _, _) = get(&server, live["url"].as_str().expect("url")).await;
    assert_eq!(status, 404);
}

async fn the_ui_assets_are_served_from_the_binary(backend: Backend) {
    let server = TestServer::start(backend).await;
    for (path, kind, needle) in [
        ("/ui/setup.css", "text/css", "prefers-color-scheme: dark"),
        ("/ui/setup.js", "text/javascript", "/setup/"),
        (
            "/ui/scim-setup.js",
            "text/javascript",
            "customElements.define(\"scim-setup\"",
        ),
    ] {
        let (status, body, headers) = get(&server, &format!("{}{path}", server.base)).await;
        assert_eq!(status, 200, "{path}");
        assert!(headers["content-type"]
            .to_str()
            .expect("type")
            .starts_with(kind));
        assert!(body.contains(needle), "{path}");
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path} loads nothing from elsewhere"
        );
    }
}

on_both_backends!(
    setup_links_open_the_page_until_they_expire_or_are_revoked,
    the_ui_assets_are_served_from_the_binary,
);
