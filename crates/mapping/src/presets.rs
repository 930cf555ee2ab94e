//! Default mappings per identity provider, built from what each one sends by default according to
//! its public SCIM documentation. A connection's `custom_mapping` extends a preset and overrides
//! it field by field (`output_field`).
//!
//! | output field | type | read from, in order |
//! |---|---|---|
//! | `email` | email | `emails[primary eq true].value`, `emails[type eq "work"].value`, `emails.value`, then `userName` (Okta, Entra ID, OneLogin, JumpCloud and Google send an email-shaped userName) |
//! | `given_name` | string | `name.givenName` |
//! | `family_name` | string | `name.familyName` |
//! | `display_name` | string | `displayName`, `name.formatted` |
//! | `employee_number` | string | enterprise `employeeNumber` |
//! | `department` | string | enterprise `department` |
//! | `title` | string | `title` |
//! | `manager_id` | string | enterprise `manager.value` |
//! | `phone` | string | `phoneNumbers[type eq "work"].value`, `phoneNumbers[type eq "mobile"].value`, `phoneNumbers.value` |
//!
//! Differences between IdPs: `userName` is a UPN on Entra ID and an email on Okta, so both end the
//! `email` fallbacks with it; Rippling and Ping send `emails` reliably and their `userName` may be
//! an opaque login, so their `email` does not fall back to `userName`.

use crate::spec::{DataType, FieldMapping};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn field(output: &str, data_type: DataType, input: &str, fallbacks: &[&str]) -> FieldMapping {
    FieldMapping {
        output_field: output.to_owned(),
        input_path: input.to_owned(),
        fallback_input_paths: fallbacks.iter().map(|s| (*s).to_owned()).collect(),
        data_type,
        values: vec![],
        display_name: None,
        description: None,
        warn_if_missing: false,
        default_value: None,
    }
}

/// The identity providers a connection can name.
pub const IDENTITY_PROVIDERS: &[&str] = &[
    "generic",
    "okta",
    "entra_id",
    "google_workspace",
    "onelogin",
    "jumpcloud",
    "rippling",
    "ping",
];

/// The preset of an identity provider (`generic` for an unknown name).
pub fn preset(identity_provider: &str) -> Vec<FieldMapping> {
    let email_fallbacks: &[&str] = match identity_provider {
        "rippling" | "ping" => &[r#"emails[type eq "work"].value"#, "emails.value"],
        _ => &[
            r#"emails[type eq "work"].value"#,
            "emails.value",
            "userName",
        ],
    };
    vec![
        field(
            "email",
            DataType::Email,
            "emails[primary eq true].value",
            email_fallbacks,
        ),
        field("given_name", DataType::String, "name.givenName", &[]),
        field("family_name", DataType::String, "name.familyName", &[]),
        field(
            "display_name",
            DataType::String,
            "displayName",
            &["name.formatted"],
        ),
        field(
            "employee_number",
            DataType::String,
            &format!("{ENTERPRISE}:employeeNumber"),
            &[],
        ),
        field(
            "department",
            DataType::String,
            &format!("{ENTERPRISE}:department"),
            &[],
        ),
        field("title", DataType::String, "title", &[]),
        field(
            "manager_id",
            DataType::String,
            &format!("{ENTERPRISE}:manager.value"),
            &[],
        ),
        field(
            "phone",
            DataType::String,
            r#"phoneNumbers[type eq "work"].value"#,
            &[
                r#"phoneNumbers[type eq "mobile"].value"#,
                "phoneNumbers.value",
            ],
        ),
    ]
}
