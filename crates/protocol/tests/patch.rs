//! Every PATCH body of RFC 7644 §3.5.2 and the documented Entra ID and Okta shapes, applied to
//! the RFC 7643 §8 example resources, with the result and the reported changes checked.

use scimgate_protocol::{
    apply_patch, normalize, Change, NormalizeOptions, PatchOutcome, PatchRequest, SchemaRegistry,
};
use serde_json::{json, Value};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const BABS: &str = "2819c223-7f76-453a-919d-413861904646";
const MANDY: &str = "902c246b-6245-4190-8e05-00816be7344a";
const JAMES: &str = "08e1d05d-121c-4561-8b96-473d93df9210";

fn read_json(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn base(target: &str) -> Value {
    let registry = SchemaRegistry::standard();
    let rs = registry.view(target).expect("resource type");
    let raw = match target {
        "User" => read_json("rfc7643_resources/enterprise_user.json"),
        _ => {
            let mut group = read_json("rfc7643_resources/group.json");
            let members = group["members"].as_array_mut().expect("members");
            for extra in [
                "u1091",
                "f648f8d5ea4e4cd38e9c",
                "7f4bc1a3-285e-48ae-8202-5accb43efb0e",
                "89bb1940-b905-4575-9e7f-6f887cfb368e",
            ] {
                members.push(json!({"value": extra}));
            }
            group
        }
    };
    let mut resource = normalize(&raw, &rs, NormalizeOptions::default()).expect("base normalizes");
    resource["id"] = raw["id"].clone();
    resource
}

fn apply(file: &str) -> (Value, PatchOutcome) {
    let fixture = read_json(file);
    let target = fixture["target"].as_str().expect("target");
    let registry = SchemaRegistry::standard();
    let rs = registry.view(target).expect("resource type");
    let request =
        PatchRequest::parse(&fixture["request"]).unwrap_or_else(|e| panic!("{file}: {e:?}"));
    let before = base(target);
    let outcome = apply_patch(before.clone(), &request, &rs, NormalizeOptions::default())
        .unwrap_or_else(|e| panic!("{file}: {e:?}"));
    (before, outcome)
}

fn member_ids(resource: &Value) -> Vec<String> {
    let mut ids: Vec<String> = resource["members"]
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

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

fn without(resource: &Value, removed: &[&str]) -> Vec<String> {
    member_ids(resource)
        .into_iter()
        .filter(|id| !removed.contains(&id.as_str()))
        .collect()
}

fn email(resource: &Value, kind: &str) -> Option<Value> {
    resource["emails"]
        .as_array()?
        .iter()
        .find(|e| e["type"] == kind)
        .map(|e| e["value"].clone())
}

fn changed_paths(outcome: &PatchOutcome) -> Vec<&str> {
    outcome.changes.iter().map(Change::path).collect()
}

fn members_delta(outcome: &PatchOutcome) -> (Vec<String>, Vec<String>) {
    let ids = |vals: &[Value]| {
        let mut v: Vec<String> = vals
            .iter()
            .filter_map(|m| m["value"].as_str().map(str::to_owned))
            .collect();
        v.sort();
        v
    };
    outcome
        .changes
        .iter()
        .find_map(|c| match c {
            Change::Values {
                path,
                added,
                removed,
            } if path == "members" => Some((ids(added), ids(removed))),
            _ => None,
        })
        .unwrap_or_default()
}

#[test]
fn rfc_add_member() {
    let (before, out) = apply("rfc7644_patch/01_add_member.json");
    assert_eq!(
        member_ids(&out.resource),
        member_ids(&before),
        "Babs is already a member; adding again changes nothing"
    );
    assert!(out.changes.is_empty(), "{:?}", out.changes);

    let registry = SchemaRegistry::standard();
    let groups = registry.view("Group").expect("Group");
    let request = PatchRequest::parse(&read_json("rfc7644_patch/01_add_member.json")["request"])
        .expect("parses");
    let empty =
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Empty"});
    let out = apply_patch(empty, &request, &groups, NormalizeOptions::default()).expect("applies");
    assert_eq!(member_ids(&out.resource), vec![BABS.to_owned()]);
    assert_eq!(members_delta(&out), (vec![BABS.to_owned()], vec![]));
}

#[test]
fn rfc_add_without_path() {
    let (before, out) = apply("rfc7644_patch/02_add_emails_and_nickname_no_path.json");
    assert_eq!(out.resource["nickName"], "Babs");
    assert_eq!(
        out.resource["emails"], before["emails"],
        "the home email is already there"
    );
    assert!(out.changes.is_empty(), "{:?}", out.changes);
}

#[test]
fn rfc_remove_single_member() {
    let (before, out) = apply("rfc7644_patch/03_remove_single_member.json");
    assert_eq!(member_ids(&out.resource), without(&before, &[BABS]));
    assert_eq!(members_delta(&out), (vec![], vec![BABS.to_owned()]));
}

#[test]
fn rfc_remove_all_members() {
    let (_, out) = apply("rfc7644_patch/04_remove_all_members.json");
    assert!(out.resource.get("members").is_none(), "{}", out.resource);
    assert_eq!(members_delta(&out).1.len(), 6);
}

#[test]
fn rfc_remove_work_email_by_filter() {
    let (_, out) = apply("rfc7644_patch/05_remove_work_email_by_filter.json");
    assert_eq!(email(&out.resource, "work"), None);
    assert_eq!(email(&out.resource, "home"), Some(json!("babs@jensen.org")));
    assert_eq!(changed_paths(&out), vec!["emails"]);
}

#[test]
fn rfc_remove_and_add_member_even_without_a_space_after_eq() {
    let (before, out) = apply("rfc7644_patch/06_remove_and_add_member.json");
    let mut expected = without(&before, &[BABS]);
    expected.push(JAMES.to_owned());
    expected.sort();
    assert_eq!(member_ids(&out.resource), expected);
    assert_eq!(
        members_delta(&out),
        (vec![JAMES.to_owned()], vec![BABS.to_owned()])
    );
}

#[test]
fn rfc_replace_all_members_two_ways() {
    for file in [
        "rfc7644_patch/07_replace_all_members_with_remove_and_add.json",
        "rfc7644_patch/08_replace_all_members.json",
    ] {
        let (_, out) = apply(file);
        assert_eq!(member_ids(&out.resource), sorted(&[BABS, JAMES]), "{file}");
        let (added, removed) = members_delta(&out);
        assert_eq!(
            added,
            vec![JAMES.to_owned()],
            "{file}: Babs stayed, so only James is new"
        );
        assert_eq!(removed.len(), 5, "{file}: {removed:?}");
        assert!(!removed.contains(&BABS.to_owned()), "{file}");
    }
}

#[test]
fn rfc_replace_work_address() {
    let (before, out) = apply("rfc7644_patch/09_replace_work_address.json");
    let addresses = out.resource["addresses"].as_array().expect("addresses");
    assert_eq!(addresses.len(), 2);
    let work = addresses
        .iter()
        .find(|a| a["type"] == "work")
        .expect("work address");
    assert_eq!(work["streetAddress"], "911 Universal City Plaza");
    assert_eq!(work["country"], "US");
    assert_eq!(work["primary"], true);
    let home = addresses
        .iter()
        .find(|a| a["type"] == "home")
        .expect("home address");
    assert_eq!(
        home,
        before["addresses"]
            .as_array()
            .expect("addresses")
            .iter()
            .find(|a| a["type"] == "home")
            .expect("home")
    );
    assert!(!out.changes.is_empty());
}

#[test]
fn rfc_replace_work_street_address() {
    let (_, out) = apply("rfc7644_patch/10_replace_work_street_address.json");
    let work = out.resource["addresses"]
        .as_array()
        .expect("addresses")
        .iter()
        .find(|a| a["type"] == "work")
        .cloned()
        .expect("work");
    assert_eq!(work["streetAddress"], "1010 Broadway Ave");
    assert_eq!(
        work["locality"], "Hollywood",
        "the other sub-attributes stay"
    );
    match out.changes.as_slice() {
        [Change::Values {
            path,
            added,
            removed,
        }] => {
            assert_eq!(path, "addresses");
            assert_eq!(removed.len(), 1);
            assert_eq!(removed[0]["streetAddress"], "100 Universal City Plaza");
            assert_eq!(added.len(), 1);
            assert_eq!(added[0]["streetAddress"], "1010 Broadway Ave");
        }
        other => panic!("expected one change of addresses, got {other:?}"),
    }
}

#[test]
fn rfc_replace_without_path() {
    let (_, out) = apply("rfc7644_patch/11_replace_emails_and_nickname_no_path.json");
    assert_eq!(out.resource["emails"].as_array().expect("emails").len(), 2);
    assert_eq!(
        email(&out.resource, "work"),
        Some(json!("bjensen@example.com"))
    );
    assert_eq!(out.resource["nickName"], "Babs");
    assert!(
        out.changes.is_empty(),
        "the body restates the current values: {:?}",
        out.changes
    );
}

#[test]
fn entra_active_as_a_string_or_a_boolean() {
    for file in [
        "idp_patch/01_entra_disable_user_active_string_False.json",
        "idp_patch/05_entra_aadOptscim062020_disable_user.json",
        "idp_patch/11_entra_disable_user_boolean.json",
        "idp_patch/22_okta_deactivate_user.json",
    ] {
        let (_, out) = apply(file);
        assert_eq!(out.resource["active"], false, "{file}");
        assert_eq!(
            out.changes,
            vec![Change::Value {
                path: "active".into(),
                old: Some(json!(true)),
                new: Some(json!(false))
            }],
            "{file}"
        );
    }
    let (_, out) = apply("idp_patch/28_okta_activate_user.json");
    assert_eq!(out.resource["active"], true);
    assert!(out.changes.is_empty(), "already active");
}

#[test]
fn entra_add_single_value() {
    for file in [
        "idp_patch/02_entra_add_single_value_attribute.json",
        "idp_patch/06_entra_aadOptscim062020_add_single_value_attribute.json",
    ] {
        let (_, out) = apply(file);
        assert_eq!(out.resource["nickName"], "Babs", "{file}");
        assert!(out.changes.is_empty(), "{file}: nickName already was Babs");
    }
}

#[test]
fn entra_replace_multiple_attributes() {
    let (_, out) = apply("idp_patch/03_entra_replace_multiple_attributes.json");
    let r = &out.resource;
    assert_eq!(r["displayName"], "Pvlo");
    assert_eq!(
        email(r, "work"),
        Some(json!("TestBcwqnm@test.microsoft.com"))
    );
    assert_eq!(r["name"]["givenName"], "Gtfd");
    assert_eq!(r["name"]["familyName"], "Pkqf");
    assert_eq!(r["name"]["middleName"], "Jane", "siblings stay");
    assert_eq!(r["externalId"], "Eqpj");
    assert_eq!(r[ENTERPRISE]["employeeNumber"], "Eqpj");
    assert_eq!(r[ENTERPRISE]["department"], "Tour Operations");
    let paths = changed_paths(&out);
    for expected in [
        "displayName",
        "name.givenName",
        "name.familyName",
        "externalId",
        &format!("{ENTERPRISE}:employeeNumber"),
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {paths:?}"
        );
    }
}

#[test]
fn entra_pathless_value_with_dotted_and_urn_keys() {
    let (_, out) = apply("idp_patch/07_entra_aadOptscim062020_replace_multiple_attributes.json");
    let r = &out.resource;
    assert_eq!(
        email(r, "work"),
        Some(json!("TestMhvaes@test.microsoft.com"))
    );
    assert_eq!(r["displayName"], "Bjfe");
    assert_eq!(r["name"]["givenName"], "Kkom");
    assert_eq!(r["name"]["familyName"], "Unua");
    assert_eq!(r[ENTERPRISE]["employeeNumber"], "Aklq");
    assert!(
        r.get("name.givenName").is_none(),
        "dotted keys are paths, not attribute names"
    );

    let (_, out) = apply("idp_patch/16_entra_pathless_flattened_keys.json");
    let r = &out.resource;
    assert_eq!(
        r[ENTERPRISE]["manager"]["value"],
        "26118915-6090-4610-87e4-49d8ca9f808d"
    );
    assert_eq!(r["name"]["givenName"], "Barbara");
    assert_eq!(email(r, "work"), Some(json!("bjensen@contoso.com")));
    assert_eq!(r[ENTERPRISE]["department"], "Tour Operations");
    assert_eq!(r["active"], true);
}

#[test]
fn entra_remove_members_by_value_list_removes_only_those() {
    let (before, out) = apply("idp_patch/04_entra_remove_member_value_array.json");
    assert_eq!(member_ids(&out.resource), without(&before, &["u1091"]));
    assert_eq!(members_delta(&out), (vec![], vec!["u1091".to_owned()]));

    let (before, out) = apply("idp_patch/14_entra_group_remove_members.json");
    assert_eq!(
        member_ids(&out.resource),
        without(&before, &["f648f8d5ea4e4cd38e9c"])
    );

    let (before, out) = apply("idp_patch/17_entra_remove_some_members_value_array.json");
    assert_eq!(
        member_ids(&out.resource),
        without(&before, &["f648f8d5ea4e4cd38e9c", BABS])
    );
    assert_eq!(member_ids(&out.resource).len(), 4);
}

#[test]
fn remove_members_by_filter() {
    for (file, gone) in [
        (
            "idp_patch/08_entra_aadOptscim062020_remove_member_filter.json",
            "7f4bc1a3-285e-48ae-8202-5accb43efb0e",
        ),
        (
            "idp_patch/27_okta_group_remove_member_by_filter.json",
            "89bb1940-b905-4575-9e7f-6f887cfb368e",
        ),
    ] {
        let (before, out) = apply(file);
        assert_eq!(
            member_ids(&out.resource),
            without(&before, &[gone]),
            "{file}"
        );
        assert_eq!(
            members_delta(&out),
            (vec![], vec![gone.to_owned()]),
            "{file}"
        );
    }
}

#[test]
fn entra_update_user_multivalued_and_username() {
    let (_, out) = apply("idp_patch/09_entra_update_user_multivalued.json");
    assert_eq!(
        email(&out.resource, "work"),
        Some(json!("updatedEmail@microsoft.com"))
    );
    assert_eq!(out.resource["name"]["familyName"], "updatedFamilyName");
    assert_eq!(out.resource["emails"].as_array().expect("emails").len(), 2);

    let (_, out) = apply("idp_patch/10_entra_update_user_username.json");
    assert_eq!(
        out.resource["userName"],
        "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"
    );
    assert_eq!(changed_paths(&out), vec!["userName"]);
}

#[test]
fn group_display_name_replacements() {
    let (_, out) = apply("idp_patch/12_entra_group_replace_displayname.json");
    assert_eq!(
        out.resource["displayName"],
        "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"
    );
    let (before, out) = apply("idp_patch/23_okta_group_replace_displayname.json");
    assert_eq!(out.resource["displayName"], "Test SCIMv2");
    assert_eq!(
        out.resource["id"], before["id"],
        "a read-only id inside a path-less value is ignored"
    );
    assert_eq!(changed_paths(&out), vec!["displayName"]);
}

#[test]
fn member_additions() {
    let (before, out) = apply("idp_patch/13_entra_group_add_members.json");
    assert_eq!(
        member_ids(&out.resource),
        member_ids(&before),
        "f648… already a member"
    );

    let (before, out) = apply("idp_patch/18_entra_add_several_members.json");
    assert_eq!(member_ids(&out.resource), member_ids(&before));
    assert!(out.changes.is_empty());

    let (before, out) = apply("idp_patch/26_okta_group_add_member.json");
    let mut expected = member_ids(&before);
    expected.push("23a35c27-23d3-4c03-b4c5-6443c09e7173".into());
    expected.sort();
    assert_eq!(member_ids(&out.resource), expected);
    assert_eq!(
        members_delta(&out).0,
        vec!["23a35c27-23d3-4c03-b4c5-6443c09e7173".to_owned()]
    );

    let (before, out) = apply("idp_patch/24_okta_group_remove_and_add_member.json");
    let mut expected = without(&before, &["89bb1940-b905-4575-9e7f-6f887cfb368e"]);
    expected.push("23a35c27-23d3-4c03-b4c5-6443c09e7173".into());
    expected.sort();
    assert_eq!(member_ids(&out.resource), expected);

    let (_, out) = apply("idp_patch/25_okta_group_replace_all_members.json");
    assert_eq!(
        member_ids(&out.resource),
        sorted(&[
            "23a35c27-23d3-4c03-b4c5-6443c09e7173",
            "89bb1940-b905-4575-9e7f-6f887cfb368e"
        ])
    );
    assert!(!member_ids(&out.resource).contains(&MANDY.to_owned()));
}

#[test]
fn entra_manager_is_added_from_a_value_array_and_removed_by_urn() {
    let (_, out) = apply("idp_patch/15_entra_add_manager_value_array.json");
    assert_eq!(
        out.resource[ENTERPRISE]["manager"]["value"],
        "00aa00aa-bb11-cc22-dd33-44ee44ee44ee"
    );

    let (_, out) = apply("idp_patch/21_entra_remove_manager.json");
    assert!(
        out.resource[ENTERPRISE].get("manager").is_none(),
        "{}",
        out.resource
    );
    assert_eq!(out.resource[ENTERPRISE]["department"], "Tour Operations");
    assert_eq!(
        changed_paths(&out),
        vec![format!("{ENTERPRISE}:manager").as_str()]
    );
}

#[test]
fn entra_filter_paths_create_entries_they_do_not_find() {
    let (_, out) = apply("idp_patch/19_entra_replace_work_email_and_street_address.json");
    assert_eq!(
        email(&out.resource, "work"),
        Some(json!("bjensen@contoso.com"))
    );

    let registry = SchemaRegistry::standard();
    let users = registry.view("User").expect("User");
    let request = PatchRequest::parse(
        &read_json("idp_patch/20_entra_add_work_email_and_phone_filter_paths.json")["request"],
    )
    .expect("parses");
    let bare =
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "new"});
    let out = apply_patch(bare, &request, &users, NormalizeOptions::default()).expect("applies");
    assert_eq!(
        out.resource["emails"],
        json!([{"value": "bjensen@contoso.com", "type": "work"}])
    );
    assert_eq!(
        out.resource["phoneNumbers"],
        json!([{"value": "555-555-4444", "type": "mobile"}])
    );

    let request = PatchRequest::parse(
        &read_json("idp_patch/19_entra_replace_work_email_and_street_address.json")["request"],
    )
    .expect("parses");
    let bare =
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "new"});
    let out = apply_patch(bare, &request, &users, NormalizeOptions::default())
        .expect("replace on no match acts as add");
    assert_eq!(
        out.resource["addresses"],
        json!([{"streetAddress": "1010 Broadway Ave", "type": "work"}])
    );
}

