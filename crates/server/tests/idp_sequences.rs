//! What Okta and Entra ID really send, in the order they send it, against a real server.

mod common;

use common::*;
use serde_json::{json, Value};

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/../protocol/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("json")
}

fn operations(name: &str) -> Value {
    fixture(name)["request"]["Operations"].clone()
}

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

async fn okta_provisions_updates_deactivates_and_pushes_groups(backend: Backend) {
    let server = TestServer::start(backend).await;
    let okta = server
        .create_connection(json!({"customer_id": "acme", "identity_provider": "okta"}))
        .await;
    let lookup =
        "/Users?filter=userName%20eq%20%22test.user%40okta.local%22&startIndex=1&count=100";

    let (status, list) = okta.get(lookup).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            list["totalResults"].clone(),
            list["itemsPerPage"].clone(),
            list["startIndex"].clone()
        ),
        (json!(0), json!(0), json!(1))
    );
    assert_eq!(list["Resources"], json!([]));

    let (status, created) = okta
        .post("/Users", fixture("idp_resources/okta_create_user.json"))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(
        created.get("password").is_none(),
        "passwords are never returned"
    );
    assert_eq!(
        created["meta"]["location"],
        okta.url(&format!("/Users/{id}"))
    );

    let (_, list) = okta.get(lookup).await;
    assert_eq!(
        (list["totalResults"].clone(), list["itemsPerPage"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(list["Resources"][0]["id"], id.as_str());

    let mut put = fixture("idp_resources/okta_put_user.json");
    put["id"] = json!(id);
    let (status, replaced) = okta.put(&format!("/Users/{id}"), put).await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["name"]["middleName"], "Excited");
    assert_eq!(
        replaced["id"],
        id.as_str(),
        "the id in the body cannot change the resource's id"
    );
    assert!(
        replaced.get("externalId").is_none(),
        "PUT replaces: absent attributes are cleared"
    );

    let (status, deactivated) = okta
        .patch(
            &format!("/Users/{id}"),
            operations("idp_patch/22_okta_deactivate_user.json"),
        )
        .await;
    assert_eq!(
        status, 200,
        "PATCH answers 200 with the resource: {deactivated}"
    );
    assert_eq!(deactivated["active"], false);
    let (status, still) = okta.get(&format!("/Users/{id}")).await;
    assert_eq!(
        (status, still["active"].clone()),
        (200, json!(false)),
        "inactive users stay readable"
    );
    let (_, inactive) = okta.get("/Users?filter=active%20eq%20false").await;
    assert_eq!(inactive["totalResults"], 1, "and filterable");

    let (_, other) = okta.post("/Users", user("second.user@okta.local")).await;
    let other_id = other["id"].as_str().expect("id").to_owned();

    let (_, groups) = okta
        .get("/Groups?filter=displayName%20eq%20%22Test%20SCIMv2%22&startIndex=1&count=100")
        .await;
    assert_eq!(groups["totalResults"], 0);
    let mut body = fixture("idp_resources/okta_create_group.json");
    body["members"] = json!([{"value": id, "display": "test.user@okta.local"}]);
    let (status, group) = okta.post("/Groups", body).await;
    assert_eq!(status, 201, "{group}");
    let gid = group["id"].as_str().expect("id").to_owned();
    assert_eq!(member_ids(&group), vec![id.clone()]);
    assert_eq!(group["members"][0]["type"], "User");

    let (status, renamed) = okta
        .patch(
            &format!("/Groups/{gid}"),
            json!([{"op": "replace", "value": {"id": gid, "displayName": "Renamed"}}]),
        )
        .await;
    assert_eq!(
        (status, renamed["displayName"].clone()),
        (200, json!("Renamed"))
    );

    let ops = json!([
        {"op": "remove", "path": format!("members[value eq \"{id}\"]")},
        {"op": "add", "path": "members", "value": [{"value": other_id, "display": "second"}]}
    ]);
    let (status, swapped) = okta.patch(&format!("/Groups/{gid}"), ops).await;
    assert_eq!(status, 200, "{swapped}");
    assert_eq!(member_ids(&swapped), vec![other_id.clone()]);

    let mut both = vec![id.clone(), other_id.clone()];
    both.sort();
    let (status, put_group) = okta
        .put(
            &format!("/Groups/{gid}"),
            common::group("Renamed", &[&id, &other_id]),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(member_ids(&put_group), both);
    let (_, put_group) = okta
        .put(&format!("/Groups/{gid}"), common::group("Renamed", &[&id]))
        .await;
    assert_eq!(
        member_ids(&put_group),
        vec![id.clone()],
        "PUT replaces the membership exactly"
    );

    let (_, with_groups) = okta.get(&format!("/Users/{id}")).await;
    assert_eq!(
        with_groups["groups"][0]["value"],
        gid.as_str(),
        "users list the groups they are in"
    );
}

async fn entra_id_tests_the_connection_then_provisions_with_its_own_patch_shapes(backend: Backend) {
    let server = TestServer::start(backend).await;
    let entra = server
        .create_connection(json!({"customer_id": "contoso", "identity_provider": "entra_id"}))
        .await;
    assert!(
        entra.base_url.ends_with("?aadOptscim062020"),
        "{}",
        entra.base_url
    );

    let guid = uuid::Uuid::new_v4();
    let url = format!(
        "{}/Users?aadOptscim062020&filter=userName+eq+%22{guid}%22",
        entra.base_url.split('?').next().unwrap_or_default()
    );
    let response = entra
        .client
        .get(url)
        .bearer_auth(&entra.key)
        .send()
        .await
        .expect("send");
    let (status, list) = read(response).await;
    assert_eq!(status, 200, "the connection test must get 200: {list}");
    assert_eq!(list["totalResults"], 0);
    assert_eq!(list["Resources"], json!([]));

    let body = fixture("idp_resources/entra_create_user.json");
    let external_id = body["externalId"].as_str().expect("externalId").to_owned();
    let (status, created) = entra.post("/Users", body).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let (_, found) = entra
        .get(&format!(
            "/Users?filter=externalId%20eq%20%22{external_id}%22"
        ))
        .await;
    assert_eq!(found["totalResults"], 1);

    for file in [
        "idp_patch/01_entra_disable_user_active_string_False.json",
        "idp_patch/03_entra_replace_multiple_attributes.json",
        "idp_patch/07_entra_aadOptscim062020_replace_multiple_attributes.json",
        "idp_patch/16_entra_pathless_flattened_keys.json",
    ] {
        let (status, patched) = entra.patch(&format!("/Users/{id}"), operations(file)).await;
        assert_eq!(status, 200, "{file}: {patched}");
    }
    let (_, user) = entra.get(&format!("/Users/{id}")).await;
    assert_eq!(
        user["active"], true,
        "16 sets active \"True\" after 01 set \"False\""
    );
    assert_eq!(user["name"]["givenName"], "Barbara");
    assert_eq!(user["displayName"], "Bjfe");
    assert_eq!(user["externalId"], "Eqpj");
    assert_eq!(user[ENTERPRISE]["employeeNumber"], "Aklq");
    assert_eq!(
        user[ENTERPRISE]["manager"]["value"],
        "26118915-6090-4610-87e4-49d8ca9f808d"
    );
    let work: Vec<&Value> = user["emails"]
        .as_array()
        .expect("emails")
        .iter()
        .filter(|e| e["type"] == "work")
        .collect();
    assert_eq!(work.len(), 1);
    assert_eq!(work[0]["value"], "bjensen@contoso.com");

    let mut ids = Vec::new();
    for i in 0..4 {
        let (_, u) = entra.post("/Users", user_named(i)).await;
        ids.push(u["id"].as_str().expect("id").to_owned());
    }
    let (status, group) = entra
        .post("/Groups", fixture("idp_resources/entra_create_group.json"))
        .await;
    assert_eq!(status, 201, "{group}");
    let gid = group["id"].as_str().expect("id").to_owned();

    let add: Vec<Value> = ids
        .iter()
        .chain([&id])
        .map(|m| json!({"$ref": null, "value": m}))
        .collect();
    let (status, group) = entra
        .patch(
            &format!("/Groups/{gid}"),
            json!([{"op": "Add", "path": "members", "value": add}]),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(member_ids(&group).len(), 5);

    let remove = json!([{"op": "Remove", "path": "members", "value": [{"value": ids[0]}, {"value": ids[1]}]}]);
    let (_, group) = entra.patch(&format!("/Groups/{gid}"), remove).await;
    let mut expected = vec![ids[2].clone(), ids[3].clone(), id.clone()];
    expected.sort();
    assert_eq!(
        member_ids(&group),
        expected,
        "a Remove with a value list removes exactly those members"
    );

    let (status, _) = entra
        .patch(
            &format!("/Groups/{gid}"),
            json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", ids[2])}]),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = entra.delete(&format!("/Users/{}", ids[3])).await;
    assert_eq!(status, 204);
    let (status, gone) = entra.get(&format!("/Users/{}", ids[3])).await;
    assert_eq!(status, 404);
    assert_eq!(
        gone["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    let (_, group) = entra.get(&format!("/Groups/{gid}")).await;
    assert_eq!(
        member_ids(&group),
        vec![id.clone()],
        "deleting a user removes its memberships"
    );

    let (_, excluded) = entra
        .get(&format!("/Groups/{gid}?excludedAttributes=members"))
        .await;
    assert!(excluded.get("members").is_none());
    assert_eq!(excluded["displayName"], "displayName");
}

fn user_named(i: usize) -> Value {
    user(&format!("member{i}@contoso.com"))
}

async fn unknown_members_are_skipped_and_logged_or_refused_when_strict(backend: Backend) {
    let server = TestServer::start(backend).await;
    let lenient = server.connection("lenient").await;
    let (_, u) = lenient.post("/Users", user("real")).await;
    let real = u["id"].as_str().expect("id").to_owned();
    let (status, group) = lenient
        .post("/Groups", common::group("G", &[&real, "fake-member-id"]))
        .await;
    assert_eq!(status, 201);
    assert_eq!(member_ids(&group), vec![real.clone()]);
    // The request log is written in the background, a moment after each response.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let entry = loop {
        let log: Value = server
            .mgmt(
                reqwest::Method::GET,
                &format!("/v1/connections/{}/requests", lenient.id),
            )
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        let found = log["requests"]
            .as_array()
            .expect("requests")
            .iter()
            .find(|r| r["method"] == "POST" && r["path"] == "/Groups")
            .cloned();
        if let Some(entry) = found {
            break entry;
        }
        assert!(std::time::Instant::now() < deadline, "not logged: {log}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(
        entry["warnings"][0]
            .as_str()
            .expect("warning")
            .contains("fake-member-id"),
        "{entry}"
    );

    let strict = server
        .create_connection(json!({"customer_id": "strict", "strict_members": true}))
        .await;
    let (status, error) = strict
        .post("/Groups", common::group("G", &["fake-member-id"]))
        .await;
    assert_eq!(status, 400);
    assert_eq!(error["scimType"], "invalidValue");
    assert!(error["detail"]
        .as_str()
        .expect("detail")
        .contains("fake-member-id"));
}

async fn large_groups_answer_patch_without_their_members(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        Options {
            patch_response_member_limit: 3,
            ..Options::default()
        },
    )
    .await;
    let c = server.connection("big").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (_, u) = c.post("/Users", user(&format!("big{i}"))).await;
        ids.push(u["id"].as_str().expect("id").to_owned());
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let (_, g) = c.post("/Groups", common::group("Big", &refs[..3])).await;
    let gid = g["id"].as_str().expect("id").to_owned();
    let add =
        json!([{"op": "add", "path": "members", "value": [{"value": ids[3]}, {"value": ids[4]}]}]);
    let (status, patched) = c.patch(&format!("/Groups/{gid}"), add).await;
    assert_eq!(status, 200);
    assert!(patched.get("members").is_none(), "{patched}");
    assert_eq!(patched["displayName"], "Big");
    let (_, full) = c.get(&format!("/Groups/{gid}")).await;
    assert_eq!(member_ids(&full).len(), 5, "GET still returns every member");
    let (_, small) = c.patch(&format!("/Groups/{gid}"), json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", ids[0])}, {"op": "remove", "path": format!("members[value eq \"{}\"]", ids[1])}])).await;
    assert_eq!(
        member_ids(&small).len(),
        3,
        "at the limit the members are returned"
    );
}

async fn plain_json_is_accepted_and_the_root_search_spans_both_types(backend: Backend) {
    let server = TestServer::start(backend).await;
    let c = server.connection("search").await;
    let response = c
        .client
        .post(c.url("/Users"))
        .bearer_auth(&c.key)
        .json(&user("plain.json"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 201, "application/json is accepted");
    assert_eq!(
        response.headers()["content-type"],
        "application/scim+json",
        "answers use the SCIM media type"
    );
    c.post("/Groups", common::group("plain group", &[])).await;

    let search = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "userName sw \"plain\" or displayName sw \"plain\"", "startIndex": 1, "count": 10});
    let (status, found) = c.post("/.search", search).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["totalResults"], 2);
    let types: Vec<&str> = found["Resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["meta"]["resourceType"].as_str())
        .collect();
    assert_eq!(types, ["User", "Group"]);
    let (_, second) = c.post("/.search", json!({"filter": "userName sw \"plain\" or displayName sw \"plain\"", "startIndex": 2, "count": 10})).await;
    assert_eq!(second["Resources"].as_array().map(Vec::len), Some(1));
    assert_eq!(second["Resources"][0]["meta"]["resourceType"], "Group");
}

on_both_backends!(
    okta_provisions_updates_deactivates_and_pushes_groups,
    entra_id_tests_the_connection_then_provisions_with_its_own_patch_shapes,
    unknown_members_are_skipped_and_logged_or_refused_when_strict,
    large_groups_answer_patch_without_their_members,
    plain_json_is_accepted_and_the_root_search_spans_both_types,
);
