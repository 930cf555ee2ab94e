//! The IdP-facing SCIM API at `/scim/v2/{connection_id}`.

mod discovery;
mod groups;
pub mod key_cache;
mod list;
pub mod render;
mod resources;
pub mod response;

use std::sync::Arc;

use axum::extract::{OriginalUri, Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::routing::{get, post};
use axum::{middleware, Router};
use scimgate_store::{Connection, ConnectionStatus};
use time::OffsetDateTime;

use crate::app::AppState;
use crate::secrets;
use response::{ScimFailure, ScimResult};

/// The authenticated connection of a SCIM request.
#[derive(Clone)]
pub struct ScimContext {
    pub connection: Arc<Connection>,
    /// `{public_url}/scim/v2/{connection_id}`.
    pub base_url: String,
}

pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let scim = Router::new()
        .route(
            "/Users",
            get(resources::list_users).post(resources::create_user),
        )
        .route("/Users/.search", post(resources::search_users))
        .route(
            "/Users/{id}",
            get(resources::get_user)
                .put(resources::replace_user)
                .patch(resources::patch_user)
                .delete(resources::delete_user),
        )
        .route(
            "/Groups",
            get(resources::list_groups).post(resources::create_group),
        )
        .route("/Groups/.search", post(resources::search_groups))
        .route(
            "/Groups/{id}",
            get(resources::get_group)
                .put(resources::replace_group)
                .patch(resources::patch_group)
                .delete(resources::delete_group),
        )
        .route("/.search", post(resources::search_all))
        .merge(discovery::router())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new().nest("/scim/v2/{connection_id}", scim)
}

async fn not_found() -> ScimFailure {
    ScimFailure::status(404, "no such SCIM endpoint")
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Resolves the bearer key to its connection. A key of another connection is answered exactly
/// like an unknown key, so nothing about other tenants leaks.
async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> ScimResult {
    // Inside the nested router the URI has lost its prefix; the original one still has it.
    let full_path = match request.extensions().get::<OriginalUri>() {
        Some(OriginalUri(uri)) => uri.path().to_owned(),
        None => request.uri().path().to_owned(),
    };
    let connection_id = full_path
        .strip_prefix("/scim/v2/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_owned();
    let invalid = || {
        ScimFailure::unauthorized(
            "the bearer token is not a valid SCIM API key for this connection",
        )
    };
    let token = bearer(request.headers()).ok_or_else(|| {
        ScimFailure::unauthorized(
            "send the connection's SCIM API key as 'Authorization: Bearer <key>'",
        )
    })?;
    let record = state
        .scim_keys
        .resolve(state.store.as_ref(), &secrets::hash(token))
        .await?
        .ok_or_else(invalid)?;
    if record.connection.id != connection_id {
        return Err(invalid());
    }
    if record
        .valid_until
        .is_some_and(|until| until <= OffsetDateTime::now_utc())
    {
        return Err(ScimFailure::unauthorized(if record.replaced {
            "this SCIM API key was replaced by a key reset and is no longer valid; use the new key"
        } else {
            "this SCIM API key has expired; ask the application for a new one"
        }));
    }
    let connection = record.connection.clone();
    if connection.status == ConnectionStatus::Disabled {
        return Err(ScimFailure::status(
            403,
            "this SCIM connection is disabled by the application",
        ));
    }
    if !state.scim_rate_limit.allow(&connection.id) {
        return Err(ScimFailure::rate_limited());
    }
    let base_url = format!("{}/scim/v2/{}", state.public_url, connection.id);
    request.extensions_mut().insert(ScimContext {
        connection,
        base_url,
    });
    Ok(next.run(request).await)
}
