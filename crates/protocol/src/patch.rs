//! RFC 7644 §3.5.2 PATCH: parsing (with the shapes real IdPs send) and application, reporting
//! exactly what changed.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::filter::{parse_value_filter, CompValue, CompareOp, Filter, ParseLimits};
use crate::path::AttrPath;
use crate::registry::{Container, ResourceSchemas};
use crate::resource::{check_required, enforce_single_primary, normalize_value, NormalizeOptions};
use crate::schema::{AttributeDef, Mutability};
use crate::ScimError;

/// `add`, `remove` or `replace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PatchOpKind {
    Add,
    Remove,
    Replace,
}

impl PatchOpKind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "add" => PatchOpKind::Add,
            "remove" => PatchOpKind::Remove,
            "replace" => PatchOpKind::Replace,
            _ => return None,
        })
    }
}

/// A PATCH path: `attrPath [ "[" valFilter "]" [ "." subAttr ] ]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    pub sub: Option<String>,
}

impl PatchPath {
    /// Parses a path; errors are `invalidPath` and give the byte position.
    pub fn parse(text: &str) -> Result<PatchPath, ScimError> {
        let bad = |at: usize, msg: &str| {
            ScimError::invalid_path(format!("invalid path \"{text}\" at byte {at}: {msg}"))
        };
        let trimmed = text.trim();
        let lead = text.len() - text.trim_start().len();
        let Some(open) = trimmed.find('[') else {
            let attr = AttrPath::parse(trimmed).map_err(|(at, m)| bad(lead + at, &m))?;
            return Ok(PatchPath {
                attr,
                filter: None,
                sub: None,
            });
        };
        let attr = AttrPath::parse(&trimmed[..open]).map_err(|(at, m)| bad(lead + at, &m))?;
        if attr.sub.is_some() {
            return Err(bad(
                lead + open,
                "a value filter applies to an attribute, not to a sub-attribute",
            ));
        }
        let close =
            find_closing_bracket(trimmed, open).ok_or_else(|| bad(lead + open, "missing ']'"))?;
        let inner = &trimmed[open + 1..close];
        let filter = parse_value_filter(inner, &ParseLimits::default())
            .map_err(|e| bad(lead + open + 1 + e.position, &e.message))?;
        let rest = &trimmed[close + 1..];
        let sub = if rest.is_empty() {
            None
        } else if let Some(name) = rest.strip_prefix('.') {
            let sub = AttrPath::parse(name).map_err(|(at, m)| bad(lead + close + 2 + at, &m))?;
            if sub.urn.is_some() || sub.sub.is_some() {
                return Err(bad(lead + close + 2, "expected one sub-attribute name"));
            }
            Some(sub.name)
        } else {
            return Err(bad(
                lead + close + 1,
                "expected '.' and a sub-attribute name after ']'",
            ));
        };
        Ok(PatchPath {
            attr,
            filter: Some(filter),
            sub,
        })
    }
}

