//! The mapping against realistic Okta and Entra ID users, every validation error, fallbacks,
//! defaults, warnings and role rules.

use scimgate_mapping::{validate, GroupRef, Mapping, WarningCode};
use scimgate_protocol::{apply_patch, normalize, NormalizeOptions, PatchRequest, SchemaRegistry};
use serde_json::{json, Value};

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/../protocol/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("json")
}

fn stored_user(raw: &Value) -> Value {
    let registry = SchemaRegistry::standard();
    let users = registry.view("User").expect("User");
    let mut user = normalize(raw, &users, NormalizeOptions::default()).expect("normalizes");
    user["id"] = json!("u-1");
    user
}

fn errors(mapping: Value) -> Vec<(String, String)> {
    let registry = SchemaRegistry::standard();
    let users = registry.view("User").expect("User");
    match validate(&mapping, &users) {
        Ok(m) => panic!("{mapping} should be invalid, got {m:?}"),
        Err(errors) => errors.into_iter().map(|e| (e.field, e.message)).collect(),
    }
}

#[test]
fn invalid_mappings_name_every_bad_field() {
    let found = errors(json!({
        "user_schema": [
            {"output_field": "email", "input_path": "emails.value", "property_type": {"data_type": "email"}},
            {"output_field": "email", "input_path": "userName", "property_type": {"data_type": "string"}},
            {"output_field": "team", "input_path": "emails[type eq work", "property_type": {"data_type": "string"}},
            {"output_field": "level", "input_path": "title", "property_type": {"data_type": "integer"}, "default_value": "senior"},
            {"output_field": "tier", "input_path": "userType", "property_type": {"data_type": "enum", "values": ["gold", "silver"]}, "default_value": "bronze"},
            {"output_field": "x", "input_path": "favouriteColour", "property_type": {"data_type": "colour"}},
            {"output_field": "9lives", "input_path": "title", "fallback_input_paths": ["name..givenName"], "property_type": {"data_type": "enum"}},
            {"input_path": "title", "surprise": true}
        ],
        "user_id_attribute": "nope[",
        "unmapped_attributes": "keep",
        "group_role_mappings": [{"group": "Admins"}, "admin"],
        "default_role": 3,
        "extra": 1
    }));
    let fields: Vec<&str> = found.iter().map(|(f, _)| f.as_str()).collect();
    for expected in [
        "custom_mapping.user_schema[1].output_field",
        "custom_mapping.user_schema[2].input_path",
        "custom_mapping.user_schema[3].default_value",
        "custom_mapping.user_schema[4].default_value",
        "custom_mapping.user_schema[5].input_path",
        "custom_mapping.user_schema[5].property_type.data_type",
        "custom_mapping.user_schema[6].output_field",
        "custom_mapping.user_schema[6].fallback_input_paths[0]",
        "custom_mapping.user_schema[6].property_type.values",
        "custom_mapping.user_schema[7].output_field",
        "custom_mapping.user_schema[7].surprise",
        "custom_mapping.user_id_attribute",
        "custom_mapping.unmapped_attributes",
        "custom_mapping.group_role_mappings[0].role",
        "custom_mapping.group_role_mappings[1]",
        "custom_mapping.default_role",
        "custom_mapping.extra",
    ] {
        assert!(
            fields.contains(&expected),
            "{expected} missing from {found:#?}"
        );
    }
    let message = |field: &str| {
        found
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        message("custom_mapping.user_schema[1].output_field"),
        "\"email\" is mapped twice"
    );
    assert!(
        message("custom_mapping.user_schema[2].input_path")
            .starts_with("\"emails[type eq work\" is not a valid SCIM path at byte"),
        "{}",
        message("custom_mapping.user_schema[2].input_path")
    );
    assert!(message("custom_mapping.user_schema[3].default_value").contains("whole number"));
    assert!(message("custom_mapping.user_schema[4].default_value").contains("invalid_enum_value"));
    assert!(message("custom_mapping.user_schema[5].input_path").contains("names no attribute"));
}

