//! Any text: parsing never panics; what parses prints back to the same AST, validates and
//! evaluates against real resources without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scimgate_protocol::filter::parse_filter;
use scimgate_protocol::{Filter, ParseLimits, SchemaRegistry};
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(filter) = Filter::parse(text) else {
        return;
    };
    let printed = filter.to_string();
    // Escaping control characters can make the printed form longer than the length limit.
    let no_length_limit = ParseLimits {
        max_len: usize::MAX,
        ..ParseLimits::default()
    };
    let again = parse_filter(&printed, &no_length_limit)
        .unwrap_or_else(|e| panic!("printed form {printed:?} of {text:?} does not parse: {e}"));
    assert_eq!(filter, again, "{text:?} printed as {printed:?}");

    let registry = SchemaRegistry::standard();
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "id": "2819c223", "externalId": "701984", "userName": "bjensen@example.com",
        "name": {"givenName": "Barbara", "familyName": "Jensen"}, "active": true,
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}, {"value": "babs@jensen.org", "type": "home"}],
        "meta": {"created": "2010-01-23T04:56:22Z", "lastModified": "2011-05-13T04:42:34Z", "resourceType": "User"},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "701984", "manager": {"value": "26118915"}}
    });
    let group = json!({"displayName": "Tour Guides", "members": [{"value": "2819c223", "display": "Babs"}]});
    for (rt, resource) in [("User", &user), ("Group", &group)] {
        let Some(rs) = registry.view(rt) else { return };
        let _ = filter.validate(&rs);
        let _ = filter.matches(resource, &rs);
    }
});
