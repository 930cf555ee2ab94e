//! Validation and normalisation of incoming resources against their schemas.
//!
//! Input attribute names are matched case-insensitively and written back canonically; values are
//! type-checked; read-only input is dropped. The lenient mode (the default) also accepts what
//! real identity providers send: `"True"`/`"False"` strings for booleans (Entra ID), a single
//! value where an array is expected, empty strings meaning absent, numbers for strings.

use serde_json::{Map, Value};

use crate::filter::parse_instant;
use crate::path::AttrPath;
use crate::registry::{Container, ResourceSchemas};
use crate::schema::{AttributeDef, AttributeType, Mutability};
use crate::ScimError;

/// How forgiving normalisation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NormalizeOptions {
    pub lenient: bool,
}

impl Default for NormalizeOptions {
    fn default() -> Self {
        NormalizeOptions { lenient: true }
    }
}

/// Validates `input` as a resource of the type `rs` describes and returns its canonical form:
/// `schemas` first, then `externalId`, core attributes in schema order, then extension objects.
/// `id` and `meta` are not copied: the server owns them.
///
/// ```
/// use scimgate_protocol::{normalize, NormalizeOptions, SchemaRegistry};
/// use serde_json::json;
///
/// let registry = SchemaRegistry::standard();
/// let users = registry.view("User").unwrap();
/// let entra = json!({
///     "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
///     "UserName": "bjensen", "active": "True", "id": "ignored", "nickName": ""
/// });
/// let user = normalize(&entra, &users, NormalizeOptions::default()).unwrap();
/// assert_eq!(user, json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "bjensen", "active": true}));
/// assert!(normalize(&entra, &users, NormalizeOptions { lenient: false }).is_err());
/// ```
pub fn normalize(
    input: &Value,
    rs: &ResourceSchemas<'_>,
    opts: NormalizeOptions,
) -> Result<Value, ScimError> {
    let obj = input.as_object().ok_or_else(|| {
        ScimError::invalid_syntax("the request body must be a JSON object holding a SCIM resource")
    })?;

    let declared = declared_schemas(obj, rs, opts)?;
    let mut core: Map<String, Value> = Map::new();
    let mut extensions: Vec<(String, Map<String, Value>)> = Vec::new();
    let mut verbatim: Vec<(String, Value)> = Vec::new();

    for (key, value) in obj {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if let Some(ext) = rs.extension(key) {
            let ext_obj = match value {
                Value::Object(o) => o,
                Value::Null => continue,
                _ => {
                    return Err(ScimError::invalid_syntax(format!(
                        "'{}' must be an object of extension attributes",
                        ext.id
                    )))
                }
            };
            let target = extension_slot(&mut extensions, &ext.id);
            for (k, v) in ext_obj {
                let def = match ext.attribute(k) {
                    Some(def) => def,
                    None if opts.lenient => continue,
                    None => {
                        return Err(ScimError::invalid_value(format!(
                            "unknown attribute '{}:{k}'",
                            ext.id
                        )))
                    }
                };
                insert_attribute(target, def, v, &format!("{}:{}", ext.id, def.name), opts)?;
            }
            continue;
        }
        let is_urn = crate::path::has_urn_prefix(key);
        if is_urn {
            // Either a URN-qualified attribute (`urn:…:User:employeeNumber`) or the object of an
            // extension this server does not know, which is kept as it was sent.
            let resolved = AttrPath::parse(key)
                .ok()
                .filter(|p| p.sub.is_none())
                .and_then(|p| rs.resolve(&p));
            match resolved {
                Some(r) => {
                    let target = match r.container {
                        Container::Core => &mut core,
                        Container::Extension(urn) => extension_slot(&mut extensions, urn),
                    };
                    insert_attribute(target, r.attr, value, &r.canonical_path(), opts)?;
                }
                None => {
                    if !opts.lenient && !declared.iter().any(|d| d.eq_ignore_ascii_case(key)) {
                        return Err(ScimError::invalid_value(format!(
                            "attributes of '{key}' are present but 'schemas' does not list that schema"
                        )));
                    }
                    verbatim.push((key.clone(), value.clone()));
                }
            }
            continue;
        }
        match rs.core_attribute(key) {
            Some(def) => insert_attribute(&mut core, def, value, &def.name, opts)?,
            None if opts.lenient => {}
            None => {
                return Err(ScimError::invalid_value(format!(
                    "unknown attribute '{key}'"
                )))
            }
        }
    }

    extensions.retain(|(_, m)| !m.is_empty());
    let mut schemas: Vec<String> = vec![rs.core.id.clone()];
    for (ext, _) in &rs.extensions {
        let used = extensions.iter().any(|(urn, _)| urn == &ext.id);
        let listed = declared.iter().any(|d| d.eq_ignore_ascii_case(&ext.id));
        if used && !listed && !opts.lenient {
            return Err(ScimError::invalid_value(format!(
                "attributes of '{}' are present but 'schemas' does not list that schema",
                ext.id
            )));
        }
        if used || listed {
            schemas.push(ext.id.clone());
        }
    }
    for d in &declared {
        if !schemas.iter().any(|s| s.eq_ignore_ascii_case(d)) {
            schemas.push(d.clone());
        }
    }
    for (key, _) in &verbatim {
        if !schemas.iter().any(|s| s.eq_ignore_ascii_case(key)) {
            schemas.push(key.clone());
        }
    }

    let mut out = Map::new();
    out.insert(
        "schemas".into(),
        Value::Array(schemas.into_iter().map(Value::String).collect()),
    );
    if let Some(v) = core.remove("externalId") {
        out.insert("externalId".into(), v);
    }
    for def in &rs.core.attributes {
        if let Some(v) = core.remove(&def.name) {
            out.insert(def.name.clone(), v);
        }
    }
    for (urn, attrs) in extensions {
        let ext = rs.extension(&urn);
        let mut ordered = Map::new();
        if let Some(ext) = ext {
            for def in &ext.attributes {
                if let Some(v) = attrs.get(&def.name) {
                    ordered.insert(def.name.clone(), v.clone());
                }
            }
        }
        out.insert(urn, Value::Object(ordered));
    }
    for (key, value) in verbatim {
        out.insert(key, value);
    }
    let out = Value::Object(out);
    check_required(&out, rs)?;
    Ok(out)
}

