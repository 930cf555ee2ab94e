//! Statements both backends write alike, built for either database's query builder.

use sqlx::{Database, Encode, QueryBuilder, Type};
use time::OffsetDateTime;

use crate::events::{new_event_id, NewEvent};
use crate::model::{IndexedFields, StoredResource};
use crate::plan::{fold, micros};

/// The most events one statement inserts: a group change can emit thousands of member events,
/// and they go in a few statements, not one each.
pub(crate) const EVENTS_PER_STATEMENT: usize = 1000;

/// Appends the `INSERT` of a new resource's row to `qb`.
pub(crate) fn push_resource_insert<'a, DB>(
    qb: &mut QueryBuilder<'a, DB>,
    connection_id: &str,
    indexed: &IndexedFields,
    resource: &StoredResource,
) where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
    Option<String>: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    Option<bool>: Encode<'a, DB> + Type<DB>,
{
    qb.push(
        "INSERT INTO resources (connection_id, kind, id, name_lower, external_id, active, version, created_at, last_modified, body, mapped, mapped_generation) VALUES (",
    );
    let mut values = qb.separated(", ");
    values
        .push_bind(connection_id.to_owned())
        .push_bind(resource.kind.as_str().to_owned())
        .push_bind(resource.id.clone())
        .push_bind(indexed.name.as_deref().map(fold))
        .push_bind(indexed.external_id.clone())
        .push_bind(indexed.active)
        .push_bind(resource.version)
        .push_bind(micros(resource.created))
        .push_bind(micros(resource.last_modified))
        .push_bind(resource.body.to_string())
        .push_bind(resource.mapped.as_ref().map(|m| m.value.to_string()))
        .push_bind(resource.mapped.as_ref().map_or(0, |m| m.generation));
    qb.push(")");
}

/// Appends one `INSERT` of `events` (at most [`EVENTS_PER_STATEMENT`]) to `qb`.
pub(crate) fn push_events_insert<'a, DB>(
    qb: &mut QueryBuilder<'a, DB>,
    events: &[NewEvent],
    at: OffsetDateTime,
) where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
    Option<String>: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let at = micros(at);
    qb.push(
        "INSERT INTO events (id, event_type, connection_id, customer_id, occurred_at, data, changes) ",
    );
    qb.push_values(events, |mut row, event| {
        row.push_bind(new_event_id())
            .push_bind(event.event_type.clone())
            .push_bind(event.connection_id.clone())
            .push_bind(event.customer_id.clone())
            .push_bind(at)
            .push_bind(event.data.to_string())
            .push_bind(event.changes.to_string());
    });
}
