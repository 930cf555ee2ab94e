//! The RFC 7643 §8 example resources and the IdP request bodies through normalisation, the
//! lenient shapes, projection, sorting and the schema documents.

use scimgate_protocol::projection::sort_resources;
use scimgate_protocol::resource::{check_immutable, check_required};
use scimgate_protocol::{
    normalize, AttrPath, NormalizeOptions, Projection, SchemaRegistry, ENTERPRISE_USER_SCHEMA,
};
use serde_json::{json, Value};

fn read_json(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const LENIENT: NormalizeOptions = NormalizeOptions { lenient: true };
const STRICT: NormalizeOptions = NormalizeOptions { lenient: false };

#[test]
fn rfc_examples_normalize_in_both_modes_without_losing_writable_data() {
    let registry = SchemaRegistry::standard();
    for (file, target) in [
        ("rfc7643_resources/minimal_user.json", "User"),
        ("rfc7643_resources/full_user.json", "User"),
        ("rfc7643_resources/enterprise_user.json", "User"),
        ("rfc7643_resources/group.json", "Group"),
    ] {
        let rs = registry.view(target).expect("resource type");
        let raw = read_json(file);
        let strict = normalize(&raw, &rs, STRICT).unwrap_or_else(|e| panic!("{file}: {e:?}"));
        let lenient = normalize(&raw, &rs, LENIENT).unwrap_or_else(|e| panic!("{file}: {e:?}"));
        assert_eq!(strict, lenient, "{file}");
        check_required(&strict, &rs).unwrap_or_else(|e| panic!("{file}: {e:?}"));
        for (key, value) in raw.as_object().expect("object") {
            match key.as_str() {
                "id" | "meta" | "groups" => assert!(
                    strict.get(key).is_none(),
                    "{file}: read-only {key} is dropped"
                ),
                ENTERPRISE_USER_SCHEMA => {
                    let mut expected = value.clone();
                    expected["manager"]
                        .as_object_mut()
                        .map(|m| m.remove("displayName"));
                    assert_eq!(
                        strict[key], expected,
                        "{file}: manager.displayName is read-only"
                    );
                }
                _ => assert_eq!(&strict[key], value, "{file}: {key}"),
            }
        }
        assert_eq!(
            normalize(&strict, &rs, STRICT).expect("idempotent"),
            strict,
            "{file}"
        );
    }
}

#[test]
fn idp_bodies_normalize_leniently() {
    let registry = SchemaRegistry::standard();
    for (file, target) in [
        ("idp_resources/okta_create_user.json", "User"),
        ("idp_resources/okta_put_user.json", "User"),
        ("idp_resources/okta_create_group.json", "Group"),
        ("idp_resources/okta_put_group.json", "Group"),
        ("idp_resources/entra_create_user.json", "User"),
        ("idp_resources/entra_create_user_with_nulls.json", "User"),
        ("idp_resources/entra_create_group.json", "Group"),
    ] {
        let rs = registry.view(target).expect("resource type");
        let out =
            normalize(&read_json(file), &rs, LENIENT).unwrap_or_else(|e| panic!("{file}: {e:?}"));
        check_required(&out, &rs).unwrap_or_else(|e| panic!("{file}: {e:?}"));
        assert!(
            out.get("id").is_none() && out.get("meta").is_none(),
            "{file}"
        );
    }

    let users = registry.view("User").expect("User");
    let entra = normalize(
        &read_json("idp_resources/entra_create_user.json"),
        &users,
        LENIENT,
    )
    .expect("normalizes");
    assert_eq!(entra["active"], true);
    assert!(entra.get("roles").is_none(), "an empty array means absent");
    assert_eq!(
        entra["schemas"].as_array().map(Vec::len),
        Some(2),
        "the declared extension stays declared"
    );

    let okta = normalize(
        &read_json("idp_resources/okta_create_user.json"),
        &users,
        LENIENT,
    )
    .expect("normalizes");
    assert_eq!(
        okta["password"],
        read_json("idp_resources/okta_create_user.json")["password"],
        "password is stored"
    );
    assert!(okta.get("groups").is_none(), "groups is read-only on users");

    let nulls = normalize(
        &read_json("idp_resources/entra_create_user_with_nulls.json"),
        &users,
        LENIENT,
    )
    .expect("normalizes");
    for v in nulls.as_object().expect("object").values() {
        assert!(!v.is_null(), "explicit nulls are dropped: {nulls}");
    }
}

#[test]
fn names_are_case_insensitive_on_input_and_canonical_on_output() {
    let registry = SchemaRegistry::standard();
    let users = registry.view("User").expect("User");
    let input = json!({
        "SCHEMAS": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE_USER_SCHEMA],
        "USERNAME": "bjensen",
        "Name": {"GIVENNAME": "Barbara"},
        "EMAILS": [{"VALUE": "b@x.org", "Type": "work"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user": {"EmployeeNumber": "7"}
    });
    let out = normalize(&input, &users, STRICT).expect("normalizes");
    assert_eq!(
        out,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE_USER_SCHEMA],
            "userName": "bjensen",
            "name": {"givenName": "Barbara"},
            "emails": [{"value": "b@x.org", "type": "work"}],
            ENTERPRISE_USER_SCHEMA: {"employeeNumber": "7"}
        })
    );
}

