//! The records the store keeps, independent of any backend.

use std::collections::HashSet;
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
    pub custom_mapping: Option<StoredMapping>,
}

/// A custom mapping to store, with what the store must know of it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMapping {
    pub value: Value,
    /// The mapping derives something from the user's groups (role rules), so a membership
    /// change makes the user's mapped view stale. Without it, membership changes cost the
    /// background recompute nothing.
    pub reads_groups: bool,
}

/// Fields to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ConnectionUpdate {
    pub display_name: Option<Option<String>>,
    pub identity_provider: Option<String>,
    pub status: Option<ConnectionStatus>,
    pub strict_members: Option<bool>,
    /// `Some(None)` removes the custom mapping.
    pub custom_mapping: Option<Option<StoredMapping>>,
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

/// What a SCIM key lookup finds: the key's state and its connection, read in one statement
/// because every SCIM request starts with it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimKeyRecord {
    pub connection: Connection,
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

impl ResourceWrite {
    /// An IdP re-sending the state it sent before (they do, constantly): nothing to change, so
    /// no new version, no new lastModified, nothing to recompute.
    pub(crate) fn is_unchanged(&self, current: &StoredResource) -> bool {
        self.members.is_empty() && self.body == current.body
    }
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

impl StoredResource {
    /// A resource as a create writes it, taking the write's body and mapped view: version 1,
    /// created and modified `at`. A new user is in no group (members must exist when they are
    /// added); a new group's members are read back after its rows are written.
    pub(crate) fn created(
        id: &str,
        kind: Kind,
        at: OffsetDateTime,
        write: &mut ResourceWrite,
    ) -> StoredResource {
        StoredResource {
            id: id.to_owned(),
            kind,
            version: 1,
            created: at,
            last_modified: at,
            body: std::mem::take(&mut write.body),
            members: None,
            groups: (kind == Kind::User).then(Vec::new),
            mapped: write.mapped.take(),
            deleted_at: None,
        }
    }

    /// This resource after a write that replaced its body: the next version, modified `at`.
    /// Members and groups are left unloaded.
    pub(crate) fn rewritten(
        &self,
        body: Value,
        mapped: Option<MappedRecord>,
        at: OffsetDateTime,
    ) -> StoredResource {
        StoredResource {
            id: self.id.clone(),
            kind: self.kind,
            version: self.version + 1,
            created: self.created,
            last_modified: at,
            body,
            members: None,
            groups: None,
            mapped,
            deleted_at: None,
        }
    }
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

    /// Records the rows one statement inserted, in the order they were asked for. A member
    /// removed earlier in the same write and added back is no change at all.
    pub fn inserted(&mut self, members: &[&Member]) {
        let ids: HashSet<&str> = members.iter().map(|m| m.id.as_str()).collect();
        let mut restored: HashSet<String> = HashSet::new();
        self.removed.retain(|id| {
            let back = ids.contains(id.as_str());
            if back {
                restored.insert(id.clone());
            }
            !back
        });
        self.added.extend(
            members
                .iter()
                .filter(|m| !restored.contains(&m.id))
                .map(|m| (*m).clone()),
        );
    }

    /// Records the rows one statement deleted; undoes additions made earlier in the same write.
    pub fn deleted(&mut self, ids: Vec<String>) {
        let gone: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let mut undone: HashSet<String> = HashSet::new();
        self.added.retain(|m| {
            let cancel = gone.contains(m.id.as_str());
            if cancel {
                undone.insert(m.id.clone());
            }
            !cancel
        });
        let mut already: HashSet<String> = self.removed.iter().cloned().collect();
        for id in ids {
            if !undone.contains(&id) && already.insert(id.clone()) {
                self.removed.push(id);
            }
        }
    }
}

/// A write's member changes as runs of the same kind, each run one statement: consecutive adds
/// (each id once, first wins), consecutive removes, or a clear. Runs keep the order of the ops.
#[derive(Debug, PartialEq)]
pub enum MemberRun<'a> {
    Add(Vec<&'a Member>),
    Remove(Vec<&'a str>),
    Clear,
}

impl MemberRun<'_> {
    pub fn of(ops: &[MemberOp]) -> Vec<MemberRun<'_>> {
        let mut runs: Vec<MemberRun<'_>> = Vec::new();
        // The ids of the current run of adds.
        let mut adding: HashSet<&str> = HashSet::new();
        for op in ops {
            match (op, runs.last_mut()) {
                (MemberOp::Add(m), Some(MemberRun::Add(run))) => {
                    if adding.insert(&m.id) {
                        run.push(m);
                    }
                }
                (MemberOp::Add(m), _) => {
                    adding = HashSet::from([m.id.as_str()]);
                    runs.push(MemberRun::Add(vec![m]));
                }
                (MemberOp::Remove(id), Some(MemberRun::Remove(run))) => run.push(id),
                (MemberOp::Remove(id), _) => runs.push(MemberRun::Remove(vec![id])),
                (MemberOp::Clear, _) => runs.push(MemberRun::Clear),
            }
        }
        runs
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

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> Member {
        Member {
            id: id.to_owned(),
            kind: Kind::User,
            display: None,
        }
    }

    #[test]
    fn member_ops_fold_into_ordered_runs_with_each_added_id_once() {
        let ops = vec![
            MemberOp::Add(user("a")),
            MemberOp::Add(user("b")),
            MemberOp::Add(user("a")),
            MemberOp::Remove("a".into()),
            MemberOp::Remove("c".into()),
            MemberOp::Clear,
            MemberOp::Add(user("a")),
        ];
        let (a, b) = (user("a"), user("b"));
        assert_eq!(
            MemberRun::of(&ops),
            vec![
                MemberRun::Add(vec![&a, &b]),
                MemberRun::Remove(vec!["a", "c"]),
                MemberRun::Clear,
                MemberRun::Add(vec![&a]),
            ]
        );
    }

    #[test]
    fn a_delta_cancels_a_removal_and_an_addition_of_the_same_member() {
        let (a, b) = (user("a"), user("b"));
        let mut delta = MemberDelta::default();
        delta.deleted(vec!["a".into(), "c".into()]);
        delta.inserted(&[&a, &b]);
        assert_eq!(delta.added, vec![b.clone()], "a came back: no change");
        assert_eq!(delta.removed, vec!["c".to_owned()]);
        delta.deleted(vec!["b".into(), "c".into()]);
        assert!(delta.added.is_empty(), "b added then removed: no change");
        assert_eq!(delta.removed, vec!["c".to_owned()], "c is removed once");
    }
}
