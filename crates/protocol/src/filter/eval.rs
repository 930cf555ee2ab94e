//! Filter evaluation against JSON resources, obeying each attribute's type and `caseExact`.
//! Resources are expected in canonical form (as `resource::normalize` produces them).

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{CompValue, CompareOp, Filter};
use crate::path::AttrPath;
use crate::registry::{Container, ResourceSchemas};
use crate::schema::{AttributeDef, AttributeType};
use crate::ScimError;

/// What a path is resolved against: a whole resource, or (inside `attr[...]`) one value of a
/// complex attribute.
#[derive(Clone, Copy)]
pub enum FilterContext<'s, 'a> {
    Resource(&'s ResourceSchemas<'a>),
    Element(&'a AttributeDef),
}

struct Target<'a> {
    container: Container<'a>,
    attr: &'a AttributeDef,
    sub: Option<&'a AttributeDef>,
}

impl<'a> FilterContext<'_, 'a> {
    fn resolve(&self, path: &AttrPath) -> Option<Target<'a>> {
        match self {
            FilterContext::Resource(rs) => {
                let r = rs.resolve(path)?;
                Some(Target {
                    container: r.container,
                    attr: r.attr,
                    sub: r.sub,
                })
            }
            FilterContext::Element(parent) => {
                if path.sub.is_some() {
                    return None;
                }
                let attr = parent.sub_attribute(&path.name)?;
                Some(Target {
                    container: Container::Core,
                    attr,
                    sub: None,
                })
            }
        }
    }
}

impl Filter {
    /// Checks that every comparison is meaningful for its attribute's type: ordering a boolean,
    /// comparing a complex attribute as a whole or giving `gt` a non-date to a dateTime is an
    /// `invalidFilter` error. Unknown attributes are allowed and match nothing.
    pub fn validate(&self, rs: &ResourceSchemas<'_>) -> Result<(), ScimError> {
        self.validate_in_context(FilterContext::Resource(rs))
    }

    pub(crate) fn validate_in_context(&self, ctx: FilterContext<'_, '_>) -> Result<(), ScimError> {
        match self {
            Filter::And(items) | Filter::Or(items) => {
                items.iter().try_for_each(|f| f.validate_in_context(ctx))
            }
            Filter::Not(inner) => inner.validate_in_context(ctx),
            Filter::Present(_) => Ok(()),
            Filter::ValuePath { path, filter } => match ctx.resolve(path) {
                None => Ok(()),
                Some(t) if t.sub.is_none() && t.attr.is_complex() => {
                    filter.validate_in_context(FilterContext::Element(t.attr))
                }
                Some(_) => Err(ScimError::invalid_filter(format!(
                    "'{path}' is not a complex attribute, so it cannot take a value filter"
                ))),
            },
            Filter::Compare { path, op, value } => {
                let Some(t) = ctx.resolve(path) else {
                    return Ok(());
                };
                let Some(leaf) = leaf_def(&t) else {
                    return Err(ScimError::invalid_filter(format!(
                        "'{path}' is a complex attribute; compare one of its sub-attributes instead"
                    )));
                };
                validate_comparison(path, leaf, *op, value)
            }
        }
    }

    /// Whether `resource` matches. Never fails: what [`Filter::validate`] rejects simply does
    /// not match here.
    pub fn matches(&self, resource: &Value, rs: &ResourceSchemas<'_>) -> bool {
        self.matches_in(resource, FilterContext::Resource(rs))
    }

    /// Whether one value of a complex attribute matches a value filter (`type eq "work"`).
    pub fn matches_element(&self, element: &Value, parent: &AttributeDef) -> bool {
        self.matches_in(element, FilterContext::Element(parent))
    }

