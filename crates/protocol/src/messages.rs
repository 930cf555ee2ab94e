//! RFC 7644 message bodies: ListResponse, Error, PatchOp, SearchRequest, Bulk, and the
//! ServiceProviderConfig document.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ScimType;

pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
pub const SERVICE_PROVIDER_CONFIG: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
pub const RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
pub const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// RFC 7644 §3.4.2 query results. `next_cursor` is RFC 9865 cursor pagination.
///
/// ```
/// use scimgate_protocol::messages::ListResponse;
/// use serde_json::json;
///
/// let page = ListResponse::new(vec![json!({"id": "1"})], 10, Some(1));
/// let body = serde_json::to_value(&page).unwrap();
/// assert_eq!(body["totalResults"], 10);
/// assert_eq!(body["Resources"][0]["id"], "1");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListResponse<T = Value> {
    pub schemas: Vec<String>,
    pub total_results: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_index: Option<u64>,
    pub items_per_page: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    #[serde(rename = "Resources")]
    pub resources: Vec<T>,
}

impl<T> ListResponse<T> {
    pub fn new(resources: Vec<T>, total_results: u64, start_index: Option<u64>) -> Self {
        ListResponse {
            schemas: vec![LIST_RESPONSE.into()],
            total_results,
            start_index,
            items_per_page: resources.len() as u64,
            next_cursor: None,
            resources,
        }
    }
}

/// RFC 7644 §3.12 error body. `status` is a string, as the RFC's examples print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorResponse {
    pub schemas: Vec<String>,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scim_type: Option<ScimType>,
    pub detail: String,
}

impl ErrorResponse {
    pub fn new(status: u16, scim_type: Option<ScimType>, detail: String) -> Self {
        ErrorResponse {
            schemas: vec![ERROR.into()],
            status: status.to_string(),
            scim_type,
            detail,
        }
    }
}

/// RFC 7644 §3.4.3 `POST /.search` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchRequest {
    #[serde(default)]
    pub schemas: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "string_or_list"
    )]
    pub attributes: Option<Vec<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "string_or_list"
    )]
    pub excluded_attributes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_order: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_index: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Accepts `"a,b"` as well as `["a","b"]`: both forms appear in the wild.
fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Either>::deserialize(d)? {
        None => None,
        Some(Either::One(s)) => Some(split_attribute_list(&s)),
        Some(Either::Many(v)) => Some(v.iter().flat_map(|s| split_attribute_list(s)).collect()),
    })
}

/// Splits a comma-separated `attributes` parameter, dropping blanks.
pub fn split_attribute_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// RFC 7644 §3.5.2 PATCH body, as sent on the wire (parse with [`crate::patch::PatchRequest`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchOpMessage {
    pub schemas: Vec<String>,
    #[serde(rename = "Operations")]
    pub operations: Vec<PatchOperationMessage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchOperationMessage {
    pub op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

/// RFC 7644 §3.7 bulk request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkRequest {
    pub schemas: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_on_errors: Option<u32>,
    #[serde(rename = "Operations")]
    pub operations: Vec<BulkOperation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkOperation {
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// RFC 7644 §3.7 bulk response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BulkResponse {
    pub schemas: Vec<String>,
    #[serde(rename = "Operations")]
    pub operations: Vec<BulkOperationResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkOperationResult {
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
}

/// What a server supports, for the RFC 7643 §5 ServiceProviderConfig document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceProviderFeatures {
    pub documentation_uri: Option<String>,
    pub patch: bool,
    pub bulk: Option<(u32, u64)>,
    pub filter_max_results: u32,
    pub change_password: bool,
    pub sort: bool,
    pub etag: bool,
    /// RFC 9865 cursor pagination.
    pub cursor_pagination: bool,
}

impl ServiceProviderFeatures {
    /// The RFC 7643 §5 document, with bearer authentication.
    pub fn to_document(&self) -> Value {
        let bulk = match self.bulk {
            Some((ops, payload)) => {
                serde_json::json!({"supported": true, "maxOperations": ops, "maxPayloadSize": payload})
            }
            None => {
                serde_json::json!({"supported": false, "maxOperations": 0, "maxPayloadSize": 0})
            }
        };
        let mut doc = serde_json::json!({
            "schemas": [SERVICE_PROVIDER_CONFIG],
            "patch": {"supported": self.patch},
            "bulk": bulk,
            "filter": {"supported": true, "maxResults": self.filter_max_results},
            "changePassword": {"supported": self.change_password},
            "sort": {"supported": self.sort},
            "etag": {"supported": self.etag},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "OAuth Bearer Token",
                "description": "Authentication with the connection's SCIM API key as a bearer token (RFC 6750)",
                "specUri": "https://www.rfc-editor.org/info/rfc6750",
                "primary": true
            }]
        });
        if let Some(obj) = doc.as_object_mut() {
            if let Some(uri) = &self.documentation_uri {
                obj.insert("documentationUri".into(), Value::String(uri.clone()));
            }
            if self.cursor_pagination {
                obj.insert(
                    "pagination".into(),
                    serde_json::json!({
                        "cursor": true,
                        "index": true,
                        "defaultPaginationMethod": "index",
                        "defaultPageSize": 100,
                        "maxPageSize": self.filter_max_results,
                        "cursorTimeout": 3600
                    }),
                );
            }
        }
        doc
    }
}
