//! What each change tells the app: the event types, and the mapped user, group or connection
//! each event carries, built inside the store's write transaction from what the write did.

use scimgate_mapping::{GroupRef, Mapped};
use scimgate_protocol::{Projection, SchemaRegistry};
use scimgate_store::{
    Connection, Effect, EventSource, GroupSummary, Kind, MappedRecord, Member, MemberDelta,
    NewEvent, StoredResource, WebhookEndpoint,
};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::management::connections::ConnectionView;
use crate::management::directory::{group_view, mapping_for, render_user};
use crate::scim::render::to_scim;
use crate::webhooks::EndpointView;

/// Every event type, in the order the documentation lists them.
pub const EVENT_TYPES: &[&str] = &[
    "connection.created",
    "connection.updated",
    "connection.deleted",
    "connection.scim_api_key_reset",
    "connection.scim_api_key_expiring",
    "user.created",
    "user.updated",
    "user.deactivated",
    "user.reactivated",
    "user.deleted",
    "group.created",
    "group.updated",
    "group.deleted",
    "group.member_added",
    "group.member_removed",
    "webhook_endpoint.disabled",
];

/// Fields of a view that change on every write and say nothing by themselves.
const UNCOMPARED: &[&str] = &["created_at", "updated_at"];

/// The user as this transaction sees it, with its groups.
fn with_groups(user: &StoredResource, groups: &[GroupSummary]) -> StoredResource {
    let mut user = user.clone();
    user.groups = Some(
        groups
            .iter()
            .map(|g| Member {
                id: g.id.clone(),
                kind: Kind::Group,
                display: g.display_name.clone(),
            })
            .collect(),
    );
    user
}

pub struct Describer {
    registry: SchemaRegistry,
    public_url: String,
}

impl Describer {
    pub fn new(public_url: &str) -> Self {
        Describer {
            registry: SchemaRegistry::standard(),
            public_url: public_url.to_owned(),
        }
    }

    /// The user's mapped view: the stored one when it is current (mapped at this connection's
    /// mapping generation, and made stale by any change that could alter it), else computed.
    /// `user.groups` must hold `groups`.
    fn mapped(
        &self,
        connection: &Connection,
        user: &StoredResource,
        groups: &[GroupSummary],
    ) -> Option<Mapped> {
        let rs = self.registry.view(Kind::User.as_str())?;
        let stored = user
            .mapped
            .as_ref()
            .filter(|m| m.generation == connection.mapping_generation)
            .and_then(|m| serde_json::from_value::<Mapped>(m.value.clone()).ok());
        if stored.is_some() {
            return stored;
        }
        let base_url = format!("{}/scim/v2/{}", self.public_url, connection.id);
        let scim = Projection::default().apply(&to_scim(user, &base_url), &rs);
        let refs: Vec<GroupRef> = groups
            .iter()
            .map(|g| GroupRef {
                display_name: g.display_name.clone(),
                external_id: g.external_id.clone(),
            })
            .collect();
        Some(mapping_for(&rs, connection).apply(&scim, &refs, &rs))
    }

    fn user_view(
        &self,
        connection: &Connection,
        user: &StoredResource,
        groups: &[GroupSummary],
    ) -> Value {
        let user = with_groups(user, groups);
        let Some(mapped) = self.mapped(connection, &user, groups) else {
            return Value::Null;
        };
        serde_json::to_value(render_user(connection, &user, mapped, None)).unwrap_or(Value::Null)
    }

    fn connection_view(&self, connection: &Connection) -> Value {
        serde_json::to_value(ConnectionView::new(&self.public_url, connection))
            .unwrap_or(Value::Null)
    }

    fn resource_written(
        &self,
        connection: &Connection,
        before: Option<&StoredResource>,
        after: &StoredResource,
        groups: &[GroupSummary],
        members: &MemberDelta,
    ) -> Vec<NewEvent> {
        let event = |event_type: &str, data: Value, changes: Value| NewEvent {
            event_type: event_type.to_owned(),
            connection_id: Some(connection.id.clone()),
            customer_id: Some(connection.customer_id.clone()),
            data,
            changes,
        };
        let mut events = Vec::new();
        match after.kind {
            Kind::User => {
                let data = self.user_view(connection, after, groups);
                match before {
                    None => events.push(event("user.created", data, json!([]))),
                    Some(before) => {
                        let previous = self.user_view(connection, before, groups);
                        let changes = changes(&previous, &data);
                        // A change the app's view does not show (a password, a swallowed
                        // attribute) is no news to the app.
                        if !changes.is_empty() {
                            let event_type =
                                match (previous["active"].as_bool(), data["active"].as_bool()) {
                                    (Some(true), Some(false)) => "user.deactivated",
                                    (Some(false), Some(true)) => "user.reactivated",
                                    _ => "user.updated",
                                };
                            events.push(event(event_type, data, Value::Array(changes)));
                        }
                    }
                }
            }
            Kind::Group => {
                let view = |g: &StoredResource| {
                    serde_json::to_value(group_view(&connection.id, g, None)).unwrap_or(Value::Null)
                };
                let data = view(after);
                match before {
                    None => events.push(event("group.created", data.clone(), json!([]))),
                    Some(before) => {
                        let changes = changes(&view(before), &data);
                        if !changes.is_empty() {
                            events.push(event(
                                "group.updated",
                                data.clone(),
                                Value::Array(changes),
                            ));
                        }
                    }
                }
                for member in &members.added {
                    events.push(event(
                        "group.member_added",
                        json!({"group": data, "member": {"member_id": member.id, "type": member.kind.as_str(), "display": member.display}}),
                        json!([]),
                    ));
                }
                for id in &members.removed {
                    events.push(event(
                        "group.member_removed",
                        json!({"group": data, "member": {"member_id": id}}),
                        json!([]),
                    ));
                }
            }
        }
        events
    }