/// The index of the `]` closing the `[` at `open`, skipping brackets inside string literals.
fn find_closing_bracket(text: &str, open: usize) -> Option<usize> {
    let mut in_string = false;
    let mut escaped = false;
    for (i, b) in text.bytes().enumerate().skip(open + 1) {
        match b {
            _ if escaped => escaped = false,
            b'\\' if in_string => escaped = true,
            b'"' => in_string = !in_string,
            b']' if !in_string => return Some(i),
            _ => {}
        }
    }
    None
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(filter) = &self.filter {
            write!(f, "[{filter}]")?;
        }
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

/// One operation of a PATCH request.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOperation {
    pub op: PatchOpKind,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

/// A parsed PATCH request body.
/// Op names are accepted in any case, as Entra ID sends them.
///
/// ```
/// use scimgate_protocol::{PatchOpKind, PatchRequest};
/// use serde_json::json;
///
/// let body = json!({
///     "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
///     "Operations": [{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "b@example.com"}]
/// });
/// let request = PatchRequest::parse(&body).unwrap();
/// assert_eq!(request.operations[0].op, PatchOpKind::Replace);
/// assert_eq!(request.operations[0].path.as_ref().unwrap().to_string(), r#"emails[type eq "work"].value"#);
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PatchRequest {
    pub operations: Vec<PatchOperation>,
}

impl PatchRequest {
    /// Parses a PatchOp body. Accepts `op` in any case and `Operations` under any casing of its
    /// key, as Entra ID and others send them.
    pub fn parse(body: &Value) -> Result<PatchRequest, ScimError> {
        let obj = body.as_object().ok_or_else(|| {
            ScimError::invalid_syntax("the PATCH body must be a JSON object (a PatchOp message)")
        })?;
        let ops = obj
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("Operations"))
            .map(|(_, v)| v)
            .ok_or_else(|| ScimError::invalid_syntax("the PATCH body has no 'Operations' array"))?;
        let ops = ops
            .as_array()
            .ok_or_else(|| ScimError::invalid_syntax("'Operations' must be an array"))?;
        let mut operations = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let op_obj = op.as_object().ok_or_else(|| {
                ScimError::invalid_syntax(format!("Operations[{i}] must be an object"))
            })?;
            let field = |name: &str| {
                op_obj
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v)
            };
            let kind = match field("op") {
                Some(Value::String(s)) => PatchOpKind::parse(s).ok_or_else(|| {
                    ScimError::invalid_syntax(format!("Operations[{i}].op: unknown operation '{s}'; expected add, remove or replace"))
                })?,
                _ => return Err(ScimError::invalid_syntax(format!("Operations[{i}].op is missing; expected add, remove or replace"))),
            };
            let path = match field("path") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.trim().is_empty() => None,
                Some(Value::String(s)) => Some(PatchPath::parse(s).map_err(|e| {
                    ScimError::invalid_path(format!("Operations[{i}].path: {}", e.detail))
                })?),
                Some(_) => {
                    return Err(ScimError::invalid_path(format!(
                        "Operations[{i}].path must be a string"
                    )))
                }
            };
            let value = field("value").cloned();
            match (kind, &path, &value) {
                (PatchOpKind::Add | PatchOpKind::Replace, _, None) => {
                    return Err(ScimError::invalid_syntax(format!(
                        "Operations[{i}]: '{}' needs a 'value'",
                        op_name(kind)
                    )))
                }
                (PatchOpKind::Add | PatchOpKind::Replace, None, Some(v)) if !v.is_object() => {
                    return Err(ScimError::invalid_syntax(format!(
                        "Operations[{i}]: without a 'path', 'value' must be an object of attributes"
                    )))
                }
                (PatchOpKind::Remove, None, None | Some(Value::Null)) => {
                    return Err(ScimError::no_target(format!(
                        "Operations[{i}]: 'remove' needs a 'path'"
                    )))
                }
                _ => {}
            }
            operations.push(PatchOperation {
                op: kind,
                path,
                value,
            });
        }
        Ok(PatchRequest { operations })
    }
}

fn op_name(kind: PatchOpKind) -> &'static str {
    match kind {
        PatchOpKind::Add => "add",
        PatchOpKind::Remove => "remove",
        PatchOpKind::Replace => "replace",
    }
}

/// One changed attribute. Single-valued attributes report old and new values (sub-attributes
/// of a complex one separately); multi-valued ones report the values added and removed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Change {
    Value {
        path: String,
        old: Option<Value>,
        new: Option<Value>,
    },
    Values {
        path: String,
        added: Vec<Value>,
        removed: Vec<Value>,
    },
}

impl Change {
    pub fn path(&self) -> &str {
        match self {
            Change::Value { path, .. } | Change::Values { path, .. } => path,
        }
    }
}

/// The result of a PATCH: the new resource and what changed. An empty `changes` means the
/// request changed nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOutcome {
    pub resource: Value,
    pub changes: Vec<Change>,
}

/// One attribute-level step of a PATCH, after path-less values have been split by key.
enum Step<'a, 'v> {
    /// An attribute of a known schema.
    Known {
        op: PatchOpKind,
        container: Container<'a>,
        attr: &'a AttributeDef,
        filter: Option<&'v Filter>,
        sub: Option<&'a AttributeDef>,
        value: Option<&'v Value>,
    },
    /// An attribute of an extension this server does not know: kept verbatim.
    Verbatim {
        op: PatchOpKind,
        urn: String,
        name: String,
        value: Option<&'v Value>,
    },
    /// The whole object of an extension.
    RemoveExtension { urn: String },
}

/// An operation narrowed to one path. `explicit` is false for keys of a path-less value.
struct Expanded<'v> {
    op: PatchOpKind,
    path: std::borrow::Cow<'v, PatchPath>,
    value: Option<&'v Value>,
    explicit: bool,
}

/// Applies `request` to a resource in canonical form (see [`crate::resource::normalize`]).
///
/// Nothing is changed when an operation fails: the error is returned and the caller keeps the
/// resource it had.
///
/// ```
/// use scimgate_protocol::{apply_patch, Change, NormalizeOptions, PatchRequest, SchemaRegistry};
/// use serde_json::json;
///
/// let registry = SchemaRegistry::standard();
/// let groups = registry.view("Group").unwrap();
/// let group = json!({"displayName": "Staff", "members": [{"value": "u1"}, {"value": "u2"}, {"value": "u3"}]});
/// // Entra ID removes members by listing them; only those listed go.
/// let request = PatchRequest::parse(&json!({
///     "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
///     "Operations": [{"op": "Remove", "path": "members", "value": [{"value": "u2"}]}]
/// })).unwrap();
/// let outcome = apply_patch(group, &request, &groups, NormalizeOptions::default()).unwrap();
/// assert_eq!(outcome.resource["members"], json!([{"value": "u1"}, {"value": "u3"}]));
/// assert_eq!(outcome.changes, vec![Change::Values { path: "members".into(), added: vec![], removed: vec![json!({"value": "u2"})] }]);
/// ```
pub fn apply_patch(
    resource: Value,
    request: &PatchRequest,
    rs: &ResourceSchemas<'_>,
    opts: NormalizeOptions,
) -> Result<PatchOutcome, ScimError> {
    let Value::Object(root) = resource else {
        return Err(ScimError::invalid_value(
            "the stored resource is not a JSON object",
        ));
    };
    let expanded = expand(request, rs)?;
    let mut state = State {
        root,
        tracker: Tracker::default(),
        opts,
    };
    for item in &expanded {
        for step in resolve_step(item, rs, opts)? {
            state.apply(step)?;
        }
    }
    state.finish(rs)
}

