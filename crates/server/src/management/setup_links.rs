//! `/v1/connections/{id}/setup-links`: links to the hosted setup page, for the customer's IT
//! admin. The token is in the link only; the store keeps its hash.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use scimgate_store::{NewSetupLink, SetupLink};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::connections::{parse_body, rfc3339};
use super::error::{ApiError, ErrorBody, FieldError};
use crate::app::AppState;
use crate::secrets;

const DEFAULT_LIFETIME: i64 = 24 * 3600;
const MAX_LIFETIME: i64 = 30 * 24 * 3600;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSetupLink {
    /// 60 to 2592000 (30 days); default 86400 (a day).
    pub expires_in_seconds: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedSetupLink {
    pub setup_link_id: String,
    /// The page to send to the customer's IT admin; shown only here.
    pub url: String,
    pub expires_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SetupLinkView {
    pub setup_link_id: String,
    pub created_at: String,
    pub expires_at: String,
    pub revoked_at: Option<String>,
    /// `active`, `expired` or `revoked`.
    pub state: String,
}

impl From<&SetupLink> for SetupLinkView {
    fn from(link: &SetupLink) -> Self {
        let state = if link.revoked_at.is_some() {
            "revoked"
        } else if link.is_usable(OffsetDateTime::now_utc()) {
            "active"
        } else {
            "expired"
        };
        SetupLinkView {
            setup_link_id: link.id.clone(),
            created_at: rfc3339(link.created_at),
            expires_at: rfc3339(link.expires_at),
            revoked_at: link.revoked_at.map(rfc3339),
            state: state.to_owned(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SetupLinkList {
    /// Newest first.
    pub setup_links: Vec<SetupLinkView>,
}

#[utoipa::path(
    post, path = "/v1/connections/{connection_id}/setup-links", tag = "connections",
    params(("connection_id" = String, Path)),
    request_body = CreateSetupLink,
    responses((status = 201, body = CreatedSetupLink), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("integration_key" = []))
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let input: CreateSetupLink = parse_body(body, true)?;
    let lifetime = input.expires_in_seconds.unwrap_or(DEFAULT_LIFETIME);
    if !(60..=MAX_LIFETIME).contains(&lifetime) {
        return Err(ApiError::InvalidFields(vec![FieldError::new(
            "expires_in_seconds",
            "must be from 60 to 2592000 (30 days)",
        )]));
    }
    let token = format!("sgs_{}", secrets::random_secret());
    let link = state
        .store
        .create_setup_link(NewSetupLink {
            id: format!("sul_{}", uuid::Uuid::new_v4().simple()),
            connection_id: id,
            token_hash: secrets::hash(&token),
            expires_at: OffsetDateTime::now_utc() + time::Duration::seconds(lifetime),
        })
        .await?
        .ok_or(ApiError::NotFound("connection"))?;
    let body = CreatedSetupLink {
        setup_link_id: link.id.clone(),
        url: format!("{}/setup/{token}", state.public_url),
        expires_at: rfc3339(link.expires_at),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[utoipa::path(
    get, path = "/v1/connections/{connection_id}/setup-links", tag = "connections",
    params(("connection_id" = String, Path)),
    responses((status = 200, body = SetupLinkList), (status = 404, body = ErrorBody)),
    security(("integration_key" = []))
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<SetupLinkList>, ApiError> {
    if state.store.connection(&id).await?.is_none() {
        return Err(ApiError::NotFound("connection"));
    }
    let links = state.store.setup_links(&id).await?;
    Ok(Json(SetupLinkList {
        setup_links: links.iter().map(SetupLinkView::from).collect(),
    }))
}

#[utoipa::path(
    delete, path = "/v1/connections/{connection_id}/setup-links/{setup_link_id}", tag = "connections",
    params(("connection_id" = String, Path), ("setup_link_id" = String, Path)),
    responses((status = 204, description = "The link no longer opens the page"), (status = 404, body = ErrorBody)),
    security(("integration_key" = []))
)]
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Path((id, link_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if state.store.revoke_setup_link(&id, &link_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("setup link"))
    }
}
