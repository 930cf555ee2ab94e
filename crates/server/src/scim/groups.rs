//! Group membership changes, kept out of the JSON body: members are rows, so a PATCH that adds
//! or removes 100 members of a 50,000-member group touches 100 rows. Only PATCH shapes that
//! reach into members in other ways (a filter on `display`, a sub-attribute path) fall back to
//! loading the whole membership.

use std::collections::HashSet;

use scimgate_protocol::{
    PatchOpKind, PatchOperation, PatchPath, PatchRequest, ScimError, GROUP_SCHEMA,
};
use scimgate_store::{Member, MemberOp};
use serde_json::{Map, Value};

use super::response::ScimResult;
use super::ScimContext;
use crate::app::AppState;

/// A membership change before its ids are checked against the directory.
#[derive(Debug, Clone, PartialEq)]
pub enum PendingMember {
    Add(Vec<Value>),
    Remove(Vec<String>),
    Clear,
}

/// A group PATCH split into the part that edits the body and the membership changes.
#[derive(Debug, Default)]
pub struct SplitPatch {
    pub body: PatchRequest,
    pub members: Vec<PendingMember>,
}

fn is_members(path: &PatchPath) -> bool {
    path.attr.name.eq_ignore_ascii_case("members")
        && path
            .attr
            .urn
            .as_deref()
            .is_none_or(|u| u.eq_ignore_ascii_case(GROUP_SCHEMA))
}

fn is_members_key(key: &str) -> bool {
    key.eq_ignore_ascii_case("members")
        || key.eq_ignore_ascii_case(&format!("{GROUP_SCHEMA}:members"))
}

/// The member values of an `add`/`replace`: an array, or leniently a single object or bare ids.
pub fn member_items(value: &Value) -> Result<Vec<Value>, ScimError> {
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        Value::Null => vec![],
        single => vec![single],
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::String(id) => Ok(serde_json::json!({"value": id})),
            Value::Object(obj) => match obj.iter().find(|(k, _)| k.eq_ignore_ascii_case("value")) {
                Some((_, Value::String(id))) if !id.is_empty() => {
                    let mut out = Map::new();
                    out.insert("value".into(), Value::String(id.clone()));
                    if let Some((_, Value::String(d))) =
                        obj.iter().find(|(k, _)| k.eq_ignore_ascii_case("display"))
                    {
                        out.insert("display".into(), Value::String(d.clone()));
                    }
                    Ok(Value::Object(out))
                }
                _ => Err(ScimError::invalid_value(
                    "each member needs a non-empty string 'value' (the member's id)",
                )),
            },
            other => Err(ScimError::invalid_value(format!(
                "a member must be an object with a 'value', got {other}"
            ))),
        })
        .collect()
}

fn ids_of(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(|v| v["value"].as_str().map(str::to_owned))
        .collect()
}

/// Splits a group PATCH. `Ok(None)` means some operation needs the general engine over the
/// full membership.
pub fn split(request: &PatchRequest) -> Result<Option<SplitPatch>, ScimError> {
    let mut out = SplitPatch::default();
    for op in &request.operations {
        match &op.path {
            Some(path) if is_members(path) => {
                // `members.display` or `members[…].display` edits values in place: the general engine.
                if path.sub.is_some() || path.attr.sub.is_some() {
                    return Ok(None);
                }
                match (&path.filter, op.op, &op.value) {
                    (Some(filter), PatchOpKind::Remove, _) => {
                        match filter.equality_literals("value") {
                            Some(ids) => out.members.push(PendingMember::Remove(
                                ids.into_iter().map(str::to_owned).collect(),
                            )),
                            None => return Ok(None),
                        }
                    }
                    (Some(_), _, _) => return Ok(None),
                    (None, PatchOpKind::Add, Some(v)) => {
                        out.members.push(PendingMember::Add(member_items(v)?))
                    }
                    (None, PatchOpKind::Replace, v) => {
                        out.members.push(PendingMember::Clear);
                        if let Some(v) = v {
                            out.members.push(PendingMember::Add(member_items(v)?));
                        }
                    }
                    (None, PatchOpKind::Remove, Some(v)) if !v.is_null() => out
                        .members
                        .push(PendingMember::Remove(ids_of(&member_items(v)?))),
                    (None, PatchOpKind::Remove, _) => out.members.push(PendingMember::Clear),
                    (None, PatchOpKind::Add, None) => {
                        return Err(ScimError::invalid_syntax(
                            "'add' of members needs a 'value'",
                        ))
                    }
                }
            }
            Some(_) => out.body.operations.push(op.clone()),
            None => {
                let Some(Value::Object(value)) = &op.value else {
                    out.body.operations.push(op.clone());
                    continue;
                };
                let mut rest = Map::new();
                for (key, v) in value {
                    if !is_members_key(key) {
                        rest.insert(key.clone(), v.clone());
                        continue;
                    }
                    match op.op {
                        PatchOpKind::Add => out.members.push(PendingMember::Add(member_items(v)?)),
                        PatchOpKind::Replace => {
                            out.members.push(PendingMember::Clear);
                            out.members.push(PendingMember::Add(member_items(v)?));
                        }
                        PatchOpKind::Remove => return Ok(None),
                    }
                }
                if !rest.is_empty() {
                    out.body.operations.push(PatchOperation {
                        op: op.op,
                        path: None,
                        value: Some(Value::Object(rest)),
                    });
                }
            }
        }
    }
    Ok(Some(out))
}

