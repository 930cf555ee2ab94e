//! `/Users` and `/Groups`: create, read, replace, patch, delete, list and search. Handlers
//! translate HTTP into calls on the protocol core and the store.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use scimgate_protocol::messages::SearchRequest;
use scimgate_protocol::resource::check_immutable;
use scimgate_protocol::{
    apply_patch, normalize, NormalizeOptions, PatchRequest, Projection, ScimError,
};
use scimgate_store::{
    IndexedFields, Kind, Load, MemberOp, ResourceWrite, StoreError, StoredResource,
};
use serde_json::{Map, Value};

use super::groups::{self, PendingMember};
use super::list::{self, ListParams};
use super::render::{endpoint, etag, to_scim};
use super::response::{scim_json, ScimFailure, ScimResult, Warnings};
use super::ScimContext;
use crate::app::AppState;

type Params = Query<HashMap<String, String>>;
type Body = Result<Bytes, BytesRejection>;

const OPTIONS: NormalizeOptions = NormalizeOptions { lenient: true };
/// Attempts at a read-modify-write PATCH before reporting a conflict.
const PATCH_ATTEMPTS: u32 = 64;

fn json_body(body: Body) -> ScimResult<Value> {
    let bytes = body.map_err(|rejection| {
        let status = rejection.status();
        ScimFailure::status(status.as_u16(), rejection.body_text())
    })?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ScimError::invalid_syntax(format!("the body is not valid JSON: {e}")))?;
    if crate::secrets::contains_nul(&value) {
        return Err(
            ScimError::invalid_value("text must not contain NUL (U+0000) characters").into(),
        );
    }
    Ok(value)
}

