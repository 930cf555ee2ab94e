//! # scimgate-mapping
//!
//! Turns SCIM users into the app's users, per connection and without I/O: a `custom_mapping`
//! ([`spec::validate`]) over an identity-provider [`presets::preset`], typed coercion with
//! documented rules ([`coerce`]), warnings the app can act on, and roles from group membership.
//!
//! ```
//! use scimgate_mapping::{validate, GroupRef, Mapping};
//! use scimgate_protocol::SchemaRegistry;
//! use serde_json::json;
//!
//! let registry = SchemaRegistry::standard();
//! let users = registry.view("User").unwrap();
//! let custom = validate(&json!({
//!     "user_schema": [{
//!         "output_field": "manager",
//!         "input_path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
//!         "fallback_input_paths": ["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:managerId"],
//!         "property_type": {"data_type": "String"},
//!         "warn_if_missing": true,
//!         "default_value": "manager@acmeinc.com"
//!     }],
//!     "group_role_mappings": [{"group": "Admins", "role": "admin"}],
//!     "default_role": "member"
//! }), &users).unwrap();
//! let mapping = Mapping::effective("entra_id", Some(&custom));
//! let user = json!({"id": "u1", "userName": "b@contoso.com", "active": true});
//! let mapped = mapping.apply(&user, &[GroupRef { display_name: Some("Admins".into()), external_id: None }], &users);
//! assert_eq!(mapped.properties["manager"], "manager@acmeinc.com");
//! assert_eq!(mapped.warnings[0].field, "manager");
//! assert_eq!(mapped.properties["email"], "b@contoso.com");
//! assert_eq!(mapped.roles, vec!["admin"]);
//! ```

pub mod coerce;
pub mod engine;
pub mod presets;
pub mod spec;

pub use coerce::WarningCode;
pub use engine::{read, GroupRef, Mapped, Mapping, Warning};
pub use spec::{validate, CustomMapping, DataType, FieldMapping, GroupRole, Invalid, Unmapped};