/// Splits path-less operations into one operation per key of their value, in order.
fn expand<'v>(
    request: &'v PatchRequest,
    rs: &ResourceSchemas<'_>,
) -> Result<Vec<Expanded<'v>>, ScimError> {
    use std::borrow::Cow;
    let mut out = Vec::with_capacity(request.operations.len());
    for operation in &request.operations {
        if let Some(path) = &operation.path {
            out.push(Expanded {
                op: operation.op,
                path: Cow::Borrowed(path),
                value: operation.value.as_ref(),
                explicit: true,
            });
            continue;
        }
        let Some(Value::Object(values)) = &operation.value else {
            return Err(ScimError::no_target(
                "an operation without 'path' needs an object 'value'",
            ));
        };
        for (key, value) in values {
            if ["schemas", "id", "meta"]
                .iter()
                .any(|k| key.eq_ignore_ascii_case(k))
            {
                continue;
            }
            let path = match rs.extension(key) {
                // `{"urn:…:enterprise:2.0:User": {...}}` names the whole extension.
                Some(ext) => PatchPath {
                    attr: whole_extension_path(&ext.id),
                    filter: None,
                    sub: None,
                },
                None => PatchPath::parse(key)?,
            };
            out.push(Expanded {
                op: operation.op,
                path: Cow::Owned(path),
                value: Some(value),
                explicit: false,
            });
        }
    }
    Ok(out)
}

/// A path naming an extension URN as a whole is parsed like any URN path: the text after the
/// last colon becomes the "name". This rebuilds the full URN for comparison.
fn whole_extension_path(urn: &str) -> AttrPath {
    match urn.rfind(':') {
        Some(i) => AttrPath {
            urn: Some(urn[..i].to_string()),
            name: urn[i + 1..].to_string(),
            sub: None,
        },
        None => AttrPath::new(urn),
    }
}

fn resolve_step<'a, 'v>(
    item: &'v Expanded<'v>,
    rs: &ResourceSchemas<'a>,
    opts: NormalizeOptions,
) -> Result<Vec<Step<'a, 'v>>, ScimError> {
    let path: &'v PatchPath = &item.path;
    let op = item.op;
    let skip_or = |e: ScimError| {
        if !item.explicit && opts.lenient {
            Ok(vec![])
        } else {
            Err(e)
        }
    };

    if path.filter.is_none() && path.attr.sub.is_none() {
        if let Some(urn) = &path.attr.urn {
            if let Some(ext) = rs.extension(&format!("{urn}:{}", path.attr.name)) {
                return match (op, item.value) {
                    (PatchOpKind::Remove, _) | (_, Some(Value::Null)) => {
                        Ok(vec![Step::RemoveExtension {
                            urn: ext.id.clone(),
                        }])
                    }
                    (_, Some(Value::Object(attrs))) => {
                        let mut steps = Vec::with_capacity(attrs.len());
                        for (name, value) in attrs {
                            match ext.attribute(name) {
                                Some(attr) if attr.mutability != Mutability::ReadOnly => steps
                                    .push(Step::Known {
                                        op,
                                        container: Container::Extension(ext.id.as_str()),
                                        attr,
                                        filter: None,
                                        sub: None,
                                        value: Some(value),
                                    }),
                                Some(_) => {}
                                None if opts.lenient => {}
                                None => {
                                    return Err(ScimError::invalid_path(format!(
                                        "unknown attribute '{}:{name}'",
                                        ext.id
                                    )))
                                }
                            }
                        }
                        Ok(steps)
                    }
                    _ => Err(ScimError::invalid_value(format!(
                        "the value for '{}' must be an object",
                        ext.id
                    ))),
                };
            }
        }
    }

    let Some(resolved) = rs.resolve(&path.attr) else {
        if let Some(urn) = &path.attr.urn {
            let known = urn.eq_ignore_ascii_case(&rs.core.id) || rs.extension(urn).is_some();
            if !known && path.filter.is_none() && path.attr.sub.is_none() {
                return Ok(vec![Step::Verbatim {
                    op,
                    urn: urn.clone(),
                    name: path.attr.name.clone(),
                    value: item.value,
                }]);
            }
        }
        return skip_or(ScimError::invalid_path(format!(
            "'{}' is not an attribute of {}",
            path.attr, rs.resource_type.name
        )));
    };
    let attr = resolved.attr;
    let sub = match (&path.sub, resolved.sub) {
        (Some(name), _) => match attr.sub_attribute(name) {
            Some(sub) => Some(sub),
            None => {
                return skip_or(ScimError::invalid_path(format!(
                    "'{}' has no sub-attribute '{name}'",
                    attr.name
                )))
            }
        },
        (None, sub) => sub,
    };
    if let Some(filter) = &path.filter {
        if !(attr.is_complex() && attr.multi_valued) {
            return Err(ScimError::invalid_path(format!(
                "'{}' is not a multi-valued complex attribute, so it cannot take a value filter",
                attr.name
            )));
        }
        let validated = crate::filter::FilterContext::Element(attr);
        filter.validate_in_context(validated)?;
    }
    let read_only = attr.mutability == Mutability::ReadOnly
        || sub.is_some_and(|s| s.mutability == Mutability::ReadOnly);
    if read_only {
        return if item.explicit {
            Err(ScimError::mutability(format!("'{path}' is read-only")))
        } else {
            Ok(vec![])
        };
    }
    Ok(vec![Step::Known {
        op,
        container: resolved.container,
        attr,
        filter: path.filter.as_ref(),
        sub,
        value: item.value,
    }])
}

