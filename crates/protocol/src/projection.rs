//! `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5) with the `returned` characteristic,
//! and `sortBy` / `sortOrder` (§3.4.2.3) with type-aware ordering.

use std::cmp::Ordering;

use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::filter::parse_instant;
use crate::messages::split_attribute_list;
use crate::path::AttrPath;
use crate::registry::{Container, ResourceSchemas};
use crate::schema::{AttributeDef, AttributeType, Returned};
use crate::ScimError;

/// One entry of an `attributes` or `excludedAttributes` list, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Selector {
    /// A whole extension object.
    Extension(String),
    /// An attribute, or one of its sub-attributes. `container` is `None` for the core schema.
    Attribute {
        container: Option<String>,
        name: String,
        sub: Option<String>,
    },
    /// A path this server does not know; it matches by its text only.
    Unknown(String),
}

/// A parsed `attributes` / `excludedAttributes` pair.
///
/// ```
/// use scimgate_protocol::{Projection, SchemaRegistry};
/// use serde_json::json;
///
/// let registry = SchemaRegistry::standard();
/// let users = registry.view("User").unwrap();
/// let user = json!({"id": "1", "userName": "bjensen", "password": "secret", "title": "Guide"});
/// let shown = Projection::parse(Some("userName,password"), None, &users).unwrap().apply(&user, &users);
/// // `id` is returned always, `password` never.
/// assert_eq!(shown, json!({"id": "1", "userName": "bjensen"}));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    attributes: Vec<Selector>,
    excluded: Vec<Selector>,
}

impl Projection {
    /// Parses the comma-separated query parameters. Malformed paths are `invalidPath`; paths
    /// that name no attribute are accepted and select nothing.
    pub fn parse(
        attributes: Option<&str>,
        excluded: Option<&str>,
        rs: &ResourceSchemas<'_>,
    ) -> Result<Self, ScimError> {
        let attributes = attributes.map(split_attribute_list).unwrap_or_default();
        let excluded = excluded.map(split_attribute_list).unwrap_or_default();
        Self::from_lists(&attributes, &excluded, rs)
    }

    pub fn from_lists(
        attributes: &[String],
        excluded: &[String],
        rs: &ResourceSchemas<'_>,
    ) -> Result<Self, ScimError> {
        let resolve_all = |list: &[String]| {
            list.iter()
                .map(|p| selector(p, rs))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Projection {
            attributes: resolve_all(attributes)?,
            excluded: resolve_all(excluded)?,
        })
    }

    /// Whether the projection returns any part of a core attribute. Lets a store skip loading
    /// data nobody will see (a group's members under `excludedAttributes=members`).
    pub fn includes_core(&self, name: &str, rs: &ResourceSchemas<'_>) -> bool {
        match rs.core_attribute(name) {
            Some(def) => !matches!(self.decide(def, None), Inclusion::Nothing),
            None => true,
        }
    }

    /// Applies the projection to a resource in canonical form.
    pub fn apply(&self, resource: &Value, rs: &ResourceSchemas<'_>) -> Value {
        let Value::Object(obj) = resource else {
            return resource.clone();
        };
        let mut out = Map::new();
        for (key, value) in obj {
            if key == "schemas" {
                out.insert(key.clone(), value.clone());
            } else if let Some(ext) = rs.extension(key) {
                let whole_requested = self
                    .attributes
                    .iter()
                    .any(|s| matches!(s, Selector::Extension(u) if u == &ext.id));
                let whole_excluded = self
                    .excluded
                    .iter()
                    .any(|s| matches!(s, Selector::Extension(u) if u == &ext.id));
                if whole_excluded {
                    continue;
                }
                let Value::Object(attrs) = value else {
                    continue;
                };
                let mut kept = Map::new();
                for (name, v) in attrs {
                    let Some(def) = ext.attribute(name) else {
                        continue;
                    };
                    let inclusion = if whole_requested && def.returned != Returned::Never {
                        Inclusion::All
                    } else {
                        self.decide(def, Some(&ext.id))
                    };
                    if let Some(v) = inclusion.select(def, v) {
                        kept.insert(name.clone(), v);
                    }
                }
                if !kept.is_empty() {
                    out.insert(key.clone(), Value::Object(kept));
                }
            } else if let Some(def) = rs.core_attribute(key) {
                if let Some(v) = self.decide(def, None).select(def, value) {
                    out.insert(key.clone(), v);
                }
            } else {
                let named = |list: &[Selector]| {
                    list.iter()
                        .any(|s| matches!(s, Selector::Unknown(p) if p.eq_ignore_ascii_case(key)))
                };
                if (self.attributes.is_empty() || named(&self.attributes)) && !named(&self.excluded)
                {
                    out.insert(key.clone(), value.clone());
                }
            }
        }
        Value::Object(out)
    }

