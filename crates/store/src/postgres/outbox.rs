//! The outbox and webhook queues on PostgreSQL. Writers commit concurrently and an event takes
//! its sequence when it is inserted, so sequences are not in commit order: a reader must not
//! see `n + 1` before `n` has committed. Every event insert therefore holds [`EVENTS_LOCK`]
//! shared until its transaction ends, and [`PgStore::sequence_committed`] takes it alone for an
//! instant: every sequence handed out before that instant belongs to a finished transaction, so
//! it publishes them (`event_sequencer.last`), and readers read only what is published.
//! Queue changes lock the rows they read (`FOR UPDATE`, `SKIP LOCKED` for claims) so several
//! instances can dispatch from one database.

use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row, Transaction};
use time::OffsetDateTime;

use super::{connection_from_row, now, opt_time, PgStore, CONNECTION_COLUMNS};
use crate::events::*;
use crate::model::Connection;
use crate::plan::{from_micros, micros};
use crate::statements::{push_event_values, EVENTS_PER_STATEMENT, EVENT_INSERT_COLUMNS};
use crate::{StoreError, StoreResult};

/// The advisory lock key that serializes fan-outs ("scimgate fan-out").
const FAN_OUT_LOCK: i64 = 0x5c16_a7e0_fa40;

/// The advisory lock key every event insert holds shared, and the sequencer alone ("scimgate
/// events").
pub const EVENTS_LOCK: i64 = 0x5c16_a7e0_e7e0;

/// How long the sequencer waits for the writers inserting events to finish. They hold the lock
/// only from their last statement to their commit; a longer wait means one is stuck, and
/// writers queued behind the sequencer would wait with it, so it gives up and tries next round.
const SEQUENCER_WAIT: &str = "200ms";

/// PostgreSQL's `lock_not_available`, what a lock wait past `lock_timeout` fails with.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// The last published sequence: how far readers may read. Nothing above it is read, even where
/// it is already committed (see [`PgStore::sequence_committed`]).
macro_rules! published {
    () => {
        "(SELECT last FROM event_sequencer WHERE id = 1)"
    };
}

type Tx<'a> = Transaction<'a, Postgres>;

pub(super) async fn connection_in<'e, E>(exec: E, id: &str) -> StoreResult<Option<Connection>>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    let row = sqlx::query(&format!(
        "SELECT {CONNECTION_COLUMNS} FROM connections c WHERE c.id = $1"
    ))
    .bind(id)
    .fetch_optional(exec)
    .await?;
    row.as_ref().map(connection_from_row).transpose()
}

/// The groups a user is a direct member of, read inside the write.
pub(super) async fn group_summaries(
    tx: &mut Tx<'_>,
    connection_id: &str,
    user_id: &str,
) -> StoreResult<Vec<GroupSummary>> {
    let rows = sqlx::query(
        "SELECT g.id, (g.body::jsonb ->> 'displayName') AS display_name, (g.body::jsonb ->> 'externalId') AS external_id \
         FROM memberships m JOIN resources g ON g.seq = m.group_seq \
         WHERE m.connection_id = $1 AND m.member_id = $2 ORDER BY g.seq",
    )
    .bind(connection_id)
    .bind(user_id)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(GroupSummary {
                id: r.try_get("id")?,
                display_name: r.try_get("display_name")?,
                external_id: r.try_get("external_id")?,
            })
        })
        .collect()
}