#[test]
fn okta_password_sync_is_accepted_and_reported_without_the_secret() {
    let (_, out) = apply("idp_patch/29_okta_sync_password.json");
    assert_eq!(out.resource["password"], "1mz050nq");
    assert_eq!(changed_paths(&out), vec!["password"]);
}

fn patch(
    target: &str,
    resource: Value,
    body: Value,
    lenient: bool,
) -> Result<PatchOutcome, scimgate_protocol::ScimError> {
    let registry = SchemaRegistry::standard();
    let rs = registry.view(target).expect("resource type");
    let request = PatchRequest::parse(&body)?;
    apply_patch(resource, &request, &rs, NormalizeOptions { lenient })
}

fn ops(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

#[test]
fn rfc_error_rules() {
    let user = base("User");
    let cases: &[(Value, bool, u16, &str)] = &[
        (
            ops(json!([{"op": "replace", "path": "id", "value": "x"}])),
            true,
            400,
            "mutability",
        ),
        (
            ops(json!([{"op": "add", "path": "groups", "value": [{"value": "g"}]}])),
            true,
            400,
            "mutability",
        ),
        (ops(json!([{"op": "remove"}])), true, 400, "noTarget"),
        (
            ops(json!([{"op": "remove", "path": "emails[type eq \"other\"]"}])),
            false,
            400,
            "noTarget",
        ),
        (
            ops(json!([{"op": "add", "path": "nosuch", "value": 1}])),
            true,
            400,
            "invalidPath",
        ),
        (
            ops(json!([{"op": "add", "path": "name..givenName", "value": "x"}])),
            true,
            400,
            "invalidPath",
        ),
        (
            ops(json!([{"op": "add", "path": "emails[type eq]", "value": "x"}])),
            true,
            400,
            "invalidPath",
        ),
        (
            ops(json!([{"op": "add", "path": "active", "value": "maybe"}])),
            true,
            400,
            "invalidValue",
        ),
        (
            ops(json!([{"op": "add", "path": "nickName"}])),
            true,
            400,
            "invalidSyntax",
        ),
        (
            ops(json!([{"op": "move", "path": "nickName", "value": "x"}])),
            true,
            400,
            "invalidSyntax",
        ),
        (
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]}),
            true,
            400,
            "invalidSyntax",
        ),
        (
            ops(json!([{"op": "add", "path": "userName", "value": ["a", "b"]}])),
            true,
            400,
            "invalidValue",
        ),
        (
            ops(
                json!([{"op": "add", "path": "emails", "value": [{"value": "a@x", "primary": true}, {"value": "b@x", "primary": true}]}]),
            ),
            false,
            400,
            "invalidValue",
        ),
    ];
    for (body, lenient, status, scim_type) in cases {
        let err = patch("User", user.clone(), body.clone(), *lenient).expect_err(&body.to_string());
        assert_eq!(err.status, *status, "{body}: {err:?}");
        assert_eq!(
            err.scim_type.map(|t| t.as_str()),
            Some(*scim_type),
            "{body}: {err:?}"
        );
        assert!(!err.detail.is_empty());
    }
}

