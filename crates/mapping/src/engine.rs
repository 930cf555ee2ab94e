//! Applying a mapping to a SCIM user: read each field's paths in order, coerce the first value
//! found to the field's type, fall back to its default, and say what went wrong.

use scimgate_protocol::registry::Container;
use scimgate_protocol::{PatchPath, ResourceSchemas};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::coerce::{coerce, Coerced, WarningCode};
use crate::presets::preset;
use crate::spec::{CustomMapping, FieldMapping, GroupRole, Unmapped};

/// Something the app should know about a mapped field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub field: String,
    pub code: WarningCode,
    pub message: String,
}

/// A group a user belongs to, as role rules match it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupRef {
    pub display_name: Option<String>,
    pub external_id: Option<String>,
}

/// The app's view of one user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mapped {
    /// The value of `user_id_attribute`: the app's stable key for this user.
    pub user_key: Option<String>,
    pub properties: Map<String, Value>,
    pub warnings: Vec<Warning>,
    pub roles: Vec<String>,
}

/// A connection's effective mapping: its identity provider's preset, extended and overridden
/// by its `custom_mapping`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    pub fields: Vec<FieldMapping>,
    /// Defaults to `externalId`, then the SCIM `id` when the IdP sends no externalId.
    pub user_id_attribute: Option<String>,
    pub unmapped: Unmapped,
    pub group_roles: Vec<GroupRole>,
    pub default_role: Option<String>,
}

impl Mapping {
    pub fn effective(identity_provider: &str, custom: Option<&CustomMapping>) -> Mapping {
        let mut fields = preset(identity_provider);
        let Some(custom) = custom else {
            return Mapping {
                fields,
                user_id_attribute: None,
                unmapped: Unmapped::Forward,
                group_roles: vec![],
                default_role: None,
            };
        };
        for field in &custom.user_schema {
            match fields
                .iter_mut()
                .find(|f| f.output_field == field.output_field)
            {
                Some(slot) => *slot = field.clone(),
                None => fields.push(field.clone()),
            }
        }
        Mapping {
            fields,
            user_id_attribute: custom.user_id_attribute.clone(),
            unmapped: custom.unmapped_attributes.unwrap_or_default(),
            group_roles: custom.group_role_mappings.clone(),
            default_role: custom.default_role.clone(),
        }
    }

    /// Maps one user. `user` is the SCIM resource with its `id`; `groups` are the groups it is
    /// a direct member of.
    pub fn apply(&self, user: &Value, groups: &[GroupRef], rs: &ResourceSchemas<'_>) -> Mapped {
        let mut properties = Map::new();
        let mut warnings = Vec::new();
        for field in &self.fields {
            let mut found = None;
            for path in std::iter::once(&field.input_path).chain(&field.fallback_input_paths) {
                if let Some(v) = read(user, path, rs) {
                    found = Some(v);
                    break;
                }
            }
            let value = match found {
                Some(v) => match coerce(&v, field.data_type, &field.values) {
                    Coerced::Value(v) => Some(v),
                    Coerced::Failed(code, message) => {
                        warnings.push(Warning {
                            field: field.output_field.clone(),
                            code,
                            message,
                        });
                        None
                    }
                },
                None => {
                    if field.warn_if_missing {
                        let tried = std::iter::once(&field.input_path)
                            .chain(&field.fallback_input_paths)
                            .map(String::as_str)
                            .collect::<Vec<_>>()
                            .join(", ");
                        warnings.push(Warning {
                            field: field.output_field.clone(),
                            code: WarningCode::Missing,
                            message: format!("no value at {tried}"),
                        });
                    }
                    None
                }
            };
            if let Some(v) = value.or_else(|| field.default_value.clone()) {
                properties.insert(field.output_field.clone(), v);
            }
        }
        let user_key = match &self.user_id_attribute {
            Some(path) => read(user, path, rs).and_then(|v| scalar_text(&v)),
            None => read(user, "externalId", rs)
                .or_else(|| user.get("id").cloned())
                .and_then(|v| scalar_text(&v)),
        };
        Mapped {
            user_key,
            properties,
            warnings,
            roles: self.roles(groups),
        }
    }

    /// The roles the rules give to a member of `groups`, in rule order, or the default role.
    pub fn roles(&self, groups: &[GroupRef]) -> Vec<String> {
        let mut roles: Vec<String> = Vec::new();
        for rule in &self.group_roles {
            let matched = groups.iter().any(|g| {
                g.display_name
                    .as_deref()
                    .is_some_and(|d| d.eq_ignore_ascii_case(&rule.group))
                    || g.external_id.as_deref() == Some(rule.group.as_str())
            });
            if matched && !roles.contains(&rule.role) {
                roles.push(rule.role.clone());
            }
        }
        if roles.is_empty() {
            roles.extend(self.default_role.clone());
        }
        roles
    }

    /// Whether role rules depend on group membership at all.
    pub fn uses_groups(&self) -> bool {
        !self.group_roles.is_empty()
    }

    /// The SCIM resource as the app may see it: everything (`forward`), or only the attributes
    /// some field reads plus `id`, `externalId`, `userName` and `active` (`swallow`).
    pub fn raw_view(&self, user: &Value) -> Value {
        let Value::Object(obj) = user else {
            return user.clone();
        };
        if self.unmapped == Unmapped::Forward {
            return user.clone();
        }
        let mut keep: Vec<String> = ["schemas", "id", "externalId", "userName", "active", "meta"]
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        for field in &self.fields {
            for path in std::iter::once(&field.input_path).chain(&field.fallback_input_paths) {
                if let Ok(p) = PatchPath::parse(path) {
                    keep.push(p.attr.urn.unwrap_or(p.attr.name).to_ascii_lowercase());
                }
            }
        }
        Value::Object(
            obj.iter()
                .filter(|(k, _)| keep.contains(&k.to_ascii_lowercase()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(o) => o.get("value").and_then(scalar_text),
        _ => None,
    }
}

fn get_ci<'v>(obj: &'v Value, key: &str) -> Option<&'v Value> {
    obj.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// The value at a SCIM path: `name.givenName`, `emails[type eq "work"].value`, URN-qualified
/// extension paths, or a multi-valued attribute's sub-attribute, which reads its primary value
/// (else the first). `None` when nothing is there.
pub fn read(user: &Value, path: &str, rs: &ResourceSchemas<'_>) -> Option<Value> {
    let path = PatchPath::parse(path).ok()?;
    let (container, attr_name, def) = match rs.resolve(&path.attr) {
        Some(resolved) => {
            let container = match resolved.container {
                Container::Core => user,
                Container::Extension(urn) => get_ci(user, urn)?,
            };
            (container, resolved.attr.name.clone(), Some(resolved.attr))
        }
        // An extension this server does not know: read it as sent.
        None => (
            get_ci(user, path.attr.urn.as_deref()?)?,
            path.attr.name.clone(),
            None,
        ),
    };
    let value = get_ci(container, &attr_name)?;
    let sub = path.attr.sub.as_deref().or(path.sub.as_deref());
    let value = match (&path.filter, value) {
        (Some(filter), Value::Array(items)) => {
            let def = def?;
            items
                .iter()
                .find(|item| filter.matches_element(item, def))?
        }
        (Some(_), _) => return None,
        (None, Value::Array(items)) if sub.is_some() => items
            .iter()
            .find(|i| get_ci(i, "primary") == Some(&Value::Bool(true)))
            .or_else(|| items.first())?,
        (None, v) => v,
    };
    let value = match sub {
        Some(sub) => get_ci(value, sub)?,
        None => value,
    };
    present(value).then(|| value.clone())
}