/// Inserts a write's events. It must be the write's last statement before its commit: from here
/// on the transaction holds [`EVENTS_LOCK`], and a write that then waited for a row lock could
/// wait on a writer queued behind the sequencer, which waits for it.
pub(super) async fn insert_events(tx: &mut Tx<'_>, events: Vec<NewEvent>) -> StoreResult<()> {
    // One write's events share one time, whichever statement carries them.
    let at = now();
    for chunk in events.chunks(EVENTS_PER_STATEMENT) {
        let mut insert: QueryBuilder<'_, Postgres> = QueryBuilder::new("");
        push_events_insert(&mut insert, chunk, at);
        insert.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Appends one `INSERT` of `events` (at most [`EVENTS_PER_STATEMENT`]) that takes
/// [`EVENTS_LOCK`] shared before the column default hands out their sequences: every row of the
/// join needs the lock's row first.
pub(super) fn push_events_insert(
    qb: &mut QueryBuilder<'_, Postgres>,
    events: &[NewEvent],
    at: OffsetDateTime,
) {
    qb.push(format!(
        "INSERT INTO events ({EVENT_INSERT_COLUMNS}) SELECT v.* FROM (SELECT pg_advisory_xact_lock_shared({EVENTS_LOCK})) AS events_lock, ("
    ));
    push_event_values(qb, events, at);
    qb.push(format!(") AS v ({EVENT_INSERT_COLUMNS})"));
}

fn json(text: &str, what: &str) -> StoreResult<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

const EVENT_COLUMNS: &str =
    "e.sequence, e.id, e.event_type, e.connection_id, e.customer_id, e.occurred_at, e.data, e.changes";

fn event_from_row(row: &PgRow) -> StoreResult<Event> {
    Ok(Event {
        id: row.try_get("id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        connection_id: row.try_get("connection_id")?,
        customer_id: row.try_get("customer_id")?,
        occurred_at: from_micros(row.try_get("occurred_at")?),
        data: json(&row.try_get::<String, _>("data")?, "event data")?,
        changes: json(&row.try_get::<String, _>("changes")?, "event changes")?,
    })
}

const ENDPOINT_COLUMNS: &str = "w.id, w.url, w.description, w.event_types, w.connection_id, w.enabled, w.disabled_reason, w.secret, w.created_at, w.updated_at, \
    CASE WHEN w.previous_secret_until > (CAST(extract(epoch FROM clock_timestamp()) * 1000000 AS BIGINT)) THEN w.previous_secret END AS previous_secret";

fn endpoint_from_row(row: &PgRow) -> StoreResult<WebhookEndpoint> {
    Ok(WebhookEndpoint {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        description: row.try_get("description")?,
        event_types: parse_types(&row.try_get::<String, _>("event_types")?),
        connection_id: row.try_get("connection_id")?,
        enabled: row.try_get::<bool, _>("enabled")?,
        disabled_reason: row.try_get("disabled_reason")?,
        secret: row.try_get("secret")?,
        previous_secret: row.try_get("previous_secret")?,
        created_at: from_micros(row.try_get("created_at")?),
        updated_at: from_micros(row.try_get("updated_at")?),
    })
}

async fn endpoint_in(tx: &mut Tx<'_>, id: &str) -> StoreResult<Option<WebhookEndpoint>> {
    let row = sqlx::query(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints w WHERE w.id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(endpoint_from_row).transpose()
}

/// Makes the stream due now unless it already has a time (a retry waiting, or due earlier).
async fn wake_stream(tx: &mut Tx<'_>, endpoint_id: &str, stream: &str, at: i64) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO webhook_streams (endpoint_id, stream, next_attempt_at) VALUES ($1, $2, $3) \
         ON CONFLICT (endpoint_id, stream) DO UPDATE SET next_attempt_at = coalesce(webhook_streams.next_attempt_at, excluded.next_attempt_at)",
    )
    .bind(endpoint_id)
    .bind(stream)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn queue_delivery(
    tx: &mut Tx<'_>,
    endpoint_id: &str,
    stream: &str,
    sequence: i64,
    at: i64,
) -> StoreResult<i64> {
    wake_stream(tx, endpoint_id, stream, at).await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO webhook_deliveries (endpoint_id, stream, event_sequence, state, created_at) VALUES ($1, $2, $3, 'pending', $4) RETURNING id",
    )
    .bind(endpoint_id)
    .bind(stream)
    .bind(sequence)
    .bind(at)
    .fetch_one(&mut **tx)
    .await?;
    Ok(id)
}

impl PgStore {
    /// Publishes every sequence handed out so far; returns how many events that made readable.
    /// Once [`EVENTS_LOCK`] is granted alone, every transaction that took a sequence has ended, and
    /// any later one waits for the grant to end before it takes a sequence, which will be higher.
    /// The grant lasts one read: the transaction writes nothing, so its commit waits for no disk.
    pub(super) async fn sequence_committed(&self) -> StoreResult<u64> {
        let mut barrier = self.pool.begin().await?;
        sqlx::query(&format!("SET LOCAL lock_timeout = '{SEQUENCER_WAIT}'"))
            .execute(&mut *barrier)
            .await?;
        match sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(EVENTS_LOCK)
            .execute(&mut *barrier)
            .await
        {
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(LOCK_NOT_AVAILABLE) => {
                tracing::debug!("writers held the events lock; sequencing next round");
                return Ok(0);
            }
            other => other?,
        };
        let handed_out: i64 = sqlx::query_scalar(
            "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM events_sequence",
        )
        .fetch_one(&mut *barrier)
        .await?;
        barrier.commit().await?;
        // Several instances may publish at once; `last` only grows.
        let published: Option<i64> = sqlx::query_scalar(
            "WITH before AS (SELECT last FROM event_sequencer WHERE id = 1 FOR UPDATE) \
             UPDATE event_sequencer s SET last = $1 FROM before WHERE s.id = 1 AND before.last < $1 \
             RETURNING (SELECT count(*) FROM events WHERE sequence > before.last AND sequence <= $1)",
        )
        .bind(handed_out)
        .fetch_optional(&self.statements)
        .await?;
        Ok(published.unwrap_or(0) as u64)
    }

    pub(super) async fn read_events(&self, query: &EventQuery) -> StoreResult<Vec<Event>> {
        let mut qb: QueryBuilder<'_, Postgres> = QueryBuilder::new(format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE e.sequence > "
        ));
        qb.push_bind(query.after);
        if let Some(connection) = &query.connection_id {
            qb.push(" AND e.connection_id = ")
                .push_bind(connection.clone());
        }
        if let Some(customer) = &query.customer_id {
            qb.push(" AND e.customer_id = ").push_bind(customer.clone());
        }
        if !query.types.is_empty() {
            qb.push(" AND e.event_type IN (");
            let mut list = qb.separated(", ");
            for t in &query.types {
                list.push_bind(t.clone());
            }
            qb.push(")");
        }
        qb.push(concat!(
            " AND e.sequence <= ",
            published!(),
            " ORDER BY e.sequence LIMIT "
        ))
        .push_bind(i64::from(query.limit));
        let rows = qb.build().fetch_all(&self.statements).await?;
        rows.iter().map(event_from_row).collect()
    }

    pub(super) async fn max_sequence(&self) -> StoreResult<i64> {
        let last: i64 = sqlx::query_scalar(concat!("SELECT ", published!()))
            .fetch_one(&self.statements)
            .await?;
        Ok(last)
    }

    pub(super) async fn prune_events_before(&self, before: OffsetDateTime) -> StoreResult<u64> {
        let mut total = 0;
        // In slices, so no transaction holds many locks for long.
        loop {
            let mut tx = self.pool.begin().await?;
            let done = sqlx::query(
                concat!("DELETE FROM events WHERE sequence IN (SELECT sequence FROM events WHERE occurred_at < $1 AND sequence <= ", published!(), " ORDER BY sequence LIMIT 1000)"),
            )
            .bind(micros(before))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            total += done.rows_affected();
            if done.rows_affected() < 1000 {
                return Ok(total);
            }
        }
    }

    pub(super) async fn warn_keys_expiring_before(
        &self,
        until: OffsetDateTime,
    ) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<(Vec<u8>, String, i64)> = sqlx::query_as(
            "SELECT hash, connection_id, expires_at FROM scim_keys \
             WHERE replaced_at IS NULL AND expires_at IS NOT NULL AND expires_at < $1 AND expiry_warned_at IS NULL FOR UPDATE SKIP LOCKED",
        )
        .bind(micros(until))
        .fetch_all(&mut *tx)
        .await?;
        let at = micros(now());
        let mut events = Vec::new();
        for (hash, connection_id, expires_at) in &rows {
            sqlx::query("UPDATE scim_keys SET expiry_warned_at = $1 WHERE hash = $2")
                .bind(at)
                .bind(hash)
                .execute(&mut *tx)
                .await?;
            if let Some(connection) = connection_in(&mut *tx, connection_id).await? {
                events.extend(self.events.events(Effect::ScimKeyExpiring {
                    connection: &connection,
                    expires_at: from_micros(*expires_at),
                }));
            }
        }
        insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(rows.len() as u64)
    }

    pub(super) async fn insert_endpoint(
        &self,
        new: NewWebhookEndpoint,
    ) -> StoreResult<WebhookEndpoint> {
        // What was committed before the endpoint existed is not for it, published or not.
        self.sequence_committed().await?;
        let at = micros(now());
        let mut tx = self.pool.begin().await?;
        sqlx::query(concat!(
            "INSERT INTO webhook_endpoints (id, url, description, event_types, connection_id, enabled, secret, created_at, updated_at, fanned_out_through) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, ", published!(), ")",
        ))
        .bind(&new.id)
        .bind(&new.url)
        .bind(&new.description)
        .bind(types_text(&new.event_types))
        .bind(&new.connection_id)
        .bind(new.enabled)
        .bind(&new.secret)
        .bind(at)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        let endpoint = endpoint_in(&mut tx, &new.id)
            .await?
            .ok_or(StoreError::NotFound("webhook endpoint"))?;
        tx.commit().await?;
        Ok(endpoint)
    }

    pub(super) async fn read_endpoint(&self, id: &str) -> StoreResult<Option<WebhookEndpoint>> {
        let row = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints w WHERE w.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.statements)
        .await?;
        row.as_ref().map(endpoint_from_row).transpose()
    }

    pub(super) async fn read_endpoints(&self) -> StoreResult<Vec<WebhookEndpoint>> {
        let rows = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints w ORDER BY w.created_at, w.id"
        ))
        .fetch_all(&self.statements)
        .await?;
        rows.iter().map(endpoint_from_row).collect()
    }

    pub(super) async fn change_endpoint(
        &self,
        id: &str,
        update: WebhookEndpointUpdate,
    ) -> StoreResult<Option<WebhookEndpoint>> {
        let at = micros(now());
        let mut tx = self.pool.begin().await?;
        let Some(before) = endpoint_in(&mut tx, id).await? else {
            return Ok(None);
        };
        let mut qb: QueryBuilder<'_, Postgres> =
            QueryBuilder::new("UPDATE webhook_endpoints SET updated_at = ");
        qb.push_bind(at);
        if let Some(url) = update.url {
            qb.push(", url = ").push_bind(url);
        }
        if let Some(description) = update.description {
            qb.push(", description = ").push_bind(description);
        }
        if let Some(types) = update.event_types {
            qb.push(", event_types = ").push_bind(types_text(&types));
        }
        if let Some(connection) = update.connection_id {
            qb.push(", connection_id = ").push_bind(connection);
        }
        if let Some(secret) = update.secret {
            qb.push(", previous_secret = secret, previous_secret_until = ")
                .push_bind(update.previous_secret_until.map(micros))
                .push(", secret = ")
                .push_bind(secret);
        }
        let resumes = update.enabled == Some(true) && !before.enabled;
        if let Some(enabled) = update.enabled {
            qb.push(", enabled = ").push_bind(enabled);
            qb.push(", disabled_reason = NULL");
        }
        qb.push(" WHERE id = ").push_bind(id.to_owned());
        qb.build().execute(&mut *tx).await?;
        if resumes {
            // A fresh retry window for what was waiting, and every queue due now.
            sqlx::query("UPDATE webhook_deliveries SET first_failed_at = NULL, next_attempt_at = NULL WHERE endpoint_id = $1 AND state = 'pending'")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE webhook_streams SET next_attempt_at = $1 WHERE endpoint_id = $2 AND next_attempt_at IS NOT NULL")
                .bind(at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let endpoint = endpoint_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(endpoint)
    }

    pub(super) async fn remove_endpoint(&self, id: &str) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn fan_out(&self, limit: u32) -> StoreResult<u64> {
        // Most calls find nothing to do: find that out without taking the write lock.
        let behind: Option<i32> = sqlx::query_scalar(concat!(
            "SELECT 1 FROM webhook_endpoints WHERE fanned_out_through < ",
            published!(),
            " LIMIT 1"
        ))
        .fetch_optional(&self.statements)
        .await?;
        if behind.is_none() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        // One fan-out at a time across instances, or two would queue the same events.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(FAN_OUT_LOCK)
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS}, w.fanned_out_through FROM webhook_endpoints w ORDER BY w.id"
        ))
        .fetch_all(&mut *tx)
        .await?;
        let mut endpoints = Vec::with_capacity(rows.len());
        for row in &rows {
            endpoints.push((
                endpoint_from_row(row)?,
                row.try_get::<i64, _>("fanned_out_through")?,
            ));
        }
        let Some(from) = endpoints.iter().map(|(_, through)| *through).min() else {
            return Ok(0);
        };
        let events: Vec<(i64, String, Option<String>)> = sqlx::query_as(
            concat!("SELECT sequence, event_type, connection_id FROM events WHERE sequence > $1 AND sequence <= ", published!(), " ORDER BY sequence LIMIT $2"),
        )
        .bind(from)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = events.last().map(|e| e.0) else {
            return Ok(0);
        };
        let at = micros(now());
        let behind: Vec<&(WebhookEndpoint, i64)> = endpoints
            .iter()
            .filter(|(_, through)| *through < last)
            .collect();
        // Endpoint rows before stream rows, the order every transaction takes them in.
        for (endpoint, _) in &behind {
            sqlx::query("UPDATE webhook_endpoints SET fanned_out_through = $1 WHERE id = $2")
                .bind(last)
                .bind(&endpoint.id)
                .execute(&mut *tx)
                .await?;
        }
        for (endpoint, through) in behind {
            for (sequence, event_type, connection_id) in &events {
                if *sequence > *through && endpoint.wants(event_type, connection_id.as_deref()) {
                    let stream = connection_id.as_deref().unwrap_or("");
                    queue_delivery(&mut tx, &endpoint.id, stream, *sequence, at).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(events.len() as u64)
    }

    pub(super) async fn claim_streams(
        &self,
        streams: u32,
        batch: u32,
        lease: std::time::Duration,
    ) -> StoreResult<Vec<ClaimedStream>> {
        let at = now();
        let until = micros(at + lease);
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut tx = self.pool.begin().await?;
        let due: Vec<(String, String)> = sqlx::query_as(
            "SELECT s.endpoint_id, s.stream FROM webhook_streams s JOIN webhook_endpoints w ON w.id = s.endpoint_id \
             WHERE w.enabled AND s.next_attempt_at <= $1 AND (s.lease_until IS NULL OR s.lease_until < $2) \
             ORDER BY s.next_attempt_at LIMIT $3 FOR UPDATE OF s SKIP LOCKED",
        )
        .bind(micros(at))
        .bind(micros(at))
        .bind(i64::from(streams))
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Vec::with_capacity(due.len());
        for (endpoint_id, stream) in due {
            sqlx::query("UPDATE webhook_streams SET lease_until = $1, lease = $2 WHERE endpoint_id = $3 AND stream = $4")
                .bind(until)
                .bind(&token)
                .bind(&endpoint_id)
                .bind(&stream)
                .execute(&mut *tx)
                .await?;
            let Some(endpoint) = endpoint_in(&mut tx, &endpoint_id).await? else {
                continue;
            };
            let rows = sqlx::query(&format!(
                "SELECT d.id AS delivery_id, d.attempts, {EVENT_COLUMNS} FROM webhook_deliveries d JOIN events e ON e.sequence = d.event_sequence \
                 WHERE d.endpoint_id = $1 AND d.stream = $2 AND d.state = 'pending' ORDER BY d.event_sequence, d.id LIMIT $3"
            ))
            .bind(&endpoint_id)
            .bind(&stream)
            .bind(i64::from(batch))
            .fetch_all(&mut *tx)
            .await?;
            let mut deliveries = Vec::with_capacity(rows.len());
            for row in &rows {
                deliveries.push(Delivery {
                    id: row.try_get("delivery_id")?,
                    attempts: row.try_get::<i32, _>("attempts")?.max(0) as u32,
                    event: event_from_row(row)?,
                });
            }
            claimed.push(ClaimedStream {
                endpoint,
                stream,
                lease: token.clone(),
                deliveries,
            });
        }
        tx.commit().await?;
        Ok(claimed)
    }

    pub(super) async fn complete_stream(&self, outcome: StreamOutcome) -> StoreResult<()> {
        let at = now();
        let mut tx = self.pool.begin().await?;
        let mut failing_since = None;
        // A batch of a hundred deliveries in three statements, not two hundred round trips.
        if !outcome.attempts.is_empty() {
            let mut insert: QueryBuilder<'_, Postgres> = QueryBuilder::new(
                "INSERT INTO webhook_attempts (delivery_id, attempted_at, success, status_code, latency_ms, response, error) ",
            );
            insert.push_values(&outcome.attempts, |mut row, attempt| {
                row.push_bind(attempt.delivery_id)
                    .push_bind(micros(attempt.at))
                    .push_bind(attempt.success)
                    .push_bind(attempt.status_code.map(i32::from))
                    .push_bind(attempt.latency_ms as i64)
                    .push_bind(attempt.response.clone())
                    .push_bind(attempt.error.clone());
            });
            insert.build().execute(&mut *tx).await?;
        }
        let (delivered, delivered_at): (Vec<i64>, Vec<i64>) = outcome
            .attempts
            .iter()
            .filter(|a| a.success)
            .map(|a| (a.delivery_id, micros(a.at)))
            .unzip();
        if !delivered.is_empty() {
            sqlx::query(
                "UPDATE webhook_deliveries d SET attempts = d.attempts + 1, state = 'delivered', delivered_at = v.at, next_attempt_at = NULL \
                 FROM unnest($1::bigint[], $2::bigint[]) AS v(id, at) WHERE d.id = v.id",
            )
            .bind(&delivered)
            .bind(&delivered_at)
            .execute(&mut *tx)
            .await?;
        }
        for attempt in outcome.attempts.iter().filter(|a| !a.success) {
            let first: Option<i64> = sqlx::query_scalar(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, first_failed_at = coalesce(first_failed_at, $1), next_attempt_at = $2 \
                 WHERE id = $3 RETURNING first_failed_at",
            )
            .bind(micros(attempt.at))
            .bind(outcome.retry_at.map(micros))
            .bind(attempt.delivery_id)
            .fetch_optional(&mut *tx)
            .await?
            .flatten();
            failing_since = first.map(from_micros);
        }
        let held: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM webhook_streams WHERE endpoint_id = $1 AND stream = $2 AND lease = $3 FOR UPDATE",
        )
        .bind(&outcome.endpoint_id)
        .bind(&outcome.stream)
        .bind(&outcome.lease)
        .fetch_optional(&mut *tx)
        .await?;
        if held.is_some() {
            let pending: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM webhook_deliveries WHERE endpoint_id = $1 AND stream = $2 AND state = 'pending' LIMIT 1",
            )
            .bind(&outcome.endpoint_id)
            .bind(&outcome.stream)
            .fetch_optional(&mut *tx)
            .await?;
            let next = match (outcome.retry_at, pending) {
                (Some(retry), _) => Some(micros(retry)),
                (None, Some(_)) => Some(micros(at)),
                (None, None) => None,
            };
            sqlx::query("UPDATE webhook_streams SET lease_until = NULL, lease = NULL, next_attempt_at = $1 WHERE endpoint_id = $2 AND stream = $3")
                .bind(next)
                .bind(&outcome.endpoint_id)
                .bind(&outcome.stream)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        match failing_since {
            Some(since) if at - since >= outcome.retry_window => {
                self.disable_endpoint(&outcome.endpoint_id, since).await
            }
            _ => Ok(()),
        }
    }

    /// In a transaction of its own, so no transaction locks a stream before an endpoint.
    async fn disable_endpoint(&self, endpoint_id: &str, since: OffsetDateTime) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let reason = format!(
            "deliveries failed for the whole retry window, since {}",
            since
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        );
        let done = sqlx::query("UPDATE webhook_endpoints SET enabled = FALSE, disabled_reason = $1, updated_at = $2 WHERE id = $3 AND enabled")
            .bind(&reason)
            .bind(micros(now()))
            .bind(endpoint_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 1 {
            if let Some(endpoint) = endpoint_in(&mut tx, endpoint_id).await? {
                let events = self.events.events(Effect::EndpointDisabled(&endpoint));
                insert_events(&mut tx, events).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn read_deliveries(
        &self,
        endpoint_id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        let rows = sqlx::query(
            "SELECT d.id, d.state, d.created_at, d.delivered_at, d.next_attempt_at, e.id AS event_id, e.event_type, e.sequence, e.connection_id \
             FROM webhook_deliveries d JOIN events e ON e.sequence = d.event_sequence \
             WHERE d.endpoint_id = $1 AND d.id < $2 ORDER BY d.id DESC LIMIT $3",
        )
        .bind(endpoint_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.statements)
        .await?;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            records.push(DeliveryRecord {
                id: row.try_get("id")?,
                event_id: row.try_get("event_id")?,
                event_type: row.try_get("event_type")?,
                sequence: row.try_get("sequence")?,
                connection_id: row.try_get("connection_id")?,
                state: DeliveryState::parse(&row.try_get::<String, _>("state")?),
                created_at: from_micros(row.try_get("created_at")?),
                delivered_at: opt_time(row.try_get("delivered_at")?),
                next_attempt_at: opt_time(row.try_get("next_attempt_at")?),
                attempts: Vec::new(),
            });
        }
        if let (Some(first), Some(last)) = (records.last(), records.first()) {
            let rows = sqlx::query(
                "SELECT delivery_id, attempted_at, success, status_code, latency_ms, response, error FROM webhook_attempts \
                 WHERE delivery_id IN (SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 AND id BETWEEN $2 AND $3) ORDER BY id",
            )
            .bind(endpoint_id)
            .bind(first.id)
            .bind(last.id)
            .fetch_all(&self.statements)
            .await?;
            for row in &rows {
                let attempt = Attempt {
                    delivery_id: row.try_get("delivery_id")?,
                    at: from_micros(row.try_get("attempted_at")?),
                    success: row.try_get::<bool, _>("success")?,
                    status_code: row
                        .try_get::<Option<i32>, _>("status_code")?
                        .and_then(|c| u16::try_from(c).ok()),
                    latency_ms: row.try_get::<i64, _>("latency_ms")?.max(0) as u64,
                    response: row.try_get("response")?,
                    error: row.try_get("error")?,
                };
                if let Some(record) = records.iter_mut().find(|r| r.id == attempt.delivery_id) {
                    record.attempts.push(attempt);
                }
            }
        }
        Ok(records)
    }

    pub(super) async fn retry_delivery(
        &self,
        endpoint_id: &str,
        delivery_id: i64,
    ) -> StoreResult<Option<i64>> {
        let at = micros(now());
        let mut tx = self.pool.begin().await?;
        let row: Option<(String, String, i64)> = sqlx::query_as(
            "SELECT state, stream, event_sequence FROM webhook_deliveries WHERE id = $1 AND endpoint_id = $2",
        )
        .bind(delivery_id)
        .bind(endpoint_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((state, stream, sequence)) = row else {
            return Ok(None);
        };
        let id = if DeliveryState::parse(&state) == DeliveryState::Pending {
            sqlx::query(
                "UPDATE webhook_deliveries SET first_failed_at = NULL, next_attempt_at = NULL WHERE id = $1",
            )
            .bind(delivery_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO webhook_streams (endpoint_id, stream, next_attempt_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (endpoint_id, stream) DO UPDATE SET next_attempt_at = excluded.next_attempt_at",
            )
            .bind(endpoint_id)
            .bind(&stream)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            delivery_id
        } else {
            queue_delivery(&mut tx, endpoint_id, &stream, sequence, at).await?
        };
        tx.commit().await?;
        Ok(Some(id))
    }

    pub(super) async fn replay(&self, endpoint_id: &str, after: i64) -> StoreResult<u64> {
        let at = micros(now());
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS}, w.fanned_out_through FROM webhook_endpoints w WHERE w.id = $1 FOR UPDATE"
        ))
        .bind(endpoint_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound("webhook endpoint"));
        };
        let endpoint = endpoint_from_row(&row)?;
        let through: i64 = row.try_get("fanned_out_through")?;
        let events: Vec<(i64, String, Option<String>)> = sqlx::query_as(
            "SELECT sequence, event_type, connection_id FROM events WHERE sequence > $1 AND sequence <= $2 ORDER BY sequence",
        )
        .bind(after)
        .bind(through)
        .fetch_all(&mut *tx)
        .await?;
        let mut queued = 0;
        for (sequence, event_type, connection_id) in &events {
            if endpoint.wants(event_type, connection_id.as_deref()) {
                let stream = connection_id.as_deref().unwrap_or("");
                queue_delivery(&mut tx, endpoint_id, stream, *sequence, at).await?;
                queued += 1;
            }
        }
        tx.commit().await?;
        Ok(queued)
    }
}