type Key = (Option<String>, String);

/// Records what the PATCH touched: snapshots of single-valued attributes, and the values
/// added to and removed from multi-valued ones (so a 50,000-member list is never diffed).
#[derive(Default)]
struct Tracker {
    singles: Vec<(Key, Option<Value>)>,
    multis: Vec<(Key, Vec<Value>, Vec<Value>)>,
}

impl Tracker {
    fn snapshot(&mut self, key: &Key, current: Option<&Value>) {
        if !self.singles.iter().any(|(k, _)| k == key) {
            self.singles.push((key.clone(), current.cloned()));
        }
    }

    fn multi(&mut self, key: &Key) -> (&mut Vec<Value>, &mut Vec<Value>) {
        let idx = match self.multis.iter().position(|(k, _, _)| k == key) {
            Some(i) => i,
            None => {
                self.multis.push((key.clone(), Vec::new(), Vec::new()));
                self.multis.len() - 1
            }
        };
        let (_, added, removed) = &mut self.multis[idx];
        (added, removed)
    }
}

struct State {
    root: Map<String, Value>,
    tracker: Tracker,
    opts: NormalizeOptions,
}

fn display_path(key: &Key, sub: Option<&str>) -> String {
    let mut s = match &key.0 {
        Some(urn) => format!("{urn}:{}", key.1),
        None => key.1.clone(),
    };
    if let Some(sub) = sub {
        s.push('.');
        s.push_str(sub);
    }
    s
}

