//! Stored resources as the SCIM API shows them: `id` after `schemas`, members and groups
//! from their rows, extensions last, and server-owned `meta` with this connection's URLs.

use scimgate_store::{Kind, Member, StoredResource};
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;

pub fn endpoint(kind: Kind) -> &'static str {
    match kind {
        Kind::User => "Users",
        Kind::Group => "Groups",
    }
}

pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

fn stamp(t: time::OffsetDateTime) -> Value {
    t.format(&Rfc3339).map(Value::String).unwrap_or(Value::Null)
}

fn member_values(base: &str, members: &[Member], as_groups: bool) -> Value {
    members
        .iter()
        .map(|m| {
            let mut v =
                json!({"value": m.id, "$ref": format!("{base}/{}/{}", endpoint(m.kind), m.id)});
            if let Some(d) = &m.display {
                v["display"] = Value::String(d.clone());
            }
            v["type"] = Value::String(if as_groups {
                "direct".into()
            } else {
                m.kind.as_str().into()
            });
            v
        })
        .collect()
}

pub fn to_scim(resource: &StoredResource, base: &str) -> Value {
    let mut out = Map::new();
    let empty = Map::new();
    let body = resource.body.as_object().unwrap_or(&empty);
    out.insert(
        "schemas".into(),
        body.get("schemas").cloned().unwrap_or_else(|| json!([])),
    );
    out.insert("id".into(), Value::String(resource.id.clone()));
    let mut extensions = Vec::new();
    for (k, v) in body {
        if k == "schemas" {
            continue;
        }
        if k.contains(':') {
            extensions.push((k.clone(), v.clone()));
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    if let Some(members) = &resource.members {
        if !members.is_empty() {
            out.insert("members".into(), member_values(base, members, false));
        }
    }
    if let Some(groups) = &resource.groups {
        if !groups.is_empty() {
            out.insert("groups".into(), member_values(base, groups, true));
        }
    }
    for (k, v) in extensions {
        out.insert(k, v);
    }
    out.insert(
        "meta".into(),
        json!({
            "resourceType": resource.kind.as_str(),
            "created": stamp(resource.created),
            "lastModified": stamp(resource.last_modified),
            "version": etag(resource.version),
            "location": format!("{base}/{}/{}", endpoint(resource.kind), resource.id),
        }),
    );
    Value::Object(out)
}
