//! Turns a SCIM filter into what a backend can answer from its indexes. The filters IdPs send
//! before every write (`userName eq`, `externalId eq`, `id eq`, `displayName eq`,
//! `emails.value eq`, `meta.lastModified gt`) become indexed predicates; anything else is
//! evaluated in memory over the candidates the indexed part selects, so every valid filter
//! still gives the right answer.

use scimgate_protocol::filter::parse_instant;
use scimgate_protocol::{CompValue, CompareOp, Filter, ResourceSchemas};
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;

use crate::model::{Kind, StoredResource};

/// One predicate a backend answers from an index. String values are already case-folded
/// where the attribute is case-insensitive.
#[derive(Debug, Clone, PartialEq)]
pub enum Indexed {
    Id(String),
    /// `userName` of a user or `displayName` of a group, lower-cased.
    NameEq(String),
    ExternalId(String),
    /// An `emails.value` of a user, lower-cased.
    Email(String),
    Active(bool),
    /// `meta.lastModified` against an instant in microseconds since the epoch.
    LastModified(CompareOp, i64),
}

/// How to answer a filter: the conjunction of `indexed` selects candidates; when `exact` is
/// false the full filter must still be evaluated on each of them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub indexed: Vec<Indexed>,
    pub exact: bool,
}

impl Plan {
    pub fn for_filter(filter: Option<&Filter>, kind: Kind, rs: &ResourceSchemas<'_>) -> Plan {
        let Some(filter) = filter else {
            return Plan {
                indexed: vec![],
                exact: true,
            };
        };
        let mut plan = Plan {
            indexed: vec![],
            exact: true,
        };
        let items = match filter {
            Filter::And(items) => items.as_slice(),
            single => std::slice::from_ref(single),
        };
        for item in items {
            match indexed(item, kind, rs) {
                Some(p) => plan.indexed.push(p),
                None => plan.exact = false,
            }
        }
        plan
    }
}

fn indexed(filter: &Filter, kind: Kind, rs: &ResourceSchemas<'_>) -> Option<Indexed> {
    match filter {
        Filter::Compare { path, op, value } => {
            let canonical = rs.resolve(path)?.canonical_path();
            leaf(&canonical, *op, value, kind)
        }
        Filter::ValuePath { path, filter } => {
            let parent = rs.resolve(path)?.canonical_path();
            match filter.as_ref() {
                Filter::Compare {
                    path: inner,
                    op,
                    value,
                } if inner.urn.is_none() && inner.sub.is_none() => {
                    let canonical = format!("{parent}.{}", inner.name.to_ascii_lowercase());
                    leaf(&canonical, *op, value, kind)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn leaf(canonical: &str, op: CompareOp, value: &CompValue, kind: Kind) -> Option<Indexed> {
    match (canonical, op, value, kind) {
        ("id", CompareOp::Eq, CompValue::String(s), _) => Some(Indexed::Id(s.clone())),
        ("externalId", CompareOp::Eq, CompValue::String(s), _) => {
            Some(Indexed::ExternalId(s.clone()))
        }
        ("userName", CompareOp::Eq, CompValue::String(s), Kind::User)
        | ("displayName", CompareOp::Eq, CompValue::String(s), Kind::Group) => {
            Some(Indexed::NameEq(fold(s)))
        }
        ("emails.value", CompareOp::Eq, CompValue::String(s), Kind::User) => {
            Some(Indexed::Email(fold(s)))
        }
        ("active", CompareOp::Eq, CompValue::Bool(b), Kind::User) => Some(Indexed::Active(*b)),
        (
            "meta.lastModified",
            CompareOp::Eq | CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le,
            CompValue::String(s),
            _,
        ) => {
            let instant = parse_instant(s)?;
            Some(Indexed::LastModified(op, micros(instant)))
        }
        _ => None,
    }
}

/// The kind test, written into the SQL rather than bound. Only a literal lets the planner prove
/// that the partial indexes (`kind = 'User'`) apply: PostgreSQL before it has statistics, and
/// SQLite at all without preparing the statement again each time the parameter is bound, which
/// is every time it runs.
pub(crate) fn kind_is(kind: Kind) -> &'static str {
    match kind {
        Kind::User => "kind = 'User'",
        Kind::Group => "kind = 'Group'",
    }
}

/// The case folding used for every case-insensitive index, on both sides of a comparison.
pub fn fold(s: &str) -> String {
    s.to_lowercase()
}

pub fn micros(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

pub fn from_micros(us: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// The resource as a filter sees it: its body with `id`, `meta`, `members` and `groups`.
pub fn evaluation_view(resource: &StoredResource) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), Value::String(resource.id.clone()));
    if let Value::Object(body) = &resource.body {
        for (k, v) in body {
            out.insert(k.clone(), v.clone());
        }
    }
    let stamp = |t: time::OffsetDateTime| t.format(&Rfc3339).map(Value::String).unwrap_or_default();
    out.insert(
        "meta".into(),
        serde_json::json!({
            "resourceType": resource.kind.as_str(),
            "created": stamp(resource.created),
            "lastModified": stamp(resource.last_modified),
            "version": format!("W/\"{}\"", resource.version),
        }),
    );
    for (name, list) in [("members", &resource.members), ("groups", &resource.groups)] {
        if let Some(list) = list {
            let values: Vec<Value> = list
                .iter()
                .map(|m| {
                    let mut v = serde_json::json!({"value": m.id, "type": m.kind.as_str()});
                    if let Some(d) = &m.display {
                        v["display"] = Value::String(d.clone());
                    }
                    v
                })
                .collect();
            out.insert(name.into(), Value::Array(values));
        }
    }
    Value::Object(out)
}

/// Whether a filter reads an attribute that lives in rows of its own, so candidates must be
/// loaded with them before evaluation.
pub fn mentions(filter: &Filter, name: &str) -> bool {
    match filter {
        Filter::Compare { path, .. } | Filter::Present(path) => {
            path.name.eq_ignore_ascii_case(name)
        }
        Filter::ValuePath { path, .. } => path.name.eq_ignore_ascii_case(name),
        Filter::And(items) | Filter::Or(items) => items.iter().any(|f| mentions(f, name)),
        Filter::Not(inner) => mentions(inner, name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scimgate_protocol::SchemaRegistry;

    #[test]
    fn idp_lookups_are_exact_and_indexed() {
        let registry = SchemaRegistry::standard();
        let users = registry.view("User").expect("User");
        let plan = |text: &str| {
            Plan::for_filter(
                Some(&Filter::parse(text).expect("parses")),
                Kind::User,
                &users,
            )
        };
        assert_eq!(
            plan(r#"userName eq "BJensen@Example.com""#),
            Plan {
                indexed: vec![Indexed::NameEq("bjensen@example.com".into())],
                exact: true
            }
        );
        assert_eq!(
            plan(r#"emails[type eq "work" and value eq "x"]"#),
            Plan {
                indexed: vec![],
                exact: false
            }
        );
        assert_eq!(
            plan(r#"emails[value eq "A@x"] and externalId eq "E1""#),
            Plan {
                indexed: vec![
                    Indexed::Email("a@x".into()),
                    Indexed::ExternalId("E1".into())
                ],
                exact: true
            }
        );
        let p = plan(r#"meta.lastModified gt "2011-05-13T04:42:34Z" and title co "x""#);
        assert!(!p.exact);
        assert!(matches!(
            p.indexed.as_slice(),
            [Indexed::LastModified(CompareOp::Gt, _)]
        ));
        assert_eq!(
            plan(r#"userName ne "x""#),
            Plan {
                indexed: vec![],
                exact: false
            }
        );
    }
}
