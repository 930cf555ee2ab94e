//! `/v1/connections`: one SCIM connection per customer, its key and its request log.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use scimgate_store::{
    Connection, ConnectionStatus, ConnectionUpdate, NewConnection, NewScimKey, RequestLogEntry,
    StoredMapping,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, FieldError};
use crate::app::AppState;
use crate::secrets;
use scimgate_mapping::presets::IDENTITY_PROVIDERS;
use scimgate_store::Kind;

/// How far the stored mapped users are behind the connection's current mapping.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MappingStatus {
    /// `up_to_date`, or `recomputing` while the background recompute runs.
    pub state: String,
    pub users: u64,
    /// Users whose stored view comes from the current mapping. Reads are always current: a
    /// user not yet recomputed is mapped when read.
    pub users_mapped: u64,
}

async fn mapping_status(state: &AppState, connection_id: &str) -> Result<MappingStatus, ApiError> {
    let (users, users_mapped) = state.store.mapping_progress(connection_id).await?;
    let state = if users_mapped >= users {
        "up_to_date"
    } else {
        "recomputing"
    };
    Ok(MappingStatus {
        state: state.to_owned(),
        users,
        users_mapped,
    })
}

/// A SCIM connection as the management API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConnectionView {
    pub connection_id: String,
    pub customer_id: String,
    pub display_name: Option<String>,
    pub identity_provider: String,
    /// `active` or `disabled`.
    pub status: String,
    /// Refuse unknown group member ids with a 400 instead of skipping them.
    pub strict_members: bool,
    /// What the IdP needs: the SCIM base URL of this connection.
    pub scim_base_url: String,
    /// UNIX seconds; `null` when the key never expires.
    pub scim_api_key_expires_at: Option<i64>,
    /// The mapping declared for this connection, as saved; `null` when only the identity
    /// provider's preset applies.
    #[schema(value_type = Option<Object>)]
    pub custom_mapping: Option<Value>,
    /// Only on a single connection (GET, PATCH).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapping_status: Option<MappingStatus>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// Issues a new SCIM key for the connection (the old ones end at `previous_valid_until`) and
/// returns it, shown this once.
pub(crate) async fn issue_scim_key(
    state: &AppState,
    connection_id: &str,
    expires_at: Option<OffsetDateTime>,
    previous_valid_until: OffsetDateTime,
) -> Result<(String, Connection), ApiError> {
    let key = secrets::new_scim_key(connection_id);
    let connection = state
        .store
        .replace_scim_key(
            connection_id,
            NewScimKey {
                hash: secrets::hash(&key),
                expires_at,
            },
            previous_valid_until,
        )
        .await?
        .ok_or(ApiError::NotFound("connection"))?;
    state.scim_keys.invalidate();
    warn_if_expiring(state).await;
    Ok((key, connection))
}

