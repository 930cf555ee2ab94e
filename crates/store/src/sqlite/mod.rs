//! The embedded backend: one SQLite file in WAL mode with `synchronous=FULL`, so a write is on
//! disk before it is acknowledged. Writes go through a single connection (SQLite has one writer
//! at a time, and queueing in the pool beats lock retries); reads use a pool of their own.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool, Transaction};
use time::OffsetDateTime;

use crate::events::*;
use crate::model::*;
use crate::paging::{page_in_memory, total_from_page, Cursor};
use crate::plan::{fold, from_micros, kind_is, micros, Indexed, Plan};
use crate::{ListQuery, MappedSave, Page, PageStart, StaleUser, Store, StoreError, StoreResult};

mod checkpoint;
mod commit;
mod outbox;
mod setup;

use std::sync::Arc;

use checkpoint::{Checkpointer, RestartRequest};
use commit::GroupCommit;
use outbox::{connection_in, group_summaries, insert_events, push_events_insert};

use crate::reuse::ReusingPool;
use crate::statements::{
    emails_statements, push_emails_insert, push_resource_insert, EmailsOf, EVENTS_PER_STATEMENT,
};

/// Each reader holds its own page cache and prepared statements, and runs on a thread of its
/// own: more readers than a few cores can keep busy only add memory.
const READERS: u32 = 4;
/// How long a connection waits for a lock before SQLite reports the database busy.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// SQLite's default page size, which scimgate's databases keep.
const PAGE_BYTES: i64 = 4096;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    writer: SqlitePool,
    /// SCIM resource writes, batched into shared commits on `writer`.
    commits: GroupCommit,
    reader: ReusingPool<Sqlite>,
    events: Arc<dyn EventSource>,
    _checkpointer: Checkpointer,
}

/// How the SQLite store manages its files; `Default` is what [`SqliteStore::open`] uses.
#[derive(Debug, Clone, Copy)]
pub struct SqliteTuning {
    /// The WAL's length, in pages, past which the WAL is made to start over (see `checkpoint`).
    /// A start-over stalls the writer for one short checkpoint; 65,536 pages (256 MiB) makes it
    /// about one per 250 PATCHes of 100 members of a large group, and bounds the file.
    pub wal_restart_pages: u32,
}

impl Default for SqliteTuning {
    fn default() -> Self {
        SqliteTuning {
            wal_restart_pages: 65_536,
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://path`, `sqlite:path` or a
    /// bare file path) and runs the migrations.
    pub async fn open(url: &str, events: Arc<dyn EventSource>) -> StoreResult<SqliteStore> {
        SqliteStore::open_with(url, events, SqliteTuning::default()).await
    }

    /// [`SqliteStore::open`], tuned.
    pub async fn open_with(
        url: &str,
        events: Arc<dyn EventSource>,
        tuning: SqliteTuning,
    ) -> StoreResult<SqliteStore> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            // The checkpointer does it (see `checkpoint`).
            .pragma("wal_autocheckpoint", "0")
            // A write's savepoint journal would otherwise spill to a temporary file past 64 KiB,
            // which a 100-member PATCH passes: that is file writes on the commit path for nothing.
            .pragma("temp_store", "memory")
            // A WAL that started over keeps its file, so commits rewrite blocks it already has;
            // one that grew far past the limit (a reader held it back) is cut to twice the limit.
            .pragma(
                "journal_size_limit",
                (2 * i64::from(tuning.wal_restart_pages) * PAGE_BYTES).to_string(),
            );
        // A local file's connections do not go stale: the check sqlx makes on every acquire is
        // one more round trip to the connection's thread for nothing.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .test_before_acquire(false)
            .connect_with(options.clone().read_only(true))
            .await?;
        let restart = RestartRequest::default();
        let checkpointer = Checkpointer::start(
            &options,
            i64::from(tuning.wal_restart_pages),
            restart.clone(),
        )
        .await?;
        Ok(SqliteStore {
            _checkpointer: checkpointer,
            commits: GroupCommit::start(writer.clone(), restart),
            writer,
            reader: ReusingPool::new(reader, READERS as usize),
            events,
        })
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn opt_time(us: Option<i64>) -> Option<OffsetDateTime> {
    us.map(from_micros)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

const CONNECTION_COLUMNS: &str = "c.id, c.customer_id, c.display_name, c.identity_provider, \
    c.status, c.strict_members, c.custom_mapping, c.created_at, c.updated_at, c.mapping_generation, \
    (SELECT k.expires_at FROM scim_keys k WHERE k.connection_id = c.id AND k.replaced_at IS NULL \
     ORDER BY k.created_at DESC LIMIT 1) AS key_expires_at";

fn connection_from_row(row: &SqliteRow) -> StoreResult<Connection> {
    let status: String = row.try_get("status")?;
    let mapping: Option<String> = row.try_get("custom_mapping")?;
    Ok(Connection {
        id: row.try_get("id")?,
        customer_id: row.try_get("customer_id")?,
        display_name: row.try_get("display_name")?,
        identity_provider: row.try_get("identity_provider")?,
        status: status.parse().map_err(StoreError::Corrupt)?,
        strict_members: row.try_get::<i64, _>("strict_members")? != 0,
        custom_mapping: mapping
            .map(|m| serde_json::from_str(&m))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("custom_mapping: {e}")))?,
        scim_api_key_expires_at: opt_time(row.try_get("key_expires_at")?),
        created_at: from_micros(row.try_get("created_at")?),
        updated_at: from_micros(row.try_get("updated_at")?),
        mapping_generation: row.try_get("mapping_generation")?,
    })
}

macro_rules! resource_columns {
    () => {
        "seq, id, kind, version, created_at, last_modified, body, mapped, mapped_generation, deleted_at"
    };
}
const RESOURCE_COLUMNS: &str = resource_columns!();
/// With a user's groups as `[[id, displayName], …]`, read in the same statement: one round trip
/// per user read instead of two, and per page instead of one per user. The outer table must be
/// `resources`, unaliased.
const USER_COLUMNS: &str = concat!(
    resource_columns!(),
    ", (SELECT json_group_array(json_array(id, display)) FROM (SELECT g.id, json_extract(g.body, '$.displayName') AS display FROM memberships m JOIN resources g ON g.seq = m.group_seq WHERE m.connection_id = resources.connection_id AND m.member_id = resources.id ORDER BY g.seq)) AS groups_json"
);

/// The columns to read for `kind` with `load`.
fn columns_for(kind: Kind, load: Load) -> &'static str {
    if kind == Kind::User && load.groups {
        USER_COLUMNS
    } else {
        RESOURCE_COLUMNS
    }
}

/// The groups read by [`USER_COLUMNS`], if the row has them.
fn groups_from_row(row: &SqliteRow) -> StoreResult<Option<Vec<Member>>> {
    let text: Option<String> = match row.try_get("groups_json") {
        Ok(text) => text,
        Err(sqlx::Error::ColumnNotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    crate::groups_from_json(text.as_deref()).map(Some)
}

fn resource_from_row(row: &SqliteRow) -> StoreResult<(i64, StoredResource)> {
    let kind: String = row.try_get("kind")?;
    let body: String = row.try_get("body")?;
    let resource = StoredResource {
        id: row.try_get("id")?,
        kind: Kind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("kind '{kind}'")))?,
        version: row.try_get("version")?,
        created: from_micros(row.try_get("created_at")?),
        last_modified: from_micros(row.try_get("last_modified")?),
        body: serde_json::from_str(&body)
            .map_err(|e| StoreError::Corrupt(format!("resource body: {e}")))?,
        members: None,
        groups: groups_from_row(row)?,
        mapped: None,
        deleted_at: opt_time(row.try_get("deleted_at")?),
    };
    let mut resource = resource;
    let mapped: Option<String> = row.try_get("mapped")?;
    if let Some(text) = mapped {
        resource.mapped = Some(MappedRecord {
            generation: row.try_get("mapped_generation")?,
            value: serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("mapped: {e}")))?,
        });
    }
    Ok((row.try_get("seq")?, resource))
}