fn indexed_fields(kind: Kind, body: &Value) -> IndexedFields {
    let name_key = match kind {
        Kind::User => "userName",
        Kind::Group => "displayName",
    };
    IndexedFields {
        name: body[name_key].as_str().map(str::to_owned),
        external_id: body["externalId"].as_str().map(str::to_owned),
        active: if kind == Kind::User {
            body["active"].as_bool()
        } else {
            None
        },
        emails: body["emails"]
            .as_array()
            .map(|emails| {
                emails
                    .iter()
                    .filter_map(|e| e["value"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn not_found(kind: Kind, id: &str) -> ScimFailure {
    ScimError::not_found(format!("{} '{id}' not found", kind.as_str())).into()
}

/// RFC 7232 `If-Match`: `*` or a list of entity tags, weak or strong.
fn check_if_match(headers: &HeaderMap, version: i64) -> ScimResult<()> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(());
    };
    let value = value.to_str().unwrap_or_default();
    if tag_matches(value, version) {
        Ok(())
    } else {
        Err(ScimFailure::status(
            412,
            format!(
                "If-Match '{value}' does not match the current version {}",
                etag(version)
            ),
        ))
    }
}

fn tag_matches(list: &str, version: i64) -> bool {
    let current = version.to_string();
    list.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/").trim_matches('"') == current)
}

fn projection_for(
    state: &AppState,
    kind: Kind,
    query: &HashMap<String, String>,
) -> ScimResult<Projection> {
    let params = ListParams::from_query(query)?;
    Ok(params.projection(&state.view(kind))?)
}

fn load_for(state: &AppState, kind: Kind, projection: &Projection) -> Load {
    let rs = state.view(kind);
    Load {
        members: kind == Kind::Group && projection.includes_core("members", &rs),
        groups: kind == Kind::User && projection.includes_core("groups", &rs),
        deleted: false,
    }
}

fn respond(
    state: &AppState,
    ctx: &ScimContext,
    status: StatusCode,
    resource: &StoredResource,
    projection: &Projection,
    warnings: Vec<String>,
) -> Response {
    let rs = state.view(resource.kind);
    let body = projection.apply(&to_scim(resource, &ctx.base_url), &rs);
    let mut response = scim_json(status, &body);
    let headers = response.headers_mut();
    if let Ok(tag) = HeaderValue::from_str(&etag(resource.version)) {
        headers.insert(header::ETAG, tag);
    }
    if status == StatusCode::CREATED {
        let location = format!(
            "{}/{}/{}",
            ctx.base_url,
            endpoint(resource.kind),
            resource.id
        );
        if let Ok(location) = HeaderValue::from_str(&location) {
            headers.insert(header::LOCATION, location);
        }
    }
    if !warnings.is_empty() {
        response.extensions_mut().insert(Warnings(warnings));
    }
    response
}

/// Takes `members` out of a normalized group: members live in rows, not in the body.
fn take_members(body: &mut Value) -> Vec<Value> {
    match body.as_object_mut().and_then(|o| o.remove("members")) {
        Some(Value::Array(items)) => items,
        _ => vec![],
    }
}

async fn reload(
    state: &AppState,
    ctx: &ScimContext,
    kind: Kind,
    id: &str,
    load: Load,
) -> ScimResult<StoredResource> {
    state
        .store
        .resource(&ctx.connection.id, kind, id, load)
        .await?
        .ok_or_else(|| not_found(kind, id))
}

async fn create(
    state: &AppState,
    ctx: &ScimContext,
    kind: Kind,
    query: &HashMap<String, String>,
    body: Body,
) -> ScimResult {
    let projection = projection_for(state, kind, query)?;
    let input = json_body(body)?;
    let mut resource = normalize(&input, &state.view(kind), OPTIONS)?;
    let mut warnings = Vec::new();
    let members = match kind {
        Kind::Group => {
            let items = take_members(&mut resource);
            groups::resolve(
                state,
                ctx,
                None,
                vec![PendingMember::Add(items)],
                &mut warnings,
            )
            .await?
        }
        Kind::User => vec![],
    };
    let id = uuid::Uuid::new_v4().to_string();
    let write = ResourceWrite {
        indexed: indexed_fields(kind, &resource),
        body: resource,
        members,
        mapped: None,
    };
    let outcome = match kind {
        Kind::User => state.store.create_user(&ctx.connection, &id, write).await?,
        Kind::Group => {
            state
                .store
                .create_resource(&ctx.connection.id, kind, &id, write)
                .await?
        }
    };
    let stored = as_written(
        state,
        ctx,
        outcome.resource,
        load_for(state, kind, &projection),
    )
    .await?;
    Ok(respond(
        state,
        ctx,
        StatusCode::CREATED,
        &stored,
        &projection,
        warnings,
    ))
}

async fn fetch(
    state: &AppState,
    ctx: &ScimContext,
    kind: Kind,
    id: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> ScimResult {
    let projection = projection_for(state, kind, query)?;
    let stored = reload(state, ctx, kind, id, load_for(state, kind, &projection)).await?;
    if let Some(tags) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        if tag_matches(tags, stored.version) {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            if let Ok(tag) = HeaderValue::from_str(&etag(stored.version)) {
                response.headers_mut().insert(header::ETAG, tag);
            }
            return Ok(response);
        }
    }
    Ok(respond(
        state,
        ctx,
        StatusCode::OK,
        &stored,
        &projection,
        vec![],
    ))
}

async fn replace(
    state: &AppState,
    ctx: &ScimContext,
    kind: Kind,
    id: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> ScimResult {
    let projection = projection_for(state, kind, query)?;
    let rs = state.view(kind);
    let input = json_body(body)?;
    let mut resource = normalize(&input, &rs, OPTIONS)?;
    let current = reload(
        state,
        ctx,
        kind,
        id,
        Load {
            members: kind == Kind::Group,
            groups: false,
            deleted: false,
        },
    )
    .await?;
    check_if_match(headers, current.version)?;
    check_immutable(&current.body, &resource, &rs)?;
    if kind == Kind::User && resource.get("password").is_none() {
        // IdPs send the password only when it changes; a PUT without one keeps it.
        if let (Some(password), Some(obj)) =
            (current.body.get("password"), resource.as_object_mut())
        {
            obj.insert("password".into(), password.clone());
        }
    }
    let mut warnings = Vec::new();
    let members = match kind {
        Kind::Group => {
            let items = take_members(&mut resource);
            let pending = vec![PendingMember::Clear, PendingMember::Add(items)];
            groups::resolve(state, ctx, Some(id), pending, &mut warnings).await?
        }
        Kind::User => vec![],
    };
    let write = ResourceWrite {
        indexed: indexed_fields(kind, &resource),
        body: resource,
        members,
        mapped: None,
    };
    let expected = headers.get(header::IF_MATCH).map(|_| current.version);
    let renamed = kind == Kind::Group && identity_changed(&current.body, &write.body);
    let outcome = state
        .store
        .update_resource(&ctx.connection.id, kind, id, expected, write)
        .await?;
    if renamed {
        state
            .store
            .mark_group_members_stale(&ctx.connection.id, id)
            .await?;
    }
    let stored = as_written(
        state,
        ctx,
        outcome.resource,
        load_for(state, kind, &projection),
    )
    .await?;
    Ok(respond(
        state,
        ctx,
        StatusCode::OK,
        &stored,
        &projection,
        warnings,
    ))
}

/// Whether a group changed what role rules match it by (its displayName or externalId).
fn identity_changed(old: &Value, new: &Value) -> bool {
    old["displayName"] != new["displayName"] || old["externalId"] != new["externalId"]
}

/// The resource as this write left it: its body and version from the write itself (a later
/// write may already have landed), its member and group rows read now.
async fn as_written(
    state: &AppState,
    ctx: &ScimContext,
    mut written: StoredResource,
    load: Load,
) -> ScimResult<StoredResource> {
    // A create already carries them: a new user is in no group, a new group's members were
    // read back in its transaction.
    let missing = Load {
        members: load.members && written.members.is_none(),
        groups: load.groups && written.groups.is_none(),
        deleted: false,
    };
    if missing.members || missing.groups {
        let fresh = reload(state, ctx, written.kind, &written.id.clone(), missing).await?;
        if missing.members {
            written.members = fresh.members;
        }
        if missing.groups {
            written.groups = fresh.groups;
        }
    }
    Ok(written)
}

/// The resource with its members as values, for the general PATCH engine.
fn with_members(resource: &StoredResource) -> Value {
    let mut body = resource.body.clone();
    if let (Some(members), Some(obj)) = (&resource.members, body.as_object_mut()) {
        if !members.is_empty() {
            let values: Vec<Value> = members
                .iter()
                .map(|m| {
                    let mut v = Map::new();
                    v.insert("value".into(), Value::String(m.id.clone()));
                    if let Some(d) = &m.display {
                        v.insert("display".into(), Value::String(d.clone()));
                    }
                    v.insert("type".into(), Value::String(m.kind.as_str().into()));
                    Value::Object(v)
                })
                .collect();
            obj.insert("members".into(), Value::Array(values));
        }
    }
    body
}

/// One attempt at a PATCH: the new body and member operations, or `None` if nothing changes.
async fn plan_patch(
    state: &AppState,
    ctx: &ScimContext,
    kind: Kind,
    current: &StoredResource,
    request: &PatchRequest,
    warnings: &mut Vec<String>,
) -> ScimResult<Option<(Value, Vec<MemberOp>)>> {
    let rs = state.view(kind);
    if kind == Kind::User {
        let outcome = apply_patch(current.body.clone(), request, &rs, OPTIONS)?;
        return Ok((!outcome.changes.is_empty()).then_some((outcome.resource, vec![])));
    }
    match groups::split(request)? {
        Some(split) => {
            let (body, body_changed) = if split.body.operations.is_empty() {
                (current.body.clone(), false)
            } else {
                let outcome = apply_patch(current.body.clone(), &split.body, &rs, OPTIONS)?;
                let changed = !outcome.changes.is_empty();
                (outcome.resource, changed)
            };
            let ops =
                groups::resolve(state, ctx, Some(&current.id), split.members, warnings).await?;
            Ok((body_changed || !ops.is_empty()).then_some((body, ops)))
        }
        None => {
            let full = reload(
                state,
                ctx,
                kind,
                &current.id,
                Load {
                    members: true,
                    groups: false,
                    deleted: false,
                },
            )
            .await?;
            let outcome = apply_patch(with_members(&full), request, &rs, OPTIONS)?;
            if outcome.changes.is_empty() {
                return Ok(None);
            }
            let mut body = outcome.resource;
            let items = take_members(&mut body);
            let pending = vec![PendingMember::Clear, PendingMember::Add(items)];
            let ops = groups::resolve(state, ctx, Some(&current.id), pending, warnings).await?;
            Ok(Some((body, ops)))
        }
    }
}

async fn patch(
    state: &AppState,
    ctx: &ScimContext,
    kind: Kind,
    id: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> ScimResult {
    let projection = projection_for(state, kind, query)?;
    let request = PatchRequest::parse(&json_body(body)?)?;
    let mut warnings = Vec::new();
    for attempt in 0..PATCH_ATTEMPTS {
        warnings.clear();
        let current = reload(state, ctx, kind, id, Load::default()).await?;
        check_if_match(headers, current.version)?;
        let Some((new_body, ops)) =
            plan_patch(state, ctx, kind, &current, &request, &mut warnings).await?
        else {
            let stored = reload(state, ctx, kind, id, load_for(state, kind, &projection)).await?;
            return Ok(respond(
                state,
                ctx,
                StatusCode::OK,
                &stored,
                &projection,
                warnings,
            ));
        };
        let renamed = kind == Kind::Group && identity_changed(&current.body, &new_body);
        let write = ResourceWrite {
            indexed: indexed_fields(kind, &new_body),
            body: new_body,
            members: ops,
            mapped: None,
        };
        match state
            .store
            .update_resource(&ctx.connection.id, kind, id, Some(current.version), write)
            .await
        {
            Ok(outcome) => {
                if renamed {
                    state
                        .store
                        .mark_group_members_stale(&ctx.connection.id, id)
                        .await?;
                }
                let mut load = load_for(state, kind, &projection);
                if load.members {
                    let count = state.store.member_count(&ctx.connection.id, id).await?;
                    // Past the limit, changing 100 members of a huge group must not cost a read
                    // and render of all of them.
                    if count > state.patch_response_member_limit {
                        load.members = false;
                        warnings.push(format!(
                            "members left out of the response: the group has {count} members; \
                             GET it with attributes=members to read them"
                        ));
                    }
                }
                let stored = as_written(state, ctx, outcome.resource, load).await?;
                return Ok(respond(
                    state,
                    ctx,
                    StatusCode::OK,
                    &stored,
                    &projection,
                    warnings,
                ));
            }
            // Another write landed between our read and write: apply the PATCH again on top
            // of it, unless the client pinned a version with If-Match.
            Err(StoreError::VersionMismatch { .. }) if !headers.contains_key(header::IF_MATCH) => {
                // Random backoff, growing with the attempts, so contenders stop colliding.
                let ceiling = 1u64 << attempt.min(6);
                let wait = rand::Rng::gen_range(&mut rand::thread_rng(), 0..=ceiling);
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ScimFailure::status(
        409,
        "the resource kept changing during the PATCH; retry it",
    ))
}

async fn delete(
    state: &AppState,
    ctx: &ScimContext,
    kind: Kind,
    id: &str,
    headers: &HeaderMap,
) -> ScimResult {
    let expected = match headers.get(header::IF_MATCH) {
        Some(_) => {
            let current = reload(state, ctx, kind, id, Load::default()).await?;
            check_if_match(headers, current.version)?;
            Some(current.version)
        }
        None => None,
    };
    match state
        .store
        .delete_resource(&ctx.connection.id, kind, id, expected)
        .await
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(StoreError::NotFound(_)) => Err(not_found(kind, id)),
        Err(e) => Err(e.into()),
    }
}

async fn list_kind(
    state: &AppState,
    ctx: &ScimContext,
    kind: Kind,
    query: &HashMap<String, String>,
) -> ScimResult {
    let params = ListParams::from_query(query)?;
    Ok(scim_json(
        StatusCode::OK,
        &list::list(state, ctx, kind, &params).await?,
    ))
}

async fn search_kind(state: &AppState, ctx: &ScimContext, kind: Kind, body: Body) -> ScimResult {
    let request: SearchRequest = serde_json::from_value(json_body(body)?)
        .map_err(|e| ScimError::invalid_syntax(format!("not a SearchRequest: {e}")))?;
    let params = ListParams::from_search(request);
    Ok(scim_json(
        StatusCode::OK,
        &list::list(state, ctx, kind, &params).await?,
    ))
}

type S = State<Arc<AppState>>;
type Ctx = Extension<ScimContext>;
type IdPath = Path<(String, String)>;

pub async fn list_users(State(s): S, Extension(c): Ctx, Query(q): Params) -> ScimResult {
    list_kind(&s, &c, Kind::User, &q).await
}
pub async fn list_groups(State(s): S, Extension(c): Ctx, Query(q): Params) -> ScimResult {
    list_kind(&s, &c, Kind::Group, &q).await
}
pub async fn search_users(State(s): S, Extension(c): Ctx, body: Body) -> ScimResult {
    search_kind(&s, &c, Kind::User, body).await
}
pub async fn search_groups(State(s): S, Extension(c): Ctx, body: Body) -> ScimResult {
    search_kind(&s, &c, Kind::Group, body).await
}
pub async fn search_all(State(s): S, Extension(c): Ctx, body: Body) -> ScimResult {
    let request: SearchRequest = serde_json::from_value(json_body(body)?)
        .map_err(|e| ScimError::invalid_syntax(format!("not a SearchRequest: {e}")))?;
    let params = ListParams::from_search(request);
    Ok(scim_json(
        StatusCode::OK,
        &list::search_all(&s, &c, &params).await?,
    ))
}
pub async fn create_user(
    State(s): S,
    Extension(c): Ctx,
    Query(q): Params,
    body: Body,
) -> ScimResult {
    create(&s, &c, Kind::User, &q, body).await
}
pub async fn create_group(
    State(s): S,
    Extension(c): Ctx,
    Query(q): Params,
    body: Body,
) -> ScimResult {
    create(&s, &c, Kind::Group, &q, body).await
}
pub async fn get_user(
    State(s): S,
    Extension(c): Ctx,
    Path((_, id)): IdPath,
    Query(q): Params,
    h: HeaderMap,
) -> ScimResult {
    fetch(&s, &c, Kind::User, &id, &q, &h).await
}
pub async fn get_group(
    State(s): S,
    Extension(c): Ctx,
    Path((_, id)): IdPath,
    Query(q): Params,
    h: HeaderMap,
) -> ScimResult {
    fetch(&s, &c, Kind::Group, &id, &q, &h).await
}
pub async fn replace_user(
    State(s): S,
    Extension(c): Ctx,
    Path((_, id)): IdPath,
    Query(q): Params,
    h: HeaderMap,
    body: Body,
) -> ScimResult {
    replace(&s, &c, Kind::User, &id, &q, &h, body).await
}
pub async fn replace_group(
    State(s): S,
    Extension(c): Ctx,
    Path((_, id)): IdPath,
    Query(q): Params,
    h: HeaderMap,
    body: Body,
) -> ScimResult {
    replace(&s, &c, Kind::Group, &id, &q, &h, body).await
}
pub async fn patch_user(
    State(s): S,
    Extension(c): Ctx,
    Path((_, id)): IdPath,
    Query(q): Params,
    h: HeaderMap,
    body: Body,
) -> ScimResult {
    patch(&s, &c, Kind::User, &id, &q, &h, body).await
}
pub async fn patch_group(
    State(s): S,
    Extension(c): Ctx,
    Path((_, id)): IdPath,
    Query(q): Params,
    h: HeaderMap,
    body: Body,
) -> ScimResult {
    patch(&s, &c, Kind::Group, &id, &q, &h, body).await
}
pub async fn delete_user(
    State(s): S,
    Extension(c): Ctx,
    Path((_, id)): IdPath,
    h: HeaderMap,
) -> ScimResult {
    delete(&s, &c, Kind::User, &id, &h).await
}
pub async fn delete_group(
    State(s): S,
    Extension(c): Ctx,
    Path((_, id)): IdPath,
    h: HeaderMap,
) -> ScimResult {
    delete(&s, &c, Kind::Group, &id, &h).await
}