fn extension_slot<'m>(
    extensions: &'m mut Vec<(String, Map<String, Value>)>,
    urn: &str,
) -> &'m mut Map<String, Value> {
    let idx = match extensions.iter().position(|(u, _)| u == urn) {
        Some(i) => i,
        None => {
            extensions.push((urn.to_string(), Map::new()));
            extensions.len() - 1
        }
    };
    &mut extensions[idx].1
}

fn declared_schemas(
    obj: &Map<String, Value>,
    rs: &ResourceSchemas<'_>,
    opts: NormalizeOptions,
) -> Result<Vec<String>, ScimError> {
    let raw = obj
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("schemas"))
        .map(|(_, v)| v);
    let list = match raw {
        None | Some(Value::Null) if opts.lenient => return Ok(vec![]),
        None | Some(Value::Null) => return Err(ScimError::invalid_syntax("'schemas' is required")),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(ScimError::invalid_syntax(
                "'schemas' must be an array of schema URNs",
            ))
        }
    };
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        let s = item.as_str().ok_or_else(|| {
            ScimError::invalid_syntax("'schemas' must be an array of schema URNs")
        })?;
        if let Some(canonical) = rs.schema_ids().find(|id| id.eq_ignore_ascii_case(s)) {
            out.push(canonical.to_string());
        } else {
            out.push(s.to_string());
        }
    }
    if !opts.lenient && !out.iter().any(|s| s == &rs.core.id) {
        return Err(ScimError::invalid_value(format!(
            "'schemas' must include '{}'",
            rs.core.id
        )));
    }
    Ok(out)
}

fn insert_attribute(
    target: &mut Map<String, Value>,
    def: &AttributeDef,
    value: &Value,
    path: &str,
    opts: NormalizeOptions,
) -> Result<(), ScimError> {
    if def.mutability == Mutability::ReadOnly {
        return Ok(());
    }
    match normalize_value(def, value, path, opts)? {
        Some(v) => {
            target.insert(def.name.clone(), v);
        }
        None => {
            target.remove(&def.name);
        }
    }
    Ok(())
}

/// Normalises one attribute's value. `None` means the attribute is absent (null, empty string,
/// empty array or an object with nothing in it).
pub fn normalize_value(
    def: &AttributeDef,
    value: &Value,
    path: &str,
    opts: NormalizeOptions,
) -> Result<Option<Value>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    if !def.multi_valued {
        return match value {
            Value::Array(items) if opts.lenient && items.len() <= 1 => match items.first() {
                Some(v) => normalize_single(def, v, path, opts),
                None => Ok(None),
            },
            Value::Array(_) => Err(ScimError::invalid_value(format!(
                "'{path}' takes a single value, not an array"
            ))),
            _ => normalize_single(def, value, path, opts),
        };
    }
    let single;
    let items: &[Value] = match value {
        Value::Array(items) => items,
        _ if opts.lenient => {
            single = [value.clone()];
            &single
        }
        _ => {
            return Err(ScimError::invalid_value(format!(
                "'{path}' is multi-valued and takes an array"
            )))
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if let Some(v) = normalize_single(def, item, path, opts)? {
            out.push(v);
        }
    }
    if def.is_complex() {
        enforce_single_primary(&mut out, path, opts)?;
    }
    Ok(if out.is_empty() {
        None
    } else {
        Some(Value::Array(out))
    })
}