fn ids_of(rows: Vec<SqliteRow>) -> StoreResult<Vec<String>> {
    Ok(rows
        .iter()
        .map(|r| r.try_get("member_id"))
        .collect::<Result<_, _>>()?)
}

/// Whether the connection's mapping reads groups (see [`StoredMapping::reads_groups`]).
async fn mapping_reads_groups(
    conn: &mut sqlx::SqliteConnection,
    connection_id: &str,
) -> StoreResult<bool> {
    let flag: Option<bool> =
        sqlx::query_scalar("SELECT mapping_reads_groups FROM connections WHERE id = ?")
            .bind(connection_id)
            .fetch_optional(conn)
            .await?;
    Ok(flag.unwrap_or(false))
}

fn kind_of(text: &str) -> StoreResult<Kind> {
    Kind::parse(text).ok_or_else(|| StoreError::Corrupt(format!("member kind '{text}'")))
}

async fn load_members<'e, E>(exec: E, group_seq: i64) -> StoreResult<Vec<Member>>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    let rows = sqlx::query(
        "SELECT member_id, member_kind, display FROM memberships WHERE group_seq = ? ORDER BY rowid",
    )
    .bind(group_seq)
    .fetch_all(exec)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Member {
                id: r.try_get("member_id")?,
                kind: kind_of(&r.try_get::<String, _>("member_kind")?)?,
                display: r.try_get("display")?,
            })
        })
        .collect()
}

impl SqliteStore {
    async fn load_related(
        &self,
        seq: i64,
        resource: &mut StoredResource,
        load: Load,
    ) -> StoreResult<()> {
        if load.members && resource.kind == Kind::Group {
            resource.members = Some(load_members(&self.reader, seq).await?);
        }
        Ok(())
    }

