//! The app-facing management API at `/v1`, authenticated with an integration key.

pub(crate) mod connections;
pub(crate) mod directory;
pub mod error;
mod setup_links;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::app::AppState;
use crate::{events, secrets, webhooks};
use error::ApiError;

#[derive(OpenApi)]
#[openapi(
    info(title = "scimgate management API", description = "Create one SCIM connection per customer, hand its base URL and key to the customer's identity provider, and watch its requests."),
    paths(
        connections::create,
        connections::fetch,
        connections::list,
        connections::update,
        connections::reset_key,
        connections::delete,
        connections::requests,
        directory::list_users,
        directory::get_user,
        directory::list_groups,
        directory::get_group,
        directory::list_members,
        directory::preview,
        setup_links::create,
        setup_links::list,
        setup_links::revoke,
        crate::events::list,
        crate::webhooks::create,
        crate::webhooks::list,
        crate::webhooks::fetch,
        crate::webhooks::update,
        crate::webhooks::delete,
        crate::webhooks::rotate_secret,
        crate::webhooks::test,
        crate::webhooks::deliveries,
        crate::webhooks::retry,
        crate::webhooks::replay,
    ),
    modifiers(&IntegrationKeyAuth),
    tags(
        (name = "connections", description = "SCIM connections"),
        (name = "directory", description = "The users and groups of a connection, as the app's model sees them"),
        (name = "events", description = "The log of every change, in order"),
        (name = "webhooks", description = "Signed deliveries of the event log to the app")
    )
)]
pub struct ApiDoc;

struct IntegrationKeyAuth;

impl Modify for IntegrationKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "integration_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let authenticated = Router::new()
        .route(
            "/v1/connections",
            post(connections::create).get(connections::list),
        )
        .route(
            "/v1/connections/{connection_id}",
            get(connections::fetch)
                .patch(connections::update)
                .delete(connections::delete),
        )
        .route(
            "/v1/connections/{connection_id}/scim-api-key",
            post(connections::reset_key),
        )
        .route(
            "/v1/connections/{connection_id}/requests",
            get(connections::requests),
        )
        .route(
            "/v1/connections/{connection_id}/users",
            get(directory::list_users),
        )
        .route(
            "/v1/connections/{connection_id}/users/{user_id}",
            get(directory::get_user),
        )
        .route(
            "/v1/connections/{connection_id}/groups",
            get(directory::list_groups),
        )
        .route(
            "/v1/connections/{connection_id}/groups/{group_id}",
            get(directory::get_group),
        )
        .route(
            "/v1/connections/{connection_id}/groups/{group_id}/members",
            get(directory::list_members),
        )
        .route(
            "/v1/connections/{connection_id}/mapping-preview",
            post(directory::preview),
        )
        .route(
            "/v1/connections/{connection_id}/setup-links",
            post(setup_links::create).get(setup_links::list),
        )
        .route(
            "/v1/connections/{connection_id}/setup-links/{setup_link_id}",
            axum::routing::delete(setup_links::revoke),
        )
        .route("/v1/events", get(events::list))
        .route(
            "/v1/webhook-endpoints",
            post(webhooks::create).get(webhooks::list),
        )
        .route(
            "/v1/webhook-endpoints/{webhook_endpoint_id}",
            get(webhooks::fetch)
                .patch(webhooks::update)
                .delete(webhooks::delete),
        )
        .route(
            "/v1/webhook-endpoints/{webhook_endpoint_id}/secret",
            post(webhooks::rotate_secret),
        )
        .route(
            "/v1/webhook-endpoints/{webhook_endpoint_id}/test",
            post(webhooks::test),
        )
        .route(
            "/v1/webhook-endpoints/{webhook_endpoint_id}/deliveries",
            get(webhooks::deliveries),
        )
        .route(
            "/v1/webhook-endpoints/{webhook_endpoint_id}/deliveries/{delivery_id}/retry",
            post(webhooks::retry),
        )
        .route(
            "/v1/webhook-endpoints/{webhook_endpoint_id}/replay",
            post(webhooks::replay),
        )
        .layer(middleware::from_fn_with_state(state, authenticate));
    Router::new()
        .merge(authenticated)
        .route("/v1/openapi.json", get(openapi))
}

/// The answer to any other `/v1` path.
pub async fn not_found() -> Response {
    ApiError::NotFound("endpoint").into_response()
}

async fn openapi() -> Response {
    Json(ApiDoc::openapi()).into_response()
}

async fn authenticate(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned())
        .ok_or(ApiError::Unauthorized)?;
    let from_env = state
        .integration_key
        .as_deref()
        .is_some_and(|k| secrets::constant_time_eq(k, &token));
    if !from_env
        && !state
            .store
            .integration_key_is_valid(&secrets::hash(&token))
            .await?
    {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(request).await)
}
