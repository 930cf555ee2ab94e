//! # scimgate-store
//!
//! Everything scimgate keeps: connections, keys, users, groups, memberships and the request
//! log, behind one [`Store`] trait. [`sqlite::SqliteStore`] is the embedded default; each backend
//! owns its migrations and runs them at open. The store knows nothing of HTTP: it takes and
//! returns domain records, and turns constraint violations into [`StoreError`] variants.

pub mod error;
pub mod events;
pub mod model;
pub mod paging;
pub mod plan;
pub mod postgres;
mod reuse;
pub mod sqlite;
mod statements;
pub mod testing;

/// A user's groups as the backends read them with the user: JSON `[[id, displayName], …]`.
pub(crate) fn groups_from_json(text: Option<&str>) -> StoreResult<Vec<Member>> {
    let pairs: Vec<(String, Option<String>)> = serde_json::from_str(text.unwrap_or("[]"))
        .map_err(|e| StoreError::Corrupt(format!("a user's groups: {e}")))?;
    Ok(pairs
        .into_iter()
        .map(|(id, display)| Member {
            id,
            kind: Kind::Group,
            display,
        })
        .collect())
}

/// One connection's share of a request-log batch: the entries to store, oldest first, as JSON
/// text, and how many the batch held for it.
pub(crate) struct LoggedRequests<'a> {
    pub connection_id: &'a str,
    pub entries: Vec<String>,
    pub received: usize,
}

/// Splits a batch by connection, in order of first appearance. Only the newest `keep` entries
/// of each can survive the trim, so the rest are never written.
pub(crate) fn requests_by_connection(
    entries: &[(String, RequestLogEntry)],
    keep: u32,
) -> StoreResult<Vec<LoggedRequests<'_>>> {
    let mut grouped: Vec<(&str, Vec<&RequestLogEntry>)> = Vec::new();
    for (connection_id, entry) in entries {
        match grouped.iter_mut().find(|(id, _)| id == connection_id) {
            Some((_, list)) => list.push(entry),
            None => grouped.push((connection_id, vec![entry])),
        }
    }
    grouped
        .into_iter()
        .map(|(connection_id, list)| {
            let received = list.len();
            let skip = received.saturating_sub(keep as usize);
            let entries = list[skip..]
                .iter()
                .map(|e| serde_json::to_string(e).map_err(|e| StoreError::Corrupt(e.to_string())))
                .collect::<StoreResult<_>>()?;
            Ok(LoggedRequests {
                connection_id,
                entries,
                received,
            })
        })
        .collect()
}

/// The trim after a batch: deletes what lies past the newest `$keep` entries, reading at most
/// `$keep + $span` of them from the newest down. Each batch trims, so the excess is at most what
/// the batch added; the span adds `keep` of slack for batches other instances wrote meanwhile.
/// It never reaches the long run of older, already deleted rows that PostgreSQL keeps in the
/// index until VACUUM.
pub(crate) const TRIM_REQUEST_LOG: &str = "DELETE FROM request_log WHERE id IN (SELECT id FROM request_log WHERE connection_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3)";

/// How a membership change touches a member: a new version and lastModified (its `groups`
/// changed) and, when the connection's mapping reads groups, a stale mapped view. The text ends
/// where the lastModified value goes.
pub(crate) fn touch_members_sql(mapping_reads_groups: bool) -> &'static str {
    if mapping_reads_groups {
        "UPDATE resources SET mapped_generation = 0, mapping_epoch = mapping_epoch + 1, mapping_lease_until = NULL, version = version + 1, last_modified = "
    } else {
        "UPDATE resources SET version = version + 1, last_modified = "
    }
}

use std::collections::HashMap;

use async_trait::async_trait;
use scimgate_protocol::{AttrPath, Filter, ResourceSchemas};
use time::OffsetDateTime;

pub use error::{StoreError, StoreResult};
pub use events::*;
pub use model::*;

/// Opens the store a database URL names: `postgres://…` (or `postgresql://…`) for
/// PostgreSQL, `sqlite://path`, `sqlite:path` or a bare file path for SQLite. `events`
/// describes, inside each write's transaction, the events the write emits.
pub async fn open(
    url: &str,
    events: std::sync::Arc<dyn EventSource>,
) -> StoreResult<std::sync::Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(
            postgres::PgStore::open(url, events).await?,
        ))
    } else if url.contains("://") && !url.starts_with("sqlite://") {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    } else {
        Ok(std::sync::Arc::new(
            sqlite::SqliteStore::open(url, events).await?,
        ))
    }
}

/// Where a page of a list starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageStart {
    /// RFC 7644 §3.4.2.4: 1-based index into the ordered results.
    Index(u64),
    /// RFC 9865: an opaque cursor from a previous page; `None` for the first page.
    Cursor(Option<String>),
}

/// A list request, with the filter already parsed and validated.
pub struct ListQuery<'a> {
    pub filter: Option<&'a Filter>,
    pub schemas: &'a ResourceSchemas<'a>,
    pub sort: Option<(AttrPath, bool)>,
    pub start: PageStart,
    pub count: u64,
    pub load: Load,
}