    fn resource_deleted(
        &self,
        connection: &Connection,
        resource: &StoredResource,
        groups: &[GroupSummary],
    ) -> NewEvent {
        let (event_type, data) = match resource.kind {
            Kind::User => {
                let mut gone = resource.clone();
                gone.deleted_at = Some(OffsetDateTime::now_utc());
                ("user.deleted", self.user_view(connection, &gone, groups))
            }
            Kind::Group => (
                "group.deleted",
                serde_json::to_value(group_view(&connection.id, resource, None))
                    .unwrap_or(Value::Null),
            ),
        };
        NewEvent {
            event_type: event_type.to_owned(),
            connection_id: Some(connection.id.clone()),
            customer_id: Some(connection.customer_id.clone()),
            data,
            changes: json!([]),
        }
    }

    fn connection_event(
        &self,
        event_type: &str,
        connection: &Connection,
        changes: Vec<Value>,
    ) -> NewEvent {
        NewEvent {
            event_type: event_type.to_owned(),
            connection_id: Some(connection.id.clone()),
            customer_id: Some(connection.customer_id.clone()),
            data: self.connection_view(connection),
            changes: Value::Array(changes),
        }
    }

    fn endpoint_disabled(&self, endpoint: &WebhookEndpoint) -> NewEvent {
        NewEvent {
            event_type: "webhook_endpoint.disabled".to_owned(),
            connection_id: endpoint.connection_id.clone(),
            customer_id: None,
            data: serde_json::to_value(EndpointView::from(endpoint)).unwrap_or(Value::Null),
            changes: json!([]),
        }
    }
}

impl EventSource for Describer {
    fn mapped_view(
        &self,
        connection: &Connection,
        user: &StoredResource,
        groups: &[GroupSummary],
    ) -> Option<MappedRecord> {
        let mapped = self.mapped(connection, &with_groups(user, groups), groups)?;
        Some(MappedRecord {
            generation: connection.mapping_generation,
            value: serde_json::to_value(mapped).ok()?,
        })
    }

    fn events(&self, effect: Effect<'_>) -> Vec<NewEvent> {
        match effect {
            Effect::ConnectionCreated(c) => {
                vec![self.connection_event("connection.created", c, vec![])]
            }
            Effect::ConnectionUpdated { before, after } => {
                let changes = changes(&self.connection_view(before), &self.connection_view(after));
                if changes.is_empty() {
                    vec![]
                } else {
                    vec![self.connection_event("connection.updated", after, changes)]
                }
            }
            Effect::ConnectionDeleted(c) => {
                vec![self.connection_event("connection.deleted", c, vec![])]
            }
            Effect::ScimKeyReset(c) => {
                vec![self.connection_event("connection.scim_api_key_reset", c, vec![])]
            }
            Effect::ScimKeyExpiring { connection, .. } => {
                vec![self.connection_event("connection.scim_api_key_expiring", connection, vec![])]
            }
            Effect::ResourceWritten {
                connection,
                before,
                after,
                groups,
                members,
            } => self.resource_written(connection, before, after, groups, members),
            Effect::ResourceDeleted {
                connection,
                resource,
                groups,
            } => vec![self.resource_deleted(connection, resource, groups)],
            Effect::EndpointDisabled(endpoint) => vec![self.endpoint_disabled(endpoint)],
        }
    }
}

/// The fields that differ between two views, each with its previous value: nested objects
/// (a user's `properties`) by dotted path, everything else whole.
pub fn changes(before: &Value, after: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    diff("", before, after, &mut out);
    out
}

fn diff(prefix: &str, before: &Value, after: &Value, out: &mut Vec<Value>) {
    let (Some(old), Some(new)) = (before.as_object(), after.as_object()) else {
        if before != after {
            out.push(json!({"field": prefix, "previous": before}));
        }
        return;
    };
    let keys = old
        .keys()
        .chain(new.keys().filter(|k| !old.contains_key(*k)));
    for key in keys {
        if prefix.is_empty() && UNCOMPARED.contains(&key.as_str()) {
            continue;
        }
        let field = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let old_value = old.get(key).unwrap_or(&Value::Null);
        let new_value = new.get(key).unwrap_or(&Value::Null);
        if old_value.is_object() && new_value.is_object() {
            diff(&field, old_value, new_value, out);
        } else if old_value != new_value {
            out.push(json!({"field": field, "previous": old_value}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_name_nested_fields_and_skip_timestamps() {
        let before = json!({"email": "a@x", "active": true, "updated_at": "1", "properties": {"dept": "R&D", "gone": 1}});
        let after = json!({"email": "b@x", "active": true, "updated_at": "2", "properties": {"dept": "Sales", "new": 2}});
        assert_eq!(
            changes(&before, &after),
            [
                json!({"field": "email", "previous": "a@x"}),
                json!({"field": "properties.dept", "previous": "R&D"}),
                json!({"field": "properties.gone", "previous": 1}),
                json!({"field": "properties.new", "previous": null}),
            ]
        );
        assert!(changes(&before, &before).is_empty());
    }
}
