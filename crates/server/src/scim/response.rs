//! SCIM responses: `application/scim+json` bodies and RFC 7644 §3.12 errors.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use scimgate_protocol::{ScimError, ScimType};
use scimgate_store::StoreError;
use serde::Serialize;

pub const SCIM_JSON: &str = "application/scim+json";

pub fn scim_json(status: StatusCode, body: &impl Serialize) -> Response {
    let text = match serde_json::to_string(body) {
        Ok(text) => text,
        Err(e) => {
            tracing::error!(error = %e, "a SCIM response body did not serialize");
            return ScimFailure::status(500, "internal error").into_response();
        }
    };
    let mut response = (status, text).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    response
}

/// Warnings a handler wants in the request log (members skipped, ...), carried as a response
/// extension so the log middleware can pick them up.
#[derive(Debug, Clone, Default)]
pub struct Warnings(pub Vec<String>);

/// The error of a failed SCIM request, kept as a response extension for the request log.
#[derive(Debug, Clone)]
pub struct LoggedError {
    pub scim_type: Option<String>,
    pub detail: String,
}

/// A SCIM request that failed. Internal errors are logged and answered without their details.
#[derive(Debug)]
pub struct ScimFailure {
    error: ScimError,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ScimFailure {
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        ScimFailure {
            error: ScimError::new(401, None, detail),
            headers: vec![(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"scimgate\""),
            )],
        }
    }

    pub fn status(status: u16, detail: impl Into<String>) -> Self {
        ScimError::new(status, None, detail).into()
    }

    /// 503 with `Retry-After`: the database is away; the IdP retries and nothing was applied.
    pub fn unavailable() -> Self {
        ScimFailure {
            error: ScimError::new(
                503,
                None,
                "the service is temporarily unavailable; nothing was applied, retry shortly",
            ),
            headers: vec![(header::RETRY_AFTER, HeaderValue::from_static("5"))],
        }
    }

    /// 429 with `Retry-After`; only reached past the generous per-connection limit.
    pub fn rate_limited() -> Self {
        ScimFailure {
            error: ScimError::new(
                429,
                None,
                "too many requests for this connection; retry after a second",
            ),
            headers: vec![(header::RETRY_AFTER, HeaderValue::from_static("1"))],
        }
    }
}

impl From<ScimError> for ScimFailure {
    fn from(error: ScimError) -> Self {
        ScimFailure {
            error,
            headers: vec![],
        }
    }
}

impl From<StoreError> for ScimFailure {
    fn from(e: StoreError) -> Self {
        let error = match e {
            StoreError::UserNameTaken(name) => ScimError::uniqueness(format!(
                "userName '{name}' is already taken in this connection"
            )),
            StoreError::VersionMismatch { .. } => ScimError::new(
                412,
                None,
                "the resource changed since the version named in If-Match; fetch it again",
            ),
            StoreError::NotFound(what) => ScimError::not_found(format!("{what} not found")),
            StoreError::InvalidCursor => ScimError::new(
                400,
                Some(ScimType::InvalidCursor),
                "the cursor is not one this server issued",
            ),
            StoreError::CustomerHasConnection(_) => ScimError::new(409, None, e.to_string()),
            StoreError::Unavailable(reason) => {
                tracing::warn!(%reason, "database unavailable on the SCIM API");
                return ScimFailure::unavailable();
            }
            other => {
                tracing::error!(error = %other, "store failure on the SCIM API");
                ScimError::new(500, None, "internal error; the request was not applied")
            }
        };
        error.into()
    }
}

impl IntoResponse for ScimFailure {
    fn into_response(self) -> Response {
        let body = serde_json::to_value(self.error.to_response()).unwrap_or_default();
        let status =
            StatusCode::from_u16(self.error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = scim_json(status, &body);
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response.extensions_mut().insert(LoggedError {
            scim_type: self.error.scim_type.map(|t| t.as_str().to_owned()),
            detail: self.error.detail,
        });
        response
    }
}

pub type ScimResult<T = Response> = Result<T, ScimFailure>;
