//! The records the store keeps, independent of any backend.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

/// Whether a connection's SCIM API answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    Active,
    Disabled,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Active => "active",
            ConnectionStatus::Disabled => "disabled",
        }
    }
}

impl FromStr for ConnectionStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(ConnectionStatus::Active),
            "disabled" => Ok(ConnectionStatus::Disabled),
            other => Err(format!("unknown connection status '{other}'")),
        }
    }
}

/// One customer's SCIM connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    pub id: String,
    pub customer_id: String,
    pub display_name: Option<String>,
    pub identity_provider: String,
    pub status: ConnectionStatus,
    pub strict_members: bool,
    pub custom_mapping: Option<Value>,
    /// When the newest SCIM API key expires; `None` means never.
    pub scim_api_key_expires_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// Bumped whenever the mapping changes (custom mapping or identity provider preset); users
    /// mapped with an older generation are recomputed in the background.
    pub mapping_generation: i64,
}

#[derive(Debug, Clone)]
pub struct NewConnection {
    pub id: String,
    pub customer_id: String,
    pub display_name: Option<String>,
    pub identity_provider: String,
    pub strict_members: bool,
    pub custom_mapping: Option<Value>,
}

/// Fields to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ConnectionUpdate {
    pub display_name: Option<Option<String>>,
    pub identity_provider: Option<String>,
    pub status: Option<ConnectionStatus>,
    pub strict_members: Option<bool>,
    /// `Some(None)` removes the custom mapping.
    pub custom_mapping: Option<Option<Value>>,
}

/// A SCIM API key as stored: only its hash.
#[derive(Debug, Clone)]
pub struct NewScimKey {
    pub hash: Vec<u8>,
    pub expires_at: Option<OffsetDateTime>,
}

/// A link to the hosted setup page of one connection.
#[derive(Debug, Clone, PartialEq)]
pub struct SetupLink {
    pub id: String,
    pub connection_id: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

impl SetupLink {
    /// Whether the link still opens its page at `now`.
    pub fn is_usable(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

#[derive(Debug, Clone)]
pub struct NewSetupLink {
    pub id: String,
    pub connection_id: String,
    /// The token's hash; the token itself is never stored.
    pub token_hash: Vec<u8>,
    pub expires_at: OffsetDateTime,
}

/// What a SCIM key lookup finds.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimKeyRecord {
    pub connection_id: String,
    /// The earlier of the key's own expiry and, for a replaced key, the end of its overlap.
    pub valid_until: Option<OffsetDateTime>,
    /// The key was replaced by a reset (its overlap may still be running).
    pub replaced: bool,
}

/// An integration key for the management API, without its secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntegrationKey {
    pub id: String,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// The two SCIM resource types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    User,
    Group,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "User" => Some(Kind::User),
            "Group" => Some(Kind::Group),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One member of a group as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub id: String,
    pub kind: Kind,
    pub display: Option<String>,
}

/// A change to a group's members, applied in order within the write's transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberOp {
    /// Adds the member unless it is already there.
    Add(Member),
    Remove(String),
    /// Removes every member.
    Clear,
}

/// The indexed columns of a resource, derived from its body by the caller.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexedFields {
    /// `userName` for users, `displayName` for groups, as given.
    pub name: Option<String>,
    pub external_id: Option<String>,
    pub active: Option<bool>,
    /// Every `emails.value` of a user.
    pub emails: Vec<String>,
}

/// A user as the app's mapping saw it, and the mapping generation that produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedRecord {
    pub generation: i64,
    pub value: Value,
}

/// A write of a resource's body: the body excludes `id`, `meta` and, for groups, `members`.
#[derive(Debug, Clone)]
pub struct ResourceWrite {
    pub body: Value,
    pub indexed: IndexedFields,
    pub members: Vec<MemberOp>,
    /// For users: the mapped view of the new body. `None` leaves the user for the background
    /// recompute.
    pub mapped: Option<MappedRecord>,
}

/// A resource as stored, with the server-owned fields.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResource {
    pub id: String,
    pub kind: Kind,
    pub version: i64,
    pub created: OffsetDateTime,
    pub last_modified: OffsetDateTime,
    pub body: Value,
    /// Loaded only when asked for.
    pub members: Option<Vec<Member>>,
    /// For users, the groups that list them directly; loaded when asked for.
    pub groups: Option<Vec<Member>>,
    /// For users, the stored mapped view, whatever its generation.
    pub mapped: Option<MappedRecord>,
    /// When the user was deleted through SCIM; only seen with [`Load::deleted`].
    pub deleted_at: Option<OffsetDateTime>,
}

/// What a write did to a group's membership (members actually added and removed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemberDelta {
    pub added: Vec<Member>,
    pub removed: Vec<String>,
}

impl MemberDelta {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }

    /// Records a row that was inserted. A member removed earlier in the same write and added
    /// back is no change at all.
    pub fn inserted(&mut self, member: &Member) {
        let before = self.removed.len();
        self.removed.retain(|id| id != &member.id);
        if self.removed.len() == before {
            self.added.push(member.clone());
        }
    }

    /// Records a row that was deleted; undoes an addition made earlier in the same write.
    pub fn deleted(&mut self, id: String) {
        let before = self.added.len();
        self.added.retain(|m| m.id != id);
        if self.added.len() == before && !self.removed.contains(&id) {
            self.removed.push(id);
        }
    }
}

/// The result of a create or replace.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteOutcome {
    pub resource: StoredResource,
    pub members: MemberDelta,
}

/// Which related rows to load with resources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    pub members: bool,
    pub groups: bool,
    /// Also users deleted through SCIM whose retention has not ended (the directory API).
    pub deleted: bool,
}

/// One SCIM request as the request log keeps it: no bodies, no secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestLogEntry {
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub request_id: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub latency_ms: u64,
    pub scim_type: Option<String>,
    pub detail: Option<String>,
    pub warnings: Vec<String>,
}
