//! The directory API: users through the connection's mapping (the seed's example included),
//! roles from groups, filters and cursors, groups and members, and the mapping preview.

mod common;

use common::*;
use reqwest::Method;
use scimgate_store::{Kind, Load};
use serde_json::{json, Value};

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/../protocol/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("json")
}

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn seed_mapping() -> Value {
    json!({
        "user_schema": [{
            "output_field": "manager",
            "input_path": format!("{ENTERPRISE}:manager"),
            "fallback_input_paths": [format!("{ENTERPRISE}:managerId")],
            "property_type": {"data_type": "String"},
            "display_name": "My Manager",
            "description": "Your manager's name",
            "warn_if_missing": true,
            "default_value": "manager@acmeinc.com"
        }],
        "group_role_mappings": [{"group": "Admins", "role": "admin"}],
        "default_role": "member",
        "unmapped_attributes": "swallow"
    })
}

async fn get(server: &TestServer, path: &str) -> (u16, Value) {
    read(server.mgmt(Method::GET, path).send().await.expect("send")).await
}

async fn directory_reads_users_through_the_mapping(backend: Backend) {
    let server = TestServer::start(backend).await;
    let response = server
        .mgmt(Method::POST, "/v1/connections")
        .json(&json!({"customer_id": "bad", "custom_mapping": {"user_schema": [{"output_field": "x", "input_path": "emails[type eq work", "property_type": {"data_type": "string"}}]}}))
        .send()
        .await
        .expect("send");
    let (status, body) = read(response).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["details"][0]["field"],
        "custom_mapping.user_schema[0].input_path"
    );
    assert!(body["details"][0]["message"]
        .as_str()
        .expect("message")
        .contains("is not a valid SCIM path at byte"));

    let entra = server.create_connection(json!({"customer_id": "contoso", "identity_provider": "entra_id", "custom_mapping": seed_mapping()})).await;
    let (_, managed) = entra
        .post("/Users", fixture("idp_resources/entra_create_user.json"))
        .await;
    let managed_id = managed["id"].as_str().expect("id").to_owned();
    let (status, _) = entra
        .patch(
            &format!("/Users/{managed_id}"),
            fixture("idp_patch/16_entra_pathless_flattened_keys.json")["request"]["Operations"]
                .clone(),
        )
        .await;
    assert_eq!(status, 200);
    let (_, plain) = entra.post("/Users", user("plain@contoso.com")).await;
    let plain_id = plain["id"].as_str().expect("id").to_owned();
    let (_, admins) = entra
        .post("/Groups", common::group("Admins", &[&managed_id]))
        .await;
    let admins_id = admins["id"].as_str().expect("id").to_owned();

    let (status, user) = get(
        &server,
        &format!("/v1/connections/{}/users/{managed_id}", entra.id),
    )
    .await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(
        user["properties"]["manager"],
        "26118915-6090-4610-87e4-49d8ca9f808d"
    );
    assert_eq!(user["warnings"], json!([]));
    assert_eq!(user["roles"], json!(["admin"]));
    assert_eq!(user["email"], "bjensen@contoso.com");
    assert_eq!(user["given_name"], "Barbara");
    assert_eq!(user["properties"]["department"], "Tour Operations");
    assert_eq!(user["user_key"], "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef");
    assert_eq!(user["customer_id"], "contoso");
    assert_eq!(user["state"], "active");
    assert_eq!(
        user["groups"],
        json!([{"group_id": admins_id, "display_name": "Admins"}])
    );
    assert!(user.get("raw").is_none());

    let (_, other) = get(
        &server,
        &format!("/v1/connections/{}/users/{plain_id}?include=raw", entra.id),
    )
    .await;
    assert_eq!(other["properties"]["manager"], "manager@acmeinc.com");
    assert_eq!(other["warnings"][0]["field"], "manager");
    assert_eq!(other["warnings"][0]["code"], "missing");
    assert_eq!(other["roles"], json!(["member"]));
    assert!(other["raw"]["userName"].is_string());
    assert!(other["raw"].get("password").is_none());
    assert!(
        other["raw"].get("name").is_some(),
        "name is read by the preset, so it is kept"
    );

    entra
        .patch(
            &format!("/Users/{plain_id}"),
            json!([{"op": "replace", "value": {"active": false}}]),
        )
        .await;
    let (_, inactive) = get(
        &server,
        &format!("/v1/connections/{}/users?active=false", entra.id),
    )
    .await;
    assert_eq!(inactive["users"].as_array().map(Vec::len), Some(1));
    assert_eq!(inactive["users"][0]["state"], "inactive");
    let (_, by_email) = get(
        &server,
        &format!(
            "/v1/connections/{}/users?email=PLAIN%40contoso.com",
            entra.id
        ),
    )
    .await;
    assert_eq!(by_email["users"][0]["user_id"], plain_id.as_str());
    let (_, by_group) = get(
        &server,
        &format!("/v1/connections/{}/users?group_id={admins_id}", entra.id),
    )
    .await;
    assert_eq!(by_group["users"].as_array().map(Vec::len), Some(1));
    assert_eq!(by_group["users"][0]["user_id"], managed_id.as_str());
    let (_, later) = get(
        &server,
        &format!(
            "/v1/connections/{}/users?updated_after=2999-01-01T00:00:00Z",
            entra.id
        ),
    )
    .await;
    assert_eq!(later["users"], json!([]));
    let (status, bad) = get(
        &server,
        &format!(
            "/v1/connections/{}/users?updated_after=yesterday&active=maybe",
            entra.id
        ),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(bad["details"].as_array().map(Vec::len), Some(2));

    let (_, first) = get(
        &server,
        &format!("/v1/connections/{}/users?limit=1", entra.id),
    )
    .await;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let (_, second) = get(
        &server,
        &format!("/v1/connections/{}/users?limit=1&cursor={cursor}", entra.id),
    )
    .await;
    assert_ne!(first["users"][0]["user_id"], second["users"][0]["user_id"]);
    assert!(second.get("next_cursor").is_none());

    // A user deleted through SCIM stays readable here, as deleted.
    let (_, doomed) = entra
        .post("/Users", common::user("doomed@contoso.com"))
        .await;
    let doomed_id = doomed["id"].as_str().expect("id").to_owned();
    assert_eq!(entra.delete(&format!("/Users/{doomed_id}")).await.0, 204);
    assert_eq!(entra.get(&format!("/Users/{doomed_id}")).await.0, 404);
    let (status, deleted) = get(
        &server,
        &format!("/v1/connections/{}/users/{doomed_id}", entra.id),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(deleted["state"], "deleted");
    let (_, all) = get(
        &server,
        &format!("/v1/connections/{}/users?limit=100", entra.id),
    )
    .await;
    assert!(all["users"]
        .as_array()
        .expect("users")
        .iter()
        .any(|u| u["state"] == "deleted"));
    assert_eq!(
        entra
            .post("/Users", common::user("doomed@contoso.com"))
            .await
            .0,
        201,
        "its userName is free again"
    );

    // A new mapping applies to every read at once.
    let response = server
        .mgmt(Method::PATCH, &format!("/v1/connections/{}", entra.id))
        .json(&json!({"custom_mapping": {"user_schema": [{"output_field": "level", "input_path": "title", "property_type": {"data_type": "integer"}, "default_value": 1}]}}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let (_, remapped) = get(
        &server,
        &format!("/v1/connections/{}/users/{plain_id}", entra.id),
    )
    .await;
    assert_eq!(remapped["properties"]["level"], 1);
    assert!(remapped["properties"].get("manager").is_none());
    assert_eq!(remapped["roles"], json!([]));
}

async fn groups_members_and_the_preview(backend: Backend) {
    let server = TestServer::start(backend).await;
    let c = server
        .create_connection(json!({"customer_id": "acme", "identity_provider": "okta"}))
        .await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut body = user(&format!("u{i}@acme.com"));
        if i % 2 == 0 {
            body["title"] = json!(format!("{}", i + 1));
        }
        let (_, u) = c.post("/Users", body).await;
        ids.push(u["id"].as_str().expect("id").to_owned());
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let (_, group) = c.post("/Groups", json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "All", "externalId": "ext-all", "members": refs.iter().map(|id| json!({"value": id})).collect::<Vec<_>>()})).await;
    let gid = group["id"].as_str().expect("id").to_owned();

    let (_, groups) = get(&server, &format!("/v1/connections/{}/groups", c.id)).await;
    assert_eq!(groups["groups"][0]["display_name"], "All");
    let (_, one) = get(&server, &format!("/v1/connections/{}/groups/{gid}", c.id)).await;
    assert_eq!(
        (one["member_count"].clone(), one["external_id"].clone()),
        (json!(5), json!("ext-all"))
    );
    let mut seen = Vec::new();
    let mut path = format!("/v1/connections/{}/groups/{gid}/members?limit=2", c.id);
    loop {
        let (status, page) = get(&server, &path).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(
            page["members"]
                .as_array()
                .expect("members")
                .iter()
                .map(|m| m["member_id"].as_str().unwrap_or("").to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => {
                path = format!(
                    "/v1/connections/{}/groups/{gid}/members?limit=2&cursor={next}",
                    c.id
                )
            }
            None => break,
        }
    }
    assert_eq!(seen, ids, "members in the order they were added");
    let (status, _) = get(&server, &format!("/v1/connections/{}/groups/nope", c.id)).await;
    assert_eq!(status, 404);

    let proposal = json!({"custom_mapping": {
        "user_schema": [{"output_field": "level", "input_path": "title", "property_type": {"data_type": "integer"}, "warn_if_missing": true}],
        "group_role_mappings": [{"group": "ext-all", "role": "staff"}]
    }, "limit": 2});
    let (status, preview) = read(
        server
            .mgmt(
                Method::POST,
                &format!("/v1/connections/{}/mapping-preview", c.id),
            )
            .json(&proposal)
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["users"].as_array().map(Vec::len), Some(2));
    assert_eq!(preview["users"][0]["properties"]["level"], 1);
    assert_eq!(
        preview["users"][0]["roles"],
        json!(["staff"]),
        "groups match by externalId too"
    );
    assert_eq!(preview["summary"]["users"], 5);
    assert_eq!(
        preview["summary"]["warnings"],
        json!({"level": {"missing": 2}})
    );
    let (_, unchanged) = get(&server, &format!("/v1/connections/{}", c.id)).await;
    assert_eq!(
        unchanged["custom_mapping"],
        Value::Null,
        "the preview saves nothing"
    );
    let (status, bad) = read(
        server
            .mgmt(
                Method::POST,
                &format!("/v1/connections/{}/mapping-preview", c.id),
            )
            .json(&json!({"custom_mapping": {"default_role": 5}, "limit": 500}))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 400);
    let fields: Vec<&str> = bad["details"]
        .as_array()
        .expect("details")
        .iter()
        .filter_map(|d| d["field"].as_str())
        .collect();
    assert_eq!(fields, ["custom_mapping.default_role", "limit"]);
}

async fn wait_until_mapped(server: &TestServer, connection_id: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, connection) = get(server, &format!("/v1/connections/{connection_id}")).await;
        if connection["mapping_status"]["state"] == "up_to_date" {
            return connection;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the recompute did not finish: {connection}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn mapped_users_are_stored_and_recomputed_after_changes(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mapping = json!({"group_role_mappings": [{"group": "Admins", "role": "admin"}], "default_role": "member"});
    let c = server.create_connection(json!({"customer_id": "stored", "identity_provider": "okta", "custom_mapping": mapping})).await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let (_, u) = c.post("/Users", user(&format!("s{i}@acme.com"))).await;
        ids.push(u["id"].as_str().expect("id").to_owned());
    }
    let (_, admins) = c.post("/Groups", common::group("Admins", &[&ids[0]])).await;
    let gid = admins["id"].as_str().expect("id").to_owned();

    let connection = wait_until_mapped(&server, &c.id).await;
    assert_eq!(connection["mapping_status"]["users"], 30);
    assert_eq!(connection["mapping_status"]["users_mapped"], 30);
    let store = server.database.open(&server.base).await;
    let stored = store
        .resource(&c.id, Kind::User, &ids[0], Load::default())
        .await
        .expect("read")
        .expect("user");
    let record = stored.mapped.expect("the mapped view is stored");
    assert_eq!(record.generation, 1);
    assert_eq!(record.value["roles"], json!(["admin"]));
    assert_eq!(record.value["properties"]["email"], "s0@acme.com");

    // A new mapping: every user is recomputed in the background. A worker that dies holding a
    // lease (simulated here) delays its users only until the lease lapses.
    let response = server
        .mgmt(Method::PATCH, &format!("/v1/connections/{}", c.id))
        .json(&json!({"custom_mapping": {"group_role_mappings": [{"group": "Admins", "role": "owner"}], "default_role": "viewer"}}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let abandoned = store
        .claim_stale_users(10, std::time::Duration::from_secs(1))
        .await
        .expect("claim");
    let (_, reading) = get(
        &server,
        &format!("/v1/connections/{}/users/{}", c.id, ids[5]),
    )
    .await;
    assert_eq!(
        reading["roles"],
        json!(["viewer"]),
        "reads are current even before the recompute reaches a user"
    );
    wait_until_mapped(&server, &c.id).await;
    for stale in abandoned {
        let user = store
            .resource(&c.id, Kind::User, &stale.resource.id, Load::default())
            .await
            .expect("read")
            .expect("user");
        assert_eq!(
            user.mapped.expect("mapped").generation,
            2,
            "abandoned leases are picked up again"
        );
    }
    let user5 = store
        .resource(&c.id, Kind::User, &ids[5], Load::default())
        .await
        .expect("read")
        .expect("user");
    assert_eq!(
        user5.mapped.expect("mapped").value["roles"],
        json!(["viewer"])
    );
    let user0 = store
        .resource(&c.id, Kind::User, &ids[0], Load::default())
        .await
        .expect("read")
        .expect("user");
    assert_eq!(
        user0.mapped.expect("mapped").value["roles"],
        json!(["owner"])
    );

    // Renaming the group changes what the rules match: its members are recomputed.
    let (status, _) = c
        .patch(
            &format!("/Groups/{gid}"),
            json!([{"op": "replace", "path": "displayName", "value": "Owners"}]),
        )
        .await;
    assert_eq!(status, 200);
    wait_until_mapped(&server, &c.id).await;
    let user0 = store
        .resource(&c.id, Kind::User, &ids[0], Load::default())
        .await
        .expect("read")
        .expect("user");
    assert_eq!(
        user0.mapped.expect("mapped").value["roles"],
        json!(["viewer"])
    );
}

on_both_backends!(
    directory_reads_users_through_the_mapping,
    groups_members_and_the_preview,
    mapped_users_are_stored_and_recomputed_after_changes,
);
