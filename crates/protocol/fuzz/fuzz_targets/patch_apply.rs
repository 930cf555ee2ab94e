//! Any PATCH body against a full user and a group: applying never panics. The first byte picks
//! the target and the mode. The rest is a PatchOp JSON body, or, when it is not JSON, lines of
//! `op|path|json value` so the fuzzer reaches deep paths without having to learn JSON first.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scimgate_protocol::{apply_patch, NormalizeOptions, PatchRequest, SchemaRegistry};
use serde_json::{json, Value};

fn body_from(text: &str) -> Value {
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        return v;
    }
    let ops: Vec<Value> = text
        .lines()
        .map(|line| {
            let mut parts = line.splitn(3, '|');
            let op = parts.next().unwrap_or("add");
            let path = parts.next().filter(|p| !p.is_empty());
            let value = parts
                .next()
                .map(|v| serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned())));
            let mut o = json!({"op": op});
            if let Some(p) = path {
                o["path"] = Value::String(p.to_owned());
            }
            if let Some(v) = value {
                o["value"] = v;
            }
            o
        })
        .collect();
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let body = body_from(text);
    let Ok(request) = PatchRequest::parse(&body) else {
        return;
    };

    let registry = SchemaRegistry::standard();
    let (rt, resource) = if selector & 1 == 0 {
        (
            "User",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                "id": "2819c223", "externalId": "701984", "userName": "bjensen@example.com",
                "name": {"givenName": "Barbara", "familyName": "Jensen"}, "active": true, "title": "Tour Guide",
                "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}, {"value": "babs@jensen.org", "type": "home"}],
                "addresses": [{"streetAddress": "100 Universal City Plaza", "type": "work", "primary": true}],
                "x509Certificates": [{"value": "MIIDQzCC"}],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "701984", "manager": {"value": "26118915"}},
                "urn:example:unknown:2.0:User": {"kept": [1, 2]}
            }),
        )
    } else {
        (
            "Group",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "id": "e9e30dba", "displayName": "Tour Guides",
                "members": [{"value": "2819c223", "display": "Babs"}, {"value": "902c246b", "type": "User"}]
            }),
        )
    };
    let Some(rs) = registry.view(rt) else { return };
    let opts = NormalizeOptions {
        lenient: selector & 2 == 0,
    };
    if let Ok(outcome) = apply_patch(resource, &request, &rs, opts) {
        assert!(outcome.resource.is_object());
    }
});