#[test]
fn a_failed_patch_leaves_the_input_untouched() {
    let user = base("User");
    let body = ops(json!([
        {"op": "replace", "path": "displayName", "value": "Changed"},
        {"op": "replace", "path": "id", "value": "x"}
    ]));
    let err = patch("User", user.clone(), body, true).expect_err("second op fails");
    assert_eq!(err.scim_type.map(|t| t.as_str()), Some("mutability"));
    assert_eq!(user["displayName"], "Babs Jensen");
}

#[test]
fn empty_and_no_op_patches_report_no_change() {
    let user = base("User");
    let out = patch("User", user.clone(), ops(json!([])), true).expect("empty patch");
    assert!(out.changes.is_empty());
    assert_eq!(out.resource, user);

    let out = patch(
        "User",
        user.clone(),
        ops(json!([{"op": "replace", "path": "displayName", "value": "Babs Jensen"}])),
        true,
    )
    .expect("no-op");
    assert!(out.changes.is_empty());
    let out = patch(
        "User",
        user.clone(),
        ops(json!([{"op": "remove", "path": "entitlements"}])),
        true,
    )
    .expect("removing absent");
    assert!(out.changes.is_empty());
}

#[test]
fn primary_stays_unique() {
    let user = base("User");
    let out = patch("User", user, ops(json!([{"op": "add", "path": "emails", "value": [{"value": "new@x.org", "type": "other", "primary": true}]}])), true).expect("applies");
    let primaries: Vec<&Value> = out.resource["emails"]
        .as_array()
        .expect("emails")
        .iter()
        .filter(|e| e["primary"] == true)
        .collect();
    assert_eq!(primaries.len(), 1);
    assert_eq!(primaries[0]["value"], "new@x.org");
}

