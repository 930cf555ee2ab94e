//! The backend for several instances behind one database: PostgreSQL with
//! `synchronous_commit` on (its default, asserted at start), a bounded pool and a statement
//! timeout, so a lost or slow database turns into fast `Unavailable` errors instead of hung
//! requests. Migrations take PostgreSQL's advisory lock, so instances starting together are safe.
//! Read-modify-write paths lock the row (`SELECT … FOR UPDATE`), so version checks hold across
//! instances; the userName index makes concurrent creates give one success and one conflict.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, QueryBuilder, Row, Transaction};
use time::OffsetDateTime;

use crate::events::*;
use crate::model::*;
use crate::paging::{page_in_memory, total_from_page, Cursor};
use crate::plan::{fold, from_micros, kind_is, micros, Indexed, Plan};
use crate::reuse::ReusingPool;
use crate::statements::{
    emails_statements, push_emails_insert, push_resource_insert, EmailsOf, EVENTS_PER_STATEMENT,
};
use crate::{ListQuery, MappedSave, Page, PageStart, StaleUser, Store, StoreError, StoreResult};

mod outbox;
pub use outbox::EVENTS_LOCK;
mod setup;
mod statistics;

use std::sync::Arc;

use outbox::{connection_in, group_summaries, insert_events, push_events_insert};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long one statement may run before PostgreSQL cancels it.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request waits for a pooled connection before the store reports `Unavailable`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
const POOL_SIZE: u32 = 16;

pub struct PgStore {
    /// For transactions.
    pool: PgPool,
    /// For statements of their own, outside any transaction.
    statements: ReusingPool<Postgres>,
    events: Arc<dyn EventSource>,
    _statistics: statistics::Statistics,
}