/// RFC 7643 §2.4: `primary: true` appears at most once in a multi-valued attribute. Leniently
/// the first one wins.
pub(crate) fn enforce_single_primary(
    items: &mut [Value],
    path: &str,
    opts: NormalizeOptions,
) -> Result<(), ScimError> {
    let mut seen = false;
    for item in items.iter_mut() {
        if let Some(p) = item.get_mut("primary") {
            if p == &Value::Bool(true) {
                if seen {
                    if !opts.lenient {
                        return Err(ScimError::invalid_value(format!(
                            "'{path}' has more than one primary value"
                        )));
                    }
                    *p = Value::Bool(false);
                }
                seen = true;
            }
        }
    }
    Ok(())
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn normalize_single(
    def: &AttributeDef,
    value: &Value,
    path: &str,
    opts: NormalizeOptions,
) -> Result<Option<Value>, ScimError> {
    let mismatch = |want: &str| {
        ScimError::invalid_value(format!("'{path}' must be {want}, got {}", kind_of(value)))
    };
    match def.kind {
        _ if value.is_null() => Ok(None),
        AttributeType::Complex => {
            let obj = match value {
                Value::Object(o) => o,
                // `"members": ["id"]`: a bare value of a multi-valued complex attribute.
                Value::String(_) | Value::Number(_) if opts.lenient && def.sub_attribute("value").is_some() => {
                    let mut m = Map::new();
                    m.insert("value".into(), value.clone());
                    return normalize_single(def, &Value::Object(m), path, opts);
                }
                _ => return Err(mismatch("an object")),
            };
            let mut collected = Map::new();
            for (k, v) in obj {
                let sub = match def.sub_attribute(k) {
                    Some(sub) => sub,
                    None if opts.lenient => continue,
                    None => return Err(ScimError::invalid_value(format!("unknown sub-attribute '{path}.{k}'"))),
                };
                insert_attribute(&mut collected, sub, v, &format!("{path}.{}", sub.name), opts)?;
            }
            let mut out = Map::new();
            for sub in &def.sub_attributes {
                if let Some(v) = collected.remove(&sub.name) {
                    out.insert(sub.name.clone(), v);
                }
            }
            Ok(if out.is_empty() { None } else { Some(Value::Object(out)) })
        }
        AttributeType::String | AttributeType::Reference | AttributeType::Binary => match value {
            Value::String(s) if s.is_empty() && opts.lenient => Ok(None),
            Value::String(s) if def.kind == AttributeType::Binary && !is_base64(s) => {
                Err(ScimError::invalid_value(format!("'{path}' must be base64-encoded binary")))
            }
            Value::String(_) => Ok(Some(value.clone())),
            Value::Number(n) if opts.lenient => Ok(Some(Value::String(n.to_string()))),
            Value::Bool(b) if opts.lenient => Ok(Some(Value::String(b.to_string()))),
            _ => Err(mismatch("a string")),
        },
        AttributeType::Boolean => match value {
            Value::Bool(_) => Ok(Some(value.clone())),
            Value::String(s) if opts.lenient && s.eq_ignore_ascii_case("true") => Ok(Some(Value::Bool(true))),
            Value::String(s) if opts.lenient && s.eq_ignore_ascii_case("false") => Ok(Some(Value::Bool(false))),
            Value::String(s) if opts.lenient && s.is_empty() => Ok(None),
            Value::String(s) => Err(ScimError::invalid_value(format!("'{path}' must be a boolean, got \"{s}\""))),
            _ => Err(mismatch("a boolean")),
        },
        AttributeType::Integer => match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Some(value.clone())),
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(Value::from(f as i64))),
                _ => Err(ScimError::invalid_value(format!("'{path}' must be an integer, got {n}"))),
            },
            Value::String(s) if opts.lenient && s.is_empty() => Ok(None),
            Value::String(s) if opts.lenient => s
                .trim()
                .parse::<i64>()
                .map(|i| Some(Value::from(i)))
                .map_err(|_| ScimError::invalid_value(format!("'{path}' must be an integer, got \"{s}\""))),
            _ => Err(mismatch("an integer")),
        },
        AttributeType::Decimal => match value {
            Value::Number(_) => Ok(Some(value.clone())),
            Value::String(s) if opts.lenient && s.is_empty() => Ok(None),
            Value::String(s) if opts.lenient => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(|n| Some(Value::Number(n)))
                .ok_or_else(|| ScimError::invalid_value(format!("'{path}' must be a number, got \"{s}\""))),
            _ => Err(mismatch("a number")),
        },
        AttributeType::DateTime => match value {
            Value::String(s) if s.is_empty() && opts.lenient => Ok(None),
            Value::String(s) if parse_instant(s).is_some() => Ok(Some(value.clone())),
            Value::String(s) => Err(ScimError::invalid_value(format!(
                "'{path}' must be an RFC 3339 date-time such as \"2011-05-13T04:42:34Z\", got \"{s}\""
            ))),
            _ => Err(mismatch("a date-time string")),
        },
    }
}

