//! `/ServiceProviderConfig`, `/ResourceTypes` and `/Schemas` (RFC 7644 §4): read-only, with
//! `meta.location` under the connection's base URL.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use scimgate_protocol::messages::{ListResponse, ServiceProviderFeatures, RESOURCE_TYPE, SCHEMA};
use serde_json::{json, Value};

use super::response::{scim_json, ScimFailure, ScimResult};
use super::ScimContext;
use crate::app::{AppState, MAX_RESULTS};

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/ServiceProviderConfig",
            get(service_provider_config).fallback(read_only),
        )
        .route("/ResourceTypes", get(resource_types).fallback(read_only))
        .route(
            "/ResourceTypes/{id}",
            get(resource_type).fallback(read_only),
        )
        .route("/Schemas", get(schemas).fallback(read_only))
        .route("/Schemas/{id}", get(schema).fallback(read_only))
}

async fn read_only() -> ScimFailure {
    ScimFailure::status(405, "discovery endpoints are read-only; use GET")
}

async fn service_provider_config(Extension(ctx): Extension<ScimContext>) -> Response {
    let features = ServiceProviderFeatures {
        documentation_uri: None,
        patch: true,
        bulk: None,
        filter_max_results: MAX_RESULTS as u32,
        change_password: true,
        sort: true,
        etag: true,
        cursor_pagination: true,
    };
    let mut doc = features.to_document();
    doc["meta"] = json!({
        "resourceType": "ServiceProviderConfig",
        "location": format!("{}/ServiceProviderConfig", ctx.base_url),
    });
    scim_json(StatusCode::OK, &doc)
}

fn resource_type_docs(state: &AppState, ctx: &ScimContext) -> Vec<Value> {
    state
        .registry
        .resource_types()
        .iter()
        .map(|rt| {
            let mut doc = serde_json::to_value(rt).unwrap_or_default();
            doc["schemas"] = json!([RESOURCE_TYPE]);
            doc["meta"] = json!({
                "resourceType": "ResourceType",
                "location": format!("{}/ResourceTypes/{}", ctx.base_url, rt.id),
            });
            doc
        })
        .collect()
}

fn schema_docs(state: &AppState, ctx: &ScimContext) -> Vec<Value> {
    state
        .registry
        .schemas()
        .iter()
        .map(|schema| {
            let mut doc = serde_json::to_value(schema).unwrap_or_default();
            doc["schemas"] = json!([SCHEMA]);
            doc["meta"] = json!({
                "resourceType": "Schema",
                "location": format!("{}/Schemas/{}", ctx.base_url, schema.id),
            });
            doc
        })
        .collect()
}

fn list(docs: Vec<Value>) -> Response {
    let total = docs.len() as u64;
    let body = serde_json::to_value(ListResponse::new(docs, total, Some(1))).unwrap_or_default();
    scim_json(StatusCode::OK, &body)
}

async fn resource_types(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<ScimContext>,
) -> Response {
    list(resource_type_docs(&state, &ctx))
}

async fn resource_type(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<ScimContext>,
    Path((_, id)): Path<(String, String)>,
) -> ScimResult {
    resource_type_docs(&state, &ctx)
        .into_iter()
        .find(|d| d["id"] == id.as_str())
        .map(|d| scim_json(StatusCode::OK, &d))
        .ok_or_else(|| ScimFailure::status(404, format!("no resource type '{id}'")))
}

async fn schemas(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<ScimContext>,
) -> Response {
    list(schema_docs(&state, &ctx))
}

async fn schema(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<ScimContext>,
    Path((_, id)): Path<(String, String)>,
) -> ScimResult {
    schema_docs(&state, &ctx)
        .into_iter()
        .find(|d| {
            d["id"]
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case(&id))
        })
        .map(|d| scim_json(StatusCode::OK, &d))
        .ok_or_else(|| ScimFailure::status(404, format!("no schema '{id}'")))
}