    async fn write_resource_rows(
        tx: &mut Transaction<'_, Sqlite>,
        connection_id: &str,
        (kind, seq): (Kind, i64),
        write: &ResourceWrite,
        created: bool,
    ) -> StoreResult<MemberDelta> {
        for mut statement in
            emails_statements(connection_id, (kind, seq), &write.indexed.emails, created)
        {
            statement.build().execute(&mut **tx).await?;
        }
        let mut delta = MemberDelta::default();
        for run in MemberRun::of(&write.members) {
            match run {
                MemberRun::Add(members) => {
                    for chunk in members.chunks(1000) {
                        let mut qb: QueryBuilder<'_, Sqlite> = QueryBuilder::new(
                            "INSERT INTO memberships (group_seq, member_id, connection_id, member_kind, display) SELECT ",
                        );
                        qb.push_bind(seq)
                            .push(", v.column1, ")
                            .push_bind(connection_id.to_owned())
                            .push(", v.column2, v.column3 FROM (");
                        qb.push_values(chunk, |mut row, m| {
                            row.push_bind(m.id.clone())
                                .push_bind(m.kind.as_str())
                                .push_bind(m.display.clone());
                        });
                        // A member deleted since the ids were checked is not added.
                        qb.push(") AS v WHERE EXISTS (SELECT 1 FROM resources WHERE connection_id = ")
                            .push_bind(connection_id.to_owned())
                            .push(" AND id = v.column1 AND deleted_at IS NULL) ON CONFLICT (group_seq, member_id) DO NOTHING RETURNING member_id");
                        let done = ids_of(qb.build().fetch_all(&mut **tx).await?)?;
                        let done: std::collections::HashSet<&str> =
                            done.iter().map(String::as_str).collect();
                        let inserted: Vec<&Member> = chunk
                            .iter()
                            .copied()
                            .filter(|m| done.contains(m.id.as_str()))
                            .collect();
                        delta.inserted(&inserted);
                    }
                }
                MemberRun::Remove(ids) => {
                    for chunk in ids.chunks(1000) {
                        let mut qb: QueryBuilder<'_, Sqlite> =
                            QueryBuilder::new("DELETE FROM memberships WHERE group_seq = ");
                        qb.push_bind(seq).push(" AND member_id IN (");
                        let mut list = qb.separated(", ");
                        for id in chunk {
                            list.push_bind(id.to_string());
                        }
                        qb.push(") RETURNING member_id");
                        let done = ids_of(qb.build().fetch_all(&mut **tx).await?)?;
                        let done: std::collections::HashSet<&str> =
                            done.iter().map(String::as_str).collect();
                        // In the order asked for, so events follow the request.
                        let mut seen = std::collections::HashSet::new();
                        delta.deleted(
                            chunk
                                .iter()
                                .filter(|id| done.contains(*id) && seen.insert(**id))
                                .map(|id| id.to_string())
                                .collect(),
                        );
                    }
                }
                MemberRun::Clear => {
                    let rows = sqlx::query(
                        "DELETE FROM memberships WHERE group_seq = ? RETURNING member_id",
                    )
                    .bind(seq)
                    .fetch_all(&mut **tx)
                    .await?;
                    delta.deleted(ids_of(rows)?);
                }
            }
        }
        // Members that came or went have new `groups`, and if roles come from groups, a stale
        // mapped view.
        // One statement over the sorted ids, so concurrent writers lock rows in the same order.
        let mut touched: Vec<&String> = delta
            .added
            .iter()
            .map(|m| &m.id)
            .chain(&delta.removed)
            .collect();
        touched.sort_unstable();
        touched.dedup();
        if !touched.is_empty() {
            let reads_groups = mapping_reads_groups(tx, connection_id).await?;
            let mut qb: QueryBuilder<'_, Sqlite> =
                QueryBuilder::new(crate::touch_members_sql(reads_groups));
            // By id, whatever the planner's guess: without statistics it walked every user of
            // the connection instead, making each membership write O(directory).
            qb.push_bind(micros(now()))
                .push(" WHERE kind = 'User' AND seq IN (SELECT seq FROM resources INDEXED BY resources_id WHERE connection_id = ")
                .push_bind(connection_id.to_owned())
                .push(" AND id IN (");
            let mut ids = qb.separated(", ");
            for id in touched {
                ids.push_bind(id.clone());
            }
            qb.push("))");
            qb.build().execute(&mut **tx).await?;
        }
        Ok(delta)
    }

    /// A new user (one without members, as every SCIM user is), mapped with `connection` and
    /// described here, concurrently with other requests, not on the writer, as PostgreSQL's
    /// create does. A connection deleted meanwhile fails the insert on its foreign key.
    async fn insert_user(
        &self,
        connection: Option<Connection>,
        connection_id: &str,
        id: &str,
        mut write: ResourceWrite,
    ) -> StoreResult<WriteOutcome> {
        let at = from_micros(micros(now()));
        let (resource, new_events) =
            WriteContext::new_user(connection, &*self.events, id, at, &mut write);
        let connection_id = connection_id.to_owned();
        self.commits
            .write_atomic(move |conn| {
                Box::pin(async move {
                    insert_user_in(conn, &connection_id, write, resource, new_events).await
                })
            })
            .await
    }

    fn push_indexed(qb: &mut QueryBuilder<'_, Sqlite>, predicate: &Indexed) {
        match predicate {
            Indexed::Id(id) => {
                qb.push(" AND id = ").push_bind(id.clone());
            }
            Indexed::NameEq(name) => {
                qb.push(" AND name_lower = ").push_bind(name.clone());
            }
            Indexed::ExternalId(e) => {
                qb.push(" AND external_id = ").push_bind(e.clone());
            }
            Indexed::Email(e) => {
                qb.push(" AND seq IN (SELECT resource_seq FROM resource_emails WHERE connection_id = resources.connection_id AND value_lower = ")
                    .push_bind(e.clone())
                    .push(")");
            }
            Indexed::Active(a) => {
                qb.push(" AND active = ").push_bind(i64::from(*a));
            }
            Indexed::LastModified(op, us) => {
                let sql_op = match op {
                    scimgate_protocol::CompareOp::Gt => ">",
                    scimgate_protocol::CompareOp::Ge => ">=",
                    scimgate_protocol::CompareOp::Lt => "<",
                    scimgate_protocol::CompareOp::Le => "<=",
                    _ => "=",
                };
                qb.push(format!(" AND last_modified {sql_op} "))
                    .push_bind(*us);
            }
        }
    }

    fn base_query<'a>(
        connection_id: &str,
        kind: Kind,
        plan: &Plan,
        select: &str,
        include_deleted: bool,
    ) -> QueryBuilder<'a, Sqlite> {
        let mut qb = QueryBuilder::new(format!(
            "SELECT {select} FROM resources WHERE connection_id = "
        ));
        qb.push_bind(connection_id.to_owned())
            .push(" AND ")
            .push(kind_is(kind));
        if !include_deleted {
            qb.push(" AND deleted_at IS NULL");
        }
        for p in &plan.indexed {
            Self::push_indexed(&mut qb, p);
        }
        qb
    }
}

/// Reads what the write's mapped view and events need; `None` when the connection is gone.
async fn write_context(
    tx: &mut Transaction<'_, Sqlite>,
    connection_id: &str,
    kind: Kind,
    existing_user: Option<&str>,
) -> StoreResult<Option<WriteContext>> {
    let Some(connection) = connection_in(tx, connection_id).await? else {
        return Ok(None);
    };
    let groups = match (kind, existing_user) {
        (Kind::User, Some(id)) => group_summaries(tx, connection_id, id).await?,
        _ => Vec::new(),
    };
    Ok(Some(WriteContext { connection, groups }))
}

/// A new user (one without members, as every SCIM user is), mapped and described by its
/// caller, in one round trip to SQLite's thread: the row, its emails and its events go as one
/// batch of statements inside a savepoint of its own. Creates are the bulk of an initial sync,
/// and whatever a create does on the single writer, every other create waits for.
async fn insert_user_in(
    conn: &mut SqliteConnection,
    connection_id: &str,
    write: ResourceWrite,
    resource: StoredResource,
    new_events: Vec<NewEvent>,
) -> StoreResult<WriteOutcome> {
    let mut statements = QueryBuilder::new("SAVEPOINT create_user; ");
    push_resource_insert(&mut statements, connection_id, &write.indexed, &resource);
    if !write.indexed.emails.is_empty() {
        statements.push("; ");
        push_emails_insert(
            &mut statements,
            connection_id,
            EmailsOf::Id(&resource.id),
            &write.indexed.emails,
        );
    }
    for chunk in new_events.chunks(EVENTS_PER_STATEMENT) {
        statements.push("; ");
        push_events_insert(&mut statements, chunk, resource.created);
    }
    statements.push("; RELEASE create_user");
    if let Err(e) = statements.build().execute(&mut *conn).await {
        // Undo the statements that ran, so the batch goes on as if this write never came.
        sqlx::query("ROLLBACK TO create_user; RELEASE create_user")
            .execute(&mut *conn)
            .await?;
        return Err(if is_unique_violation(&e) {
            StoreError::UserNameTaken(write.indexed.name.clone().unwrap_or_default())
        } else {
            e.into()
        });
    }
    Ok(WriteOutcome {
        resource,
        members: MemberDelta::default(),
    })
}