/// A key issued already inside the warning window is warned about now, not at the next
/// housekeeping round. Failing here only delays the warning to that round.
async fn warn_if_expiring(state: &AppState) {
    let until = OffsetDateTime::now_utc() + state.key_expiry_warning;
    if let Err(e) = state.store.warn_expiring_keys(until).await {
        tracing::warn!(error = %e, "checking key expiry failed; the next round will");
    }
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn scim_base_url(public_url: &str, connection: &Connection) -> String {
    let base = format!("{public_url}/scim/v2/{}", connection.id);
    if connection.identity_provider == "entra_id" {
        // Entra ID sends RFC-compliant PATCH bodies only when its tenant URL carries this flag.
        format!("{base}?aadOptscim062020")
    } else {
        base
    }
}

impl ConnectionView {
    pub fn new(public_url: &str, c: &Connection) -> Self {
        ConnectionView {
            connection_id: c.id.clone(),
            customer_id: c.customer_id.clone(),
            display_name: c.display_name.clone(),
            identity_provider: c.identity_provider.clone(),
            status: c.status.as_str().to_owned(),
            strict_members: c.strict_members,
            scim_base_url: scim_base_url(public_url, c),
            scim_api_key_expires_at: c
                .scim_api_key_expires_at
                .map(OffsetDateTime::unix_timestamp),
            custom_mapping: c.custom_mapping.clone(),
            mapping_status: None,
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    /// The app's id of the customer (organisation) this connection is for.
    pub customer_id: Option<String>,
    pub display_name: Option<String>,
    /// One of `generic`, `okta`, `entra_id`, `google_workspace`, `onelogin`, `jumpcloud`,
    /// `rippling`, `ping`. Default `generic`.
    pub identity_provider: Option<String>,
    /// UNIX seconds when the SCIM API key expires; absent means never.
    pub scim_api_key_expiration: Option<i64>,
    #[schema(value_type = Object)]
    pub custom_mapping: Option<Value>,
    pub strict_members: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedConnection {
    pub connection_id: String,
    /// Shown once; only its hash is stored.
    pub scim_api_key: String,
    pub scim_base_url: String,
    pub connection: ConnectionView,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConnection {
    #[serde(default, deserialize_with = "explicit_null")]
    #[schema(value_type = Option<String>)]
    pub display_name: Option<Option<String>>,
    pub identity_provider: Option<String>,
    /// `active` or `disabled`.
    pub status: Option<String>,
    pub strict_members: Option<bool>,
    /// Replaces the custom mapping; `null` removes it.
    #[serde(default, deserialize_with = "explicit_null_value")]
    #[schema(value_type = Option<Object>)]
    pub custom_mapping: Option<Option<Value>>,
}

/// Tells `"custom_mapping": null` (remove it) from an absent field (leave it).
fn explicit_null_value<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<Value>>, D::Error> {
    Option::<Value>::deserialize(d).map(Some)
}

/// Tells `"display_name": null` (clear it) from an absent field (leave it).
pub(crate) fn explicit_null<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetKey {
    /// UNIX seconds when the new key expires; absent means never.
    pub scim_api_key_expiration: Option<i64>,
    /// How long the previous key keeps working, for a rollover without downtime. Default 0.
    pub previous_key_valid_for_seconds: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResetKeyResponse {
    /// Shown once; only its hash is stored.
    pub scim_api_key: String,
    pub connection: ConnectionView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionList {
    pub connections: Vec<ConnectionView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RequestLogView {
    /// Newest first.
    #[schema(value_type = Vec<Object>)]
    pub requests: Vec<RequestLogEntry>,
}

pub(crate) fn parse_body<T: serde::de::DeserializeOwned + Default>(
    body: Result<Bytes, BytesRejection>,
    allow_empty: bool,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| ApiError::InvalidJson(e.body_text()))?;
    if allow_empty && bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    if crate::secrets::contains_nul(&value) {
        return Err(ApiError::InvalidJson(
            "text must not contain NUL (U+0000) characters".into(),
        ));
    }
    serde_json::from_value(value).map_err(|e| ApiError::InvalidJson(e.to_string()))
}

/// Validates a `custom_mapping` against the User schemas, one error per invalid field.
pub fn check_mapping(state: &AppState, mapping: &Value, errors: &mut Vec<FieldError>) {
    if let Err(invalid) = scimgate_mapping::validate(mapping, &state.view(Kind::User)) {
        errors.extend(invalid.into_iter().map(|e| FieldError {
            field: e.field,
            message: e.message,
        }));
    }
}

/// A mapping that passed [`check_mapping`], as the store keeps it.
fn stored_mapping(state: &AppState, value: Value) -> StoredMapping {
    let reads_groups = scimgate_mapping::validate(&value, &state.view(Kind::User))
        .is_ok_and(|m| !m.group_role_mappings.is_empty());
    StoredMapping {
        value,
        reads_groups,
    }
}

fn check_identity_provider(value: &str, errors: &mut Vec<FieldError>) {
    if !IDENTITY_PROVIDERS.contains(&value) {
        errors.push(FieldError::new(
            "identity_provider",
            format!("must be one of {}", IDENTITY_PROVIDERS.join(", ")),
        ));
    }
}

fn check_display_name(value: &str, errors: &mut Vec<FieldError>) {
    if value.chars().count() > 200 {
        errors.push(FieldError::new(
            "display_name",
            "must be at most 200 characters",
        ));
    }
}

pub(crate) fn expiration(
    field: &str,
    unix: Option<i64>,
    errors: &mut Vec<FieldError>,
) -> Option<OffsetDateTime> {
    let unix = unix?;
    match OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) if t > OffsetDateTime::now_utc() => Some(t),
        Ok(_) => {
            errors.push(FieldError::new(
                field,
                "must be in the future (UNIX seconds)",
            ));
            None
        }
        Err(_) => {
            errors.push(FieldError::new(
                field,
                "is not a valid UNIX timestamp in seconds",
            ));
            None
        }
    }
}

#[utoipa::path(
    post, path = "/v1/connections", tag = "connections",
    request_body = CreateConnection,
    responses(
        (status = 201, description = "Created; the SCIM API key is shown only here", body = CreatedConnection),
        (status = 400, description = "Invalid fields", body = ErrorBody),
        (status = 409, description = "The customer already has a connection", body = ErrorBody),
    ),
    security(("integration_key" = []))
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let input: CreateConnection = parse_body(body, false)?;
    let mut errors = Vec::new();
    let customer_id = input
        .customer_id
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    if customer_id.is_empty() {
        errors.push(FieldError::new("customer_id", "is required"));
    } else if customer_id.len() > 255 {
        errors.push(FieldError::new("customer_id", "must be at most 255 bytes"));
    }
    if let Some(name) = &input.display_name {
        check_display_name(name, &mut errors);
    }
    let identity_provider = input
        .identity_provider
        .clone()
        .unwrap_or_else(|| "generic".into());
    check_identity_provider(&identity_provider, &mut errors);
    let expires_at = expiration(
        "scim_api_key_expiration",
        input.scim_api_key_expiration,
        &mut errors,
    );
    if let Some(mapping) = &input.custom_mapping {
        check_mapping(&state, mapping, &mut errors);
    }
    if !errors.is_empty() {
        return Err(ApiError::InvalidFields(errors));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let key = secrets::new_scim_key(&id);
    let connection = state
        .store
        .create_connection(
            NewConnection {
                id: id.clone(),
                customer_id,
                display_name: input.display_name,
                identity_provider,
                strict_members: input.strict_members.unwrap_or(false),
                custom_mapping: input.custom_mapping.map(|m| stored_mapping(&state, m)),
            },
            NewScimKey {
                hash: secrets::hash(&key),
                expires_at,
            },
        )
        .await?;
    warn_if_expiring(&state).await;
    let view = ConnectionView::new(&state.public_url, &connection);
    let body = CreatedConnection {
        connection_id: id,
        scim_api_key: key,
        scim_base_url: view.scim_base_url.clone(),
        connection: view,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[utoipa::path(
    get, path = "/v1/connections/{connection_id}", tag = "connections",
    params(("connection_id" = String, Path)),
    responses((status = 200, body = ConnectionView), (status = 404, body = ErrorBody)),
    security(("integration_key" = []))
)]
pub async fn fetch(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<ConnectionView>, ApiError> {
    let connection = state
        .store
        .connection(&id)
        .await?
        .ok_or(ApiError::NotFound("connection"))?;
    let mut view = ConnectionView::new(&state.public_url, &connection);
    view.mapping_status = Some(mapping_status(&state, &connection.id).await?);
    Ok(Json(view))
}

#[utoipa::path(
    get, path = "/v1/connections", tag = "connections",
    params(
        ("customer_id" = Option<String>, Query, description = "The connection of this customer (zero or one)"),
        ("limit" = Option<u32>, Query, description = "1 to 100, default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses((status = 200, body = ConnectionList), (status = 400, body = ErrorBody)),
    security(("integration_key" = []))
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<ConnectionList>, ApiError> {
    if let Some(customer_id) = query.get("customer_id") {
        let found = state.store.connection_by_customer(customer_id).await?;
        let connections = found
            .iter()
            .map(|c| ConnectionView::new(&state.public_url, c))
            .collect();
        return Ok(Json(ConnectionList {
            connections,
            next_cursor: None,
        }));
    }
    let limit = match query.get("limit").map(|l| l.parse::<u32>()) {
        None => 50,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => {
            return Err(ApiError::InvalidFields(vec![FieldError::new(
                "limit",
                "must be an integer from 1 to 100",
            )]))
        }
    };
    let page = state
        .store
        .list_connections(query.get("cursor").map(String::as_str), limit + 1)
        .await?;
    let more = page.len() > limit as usize;
    let connections: Vec<ConnectionView> = page
        .iter()
        .take(limit as usize)
        .map(|c| ConnectionView::new(&state.public_url, c))
        .collect();
    let next_cursor = if more {
        connections.last().map(|c| c.connection_id.clone())
    } else {
        None
    };
    Ok(Json(ConnectionList {
        connections,
        next_cursor,
    }))
}

#[utoipa::path(
    patch, path = "/v1/connections/{connection_id}", tag = "connections",
    params(("connection_id" = String, Path)),
    request_body = UpdateConnection,
    responses((status = 200, body = ConnectionView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("integration_key" = []))
)]
pub async fn update(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ConnectionView>, ApiError> {
    let input: UpdateConnection = parse_body(body, false)?;
    let mut errors = Vec::new();
    if let Some(Some(name)) = &input.display_name {
        check_display_name(name, &mut errors);
    }
    if let Some(idp) = &input.identity_provider {
        check_identity_provider(idp, &mut errors);
    }
    let status = match input.status.as_deref().map(str::parse::<ConnectionStatus>) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(_)) => {
            errors.push(FieldError::new("status", "must be 'active' or 'disabled'"));
            None
        }
    };
    if let Some(Some(mapping)) = &input.custom_mapping {
        check_mapping(&state, mapping, &mut errors);
    }
    if !errors.is_empty() {
        return Err(ApiError::InvalidFields(errors));
    }
    let update = ConnectionUpdate {
        display_name: input.display_name,
        identity_provider: input.identity_provider,
        status,
        strict_members: input.strict_members,
        custom_mapping: input
            .custom_mapping
            .map(|m| m.map(|m| stored_mapping(&state, m))),
    };
    let connection = state
        .store
        .update_connection(&id, update)
        .await?
        .ok_or(ApiError::NotFound("connection"))?;
    state.scim_keys.invalidate();
    let mut view = ConnectionView::new(&state.public_url, &connection);
    view.mapping_status = Some(mapping_status(&state, &connection.id).await?);
    Ok(Json(view))
}

#[utoipa::path(
    post, path = "/v1/connections/{connection_id}/scim-api-key", tag = "connections",
    params(("connection_id" = String, Path)),
    request_body = ResetKey,
    responses((status = 200, description = "The new key, shown only here", body = ResetKeyResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("integration_key" = []))
)]
pub async fn reset_key(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ResetKeyResponse>, ApiError> {
    let input: ResetKey = parse_body(body, true)?;
    let mut errors = Vec::new();
    let expires_at = expiration(
        "scim_api_key_expiration",
        input.scim_api_key_expiration,
        &mut errors,
    );
    let overlap = input.previous_key_valid_for_seconds.unwrap_or(0);
    if !(0..=30 * 86_400).contains(&overlap) {
        errors.push(FieldError::new(
            "previous_key_valid_for_seconds",
            "must be from 0 to 2592000 (30 days)",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::InvalidFields(errors));
    }
    let previous_valid_until = OffsetDateTime::now_utc() + time::Duration::seconds(overlap);
    let (key, connection) = issue_scim_key(&state, &id, expires_at, previous_valid_until).await?;
    Ok(Json(ResetKeyResponse {
        scim_api_key: key,
        connection: ConnectionView::new(&state.public_url, &connection),
    }))
}

#[utoipa::path(
    delete, path = "/v1/connections/{connection_id}", tag = "connections",
    params(("connection_id" = String, Path)),
    responses((status = 204, description = "Deleted with its users, groups and keys"), (status = 404, body = ErrorBody)),
    security(("integration_key" = []))
)]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_connection(&id).await? {
        state.scim_keys.invalidate();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("connection"))
    }
}

#[utoipa::path(
    get, path = "/v1/connections/{connection_id}/requests", tag = "connections",
    params(("connection_id" = String, Path)),
    responses((status = 200, description = "The last 200 SCIM requests, newest first", body = RequestLogView), (status = 404, body = ErrorBody)),
    security(("integration_key" = []))
)]
pub async fn requests(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<RequestLogView>, ApiError> {
    state
        .store
        .connection(&id)
        .await?
        .ok_or(ApiError::NotFound("connection"))?;
    let requests = state
        .store
        .recent_requests(&id, crate::request_log::KEEP)
        .await?;
    Ok(Json(RequestLogView { requests }))
}