    fn decide(&self, def: &AttributeDef, container: Option<&str>) -> Inclusion {
        let matching = |list: &[Selector]| -> Vec<Option<String>> {
            list.iter()
                .filter_map(|s| match s {
                    Selector::Attribute {
                        container: c,
                        name,
                        sub,
                    } if c.as_deref() == container && name == &def.name => Some(sub.clone()),
                    _ => None,
                })
                .collect()
        };
        match def.returned {
            Returned::Never => return Inclusion::Nothing,
            Returned::Always => return Inclusion::All,
            _ => {}
        }
        if !self.attributes.is_empty() {
            let wanted = matching(&self.attributes);
            if wanted.is_empty() {
                return Inclusion::Nothing;
            }
            if wanted.iter().any(Option::is_none) {
                return Inclusion::All;
            }
            return Inclusion::Only(wanted.into_iter().flatten().collect());
        }
        if def.returned == Returned::Request {
            return Inclusion::Nothing;
        }
        let unwanted = matching(&self.excluded);
        if unwanted.iter().any(Option::is_none) {
            return Inclusion::Nothing;
        }
        if unwanted.is_empty() {
            Inclusion::All
        } else {
            Inclusion::AllBut(unwanted.into_iter().flatten().collect())
        }
    }
}

fn selector(path: &str, rs: &ResourceSchemas<'_>) -> Result<Selector, ScimError> {
    if let Some(ext) = rs.extension(path) {
        return Ok(Selector::Extension(ext.id.clone()));
    }
    let parsed = AttrPath::parse(path).map_err(|(at, m)| {
        ScimError::invalid_path(format!("invalid attribute \"{path}\" at byte {at}: {m}"))
    })?;
    Ok(match rs.resolve(&parsed.parent()) {
        Some(r) => {
            let sub = parsed.sub.as_ref().map(|s| {
                r.attr
                    .sub_attribute(s)
                    .map(|d| d.name.clone())
                    .unwrap_or_else(|| s.clone())
            });
            Selector::Attribute {
                container: match r.container {
                    Container::Core => None,
                    Container::Extension(urn) => Some(urn.to_string()),
                },
                name: r.attr.name.clone(),
                sub,
            }
        }
        None => Selector::Unknown(path.to_string()),
    })
}

enum Inclusion {
    All,
    AllBut(Vec<String>),
    Only(Vec<String>),
    Nothing,
}

impl Inclusion {
    fn select(&self, def: &AttributeDef, value: &Value) -> Option<Value> {
        let keep_sub = |sub: &AttributeDef| -> bool {
            match sub.returned {
                Returned::Never => false,
                Returned::Always => true,
                Returned::Request => {
                    matches!(self, Inclusion::Only(subs) if subs.contains(&sub.name))
                }
                Returned::Default => match self {
                    Inclusion::All => true,
                    Inclusion::AllBut(subs) => !subs.contains(&sub.name),
                    Inclusion::Only(subs) => subs.contains(&sub.name),
                    Inclusion::Nothing => false,
                },
            }
        };
        if matches!(self, Inclusion::Nothing) {
            return None;
        }
        if !def.is_complex() {
            return Some(value.clone());
        }
        let filter_obj = |v: &Value| -> Option<Value> {
            let Value::Object(obj) = v else {
                return Some(v.clone());
            };
            let kept: Map<String, Value> = obj
                .iter()
                .filter(|(k, _)| def.sub_attribute(k).is_none_or(keep_sub))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        };
        match value {
            Value::Array(items) => {
                let kept: Vec<Value> = items.iter().filter_map(filter_obj).collect();
                (!kept.is_empty()).then_some(Value::Array(kept))
            }
            other => filter_obj(other),
        }
    }
}

/// A value to sort by.
#[derive(Debug, Clone, PartialEq)]
pub enum SortKey {
    Text(String),
    Number(f64),
    Bool(bool),
    Instant(OffsetDateTime),
}

