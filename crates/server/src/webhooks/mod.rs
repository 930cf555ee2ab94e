//! Webhooks: the endpoints API at `/v1/webhook-endpoints`, signing, and the dispatcher that
//! delivers the event log to them.

pub mod dispatcher;
pub mod sender;
pub mod signing;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use scimgate_store::{
    Attempt, DeliveryRecord, NewWebhookEndpoint, WebhookEndpoint, WebhookEndpointUpdate,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::events::{check_types, parse_cursor};
use crate::management::connections::{explicit_null, parse_body, rfc3339};
use crate::management::error::{ApiError, ErrorBody, FieldError};

/// How delivery behaves; see the `--webhook-*` options.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Per attempt, from connecting to the end of the response.
    pub timeout: Duration,
    /// The first retry's delay; each further retry doubles it, up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// An endpoint whose oldest pending event has failed for this long is disabled.
    pub retry_window: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            timeout: Duration::from_secs(10),
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(3600),
            retry_window: Duration::from_secs(3 * 24 * 3600),
        }
    }
}

/// A webhook endpoint as the API shows it: never its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EndpointView {
    pub webhook_endpoint_id: String,
    pub url: String,
    pub description: Option<String>,
    /// The event types sent; empty means all.
    pub event_types: Vec<String>,
    /// Only this connection's events; `null` means every connection's.
    pub connection_id: Option<String>,
    pub enabled: bool,
    /// Why scimgate disabled it, when it did.
    pub disabled_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&WebhookEndpoint> for EndpointView {
    fn from(w: &WebhookEndpoint) -> Self {
        EndpointView {
            webhook_endpoint_id: w.id.clone(),
            url: w.url.clone(),
            description: w.description.clone(),
            event_types: w.event_types.clone(),
            connection_id: w.connection_id.clone(),
            enabled: w.enabled,
            disabled_reason: w.disabled_reason.clone(),
            created_at: rfc3339(w.created_at),
            updated_at: rfc3339(w.updated_at),
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// An absolute `http` or `https` URL.
    pub url: Option<String>,
    pub description: Option<String>,
    /// Default: all types.
    pub event_types: Option<Vec<String>>,
    pub connection_id: Option<String>,
    /// Default `true`.
    pub enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpoint {
    pub url: Option<String>,
    #[serde(default, deserialize_with = "explicit_null")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    pub event_types: Option<Vec<String>>,
    #[serde(default, deserialize_with = "explicit_null")]
    #[schema(value_type = Option<String>)]
    pub connection_id: Option<Option<String>>,
    /// `true` on a disabled endpoint resumes delivery where it stopped.
    pub enabled: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedEndpoint {
    pub webhook_endpoint_id: String,
    /// The signing secret, shown once.
    pub secret: String,
    pub webhook_endpoint: EndpointView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    pub webhook_endpoints: Vec<EndpointView>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// How long the old secret keeps signing too (each delivery then carries both
    /// signatures). Default 86400 (a day); 0 ends it at once.
    pub previous_secret_valid_for_seconds: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedSecret {
    /// The new signing secret, shown once.
    pub secret: String,
    pub webhook_endpoint: EndpointView,
}

/// One HTTP attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    pub attempted_at: String,
    pub success: bool,
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    /// The first 1 KB of the response body.
    pub response: Option<String>,
    pub error: Option<String>,
}

impl From<&Attempt> for AttemptView {
    fn from(a: &Attempt) -> Self {
        AttemptView {
            attempted_at: rfc3339(a.at),
            success: a.success,
            status_code: a.status_code,
            latency_ms: a.latency_ms,
            response: a.response.clone(),
            error: a.error.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    pub delivery_id: String,
    pub event_id: String,
    pub event_type: String,
    pub sequence: i64,
    pub connection_id: Option<String>,
    /// `pending` or `delivered`.
    pub state: String,
    pub created_at: String,
    pub delivered_at: Option<String>,
    /// When a failed delivery is tried again.
    pub next_attempt_at: Option<String>,
    /// Oldest first.
    pub attempts: Vec<AttemptView>,
}

impl From<&DeliveryRecord> for DeliveryView {
    fn from(d: &DeliveryRecord) -> Self {
        DeliveryView {
            delivery_id: d.id.to_string(),
            event_id: d.event_id.clone(),
            event_type: d.event_type.clone(),
            sequence: d.sequence,
            connection_id: d.connection_id.clone(),
            state: d.state.as_str().to_owned(),
            created_at: rfc3339(d.created_at),
            delivered_at: d.delivered_at.map(rfc3339),
            next_attempt_at: d.next_attempt_at.map(rfc3339),
            attempts: d.attempts.iter().map(AttemptView::from).collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    /// Newest first.
    pub deliveries: Vec<DeliveryView>,
    /// Pass as `before` for older deliveries; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// An event cursor (`next_cursor` of `GET /v1/events`, or an event's `sequence`): every
    /// event after it that this endpoint was sent, or would have been, is queued again.
    pub after: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Queued {
    pub queued: u64,
}

fn check_url(url: &str) -> Result<(), FieldError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(_) => Err(FieldError::new(
            "url",
            "must be an http or https URL with a host",
        )),
        Err(e) => Err(FieldError::new(
            "url",
            format!("is not an absolute URL: {e}"),
        )),
    }
}

async fn check_connection(state: &AppState, id: &str) -> Result<Option<FieldError>, ApiError> {
    Ok(state
        .store
        .connection(id)
        .await?
        .is_none()
        .then(|| FieldError::new("connection_id", format!("no connection with id '{id}'"))))
}

async fn endpoint(state: &AppState, id: &str) -> Result<WebhookEndpoint, ApiError> {
    state
        .store
        .webhook_endpoint(id)
        .await?
        .ok_or(ApiError::NotFound("webhook endpoint"))
}

#[utoipa::path(
    post, path = "/v1/webhook-endpoints", tag = "webhooks",
    request_body = CreateEndpoint,
    responses((status = 201, body = CreatedEndpoint), (status = 400, body = ErrorBody)),
    security(("integration_key" = []))
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: CreateEndpoint = parse_body(body, false)?;
    let mut errors = Vec::new();
    match &request.url {
        None => errors.push(FieldError::new("url", "is required")),
        Some(url) => errors.extend(check_url(url).err()),
    }
    let event_types = request.event_types.unwrap_or_default();
    errors.extend(check_types("event_types", &event_types).err());
    if let Some(id) = &request.connection_id {
        errors.extend(check_connection(&state, id).await?);
    }
    if !errors.is_empty() {
        return Err(ApiError::InvalidFields(errors));
    }
    let secret = signing::new_secret();
    let created = state
        .store
        .create_webhook_endpoint(NewWebhookEndpoint {
            id: format!("whe_{}", uuid::Uuid::new_v4().simple()),
            url: request.url.unwrap_or_default(),
            description: request.description,
            event_types,
            connection_id: request.connection_id,
            enabled: request.enabled.unwrap_or(true),
            secret: secret.clone(),
        })
        .await?;
    let body = CreatedEndpoint {
        webhook_endpoint_id: created.id.clone(),
        secret,
        webhook_endpoint: EndpointView::from(&created),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[utoipa::path(
    get, path = "/v1/webhook-endpoints", tag = "webhooks",
    responses((status = 200, body = EndpointList)),
    security(("integration_key" = []))
)]
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<EndpointList>, ApiError> {
    let endpoints = state.store.webhook_endpoints().await?;
    Ok(Json(EndpointList {
        webhook_endpoints: endpoints.iter().map(EndpointView::from).collect(),
    }))
}

#[utoipa::path(
    get, path = "/v1/webhook-endpoints/{webhook_endpoint_id}", tag = "webhooks",
    params(("webhook_endpoint_id" = String, Path)),
    responses((status = 200, body = EndpointView), (status = 404, body = ErrorBody)),
    security(("integration_key" = []))
)]
pub async fn fetch(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    Ok(Json(EndpointView::from(&endpoint(&state, &id).await?)))
}

#[utoipa::path(
    patch, path = "/v1/webhook-endpoints/{webhook_endpoint_id}", tag = "webhooks",
    params(("webhook_endpoint_id" = String, Path)),
    request_body = UpdateEndpoint,
    responses((status = 200, body = EndpointView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("integration_key" = []))
)]
pub async fn update(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<EndpointView>, ApiError> {
    let request: UpdateEndpoint = parse_body(body, false)?;
    endpoint(&state, &id).await?;
    let mut errors = Vec::new();
    if let Some(url) = &request.url {
        errors.extend(check_url(url).err());
    }
    if let Some(types) = &request.event_types {
        errors.extend(check_types("event_types", types).err());
    }
    if let Some(Some(connection)) = &request.connection_id {
        errors.extend(check_connection(&state, connection).await?);
    }
    if !errors.is_empty() {
        return Err(ApiError::InvalidFields(errors));
    }
    let updated = state
        .store
        .update_webhook_endpoint(
            &id,
            WebhookEndpointUpdate {
                url: request.url,
                description: request.description,
                event_types: request.event_types,
                connection_id: request.connection_id,
                enabled: request.enabled,
                secret: None,
                previous_secret_until: None,
            },
        )
        .await?
        .ok_or(ApiError::NotFound("webhook endpoint"))?;
    state.events_written.notify_one();
    Ok(Json(EndpointView::from(&updated)))
}

#[utoipa::path(
    delete, path = "/v1/webhook-endpoints/{webhook_endpoint_id}", tag = "webhooks",
    params(("webhook_endpoint_id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("integration_key" = []))
)]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_webhook_endpoint(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("webhook endpoint"))
    }
}

#[utoipa::path(
    post, path = "/v1/webhook-endpoints/{webhook_endpoint_id}/secret", tag = "webhooks",
    params(("webhook_endpoint_id" = String, Path)),
    request_body = RotateSecret,
    responses((status = 200, body = RotatedSecret), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("integration_key" = []))
)]
pub async fn rotate_secret(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RotatedSecret>, ApiError> {
    let request: RotateSecret = parse_body(body, true)?;
    let overlap = request.previous_secret_valid_for_seconds.unwrap_or(86_400);
    if !(0..=30 * 86_400).contains(&overlap) {
        return Err(ApiError::InvalidFields(vec![FieldError::new(
            "previous_secret_valid_for_seconds",
            "must be from 0 to 2592000 (30 days)",
        )]));
    }
    let secret = signing::new_secret();
    let updated = state
        .store
        .update_webhook_endpoint(
            &id,
            WebhookEndpointUpdate {
                secret: Some(secret.clone()),
                previous_secret_until: Some(
                    OffsetDateTime::now_utc() + time::Duration::seconds(overlap),
                ),
                ..WebhookEndpointUpdate::default()
            },
        )
        .await?
        .ok_or(ApiError::NotFound("webhook endpoint"))?;
    Ok(Json(RotatedSecret {
        secret,
        webhook_endpoint: EndpointView::from(&updated),
    }))
}

#[utoipa::path(
    post, path = "/v1/webhook-endpoints/{webhook_endpoint_id}/test", tag = "webhooks",
    params(("webhook_endpoint_id" = String, Path)),
    responses((status = 200, body = AttemptView, description = "The attempt, whatever the endpoint answered"), (status = 404, body = ErrorBody)),
    security(("integration_key" = []))
)]
pub async fn test(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<AttemptView>, ApiError> {
    let endpoint = endpoint(&state, &id).await?;
    let message_id = format!("msg_test_{}", uuid::Uuid::new_v4().simple());
    let body = json!({
        "id": message_id,
        "type": "webhook_endpoint.test",
        "occurred_at": rfc3339(OffsetDateTime::now_utc()),
        "data": EndpointView::from(&endpoint),
    });
    let attempt = sender::send(
        &state.http,
        &endpoint,
        &message_id,
        body.to_string().into_bytes(),
        state.webhooks.timeout,
        0,
    )
    .await;
    Ok(Json(AttemptView::from(&attempt)))
}

#[utoipa::path(
    get, path = "/v1/webhook-endpoints/{webhook_endpoint_id}/deliveries", tag = "webhooks",
    params(
        ("webhook_endpoint_id" = String, Path),
        ("before" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("limit" = Option<u32>, Query, description = "1 to 100, default 50"),
    ),
    responses((status = 200, body = DeliveryList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("integration_key" = []))
)]
pub async fn deliveries(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<DeliveryList>, ApiError> {
    endpoint(&state, &id).await?;
    let mut errors = Vec::new();
    let before = match query.get("before").map(|b| b.parse::<i64>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            errors.push(FieldError::new(
                "before",
                "must be a next_cursor from this list",
            ));
            None
        }
    };
    let limit = match query.get("limit").map(|l| l.parse::<u32>()) {
        None => 50,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => {
            errors.push(FieldError::new("limit", "must be an integer from 1 to 100"));
            50
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::InvalidFields(errors));
    }
    let records = state.store.webhook_deliveries(&id, before, limit).await?;
    let next_cursor = (records.len() == limit as usize)
        .then(|| records.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(Json(DeliveryList {
        deliveries: records.iter().map(DeliveryView::from).collect(),
        next_cursor,
    }))
}

#[utoipa::path(
    post, path = "/v1/webhook-endpoints/{webhook_endpoint_id}/deliveries/{delivery_id}/retry", tag = "webhooks",
    params(("webhook_endpoint_id" = String, Path), ("delivery_id" = String, Path)),
    responses((status = 202, description = "Queued; `delivery_id` names the delivery that will be attempted"), (status = 404, body = ErrorBody)),
    security(("integration_key" = []))
)]
pub async fn retry(
    State(state): State<Arc<AppState>>,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let delivery_id = delivery
        .parse::<i64>()
        .map_err(|_| ApiError::NotFound("delivery"))?;
    let queued = state
        .store
        .retry_webhook_delivery(&id, delivery_id)
        .await?
        .ok_or(ApiError::NotFound("delivery"))?;
    state.events_written.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"delivery_id": queued.to_string()})),
    )
        .into_response())
}

#[utoipa::path(
    post, path = "/v1/webhook-endpoints/{webhook_endpoint_id}/replay", tag = "webhooks",
    params(("webhook_endpoint_id" = String, Path)),
    request_body = ReplayRequest,
    responses((status = 202, body = Queued), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("integration_key" = []))
)]
pub async fn replay(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: ReplayRequest = parse_body(body, true)?;
    endpoint(&state, &id).await?;
    let after = parse_cursor("after", request.after.as_ref())
        .map_err(|e| ApiError::InvalidFields(vec![e]))?;
    let queued = state.store.replay_webhook_events(&id, after).await?;
    state.events_written.notify_one();
    Ok((StatusCode::ACCEPTED, Json(Queued { queued })).into_response())
}