impl State {
    fn container(&mut self, container: Container<'_>) -> &mut Map<String, Value> {
        match container {
            Container::Core => &mut self.root,
            Container::Extension(urn) => {
                let slot = self
                    .root
                    .entry(urn.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                match slot {
                    Value::Object(m) => m,
                    _ => unreachable!("slot was just made an object"),
                }
            }
        }
    }

    fn apply(&mut self, step: Step<'_, '_>) -> Result<(), ScimError> {
        match step {
            Step::RemoveExtension { urn } => {
                if let Some(Value::Object(attrs)) = self.root.get(&urn) {
                    let names: Vec<String> = attrs.keys().cloned().collect();
                    for name in names {
                        let key = (Some(urn.clone()), name.clone());
                        let current = self.root.get(&urn).and_then(|o| o.get(&name)).cloned();
                        self.tracker.snapshot(&key, current.as_ref());
                    }
                }
                self.root.remove(&urn);
                Ok(())
            }
            Step::Verbatim {
                op,
                urn,
                name,
                value,
            } => {
                let key = (Some(urn.clone()), name.clone());
                let current = self.root.get(&urn).and_then(|o| o.get(&name)).cloned();
                self.tracker.snapshot(&key, current.as_ref());
                let slot = self
                    .root
                    .entry(urn)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(obj) = slot {
                    match (op, value) {
                        (PatchOpKind::Remove, _) | (_, None | Some(Value::Null)) => {
                            obj.remove(&name);
                        }
                        (_, Some(v)) => {
                            obj.insert(name, v.clone());
                        }
                    }
                }
                Ok(())
            }
            Step::Known {
                op,
                container,
                attr,
                filter,
                sub,
                value,
            } => {
                let key: Key = (
                    match container {
                        Container::Core => None,
                        Container::Extension(urn) => Some(urn.to_string()),
                    },
                    attr.name.clone(),
                );
                if attr.multi_valued {
                    self.apply_multi(op, container, &key, attr, filter, sub, value)
                } else {
                    self.apply_single(op, container, &key, attr, sub, value)
                }
            }
        }
    }

    fn apply_single(
        &mut self,
        op: PatchOpKind,
        container: Container<'_>,
        key: &Key,
        attr: &AttributeDef,
        sub: Option<&AttributeDef>,
        value: Option<&Value>,
    ) -> Result<(), ScimError> {
        let opts = self.opts;
        let current = self.container(container).get(&attr.name).cloned();
        self.tracker.snapshot(key, current.as_ref());
        let path = display_path(key, sub.map(|s| s.name.as_str()));
        let map = self.container(container);
        match (op, sub, value) {
            (PatchOpKind::Remove, None, _) | (_, None, None | Some(Value::Null)) => {
                map.remove(&attr.name);
            }
            (PatchOpKind::Remove, Some(sub), _) | (_, Some(sub), None | Some(Value::Null)) => {
                if let Some(Value::Object(obj)) = map.get_mut(&attr.name) {
                    obj.remove(&sub.name);
                    if obj.is_empty() {
                        map.remove(&attr.name);
                    }
                }
            }
            (_, Some(sub), Some(v)) => {
                let normalized = normalize_value(sub, v, &path, opts)?;
                check_immutable_value(
                    sub,
                    map.get(&attr.name).and_then(|o| o.get(&sub.name)),
                    normalized.as_ref(),
                    &path,
                )?;
                let slot = map
                    .entry(attr.name.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(obj) = slot {
                    match normalized {
                        Some(n) => {
                            obj.insert(sub.name.clone(), n);
                        }
                        None => {
                            obj.remove(&sub.name);
                        }
                    }
                    if obj.is_empty() {
                        map.remove(&attr.name);
                    }
                }
            }
            (_, None, Some(v)) if attr.is_complex() => {
                // RFC 7644 §3.5.2.3: sub-attributes not given are left unchanged; a null one is removed.
                let Some(given) = complex_input(attr, v, opts) else {
                    return Err(ScimError::invalid_value(format!(
                        "'{path}' is complex and takes an object"
                    )));
                };
                let slot = map
                    .entry(attr.name.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(obj) = slot {
                    for (k, sv) in given.iter() {
                        let Some(sub) = attr.sub_attribute(k) else {
                            if opts.lenient {
                                continue;
                            }
                            return Err(ScimError::invalid_path(format!(
                                "'{path}' has no sub-attribute '{k}'"
                            )));
                        };
                        if sub.mutability == Mutability::ReadOnly {
                            continue;
                        }
                        match normalize_value(sub, sv, &format!("{path}.{}", sub.name), opts)? {
                            Some(n) => {
                                obj.insert(sub.name.clone(), n);
                            }
                            None => {
                                obj.remove(&sub.name);
                            }
                        }
                    }
                    let mut ordered = Map::new();
                    for sub in &attr.sub_attributes {
                        if let Some(x) = obj.remove(&sub.name) {
                            ordered.insert(sub.name.clone(), x);
                        }
                    }
                    *obj = ordered;
                    if obj.is_empty() {
                        map.remove(&attr.name);
                    }
                }
            }
            (_, None, Some(v)) => {
                let normalized = normalize_value(attr, v, &path, opts)?;
                check_immutable_value(attr, map.get(&attr.name), normalized.as_ref(), &path)?;
                match normalized {
                    Some(n) => {
                        map.insert(attr.name.clone(), n);
                    }
                    None => {
                        map.remove(&attr.name);
                    }
                }
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_multi(
        &mut self,
        op: PatchOpKind,
        container: Container<'_>,
        key: &Key,
        attr: &AttributeDef,
        filter: Option<&Filter>,
        sub: Option<&AttributeDef>,
        value: Option<&Value>,
    ) -> Result<(), ScimError> {
        let opts = self.opts;
        let path = display_path(key, sub.map(|s| s.name.as_str()));
        let mut items = match self.container(container).remove(&attr.name) {
            Some(Value::Array(items)) => items,
            Some(other) => vec![other],
            None => Vec::new(),
        };
        let (added, removed) = self.tracker.multi(key);
        let mut delta = Delta { added, removed };
        let result = apply_to_list(
            &mut items, &mut delta, op, attr, filter, sub, value, &path, opts,
        );
        if !items.is_empty() {
            self.container(container)
                .insert(attr.name.clone(), Value::Array(items));
        }
        result
    }

    fn finish(mut self, rs: &ResourceSchemas<'_>) -> Result<PatchOutcome, ScimError> {
        // Drop empty extension objects and keep `schemas` in step with what is present.
        let mut schemas: Vec<String> = match self.root.get("schemas") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => vec![rs.core.id.clone()],
        };
        let urn_keys: Vec<String> = self
            .root
            .keys()
            .filter(|k| crate::path::has_urn_prefix(k))
            .cloned()
            .collect();
        for urn in urn_keys {
            let empty = matches!(self.root.get(&urn), Some(Value::Object(o)) if o.is_empty());
            if empty {
                self.root.remove(&urn);
            } else if !schemas.iter().any(|s| s.eq_ignore_ascii_case(&urn)) {
                schemas.push(urn);
            }
        }
        schemas.retain(|s| rs.extension(s).is_none() || self.root.contains_key(s.as_str()));
        self.root.insert(
            "schemas".into(),
            Value::Array(schemas.into_iter().map(Value::String).collect()),
        );
        let resource = Value::Object(self.root);
        check_required(&resource, rs)?;

        let mut changes = Vec::new();
        for (key, old) in self.tracker.singles {
            let container = match &key.0 {
                Some(urn) => resource.get(urn),
                None => Some(&resource),
            };
            let new = container.and_then(|c| c.get(&key.1)).cloned();
            if old == new {
                continue;
            }
            match (&old, &new) {
                (Some(Value::Object(a)), Some(Value::Object(b))) => {
                    let names: Vec<&String> = a
                        .keys()
                        .chain(b.keys().filter(|k| !a.contains_key(*k)))
                        .collect();
                    for name in names {
                        if a.get(name) != b.get(name) {
                            changes.push(Change::Value {
                                path: display_path(&key, Some(name)),
                                old: a.get(name).cloned(),
                                new: b.get(name).cloned(),
                            });
                        }
                    }
                }
                _ => changes.push(Change::Value {
                    path: display_path(&key, None),
                    old,
                    new,
                }),
            }
        }
        for (key, added, removed) in self.tracker.multis {
            let (added, removed) = cancel_pairs(added, removed);
            if !added.is_empty() || !removed.is_empty() {
                changes.push(Change::Values {
                    path: display_path(&key, None),
                    added,
                    removed,
                });
            }
        }
        Ok(PatchOutcome { resource, changes })
    }
}

fn check_immutable_value(
    def: &AttributeDef,
    old: Option<&Value>,
    new: Option<&Value>,
    path: &str,
) -> Result<(), ScimError> {
    match (old, new) {
        (Some(a), b) if def.mutability == Mutability::Immutable && Some(a) != b => Err(
            ScimError::mutability(format!("'{path}' is immutable and cannot be changed")),
        ),
        _ => Ok(()),
    }
}

/// Values added then removed (or removed then re-added) within one PATCH cancel out.
fn cancel_pairs(added: Vec<Value>, removed: Vec<Value>) -> (Vec<Value>, Vec<Value>) {
    if added.is_empty() || removed.is_empty() {
        return (added, removed);
    }
    let mut removed_count: HashMap<String, usize> = HashMap::new();
    for r in &removed {
        *removed_count.entry(r.to_string()).or_default() += 1;
    }
    let mut cancelled: HashMap<String, usize> = HashMap::new();
    let added: Vec<Value> = added
        .into_iter()
        .filter(|a| {
            let text = a.to_string();
            match removed_count.get_mut(&text) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    *cancelled.entry(text).or_default() += 1;
                    false
                }
                _ => true,
            }
        })
        .collect();
    let removed = removed
        .into_iter()
        .filter(|r| {
            let text = r.to_string();
            match cancelled.get_mut(&text) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    false
                }
                _ => true,
            }
        })
        .collect();
    (added, removed)
}

struct Delta<'t> {
    added: &'t mut Vec<Value>,
    removed: &'t mut Vec<Value>,
}

