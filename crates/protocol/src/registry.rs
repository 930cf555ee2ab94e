//! The schema registry: the built-in RFC 7643 schemas and resource types, further extensions,
//! and case-insensitive resolution of attribute paths against one resource type.

use std::sync::OnceLock;

use crate::path::AttrPath;
use crate::schema::{
    AttributeDef, AttributeType, Mutability, ResourceType, Returned, Schema, SchemaExtension,
    Uniqueness,
};
use crate::ScimError;

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_USER_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn builtin(text: &str) -> Schema {
    serde_json::from_str(text).expect("built-in schema JSON is valid (checked by unit tests)")
}

fn builtin_schemas() -> &'static [Schema] {
    static SCHEMAS: OnceLock<Vec<Schema>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        vec![
            builtin(include_str!("schemas/user.json")),
            builtin(include_str!("schemas/group.json")),
            builtin(include_str!("schemas/enterprise_user.json")),
        ]
    })
}

fn simple(
    name: &str,
    kind: AttributeType,
    mutability: Mutability,
    returned: Returned,
    case_exact: bool,
) -> AttributeDef {
    AttributeDef {
        name: name.into(),
        kind,
        multi_valued: false,
        description: None,
        required: false,
        canonical_values: vec![],
        case_exact,
        mutability,
        returned,
        uniqueness: Uniqueness::None,
        reference_types: vec![],
        sub_attributes: vec![],
    }
}

/// The attributes every resource has (RFC 7643 §3.1): `id`, `externalId`, `meta`.
pub fn common_attributes() -> &'static [AttributeDef] {
    static COMMON: OnceLock<Vec<AttributeDef>> = OnceLock::new();
    COMMON.get_or_init(|| {
        use AttributeType::*;
        use Mutability::*;
        let mut id = simple("id", String, ReadOnly, Returned::Always, true);
        id.uniqueness = Uniqueness::Server;
        let external_id = simple("externalId", String, ReadWrite, Returned::Default, true);
        let mut meta = simple("meta", Complex, ReadOnly, Returned::Default, false);
        meta.sub_attributes = vec![
            simple("resourceType", String, ReadOnly, Returned::Default, true),
            simple("created", DateTime, ReadOnly, Returned::Default, false),
            simple("lastModified", DateTime, ReadOnly, Returned::Default, false),
            simple("location", Reference, ReadOnly, Returned::Default, true),
            simple("version", String, ReadOnly, Returned::Default, true),
        ];
        vec![id, external_id, meta]
    })
}

/// Every schema and resource type a server speaks.
///
/// ```
/// use scimgate_protocol::{AttrPath, SchemaRegistry, ENTERPRISE_USER_SCHEMA};
///
/// let registry = SchemaRegistry::standard();
/// let users = registry.view("User").unwrap();
/// let resolved = users.resolve(&AttrPath::parse("EMPLOYEENUMBER").unwrap()).unwrap();
/// assert_eq!(resolved.canonical_path(), format!("{ENTERPRISE_USER_SCHEMA}:employeeNumber"));
/// // `/Schemas` and `/ResourceTypes` are these, serialised.
/// assert_eq!(registry.schemas().len(), 3);
/// assert_eq!(registry.resource_types().len(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct SchemaRegistry {
    schemas: Vec<Schema>,
    resource_types: Vec<ResourceType>,
}

impl Default for SchemaRegistry {
    fn default() -> Self {
        Self::standard()
    }
}

impl SchemaRegistry {
    /// User (with the Enterprise User extension) and Group, as RFC 7643 defines them.
    pub fn standard() -> Self {
        SchemaRegistry {
            schemas: builtin_schemas().to_vec(),
            resource_types: vec![
                ResourceType {
                    id: "User".into(),
                    name: "User".into(),
                    endpoint: "/Users".into(),
                    description: Some("User Account".into()),
                    schema: USER_SCHEMA.into(),
                    schema_extensions: vec![SchemaExtension {
                        schema: ENTERPRISE_USER_SCHEMA.into(),
                        required: false,
                    }],
                },
                ResourceType {
                    id: "Group".into(),
                    name: "Group".into(),
                    endpoint: "/Groups".into(),
                    description: Some("Group".into()),
                    schema: GROUP_SCHEMA.into(),
                    schema_extensions: vec![],
                },
            ],
        }
    }

