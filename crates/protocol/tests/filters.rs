//! Every filter printed in RFC 7644 §3.4.2.2 and the IdP documentation, the invalid forms
//! that must be refused, and evaluation against the RFC 7643 §8 example resources.

use scimgate_protocol::{normalize, Filter, NormalizeOptions, ParseLimits, SchemaRegistry};
use serde_json::{json, Value};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn valid_filters() -> Vec<String> {
    fixture("rfc7644_filters.txt")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

fn invalid_filters() -> Vec<(String, String)> {
    fixture("rfc7644_filters_invalid.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('\t'))
        .map(|l| {
            let (filter, reason) = l.rsplit_once('\t').expect("tab");
            (filter.to_owned(), reason.to_owned())
        })
        .collect()
}

#[test]
fn every_documented_filter_parses_and_prints_back_to_the_same_ast() {
    let filters = valid_filters();
    assert_eq!(filters.len(), 42, "the fixture holds 42 filters");
    for text in filters {
        let ast = Filter::parse(&text).unwrap_or_else(|e| panic!("{text:?} must parse: {e}"));
        let printed = ast.to_string();
        let again = Filter::parse(&printed)
            .unwrap_or_else(|e| panic!("printed {printed:?} must parse: {e}"));
        assert_eq!(ast, again, "{text:?} printed as {printed:?}");
    }
}

#[test]
fn documented_filters_are_meaningful_for_their_resource_type() {
    let registry = SchemaRegistry::standard();
    let users = registry.view("User").expect("User");
    let groups = registry.view("Group").expect("Group");
    for text in valid_filters() {
        let ast = Filter::parse(&text).expect("parses");
        let on_users = ast.validate(&users);
        let on_groups = ast.validate(&groups);
        assert!(
            on_users.is_ok() || on_groups.is_ok(),
            "{text:?}: users {on_users:?}, groups {on_groups:?}"
        );
    }
}

#[test]
fn every_invalid_filter_is_refused_with_a_position_inside_the_input() {
    let cases = invalid_filters();
    assert_eq!(cases.len(), 60, "the fixture holds 60 invalid filters");
    for (text, reason) in cases {
        match Filter::parse(&text) {
            Ok(ast) => panic!("{text:?} ({reason}) parsed as {ast:?}"),
            Err(e) => {
                assert!(
                    e.position <= text.len(),
                    "{text:?}: position {} beyond {}",
                    e.position,
                    text.len()
                );
                assert!(!e.message.is_empty(), "{text:?}: empty message");
            }
        }
    }
}

#[test]
fn parse_errors_name_the_position_and_what_was_expected() {
    let e = Filter::parse(r#"userName eq "bjensen" and"#).unwrap_err();
    assert_eq!(e.position, r#"userName eq "bjensen" and"#.len());
    assert!(e.message.contains("end of the filter"), "{}", e.message);

    let e = Filter::parse(r#"userName xx "bjensen""#).unwrap_err();
    assert_eq!(e.position, 9);
    assert!(e.message.contains("xx"), "{}", e.message);

    let e = Filter::parse(r#"emails[type eq "work""#).unwrap_err();
    assert!(e.message.contains("']'"), "{}", e.message);

    let e = Filter::parse(r#"title pr "x""#).unwrap_err();
    assert_eq!(e.position, 9);
}

#[test]
fn limits_bound_length_and_depth() {
    let deep = format!("{}userName pr{}", "(".repeat(40), ")".repeat(40));
    let e = Filter::parse(&deep).unwrap_err();
    assert!(e.message.contains("deep"), "{}", e.message);

    let nots = format!("{}userName pr", "not (".repeat(33));
    assert!(Filter::parse(&nots).is_err());

    let long = vec![r#"userName eq "a""#; 1000].join(" or ");
    let e = Filter::parse(&long).unwrap_err();
    assert_eq!(e.position, 8192);

    let generous = ParseLimits {
        max_len: 1 << 20,
        max_depth: 64,
    };
    let ast =
        scimgate_protocol::filter::parse_filter(&long, &generous).expect("within generous limits");
    match ast {
        Filter::Or(items) => assert_eq!(items.len(), 1000, "or chains are flat, not nested"),
        other => panic!("expected a flat or, got {other:?}"),
    }
}

fn rfc_user() -> Value {
    let registry = SchemaRegistry::standard();
    let users = registry.view("User").expect("User");
    let raw: Value =
        serde_json::from_str(&fixture("rfc7643_resources/enterprise_user.json")).expect("json");
    let mut user = normalize(&raw, &users, NormalizeOptions::default()).expect("normalizes");
    user["id"] = raw["id"].clone();
    user["meta"] = raw["meta"].clone();
    user
}

#[test]
fn filters_evaluate_against_the_rfc_enterprise_user() {
    let registry = SchemaRegistry::standard();
    let users = registry.view("User").expect("User");
    let user = rfc_user();
    let table: &[(&str, bool)] = &[
        (r#"userName eq "bjensen@example.com""#, true),
        (r#"USERNAME EQ "BJENSEN@EXAMPLE.COM""#, true),
        (r#"userName ne "bjensen@example.com""#, false),
        (r#"name.familyName co "ens""#, true),
        (r#"name.familyName co "ENS""#, true),
        (r#"userName sw "bj""#, true),
        (r#"userName ew "example.com""#, true),
        (r#"userName sw "x""#, false),
        ("title pr", true),
        ("nickName pr", true),
        ("x509Certificates pr", true),
        ("ims pr", true),
        ("entitlements pr", false),
        ("active eq true", true),
        ("active eq false", false),
        ("active ne false", true),
        (r#"meta.lastModified gt "2011-05-13T04:42:34Z""#, false),
        (r#"meta.lastModified ge "2011-05-13T04:42:34Z""#, true),
        (r#"meta.lastModified lt "2011-05-13T06:42:34+02:00""#, false),
        (r#"meta.lastModified gt "2011-05-13T06:42:33+02:00""#, true),
        (r#"meta.created lt "2010-01-24T00:00:00Z""#, true),
        (r#"meta.resourceType eq "User""#, true),
        (
            r#"emails[type eq "work" and value co "@example.com"]"#,
            true,
        ),
        (
            r#"emails[type eq "home" and value co "@example.com"]"#,
            false,
        ),
        (r#"emails[type eq "work" and primary eq true]"#, true),
        (r#"emails[type eq "home" and primary eq true]"#, false),
        (r#"emails co "jensen.org""#, true),
        (r#"emails.value ew "@jensen.org""#, true),
        (r#"emails.type eq "other""#, false),
        (r#"not (emails.type eq "other")"#, true),
        (
            r#"addresses[type eq "work" and (postalCode eq "91608" or region eq "NY")]"#,
            true,
        ),
        (
            r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
            true,
        ),
        (
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
            false,
        ),
        (
            r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
            true,
        ),
        (
            r#"emails[type eq "work"].value eq "bjensen@example.com""#,
            true,
        ),
        (
            r#"emails[type eq "home"].value eq "bjensen@example.com""#,
            false,
        ),
        (
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984""#,
            true,
        ),
        (
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "26118915-6090-4610-87e4-49d8ca9f808d""#,
            true,
        ),
        (
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "bjensen""#,
            true,
        ),
        (r#"employeeNumber eq "701984""#, true),
        (r#"id eq "2819c223-7f76-453a-919d-413861904646""#, true),
        (r#"id eq "2819C223-7F76-453A-919D-413861904646""#, false),
        (r#"externalId eq "701984""#, true),
        (r#"noSuchAttribute eq "x""#, false),
        ("noSuchAttribute pr", false),
        (r#"not (noSuchAttribute eq "x")"#, true),
    ];
    for (text, expected) in table {
        let filter = Filter::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        filter
            .validate(&users)
            .unwrap_or_else(|e| panic!("{text}: {e:?}"));
        assert_eq!(filter.matches(&user, &users), *expected, "{text}");
    }
}

#[test]
fn case_exact_attributes_compare_exactly() {
    let registry = SchemaRegistry::standard();
    let users = registry.view("User").expect("User");
    let user = json!({"id": "AbC", "externalId": "Ext-1", "userName": "Alice"});
    let table: &[(&str, bool)] = &[
        (r#"id eq "AbC""#, true),
        (r#"id eq "abc""#, false),
        (r#"externalId eq "Ext-1""#, true),
        (r#"externalId eq "ext-1""#, false),
        (r#"externalId sw "Ext""#, true),
        (r#"userName eq "alice""#, true),
    ];
    for (text, expected) in table {
        let filter = Filter::parse(text).expect("parses");
        assert_eq!(filter.matches(&user, &users), *expected, "{text}");
    }
}

#[test]
fn comparisons_that_make_no_sense_for_the_type_are_invalid_filters() {
    let registry = SchemaRegistry::standard();
    let users = registry.view("User").expect("User");
    for text in [
        "active gt true",
        r#"active eq "yes""#,
        r#"meta.lastModified gt "yesterday""#,
        r#"name eq "Barbara""#,
        r#"userName[value eq "x"]"#,
        r#"emails[type eq "work" and primary gt false]"#,
    ] {
        let filter = Filter::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let err = filter.validate(&users).expect_err(text);
        assert_eq!(err.status, 400, "{text}");
        assert_eq!(
            err.scim_type.map(|t| t.as_str()),
            Some("invalidFilter"),
            "{text}"
        );
    }
}

#[test]
fn group_member_filters_evaluate_against_the_rfc_group() {
    let registry = SchemaRegistry::standard();
    let groups = registry.view("Group").expect("Group");
    let raw: Value = serde_json::from_str(&fixture("rfc7643_resources/group.json")).expect("json");
    let mut group = normalize(&raw, &groups, NormalizeOptions::default()).expect("normalizes");
    group["id"] = raw["id"].clone();
    let table: &[(&str, bool)] = &[
        (r#"displayName eq "tour guides""#, true),
        (
            r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#,
            true,
        ),
        // RFC 7643 §8.7.1 declares members.value caseExact false.
        (
            r#"members[value eq "2819C223-7F76-453A-919D-413861904646"]"#,
            true,
        ),
        (r#"members.display co "Pepperidge""#, true),
        (r#"members[value eq "nope"] or displayName sw "Tour""#, true),
    ];
    for (text, expected) in table {
        let filter = Filter::parse(text).expect("parses");
        filter
            .validate(&groups)
            .unwrap_or_else(|e| panic!("{text}: {e:?}"));
        assert_eq!(filter.matches(&group, &groups), *expected, "{text}");
    }
}

#[test]
fn string_literals_decode_json_escapes() {
    let filter =
        Filter::parse(r#"displayName eq "Tab\there \"quoted\" \u00e9\\""#).expect("parses");
    let registry = SchemaRegistry::standard();
    let users = registry.view("User").expect("User");
    let user = json!({"displayName": "Tab\there \"quoted\" é\\"});
    assert!(filter.matches(&user, &users));
    let again = Filter::parse(&filter.to_string()).expect("printed form parses");
    assert_eq!(filter, again);
}

#[test]
fn number_literals_print_back_exactly() {
    for text in [
        "het le 114444444444.54444404445",
        "x gt 1e-7",
        "x eq -0.1",
        "x lt 12345678901234567890",
    ] {
        let filter = Filter::parse(text).expect("parses");
        assert_eq!(
            Filter::parse(&filter.to_string()).expect("printed form parses"),
            filter,
            "{text}"
        );
    }
}