fn is_base64(s: &str) -> bool {
    s.bytes().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_' | b'\r' | b'\n' | b' ')
    })
}

/// Fails with `invalidValue` naming the first required attribute that is missing.
pub fn check_required(resource: &Value, rs: &ResourceSchemas<'_>) -> Result<(), ScimError> {
    let check_level =
        |container: &Value, defs: &[AttributeDef], prefix: &str| -> Result<(), ScimError> {
            for def in defs {
                if def.mutability == Mutability::ReadOnly {
                    continue;
                }
                let value = container.get(&def.name);
                if def.required && value.is_none_or(Value::is_null) {
                    return Err(ScimError::invalid_value(format!(
                        "'{prefix}{}' is required",
                        def.name
                    )));
                }
                if def.is_complex() {
                    let elements: Vec<&Value> = match value {
                        Some(Value::Array(items)) => items.iter().collect(),
                        Some(v @ Value::Object(_)) => vec![v],
                        _ => vec![],
                    };
                    for element in elements {
                        for sub in def
                            .sub_attributes
                            .iter()
                            .filter(|s| s.required && s.mutability != Mutability::ReadOnly)
                        {
                            if element.get(&sub.name).is_none_or(Value::is_null) {
                                return Err(ScimError::invalid_value(format!(
                                    "'{prefix}{}.{}' is required in every value of '{}'",
                                    def.name, sub.name, def.name
                                )));
                            }
                        }
                    }
                }
            }
            Ok(())
        };
    check_level(resource, &rs.core.attributes, "")?;
    for (ext, required) in &rs.extensions {
        match resource.get(&ext.id) {
            Some(ext_value) => check_level(ext_value, &ext.attributes, &format!("{}:", ext.id))?,
            None if *required => {
                return Err(ScimError::invalid_value(format!(
                    "extension '{}' is required",
                    ext.id
                )))
            }
            None => {}
        }
    }
    Ok(())
}

/// Fails with `mutability` when a replacement changes an immutable attribute that already has
/// a value (RFC 7644 §3.5.1).
pub fn check_immutable(
    old: &Value,
    new: &Value,
    rs: &ResourceSchemas<'_>,
) -> Result<(), ScimError> {
    let levels = std::iter::once((old, new, rs.core.attributes.as_slice(), String::new())).chain(
        rs.extensions.iter().filter_map(|(ext, _)| {
            Some((
                old.get(&ext.id)?,
                new.get(&ext.id)?,
                ext.attributes.as_slice(),
                format!("{}:", ext.id),
            ))
        }),
    );
    for (old, new, defs, prefix) in levels {
        for def in defs {
            let (Some(a), Some(b)) = (old.get(&def.name), new.get(&def.name)) else {
                continue;
            };
            if def.mutability == Mutability::Immutable && a != b {
                return Err(ScimError::mutability(format!(
                    "'{prefix}{}' is immutable and cannot be changed",
                    def.name
                )));
            }
            if def.is_complex() && !def.multi_valued {
                for sub in def
                    .sub_attributes
                    .iter()
                    .filter(|s| s.mutability == Mutability::Immutable)
                {
                    if let (Some(x), Some(y)) = (a.get(&sub.name), b.get(&sub.name)) {
                        if x != y {
                            return Err(ScimError::mutability(format!(
                                "'{prefix}{}.{}' is immutable and cannot be changed",
                                def.name, sub.name
                            )));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
