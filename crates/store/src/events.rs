//! The outbox and webhook delivery records.
//!
//! Every write that changes the directory or a connection inserts its events in the same
//! transaction as the change. The store does not decide what an event says: it is opened with
//! an [`EventSource`] and calls it inside each transaction with what the write actually did
//! ([`Effect`]), read under the write's locks. So a write that changed nothing emits nothing,
//! an event never describes a write that rolled back, and what it says is what was committed.

use serde_json::Value;
use time::OffsetDateTime;

use crate::model::{Connection, Kind, MappedRecord, MemberDelta, ResourceWrite, StoredResource};

/// What a write did, as the store saw it inside its transaction.
#[derive(Debug, Clone, Copy)]
pub enum Effect<'a> {
    ConnectionCreated(&'a Connection),
    ConnectionUpdated {
        before: &'a Connection,
        after: &'a Connection,
    },
    ConnectionDeleted(&'a Connection),
    ScimKeyReset(&'a Connection),
    ScimKeyExpiring {
        connection: &'a Connection,
        expires_at: OffsetDateTime,
    },
    /// A user or group created (`before` is `None`) or changed. `after` carries no member or
    /// group rows: `groups` are a user's groups, `members` what the write did to a group's
    /// membership.
    ResourceWritten {
        connection: &'a Connection,
        before: Option<&'a StoredResource>,
        after: &'a StoredResource,
        groups: &'a [GroupSummary],
        members: &'a MemberDelta,
    },
    /// `resource` as it was; `groups` are the groups a user was in.
    ResourceDeleted {
        connection: &'a Connection,
        resource: &'a StoredResource,
        groups: &'a [GroupSummary],
    },
    EndpointDisabled(&'a WebhookEndpoint),
}

/// A group a user is a direct member of, with what role rules match on.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSummary {
    pub id: String,
    pub display_name: Option<String>,
    pub external_id: Option<String>,
}

/// Turns what a write did into the events it emits. Called inside the write's transaction, so
/// it must be quick and must not touch the store.
pub trait EventSource: Send + Sync + 'static {
    fn events(&self, effect: Effect<'_>) -> Vec<NewEvent>;

    /// The user's mapped view as the app sees it, from what the write's transaction sees (a
    /// create, from the connection as it read it just before: a mapping changed meanwhile
    /// leaves the user a generation behind). A write stores it with the user, so the
    /// background recompute has nothing to do for it. `None` leaves the user to that recompute.
    fn mapped_view(
        &self,
        _connection: &Connection,
        _user: &StoredResource,
        _groups: &[GroupSummary],
    ) -> Option<MappedRecord> {
        None
    }
}

impl<F> EventSource for F
where
    F: Fn(Effect<'_>) -> Vec<NewEvent> + Send + Sync + 'static,
{
    fn events(&self, effect: Effect<'_>) -> Vec<NewEvent> {
        self(effect)
    }
}

/// An event as a write emits it; the store gives it an id, a time and a sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_type: String,
    pub connection_id: Option<String>,
    pub customer_id: Option<String>,
    pub data: Value,
    pub changes: Value,
}

/// An event as the outbox keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    /// Strictly increasing in the order events became visible: a reader that has seen
    /// sequence `n` has seen every event it will ever be shown below `n`.
    pub sequence: i64,
    pub event_type: String,
    pub connection_id: Option<String>,
    pub customer_id: Option<String>,
    pub occurred_at: OffsetDateTime,
    pub data: Value,
    pub changes: Value,
}

/// A page of the event log.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only events with a greater sequence.
    pub after: i64,
    pub limit: u32,
    pub connection_id: Option<String>,
    pub customer_id: Option<String>,
    /// Only these types; empty means all.
    pub types: Vec<String>,
}

pub(crate) fn new_event_id() -> String {
    format!("evt_{}", uuid::Uuid::now_v7().simple())
}

/// A receiver of webhooks.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEndpoint {
    pub id: String,
    pub url: String,
    pub description: Option<String>,
    /// Only these event types; empty means all.
    pub event_types: Vec<String>,
    /// Only events of this connection; `None` means all.
    pub connection_id: Option<String>,
    pub enabled: bool,
    /// Why delivery stopped, when scimgate disabled the endpoint itself.
    pub disabled_reason: Option<String>,
    /// The Standard Webhooks signing secret (`whsec_…`). Kept as is: signing needs it.
    pub secret: String,
    /// The secret before the last rotation, while it is still valid.
    pub previous_secret: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl WebhookEndpoint {
    /// Whether an event goes to this endpoint.
    pub fn wants(&self, event_type: &str, connection_id: Option<&str>) -> bool {
        (self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type))
            && self
                .connection_id
                .as_deref()
                .is_none_or(|c| Some(c) == connection_id)
    }
}

