//! # scimgate-protocol
//!
//! The SCIM 2.0 protocol core of scimgate (RFC 7643, RFC 7644), with no I/O: schemas and the
//! registry that resolves attribute paths, resource validation, the filter language, PATCH,
//! projection and sorting, and the protocol's messages. Everything here works on
//! [`serde_json::Value`] resources in *canonical form*: attribute names spelled as the schema
//! spells them, extension attributes under their schema URN.
//!
//! ```
//! use scimgate_protocol::{Filter, SchemaRegistry};
//! use serde_json::json;
//!
//! let registry = SchemaRegistry::standard();
//! let users = registry.view("User").unwrap();
//! let filter = Filter::parse(r#"emails[type eq "work" and value co "@example.com"]"#).unwrap();
//! filter.validate(&users).unwrap();
//! let user = json!({"userName": "bjensen", "emails": [{"type": "work", "value": "bjensen@EXAMPLE.com"}]});
//! assert!(filter.matches(&user, &users));
//! ```
//!
//! See [`resource::normalize`], [`patch::apply_patch`] and [`projection::Projection`] for
//! the other main entry points.

pub mod error;
pub mod filter;
pub mod messages;
pub mod patch;
pub mod path;
pub mod projection;
pub mod registry;
pub mod resource;
pub mod schema;

pub use error::{ScimError, ScimType};
pub use filter::{CompValue, CompareOp, Filter, FilterError, ParseLimits};
pub use patch::{
    apply_patch, Change, PatchOpKind, PatchOperation, PatchOutcome, PatchPath, PatchRequest,
};
pub use path::AttrPath;
pub use projection::{sort_resources, Projection};
pub use registry::{
    ResourceSchemas, SchemaRegistry, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA,
};
pub use resource::{normalize, NormalizeOptions};
pub use schema::{
    AttributeDef, AttributeType, Mutability, ResourceType, Returned, Schema, Uniqueness,
};
