//! The directory the app reads: users as its own user model (mapped properties, warnings,
//! roles), groups and their members, and a preview of a proposed mapping.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use scimgate_mapping::{validate, GroupRef, Mapped, Mapping, Warning};
use scimgate_protocol::{Filter, Projection, ResourceSchemas};
use scimgate_store::{Connection, Kind, ListQuery, Load, PageStart, StoreResult, StoredResource};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::connections::{check_mapping, parse_body, rfc3339};
use super::error::{ApiError, ErrorBody, FieldError};
use crate::app::AppState;
use crate::scim::render::to_scim;

/// A group a user is a direct member of.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserGroup {
    pub group_id: String,
    pub display_name: Option<String>,
}

/// A user as the app's model sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserView {
    pub user_id: String,
    pub connection_id: String,
    pub customer_id: String,
    /// The value of the mapping's `user_id_attribute` (default: `externalId`, else `user_id`).
    pub user_key: Option<String>,
    pub user_name: Option<String>,
    pub external_id: Option<String>,
    pub email: Option<Value>,
    pub given_name: Option<Value>,
    pub family_name: Option<Value>,
    pub display_name: Option<Value>,
    pub active: bool,
    /// `active`, `inactive`, or `deleted` (deleted through SCIM; kept for the retention period).
    pub state: String,
    pub groups: Vec<UserGroup>,
    pub roles: Vec<String>,
    #[schema(value_type = Object)]
    pub properties: serde_json::Map<String, Value>,
    #[schema(value_type = Vec<Object>)]
    pub warnings: Vec<Warning>,
    pub created_at: String,
    pub updated_at: String,
    /// The SCIM resource after the unmapped-attributes policy; only with `include=raw`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub raw: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GroupView {
    pub group_id: String,
    pub connection_id: String,
    pub display_name: Option<String>,
    pub external_id: Option<String>,
    /// Only on a single group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_count: Option<u64>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GroupList {
    pub groups: Vec<GroupView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    pub member_id: String,
    /// `User` or `Group`.
    #[serde(rename = "type")]
    pub kind: String,
    pub display: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberList {
    pub members: Vec<MemberView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// The proposed mapping; `null` previews the identity provider's preset alone.
    #[schema(value_type = Option<Object>)]
    pub custom_mapping: Option<Value>,
    /// How many users to show, 1 to 100 (default 20).
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewSummary {
    /// Users in the connection.
    pub users: u64,
    /// Per output field, how many users got each warning code.
    #[schema(value_type = Object)]
    pub warnings: BTreeMap<String, BTreeMap<String, u64>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Preview {
    pub users: Vec<UserView>,
    pub summary: PreviewSummary,
}

/// The connection's effective mapping. Mappings are validated when saved; one that no longer
/// validates (a schema changed under it) falls back to the preset, loudly.
pub fn mapping_of(state: &AppState, connection: &Connection) -> Mapping {
    mapping_for(&state.view(Kind::User), connection)
}

/// [`mapping_of`] with the user schemas given, for code that has no [`AppState`].
pub fn mapping_for(users: &ResourceSchemas<'_>, connection: &Connection) -> Mapping {
    let custom = connection.custom_mapping.as_ref().and_then(|m| match validate(m, users) {
        Ok(valid) => Some(valid),
        Err(errors) => {
            tracing::warn!(connection_id = %connection.id, ?errors, "stored custom_mapping no longer validates; using the preset");
            None
        }
    });
    Mapping::effective(&connection.identity_provider, custom.as_ref())
}

async fn connection(state: &AppState, id: &str) -> Result<Connection, ApiError> {
    state
        .store
        .connection(id)
        .await?
        .ok_or(ApiError::NotFound("connection"))
}

/// Builds user views: the stored mapped view when it is current, else computed now, looking
/// each group up once for the role rules.
pub(crate) struct Viewer<'a> {
    state: &'a AppState,
    connection: &'a Connection,
    mapping: Mapping,
    /// Compute even when a current stored view exists (previews, the recompute itself).
    fresh: bool,
    base_url: String,
    groups: HashMap<String, GroupRef>,
}

impl<'a> Viewer<'a> {
    pub(crate) fn new(
        state: &'a AppState,
        connection: &'a Connection,
        mapping: Mapping,
        fresh: bool,
    ) -> Self {
        let base_url = format!("{}/scim/v2/{}", state.public_url, connection.id);
        Viewer {
            state,
            connection,
            mapping,
            fresh,
            base_url,
            groups: HashMap::new(),
        }
    }

    async fn group_ref(&mut self, id: &str) -> StoreResult<GroupRef> {
        if let Some(found) = self.groups.get(id) {
            return Ok(found.clone());
        }
        let group = self
            .state
            .store
            .resource(&self.connection.id, Kind::Group, id, Load::default())
            .await?;
        let found = GroupRef {
            display_name: group
                .as_ref()
                .and_then(|g| g.body["displayName"].as_str().map(str::to_owned)),
            external_id: group
                .as_ref()
                .and_then(|g| g.body["externalId"].as_str().map(str::to_owned)),
        };
        self.groups.insert(id.to_owned(), found.clone());
        Ok(found)
    }

    fn scim(&self, user: &StoredResource) -> Value {
        Projection::default().apply(&to_scim(user, &self.base_url), &self.state.view(Kind::User))
    }

    /// The user's mapped view. `user.groups` must be loaded when the mapping has role rules.
    pub(crate) async fn mapped(&mut self, user: &StoredResource) -> StoreResult<Mapped> {
        if !self.fresh {
            let stored = user
                .mapped
                .as_ref()
                .filter(|m| m.generation == self.connection.mapping_generation);
            if let Some(mapped) =
                stored.and_then(|m| serde_json::from_value::<Mapped>(m.value.clone()).ok())
            {
                return Ok(mapped);
            }
        }
        let mut refs = Vec::new();
        if self.mapping.uses_groups() {
            for m in user.groups.clone().unwrap_or_default() {
                refs.push(self.group_ref(&m.id).await?);
            }
        }
        Ok(self
            .mapping
            .apply(&self.scim(user), &refs, &self.state.view(Kind::User)))
    }

    async fn view(
        &mut self,
        user: &StoredResource,
        include_raw: bool,
    ) -> Result<UserView, ApiError> {
        let mapped = self.mapped(user).await?;
        let raw = include_raw.then(|| self.mapping.raw_view(&self.scim(user)));
        Ok(render_user(self.connection, user, mapped, raw))
    }
}

/// A user as the app sees it, from its mapped form; `user.groups` gives its memberships.
pub(crate) fn render_user(
    connection: &Connection,
    user: &StoredResource,
    mapped: Mapped,
    raw: Option<Value>,
) -> UserView {
    let memberships = user.groups.clone().unwrap_or_default();
    let active = user.body["active"].as_bool().unwrap_or(true);
    let property = |name: &str| mapped.properties.get(name).cloned();
    UserView {
        user_id: user.id.clone(),
        connection_id: connection.id.clone(),
        customer_id: connection.customer_id.clone(),
        user_key: mapped.user_key.clone(),
        user_name: user.body["userName"].as_str().map(str::to_owned),
        external_id: user.body["externalId"].as_str().map(str::to_owned),
        email: property("email"),
        given_name: property("given_name"),
        family_name: property("family_name"),
        display_name: property("display_name"),
        active,
        state: match (user.deleted_at, active) {
            (Some(_), _) => "deleted",
            (None, true) => "active",
            (None, false) => "inactive",
        }
        .to_owned(),
        groups: memberships
            .iter()
            .map(|m| UserGroup {
                group_id: m.id.clone(),
                display_name: m.display.clone(),
            })
            .collect(),
        roles: mapped.roles,
        properties: mapped.properties,
        warnings: mapped.warnings,
        created_at: rfc3339(user.created),
        updated_at: rfc3339(user.last_modified),
        raw,
    }
}

fn limit(query: &HashMap<String, String>, default: u32) -> Result<u32, ApiError> {
    match query.get("limit").map(|l| l.parse::<u32>()) {
        None => Ok(default),
        Some(Ok(n)) if (1..=100).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::InvalidFields(vec![FieldError::new(
            "limit",
            "must be an integer from 1 to 100",
        )])),
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The directory filters as one SCIM filter, so they run on the same indexes as the SCIM API.
fn user_filter(query: &HashMap<String, String>) -> Result<Option<Filter>, ApiError> {
    let mut parts = Vec::new();
    let mut errors = Vec::new();
    if let Some(active) = query.get("active") {
        match active.as_str() {
            "true" | "false" => parts.push(format!("active eq {active}")),
            _ => errors.push(FieldError::new("active", "must be true or false")),
        }
    }
    if let Some(email) = query.get("email") {
        parts.push(format!("emails.value eq {}", json_string(email)));
    }
    if let Some(after) = query.get("updated_after") {
        match scimgate_protocol::filter::parse_instant(after) {
            Some(_) => parts.push(format!("meta.lastModified gt {}", json_string(after))),
            None => errors.push(FieldError::new(
                "updated_after",
                "must be an RFC 3339 date-time",
            )),
        }
    }
    if let Some(group) = query.get("group_id") {
        parts.push(format!("groups[value eq {}]", json_string(group)));
    }
    if !errors.is_empty() {
        return Err(ApiError::InvalidFields(errors));
    }
    if parts.is_empty() {
        return Ok(None);
    }
    Filter::parse(&parts.join(" and ")).map(Some).map_err(|e| {
        tracing::error!(error = %e, "directory filter did not parse");
        ApiError::Internal
    })
}

#[utoipa::path(
    get, path = "/v1/connections/{connection_id}/users", tag = "directory",
    params(
        ("connection_id" = String, Path),
        ("limit" = Option<u32>, Query, description = "1 to 100, default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("active" = Option<bool>, Query),
        ("group_id" = Option<String>, Query, description = "only direct members of this group"),
        ("email" = Option<String>, Query, description = "any of the user's emails, case-insensitively"),
        ("updated_after" = Option<String>, Query, description = "RFC 3339"),
        ("include" = Option<String>, Query, description = "`raw` adds the SCIM resource"),
    ),
    responses((status = 200, body = UserList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("integration_key" = []))
)]
pub async fn list_users(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<UserList>, ApiError> {
    let connection = connection(&state, &id).await?;
    let filter = user_filter(&query)?;
    let rs = state.view(Kind::User);
    let list = ListQuery {
        filter: filter.as_ref(),
        schemas: &rs,
        sort: None,
        start: PageStart::Cursor(query.get("cursor").cloned()),
        count: u64::from(limit(&query, 50)?),
        load: Load {
            members: false,
            groups: true,
            deleted: true,
        },
    };
    let page = state
        .store
        .list_resources(&connection.id, Kind::User, &list)
        .await?;
    let include_raw = query
        .get("include")
        .is_some_and(|i| i.split(',').any(|x| x == "raw"));
    let mut viewer = Viewer::new(&state, &connection, mapping_of(&state, &connection), false);
    let mut users = Vec::with_capacity(page.resources.len());
    for user in &page.resources {
        users.push(viewer.view(user, include_raw).await?);
    }
    Ok(Json(UserList {
        users,
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(
    get, path = "/v1/connections/{connection_id}/users/{user_id}", tag = "directory",
    params(("connection_id" = String, Path), ("user_id" = String, Path), ("include" = Option<String>, Query, description = "`raw` adds the SCIM resource")),
    responses((status = 200, body = UserView), (status = 404, body = ErrorBody)),
    security(("integration_key" = []))
)]
pub async fn get_user(
    State(state): State<Arc<AppState>>,
    Path((id, user_id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<UserView>, ApiError> {
    let connection = connection(&state, &id).await?;
    let user = state
        .store
        .resource(
            &connection.id,
            Kind::User,
            &user_id,
            Load {
                members: false,
                groups: true,
                deleted: true,
            },
        )
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    let include_raw = query
        .get("include")
        .is_some_and(|i| i.split(',').any(|x| x == "raw"));
    let mut viewer = Viewer::new(&state, &connection, mapping_of(&state, &connection), false);
    Ok(Json(viewer.view(&user, include_raw).await?))
}

pub(crate) fn group_view(
    connection_id: &str,
    group: &StoredResource,
    member_count: Option<u64>,
) -> GroupView {
    GroupView {
        group_id: group.id.clone(),
        connection_id: connection_id.to_owned(),
        display_name: group.body["displayName"].as_str().map(str::to_owned),
        external_id: group.body["externalId"].as_str().map(str::to_owned),
        member_count,
        created_at: rfc3339(group.created),
        updated_at: rfc3339(group.last_modified),
    }
}

#[utoipa::path(
    get, path = "/v1/connections/{connection_id}/groups", tag = "directory",
    params(("connection_id" = String, Path), ("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = GroupList), (status = 404, body = ErrorBody)),
    security(("integration_key" = []))
)]
pub async fn list_groups(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<GroupList>, ApiError> {
    let connection = connection(&state, &id).await?;
    let rs = state.view(Kind::Group);
    let list = ListQuery {
        filter: None,
        schemas: &rs,
        sort: None,
        start: PageStart::Cursor(query.get("cursor").cloned()),
        count: u64::from(limit(&query, 50)?),
        load: Load::default(),
    };
    let page = state
        .store
        .list_resources(&connection.id, Kind::Group, &list)
        .await?;
    let groups = page
        .resources
        .iter()
        .map(|g| group_view(&connection.id, g, None))
        .collect();
    Ok(Json(GroupList {
        groups,
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(
    get, path = "/v1/connections/{connection_id}/groups/{group_id}", tag = "directory",
    params(("connection_id" = String, Path), ("group_id" = String, Path)),
    responses((status = 200, body = GroupView), (status = 404, body = ErrorBody)),
    security(("integration_key" = []))
)]
pub async fn get_group(
    State(state): State<Arc<AppState>>,
    Path((id, group_id)): Path<(String, String)>,
) -> Result<Json<GroupView>, ApiError> {
    let connection = connection(&state, &id).await?;
    let group = state
        .store
        .resource(&connection.id, Kind::Group, &group_id, Load::default())
        .await?
        .ok_or(ApiError::NotFound("group"))?;
    let count = state.store.member_count(&connection.id, &group_id).await?;
    Ok(Json(group_view(&connection.id, &group, Some(count))))
}

#[utoipa::path(
    get, path = "/v1/connections/{connection_id}/groups/{group_id}/members", tag = "directory",
    params(("connection_id" = String, Path), ("group_id" = String, Path), ("limit" = Option<u32>, Query, description = "1 to 100, default 100"), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = MemberList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("integration_key" = []))
)]
pub async fn list_members(
    State(state): State<Arc<AppState>>,
    Path((id, group_id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<MemberList>, ApiError> {
    let connection = connection(&state, &id).await?;
    let group = state
        .store
        .resource(
            &connection.id,
            Kind::Group,
            &group_id,
            Load {
                members: true,
                groups: false,
                deleted: false,
            },
        )
        .await?
        .ok_or(ApiError::NotFound("group"))?;
    let limit = limit(&query, 100)? as usize;
    let members = group.members.unwrap_or_default();
    // Members are ordered by when they were added; the cursor is the last member id seen.
    let start = match query.get("cursor") {
        None => 0,
        Some(after) => members
            .iter()
            .position(|m| &m.id == after)
            .map(|i| i + 1)
            .ok_or_else(|| {
                ApiError::InvalidFields(vec![FieldError::new(
                    "cursor",
                    "is not a member of this group (was it removed?)",
                )])
            })?,
    };
    let page: Vec<MemberView> = members
        .iter()
        .skip(start)
        .take(limit)
        .map(|m| MemberView {
            member_id: m.id.clone(),
            kind: m.kind.as_str().to_owned(),
            display: m.display.clone(),
        })
        .collect();
    let next_cursor = (start + page.len() < members.len())
        .then(|| page.last().map(|m| m.member_id.clone()))
        .flatten();
    Ok(Json(MemberList {
        members: page,
        next_cursor,
    }))
}

#[utoipa::path(
    post, path = "/v1/connections/{connection_id}/mapping-preview", tag = "directory",
    params(("connection_id" = String, Path)),
    request_body = PreviewRequest,
    responses((status = 200, description = "What the first users would look like, and the warnings across all users; nothing is saved", body = Preview), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("integration_key" = []))
)]
pub async fn preview(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Preview>, ApiError> {
    let request: PreviewRequest = parse_body(body, false)?;
    let connection = connection(&state, &id).await?;
    let mut errors = Vec::new();
    if let Some(mapping) = &request.custom_mapping {
        check_mapping(&state, mapping, &mut errors);
    }
    let shown = match request.limit {
        None => 20,
        Some(n) if (1..=100).contains(&n) => n as usize,
        Some(_) => {
            errors.push(FieldError::new("limit", "must be an integer from 1 to 100"));
            0
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::InvalidFields(errors));
    }
    let custom = request
        .custom_mapping
        .as_ref()
        .and_then(|m| validate(m, &state.view(Kind::User)).ok());
    let mapping = Mapping::effective(&connection.identity_provider, custom.as_ref());
    let mut viewer = Viewer::new(&state, &connection, mapping, true);
    let rs = state.view(Kind::User);
    let mut users = Vec::new();
    let mut summary = PreviewSummary {
        users: 0,
        warnings: BTreeMap::new(),
    };
    let mut cursor = None;
    loop {
        let list = ListQuery {
            filter: None,
            schemas: &rs,
            sort: None,
            start: PageStart::Cursor(cursor),
            count: 500,
            load: Load {
                members: false,
                groups: true,
                deleted: false,
            },
        };
        let page = state
            .store
            .list_resources(&connection.id, Kind::User, &list)
            .await?;
        for user in &page.resources {
            let view = viewer.view(user, false).await?;
            summary.users += 1;
            for warning in &view.warnings {
                *summary
                    .warnings
                    .entry(warning.field.clone())
                    .or_default()
                    .entry(warning.code.as_str().to_owned())
                    .or_default() += 1;
            }
            if users.len() < shown {
                users.push(view);
            }
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(Json(Preview { users, summary }))
}