#[derive(Debug, Clone)]
pub struct NewWebhookEndpoint {
    pub id: String,
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
    pub connection_id: Option<String>,
    pub enabled: bool,
    pub secret: String,
}

/// Fields to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct WebhookEndpointUpdate {
    pub url: Option<String>,
    pub description: Option<Option<String>>,
    pub event_types: Option<Vec<String>>,
    pub connection_id: Option<Option<String>>,
    /// Enabling an endpoint resumes its queue where it stopped, with fresh retry windows.
    pub enabled: Option<bool>,
    /// A new signing secret; the current one keeps signing too until `previous_secret_until`.
    pub secret: Option<String>,
    pub previous_secret_until: Option<OffsetDateTime>,
}

/// One event waiting for (or given to) one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: i64,
    pub event: Event,
    /// Attempts made so far.
    pub attempts: u32,
}

/// An endpoint's queue for one connection (the stream), leased to one dispatcher.
#[derive(Debug, Clone)]
pub struct ClaimedStream {
    pub endpoint: WebhookEndpoint,
    /// The connection id, or `""` for events that belong to none.
    pub stream: String,
    /// Proves the lease when the results come back.
    pub lease: String,
    /// The oldest pending deliveries, in sequence order.
    pub deliveries: Vec<Delivery>,
}

/// One HTTP attempt at a delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub delivery_id: i64,
    pub at: OffsetDateTime,
    pub success: bool,
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    /// The start of the response body.
    pub response: Option<String>,
    pub error: Option<String>,
}

/// What a dispatcher did with a claimed stream: attempts in order, all successes except
/// perhaps the last.
#[derive(Debug, Clone)]
pub struct StreamOutcome {
    pub endpoint_id: String,
    pub stream: String,
    pub lease: String,
    pub attempts: Vec<Attempt>,
    /// When to try the failed delivery again.
    pub retry_at: Option<OffsetDateTime>,
    /// Disable the endpoint when a delivery has been failing for longer than this.
    pub retry_window: time::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Delivered,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
        }
    }

    pub(crate) fn parse(s: &str) -> DeliveryState {
        if s == "delivered" {
            DeliveryState::Delivered
        } else {
            DeliveryState::Pending
        }
    }
}

/// A delivery with its history, for the deliveries log.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    pub sequence: i64,
    pub connection_id: Option<String>,
    pub state: DeliveryState,
    pub created_at: OffsetDateTime,
    pub delivered_at: Option<OffsetDateTime>,
    /// While pending: when the next attempt is due (`None` while earlier events of the same
    /// connection are ahead of it, or the endpoint is disabled).
    pub next_attempt_at: Option<OffsetDateTime>,
    pub attempts: Vec<Attempt>,
}

/// The first bytes of a response body kept with an attempt.
pub const RESPONSE_EXCERPT_BYTES: usize = 1024;

pub(crate) fn parse_types(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

pub(crate) fn types_text(types: &[String]) -> String {
    serde_json::to_string(types).unwrap_or_else(|_| "[]".to_owned())
}

/// What a resource write's mapped view and events are computed from, read inside its
/// transaction before the row is written, so the row carries its mapped view from the start.
pub(crate) struct WriteContext {
    pub connection: Connection,
    /// The user's groups; empty for a group, and for a user being created (members must exist
    /// when they are added, so a new user is in no group).
    pub groups: Vec<GroupSummary>,
}

impl WriteContext {
    /// A user about to be created, as it will be stored (with its mapped view), and the events
    /// its create emits. No events when the connection is gone: the insert then fails on its
    /// foreign key.
    pub fn new_user(
        connection: Option<Connection>,
        events: &dyn EventSource,
        id: &str,
        at: OffsetDateTime,
        write: &mut ResourceWrite,
    ) -> (StoredResource, Vec<NewEvent>) {
        let mut resource = StoredResource::created(id, Kind::User, at, write);
        let Some(connection) = connection else {
            return (resource, Vec::new());
        };
        let context = WriteContext {
            connection,
            groups: Vec::new(),
        };
        context.map(events, &mut resource);
        let created = context.events(events, None, &resource, &MemberDelta::default());
        (resource, created)
    }

    /// Stores the user's mapped view in `resource`, where the event source gives one.
    pub fn map(&self, events: &dyn EventSource, resource: &mut StoredResource) {
        if resource.kind == Kind::User {
            if let Some(record) = events.mapped_view(&self.connection, resource, &self.groups) {
                resource.mapped = Some(record);
            }
        }
    }

    pub fn events(
        &self,
        events: &dyn EventSource,
        before: Option<&StoredResource>,
        after: &StoredResource,
        members: &MemberDelta,
    ) -> Vec<NewEvent> {
        events.events(Effect::ResourceWritten {
            connection: &self.connection,
            before,
            after,
            groups: &self.groups,
            members,
        })
    }
}
