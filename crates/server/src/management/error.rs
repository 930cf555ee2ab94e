//! Management API errors: `{request_id, status_code, error_type, error_message, details?}`.
//! Handlers return [`ApiError`]; the body is written by [`attach_request_id`], which knows the
//! request id, and internal details never leave the server.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use scimgate_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// One invalid field of a request body.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("one or more fields have invalid values")]
    InvalidFields(Vec<FieldError>),
    #[error("the request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("a SCIM connection already exists for customer '{0}'")]
    ConnectionExists(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("missing or invalid integration key; send 'Authorization: Bearer <integration key>'")]
    Unauthorized,
    /// A link or resource that existed and no longer works.
    #[error("{0}")]
    Gone(&'static str),
    #[error("the service is temporarily unavailable; retry shortly")]
    Unavailable,
    #[error("an unexpected error occurred; it has been logged")]
    Internal,
}

impl ApiError {
    fn status_and_type(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::InvalidFields(_) => (StatusCode::BAD_REQUEST, "invalid_fields"),
            ApiError::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            ApiError::ConnectionExists(_) => (StatusCode::CONFLICT, "connection_exists"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Gone(_) => (StatusCode::GONE, "gone"),
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "unexpected_error"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::CustomerHasConnection(customer) => ApiError::ConnectionExists(customer),
            StoreError::InvalidCursor => ApiError::InvalidFields(vec![FieldError::new(
                "cursor",
                "is not a cursor this server issued",
            )]),
            StoreError::Unavailable(reason) => {
                tracing::warn!(%reason, "database unavailable on the management API");
                ApiError::Unavailable
            }
            other => {
                tracing::error!(error = %other, "store failure on the management API");
                ApiError::Internal
            }
        }
    }
}

/// The error body, as documented in the OpenAPI document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    pub request_id: String,
    pub status_code: u16,
    pub error_type: String,
    pub error_message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<FieldError>>,
}

/// An error waiting for its request id.
#[derive(Debug, Clone)]
struct PendingError(ErrorBody);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error_type) = self.status_and_type();
        let details = match &self {
            ApiError::InvalidFields(fields) => Some(fields.clone()),
            _ => None,
        };
        let body = ErrorBody {
            request_id: String::new(),
            status_code: status.as_u16(),
            error_type: error_type.to_owned(),
            error_message: self.to_string(),
            details,
        };
        let mut response = status.into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("5"),
            );
        }
        response.extensions_mut().insert(PendingError(body));
        response
    }
}

/// Writes pending error bodies with the request's id.
pub async fn attach_request_id(request: Request, next: Next) -> Response {
    let request_id = crate::ops::request_id(&request);
    let mut response = next.run(request).await;
    if let Some(PendingError(mut body)) = response.extensions_mut().remove::<PendingError>() {
        body.request_id = request_id;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let mut rebuilt = (status, Json(body)).into_response();
        for (name, value) in headers.iter() {
            if name != axum::http::header::CONTENT_LENGTH
                && name != axum::http::header::CONTENT_TYPE
            {
                rebuilt.headers_mut().insert(name.clone(), value.clone());
            }
        }
        return rebuilt;
    }
    response
}
