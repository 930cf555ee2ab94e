//! The hosted setup page a customer's IT admin opens from a setup link, its small JSON API
//! (authenticated by the link's token), and the `<scim-setup>` web component. Plain HTML, CSS
//! and JavaScript embedded in the binary: nothing is fetched from elsewhere, so the page works
//! on an offline network.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use scimgate_protocol::ResourceSchemas;
use scimgate_store::{Connection, Kind, ListQuery, Load, PageStart, RequestLogEntry, SetupLink};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::app::AppState;
use crate::management::connections::{
    expiration, issue_scim_key, parse_body, rfc3339, ConnectionView,
};
use crate::management::error::{ApiError, FieldError};
use crate::secrets;

const PAGE: &str = include_str!("assets/page.html");
const GONE: &str = include_str!("assets/gone.html");
const STYLE: &str = include_str!("assets/setup.css");
const SCRIPT: &str = include_str!("assets/setup.js");
const COMPONENT: &str = include_str!("assets/scim-setup.js");

/// No inline code, nothing from other origins, no framing, no referrer carrying the token.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/setup/{token}", get(page))
        .route("/setup/{token}/api/state", get(state))
        .route("/setup/{token}/api/key", post(new_key))
        .route("/setup/{token}/api/requests", get(requests))
        .route(
            "/ui/setup.css",
            get(|| asset(STYLE, "text/css; charset=utf-8")),
        )
        .route(
            "/ui/setup.js",
            get(|| asset(SCRIPT, "text/javascript; charset=utf-8")),
        )
        .route(
            "/ui/scim-setup.js",
            get(|| asset(COMPONENT, "text/javascript; charset=utf-8")),
        )
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

fn html(status: StatusCode, body: &'static str) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Why a token opens nothing.
enum Refused {
    Unknown,
    Expired,
}

/// The link a token is, with the connection it opens, if it is usable.
async fn open(
    state: &AppState,
    token: &str,
) -> Result<Result<(SetupLink, Connection), Refused>, ApiError> {
    let Some(link) = state.store.setup_link(&secrets::hash(token)).await? else {
        return Ok(Err(Refused::Unknown));
    };
    if !link.is_usable(OffsetDateTime::now_utc()) {
        return Ok(Err(Refused::Expired));
    }
    match state.store.connection(&link.connection_id).await? {
        Some(connection) => Ok(Ok((link, connection))),
        None => Ok(Err(Refused::Unknown)),
    }
}

async fn page(State(state): State<Arc<AppState>>, Path(token): Path<String>) -> Response {
    match open(&state, &token).await {
        Ok(Ok(_)) => html(StatusCode::OK, PAGE),
        Ok(Err(Refused::Expired)) => html(StatusCode::GONE, GONE),
        Ok(Err(Refused::Unknown)) => html(StatusCode::NOT_FOUND, GONE),
        Err(e) => e.into_response(),
    }
}

/// The link and connection a token opens, for the page's API: 404 for an unknown link, 410 for
/// an expired or revoked one.
async fn opened(state: &AppState, token: &str) -> Result<(SetupLink, Connection), ApiError> {
    match open(state, token).await? {
        Ok(opened) => Ok(opened),
        Err(Refused::Unknown) => Err(ApiError::NotFound("setup link")),
        Err(Refused::Expired) => Err(ApiError::Gone(
            "this setup link has expired or was revoked; ask for a new one",
        )),
    }
}

#[derive(Debug, Serialize)]
struct KeyState {
    expires_at: Option<String>,
    expired: bool,
    /// When the IdP last made a request this key was accepted for (from the request log).
    last_used_at: Option<String>,
}

#[derive(Debug, Serialize)]
struct PageState {
    connection: ConnectionView,
    key: KeyState,
    users: u64,
    groups: u64,
    /// When this setup link stops working.
    link_expires_at: String,
}

async fn count(state: &AppState, connection_id: &str, kind: Kind) -> Result<u64, ApiError> {
    let rs: ResourceSchemas<'_> = state.view(kind);
    let query = ListQuery {
        filter: None,
        schemas: &rs,
        sort: None,
        start: PageStart::Index(1),
        count: 0,
        load: Load::default(),
    };
    Ok(state
        .store
        .list_resources(connection_id, kind, &query)
        .await?
        .total_results)
}

fn accepted(entry: &RequestLogEntry) -> bool {
    !matches!(entry.status, 401 | 403)
}

async fn state(
    State(app): State<Arc<AppState>>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let (link, connection) = opened(&app, &token).await?;
    let recent = app.store.recent_requests(&connection.id, 200).await?;
    let now = OffsetDateTime::now_utc();
    let body = PageState {
        key: KeyState {
            expires_at: connection.scim_api_key_expires_at.map(rfc3339),
            expired: connection.scim_api_key_expires_at.is_some_and(|t| t <= now),
            last_used_at: recent.iter().find(|e| accepted(e)).map(|e| rfc3339(e.time)),
        },
        users: count(&app, &connection.id, Kind::User).await?,
        groups: count(&app, &connection.id, Kind::Group).await?,
        connection: ConnectionView::new(&app.public_url, &connection),
        link_expires_at: rfc3339(link.expires_at),
    };
    Ok(no_store(Json(body)))
}

fn no_store(body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    /// UNIX seconds; absent or `null` for a key that never expires.
    expires_at: Option<i64>,
}

#[derive(Debug, Serialize)]
struct IssuedKey {
    scim_api_key: String,
    expires_at: Option<String>,
}

/// Generates the connection's key, or replaces it: the old key stops working at once.
async fn new_key(
    State(app): State<Arc<AppState>>,
    Path(token): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (_, connection) = opened(&app, &token).await?;
    let input: NewKey = parse_body(body, true)?;
    let mut errors: Vec<FieldError> = Vec::new();
    let expires_at = expiration("expires_at", input.expires_at, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::InvalidFields(errors));
    }
    let (key, connection) =
        issue_scim_key(&app, &connection.id, expires_at, OffsetDateTime::now_utc()).await?;
    Ok(no_store(Json(IssuedKey {
        scim_api_key: key,
        expires_at: connection.scim_api_key_expires_at.map(rfc3339),
    })))
}

#[derive(Debug, Serialize)]
struct Requests {
    requests: Vec<RequestLogEntry>,
}

async fn requests(
    State(app): State<Arc<AppState>>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let (_, connection) = opened(&app, &token).await?;
    let requests = app.store.recent_requests(&connection.id, 50).await?;
    Ok(no_store(Json(Requests { requests })))
}