    fn matches_in(&self, node: &Value, ctx: FilterContext<'_, '_>) -> bool {
        match self {
            Filter::And(items) => items.iter().all(|f| f.matches_in(node, ctx)),
            Filter::Or(items) => items.iter().any(|f| f.matches_in(node, ctx)),
            Filter::Not(inner) => !inner.matches_in(node, ctx),
            Filter::Present(path) => {
                let Some(t) = ctx.resolve(path) else {
                    return false;
                };
                let Some(v) = attribute_value(node, &t) else {
                    return false;
                };
                match t.sub {
                    None => is_present(v),
                    Some(_) => leaf_values(v, &t).into_iter().any(is_present),
                }
            }
            Filter::ValuePath { path, filter } => {
                let Some(t) = ctx.resolve(path) else {
                    return false;
                };
                if t.sub.is_some() || !t.attr.is_complex() {
                    return false;
                }
                let Some(v) = attribute_value(node, &t) else {
                    return false;
                };
                match v {
                    Value::Array(items) => items.iter().any(|e| filter.matches_element(e, t.attr)),
                    Value::Object(_) => filter.matches_element(v, t.attr),
                    _ => false,
                }
            }
            Filter::Compare { path, op, value } => {
                let Some(t) = ctx.resolve(path) else {
                    return false;
                };
                let Some(leaf) = leaf_def(&t) else {
                    return false;
                };
                let values = attribute_value(node, &t)
                    .map(|v| leaf_values(v, &t))
                    .unwrap_or_default();
                let values: Vec<&Value> = values.into_iter().filter(|v| !v.is_null()).collect();
                match (op, value) {
                    (CompareOp::Eq, CompValue::Null) => values.is_empty(),
                    (CompareOp::Ne, CompValue::Null) => !values.is_empty(),
                    (_, CompValue::Null) => false,
                    (CompareOp::Ne, _) => !values
                        .iter()
                        .any(|v| compare_values(leaf, v, CompareOp::Eq, value)),
                    _ => values.iter().any(|v| compare_values(leaf, v, *op, value)),
                }
            }
        }
    }
}

fn leaf_def<'a>(t: &Target<'a>) -> Option<&'a AttributeDef> {
    match t.sub {
        Some(sub) => Some(sub),
        None if !t.attr.is_complex() => Some(t.attr),
        // `emails eq "x"` compares the primary value sub-attribute of each email.
        None if t.attr.multi_valued => t.attr.sub_attribute("value"),
        None => None,
    }
}

fn attribute_value<'v>(node: &'v Value, t: &Target<'_>) -> Option<&'v Value> {
    let container = match t.container {
        Container::Core => node,
        Container::Extension(urn) => node.get(urn)?,
    };
    container.get(&t.attr.name)
}

/// The values a comparison looks at: every value of a multi-valued attribute, narrowed to the
/// sub-attribute the path names.
fn leaf_values<'v>(v: &'v Value, t: &Target<'_>) -> Vec<&'v Value> {
    let sub_name = match (t.sub, t.attr.is_complex() && t.attr.multi_valued) {
        (Some(sub), _) => Some(sub.name.as_str()),
        (None, true) => Some("value"),
        (None, false) => None,
    };
    let pick = |e: &'v Value| -> Option<&'v Value> {
        match sub_name {
            Some(name) => e.get(name),
            None => Some(e),
        }
    };
    match v {
        Value::Array(items) => items.iter().filter_map(pick).collect(),
        other => pick(other).into_iter().collect(),
    }
}

fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => a.iter().any(is_present),
        Value::Object(o) => o.values().any(is_present),
        _ => true,
    }
}

fn validate_comparison(
    path: &AttrPath,
    leaf: &AttributeDef,
    op: CompareOp,
    value: &CompValue,
) -> Result<(), ScimError> {
    let bad = |why: String| {
        Err(ScimError::invalid_filter(format!(
            "'{path} {} {value}': {why}",
            op.as_str()
        )))
    };
    if matches!(value, CompValue::Null) && !matches!(op, CompareOp::Eq | CompareOp::Ne) {
        return bad("null can only be compared with eq or ne".into());
    }
    match leaf.kind {
        AttributeType::Boolean | AttributeType::Binary if op.is_ordering() || op.is_substring() => {
            bad(format!(
                "operator '{}' is not defined for {} attributes",
                op.as_str(),
                type_name(leaf.kind)
            ))
        }
        AttributeType::Boolean
            if !matches!(value, CompValue::Bool(_) | CompValue::Null)
                && as_bool(value).is_none() =>
        {
            bad("expected true or false".into())
        }
        AttributeType::Integer | AttributeType::Decimal if op.is_substring() => bad(format!(
            "operator '{}' is not defined for numbers",
            op.as_str()
        )),
        AttributeType::Integer | AttributeType::Decimal
            if !matches!(value, CompValue::Null) && as_number(value).is_none() =>
        {
            bad("expected a number".into())
        }
        AttributeType::DateTime
            if !op.is_substring()
                && !matches!(value, CompValue::Null)
                && as_instant(value).is_none() =>
        {
            bad("expected an RFC 3339 date-time such as \"2011-05-13T04:42:34Z\"".into())
        }
        _ => Ok(()),
    }
}