#[test]
fn the_seed_example_reads_the_manager_with_fallback_default_and_warning() {
    let registry = SchemaRegistry::standard();
    let users = registry.view("User").expect("User");
    let custom = validate(
        &json!({"user_schema": [{
            "output_field": "manager",
            "input_path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
            "fallback_input_paths": ["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:managerId"],
            "property_type": {"data_type": "String"},
            "display_name": "My Manager",
            "description": "Your manager's name",
            "warn_if_missing": true,
            "default_value": "manager@acmeinc.com"
        }]}),
        &users,
    )
    .expect("the seed's mapping is valid");
    let mapping = Mapping::effective("entra_id", Some(&custom));

    let mut with_manager = stored_user(&fixture("idp_resources/entra_create_user.json"));
    let request =
        PatchRequest::parse(&fixture("idp_patch/16_entra_pathless_flattened_keys.json")["request"])
            .expect("parses");
    with_manager = apply_patch(with_manager, &request, &users, NormalizeOptions::default())
        .expect("applies")
        .resource;
    let mapped = mapping.apply(&with_manager, &[], &users);
    assert_eq!(
        mapped.properties["manager"],
        "26118915-6090-4610-87e4-49d8ca9f808d"
    );
    assert!(mapped.warnings.is_empty(), "{:?}", mapped.warnings);
    assert_eq!(mapped.properties["department"], "Tour Operations");
    assert_eq!(mapped.properties["given_name"], "Barbara");
    assert_eq!(mapped.properties["email"], "bjensen@contoso.com");

    let without = stored_user(&fixture("idp_resources/entra_create_user.json"));
    let mapped = mapping.apply(&without, &[], &users);
    assert_eq!(
        mapped.properties["manager"], "manager@acmeinc.com",
        "the default fills in"
    );
    assert_eq!(mapped.warnings.len(), 1);
    assert_eq!(mapped.warnings[0].code, WarningCode::Missing);
    assert!(
        mapped.warnings[0].message.contains("managerId"),
        "{}",
        mapped.warnings[0].message
    );
    assert_eq!(
        mapped.user_key.as_deref(),
        Some("0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"),
        "externalId is the default key"
    );
}

#[test]
fn okta_users_map_through_the_preset() {
    let registry = SchemaRegistry::standard();
    let users = registry.view("User").expect("User");
    let mapping = Mapping::effective("okta", None);
    let user = stored_user(&fixture("idp_resources/okta_create_user.json"));
    let mapped = mapping.apply(&user, &[], &users);
    assert_eq!(mapped.properties["email"], "test.user@okta.local");
    assert_eq!(mapped.properties["given_name"], "Test");
    assert_eq!(mapped.properties["family_name"], "User");
    assert_eq!(mapped.properties["display_name"], "Test User");
    assert!(mapped.properties.get("manager_id").is_none());
    assert!(
        mapped.warnings.is_empty(),
        "preset fields do not warn: {:?}",
        mapped.warnings
    );
    assert_eq!(mapped.roles, Vec::<String>::new());

    let request =
        PatchRequest::parse(&fixture("idp_patch/22_okta_deactivate_user.json")["request"])
            .expect("parses");
    let deactivated = apply_patch(user, &request, &users, NormalizeOptions::default())
        .expect("applies")
        .resource;
    let custom = validate(&json!({"user_schema": [{"output_field": "enabled", "input_path": "active", "property_type": {"data_type": "boolean"}}]}), &users).expect("valid");
    let mapped = Mapping::effective("okta", Some(&custom)).apply(&deactivated, &[], &users);
    assert_eq!(mapped.properties["enabled"], false);
}

