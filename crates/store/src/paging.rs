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
/// The total of a page read in index order, when the page itself tells it: it ends the results
/// and starts where the results do (or holds some of them). A filtered lookup, the hottest
/// request an IdP makes, then costs one statement instead of two.
pub fn total_from_page(start: &PageStart, offset: u64, fetched: u64, count: u64) -> Option<u64> {
    let from_start = match start {
        PageStart::Index(_) | PageStart::Cursor(None) => true,
        PageStart::Cursor(Some(_)) => false,
    };
    (from_start && fetched <= count && (fetched > 0 || offset == 0)).then_some(offset + fetched)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_tells_its_total_only_when_it_ends_the_results() {
        let first = PageStart::Index(1);
        assert_eq!(total_from_page(&first, 0, 1, 100), Some(1));
        assert_eq!(total_from_page(&first, 0, 0, 100), Some(0));
        assert_eq!(total_from_page(&first, 0, 101, 100), None, "more follow");
        assert_eq!(total_from_page(&PageStart::Index(51), 50, 7, 100), Some(57));
        assert_eq!(
            total_from_page(&PageStart::Index(51), 50, 0, 100),
            None,
            "past the end: the results may be fewer than 50"
        );
        assert_eq!(
            total_from_page(&PageStart::Cursor(None), 0, 3, 100),
            Some(3)
        );
        assert_eq!(
            total_from_page(&PageStart::Cursor(Some("c".into())), 0, 3, 100),
            None,
            "a cursor page does not start at the first result"
        );
        assert_eq!(
            total_from_page(&first, 0, 1, 0),
            None,
            "count=0 fetches one to know"
        );
    }
}