impl SortKey {
    fn cmp(&self, other: &SortKey) -> Ordering {
        match (self, other) {
            (SortKey::Text(a), SortKey::Text(b)) => a.cmp(b),
            (SortKey::Number(a), SortKey::Number(b)) => a.total_cmp(b),
            (SortKey::Bool(a), SortKey::Bool(b)) => a.cmp(b),
            (SortKey::Instant(a), SortKey::Instant(b)) => a.cmp(b),
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            SortKey::Bool(_) => 0,
            SortKey::Number(_) => 1,
            SortKey::Instant(_) => 2,
            SortKey::Text(_) => 3,
        }
    }
}

/// The sort key of a resource under `sortBy`: for a multi-valued attribute, its primary value
/// (or its first) as RFC 7644 §3.4.2.3 specifies.
pub fn sort_key(resource: &Value, by: &AttrPath, rs: &ResourceSchemas<'_>) -> Option<SortKey> {
    let r = rs.resolve(by)?;
    let container = match r.container {
        Container::Core => resource,
        Container::Extension(urn) => resource.get(urn)?,
    };
    let mut v = container.get(&r.attr.name)?;
    if let Value::Array(items) = v {
        v = items
            .iter()
            .find(|i| i.get("primary") == Some(&Value::Bool(true)))
            .or_else(|| items.first())?;
    }
    let leaf = match r.sub {
        Some(sub) => {
            v = v.get(&sub.name)?;
            sub
        }
        None if r.attr.is_complex() => {
            let value_def = r.attr.sub_attribute("value")?;
            v = v.get("value")?;
            value_def
        }
        None => r.attr,
    };
    match (leaf.kind, v) {
        (AttributeType::Integer | AttributeType::Decimal, Value::Number(n)) => {
            n.as_f64().map(SortKey::Number)
        }
        (AttributeType::Boolean, Value::Bool(b)) => Some(SortKey::Bool(*b)),
        (AttributeType::DateTime, Value::String(s)) => Some(
            parse_instant(s)
                .map(SortKey::Instant)
                .unwrap_or_else(|| SortKey::Text(s.clone())),
        ),
        (_, Value::String(s)) if leaf.case_exact => Some(SortKey::Text(s.clone())),
        (_, Value::String(s)) => Some(SortKey::Text(s.to_lowercase())),
        (_, Value::Number(n)) => n.as_f64().map(SortKey::Number),
        (_, Value::Bool(b)) => Some(SortKey::Bool(*b)),
        _ => None,
    }
}

/// Compares two optional sort keys: resources without a value sort last when ascending and
/// first when descending (RFC 7644 §3.4.2.3).
pub fn compare_sort_keys(a: Option<&SortKey>, b: Option<&SortKey>, descending: bool) -> Ordering {
    let ord = match (a, b) {
        (Some(a), Some(b)) => a.cmp(b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    if descending {
        ord.reverse()
    } else {
        ord
    }
}

/// The order that sorts `resources` (indices into it); ties keep their order.
pub fn sort_order(
    resources: &[Value],
    by: &AttrPath,
    descending: bool,
    rs: &ResourceSchemas<'_>,
) -> Vec<usize> {
    let keys: Vec<Option<SortKey>> = resources.iter().map(|r| sort_key(r, by, rs)).collect();
    let mut order: Vec<usize> = (0..resources.len()).collect();
    order.sort_by(|&a, &b| compare_sort_keys(keys[a].as_ref(), keys[b].as_ref(), descending));
    order
}

/// Sorts resources in place; ties keep their order.
///
/// ```
/// use scimgate_protocol::{sort_resources, AttrPath, SchemaRegistry};
/// use serde_json::json;
///
/// let registry = SchemaRegistry::standard();
/// let users = registry.view("User").unwrap();
/// let mut list = vec![json!({"userName": "b"}), json!({"title": "no name"}), json!({"userName": "A"})];
/// sort_resources(&mut list, &AttrPath::parse("userName").unwrap(), false, &users);
/// assert_eq!(list[0]["userName"], "A");
/// assert_eq!(list[2]["title"], "no name");
/// ```
pub fn sort_resources(
    resources: &mut [Value],
    by: &AttrPath,
    descending: bool,
    rs: &ResourceSchemas<'_>,
) {
    let mut keyed: Vec<(Option<SortKey>, Value)> = resources
        .iter_mut()
        .map(|r| (sort_key(r, by, rs), std::mem::take(r)))
        .collect();
    keyed.sort_by(|(a, _), (b, _)| compare_sort_keys(a.as_ref(), b.as_ref(), descending));
    for (slot, (_, v)) in resources.iter_mut().zip(keyed) {
        *slot = v;
    }
}