/// A user whose mapped view must be recomputed, with its groups loaded.
#[derive(Debug, Clone)]
pub struct StaleUser {
    pub connection_id: String,
    /// Pass back to [`Store::save_mapped`].
    pub epoch: i64,
    pub resource: StoredResource,
}

/// A recomputed mapped view for [`Store::save_mapped`].
#[derive(Debug, Clone)]
pub struct MappedSave {
    pub connection_id: String,
    pub user_id: String,
    /// The [`StaleUser::epoch`] it was computed at.
    pub epoch: i64,
    pub record: MappedRecord,
}

/// One page of results. `total_results` counts every match, not just this page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub resources: Vec<StoredResource>,
    pub total_results: u64,
    pub next_cursor: Option<String>,
}

/// The storage contract. Every method is one transaction; a returned `Ok` means the change
/// is durable.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks that the database answers.
    async fn ping(&self) -> StoreResult<()>;

    async fn create_connection(
        &self,
        new: NewConnection,
        key: NewScimKey,
    ) -> StoreResult<Connection>;
    async fn connection(&self, id: &str) -> StoreResult<Option<Connection>>;
    async fn connection_by_customer(&self, customer_id: &str) -> StoreResult<Option<Connection>>;
    /// Connections ordered by id, after `after`.
    async fn list_connections(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Connection>>;
    async fn update_connection(
        &self,
        id: &str,
        update: ConnectionUpdate,
    ) -> StoreResult<Option<Connection>>;
    /// Deletes a connection with its keys, users, groups, memberships and request log.
    async fn delete_connection(&self, id: &str) -> StoreResult<bool>;
    async fn count_connections(&self) -> StoreResult<u64>;

    /// Stores a new SCIM key for the connection; keys issued before it stay valid until
    /// `previous_valid_until` (or their own expiry, if sooner).
    async fn replace_scim_key(
        &self,
        connection_id: &str,
        key: NewScimKey,
        previous_valid_until: OffsetDateTime,
    ) -> StoreResult<Option<Connection>>;
    async fn scim_key(&self, hash: &[u8]) -> StoreResult<Option<ScimKeyRecord>>;

    /// `None` if the connection does not exist.
    async fn create_setup_link(&self, new: NewSetupLink) -> StoreResult<Option<SetupLink>>;
    /// The link with this token hash, usable or not.
    async fn setup_link(&self, token_hash: &[u8]) -> StoreResult<Option<SetupLink>>;
    /// The connection's links, newest first.
    async fn setup_links(&self, connection_id: &str) -> StoreResult<Vec<SetupLink>>;
    async fn revoke_setup_link(&self, connection_id: &str, id: &str) -> StoreResult<bool>;

    async fn create_integration_key(&self, name: &str, hash: &[u8]) -> StoreResult<IntegrationKey>;
    async fn integration_keys(&self) -> StoreResult<Vec<IntegrationKey>>;
    async fn revoke_integration_key(&self, id: &str) -> StoreResult<bool>;
    /// Whether an unrevoked integration key has this hash.
    async fn integration_key_is_valid(&self, hash: &[u8]) -> StoreResult<bool>;

    async fn create_resource(
        &self,
        connection_id: &str,
        kind: Kind,
        id: &str,
        write: ResourceWrite,
    ) -> StoreResult<WriteOutcome>;
    /// Creates a user with `connection` as its caller read it: a SCIM request has, to
    /// authenticate, so the store maps the user and describes its events with it instead of
    /// reading it again, a round trip fewer on the create that makes up most of an initial
    /// sync. A connection changed since it was read is a change that raced the create: the
    /// user is stored as of the mapping generation it was mapped with, and the mapping worker
    /// maps it again.
    async fn create_user(
        &self,
        connection: &Connection,
        id: &str,
        write: ResourceWrite,
    ) -> StoreResult<WriteOutcome>;
    async fn resource(
        &self,
        connection_id: &str,
        kind: Kind,
        id: &str,
        load: Load,
    ) -> StoreResult<Option<StoredResource>>;
    /// Replaces the body and indexed fields and applies the member operations in order.
    /// With `expected_version`, fails with [`StoreError::VersionMismatch`] if the stored
    /// version differs.
    async fn update_resource(
        &self,
        connection_id: &str,
        kind: Kind,
        id: &str,
        expected_version: Option<i64>,
        write: ResourceWrite,
    ) -> StoreResult<WriteOutcome>;
    /// Deletes the resource and every membership that names it. A user is kept, invisible to
    /// SCIM and with its userName free, for the directory API until [`Store::prune_deleted`].
    async fn delete_resource(
        &self,
        connection_id: &str,
        kind: Kind,
        id: &str,
        expected_version: Option<i64>,
    ) -> StoreResult<()>;
    async fn list_resources(
        &self,
        connection_id: &str,
        kind: Kind,
        query: &ListQuery<'_>,
    ) -> StoreResult<Page>;
    /// Which of `ids` are users or groups of this connection.
    async fn existing_ids(
        &self,
        connection_id: &str,
        ids: &[String],
    ) -> StoreResult<HashMap<String, Kind>>;
    async fn count_resources(&self, kind: Kind) -> StoreResult<u64>;
    /// Leases up to `limit` users whose stored mapping is older than their connection's mapping
    /// generation (or was marked stale), for `lease`. Users leased by another worker and not
    /// yet expired are skipped, so two instances never map the same user at once.
    async fn claim_stale_users(
        &self,
        limit: u32,
        lease: std::time::Duration,
    ) -> StoreResult<Vec<StaleUser>>;
    /// Stores users' mapped views in one commit, each unless the user changed (another epoch)
    /// since it was computed, and ends their leases.
    async fn save_mapped(&self, saves: &[MappedSave]) -> StoreResult<()>;
    /// Marks the users that are members of this group stale (its name or external id changed).
    async fn mark_group_members_stale(
        &self,
        connection_id: &str,
        group_id: &str,
    ) -> StoreResult<()>;
    /// `(users, users mapped with the connection's current generation)`.
    async fn mapping_progress(&self, connection_id: &str) -> StoreResult<(u64, u64)>;
    /// Removes users deleted through SCIM before `before`; returns how many.
    async fn prune_deleted(&self, before: OffsetDateTime) -> StoreResult<u64>;
    /// How many members a group has, without reading them.
    async fn member_count(&self, connection_id: &str, group_id: &str) -> StoreResult<u64>;

    /// Appends entries to their connections' request logs in one commit, keeping only the
    /// newest `keep` entries of each.
    async fn log_requests(
        &self,
        entries: &[(String, RequestLogEntry)],
        keep: u32,
    ) -> StoreResult<()>;
    async fn recent_requests(
        &self,
        connection_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<RequestLogEntry>>;

    /// Makes committed events readable; returns how many. PostgreSQL's writers number events
    /// out of commit order, and this publishes how far the numbers are all committed; SQLite's
    /// are readable at their commit. Writes call nothing: a dispatcher calls this after writes
    /// and periodically (a crash between a commit and this call only delays the events).
    async fn sequence_events(&self) -> StoreResult<u64>;
    /// Sequenced events in sequence order.
    async fn events(&self, query: &EventQuery) -> StoreResult<Vec<Event>>;
    /// The highest sequence handed out so far (0 when there is none).
    async fn last_sequence(&self) -> StoreResult<i64>;
    /// Removes events that occurred before `before`, with their deliveries; returns how many.
    async fn prune_events(&self, before: OffsetDateTime) -> StoreResult<u64>;
    /// Emits `connection.scim_api_key_expiring` once for each current key that expires
    /// before `until`; returns how many.
    async fn warn_expiring_keys(&self, until: OffsetDateTime) -> StoreResult<u64>;

    /// A new endpoint receives the events sequenced after its creation.
    async fn create_webhook_endpoint(
        &self,
        new: NewWebhookEndpoint,
    ) -> StoreResult<WebhookEndpoint>;
    async fn webhook_endpoint(&self, id: &str) -> StoreResult<Option<WebhookEndpoint>>;
    async fn webhook_endpoints(&self) -> StoreResult<Vec<WebhookEndpoint>>;
    async fn update_webhook_endpoint(
        &self,
        id: &str,
        update: WebhookEndpointUpdate,
    ) -> StoreResult<Option<WebhookEndpoint>>;
    async fn delete_webhook_endpoint(&self, id: &str) -> StoreResult<bool>;
    /// Queues sequenced events for the endpoints they match, up to `limit` events per call;
    /// returns how many events it looked at.
    async fn fan_out_events(&self, limit: u32) -> StoreResult<u64>;
    /// Leases up to `streams` due streams of enabled endpoints, each with up to `batch` of its
    /// oldest pending deliveries. A leased stream is not handed to anyone else until the lease
    /// ends or its outcome is recorded.
    async fn claim_webhook_streams(
        &self,
        streams: u32,
        batch: u32,
        lease: std::time::Duration,
    ) -> StoreResult<Vec<ClaimedStream>>;
    /// Records the attempts, ends the lease and schedules the stream's next attempt; disables
    /// the endpoint (with a `webhook_endpoint.disabled` event) once a delivery has failed for
    /// the whole retry window.
    async fn complete_webhook_stream(&self, outcome: StreamOutcome) -> StoreResult<()>;
    /// The endpoint's deliveries, newest first, before the delivery id `before`.
    async fn webhook_deliveries(
        &self,
        endpoint_id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRecord>>;
    /// Sends a delivery again: a pending one at once, a delivered one as a new delivery.
    /// Returns the id of the delivery that will be attempted, `None` if there is no such
    /// delivery.
    async fn retry_webhook_delivery(
        &self,
        endpoint_id: &str,
        delivery_id: i64,
    ) -> StoreResult<Option<i64>>;
    /// Queues again, for this endpoint, every matching event after sequence `after` that it
    /// was already given; returns how many.
    async fn replay_webhook_events(&self, endpoint_id: &str, after: i64) -> StoreResult<u64>;
}