impl Delta<'_> {
    fn modified(&mut self, before: Value, after: &Value) {
        if &before != after {
            self.removed.push(before);
            self.added.push(after.clone());
        }
    }
}

/// Whether values of this attribute are identified by their `value` alone (an immutable
/// reference such as `members.value`), so re-adding one with other sub-attributes is a no-op.
fn identified_by_value(attr: &AttributeDef) -> bool {
    attr.sub_attribute("value")
        .is_some_and(|v| v.mutability == Mutability::Immutable)
}

fn value_key(item: &Value) -> Option<&str> {
    item.get("value").and_then(Value::as_str)
}

#[allow(clippy::too_many_arguments)]
fn apply_to_list(
    items: &mut Vec<Value>,
    delta: &mut Delta<'_>,
    op: PatchOpKind,
    attr: &AttributeDef,
    filter: Option<&Filter>,
    sub: Option<&AttributeDef>,
    value: Option<&Value>,
    path: &str,
    opts: NormalizeOptions,
) -> Result<(), ScimError> {
    let matches = |item: &Value| filter.is_none_or(|f| f.matches_element(item, attr));
    match (op, filter, sub) {
        (PatchOpKind::Remove, None, None) => match value {
            // Entra ID removes members by listing them in `value`: remove exactly those.
            Some(v) if !v.is_null() => {
                let listed = normalize_value(attr, v, path, opts)?;
                let listed = match listed {
                    Some(Value::Array(listed)) => listed,
                    _ => Vec::new(),
                };
                remove_listed(items, delta, attr, &listed);
            }
            _ => delta.removed.append(items),
        },
        (PatchOpKind::Remove, _, None) => {
            let before = items.len();
            let mut kept = Vec::with_capacity(items.len());
            for item in items.drain(..) {
                if matches(&item) {
                    delta.removed.push(item);
                } else {
                    kept.push(item);
                }
            }
            *items = kept;
            if items.len() == before && !opts.lenient {
                return Err(ScimError::no_target(format!(
                    "no value of '{}' matches the filter",
                    attr.name
                )));
            }
        }
        (PatchOpKind::Remove, _, Some(sub)) => {
            let mut hit = false;
            for item in items.iter_mut() {
                if matches(item) {
                    if let Some(obj) = item.as_object() {
                        if obj.contains_key(&sub.name) {
                            let before = item.clone();
                            if let Some(obj) = item.as_object_mut() {
                                obj.remove(&sub.name);
                            }
                            delta.modified(before, item);
                            hit = true;
                        }
                    }
                }
            }
            items.retain(|i| !matches!(i, Value::Object(o) if o.is_empty()));
            if !hit && filter.is_some() && !opts.lenient {
                return Err(ScimError::no_target(format!(
                    "no value of '{}' matches the filter",
                    attr.name
                )));
            }
        }
        (PatchOpKind::Add, None, None) => {
            let Some(v) = value else { return Ok(()) };
            let new_items = match normalize_value(attr, v, path, opts)? {
                Some(Value::Array(new_items)) => new_items,
                _ => Vec::new(),
            };
            add_items(items, delta, attr, new_items);
        }
        (PatchOpKind::Replace, None, None) => {
            let new_items = match value
                .map(|v| normalize_value(attr, v, path, opts))
                .transpose()?
                .flatten()
            {
                Some(Value::Array(new_items)) => new_items,
                _ => Vec::new(),
            };
            delta.removed.append(items);
            delta.added.extend(new_items.iter().cloned());
            *items = new_items;
        }
        (_, _, Some(sub)) => {
            let Some(v) = value else { return Ok(()) };
            let sub_value = normalize_value(sub, v, path, opts)?;
            let mut hit = false;
            for item in items.iter_mut() {
                if matches(item) {
                    hit = true;
                    let before = item.clone();
                    if let Value::Object(obj) = item {
                        match &sub_value {
                            Some(n) => {
                                obj.insert(sub.name.clone(), n.clone());
                            }
                            None => {
                                obj.remove(&sub.name);
                            }
                        }
                    }
                    delta.modified(before, item);
                }
            }
            if !hit {
                // Entra ID replaces `emails[type eq "work"].value` on users with no work email
                // yet: the filter's equalities and the value make the new element.
                let Some(mut element) = filter.and_then(|f| element_from_filter(f, attr)) else {
                    return Err(ScimError::no_target(format!(
                        "no value of '{}' matches the filter",
                        attr.name
                    )));
                };
                if let Some(n) = sub_value {
                    element.insert(sub.name.clone(), n);
                }
                let normalized = normalize_value(attr, &Value::Object(element), path, opts)?;
                if let Some(Value::Array(new_items)) = normalized {
                    add_items(items, delta, attr, new_items);
                }
            } else if sub.name == "primary" && sub_value == Some(Value::Bool(true)) {
                demote_primaries(items, delta, |_, i| matches(i));
            }
        }
        (_, Some(f), None) => {
            let Some(v) = value else { return Ok(()) };
            let Some(Value::Array(mut replacement)) = normalize_value(attr, v, path, opts)? else {
                return Ok(());
            };
            let Some(Value::Object(given)) = replacement.pop() else {
                return Err(ScimError::invalid_value(format!(
                    "'{path}' takes an object for a filtered path"
                )));
            };
            let mut hit = false;
            for item in items.iter_mut() {
                if f.matches_element(item, attr) {
                    hit = true;
                    let before = item.clone();
                    match op {
                        PatchOpKind::Replace => *item = Value::Object(given.clone()),
                        _ => {
                            if let Value::Object(obj) = item {
                                for (k, x) in &given {
                                    obj.insert(k.clone(), x.clone());
                                }
                            }
                        }
                    }
                    delta.modified(before, item);
                }
            }
            if !hit {
                let mut element = element_from_filter(f, attr).unwrap_or_default();
                for (k, x) in given {
                    element.insert(k, x);
                }
                if let Some(Value::Array(new_items)) =
                    normalize_value(attr, &Value::Object(element), path, opts)?
                {
                    add_items(items, delta, attr, new_items);
                }
            }
        }
    }
    if attr.sub_attribute("primary").is_some() {
        enforce_single_primary(items, path, NormalizeOptions { lenient: true })?;
    }
    Ok(())
}

