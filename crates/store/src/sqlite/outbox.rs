//! The outbox and webhook queues on SQLite. One writer at a time holds the write lock until it
//! commits, so the sequence (the events table's AUTOINCREMENT key) is assigned in commit order
//! inside the writing transaction itself, and leases only matter across processes.

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, Transaction};
use time::OffsetDateTime;

use super::{connection_from_row, now, opt_time, SqliteStore, CONNECTION_COLUMNS};
use crate::events::*;
use crate::model::Connection;
use crate::plan::{from_micros, micros};
use crate::statements::{push_event_values, EVENTS_PER_STATEMENT, EVENT_INSERT_COLUMNS};
use crate::{StoreError, StoreResult};

type Tx<'a> = Transaction<'a, Sqlite>;

pub(super) async fn connection_in(
    conn: &mut SqliteConnection,
    id: &str,
) -> StoreResult<Option<Connection>> {
    let row = sqlx::query(&format!(
        "SELECT {CONNECTION_COLUMNS} FROM connections c WHERE c.id = ?"
    ))
    .bind(id)
    .fetch_optional(conn)
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
        "SELECT g.id, json_extract(g.body, '$.displayName') AS display_name, json_extract(g.body, '$.externalId') AS external_id \
         FROM memberships m JOIN resources g ON g.seq = m.group_seq \
         WHERE m.connection_id = ? AND m.member_id = ? ORDER BY g.seq",
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

pub(super) async fn insert_events(tx: &mut Tx<'_>, events: Vec<NewEvent>) -> StoreResult<()> {
    // One write's events share one time, whichever statement carries them.
    let at = now();
    for chunk in events.chunks(EVENTS_PER_STATEMENT) {
        let mut insert: QueryBuilder<'_, Sqlite> = QueryBuilder::new("");
        push_events_insert(&mut insert, chunk, at);
        insert.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Appends one `INSERT` of `events` (at most [`EVENTS_PER_STATEMENT`]); the table's
/// `AUTOINCREMENT` key numbers them, in commit order since the writer is alone.
pub(super) fn push_events_insert(
    qb: &mut QueryBuilder<'_, Sqlite>,
    events: &[NewEvent],
    at: OffsetDateTime,
) {
    qb.push(format!("INSERT INTO events ({EVENT_INSERT_COLUMNS}) "));
    push_event_values(qb, events, at);
}

fn json(text: &str, what: &str) -> StoreResult<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

const EVENT_COLUMNS: &str =
    "e.sequence, e.id, e.event_type, e.connection_id, e.customer_id, e.occurred_at, e.data, e.changes";

fn event_from_row(row: &SqliteRow) -> StoreResult<Event> {
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
    CASE WHEN w.previous_secret_until > (SELECT CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)) THEN w.previous_secret END AS previous_secret";

fn endpoint_from_row(row: &SqliteRow) -> StoreResult<WebhookEndpoint> {
    Ok(WebhookEndpoint {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        description: row.try_get("description")?,
        event_types: parse_types(&row.try_get::<String, _>("event_types")?),
        connection_id: row.try_get("connection_id")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        disabled_reason: row.try_get("disabled_reason")?,
        secret: row.try_get("secret")?,
        previous_secret: row.try_get("previous_secret")?,
        created_at: from_micros(row.try_get("created_at")?),
        updated_at: from_micros(row.try_get("updated_at")?),
    })
}

async fn endpoint_in(tx: &mut Tx<'_>, id: &str) -> StoreResult<Option<WebhookEndpoint>> {
    let row = sqlx::query(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints w WHERE w.id = ?"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(endpoint_from_row).transpose()
}

/// Makes the stream due now unless it already has a time (a retry waiting, or due earlier).
async fn wake_stream(tx: &mut Tx<'_>, endpoint_id: &str, stream: &str, at: i64) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO webhook_streams (endpoint_id, stream, next_attempt_at) VALUES (?, ?, ?) \
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
        "INSERT INTO webhook_deliveries (endpoint_id, stream, event_sequence, state, created_at) VALUES (?, ?, ?, 'pending', ?) RETURNING id",
    )
    .bind(endpoint_id)
    .bind(stream)
    .bind(sequence)
    .bind(at)
    .fetch_one(&mut **tx)
    .await?;
    Ok(id)
}

impl SqliteStore {
    pub(super) async fn read_events(&self, query: &EventQuery) -> StoreResult<Vec<Event>> {
        let mut qb: QueryBuilder<'_, Sqlite> = QueryBuilder::new(format!(
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
        qb.push(" ORDER BY e.sequence LIMIT ")
            .push_bind(i64::from(query.limit));
        let rows = qb.build().fetch_all(&self.reader).await?;
        rows.iter().map(event_from_row).collect()
    }

    pub(super) async fn max_sequence(&self) -> StoreResult<i64> {
        // AUTOINCREMENT's own counter: pruning every event does not take it back.
        let last: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
                .fetch_optional(&self.reader)
                .await?;
        Ok(last.unwrap_or(0))
    }

    pub(super) async fn prune_events_before(&self, before: OffsetDateTime) -> StoreResult<u64> {
        let mut total = 0;
        // In slices, so the single writer is never held for long.
        loop {
            let mut tx = self.writer.begin().await?;
            let done = sqlx::query(
                "DELETE FROM events WHERE sequence IN (SELECT sequence FROM events WHERE occurred_at < ? ORDER BY sequence LIMIT 1000)",
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
        let mut tx = self.writer.begin().await?;
        let rows: Vec<(Vec<u8>, String, i64)> = sqlx::query_as(
            "SELECT hash, connection_id, expires_at FROM scim_keys \
             WHERE replaced_at IS NULL AND expires_at IS NOT NULL AND expires_at < ? AND expiry_warned_at IS NULL",
        )
        .bind(micros(until))
        .fetch_all(&mut *tx)
        .await?;
        let at = micros(now());
        for (hash, connection_id, expires_at) in &rows {
            sqlx::query("UPDATE scim_keys SET expiry_warned_at = ? WHERE hash = ?")
                .bind(at)
                .bind(hash)
                .execute(&mut *tx)
                .await?;
            if let Some(connection) = connection_in(&mut tx, connection_id).await? {
                let events = self.events.events(Effect::ScimKeyExpiring {
                    connection: &connection,
                    expires_at: from_micros(*expires_at),
                });
                insert_events(&mut tx, events).await?;
            }
        }
        tx.commit().await?;
        Ok(rows.len() as u64)
    }

    pub(super) async fn insert_endpoint(
        &self,
        new: NewWebhookEndpoint,
    ) -> StoreResult<WebhookEndpoint> {
        let at = micros(now());
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, url, description, event_types, connection_id, enabled, secret, created_at, updated_at, fanned_out_through) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, (SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'events'))",
        )
        .bind(&new.id)
        .bind(&new.url)
        .bind(&new.description)
        .bind(types_text(&new.event_types))
        .bind(&new.connection_id)
        .bind(i64::from(new.enabled))
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
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints w WHERE w.id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(endpoint_from_row).transpose()
    }

    pub(super) async fn read_endpoints(&self) -> StoreResult<Vec<WebhookEndpoint>> {
        let rows = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints w ORDER BY w.created_at, w.id"
        ))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(endpoint_from_row).collect()
    }

    pub(super) async fn change_endpoint(
        &self,
        id: &str,
        update: WebhookEndpointUpdate,
    ) -> StoreResult<Option<WebhookEndpoint>> {
        let at = micros(now());
        let mut tx = self.writer.begin().await?;
        let Some(before) = endpoint_in(&mut tx, id).await? else {
            return Ok(None);
        };
        let mut qb: QueryBuilder<'_, Sqlite> =
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
            qb.push(", enabled = ").push_bind(i64::from(enabled));
            qb.push(", disabled_reason = NULL");
        }
        qb.push(" WHERE id = ").push_bind(id.to_owned());
        qb.build().execute(&mut *tx).await?;
        if resumes {
            // A fresh retry window for what was waiting, and every queue due now.
            sqlx::query("UPDATE webhook_deliveries SET first_failed_at = NULL, next_attempt_at = NULL WHERE endpoint_id = ? AND state = 'pending'")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE webhook_streams SET next_attempt_at = ? WHERE endpoint_id = ? AND next_attempt_at IS NOT NULL")
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
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn fan_out(&self, limit: u32) -> StoreResult<u64> {
        // Most calls find nothing to do: find that out without taking the write lock.
        let behind: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM webhook_endpoints WHERE fanned_out_through < (SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'events') LIMIT 1",
        )
        .fetch_optional(&self.reader)
        .await?;
        if behind.is_none() {
            return Ok(0);
        }
        let mut tx = self.writer.begin().await?;
        let rows = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS}, w.fanned_out_through FROM webhook_endpoints w"
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
            "SELECT sequence, event_type, connection_id FROM events WHERE sequence > ? ORDER BY sequence LIMIT ?",
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
            sqlx::query("UPDATE webhook_endpoints SET fanned_out_through = ? WHERE id = ?")
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
        let mut tx = self.writer.begin().await?;
        let due: Vec<(String, String)> = sqlx::query_as(
            "SELECT s.endpoint_id, s.stream FROM webhook_streams s JOIN webhook_endpoints w ON w.id = s.endpoint_id \
             WHERE w.enabled = 1 AND s.next_attempt_at <= ? AND (s.lease_until IS NULL OR s.lease_until < ?) \
             ORDER BY s.next_attempt_at LIMIT ?",
        )
        .bind(micros(at))
        .bind(micros(at))
        .bind(i64::from(streams))
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Vec::with_capacity(due.len());
        for (endpoint_id, stream) in due {
            sqlx::query("UPDATE webhook_streams SET lease_until = ?, lease = ? WHERE endpoint_id = ? AND stream = ?")
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
                 WHERE d.endpoint_id = ? AND d.stream = ? AND d.state = 'pending' ORDER BY d.event_sequence, d.id LIMIT ?"
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
                    attempts: row.try_get::<i64, _>("attempts")? as u32,
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
        let mut tx = self.writer.begin().await?;
        let mut failing_since = None;
        for attempt in &outcome.attempts {
            sqlx::query(
                "INSERT INTO webhook_attempts (delivery_id, attempted_at, success, status_code, latency_ms, response, error) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(attempt.delivery_id)
            .bind(micros(attempt.at))
            .bind(i64::from(attempt.success))
            .bind(attempt.status_code.map(i64::from))
            .bind(attempt.latency_ms as i64)
            .bind(&attempt.response)
            .bind(&attempt.error)
            .execute(&mut *tx)
            .await?;
            if attempt.success {
                sqlx::query("UPDATE webhook_deliveries SET attempts = attempts + 1, state = 'delivered', delivered_at = ?, next_attempt_at = NULL WHERE id = ?")
                    .bind(micros(attempt.at))
                    .bind(attempt.delivery_id)
                    .execute(&mut *tx)
                    .await?;
            } else {
                let first: Option<i64> = sqlx::query_scalar(
                    "UPDATE webhook_deliveries SET attempts = attempts + 1, first_failed_at = coalesce(first_failed_at, ?), next_attempt_at = ? \
                     WHERE id = ? RETURNING first_failed_at",
                )
                .bind(micros(attempt.at))
                .bind(outcome.retry_at.map(micros))
                .bind(attempt.delivery_id)
                .fetch_optional(&mut *tx)
                .await?
                .flatten();
                failing_since = first.map(from_micros);
            }
        }
        let held: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM webhook_streams WHERE endpoint_id = ? AND stream = ? AND lease = ?",
        )
        .bind(&outcome.endpoint_id)
        .bind(&outcome.stream)
        .bind(&outcome.lease)
        .fetch_optional(&mut *tx)
        .await?;
        if held.is_some() {
            let pending: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM webhook_deliveries WHERE endpoint_id = ? AND stream = ? AND state = 'pending' LIMIT 1",
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
            sqlx::query("UPDATE webhook_streams SET lease_until = NULL, lease = NULL, next_attempt_at = ? WHERE endpoint_id = ? AND stream = ?")
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
        let mut tx = self.writer.begin().await?;
        let reason = format!(
            "deliveries failed for the whole retry window, since {}",
            since
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        );
        let done = sqlx::query("UPDATE webhook_endpoints SET enabled = 0, disabled_reason = ?, updated_at = ? WHERE id = ? AND enabled = 1")
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
             WHERE d.endpoint_id = ? AND d.id < ? ORDER BY d.id DESC LIMIT ?",
        )
        .bind(endpoint_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
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
                 WHERE delivery_id IN (SELECT id FROM webhook_deliveries WHERE endpoint_id = ? AND id BETWEEN ? AND ?) ORDER BY id",
            )
            .bind(endpoint_id)
            .bind(first.id)
            .bind(last.id)
            .fetch_all(&self.reader)
            .await?;
            for row in &rows {
                let attempt = Attempt {
                    delivery_id: row.try_get("delivery_id")?,
                    at: from_micros(row.try_get("attempted_at")?),
                    success: row.try_get::<i64, _>("success")? != 0,
                    status_code: row
                        .try_get::<Option<i64>, _>("status_code")?
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
        let mut tx = self.writer.begin().await?;
        let row: Option<(String, String, i64)> = sqlx::query_as(
            "SELECT state, stream, event_sequence FROM webhook_deliveries WHERE id = ? AND endpoint_id = ?",
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
                "UPDATE webhook_deliveries SET first_failed_at = NULL, next_attempt_at = NULL WHERE id = ?",
            )
            .bind(delivery_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO webhook_streams (endpoint_id, stream, next_attempt_at) VALUES (?, ?, ?) \
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
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS}, w.fanned_out_through FROM webhook_endpoints w WHERE w.id = ?"
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
            "SELECT sequence, event_type, connection_id FROM events WHERE sequence > ? AND sequence <= ? ORDER BY sequence",
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