/// Checks the ids of added members against this connection's users and groups. Unknown ids
/// are skipped with a warning, or refused when the connection has `strict_members`.
pub async fn resolve(
    state: &AppState,
    ctx: &ScimContext,
    group_id: Option<&str>,
    pending: Vec<PendingMember>,
    warnings: &mut Vec<String>,
) -> ScimResult<Vec<MemberOp>> {
    let wanted: Vec<String> = pending
        .iter()
        .filter_map(|p| match p {
            PendingMember::Add(items) => Some(ids_of(items)),
            _ => None,
        })
        .flatten()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let known = if wanted.is_empty() {
        Default::default()
    } else {
        state
            .store
            .existing_ids(&ctx.connection.id, &wanted)
            .await?
    };
    let mut ops = Vec::new();
    for p in pending {
        match p {
            PendingMember::Clear => ops.push(MemberOp::Clear),
            PendingMember::Remove(ids) => ops.extend(ids.into_iter().map(MemberOp::Remove)),
            PendingMember::Add(items) => {
                for item in items {
                    let Some(id) = item["value"].as_str() else {
                        continue;
                    };
                    let kind = known.get(id).copied().filter(|_| Some(id) != group_id);
                    match kind {
                        Some(kind) => ops.push(MemberOp::Add(Member {
                            id: id.to_owned(),
                            kind,
                            display: item["display"].as_str().map(str::to_owned),
                        })),
                        None if ctx.connection.strict_members => {
                            return Err(ScimError::invalid_value(format!(
                                "member '{id}' is not a user or group of this connection"
                            ))
                            .into())
                        }
                        None => warnings.push(format!(
                            "member '{id}' is not a user or group of this connection; it was skipped"
                        )),
                    }
                }
            }
        }
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(ops: Value) -> PatchRequest {
        PatchRequest::parse(&json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})).expect("parses")
    }

    #[test]
    fn idp_member_shapes_stay_on_the_row_path() {
        let split = split(&parse(json!([
            {"op": "Remove", "path": "members", "value": [{"value": "a"}, {"value": "b"}]},
            {"op": "remove", "path": "members[value eq \"c\"]"},
            {"op": "add", "path": "members", "value": {"value": "d", "display": "D"}},
            {"op": "replace", "value": {"displayName": "New", "members": [{"value": "e"}]}},
            {"op": "remove", "path": "members"}
        ])))
        .expect("valid")
        .expect("no fallback");
        assert_eq!(
            split.members,
            vec![
                PendingMember::Remove(vec!["a".into(), "b".into()]),
                PendingMember::Remove(vec!["c".into()]),
                PendingMember::Add(vec![json!({"value": "d", "display": "D"})]),
                PendingMember::Clear,
                PendingMember::Add(vec![json!({"value": "e"})]),
                PendingMember::Clear,
            ]
        );
        assert_eq!(split.body.operations.len(), 1);
        assert_eq!(
            split.body.operations[0].value,
            Some(json!({"displayName": "New"}))
        );
    }

    #[test]
    fn member_sub_attribute_paths_never_touch_the_whole_membership() {
        for path in ["members.display", "members.value"] {
            for op in ["remove", "replace", "add"] {
                let request = parse(json!([{"op": op, "path": path, "value": "x"}]));
                assert!(
                    split(&request).expect("valid").is_none(),
                    "{op} {path} must use the general engine"
                );
            }
        }
    }

    #[test]
    fn other_member_paths_fall_back() {
        assert!(split(&parse(
            json!([{"op": "remove", "path": "members[display co \"x\"]"}])
        ))
        .expect("valid")
        .is_none());
        assert!(split(&parse(
            json!([{"op": "replace", "path": "members[value eq \"x\"].display", "value": "y"}])
        ))
        .expect("valid")
        .is_none());
        assert!(split(&parse(
            json!([{"op": "add", "path": "members", "value": [{"display": "no id"}]}])
        ))
        .is_err());
    }
}