fn type_name(kind: AttributeType) -> &'static str {
    match kind {
        AttributeType::String => "string",
        AttributeType::Boolean => "boolean",
        AttributeType::Decimal => "decimal",
        AttributeType::Integer => "integer",
        AttributeType::DateTime => "dateTime",
        AttributeType::Binary => "binary",
        AttributeType::Reference => "reference",
        AttributeType::Complex => "complex",
    }
}

fn as_bool(value: &CompValue) -> Option<bool> {
    match value {
        CompValue::Bool(b) => Some(*b),
        CompValue::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        CompValue::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn as_number(value: &CompValue) -> Option<f64> {
    match value {
        CompValue::Number(n) => n.as_f64(),
        CompValue::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_instant(value: &CompValue) -> Option<OffsetDateTime> {
    match value {
        CompValue::String(s) => parse_instant(s),
        _ => None,
    }
}

/// Parses an `xsd:dateTime` as used by SCIM (RFC 3339 with an offset).
/// Parses an RFC 3339 date-time, as SCIM `dateTime` values are written.
pub fn parse_instant(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

fn literal_text(value: &CompValue) -> Cow<'_, str> {
    match value {
        CompValue::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

fn json_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Owned(b.to_string())),
        _ => None,
    }
}

/// Compares one attribute value with a filter literal under the attribute's type rules.
pub fn compare_values(
    def: &AttributeDef,
    actual: &Value,
    op: CompareOp,
    literal: &CompValue,
) -> bool {
    match def.kind {
        AttributeType::Boolean => {
            let (Some(a), Some(b)) = (actual.as_bool(), as_bool(literal)) else {
                return false;
            };
            match op {
                CompareOp::Eq => a == b,
                CompareOp::Ne => a != b,
                _ => false,
            }
        }
        AttributeType::Integer | AttributeType::Decimal => {
            let (Some(a), Some(b)) = (actual.as_f64(), as_number(literal)) else {
                return false;
            };
            a.partial_cmp(&b)
                .is_some_and(|ord| ordering_matches(op, ord))
        }
        AttributeType::DateTime if !op.is_substring() => {
            match (actual.as_str().and_then(parse_instant), as_instant(literal)) {
                (Some(a), Some(b)) => ordering_matches(op, a.cmp(&b)),
                _ => compare_strings(def, actual, op, literal),
            }
        }
        _ => compare_strings(def, actual, op, literal),
    }
}

fn compare_strings(def: &AttributeDef, actual: &Value, op: CompareOp, literal: &CompValue) -> bool {
    let Some(a) = json_text(actual) else {
        return false;
    };
    let b = literal_text(literal);
    if !op.is_substring() {
        // Equality and ordering run once per member on large groups: compare case-folded
        // characters in place instead of allocating lower-cased copies.
        let ord = if def.case_exact {
            a.as_ref().cmp(b.as_ref())
        } else if a.is_ascii() && b.is_ascii() {
            a.bytes()
                .map(|c| c.to_ascii_lowercase())
                .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
        } else {
            fold_case(&a).cmp(fold_case(&b))
        };
        return ordering_matches(op, ord);
    }
    let (a, b) = if def.case_exact {
        (a, b)
    } else {
        (a.to_lowercase().into(), b.to_lowercase().into())
    };
    match op {
        CompareOp::Co => a.contains(b.as_ref()),
        CompareOp::Sw => a.starts_with(b.as_ref()),
        _ => a.ends_with(b.as_ref()),
    }
}

fn fold_case(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars().flat_map(char::to_lowercase)
}

fn ordering_matches(op: CompareOp, ord: Ordering) -> bool {
    match op {
        CompareOp::Eq => ord == Ordering::Equal,
        CompareOp::Ne => ord != Ordering::Equal,
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::Ge => ord != Ordering::Less,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::Le => ord != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}