async fn create_resource_in(
    mut tx: Transaction<'_, Sqlite>,
    events: &dyn EventSource,
    connection_id: &str,
    kind: Kind,
    id: &str,
    mut write: ResourceWrite,
) -> StoreResult<WriteOutcome> {
    let at = from_micros(micros(now()));
    let context = write_context(&mut tx, connection_id, kind, None).await?;
    let mut resource = StoredResource::created(id, kind, at, &mut write);
    if let Some(context) = &context {
        context.map(events, &mut resource);
    }
    let mut insert = QueryBuilder::new("");
    push_resource_insert(&mut insert, connection_id, &write.indexed, &resource);
    insert.push(" RETURNING seq");
    let inserted = insert.build().fetch_one(&mut *tx).await;
    let seq: i64 = match inserted {
        Err(e) if is_unique_violation(&e) => {
            return Err(StoreError::UserNameTaken(
                write.indexed.name.clone().unwrap_or_default(),
            ))
        }
        other => other?.try_get("seq")?,
    };
    let delta =
        SqliteStore::write_resource_rows(&mut tx, connection_id, (kind, seq), &write, true).await?;
    if kind == Kind::Group {
        resource.members = Some(load_members(&mut *tx, seq).await?);
    }
    if let Some(context) = &context {
        insert_events(&mut tx, context.events(events, None, &resource, &delta)).await?;
    }
    tx.commit().await?;
    Ok(WriteOutcome {
        resource,
        members: delta,
    })
}