fn add_items(
    items: &mut Vec<Value>,
    delta: &mut Delta<'_>,
    attr: &AttributeDef,
    new_items: Vec<Value>,
) {
    let mut new_primary = false;
    if identified_by_value(attr) {
        let wanted: HashSet<&str> = new_items.iter().filter_map(value_key).collect();
        let mut present: HashSet<String> = items
            .iter()
            .filter_map(value_key)
            .filter(|k| wanted.contains(k))
            .map(str::to_string)
            .collect();
        let mut to_add = Vec::new();
        for item in &new_items {
            let fresh = match value_key(item) {
                Some(k) => present.insert(k.to_string()),
                None => !items.contains(item),
            };
            if fresh {
                to_add.push(item.clone());
            }
        }
        for item in to_add {
            new_primary |= item.get("primary") == Some(&Value::Bool(true));
            delta.added.push(item.clone());
            items.push(item);
        }
    } else {
        for item in new_items {
            if !items.contains(&item) {
                new_primary |= item.get("primary") == Some(&Value::Bool(true));
                delta.added.push(item.clone());
                items.push(item);
            }
        }
    }
    if new_primary {
        // RFC 7643 §2.4: the newest primary wins; earlier ones are set to false.
        let last = items
            .iter()
            .rposition(|i| i.get("primary") == Some(&Value::Bool(true)));
        demote_primaries(items, delta, |index, _| Some(index) == last);
    }
}