    pub fn schemas(&self) -> &[Schema] {
        &self.schemas
    }

    pub fn resource_types(&self) -> &[ResourceType] {
        &self.resource_types
    }

    /// A schema by its URN, case-insensitively.
    pub fn schema(&self, urn: &str) -> Option<&Schema> {
        self.schemas.iter().find(|s| s.id.eq_ignore_ascii_case(urn))
    }

    /// A resource type by its id or name, case-insensitively.
    pub fn resource_type(&self, id: &str) -> Option<&ResourceType> {
        self.resource_types
            .iter()
            .find(|r| r.id.eq_ignore_ascii_case(id) || r.name.eq_ignore_ascii_case(id))
    }

    /// Registers an extension schema and attaches it to a resource type.
    pub fn register_extension(
        &mut self,
        resource_type: &str,
        schema: Schema,
        required: bool,
    ) -> Result<(), ScimError> {
        if !schema.id.to_ascii_lowercase().starts_with("urn:") {
            return Err(ScimError::invalid_value(format!(
                "schema id '{}' must be a URN",
                schema.id
            )));
        }
        if self.schema(&schema.id).is_some() {
            return Err(ScimError::uniqueness(format!(
                "schema '{}' is already registered",
                schema.id
            )));
        }
        let rt = self
            .resource_types
            .iter_mut()
            .find(|r| r.id.eq_ignore_ascii_case(resource_type))
            .ok_or_else(|| {
                ScimError::invalid_value(format!("unknown resource type '{resource_type}'"))
            })?;
        rt.schema_extensions.push(SchemaExtension {
            schema: schema.id.clone(),
            required,
        });
        self.schemas.push(schema);
        Ok(())
    }

    /// The schemas of one resource type, ready for path resolution.
    pub fn view(&self, resource_type: &str) -> Option<ResourceSchemas<'_>> {
        let rt = self.resource_type(resource_type)?;
        let core = self.schema(&rt.schema)?;
        let extensions = rt
            .schema_extensions
            .iter()
            .filter_map(|e| self.schema(&e.schema).map(|s| (s, e.required)))
            .collect();
        Some(ResourceSchemas {
            resource_type: rt,
            core,
            extensions,
        })
    }
}

/// One resource type's core schema and extensions.
#[derive(Debug, Clone)]
pub struct ResourceSchemas<'a> {
    pub resource_type: &'a ResourceType,
    pub core: &'a Schema,
    pub extensions: Vec<(&'a Schema, bool)>,
}

/// Where an attribute lives in a resource's JSON: at the top level, or inside the object
/// keyed by an extension's URN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container<'a> {
    Core,
    Extension(&'a str),
}

/// A path resolved to its definitions, with canonical names.
#[derive(Debug, Clone, Copy)]
pub struct Resolved<'a> {
    pub container: Container<'a>,
    pub attr: &'a AttributeDef,
    pub sub: Option<&'a AttributeDef>,
}

impl Resolved<'_> {
    /// The definition the path ends at.
    pub fn leaf(&self) -> &AttributeDef {
        self.sub.unwrap_or(self.attr)
    }

    /// The canonical path text.
    pub fn canonical_path(&self) -> String {
        let mut out = match self.container {
            Container::Core => String::new(),
            Container::Extension(urn) => format!("{urn}:"),
        };
        out.push_str(&self.attr.name);
        if let Some(sub) = self.sub {
            out.push('.');
            out.push_str(&sub.name);
        }
        out
    }
}