#[test]
fn null_sub_attribute_values_mean_removal() {
    let user = base("User");
    let out = patch(
        "User",
        user,
        ops(json!([{"op": "replace", "value": {"name": {"middleName": null}, "title": null}}])),
        true,
    )
    .expect("applies");
    assert!(
        out.resource["name"].get("middleName").is_none(),
        "{}",
        out.resource["name"]
    );
    assert_eq!(out.resource["name"]["givenName"], "Barbara");
    assert!(out.resource.get("title").is_none());
    let paths = changed_paths(&out);
    assert!(
        paths.contains(&"name.middleName") && paths.contains(&"title"),
        "{paths:?}"
    );
}

#[test]
fn extension_paths_and_whole_extension_objects() {
    let user = base("User");
    let out = patch(
        "User",
        user.clone(),
        ops(json!([{"op": "replace", "path": ENTERPRISE, "value": {"costCenter": "9"}}])),
        true,
    )
    .expect("applies");
    assert_eq!(out.resource[ENTERPRISE]["costCenter"], "9");
    assert_eq!(
        out.resource[ENTERPRISE]["department"], "Tour Operations",
        "replace merges into the extension"
    );

    let out = patch(
        "User",
        user.clone(),
        ops(json!([{"op": "remove", "path": ENTERPRISE}])),
        true,
    )
    .expect("applies");
    assert!(out.resource.get(ENTERPRISE).is_none());
    assert!(
        !out.resource["schemas"]
            .as_array()
            .expect("schemas")
            .iter()
            .any(|s| s == ENTERPRISE),
        "schemas no longer lists it"
    );

    let bare = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "x"});
    let out = patch(
        "User",
        bare,
        ops(json!([{"op": "add", "path": format!("{ENTERPRISE}:manager.value"), "value": "m1"}])),
        true,
    )
    .expect("applies");
    assert_eq!(out.resource[ENTERPRISE]["manager"]["value"], "m1");
    assert!(
        out.resource["schemas"]
            .as_array()
            .expect("schemas")
            .iter()
            .any(|s| s == ENTERPRISE),
        "schemas lists the new extension"
    );
}

#[test]
fn op_names_are_case_insensitive_and_single_objects_become_lists() {
    let group =
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "G"});
    let out = patch(
        "Group",
        group,
        ops(json!([{"op": "ADD", "path": "members", "value": {"value": "u1"}}])),
        true,
    )
    .expect("applies");
    assert_eq!(member_ids(&out.resource), vec!["u1".to_owned()]);
}
