//! The `custom_mapping` contract (DESIGN.md) and its validation. Validation walks the JSON
//! itself, so every problem is reported against the exact field that has it
//! (`custom_mapping.user_schema[2].input_path`), all of them at once.

use scimgate_protocol::{PatchPath, ResourceSchemas};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::coerce::{coerce, Coerced};

/// The type a mapped property has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    String,
    Boolean,
    Integer,
    Number,
    DateTime,
    Email,
    Enum,
    StringArray,
    Json,
}

impl DataType {
    /// Accepts the snake_case names and the SDK spellings (`"String"`, `"DateTime"`).
    pub fn parse(text: &str) -> Option<DataType> {
        let folded: String = text
            .chars()
            .filter(|c| *c != '_' && *c != '-')
            .collect::<String>()
            .to_ascii_lowercase();
        Some(match folded.as_str() {
            "string" => DataType::String,
            "boolean" | "bool" => DataType::Boolean,
            "integer" | "int" => DataType::Integer,
            "number" | "decimal" => DataType::Number,
            "datetime" => DataType::DateTime,
            "email" => DataType::Email,
            "enum" => DataType::Enum,
            "stringarray" => DataType::StringArray,
            "json" => DataType::Json,
            _ => return None,
        })
    }
}

/// One output field of the app's user model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldMapping {
    pub output_field: String,
    pub input_path: String,
    pub fallback_input_paths: Vec<String>,
    pub data_type: DataType,
    /// The allowed values of an `enum`.
    pub values: Vec<String>,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub warn_if_missing: bool,
    pub default_value: Option<Value>,
}

/// What happens to SCIM attributes no field maps (Oracle's FORWARD / SWALLOW).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unmapped {
    #[default]
    Forward,
    Swallow,
}

/// A rule giving a role to members of a group, matched by `displayName` or `externalId`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupRole {
    pub group: String,
    pub role: String,
}

/// A validated `custom_mapping`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct CustomMapping {
    pub user_schema: Vec<FieldMapping>,
    pub user_id_attribute: Option<String>,
    pub unmapped_attributes: Option<Unmapped>,
    pub group_role_mappings: Vec<GroupRole>,
    pub default_role: Option<String>,
}

/// One invalid field: its full path and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

struct Checker<'a> {
    errors: Vec<Invalid>,
    users: &'a ResourceSchemas<'a>,
}

impl Checker<'_> {
    fn fail(&mut self, field: String, message: impl Into<String>) {
        self.errors.push(Invalid {
            field,
            message: message.into(),
        });
    }

    fn string(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        at: &str,
        required: bool,
    ) -> Option<String> {
        match obj.get(key) {
            None | Some(Value::Null) if !required => None,
            None | Some(Value::Null) => {
                self.fail(format!("{at}.{key}"), "is required");
                None
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.fail(format!("{at}.{key}"), "must not be empty");
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.fail(format!("{at}.{key}"), "must be a string");
                None
            }
        }
    }

    /// A SCIM attribute path of the User resource type.
    fn path(&mut self, text: &str, field: String) -> bool {
        match PatchPath::parse(text) {
            Err(e) => {
                let reason = e
                    .detail
                    .split_once(&format!("\"{text}\""))
                    .map_or(e.detail.as_str(), |(_, rest)| rest);
                self.fail(
                    field,
                    format!("\"{text}\" is not a valid SCIM path{reason}"),
                );
                false
            }
            Ok(path) => {
                // A URN-qualified path may name any attribute: apps map custom attributes
                // their IdPs send under extension URNs (the seed's own example falls back to
                // `…:enterprise:2.0:User:managerId`). Unqualified paths must be User attributes.
                let known = self.users.resolve(&path.attr).is_some();
                if !known && path.attr.urn.is_none() {
                    self.fail(
                        field,
                        format!("\"{text}\" names no attribute of the User resource"),
                    );
                    return false;
                }
                true
            }
        }
    }

    fn unknown_keys(&mut self, obj: &Map<String, Value>, allowed: &[&str], at: &str) {
        for key in obj.keys() {
            if !allowed.contains(&key.as_str()) {
                self.fail(
                    format!("{at}.{key}"),
                    format!(
                        "is not a known field; expected one of {}",
                        allowed.join(", ")
                    ),
                );
            }
        }
    }

    fn field(&mut self, entry: &Value, at: &str) -> Option<FieldMapping> {
        let Value::Object(obj) = entry else {
            self.fail(at.to_owned(), "must be an object");
            return None;
        };
        self.unknown_keys(
            obj,
            &[
                "output_field",
                "input_path",
                "fallback_input_paths",
                "property_type",
                "display_name",
                "description",
                "warn_if_missing",
                "default_value",
            ],
            at,
        );
        let output_field = self.string(obj, "output_field", at, true);
        if let Some(name) = &output_field {
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                self.fail(
                    format!("{at}.output_field"),
                    format!(
                        "\"{name}\" must be letters, digits and '_', starting with a letter or '_'"
                    ),
                );
            }
        }
        let input_path = self.string(obj, "input_path", at, true);
        let path_ok = input_path
            .as_deref()
            .is_some_and(|p| self.path(p, format!("{at}.input_path")));
        let mut fallback_input_paths = Vec::new();
        match obj.get("fallback_input_paths") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(p) => {
                            if self.path(p, format!("{at}.fallback_input_paths[{i}]")) {
                                fallback_input_paths.push(p.clone());
                            }
                        }
                        _ => self.fail(
                            format!("{at}.fallback_input_paths[{i}]"),
                            "must be a string",
                        ),
                    }
                }
            }
            Some(_) => self.fail(
                format!("{at}.fallback_input_paths"),
                "must be an array of SCIM paths",
            ),
        }
        let (data_type, values) =
            self.property_type(obj.get("property_type"), &format!("{at}.property_type"))?;
        let warn_if_missing = match obj.get("warn_if_missing") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.fail(format!("{at}.warn_if_missing"), "must be a boolean");
                false
            }
        };
        let display_name = self.string(obj, "display_name", at, false);
        let description = self.string(obj, "description", at, false);
        let default_value = match obj.get("default_value") {
            None | Some(Value::Null) => None,
            Some(v) => match coerce(v, data_type, &values) {
                Coerced::Value(ok) => Some(ok),
                Coerced::Failed(code, why) => {
                    self.fail(
                        format!("{at}.default_value"),
                        format!("{why} ({})", code.as_str()),
                    );
                    None
                }
            },
        };
        Some(FieldMapping {
            output_field: output_field?,
            input_path: input_path.filter(|_| path_ok)?,
            fallback_input_paths,
            data_type,
            values,
            display_name,
            description,
            warn_if_missing,
            default_value,
        })
    }

    fn property_type(
        &mut self,
        value: Option<&Value>,
        at: &str,
    ) -> Option<(DataType, Vec<String>)> {
        let obj = match value {
            None | Some(Value::Null) => return Some((DataType::String, vec![])),
            Some(Value::Object(obj)) => obj,
            Some(_) => {
                self.fail(at.to_owned(), "must be an object with a data_type");
                return None;
            }
        };
        self.unknown_keys(obj, &["data_type", "values"], at);
        let data_type = match obj.get("data_type") {
            Some(Value::String(s)) => match DataType::parse(s) {
                Some(t) => t,
                None => {
                    self.fail(
                        format!("{at}.data_type"),
                        format!("\"{s}\" is not a data type; expected string, boolean, integer, number, date_time, email, enum, string_array or json"),
                    );
                    return None;
                }
            },
            _ => {
                self.fail(format!("{at}.data_type"), "is required");
                return None;
            }
        };
        let values = match (data_type, obj.get("values")) {
            (DataType::Enum, Some(Value::Array(items))) if !items.is_empty() => {
                let strings: Vec<String> = items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
                if strings.len() != items.len() {
                    self.fail(format!("{at}.values"), "must be strings");
                    return None;
                }
                strings
            }
            (DataType::Enum, _) => {
                self.fail(
                    format!("{at}.values"),
                    "an enum needs a non-empty array of allowed values",
                );
                return None;
            }
            (_, None | Some(Value::Null)) => vec![],
            (_, Some(_)) => {
                self.fail(format!("{at}.values"), "only an enum takes values");
                return None;
            }
        };
        Some((data_type, values))
    }
}

