//! Filtering, sorting and paging in memory, for the lists an index cannot answer alone.
//! Both backends share it, so a filter gives the same page whichever database holds the data.

use scimgate_protocol::projection::sort_order;

use crate::model::StoredResource;
use crate::plan::evaluation_view;
use crate::{ListQuery, Page, PageStart, StoreError, StoreResult};

/// A position in a list: after the resource with this `seq` (unsorted lists), or after this
/// many results (lists sorted by an attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    AfterSeq(i64),
    AfterOffset(u64),
}

impl Cursor {
    pub fn parse(text: &str) -> StoreResult<Cursor> {
        let (tag, number) = text.split_at_checked(1).ok_or(StoreError::InvalidCursor)?;
        match tag {
            "s" => number
                .parse()
                .map(Cursor::AfterSeq)
                .map_err(|_| StoreError::InvalidCursor),
            "o" => number
                .parse()
                .map(Cursor::AfterOffset)
                .map_err(|_| StoreError::InvalidCursor),
            _ => Err(StoreError::InvalidCursor),
        }
    }

    pub fn encode(self) -> String {
        match self {
            Cursor::AfterSeq(seq) => format!("s{seq}"),
            Cursor::AfterOffset(n) => format!("o{n}"),
        }
    }
}

/// Filters `candidates` (in `seq` order) with the query's full filter, sorts them if asked,
/// and cuts the requested page.
pub fn page_in_memory(
    candidates: Vec<(i64, StoredResource)>,
    query: &ListQuery<'_>,
) -> StoreResult<Page> {
    let mut matched: Vec<(i64, StoredResource)> = match query.filter {
        Some(filter) => candidates
            .into_iter()
            .filter(|(_, r)| filter.matches(&evaluation_view(r), query.schemas))
            .collect(),
        None => candidates,
    };
    let total_results = matched.len() as u64;
    if let Some((by, descending)) = &query.sort {
        let views: Vec<serde_json::Value> =
            matched.iter().map(|(_, r)| evaluation_view(r)).collect();
        let order = sort_order(&views, by, *descending, query.schemas);
        let mut slots: Vec<Option<(i64, StoredResource)>> = matched.into_iter().map(Some).collect();
        matched = order
            .into_iter()
            .filter_map(|i| slots.get_mut(i).and_then(Option::take))
            .collect();
    }
    let count = query.count as usize;
    let (skip, by_offset) = match &query.start {
        PageStart::Index(i) => (i.saturating_sub(1) as usize, true),
        PageStart::Cursor(None) => (0, query.sort.is_some()),
        PageStart::Cursor(Some(text)) => match Cursor::parse(text)? {
            Cursor::AfterOffset(n) if query.sort.is_some() => (n as usize, true),
            Cursor::AfterSeq(seq) if query.sort.is_none() => {
                (matched.partition_point(|(s, _)| *s <= seq), false)
            }
            _ => return Err(StoreError::InvalidCursor),
        },
    };
    let has_more = matched.len() > skip.saturating_add(count);
    let page: Vec<(i64, StoredResource)> = matched.into_iter().skip(skip).take(count).collect();
    let next_cursor = match (&query.start, has_more, page.last()) {
        (PageStart::Cursor(_), true, Some((seq, _))) => Some(if by_offset {
            Cursor::AfterOffset((skip + page.len()) as u64).encode()
        } else {
            Cursor::AfterSeq(*seq).encode()
        }),
        _ => None,
    };
    Ok(Page {
        resources: page.into_iter().map(|(_, r)| r).collect(),
        total_results,
        next_cursor,
    })
}