/// The object given for a single-valued complex attribute. Leniently, as Entra ID sends for
/// `manager`, also a one-element array of it, or a bare id standing for `{"value": id}`.
fn complex_input<'v>(
    attr: &AttributeDef,
    v: &'v Value,
    opts: NormalizeOptions,
) -> Option<std::borrow::Cow<'v, Map<String, Value>>> {
    use std::borrow::Cow;
    match v {
        Value::Object(given) => Some(Cow::Borrowed(given)),
        Value::Array(items) if opts.lenient && items.len() == 1 => {
            complex_input(attr, &items[0], opts)
        }
        Value::String(_) | Value::Number(_)
            if opts.lenient && attr.sub_attribute("value").is_some() =>
        {
            let mut m = Map::new();
            m.insert("value".into(), v.clone());
            Some(Cow::Owned(m))
        }
        _ => None,
    }
}

/// Sets `primary` to false on every value for which `keep(index, value)` is false.
fn demote_primaries(
    items: &mut [Value],
    delta: &mut Delta<'_>,
    mut keep: impl FnMut(usize, &Value) -> bool,
) {
    for (index, item) in items.iter_mut().enumerate() {
        let is_primary = item.get("primary") == Some(&Value::Bool(true));
        if is_primary && !keep(index, item) {
            let before = item.clone();
            if let Value::Object(obj) = item {
                obj.insert("primary".into(), Value::Bool(false));
            }
            delta.modified(before, item);
        }
    }
}

fn remove_listed(
    items: &mut Vec<Value>,
    delta: &mut Delta<'_>,
    attr: &AttributeDef,
    listed: &[Value],
) {
    let by_value = attr.is_complex() && attr.sub_attribute("value").is_some();
    let keys: HashSet<&str> = if by_value {
        listed.iter().filter_map(value_key).collect()
    } else {
        HashSet::new()
    };
    let mut kept = Vec::with_capacity(items.len());
    for item in items.drain(..) {
        let hit = if by_value {
            value_key(&item).is_some_and(|k| keys.contains(k))
        } else {
            listed.contains(&item)
        };
        if hit {
            delta.removed.push(item);
        } else {
            kept.push(item);
        }
    }
    *items = kept;
}

/// The element a value filter of equalities describes: `type eq "work"` → `{"type": "work"}`.
fn element_from_filter(filter: &Filter, attr: &AttributeDef) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    let mut add = |f: &Filter| -> Option<()> {
        let Filter::Compare {
            path,
            op: CompareOp::Eq,
            value,
        } = f
        else {
            return None;
        };
        if path.urn.is_some() || path.sub.is_some() {
            return None;
        }
        let sub = attr.sub_attribute(&path.name)?;
        let v = match value {
            CompValue::String(s) => Value::String(s.clone()),
            CompValue::Bool(b) => Value::Bool(*b),
            CompValue::Number(n) => Value::Number(n.clone()),
            CompValue::Null => return None,
        };
        out.insert(sub.name.clone(), v);
        Some(())
    };
    match filter {
        Filter::And(items) => {
            for item in items {
                add(item)?;
            }
        }
        other => add(other)?,
    }
    Some(out)
}