#[test]
fn every_type_coerces_or_warns() {
    let registry = SchemaRegistry::standard();
    let users = registry.view("User").expect("User");
    let custom = validate(
        &json!({"user_schema": [
            {"output_field": "active_flag", "input_path": "nickName", "property_type": {"data_type": "boolean"}},
            {"output_field": "badge", "input_path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "property_type": {"data_type": "integer"}},
            {"output_field": "cost", "input_path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter", "property_type": {"data_type": "number"}},
            {"output_field": "start", "input_path": "title", "property_type": {"data_type": "date_time"}},
            {"output_field": "kind", "input_path": "userType", "property_type": {"data_type": "enum", "values": ["Employee", "Contractor"]}},
            {"output_field": "bad_kind", "input_path": "locale", "property_type": {"data_type": "enum", "values": ["Employee"]}, "default_value": "Employee"},
            {"output_field": "all_emails", "input_path": "emails", "property_type": {"data_type": "string_array"}},
            {"output_field": "home_email", "input_path": "emails[type eq \"home\"].value", "property_type": {"data_type": "email"}},
            {"output_field": "profile", "input_path": "name", "property_type": {"data_type": "json"}},
            {"output_field": "broken_email", "input_path": "displayName", "property_type": {"data_type": "email"}}
        ]}),
        &users,
    )
    .expect("valid");
    let user = json!({
        "id": "u", "userName": "u", "nickName": "True", "title": "2024-02-29", "userType": "contractor", "locale": "fr-FR",
        "displayName": "Not An Email",
        "name": {"givenName": "A"},
        "emails": [{"value": "w@x.org", "type": "work"}, {"value": "h@x.org", "type": "home"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "0042", "costCenter": "12.5"}
    });
    let mapped = Mapping::effective("generic", Some(&custom)).apply(&user, &[], &users);
    let p = &mapped.properties;
    assert_eq!(p["active_flag"], true);
    assert_eq!(p["badge"], 42);
    assert_eq!(p["cost"], 12.5);
    assert_eq!(p["start"], "2024-02-29T00:00:00Z");
    assert_eq!(p["kind"], "Contractor");
    assert_eq!(
        p["bad_kind"], "Employee",
        "an invalid value falls back to the default"
    );
    assert_eq!(p["all_emails"], json!(["w@x.org", "h@x.org"]));
    assert_eq!(p["home_email"], "h@x.org");
    assert_eq!(p["profile"], json!({"givenName": "A"}));
    assert!(p.get("broken_email").is_none());
    let codes: Vec<(&str, WarningCode)> = mapped
        .warnings
        .iter()
        .map(|w| (w.field.as_str(), w.code))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("bad_kind", WarningCode::InvalidEnumValue),
            ("broken_email", WarningCode::CoercionFailed)
        ]
    );
}

#[test]
fn roles_follow_group_rules_by_name_or_external_id() {
    let registry = SchemaRegistry::standard();
    let users = registry.view("User").expect("User");
    let custom = validate(
        &json!({
            "group_role_mappings": [{"group": "Admins", "role": "admin"}, {"group": "ext-42", "role": "billing"}, {"group": "Everyone", "role": "admin"}],
            "default_role": "member",
            "user_id_attribute": "userName",
            "unmapped_attributes": "swallow"
        }),
        &users,
    )
    .expect("valid");
    let mapping = Mapping::effective("generic", Some(&custom));
    let admins = GroupRef {
        display_name: Some("ADMINS".into()),
        external_id: None,
    };
    let billing = GroupRef {
        display_name: Some("Finance".into()),
        external_id: Some("ext-42".into()),
    };
    let everyone = GroupRef {
        display_name: Some("Everyone".into()),
        external_id: None,
    };
    assert_eq!(mapping.roles(&[]), vec!["member"]);
    assert_eq!(
        mapping.roles(std::slice::from_ref(&billing)),
        vec!["billing"]
    );
    assert_eq!(
        mapping.roles(&[everyone, billing, admins]),
        vec!["admin", "billing"],
        "rule order, no duplicates"
    );

    let user =
        json!({"id": "u", "userName": "key@x.org", "title": "t", "nickName": "n", "active": true});
    assert_eq!(
        mapping.apply(&user, &[], &users).user_key.as_deref(),
        Some("key@x.org")
    );
    let raw = mapping.raw_view(&user);
    assert!(
        raw.get("nickName").is_none(),
        "swallowed: no field reads it"
    );
    assert_eq!(raw["title"], "t");
    assert_eq!(
        Mapping::effective("generic", None).raw_view(&user),
        user,
        "forward keeps everything"
    );
}
