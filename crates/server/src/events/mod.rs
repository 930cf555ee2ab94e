//! Events: what each change emits ([`describe`]) and the pull API over the log.

pub mod describe;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use scimgate_store::{Event, EventQuery};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::management::connections::rfc3339;
use crate::management::error::{ApiError, ErrorBody, FieldError};
pub use describe::{Describer, EVENT_TYPES};

/// An event as the pull API returns it and as a webhook carries it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventView {
    /// Unique; the `webhook-id` of its deliveries, so receivers can drop duplicates.
    pub id: String,
    /// Strictly increasing; pass the last one seen as `after` to continue.
    pub sequence: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub connection_id: Option<String>,
    pub customer_id: Option<String>,
    /// RFC 3339.
    pub occurred_at: String,
    /// The user (as the app's mapping sees it), group, membership, connection or endpoint.
    #[schema(value_type = Object)]
    pub data: Value,
    /// For `*.updated`, `user.deactivated` and `user.reactivated`: each changed field of
    /// `data` with its previous value, as `{"field", "previous"}`.
    #[schema(value_type = Vec<Object>)]
    pub changes: Value,
}

impl From<&Event> for EventView {
    fn from(e: &Event) -> Self {
        EventView {
            id: e.id.clone(),
            sequence: e.sequence,
            event_type: e.event_type.clone(),
            connection_id: e.connection_id.clone(),
            customer_id: e.customer_id.clone(),
            occurred_at: rfc3339(e.occurred_at),
            data: e.data.clone(),
            changes: e.changes.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    pub events: Vec<EventView>,
    /// Pass as `after` to read on; the same cursor again when there was nothing new.
    pub next_cursor: String,
}

/// A cursor: the sequence number of the last event seen.
pub(crate) fn parse_cursor(field: &str, text: Option<&String>) -> Result<i64, FieldError> {
    match text.map(|t| t.parse::<i64>()) {
        None => Ok(0),
        Some(Ok(n)) if n >= 0 => Ok(n),
        Some(_) => Err(FieldError::new(
            field,
            "must be a cursor from next_cursor (a non-negative integer)",
        )),
    }
}

/// Checks a list of event types, naming the first unknown one.
pub(crate) fn check_types(field: &str, types: &[String]) -> Result<(), FieldError> {
    match types.iter().find(|t| !EVENT_TYPES.contains(&t.as_str())) {
        Some(unknown) => Err(FieldError::new(
            field,
            format!(
                "unknown event type '{unknown}'; known types: {}",
                EVENT_TYPES.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

#[utoipa::path(
    get, path = "/v1/events", tag = "events",
    params(
        ("after" = Option<String>, Query, description = "`next_cursor` of the previous page; absent for the oldest retained event"),
        ("limit" = Option<u32>, Query, description = "1 to 1000, default 100"),
        ("connection_id" = Option<String>, Query),
        ("customer_id" = Option<String>, Query),
        ("types" = Option<String>, Query, description = "comma-separated event types"),
    ),
    responses((status = 200, body = EventList), (status = 400, body = ErrorBody)),
    security(("integration_key" = []))
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<EventList>, ApiError> {
    let mut errors = Vec::new();
    let after = parse_cursor("after", query.get("after")).unwrap_or_else(|e| {
        errors.push(e);
        0
    });
    let limit = match query.get("limit").map(|l| l.parse::<u32>()) {
        None => 100,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => {
            errors.push(FieldError::new(
                "limit",
                "must be an integer from 1 to 1000",
            ));
            100
        }
    };
    let types: Vec<String> = query
        .get("types")
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if let Err(e) = check_types("types", &types) {
        errors.push(e);
    }
    if !errors.is_empty() {
        return Err(ApiError::InvalidFields(errors));
    }
    let events = state
        .store
        .events(&EventQuery {
            after,
            limit,
            connection_id: query.get("connection_id").cloned(),
            customer_id: query.get("customer_id").cloned(),
            types,
        })
        .await?;
    let next_cursor = events.last().map_or(after, |e| e.sequence).to_string();
    Ok(Json(EventList {
        events: events.iter().map(EventView::from).collect(),
        next_cursor,
    }))
}
