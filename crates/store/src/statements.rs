//! Statements both backends write alike, built for either database's query builder.

use sqlx::{Database, Encode, QueryBuilder, Type};
use time::OffsetDateTime;

use crate::events::{new_event_id, NewEvent};
use crate::model::{IndexedFields, Kind, StoredResource};
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

/// The columns an event insert names, in the order [`push_event_values`] binds them.
pub(crate) const EVENT_INSERT_COLUMNS: &str =
    "id, event_type, connection_id, customer_id, occurred_at, data, changes";

/// Appends the `VALUES` list of `events`, in [`EVENT_INSERT_COLUMNS`] order.
pub(crate) fn push_event_values<'a, DB>(
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

/// Which resource an `INSERT` of emails is for.
pub(crate) enum EmailsOf<'a> {
    /// A stored resource.
    Seq(i64),
    /// The resource with this id, inserted by an earlier statement of the same batch (SQLite,
    /// where each statement sees the ones before it).
    Id(&'a str),
    /// The resource the `created` clause of the same statement inserts (PostgreSQL, where the
    /// clauses of one `WITH` do not see each other's rows, only their `RETURNING`).
    Created,
}

/// Appends one `INSERT` of a user's emails, folded, to `qb` (there must be at least one).
pub(crate) fn push_emails_insert<'a, DB>(
    qb: &mut QueryBuilder<'a, DB>,
    connection_id: &str,
    of: EmailsOf<'_>,
    emails: &[String],
) where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    qb.push("INSERT INTO resource_emails (resource_seq, connection_id, value_lower) SELECT ");
    let from_created = matches!(of, EmailsOf::Created);
    match of {
        EmailsOf::Seq(seq) => {
            qb.push_bind(seq);
        }
        EmailsOf::Id(id) => {
            qb.push("(SELECT seq FROM resources WHERE connection_id = ")
                .push_bind(connection_id.to_owned())
                .push(" AND id = ")
                .push_bind(id.to_owned())
                .push(")");
        }
        EmailsOf::Created => {
            qb.push("created.seq");
        }
    }
    qb.push(", ")
        .push_bind(connection_id.to_owned())
        .push(", v.column1 FROM ");
    if from_created {
        qb.push("created, ");
    }
    qb.push("(VALUES ");
    let mut rows = qb.separated(", ");
    for email in emails {
        rows.push("(")
            .push_bind_unseparated(fold(email))
            .push_unseparated(")");
    }
    qb.push(") AS v");
}

/// The statements that write a stored resource's indexed emails: a user's update first drops
/// the ones it had (only users have emails, so a group's update has none to drop), then
/// `emails` go in one statement.
pub(crate) fn emails_statements<'a, DB>(
    connection_id: &str,
    (kind, seq): (Kind, i64),
    emails: &[String],
    created: bool,
) -> Vec<QueryBuilder<'a, DB>>
where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut statements = Vec::with_capacity(2);
    if !created && kind == Kind::User {
        let mut delete = QueryBuilder::new("DELETE FROM resource_emails WHERE resource_seq = ");
        delete.push_bind(seq);
        statements.push(delete);
    }
    if !emails.is_empty() {
        let mut insert = QueryBuilder::new("");
        push_emails_insert(&mut insert, connection_id, EmailsOf::Seq(seq), emails);
        statements.push(insert);
    }
    statements
}