impl PgStore {
    /// Connects to `url` (`postgres://…`) and runs the migrations.
    pub async fn open(url: &str, events: Arc<dyn EventSource>) -> StoreResult<PgStore> {
        let options = PgConnectOptions::from_str(url)?.options([
            (
                "statement_timeout",
                STATEMENT_TIMEOUT.as_millis().to_string(),
            ),
            ("synchronous_commit", "on".to_owned()),
            // Every statement here is short. Estimates inflated by dead rows made PostgreSQL
            // compile some of them to machine code first: 0.5 s for a claim that finds nothing.
            ("jit", "off".to_owned()),
            // The statements are written for generic plans (the kind is a literal, ids are
            // bound as arrays, tables are analyzed as they grow). Left to choose, PostgreSQL
            // kept planning a lookup by name afresh on every run, because its LIMIT and OFFSET
            // are parameters: 0.15 ms of planning for 0.06 ms of execution.
            ("plan_cache_mode", "force_generic_plan".to_owned()),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&pool).await?;
        let autovacuum: String = sqlx::query_scalar("SELECT current_setting('autovacuum')")
            .fetch_one(&pool)
            .await?;
        if autovacuum != "on" {
            tracing::warn!(
                "PostgreSQL's autovacuum is off: every update leaves a dead row version that only \
                 VACUUM removes, and lookups slow down as they pile up; turn it on, or VACUUM \
                 the scimgate tables regularly"
            );
        }
        Ok(PgStore {
            _statistics: statistics::Statistics::start(options),
            // Half of the connections at most, so that transactions always find one.
            statements: ReusingPool::new(pool.clone(), POOL_SIZE as usize / 2),
            pool,
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

fn connection_from_row(row: &PgRow) -> StoreResult<Connection> {
    let status: String = row.try_get("status")?;
    let mapping: Option<String> = row.try_get("custom_mapping")?;
    Ok(Connection {
        id: row.try_get("id")?,
        customer_id: row.try_get("customer_id")?,
        display_name: row.try_get("display_name")?,
        identity_provider: row.try_get("identity_provider")?,
        status: status.parse().map_err(StoreError::Corrupt)?,
        strict_members: row.try_get("strict_members")?,
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
/// One resource by id. The kind is checked with a test no index serves, so the unique
/// `(connection_id, id)` index is the only way in: with `kind = $2`, the generic plan of the
/// prepared statement, costed from statistics taken while the table was small, scanned every
/// user of the connection instead (20 ms at 3,000 users, and growing with N).
const BY_ID: &str = "connection_id = $1 AND id = $3 AND kind IS NOT DISTINCT FROM $2";
/// Statements that reach users by id test the kind the same way, for the same reason: with
/// `kind = 'User'` the planner, without statistics, took `(connection_id, kind)` for the more
/// selective index and read every user of the connection to lock or touch 100 of them.
macro_rules! users_by_id {
    () => {
        "connection_id = $1 AND kind IS NOT DISTINCT FROM 'User' AND id"
    };
}
/// With a user's groups as `[[id, displayName], …]`, read in the same statement: one round trip
/// per user read instead of two, and per page instead of one per user. The outer table must be
/// `resources`, unaliased.
const USER_COLUMNS: &str = concat!(
    resource_columns!(),
    ", (SELECT coalesce(json_agg(json_build_array(g.id, g.body::jsonb ->> 'displayName') ORDER BY g.seq), '[]')::text FROM memberships m JOIN resources g ON g.seq = m.group_seq WHERE m.connection_id = resources.connection_id AND m.member_id = resources.id) AS groups_json"
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
fn groups_from_row(row: &PgRow) -> StoreResult<Option<Vec<Member>>> {
    let text: Option<String> = match row.try_get("groups_json") {
        Ok(text) => text,
        Err(sqlx::Error::ColumnNotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    crate::groups_from_json(text.as_deref()).map(Some)
}

fn resource_from_row(row: &PgRow) -> StoreResult<(i64, StoredResource)> {
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

/// How a write takes the connection's membership lock.
#[derive(Clone, Copy)]
enum MembershipLock {
    /// Group writes. They lock their group's row, then every member they touch in one sorted
    /// statement (see `lock_members`), so any number of them can run together without
    /// deadlocking.
    Shared,
    /// Deletes, and mapping changes. A user's delete removes its memberships before it can
    /// lock the user, so a group write adding that user must not run beside it: the membership
    /// would outlive the user. A mapping change must not run beside a group write that has read
    /// the old mapping's `mapping_reads_groups`.
    Exclusive,
}

async fn lock_memberships(
    tx: &mut Transaction<'_, Postgres>,
    connection_id: &str,
    mode: MembershipLock,
) -> StoreResult<()> {
    let sql = match mode {
        MembershipLock::Shared => {
            "SELECT pg_advisory_xact_lock_shared(hashtextextended('memberships:' || $1, 0))"
        }
        MembershipLock::Exclusive => {
            "SELECT pg_advisory_xact_lock(hashtextextended('memberships:' || $1, 0))"
        }
    };
    sqlx::query(sql)
        .bind(connection_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Locks the live users among `ids` and the live groups among `added_groups`, in id order,
/// before a group write changes its members, and returns their ids. Users are locked for the
/// update that gives them a new version; taken here, in one sorted statement, two group writes
/// sharing members meet them in the same order (locking them while adding and again while
/// touching them upgraded a share lock, which deadlocked). Member groups only need to exist
/// until the commit: `FOR KEY SHARE` does not conflict with the lock a write of that group
/// holds, so groups nesting each other cannot deadlock either.
async fn lock_members(
    tx: &mut Transaction<'_, Postgres>,
    connection_id: &str,
    ids: &[&str],
    added_groups: &[&str],
) -> StoreResult<std::collections::HashSet<String>> {
    let mut live: std::collections::HashSet<String> = sqlx::query_scalar(concat!(
        "SELECT id FROM resources WHERE ",
        users_by_id!(),
        " = ANY($2) AND deleted_at IS NULL ORDER BY id FOR NO KEY UPDATE"
    ))
    .bind(connection_id)
    .bind(ids)
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .collect();
    // Only a group being added must still exist at the commit; most writes add none, and skip
    // the statement.
    if !added_groups.is_empty() {
        let groups: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM resources WHERE connection_id = $1 AND kind IS NOT DISTINCT FROM 'Group' AND id = ANY($2) ORDER BY id FOR KEY SHARE",
        )
        .bind(connection_id)
        .bind(added_groups)
        .fetch_all(&mut **tx)
        .await?;
        live.extend(groups);
    }
    Ok(live)
}

fn ids_of(rows: Vec<PgRow>) -> StoreResult<Vec<String>> {
    Ok(rows
        .iter()
        .map(|r| r.try_get("member_id"))
        .collect::<Result<_, _>>()?)
}

/// Whether the connection's mapping reads groups (see [`StoredMapping::reads_groups`]). Only
/// writes holding the connection's membership lock ask, and a mapping change takes that lock
/// alone: it waits for this write to commit, so the recompute it starts sees this write's
/// memberships. (A share lock on the connection's row did the same, but every group write
/// taking it made the row's lockers a new multixact each time.)
async fn mapping_reads_groups(
    conn: &mut sqlx::PgConnection,
    connection_id: &str,
) -> StoreResult<bool> {
    let flag: Option<bool> =
        sqlx::query_scalar("SELECT mapping_reads_groups FROM connections WHERE id = $1")
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
    E: sqlx::Executor<'e, Database = Postgres>,
{
    let rows = sqlx::query(
        "SELECT member_id, member_kind, display FROM memberships WHERE group_seq = $1 ORDER BY position",
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

impl PgStore {
    /// A new user (one without members, as every SCIM user is), mapped with `connection`, in
    /// one round trip instead of eight: one statement inserts the row, its emails and its
    /// events, and PostgreSQL commits it on its own, atomically and durably before it answers.
    /// Creates are the bulk of an initial sync, and each round trip costs both processes CPU.
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
        let mut statement = QueryBuilder::new("WITH created AS (");
        push_resource_insert(&mut statement, connection_id, &write.indexed, &resource);
        statement.push(" RETURNING seq)");
        if !write.indexed.emails.is_empty() {
            statement.push(", emails AS (");
            push_emails_insert(
                &mut statement,
                connection_id,
                EmailsOf::Created,
                &write.indexed.emails,
            );
            statement.push(")");
        }
        for (i, chunk) in new_events.chunks(EVENTS_PER_STATEMENT).enumerate() {
            statement.push(format!(", events_{i} AS ("));
            push_events_insert(&mut statement, chunk, at);
            statement.push(")");
        }
        statement.push(" SELECT seq FROM created");
        match statement.build().fetch_one(&self.statements).await {
            Err(e) if is_unique_violation(&e) => Err(StoreError::UserNameTaken(
                write.indexed.name.clone().unwrap_or_default(),
            )),
            Err(e) => Err(e.into()),
            Ok(_) => Ok(WriteOutcome {
                resource,
                members: MemberDelta::default(),
            }),
        }
    }

    /// Reads what the write's mapped view and events need; `None` when the connection is gone.
    async fn write_context(
        tx: &mut Transaction<'_, Postgres>,
        connection_id: &str,
        kind: Kind,
        existing_user: Option<&str>,
    ) -> StoreResult<Option<WriteContext>> {
        let Some(connection) = connection_in(&mut **tx, connection_id).await? else {
            return Ok(None);
        };
        let groups = match (kind, existing_user) {
            (Kind::User, Some(id)) => group_summaries(tx, connection_id, id).await?,
            _ => Vec::new(),
        };
        Ok(Some(WriteContext { connection, groups }))
    }

    async fn load_related(
        &self,
        seq: i64,
        resource: &mut StoredResource,
        load: Load,
    ) -> StoreResult<()> {
        if load.members && resource.kind == Kind::Group {
            resource.members = Some(load_members(&self.statements, seq).await?);
        }
        Ok(())
    }

    async fn write_resource_rows(
        tx: &mut Transaction<'_, Postgres>,
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
        let runs = MemberRun::of(&write.members);
        if runs.is_empty() {
            return Ok(delta);
        }
        let mut ids: Vec<&str> = Vec::new();
        let current: Vec<String>;
        if runs.iter().any(|run| matches!(run, MemberRun::Clear)) {
            // The group's row is locked, so its members cannot change under us.
            current = sqlx::query_scalar("SELECT member_id FROM memberships WHERE group_seq = $1")
                .bind(seq)
                .fetch_all(&mut **tx)
                .await?;
            ids.extend(current.iter().map(String::as_str));
        }
        for run in &runs {
            match run {
                MemberRun::Add(members) => ids.extend(members.iter().map(|m| m.id.as_str())),
                MemberRun::Remove(removed) => ids.extend(removed.iter().copied()),
                MemberRun::Clear => {}
            }
        }
        ids.sort_unstable();
        ids.dedup();
        let added_groups: Vec<&str> = runs
            .iter()
            .filter_map(|run| match run {
                MemberRun::Add(members) => Some(members),
                _ => None,
            })
            .flatten()
            .filter(|m| m.kind == Kind::Group)
            .map(|m| m.id.as_str())
            .collect();
        let live = lock_members(tx, connection_id, &ids, &added_groups).await?;
        for run in runs {
            match run {
                MemberRun::Add(members) => {
                    let members: Vec<&Member> = members
                        .into_iter()
                        .filter(|m| live.contains(&m.id))
                        .collect();
                    let ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
                    let kinds: Vec<&str> = members.iter().map(|m| m.kind.as_str()).collect();
                    let displays: Vec<Option<&str>> =
                        members.iter().map(|m| m.display.as_deref()).collect();
                    let rows = sqlx::query(
                        "INSERT INTO memberships (group_seq, member_id, connection_id, member_kind, display) \
                         SELECT $1, v.id, $2, v.kind, v.display FROM UNNEST($3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS v(id, kind, display, n) \
                         ORDER BY v.n \
                         ON CONFLICT (group_seq, member_id) DO NOTHING RETURNING member_id",
                    )
                    .bind(seq)
                    .bind(connection_id)
                    .bind(&ids)
                    .bind(&kinds)
                    .bind(&displays)
                    .fetch_all(&mut **tx)
                    .await?;
                    let done = ids_of(rows)?;
                    let done: std::collections::HashSet<&str> =
                        done.iter().map(String::as_str).collect();
                    let inserted: Vec<&Member> = members
                        .iter()
                        .copied()
                        .filter(|m| done.contains(m.id.as_str()))
                        .collect();
                    delta.inserted(&inserted);
                }
                MemberRun::Remove(ids) => {
                    let rows = sqlx::query(
                        "DELETE FROM memberships WHERE group_seq = $1 AND member_id = ANY($2) RETURNING member_id",
                    )
                    .bind(seq)
                    .bind(&ids)
                    .fetch_all(&mut **tx)
                    .await?;
                    let done = ids_of(rows)?;
                    let done: std::collections::HashSet<&str> =
                        done.iter().map(String::as_str).collect();
                    // In the order asked for, so events follow the request.
                    let mut seen = std::collections::HashSet::new();
                    delta.deleted(
                        ids.iter()
                            .filter(|id| done.contains(*id) && seen.insert(**id))
                            .map(|id| id.to_string())
                            .collect(),
                    );
                }
                MemberRun::Clear => {
                    let rows = sqlx::query(
                        "DELETE FROM memberships WHERE group_seq = $1 RETURNING member_id",
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
            // `lock_members` holds every one of them already: an UPDATE locks rows in whatever
            // order its plan meets them.
            let ids: Vec<String> = touched.iter().map(|id| (*id).clone()).collect();
            sqlx::query(&format!(
                "{}$3 WHERE {} = ANY($2)",
                crate::touch_members_sql(reads_groups),
                users_by_id!()
            ))
            .bind(connection_id)
            .bind(&ids)
            .bind(micros(now()))
            .execute(&mut **tx)
            .await?;
        }
        Ok(delta)
    }

    fn push_indexed(qb: &mut QueryBuilder<'_, Postgres>, predicate: &Indexed) {
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
                qb.push(" AND active = ").push_bind(*a);
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
    ) -> QueryBuilder<'a, Postgres> {
        Self::filtered(
            format!("SELECT {select} FROM resources WHERE connection_id = "),
            connection_id,
            kind,
            plan,
            include_deleted,
        )
    }

    /// `head`, which ends where the connection id goes, followed by the filter's conditions.
    fn filtered<'a>(
        head: String,
        connection_id: &str,
        kind: Kind,
        plan: &Plan,
        include_deleted: bool,
    ) -> QueryBuilder<'a, Postgres> {
        let mut qb = QueryBuilder::new(head);
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

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.statements).await?;
        Ok(())
    }

    async fn create_connection(
        &self,
        new: NewConnection,
        key: NewScimKey,
    ) -> StoreResult<Connection> {
        let at = micros(now());
        let mut tx = self.pool.begin().await?;
        let mapping = new.custom_mapping.as_ref().map(|m| m.value.to_string());
        let reads_groups = new.custom_mapping.as_ref().is_some_and(|m| m.reads_groups);
        let inserted = sqlx::query(
            "INSERT INTO connections (id, customer_id, display_name, identity_provider, status, strict_members, custom_mapping, mapping_reads_groups, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $8, $9)",
        )
        .bind(&new.id)
        .bind(&new.customer_id)
        .bind(&new.display_name)
        .bind(&new.identity_provider)
        .bind(new.strict_members)
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
        sqlx::query("INSERT INTO scim_keys (hash, connection_id, created_at, expires_at, valid_until) VALUES ($1, $2, $3, $4, $5)")
            .bind(&key.hash)
            .bind(&new.id)
            .bind(at)
            .bind(expires)
            .bind(expires)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections c WHERE c.id = $1"
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
            "SELECT {CONNECTION_COLUMNS} FROM connections c WHERE c.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.statements)
        .await?;
        row.as_ref().map(connection_from_row).transpose()
    }

    async fn connection_by_customer(&self, customer_id: &str) -> StoreResult<Option<Connection>> {
        let row = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections c WHERE c.customer_id = $1"
        ))
        .bind(customer_id)
        .fetch_optional(&self.statements)
        .await?;
        row.as_ref().map(connection_from_row).transpose()
    }

    async fn list_connections(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Connection>> {
        let rows = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections c WHERE c.id > $1 ORDER BY c.id LIMIT $2"
        ))
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.statements)
        .await?;
        rows.iter().map(connection_from_row).collect()
    }

    async fn update_connection(
        &self,
        id: &str,
        update: ConnectionUpdate,
    ) -> StoreResult<Option<Connection>> {
        let mut tx = self.pool.begin().await?;
        if update.custom_mapping.is_some() {
            // Whether the mapping reads groups decides how group writes touch their members:
            // none may be half-way through while it changes (see `mapping_reads_groups`).
            lock_memberships(&mut tx, id, MembershipLock::Exclusive).await?;
        }
        // Locked first, so `before` is what this update changes.
        sqlx::query("SELECT 1 FROM connections WHERE id = $1 FOR UPDATE")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let Some(before) = connection_in(&mut *tx, id).await? else {
            return Ok(None);
        };
        let mut qb: QueryBuilder<'_, Postgres> =
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
            qb.push(", strict_members = ").push_bind(strict);
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
            "SELECT {CONNECTION_COLUMNS} FROM connections c WHERE c.id = $1"
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
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT 1 FROM connections WHERE id = $1 FOR UPDATE")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let Some(before) = connection_in(&mut *tx, id).await? else {
            return Ok(false);
        };
        // Children first: the cascade from resources would otherwise walk memberships row by row.
        sqlx::query("DELETE FROM memberships WHERE connection_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM resource_emails WHERE connection_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM resources WHERE connection_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM connections WHERE id = $1")
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
            .fetch_one(&self.statements)
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
        let mut tx = self.pool.begin().await?;
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM connections WHERE id = $1")
            .bind(connection_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(None);
        }
        sqlx::query(
            "UPDATE scim_keys SET replaced_at = COALESCE(replaced_at, $1), valid_until = LEAST(COALESCE(valid_until, $2), $3) \
             WHERE connection_id = $4",
        )
        .bind(at)
        .bind(until)
        .bind(until)
        .bind(connection_id)
        .execute(&mut *tx)
        .await?;
        let expires = key.expires_at.map(micros);
        sqlx::query("INSERT INTO scim_keys (hash, connection_id, created_at, expires_at, valid_until) VALUES ($1, $2, $3, $4, $5)")
            .bind(&key.hash)
            .bind(connection_id)
            .bind(at)
            .bind(expires)
            .bind(expires)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE connections SET updated_at = $1 WHERE id = $2")
            .bind(at)
            .bind(connection_id)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections c WHERE c.id = $1"
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
             FROM scim_keys k JOIN connections c ON c.id = k.connection_id WHERE k.hash = $1"
        ))
        .bind(hash)
        .fetch_optional(&self.statements)
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
            "INSERT INTO integration_keys (id, name, hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(hash)
        .bind(micros(key.created_at))
        .execute(&self.statements)
        .await?;
        Ok(key)
    }

    async fn integration_keys(&self) -> StoreResult<Vec<IntegrationKey>> {
        let rows = sqlx::query(
            "SELECT id, name, created_at, revoked_at FROM integration_keys ORDER BY created_at, id",
        )
        .fetch_all(&self.statements)
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
            "UPDATE integration_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(micros(now()))
        .bind(id)
        .execute(&self.statements)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn integration_key_is_valid(&self, hash: &[u8]) -> StoreResult<bool> {
        let found: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM integration_keys WHERE hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(&self.statements)
        .await?;
        Ok(found.is_some())
    }

    async fn create_resource(
        &self,
        connection_id: &str,
        kind: Kind,
        id: &str,
        mut write: ResourceWrite,
    ) -> StoreResult<WriteOutcome> {
        if kind == Kind::User && write.members.is_empty() {
            let connection = connection_in(&self.statements, connection_id).await?;
            return self.insert_user(connection, connection_id, id, write).await;
        }
        let at = from_micros(micros(now()));
        let mut tx = self.pool.begin().await?;
        if kind == Kind::Group && !write.members.is_empty() {
            lock_memberships(&mut tx, connection_id, MembershipLock::Shared).await?;
        }
        let context = Self::write_context(&mut tx, connection_id, kind, None).await?;
        let mut resource = StoredResource::created(id, kind, at, &mut write);
        if let Some(context) = &context {
            context.map(&*self.events, &mut resource);
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
            Self::write_resource_rows(&mut tx, connection_id, (kind, seq), &write, true).await?;
        if kind == Kind::Group {
            resource.members = Some(load_members(&mut *tx, seq).await?);
        }
        if let Some(context) = &context {
            insert_events(
                &mut tx,
                context.events(&*self.events, None, &resource, &delta),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(WriteOutcome {
            resource,
            members: delta,
        })
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
            "SELECT {} FROM resources WHERE {BY_ID}{}",
            columns_for(kind, load),
            if load.deleted {
                ""
            } else {
                " AND deleted_at IS NULL"
            }
        ))
        .bind(connection_id)
        .bind(kind.as_str())
        .bind(id)
        .fetch_optional(&self.statements)
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
        mut write: ResourceWrite,
    ) -> StoreResult<WriteOutcome> {
        let at = from_micros(micros(now()));
        let mut tx = self.pool.begin().await?;
        if kind == Kind::Group {
            lock_memberships(&mut tx, connection_id, MembershipLock::Shared).await?;
        }
        let row = sqlx::query(&format!(
            // Not `FOR UPDATE`: that would conflict with the key-share lock of a group
            // write that is adding this group as a member (see `lock_members`).
            "SELECT {RESOURCE_COLUMNS} FROM resources WHERE {BY_ID} AND deleted_at IS NULL FOR NO KEY UPDATE"
        ))
        .bind(connection_id)
        .bind(kind.as_str())
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
        let context = Self::write_context(&mut tx, connection_id, kind, Some(id)).await?;
        let mut resource =
            current.rewritten(std::mem::take(&mut write.body), write.mapped.take(), at);
        if let Some(context) = &context {
            context.map(&*self.events, &mut resource);
        }
        let updated = sqlx::query(
            "UPDATE resources SET name_lower = $1, external_id = $2, active = $3, version = version + 1, last_modified = $4, body = $5, mapped = $6, mapped_generation = $7, mapping_lease_until = NULL, mapping_epoch = mapping_epoch + 1 WHERE seq = $8",
        )
        .bind(write.indexed.name.as_deref().map(fold))
        .bind(&write.indexed.external_id)
        .bind(write.indexed.active)
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
            Self::write_resource_rows(&mut tx, connection_id, (kind, seq), &write, false).await?;
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
                context.events(&*self.events, Some(&current), &resource, &delta),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(WriteOutcome {
            resource,
            members: delta,
        })
    }

    async fn delete_resource(
        &self,
        connection_id: &str,
        kind: Kind,
        id: &str,
        expected_version: Option<i64>,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        lock_memberships(&mut tx, connection_id, MembershipLock::Exclusive).await?;
        if kind == Kind::User {
            // Groups before their members, the order group writes take them in.
            sqlx::query(
                "SELECT 1 FROM resources g JOIN memberships m ON m.group_seq = g.seq \
                 WHERE m.connection_id = $1 AND m.member_id = $2 ORDER BY g.id FOR UPDATE OF g",
            )
            .bind(connection_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        let row = sqlx::query(&format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources WHERE {BY_ID} AND deleted_at IS NULL FOR UPDATE"
        ))
        .bind(connection_id)
        .bind(kind.as_str())
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
        let events = match connection_in(&mut *tx, connection_id).await? {
            Some(connection) => self.events.events(Effect::ResourceDeleted {
                connection: &connection,
                resource: &before,
                groups: &groups,
            }),
            None => Vec::new(),
        };
        if let Some(expected) = expected_version {
            if expected != version {
                return Err(StoreError::VersionMismatch {
                    expected,
                    actual: version,
                });
            }
        }
        // The groups that listed it changed: a new version and lastModified for each.
        sqlx::query("UPDATE resources SET version = version + 1, last_modified = $1 WHERE seq IN (SELECT group_seq FROM memberships WHERE connection_id = $2 AND member_id = $3)")
            .bind(micros(now()))
            .bind(connection_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM memberships WHERE connection_id = $1 AND member_id = $2")
            .bind(connection_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if kind == Kind::Group {
            // A deleted group's members, locked in id order like every group write locks them.
            sqlx::query(concat!("SELECT 1 FROM resources WHERE ", users_by_id!(), " IN (SELECT member_id FROM memberships WHERE group_seq = $2) ORDER BY id FOR UPDATE"))
                .bind(connection_id)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
            let reads_groups = mapping_reads_groups(&mut tx, connection_id).await?;
            sqlx::query(&format!(
                "{}$3 WHERE {} IN (SELECT member_id FROM memberships WHERE group_seq = $2)",
                crate::touch_members_sql(reads_groups),
                users_by_id!()
            ))
            .bind(connection_id)
            .bind(seq)
            .bind(micros(now()))
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM memberships WHERE group_seq = $1")
                .bind(seq)
                .execute(&mut *tx)
                .await?;
        }
        if kind == Kind::User {
            let at = micros(now());
            sqlx::query("DELETE FROM resource_emails WHERE resource_seq = $1")
                .bind(seq)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE resources SET deleted_at = $1, last_modified = $2, version = version + 1, mapped_generation = 0, mapping_epoch = mapping_epoch + 1, mapping_lease_until = NULL WHERE seq = $3")
                .bind(at)
                .bind(at)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query("DELETE FROM resources WHERE seq = $1")
                .bind(seq)
                .execute(&mut *tx)
                .await?;
        }
        insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(())
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
            let offset = match &query.start {
                PageStart::Index(i) => i.saturating_sub(1),
                PageStart::Cursor(_) => 0,
            };
            let columns = columns_for(kind, query.load);
            // PostgreSQL computes the columns of the rows an OFFSET skips, a user's groups
            // included: page 30 of a walk read 3,000 users' groups to return 100. The page's
            // rows are picked first, by seq alone, and only they are read in full. The seqs
            // come as an array, so the rows are read by primary key whatever the statistics
            // say: as `seq IN (…)`, a generic plan costed with a stale correlation merged the
            // page's seqs with every row before them (page 600 of 1,000: 150 ms, not 40).
            let mut qb = if offset > 0 {
                Self::filtered(
                    format!("SELECT {columns} FROM resources WHERE seq = ANY(ARRAY(SELECT seq FROM resources WHERE connection_id = "),
                    connection_id,
                    kind,
                    &plan,
                    query.load.deleted,
                )
            } else {
                Self::base_query(connection_id, kind, &plan, columns, query.load.deleted)
            };
            match &query.start {
                PageStart::Index(_) | PageStart::Cursor(None) => {}
                PageStart::Cursor(Some(text)) => match Cursor::parse(text)? {
                    Cursor::AfterSeq(seq) => {
                        qb.push(" AND seq > ").push_bind(seq);
                    }
                    Cursor::AfterOffset(_) => return Err(StoreError::InvalidCursor),
                },
            }
            // A lookup by an equality on an indexed attribute matches a handful of rows: sort
            // them (`seq + 0` serves from no index). Ordering by `seq` itself let the generic
            // plan, costed from stale statistics, walk the seq-ordered index of every user of
            // the connection and filter it, which grows with N.
            let pinpoint = plan.indexed.iter().any(|p| {
                matches!(
                    p,
                    Indexed::Id(_)
                        | Indexed::NameEq(_)
                        | Indexed::ExternalId(_)
                        | Indexed::Email(_)
                )
            });
            qb.push(if pinpoint {
                " ORDER BY seq + 0 LIMIT "
            } else {
                " ORDER BY seq LIMIT "
            })
            .push_bind(i64::try_from(query.count.saturating_add(1)).unwrap_or(i64::MAX))
            .push(" OFFSET ")
            .push_bind(i64::try_from(offset).unwrap_or(i64::MAX));
            if offset > 0 {
                qb.push(")) ORDER BY seq");
            }
            let rows = qb.build().fetch_all(&self.statements).await?;
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
                    .fetch_one(&self.statements)
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
        let rows = qb.build().fetch_all(&self.statements).await?;
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
            let rows = sqlx::query(
                "SELECT id, kind FROM resources WHERE connection_id = $1 AND id = ANY($2) AND deleted_at IS NULL",
            )
            .bind(connection_id)
            .bind(chunk)
            .fetch_all(&self.statements)
            .await?;
            for row in rows {
                found.insert(
                    row.try_get("id")?,
                    kind_of(&row.try_get::<String, _>("kind")?)?,
                );
            }
        }
        Ok(found)
    }

    async fn count_resources(&self, kind: Kind) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM resources WHERE kind = $1 AND deleted_at IS NULL",
        )
        .bind(kind.as_str())
        .fetch_one(&self.statements)
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
        // Per connection, the pending users in index order: a join on the generation let the
        // planner read every user of the table for each poll (0.7 s at 100,000). The claimed rows
        // are then reached by seq alone.
        let rows = sqlx::query(&format!("UPDATE resources SET mapping_lease_until = $1 WHERE seq = ANY(ARRAY(\
            SELECT p.seq FROM connections c CROSS JOIN LATERAL (\
                SELECT r.seq FROM resources r WHERE r.mapped_generation < c.mapping_generation AND r.connection_id = c.id \
                AND r.kind = 'User' AND r.deleted_at IS NULL AND (r.mapping_lease_until IS NULL OR r.mapping_lease_until < $2) \
                ORDER BY r.mapped_generation LIMIT $3 FOR UPDATE OF r SKIP LOCKED) p \
            LIMIT $3)) RETURNING connection_id, mapping_epoch, {USER_COLUMNS}"))
            .bind(until)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.statements)
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
        let column = |f: fn(&MappedSave) -> String| saves.iter().map(f).collect::<Vec<_>>();
        let connection_ids = column(|s| s.connection_id.clone());
        let user_ids = column(|s| s.user_id.clone());
        let epochs: Vec<i64> = saves.iter().map(|s| s.epoch).collect();
        let generations: Vec<i64> = saves.iter().map(|s| s.record.generation).collect();
        let mut tx = self.pool.begin().await?;
        // Rows locked in id order, as membership writes lock them, so the two cannot deadlock.
        sqlx::query("SELECT 1 FROM resources WHERE (connection_id, id) IN (SELECT * FROM UNNEST($1::text[], $2::text[])) AND kind IS NOT DISTINCT FROM 'User' ORDER BY connection_id, id FOR UPDATE")
            .bind(&connection_ids)
            .bind(&user_ids)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE resources r SET mapped = v.mapped, mapped_generation = v.generation, mapping_lease_until = NULL \
                     FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[]) AS v(connection_id, id, epoch, mapped, generation) \
                     WHERE r.connection_id = v.connection_id AND r.id = v.id AND r.kind IS NOT DISTINCT FROM 'User' AND r.mapping_epoch = v.epoch")
            .bind(&connection_ids)
            .bind(&user_ids)
            .bind(epochs)
            .bind(column(|s| s.record.value.to_string()))
            .bind(generations)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn mark_group_members_stale(
        &self,
        connection_id: &str,
        group_id: &str,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE resources SET mapped_generation = 0, mapping_epoch = mapping_epoch + 1, mapping_lease_until = NULL WHERE connection_id = $1 AND kind IS NOT DISTINCT FROM 'User' AND id IN (SELECT m.member_id FROM memberships m JOIN resources g ON g.seq = m.group_seq WHERE g.connection_id = $2 AND g.id = $3 AND g.kind IS NOT DISTINCT FROM 'Group') AND EXISTS (SELECT 1 FROM connections WHERE id = $1 AND mapping_reads_groups)")
            .bind(connection_id)
            .bind(connection_id)
            .bind(group_id)
            .execute(&self.statements)
            .await?;
        Ok(())
    }

    async fn mapping_progress(&self, connection_id: &str) -> StoreResult<(u64, u64)> {
        let row = sqlx::query("SELECT count(*) AS total, coalesce(sum(CASE WHEN r.mapped_generation >= c.mapping_generation THEN 1 ELSE 0 END), 0)::BIGINT AS current FROM resources r JOIN connections c ON c.id = r.connection_id WHERE r.connection_id = $1 AND r.kind = 'User' AND r.deleted_at IS NULL")
            .bind(connection_id)
            .fetch_one(&self.statements)
            .await?;
        let total: i64 = row.try_get("total")?;
        let current: i64 = row.try_get("current")?;
        Ok((total as u64, current as u64))
    }

    async fn prune_deleted(&self, before: OffsetDateTime) -> StoreResult<u64> {
        let done =
            sqlx::query("DELETE FROM resources WHERE deleted_at IS NOT NULL AND deleted_at < $1")
                .bind(micros(before))
                .execute(&self.statements)
                .await?;
        Ok(done.rows_affected())
    }

    async fn member_count(&self, connection_id: &str, group_id: &str) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM memberships m JOIN resources g ON g.seq = m.group_seq \
             WHERE g.connection_id = $1 AND g.id = $2 AND g.kind IS NOT DISTINCT FROM 'Group'",
        )
        .bind(connection_id)
        .bind(group_id)
        .fetch_one(&self.statements)
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
        let mut tx = self.pool.begin().await?;
        for batch in &batches {
            // The connection may have been deleted while its entries waited in the batch.
            sqlx::query(
                "INSERT INTO request_log (connection_id, entry) SELECT $1, e.entry FROM UNNEST($2::text[]) WITH ORDINALITY AS e(entry, n) \
                 WHERE EXISTS (SELECT 1 FROM connections WHERE id = $1) ORDER BY e.n",
            )
            .bind(batch.connection_id)
            .bind(&batch.entries)
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
        self.sequence_committed().await
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
            "SELECT entry FROM request_log WHERE connection_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(connection_id)
        .bind(i64::from(limit))
        .fetch_all(&self.statements)
        .await?;
        rows.into_iter()
            .map(|(text,)| {
                serde_json::from_str(&text)
                    .map_err(|e| StoreError::Corrupt(format!("request log: {e}")))
            })
            .collect()
    }
}