impl<'a> ResourceSchemas<'a> {
    /// The extension schema with this URN, case-insensitively.
    pub fn extension(&self, urn: &str) -> Option<&'a Schema> {
        self.extensions
            .iter()
            .map(|(s, _)| *s)
            .find(|s| s.id.eq_ignore_ascii_case(urn))
    }

    /// Every schema URN of this resource type, the core one first.
    pub fn schema_ids(&self) -> impl Iterator<Item = &'a str> + '_ {
        std::iter::once(self.core.id.as_str())
            .chain(self.extensions.iter().map(|(s, _)| s.id.as_str()))
    }

    /// Resolves a top-level attribute name in the core schema (common attributes included).
    pub fn core_attribute(&self, name: &str) -> Option<&'a AttributeDef> {
        common_attributes()
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
            .or_else(|| self.core.attribute(name))
    }

    /// Resolves a path. Unqualified names are looked up in the core schema first and then,
    /// leniently, in the extensions.
    pub fn resolve(&self, path: &AttrPath) -> Option<Resolved<'a>> {
        let (container, attr) = match &path.urn {
            Some(urn) if urn.eq_ignore_ascii_case(&self.core.id) => {
                (Container::Core, self.core_attribute(&path.name)?)
            }
            Some(urn) => {
                let ext = self.extension(urn)?;
                (
                    Container::Extension(ext.id.as_str()),
                    ext.attribute(&path.name)?,
                )
            }
            None => match self.core_attribute(&path.name) {
                Some(attr) => (Container::Core, attr),
                None => self.extensions.iter().find_map(|(s, _)| {
                    s.attribute(&path.name)
                        .map(|a| (Container::Extension(s.id.as_str()), a))
                })?,
            },
        };
        let sub = match &path.sub {
            Some(sub) => Some(attr.sub_attribute(sub)?),
            None => None,
        };
        Some(Resolved {
            container,
            attr,
            sub,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_schemas_parse_and_resolve() {
        let reg = SchemaRegistry::standard();
        let users = reg.view("User").unwrap();
        assert_eq!(users.core.id, USER_SCHEMA);
        let r = users
            .resolve(&AttrPath::parse("USERNAME").unwrap())
            .unwrap();
        assert_eq!(r.attr.name, "userName");
        let r = users
            .resolve(&AttrPath::parse("emails.VALUE").unwrap())
            .unwrap();
        assert_eq!(r.canonical_path(), "emails.value");
        let r = users
            .resolve(
                &AttrPath::parse(
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user:manager.value",
                )
                .unwrap(),
            )
            .unwrap();
        assert_eq!(r.container, Container::Extension(ENTERPRISE_USER_SCHEMA));
        assert_eq!(
            r.canonical_path(),
            format!("{ENTERPRISE_USER_SCHEMA}:manager.value")
        );
        let r = users
            .resolve(&AttrPath::parse("department").unwrap())
            .unwrap();
        assert_eq!(r.container, Container::Extension(ENTERPRISE_USER_SCHEMA));
        assert!(users.resolve(&AttrPath::parse("nope").unwrap()).is_none());
        assert!(users
            .resolve(&AttrPath::parse("meta.lastModified").unwrap())
            .is_some());
        let groups = reg.view("Group").unwrap();
        assert!(groups
            .resolve(&AttrPath::parse("members.value").unwrap())
            .is_some());
    }

    #[test]
    fn extensions_can_be_registered() {
        let mut reg = SchemaRegistry::standard();
        let schema = Schema {
            id: "urn:example:params:scim:schemas:extension:acme:2.0:User".into(),
            name: "Acme".into(),
            description: None,
            attributes: vec![simple(
                "badge",
                AttributeType::String,
                Mutability::ReadWrite,
                Returned::Default,
                false,
            )],
        };
        reg.register_extension("User", schema.clone(), false)
            .unwrap();
        assert!(reg.register_extension("User", schema, false).is_err());
        let users = reg.view("User").unwrap();
        assert!(users
            .resolve(
                &AttrPath::parse("urn:example:params:scim:schemas:extension:acme:2.0:User:badge")
                    .unwrap()
            )
            .is_some());
    }
}
