//! Query and `.search` parameters, and the ListResponse they produce.

use std::collections::HashMap;

use scimgate_protocol::messages::{split_attribute_list, ListResponse, SearchRequest};
use scimgate_protocol::{AttrPath, Filter, Projection, ResourceSchemas, ScimError};
use scimgate_store::{Kind, ListQuery, Load, PageStart};
use serde_json::Value;

use super::render::to_scim;
use super::response::ScimResult;
use super::ScimContext;
use crate::app::{AppState, DEFAULT_PAGE_SIZE, MAX_RESULTS};

/// The list parameters of RFC 7644 §3.4.2 and RFC 9865, from a query string or a SearchRequest.
#[derive(Debug, Default)]
pub struct ListParams {
    pub filter: Option<String>,
    pub start_index: Option<i64>,
    pub count: Option<i64>,
    pub sort_by: Option<String>,
    pub sort_order: Option<String>,
    pub attributes: Vec<String>,
    pub excluded: Vec<String>,
    pub cursor: Option<String>,
}

fn integer(name: &str, value: &str) -> Result<i64, ScimError> {
    value.trim().parse().map_err(|_| {
        ScimError::invalid_value(format!("'{name}' must be an integer, got '{value}'"))
    })
}

impl ListParams {
    /// Parameter names are matched case-insensitively; unknown ones (such as Entra's
    /// `aadOptscim062020` flag) are ignored.
    pub fn from_query(query: &HashMap<String, String>) -> Result<ListParams, ScimError> {
        let mut params = ListParams::default();
        for (key, value) in query {
            match key.to_ascii_lowercase().as_str() {
                "filter" => params.filter = Some(value.clone()),
                "startindex" => params.start_index = Some(integer("startIndex", value)?),
                "count" => params.count = Some(integer("count", value)?),
                "sortby" => params.sort_by = Some(value.clone()),
                "sortorder" => params.sort_order = Some(value.clone()),
                "attributes" => params.attributes = split_attribute_list(value),
                "excludedattributes" => params.excluded = split_attribute_list(value),
                "cursor" => params.cursor = Some(value.clone()),
                _ => {}
            }
        }
        Ok(params)
    }

    pub fn from_search(body: SearchRequest) -> ListParams {
        ListParams {
            filter: body.filter,
            start_index: body.start_index,
            count: body.count,
            sort_by: body.sort_by,
            sort_order: body.sort_order,
            attributes: body.attributes.unwrap_or_default(),
            excluded: body.excluded_attributes.unwrap_or_default(),
            cursor: body.cursor,
        }
    }

    pub fn projection(&self, rs: &ResourceSchemas<'_>) -> Result<Projection, ScimError> {
        Projection::from_lists(&self.attributes, &self.excluded, rs)
    }

    /// RFC 7644 §3.4.2.4: a `startIndex` below 1 means 1, a negative `count` means 0, and
    /// `count` is capped at the advertised maximum.
    fn count(&self) -> u64 {
        self.count
            .map_or(DEFAULT_PAGE_SIZE, |c| c.clamp(0, MAX_RESULTS as i64) as u64)
    }

    fn start(&self) -> PageStart {
        match &self.cursor {
            Some(c) if c.is_empty() => PageStart::Cursor(None),
            Some(c) => PageStart::Cursor(Some(c.clone())),
            None => PageStart::Index(self.start_index.unwrap_or(1).max(1) as u64),
        }
    }

    fn sort(&self, rs: &ResourceSchemas<'_>) -> Result<Option<(AttrPath, bool)>, ScimError> {
        let descending = match self
            .sort_order
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("ascending") => false,
            Some("descending") => true,
            Some(other) => {
                return Err(ScimError::invalid_value(format!(
                    "sortOrder must be 'ascending' or 'descending', got '{other}'"
                )))
            }
        };
        let Some(by) = &self.sort_by else {
            return Ok(None);
        };
        let path = AttrPath::parse(by).map_err(|(at, m)| {
            ScimError::invalid_path(format!("sortBy '{by}' at byte {at}: {m}"))
        })?;
        if rs.resolve(&path).is_none() {
            return Err(ScimError::invalid_path(format!(
                "sortBy names no attribute: '{by}'"
            )));
        }
        Ok(Some((path, descending)))
    }
}

/// One kind's page, rendered and projected.
pub struct RenderedPage {
    pub resources: Vec<Value>,
    pub total_results: u64,
    pub next_cursor: Option<String>,
}

pub async fn page(
    state: &AppState,
    ctx: &ScimContext,
    kind: Kind,
    params: &ListParams,
    start: PageStart,
    count: u64,
) -> ScimResult<RenderedPage> {
    let rs = state.view(kind);
    let filter = match &params.filter {
        Some(text) if !text.trim().is_empty() => {
            let f = Filter::parse(text).map_err(ScimError::from)?;
            f.validate(&rs)?;
            Some(f)
        }
        _ => None,
    };
    let projection = params.projection(&rs)?;
    let load = Load {
        members: kind == Kind::Group && projection.includes_core("members", &rs),
        groups: kind == Kind::User && projection.includes_core("groups", &rs),
        deleted: false,
    };
    let query = ListQuery {
        filter: filter.as_ref(),
        schemas: &rs,
        sort: params.sort(&rs)?,
        start,
        count,
        load,
    };
    let page = state
        .store
        .list_resources(&ctx.connection.id, kind, &query)
        .await?;
    let resources = page
        .resources
        .iter()
        .map(|r| projection.apply(&to_scim(r, &ctx.base_url), &rs))
        .collect();
    Ok(RenderedPage {
        resources,
        total_results: page.total_results,
        next_cursor: page.next_cursor,
    })
}

pub async fn list(
    state: &AppState,
    ctx: &ScimContext,
    kind: Kind,
    params: &ListParams,
) -> ScimResult<ListResponse> {
    let start = params.start();
    let page = page(state, ctx, kind, params, start.clone(), params.count()).await?;
    Ok(list_response(page, &start))
}

/// The page as a ListResponse, serialized straight into the response body: a page of 100
/// users is not worth copying into one more JSON tree first.
pub fn list_response(page: RenderedPage, start: &PageStart) -> ListResponse {
    let start_index = match start {
        PageStart::Index(i) => Some(*i),
        PageStart::Cursor(_) => None,
    };
    let mut response = ListResponse::new(page.resources, page.total_results, start_index);
    response.next_cursor = page.next_cursor;
    response
}

/// `POST /.search` at the root: users first, then groups, paged as one list.
pub async fn search_all(
    state: &AppState,
    ctx: &ScimContext,
    params: &ListParams,
) -> ScimResult<ListResponse> {
    if params.cursor.is_some() {
        return Err(ScimError::invalid_value(
            "cursor pagination is available per resource type, not at the root",
        )
        .into());
    }
    let start = params.start_index.unwrap_or(1).max(1) as u64;
    let count = params.count();
    let users = page(
        state,
        ctx,
        Kind::User,
        params,
        PageStart::Index(start),
        count,
    )
    .await?;
    let taken = users.resources.len() as u64;
    let group_start = start.saturating_sub(users.total_results).max(1);
    let groups = page(
        state,
        ctx,
        Kind::Group,
        params,
        PageStart::Index(group_start),
        count - taken,
    )
    .await?;
    let mut resources = users.resources;
    resources.extend(groups.resources);
    let total = users.total_results + groups.total_results;
    Ok(list_response(
        RenderedPage {
            resources,
            total_results: total,
            next_cursor: None,
        },
        &PageStart::Index(start),
    ))
}