/// Validates a `custom_mapping` against the User schemas. On failure, every invalid field.
pub fn validate(value: &Value, users: &ResourceSchemas<'_>) -> Result<CustomMapping, Vec<Invalid>> {
    let mut c = Checker {
        errors: vec![],
        users,
    };
    let at = "custom_mapping";
    let Value::Object(obj) = value else {
        return Err(vec![Invalid {
            field: at.into(),
            message: "must be an object".into(),
        }]);
    };
    c.unknown_keys(
        obj,
        &[
            "user_schema",
            "user_id_attribute",
            "unmapped_attributes",
            "group_role_mappings",
            "default_role",
        ],
        at,
    );
    let mut mapping = CustomMapping::default();
    match obj.get("user_schema") {
        None | Some(Value::Null) => {}
        Some(Value::Array(entries)) => {
            let mut seen: Vec<String> = Vec::new();
            for (i, entry) in entries.iter().enumerate() {
                let here = format!("{at}.user_schema[{i}]");
                if let Some(field) = c.field(entry, &here) {
                    if seen.iter().any(|s| s == &field.output_field) {
                        c.fail(
                            format!("{here}.output_field"),
                            format!("\"{}\" is mapped twice", field.output_field),
                        );
                    }
                    seen.push(field.output_field.clone());
                    mapping.user_schema.push(field);
                }
            }
        }
        Some(_) => c.fail(format!("{at}.user_schema"), "must be an array"),
    }
    if let Some(path) = c.string(obj, "user_id_attribute", at, false) {
        if c.path(&path, format!("{at}.user_id_attribute")) {
            mapping.user_id_attribute = Some(path);
        }
    }
    mapping.unmapped_attributes = match obj.get("unmapped_attributes") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("forward") => Some(Unmapped::Forward),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("swallow") => Some(Unmapped::Swallow),
        Some(_) => {
            c.fail(
                format!("{at}.unmapped_attributes"),
                "must be \"forward\" or \"swallow\"",
            );
            None
        }
    };
    match obj.get("group_role_mappings") {
        None | Some(Value::Null) => {}
        Some(Value::Array(rules)) => {
            for (i, rule) in rules.iter().enumerate() {
                let here = format!("{at}.group_role_mappings[{i}]");
                let Value::Object(rule) = rule else {
                    c.fail(here, "must be an object with a group and a role");
                    continue;
                };
                c.unknown_keys(rule, &["group", "role"], &here);
                let group = c.string(rule, "group", &here, true);
                let role = c.string(rule, "role", &here, true);
                if let (Some(group), Some(role)) = (group, role) {
                    mapping.group_role_mappings.push(GroupRole { group, role });
                }
            }
        }
        Some(_) => c.fail(format!("{at}.group_role_mappings"), "must be an array"),
    }
    mapping.default_role = c.string(obj, "default_role", at, false);
    if c.errors.is_empty() {
        Ok(mapping)
    } else {
        Err(c.errors)
    }
}