async fn update_resource_in(
    mut tx: Transaction<'_, Sqlite>,
    events: &dyn EventSource,
    connection_id: &str,
    kind: Kind,
    id: &str,
    expected_version: Option<i64>,
    mut write: ResourceWrite,
) -> StoreResult<WriteOutcome> {
    let at = from_micros(micros(now()));

    let row = sqlx::query(&format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources WHERE connection_id = ? AND {} AND id = ? AND deleted_at IS NULL",
            kind_is(kind)
        ))
        .bind(connection_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else {
        return Err(StoreError::NotFound(kind.as_str()));
    };
    let (seq, current) = resource_from_row(&row)?;
    if let Some(expected) = expected_version {
        if expected != current.version {
            return Err(StoreError::VersionMismatch {
                expected,
                actual: current.version,
            });
        }
    }
    if write.is_unchanged(&current) {
        tx.rollback().await?;
        return Ok(WriteOutcome {
            resource: current,
            members: MemberDelta::default(),
        });
    }
    let context = write_context(&mut tx, connection_id, kind, Some(id)).await?;
    let mut resource = current.rewritten(std::mem::take(&mut write.body), write.mapped.take(), at);
    if let Some(context) = &context {
        context.map(events, &mut resource);
    }
    let updated = sqlx::query(
            "UPDATE resources SET name_lower = ?, external_id = ?, active = ?, version = version + 1, last_modified = ?, body = ?, mapped = ?, mapped_generation = ?, mapping_lease_until = NULL, mapping_epoch = mapping_epoch + 1 WHERE seq = ?",
        )
        .bind(write.indexed.name.as_deref().map(fold))
        .bind(&write.indexed.external_id)
        .bind(write.indexed.active.map(i64::from))
        .bind(micros(at))
        .bind(resource.body.to_string())
        .bind(resource.mapped.as_ref().map(|m| m.value.to_string()))
        .bind(resource.mapped.as_ref().map_or(0, |m| m.generation))
        .bind(seq)
        .execute(&mut *tx)
        .await;
    match updated {
        Err(e) if is_unique_violation(&e) => {
            return Err(StoreError::UserNameTaken(
                write.indexed.name.clone().unwrap_or_default(),
            ))
        }
        other => other?,
    };
    let delta =
        SqliteStore::write_resource_rows(&mut tx, connection_id, (kind, seq), &write, false)
            .await?;
    if delta.is_empty() && resource.body == current.body {
        // Member changes that changed nothing (adding members already there).
        tx.rollback().await?;
        return Ok(WriteOutcome {
            resource: current,
            members: delta,
        });
    }
    if let Some(context) = &context {
        insert_events(
            &mut tx,
            context.events(events, Some(&current), &resource, &delta),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(WriteOutcome {
        resource,
        members: delta,
    })
}

async fn delete_resource_in(
    mut tx: Transaction<'_, Sqlite>,
    events: &dyn EventSource,
    connection_id: &str,
    kind: Kind,
    id: &str,
    expected_version: Option<i64>,
) -> StoreResult<()> {
    let row = sqlx::query(&format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources WHERE connection_id = ? AND {} AND id = ? AND deleted_at IS NULL",
            kind_is(kind)
        ))
        .bind(connection_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else {
        return Err(StoreError::NotFound(kind.as_str()));
    };
    let (seq, before) = resource_from_row(&row)?;
    let version = before.version;
    let groups = match kind {
        Kind::User => group_summaries(&mut tx, connection_id, id).await?,
        Kind::Group => Vec::new(),
    };
    if let Some(connection) = connection_in(&mut tx, connection_id).await? {
        let events = events.events(Effect::ResourceDeleted {
            connection: &connection,
            resource: &before,
            groups: &groups,
        });
        insert_events(&mut tx, events).await?;
    }
    if let Some(expected) = expected_version {
        if expected != version {
            return Err(StoreError::VersionMismatch {
                expected,
                actual: version,
            });
        }
    }
    // The groups that listed it changed: a new version and lastModified for each.
    sqlx::query("UPDATE resources SET version = version + 1, last_modified = ? WHERE seq IN (SELECT group_seq FROM memberships WHERE connection_id = ? AND member_id = ?)")
            .bind(micros(now()))
            .bind(connection_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    sqlx::query("DELETE FROM memberships WHERE connection_id = ? AND member_id = ?")
        .bind(connection_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if kind == Kind::Group {
        // Reached from the memberships, by seq: matching `id IN (members)` let SQLite's planner
        // walk every user of the connection, a cost that grew with the directory.
        let reads_groups = mapping_reads_groups(&mut tx, connection_id).await?;
        sqlx::query(&format!(
            "{}? WHERE seq IN (SELECT r.seq FROM memberships m JOIN resources r ON r.connection_id = m.connection_id AND r.id = m.member_id WHERE m.group_seq = ? AND r.kind = 'User')",
            crate::touch_members_sql(reads_groups)
        ))
            .bind(micros(now()))
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM memberships WHERE group_seq = ?")
            .bind(seq)
            .execute(&mut *tx)
            .await?;
    }
    if kind == Kind::User {
        let at = micros(now());
        sqlx::query("DELETE FROM resource_emails WHERE resource_seq = ?")
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE resources SET deleted_at = ?, last_modified = ?, version = version + 1, mapped_generation = 0, mapping_epoch = mapping_epoch + 1, mapping_lease_until = NULL WHERE seq = ?")
                .bind(at)
                .bind(at)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
    } else {
        sqlx::query("DELETE FROM resources WHERE seq = ?")
            .bind(seq)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn create_connection(
        &self,
        new: NewConnection,
        key: NewScimKey,
    ) -> StoreResult<Connection> {
        let at = micros(now());
        let mut tx = self.writer.begin().await?;
        let mapping = new.custom_mapping.as_ref().map(|m| m.value.to_string());
        let reads_groups = new.custom_mapping.as_ref().is_some_and(|m| m.reads_groups);
        let inserted = sqlx::query(
            "INSERT INTO connections (id, customer_id, display_name, identity_provider, status, strict_members, custom_mapping, mapping_reads_groups, created_at, updated_at) \
             VALUES (?, ?, ?, ?, 'active', ?, ?, ?, ?, ?)",
        )
        .bind(&new.id)
        .bind(&new.customer_id)
        .bind(&new.display_name)
        .bind(&new.identity_provider)
        .bind(i64::from(new.strict_members))
        .bind(mapping)
        .bind(reads_groups)
        .bind(at)
        .bind(at)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::CustomerHasConnection(new.customer_id))
            }
            other => other?,
        };
        let expires = key.expires_at.map(micros);
        sqlx::query("INSERT INTO scim_keys (hash, connection_id, created_at, expires_at, valid_until) VALUES (?, ?, ?, ?, ?)")
            .bind(&key.hash)
            .bind(&new.id)
            .bind(at)
            .bind(expires)
            .bind(expires)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections c WHERE c.id = ?"
        ))
        .bind(&new.id)
        .fetch_one(&mut *tx)
        .await?;
        let connection = connection_from_row(&row)?;
        insert_events(
            &mut tx,
            self.events.events(Effect::ConnectionCreated(&connection)),
        )
        .await?;
        tx.commit().await?;
        Ok(connection)
    }

    async fn connection(&self, id: &str) -> StoreResult<Option<Connection>> {
        let row = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections c WHERE c.id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(connection_from_row).transpose()
    }

    async fn connection_by_customer(&self, customer_id: &str) -> StoreResult<Option<Connection>> {
        let row = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections c WHERE c.customer_id = ?"
        ))
        .bind(customer_id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(connection_from_row).transpose()
    }

    async fn list_connections(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Connection>> {
        let rows = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections c WHERE c.id > ? ORDER BY c.id LIMIT ?"
        ))
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(connection_from_row).collect()
    }

    async fn update_connection(
        &self,
        id: &str,
        update: ConnectionUpdate,
    ) -> StoreResult<Option<Connection>> {
        let mut tx = self.writer.begin().await?;
        let Some(before) = connection_in(&mut tx, id).await? else {
            return Ok(None);
        };
        let mut qb: QueryBuilder<'_, Sqlite> =
            QueryBuilder::new("UPDATE connections SET updated_at = ");
        qb.push_bind(micros(now()));
        // A new mapping or preset makes every stored mapped user stale.
        let remap = update.custom_mapping.is_some() || update.identity_provider.is_some();
        if let Some(name) = update.display_name {
            qb.push(", display_name = ").push_bind(name);
        }
        if let Some(idp) = update.identity_provider {
            qb.push(", identity_provider = ").push_bind(idp);
        }
        if let Some(status) = update.status {
            qb.push(", status = ").push_bind(status.as_str());
        }
        if let Some(strict) = update.strict_members {
            qb.push(", strict_members = ").push_bind(i64::from(strict));
        }
        if remap {
            qb.push(", mapping_generation = mapping_generation + 1");
        }
        if let Some(mapping) = update.custom_mapping {
            qb.push(", mapping_reads_groups = ")
                .push_bind(mapping.as_ref().is_some_and(|m| m.reads_groups));
            qb.push(", custom_mapping = ")
                .push_bind(mapping.map(|m| m.value.to_string()));
        }
        qb.push(" WHERE id = ").push_bind(id.to_owned());
        if qb.build().execute(&mut *tx).await?.rows_affected() == 0 {
            return Ok(None);
        }
        let row = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections c WHERE c.id = ?"
        ))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let connection = connection_from_row(&row)?;
        let events = self.events.events(Effect::ConnectionUpdated {
            before: &before,
            after: &connection,
        });
        insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(Some(connection))
    }

    async fn delete_connection(&self, id: &str) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await?;
        let Some(before) = connection_in(&mut tx, id).await? else {
            return Ok(false);
        };
        // Children first: the cascade from resources would otherwise walk memberships row by row.
        sqlx::query("DELETE FROM memberships WHERE connection_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM resource_emails WHERE connection_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM resources WHERE connection_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM connections WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        insert_events(
            &mut tx,
            self.events.events(Effect::ConnectionDeleted(&before)),
        )
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn count_connections(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM connections")
            .fetch_one(&self.reader)
            .await?;
        Ok(n as u64)
    }

    async fn replace_scim_key(
        &self,
        connection_id: &str,
        key: NewScimKey,
        previous_valid_until: OffsetDateTime,
    ) -> StoreResult<Option<Connection>> {
        let at = micros(now());
        let until = micros(previous_valid_until);
        let mut tx = self.writer.begin().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM connections WHERE id = ?")
            .bind(connection_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(None);
        }
        sqlx::query(
            "UPDATE scim_keys SET replaced_at = coalesce(replaced_at, ?), valid_until = min(coalesce(valid_until, ?), ?) \
             WHERE connection_id = ?",
        )
        .bind(at)
        .bind(until)
        .bind(until)
        .bind(connection_id)
        .execute(&mut *tx)
        .await?;
        let expires = key.expires_at.map(micros);
        sqlx::query("INSERT INTO scim_keys (hash, connection_id, created_at, expires_at, valid_until) VALUES (?, ?, ?, ?, ?)")
            .bind(&key.hash)
            .bind(connection_id)
            .bind(at)
            .bind(expires)
            .bind(expires)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE connections SET updated_at = ? WHERE id = ?")
            .bind(at)
            .bind(connection_id)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections c WHERE c.id = ?"
        ))
        .bind(connection_id)
        .fetch_one(&mut *tx)
        .await?;
        let connection = connection_from_row(&row)?;
        insert_events(
            &mut tx,
            self.events.events(Effect::ScimKeyReset(&connection)),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(connection))
    }

    async fn scim_key(&self, hash: &[u8]) -> StoreResult<Option<ScimKeyRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS}, k.valid_until AS key_valid_until, k.replaced_at AS key_replaced_at \
             FROM scim_keys k JOIN connections c ON c.id = k.connection_id WHERE k.hash = ?"
        ))
        .bind(hash)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|r| {
            Ok(ScimKeyRecord {
                connection: connection_from_row(&r)?,
                valid_until: opt_time(r.try_get("key_valid_until")?),
                replaced: r.try_get::<Option<i64>, _>("key_replaced_at")?.is_some(),
            })
        })
        .transpose()
    }

    async fn create_setup_link(&self, new: NewSetupLink) -> StoreResult<Option<SetupLink>> {
        self.insert_setup_link(new).await
    }

    async fn setup_link(&self, token_hash: &[u8]) -> StoreResult<Option<SetupLink>> {
        self.find_setup_link(token_hash).await
    }

    async fn setup_links(&self, connection_id: &str) -> StoreResult<Vec<SetupLink>> {
        self.list_setup_links(connection_id).await
    }

    async fn revoke_setup_link(&self, connection_id: &str, id: &str) -> StoreResult<bool> {
        self.end_setup_link(connection_id, id).await
    }

    async fn create_integration_key(&self, name: &str, hash: &[u8]) -> StoreResult<IntegrationKey> {
        let key = IntegrationKey {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_owned(),
            created_at: now(),
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO integration_keys (id, name, hash, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(hash)
        .bind(micros(key.created_at))
        .execute(&self.writer)
        .await?;
        Ok(key)
    }

    async fn integration_keys(&self) -> StoreResult<Vec<IntegrationKey>> {
        let rows = sqlx::query(
            "SELECT id, name, created_at, revoked_at FROM integration_keys ORDER BY created_at, id",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(IntegrationKey {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    created_at: from_micros(r.try_get("created_at")?),
                    revoked_at: opt_time(r.try_get("revoked_at")?),
                })
            })
            .collect()
    }

    async fn revoke_integration_key(&self, id: &str) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE integration_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        )
        .bind(micros(now()))
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn integration_key_is_valid(&self, hash: &[u8]) -> StoreResult<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM integration_keys WHERE hash = ? AND revoked_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(&self.reader)
        .await?;
        Ok(found.is_some())
    }

    async fn create_resource(
        &self,
        connection_id: &str,
        kind: Kind,
        id: &str,
        write: ResourceWrite,
    ) -> StoreResult<WriteOutcome> {
        if kind == Kind::User && write.members.is_empty() {
            let connection = self.connection(connection_id).await?;
            return self.insert_user(connection, connection_id, id, write).await;
        }
        let (connection_id, id) = (connection_id.to_owned(), id.to_owned());
        let events = self.events.clone();
        self.commits
            .write(move |tx| {
                Box::pin(async move {
                    create_resource_in(tx, &*events, &connection_id, kind, &id, write).await
                })
            })
            .await
    }

    async fn create_user(
        &self,
        connection: &Connection,
        id: &str,
        write: ResourceWrite,
    ) -> StoreResult<WriteOutcome> {
        if !write.members.is_empty() {
            return self
                .create_resource(&connection.id, Kind::User, id, write)
                .await;
        }
        self.insert_user(Some(connection.clone()), &connection.id, id, write)
            .await
    }

    async fn resource(
        &self,
        connection_id: &str,
        kind: Kind,
        id: &str,
        load: Load,
    ) -> StoreResult<Option<StoredResource>> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM resources WHERE connection_id = ? AND {} AND id = ?{}",
            columns_for(kind, load),
            kind_is(kind),
            if load.deleted {
                ""
            } else {
                " AND deleted_at IS NULL"
            }
        ))
        .bind(connection_id)
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let (seq, mut resource) = resource_from_row(&row)?;
        self.load_related(seq, &mut resource, load).await?;
        Ok(Some(resource))
    }

    async fn update_resource(
        &self,
        connection_id: &str,
        kind: Kind,
        id: &str,
        expected_version: Option<i64>,
        write: ResourceWrite,
    ) -> StoreResult<WriteOutcome> {
        let events = self.events.clone();
        let (connection_id, id) = (connection_id.to_owned(), id.to_owned());
        self.commits
            .write(move |tx| {
                Box::pin(async move {
                    update_resource_in(
                        tx,
                        &*events,
                        &connection_id,
                        kind,
                        &id,
                        expected_version,
                        write,
                    )
                    .await
                })
            })
            .await
    }

    async fn delete_resource(
        &self,
        connection_id: &str,
        kind: Kind,
        id: &str,
        expected_version: Option<i64>,
    ) -> StoreResult<()> {
        let events = self.events.clone();
        let (connection_id, id) = (connection_id.to_owned(), id.to_owned());
        self.commits
            .write(move |tx| {
                Box::pin(async move {
                    delete_resource_in(tx, &*events, &connection_id, kind, &id, expected_version)
                        .await
                })
            })
            .await
    }

    async fn list_resources(
        &self,
        connection_id: &str,
        kind: Kind,
        query: &ListQuery<'_>,
    ) -> StoreResult<Page> {
        let plan = Plan::for_filter(query.filter, kind, query.schemas);
        let needs_related =
            |name: &str| query.filter.is_some_and(|f| crate::plan::mentions(f, name));
        if plan.exact && query.sort.is_none() {
            let mut qb = Self::base_query(
                connection_id,
                kind,
                &plan,
                columns_for(kind, query.load),
                query.load.deleted,
            );
            let mut offset = 0u64;
            match &query.start {
                PageStart::Index(i) => offset = i.saturating_sub(1),
                PageStart::Cursor(None) => {}
                PageStart::Cursor(Some(text)) => match Cursor::parse(text)? {
                    Cursor::AfterSeq(seq) => {
                        qb.push(" AND seq > ").push_bind(seq);
                    }
                    Cursor::AfterOffset(_) => return Err(StoreError::InvalidCursor),
                },
            }
            qb.push(" ORDER BY seq LIMIT ")
                .push_bind(i64::try_from(query.count.saturating_add(1)).unwrap_or(i64::MAX))
                .push(" OFFSET ")
                .push_bind(i64::try_from(offset).unwrap_or(i64::MAX));
            let rows = qb.build().fetch_all(&self.reader).await?;
            let has_more = rows.len() as u64 > query.count;
            let total = match total_from_page(&query.start, offset, rows.len() as u64, query.count)
            {
                Some(total) => total,
                None => {
                    let total: i64 = Self::base_query(
                        connection_id,
                        kind,
                        &plan,
                        "count(*)",
                        query.load.deleted,
                    )
                    .build_query_scalar()
                    .fetch_one(&self.reader)
                    .await?;
                    total as u64
                }
            };
            let mut resources = Vec::with_capacity(rows.len());
            let mut last_seq = None;
            for row in rows.iter().take(query.count as usize) {
                let (seq, mut resource) = resource_from_row(row)?;
                self.load_related(seq, &mut resource, query.load).await?;
                last_seq = Some(seq);
                resources.push(resource);
            }
            let next_cursor = match (&query.start, has_more, last_seq) {
                (PageStart::Cursor(_), true, Some(seq)) => Some(Cursor::AfterSeq(seq).encode()),
                _ => None,
            };
            return Ok(Page {
                resources,
                total_results: total,
                next_cursor,
            });
        }
        let load = Load {
            members: query.load.members || needs_related("members"),
            groups: query.load.groups || needs_related("groups"),
            deleted: query.load.deleted,
        };
        let mut qb = Self::base_query(
            connection_id,
            kind,
            &plan,
            columns_for(kind, load),
            query.load.deleted,
        );
        qb.push(" ORDER BY seq");
        let rows = qb.build().fetch_all(&self.reader).await?;
        let mut candidates = Vec::with_capacity(rows.len());
        for row in &rows {
            let (seq, mut resource) = resource_from_row(row)?;
            self.load_related(seq, &mut resource, load).await?;
            candidates.push((seq, resource));
        }
        page_in_memory(candidates, query)
    }

    async fn existing_ids(
        &self,
        connection_id: &str,
        ids: &[String],
    ) -> StoreResult<HashMap<String, Kind>> {
        let mut found = HashMap::new();
        for chunk in ids.chunks(500) {
            let mut qb: QueryBuilder<'_, Sqlite> = QueryBuilder::new(
                "SELECT id, kind FROM resources WHERE deleted_at IS NULL AND connection_id = ",
            );
            qb.push_bind(connection_id.to_owned()).push(" AND id IN (");
            let mut sep = qb.separated(", ");
            for id in chunk {
                sep.push_bind(id.clone());
            }
            qb.push(")");
            for row in qb.build().fetch_all(&self.reader).await? {
                found.insert(
                    row.try_get("id")?,
                    kind_of(&row.try_get::<String, _>("kind")?)?,
                );
            }
        }
        Ok(found)
    }

    async fn count_resources(&self, kind: Kind) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM resources WHERE {} AND deleted_at IS NULL",
            kind_is(kind)
        ))
        .fetch_one(&self.reader)
        .await?;
        Ok(n as u64)
    }

    async fn claim_stale_users(
        &self,
        limit: u32,
        lease: std::time::Duration,
    ) -> StoreResult<Vec<StaleUser>> {
        let now = micros(now());
        let until = now + i64::try_from(lease.as_micros()).unwrap_or(i64::MAX / 2);
        // CROSS JOIN keeps connections outermost, so each one's pending users are read from the
        // index, and only as many as the batch takes.
        let rows = sqlx::query(&format!("UPDATE resources SET mapping_lease_until = ? WHERE seq IN (SELECT r.seq FROM connections c CROSS JOIN resources r INDEXED BY resources_mapping_pending ON r.connection_id = c.id AND r.kind = 'User' AND r.mapped_generation < c.mapping_generation AND r.deleted_at IS NULL WHERE (r.mapping_lease_until IS NULL OR r.mapping_lease_until < ?) LIMIT ?) RETURNING connection_id, mapping_epoch, {USER_COLUMNS}"))
            .bind(until)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.writer)
            .await?;
        let mut stale = Vec::with_capacity(rows.len());
        for row in &rows {
            let connection_id: String = row.try_get("connection_id")?;
            let epoch: i64 = row.try_get("mapping_epoch")?;
            let (_, resource) = resource_from_row(row)?;
            stale.push(StaleUser {
                connection_id,
                epoch,
                resource,
            });
        }
        Ok(stale)
    }

    async fn save_mapped(&self, saves: &[MappedSave]) -> StoreResult<()> {
        if saves.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        // SQLite allows 32766 bound parameters: 5 per save.
        for chunk in saves.chunks(1000) {
            let mut qb: QueryBuilder<'_, Sqlite> = QueryBuilder::new(
                "UPDATE resources SET mapped = v.column4, mapped_generation = v.column5, mapping_lease_until = NULL FROM (",
            );
            qb.push_values(chunk, |mut row, save| {
                row.push_bind(save.connection_id.clone())
                    .push_bind(save.user_id.clone())
                    .push_bind(save.epoch)
                    .push_bind(save.record.value.to_string())
                    .push_bind(save.record.generation);
            });
            qb.push(") AS v WHERE resources.connection_id = v.column1 AND resources.id = v.column2 AND resources.kind = 'User' AND resources.mapping_epoch = v.column3");
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn mark_group_members_stale(
        &self,
        connection_id: &str,
        group_id: &str,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE resources SET mapped_generation = 0, mapping_epoch = mapping_epoch + 1, mapping_lease_until = NULL \
                     WHERE seq IN (SELECT r.seq FROM resources g JOIN memberships m ON m.group_seq = g.seq JOIN resources r ON r.connection_id = m.connection_id AND r.id = m.member_id \
                     WHERE g.connection_id = ? AND g.kind = 'Group' AND g.id = ? AND r.kind = 'User') \
                     AND EXISTS (SELECT 1 FROM connections WHERE id = ? AND mapping_reads_groups)")
            .bind(connection_id)
            .bind(group_id)
            .bind(connection_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn mapping_progress(&self, connection_id: &str) -> StoreResult<(u64, u64)> {
        let row = sqlx::query("SELECT count(*) AS total, coalesce(sum(CASE WHEN r.mapped_generation >= c.mapping_generation THEN 1 ELSE 0 END), 0) AS current FROM resources r JOIN connections c ON c.id = r.connection_id WHERE r.connection_id = ? AND r.kind = 'User' AND r.deleted_at IS NULL")
            .bind(connection_id)
            .fetch_one(&self.reader)
            .await?;
        let total: i64 = row.try_get("total")?;
        let current: i64 = row.try_get("current")?;
        Ok((total as u64, current as u64))
    }

    async fn prune_deleted(&self, before: OffsetDateTime) -> StoreResult<u64> {
        let done =
            sqlx::query("DELETE FROM resources WHERE deleted_at IS NOT NULL AND deleted_at < ?")
                .bind(micros(before))
                .execute(&self.writer)
                .await?;
        Ok(done.rows_affected())
    }

    async fn member_count(&self, connection_id: &str, group_id: &str) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM memberships m JOIN resources g ON g.seq = m.group_seq \
             WHERE g.connection_id = ? AND g.kind = 'Group' AND g.id = ?",
        )
        .bind(connection_id)
        .bind(group_id)
        .fetch_one(&self.reader)
        .await?;
        Ok(n as u64)
    }

    async fn log_requests(
        &self,
        entries: &[(String, RequestLogEntry)],
        keep: u32,
    ) -> StoreResult<()> {
        let batches = crate::requests_by_connection(entries, keep)?;
        if batches.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        for batch in &batches {
            // The connection may have been deleted while its entries waited in the batch.
            sqlx::query(
                "INSERT INTO request_log (connection_id, entry) SELECT ?1, e.value FROM json_each(?2) AS e \
                 WHERE EXISTS (SELECT 1 FROM connections WHERE id = ?1) ORDER BY e.key",
            )
            .bind(batch.connection_id)
            .bind(format!("[{}]", batch.entries.join(",")))
            .execute(&mut *tx)
            .await?;
            sqlx::query(crate::TRIM_REQUEST_LOG)
                .bind(batch.connection_id)
                .bind((batch.received + keep as usize) as i64)
                .bind(i64::from(keep))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn sequence_events(&self) -> StoreResult<u64> {
        Ok(0)
    }

    async fn events(&self, query: &EventQuery) -> StoreResult<Vec<Event>> {
        self.read_events(query).await
    }

    async fn last_sequence(&self) -> StoreResult<i64> {
        self.max_sequence().await
    }

    async fn prune_events(&self, before: OffsetDateTime) -> StoreResult<u64> {
        self.prune_events_before(before).await
    }

    async fn warn_expiring_keys(&self, until: OffsetDateTime) -> StoreResult<u64> {
        self.warn_keys_expiring_before(until).await
    }

    async fn create_webhook_endpoint(
        &self,
        new: NewWebhookEndpoint,
    ) -> StoreResult<WebhookEndpoint> {
        self.insert_endpoint(new).await
    }

    async fn webhook_endpoint(&self, id: &str) -> StoreResult<Option<WebhookEndpoint>> {
        self.read_endpoint(id).await
    }

    async fn webhook_endpoints(&self) -> StoreResult<Vec<WebhookEndpoint>> {
        self.read_endpoints().await
    }

    async fn update_webhook_endpoint(
        &self,
        id: &str,
        update: WebhookEndpointUpdate,
    ) -> StoreResult<Option<WebhookEndpoint>> {
        self.change_endpoint(id, update).await
    }

    async fn delete_webhook_endpoint(&self, id: &str) -> StoreResult<bool> {
        self.remove_endpoint(id).await
    }

    async fn fan_out_events(&self, limit: u32) -> StoreResult<u64> {
        self.fan_out(limit).await
    }

    async fn claim_webhook_streams(
        &self,
        streams: u32,
        batch: u32,
        lease: Duration,
    ) -> StoreResult<Vec<ClaimedStream>> {
        self.claim_streams(streams, batch, lease).await
    }

    async fn complete_webhook_stream(&self, outcome: StreamOutcome) -> StoreResult<()> {
        self.complete_stream(outcome).await
    }

    async fn webhook_deliveries(
        &self,
        endpoint_id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        self.read_deliveries(endpoint_id, before, limit).await
    }

    async fn retry_webhook_delivery(
        &self,
        endpoint_id: &str,
        delivery_id: i64,
    ) -> StoreResult<Option<i64>> {
        self.retry_delivery(endpoint_id, delivery_id).await
    }

    async fn replay_webhook_events(&self, endpoint_id: &str, after: i64) -> StoreResult<u64> {
        self.replay(endpoint_id, after).await
    }

    async fn recent_requests(
        &self,
        connection_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<RequestLogEntry>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT entry FROM request_log WHERE connection_id = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(connection_id)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|(text,)| {
                serde_json::from_str(&text)
                    .map_err(|e| StoreError::Corrupt(format!("request log: {e}")))
            })
            .collect()
    }
}