#[test]
fn lenient_mode_accepts_what_idps_send() {
    let registry = SchemaRegistry::standard();
    let users = registry.view("User").expect("User");
    let input = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "b",
        "active": "False",
        "nickName": "",
        "emails": {"value": "b@x.org", "primary": "True"},
        "phoneNumbers": [{"value": "1", "primary": true}, {"value": "2", "primary": true}]
    });
    let out = normalize(&input, &users, LENIENT).expect("lenient accepts");
    assert_eq!(out["active"], false);
    assert!(out.get("nickName").is_none());
    assert_eq!(
        out["emails"],
        json!([{"value": "b@x.org", "primary": true}])
    );
    assert_eq!(
        out["phoneNumbers"][1]["primary"], false,
        "the first primary wins"
    );

    let err = normalize(&input, &users, STRICT).expect_err("strict refuses");
    assert_eq!(err.scim_type.map(|t| t.as_str()), Some("invalidValue"));
    assert!(err.detail.contains("active"), "{}", err.detail);
}

#[test]
fn errors_carry_the_scim_type_and_name_the_attribute() {
    let registry = SchemaRegistry::standard();
    let users = registry.view("User").expect("User");
    let core = "urn:ietf:params:scim:schemas:core:2.0:User";
    let cases: &[(Value, &str, &str)] = &[
        (json!([1, 2]), "invalidSyntax", "object"),
        (
            json!({"schemas": [core], "userName": "b", "name": {"givenName": {"first": "b"}}}),
            "invalidValue",
            "name.givenName",
        ),
        (
            json!({"schemas": [core], "userName": "b", "active": "sometimes"}),
            "invalidValue",
            "active",
        ),
        (
            json!({"schemas": [core], "userName": "b", "emails": [{"value": {"nested": true}}]}),
            "invalidValue",
            "emails.value",
        ),
        (
            json!({"schemas": [core], "userName": "b", "name": "Barbara"}),
            "invalidValue",
            "name",
        ),
        (
            json!({"schemas": "nope", "userName": "b"}),
            "invalidSyntax",
            "schemas",
        ),
    ];
    for (input, scim_type, names) in cases {
        let err = normalize(input, &users, LENIENT).expect_err(&input.to_string());
        assert_eq!(err.status, 400);
        assert_eq!(
            err.scim_type.map(|t| t.as_str()),
            Some(*scim_type),
            "{input}: {err:?}"
        );
        assert!(
            err.detail.contains(names),
            "{input}: {:?} should name {names}",
            err.detail
        );
    }

    let undeclared = json!({"schemas": [core], "userName": "b", ENTERPRISE_USER_SCHEMA: {"employeeNumber": "1"}});
    let err = normalize(&undeclared, &users, STRICT)
        .expect_err("strict mode wants the extension declared");
    assert!(
        err.detail.contains(ENTERPRISE_USER_SCHEMA),
        "{}",
        err.detail
    );
    let fixed = normalize(&undeclared, &users, LENIENT).expect("lenient mode declares it");
    assert_eq!(fixed["schemas"], json!([core, ENTERPRISE_USER_SCHEMA]));

    let err = normalize(
        &json!({"schemas": [core], "displayName": "x"}),
        &users,
        LENIENT,
    )
    .expect_err("userName is required");
    assert_eq!(err.scim_type.map(|t| t.as_str()), Some("invalidValue"));
    assert!(err.detail.contains("userName"), "{}", err.detail);
}

#[test]
fn unregistered_extensions_are_kept_verbatim_and_must_be_declared() {
    let registry = SchemaRegistry::standard();
    let groups = registry.view("Group").expect("Group");
    let ad = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group";
    let custom = "urn:example:params:scim:schemas:extension:custom:2.0:Group";
    let input = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group", ad, custom],
        "displayName": "G",
        custom: {"Anything": [1, {"goes": null}]}
    });
    let out = normalize(&input, &groups, STRICT).expect("normalizes");
    assert_eq!(out[custom], json!({"Anything": [1, {"goes": null}]}));

    let undeclared = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "G", custom: {"a": 1}});
    let err = normalize(&undeclared, &groups, STRICT).expect_err("undeclared extension");
    assert!(err.detail.contains(custom), "{}", err.detail);
}

#[test]
fn immutable_attributes_cannot_change_on_replace() {
    let registry = SchemaRegistry::standard();
    let groups = registry.view("Group").expect("Group");
    let old = json!({"displayName": "G", "members": [{"value": "u1", "type": "User"}]});
    let same =
        json!({"displayName": "H", "members": [{"value": "u1", "type": "User"}, {"value": "u2"}]});
    check_immutable(&old, &same, &groups).expect("adding members and renaming is fine");
}

#[test]
fn projection_follows_the_returned_characteristic() {
    let registry = SchemaRegistry::standard();
    let users = registry.view("User").expect("User");
    let raw = read_json("rfc7643_resources/enterprise_user.json");
    let mut user = normalize(&raw, &users, LENIENT).expect("normalizes");
    user["id"] = raw["id"].clone();
    user["meta"] = raw["meta"].clone();
    user["groups"] = raw["groups"].clone();

    let all = Projection::default().apply(&user, &users);
    assert!(all.get("password").is_none(), "password is returned never");
    assert_eq!(all["groups"], raw["groups"]);
    assert_eq!(all[ENTERPRISE_USER_SCHEMA], user[ENTERPRISE_USER_SCHEMA]);

    let some = Projection::parse(
        Some("userName,NAME.givenName,emails.value,password"),
        None,
        &users,
    )
    .expect("parses")
    .apply(&user, &users);
    let mut keys: Vec<&str> = some
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, vec!["emails", "id", "name", "schemas", "userName"]);
    assert_eq!(some["name"], json!({"givenName": "Barbara"}));
    assert_eq!(
        some["emails"],
        json!([{"value": "bjensen@example.com"}, {"value": "babs@jensen.org"}])
    );

    let ext = Projection::parse(
        Some(&format!("{ENTERPRISE_USER_SCHEMA}:manager.value")),
        None,
        &users,
    )
    .expect("parses")
    .apply(&user, &users);
    assert_eq!(
        ext[ENTERPRISE_USER_SCHEMA],
        json!({"manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}})
    );

    let excluded = Projection::parse(None, Some("emails,id,name.middleName,groups"), &users)
        .expect("parses")
        .apply(&user, &users);
    assert!(excluded.get("emails").is_none());
    assert!(excluded.get("groups").is_none());
    assert_eq!(excluded["id"], user["id"], "id is returned always");
    assert!(excluded["name"].get("middleName").is_none());
    assert_eq!(excluded["name"]["givenName"], "Barbara");

    let err = Projection::parse(Some("emails[type eq \"work\"]"), None, &users)
        .expect_err("filters are not attribute paths");
    assert_eq!(err.scim_type.map(|t| t.as_str()), Some("invalidPath"));
}

#[test]
fn sorting_is_type_aware_and_puts_missing_values_last() {
    let registry = SchemaRegistry::standard();
    let users = registry.view("User").expect("User");
    let mut list = vec![
        json!({"userName": "b", "meta": {"created": "2020-01-01T00:00:00+05:00"}, "emails": [{"value": "z@x"}, {"value": "a@x", "primary": true}]}),
        json!({"userName": "C", "meta": {"created": "2019-12-31T20:00:00Z"}}),
        json!({"userName": "a", "meta": {"created": "2019-12-31T18:59:00Z"}, "emails": [{"value": "m@x"}]}),
    ];
    let names = |l: &[Value]| {
        l.iter()
            .map(|u| u["userName"].as_str().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
    };

    sort_resources(
        &mut list,
        &AttrPath::parse("userName").expect("path"),
        false,
        &users,
    );
    assert_eq!(
        names(&list),
        ["a", "b", "C"],
        "userName sorts case-insensitively"
    );
    sort_resources(
        &mut list,
        &AttrPath::parse("userName").expect("path"),
        true,
        &users,
    );
    assert_eq!(names(&list), ["C", "b", "a"]);
    sort_resources(
        &mut list,
        &AttrPath::parse("meta.created").expect("path"),
        false,
        &users,
    );
    assert_eq!(names(&list), ["a", "b", "C"], "date-times sort as instants");
    sort_resources(
        &mut list,
        &AttrPath::parse("emails").expect("path"),
        false,
        &users,
    );
    assert_eq!(
        names(&list),
        ["b", "a", "C"],
        "multi-valued sorts by the primary value; missing last"
    );
    sort_resources(
        &mut list,
        &AttrPath::parse("emails").expect("path"),
        true,
        &users,
    );
    assert_eq!(
        names(&list),
        ["C", "a", "b"],
        "RFC 7644 §3.4.2.3: no value sorts last ascending, first descending"
    );
}

#[test]
fn schema_documents_carry_every_characteristic() {
    let registry = SchemaRegistry::standard();
    let docs = serde_json::to_value(registry.schemas()).expect("serializes");
    let user = docs
        .as_array()
        .expect("array")
        .iter()
        .find(|s| s["id"] == "urn:ietf:params:scim:schemas:core:2.0:User")
        .expect("User");
    let user_name = user["attributes"]
        .as_array()
        .expect("attributes")
        .iter()
        .find(|a| a["name"] == "userName")
        .expect("userName");
    for key in [
        "type",
        "multiValued",
        "description",
        "required",
        "caseExact",
        "mutability",
        "returned",
        "uniqueness",
    ] {
        assert!(
            user_name.get(key).is_some(),
            "userName lacks {key}: {user_name}"
        );
    }
    assert_eq!(user_name["uniqueness"], "server");
    assert_eq!(user_name["required"], true);
    let emails = user["attributes"]
        .as_array()
        .expect("attributes")
        .iter()
        .find(|a| a["name"] == "emails")
        .expect("emails");
    let kind = emails["subAttributes"]
        .as_array()
        .expect("subs")
        .iter()
        .find(|a| a["name"] == "type")
        .expect("type");
    assert_eq!(kind["canonicalValues"], json!(["work", "home", "other"]));
    let password = user["attributes"]
        .as_array()
        .expect("attributes")
        .iter()
        .find(|a| a["name"] == "password")
        .expect("password");
    assert_eq!(password["mutability"], "writeOnly");
    assert_eq!(password["returned"], "never");

    let types = serde_json::to_value(registry.resource_types()).expect("serializes");
    let user_type = types
        .as_array()
        .expect("array")
        .iter()
        .find(|t| t["id"] == "User")
        .expect("User type");
    assert_eq!(user_type["endpoint"], "/Users");
    assert_eq!(
        user_type["schemaExtensions"],
        json!([{"schema": ENTERPRISE_USER_SCHEMA, "required": false}])
    );
}
