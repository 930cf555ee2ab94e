//! The behavioural suite every backend must pass. Each backend's test file calls
//! `store_suite!` with an async constructor of a fresh, empty store.

use scimgate_protocol::{AttrPath, Filter, ResourceSchemas, SchemaRegistry};
use scimgate_store::*;
use serde_json::json;
use time::{Duration, OffsetDateTime};

pub fn new_connection(customer: &str) -> (NewConnection, NewScimKey) {
    (
        NewConnection {
            id: uuid::Uuid::new_v4().to_string(),
            customer_id: customer.to_owned(),
            display_name: Some(format!("{customer} Inc")),
            identity_provider: "okta".into(),
            strict_members: false,
            custom_mapping: None,
        },
        NewScimKey {
            hash: format!("hash-{customer}").into_bytes(),
            expires_at: None,
        },
    )
}

pub fn user(name: &str, email: &str) -> ResourceWrite {
    ResourceWrite {
        body: json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name, "emails": [{"value": email}], "active": true}),
        indexed: IndexedFields {
            name: Some(name.to_owned()),
            external_id: Some(format!("ext-{name}")),
            active: Some(true),
            emails: vec![email.to_owned()],
        },
        members: vec![],
        mapped: None,
    }
}

pub fn group(name: &str, members: Vec<MemberOp>) -> ResourceWrite {
    ResourceWrite {
        body: json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name}),
        indexed: IndexedFields {
            name: Some(name.to_owned()),
            ..IndexedFields::default()
        },
        members,
        mapped: None,
    }
}

pub fn member(id: &str) -> Member {
    Member {
        id: id.to_owned(),
        kind: Kind::User,
        display: None,
    }
}

pub async fn connection_lifecycle(store: &dyn Store) {
    let (new, key) = new_connection("acme");
    let created = store
        .create_connection(new.clone(), key)
        .await
        .expect("create");
    assert_eq!(created.customer_id, "acme");
    assert_eq!(created.status, ConnectionStatus::Active);
    assert_eq!(
        store.connection(&new.id).await.expect("get"),
        Some(created.clone())
    );
    assert_eq!(
        store
            .connection_by_customer("acme")
            .await
            .expect("by customer"),
        Some(created.clone())
    );

    let (dup, dup_key) = new_connection("acme");
    match store
        .create_connection(
            dup,
            NewScimKey {
                hash: b"other".to_vec(),
                ..dup_key
            },
        )
        .await
    {
        Err(StoreError::CustomerHasConnection(c)) => assert_eq!(c, "acme"),
        other => panic!("expected a customer conflict, got {other:?}"),
    }

    let updated = store
        .update_connection(
            &new.id,
            ConnectionUpdate {
                status: Some(ConnectionStatus::Disabled),
                display_name: Some(None),
                ..Default::default()
            },
        )
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(updated.status, ConnectionStatus::Disabled);
    assert_eq!(updated.display_name, None);
    assert_eq!(updated.identity_provider, "okta");
    let mapped = store
        .update_connection(
            &new.id,
            ConnectionUpdate {
                custom_mapping: Some(Some(StoredMapping {
                    value: json!({"default_role": "member"}),
                    reads_groups: false,
                })),
                ..Default::default()
            },
        )
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(
        mapped.custom_mapping,
        Some(json!({"default_role": "member"}))
    );
    let cleared = store
        .update_connection(
            &new.id,
            ConnectionUpdate {
                custom_mapping: Some(None),
                ..Default::default()
            },
        )
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(cleared.custom_mapping, None);
    assert_eq!(
        cleared.status,
        ConnectionStatus::Disabled,
        "other fields stay"
    );
    assert!(store
        .update_connection("nope", ConnectionUpdate::default())
        .await
        .expect("update")
        .is_none());

    for c in ["b", "c", "d"] {
        let (n, k) = new_connection(c);
        store.create_connection(n, k).await.expect("create");
    }
    let first = store.list_connections(None, 2).await.expect("list");
    assert_eq!(first.len(), 2);
    let rest = store
        .list_connections(Some(&first[1].id), 10)
        .await
        .expect("list");
    assert_eq!(rest.len(), 2);
    assert!(rest.iter().all(|c| !first.contains(c)));
    assert_eq!(store.count_connections().await.expect("count"), 4);

    let u = store
        .create_resource(&new.id, Kind::User, "u1", user("alice", "a@x.org"))
        .await
        .expect("user");
    store
        .create_resource(
            &new.id,
            Kind::Group,
            "g1",
            group("G", vec![MemberOp::Add(member(&u.resource.id))]),
        )
        .await
        .expect("group");
    assert!(store.delete_connection(&new.id).await.expect("delete"));
    assert!(store.connection(&new.id).await.expect("get").is_none());
    assert!(store
        .resource(&new.id, Kind::User, "u1", Load::default())
        .await
        .expect("get")
        .is_none());
    assert!(
        store.scim_key(b"hash-acme").await.expect("key").is_none(),
        "keys go with the connection"
    );
    assert!(!store
        .delete_connection(&new.id)
        .await
        .expect("delete twice"));
}

pub async fn scim_keys_rotate_with_overlap(store: &dyn Store) {
    let (new, key) = new_connection("keys");
    store
        .create_connection(new.clone(), key)
        .await
        .expect("create");
    let found = store
        .scim_key(b"hash-keys")
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(found.connection.id, new.id);
    assert_eq!(found.connection.display_name, new.display_name);
    assert_eq!(found.valid_until, None);
    assert!(!found.replaced);

    let expiry = OffsetDateTime::now_utc() + Duration::days(30);
    let overlap_end = OffsetDateTime::now_utc() + Duration::hours(1);
    let connection = store
        .replace_scim_key(
            &new.id,
            NewScimKey {
                hash: b"second".to_vec(),
                expires_at: Some(expiry),
            },
            overlap_end,
        )
        .await
        .expect("replace")
        .expect("exists");
    assert_eq!(
        connection
            .scim_api_key_expires_at
            .map(|t| t.unix_timestamp()),
        Some(expiry.unix_timestamp())
    );
    let old = store
        .scim_key(b"hash-keys")
        .await
        .expect("lookup")
        .expect("old key kept");
    assert!(old.replaced);
    assert_eq!(
        old.valid_until.map(|t| t.unix_timestamp()),
        Some(overlap_end.unix_timestamp())
    );
    let new_key = store
        .scim_key(b"second")
        .await
        .expect("lookup")
        .expect("new key");
    assert!(!new_key.replaced);

    // A second reset without overlap cuts every earlier key short, the first one included.
    store
        .replace_scim_key(
            &new.id,
            NewScimKey {
                hash: b"third".to_vec(),
                expires_at: None,
            },
            OffsetDateTime::now_utc(),
        )
        .await
        .expect("replace")
        .expect("exists");
    for old_key in [b"hash-keys".as_slice(), b"second".as_slice()] {
        let record = store
            .scim_key(old_key)
            .await
            .expect("lookup")
            .expect("kept");
        assert!(record.replaced);
        assert!(
            record.valid_until.expect("capped") <= OffsetDateTime::now_utc(),
            "{record:?}"
        );
    }

    assert!(store
        .replace_scim_key(
            "missing",
            NewScimKey {
                hash: b"x".to_vec(),
                expires_at: None
            },
            overlap_end
        )
        .await
        .expect("replace")
        .is_none());
}

pub async fn integration_keys(store: &dyn Store) {
    let key = store
        .create_integration_key("ci", b"ik-hash")
        .await
        .expect("create");
    assert!(store
        .integration_key_is_valid(b"ik-hash")
        .await
        .expect("valid"));
    assert!(!store
        .integration_key_is_valid(b"other")
        .await
        .expect("valid"));
    assert_eq!(store.integration_keys().await.expect("list").len(), 1);
    assert!(store.revoke_integration_key(&key.id).await.expect("revoke"));
    assert!(!store
        .revoke_integration_key(&key.id)
        .await
        .expect("revoke twice"));
    assert!(!store
        .integration_key_is_valid(b"ik-hash")
        .await
        .expect("valid"));
    assert!(store.integration_keys().await.expect("list")[0]
        .revoked_at
        .is_some());
}

pub async fn user_names_are_unique_per_connection_case_insensitively(store: &dyn Store) {
    let (a, ka) = new_connection("a");
    let (b, kb) = new_connection("b");
    store.create_connection(a.clone(), ka).await.expect("a");
    store.create_connection(b.clone(), kb).await.expect("b");
    store
        .create_resource(&a.id, Kind::User, "u1", user("Alice", "a@x.org"))
        .await
        .expect("create");
    match store
        .create_resource(&a.id, Kind::User, "u2", user("ALICE", "b@x.org"))
        .await
    {
        Err(StoreError::UserNameTaken(name)) => assert_eq!(name, "ALICE"),
        other => panic!("expected a userName conflict, got {other:?}"),
    }
    store
        .create_resource(&b.id, Kind::User, "u3", user("alice", "a@x.org"))
        .await
        .expect("another connection may reuse it");
    store
        .create_resource(&a.id, Kind::Group, "g1", group("Alice", vec![]))
        .await
        .expect("group names are not users");
    store
        .create_resource(&a.id, Kind::Group, "g2", group("Alice", vec![]))
        .await
        .expect("group names need not be unique");

    store
        .create_resource(&a.id, Kind::User, "u4", user("bob", "b@x.org"))
        .await
        .expect("bob");
    match store
        .update_resource(&a.id, Kind::User, "u4", None, user("alice", "b@x.org"))
        .await
    {
        Err(StoreError::UserNameTaken(_)) => {}
        other => panic!("renaming onto a taken name must fail, got {other:?}"),
    }
    let bob = store
        .resource(&a.id, Kind::User, "u4", Load::default())
        .await
        .expect("get")
        .expect("bob");
    assert_eq!(
        bob.body["userName"], "bob",
        "the failed rename changed nothing"
    );
    assert_eq!(bob.version, 1);
}

pub async fn versions_guard_writes(store: &dyn Store) {
    let (a, ka) = new_connection("v");
    store
        .create_connection(a.clone(), ka)
        .await
        .expect("create");
    let created = store
        .create_resource(&a.id, Kind::User, "u1", user("v", "v@x.org"))
        .await
        .expect("create");
    assert_eq!(created.resource.version, 1);
    let updated = store
        .update_resource(&a.id, Kind::User, "u1", Some(1), user("v2", "v@x.org"))
        .await
        .expect("update");
    assert_eq!(updated.resource.version, 2);
    assert!(updated.resource.last_modified >= created.resource.last_modified);
    let same = store
        .update_resource(&a.id, Kind::User, "u1", None, user("v2", "v@x.org"))
        .await
        .expect("re-send");
    assert_eq!(
        same.resource.version, 2,
        "re-sending the same state writes nothing"
    );
    assert_eq!(same.resource.last_modified, updated.resource.last_modified);
    match store
        .update_resource(&a.id, Kind::User, "u1", Some(1), user("v3", "v@x.org"))
        .await
    {
        Err(StoreError::VersionMismatch {
            expected: 1,
            actual: 2,
        }) => {}
        other => panic!("expected a version mismatch, got {other:?}"),
    }
    match store
        .delete_resource(&a.id, Kind::User, "u1", Some(7))
        .await
    {
        Err(StoreError::VersionMismatch { .. }) => {}
        other => panic!("expected a version mismatch, got {other:?}"),
    }
    store
        .delete_resource(&a.id, Kind::User, "u1", Some(2))
        .await
        .expect("delete");
    assert!(matches!(
        store.delete_resource(&a.id, Kind::User, "u1", None).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .update_resource(&a.id, Kind::User, "u1", None, user("x", "x@x"))
            .await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn memberships_are_rows(store: &dyn Store) {
    let (a, ka) = new_connection("m");
    store
        .create_connection(a.clone(), ka)
        .await
        .expect("create");
    for i in 0..5 {
        store
            .create_resource(
                &a.id,
                Kind::User,
                &format!("u{i}"),
                user(&format!("user{i}"), &format!("u{i}@x.org")),
            )
            .await
            .expect("user");
    }
    let created = store
        .create_resource(
            &a.id,
            Kind::Group,
            "g1",
            group(
                "Staff",
                vec![
                    MemberOp::Add(member("u0")),
                    MemberOp::Add(member("u1")),
                    MemberOp::Add(member("u0")),
                ],
            ),
        )
        .await
        .expect("group");
    assert_eq!(
        created
            .members
            .added
            .iter()
            .map(|m| m.id.as_str())
            .collect::<Vec<_>>(),
        ["u0", "u1"]
    );
    assert_eq!(created.resource.members.as_ref().map(Vec::len), Some(2));

    let ops = vec![
        MemberOp::Add(member("u2")),
        MemberOp::Remove("u0".into()),
        MemberOp::Remove("nobody".into()),
        MemberOp::Add(member("u1")),
    ];
    let out = store
        .update_resource(&a.id, Kind::Group, "g1", None, group("Staff", ops))
        .await
        .expect("patch members");
    assert_eq!(out.members.added, vec![member("u2")]);
    assert_eq!(out.members.removed, vec!["u0".to_owned()]);
    let g = store
        .resource(
            &a.id,
            Kind::Group,
            "g1",
            Load {
                members: true,
                groups: false,
                deleted: false,
            },
        )
        .await
        .expect("get")
        .expect("group");
    assert_eq!(
        g.members
            .expect("loaded")
            .iter()
            .map(|m| m.id.as_str())
            .collect::<Vec<_>>(),
        ["u1", "u2"]
    );
    let without = store
        .resource(&a.id, Kind::Group, "g1", Load::default())
        .await
        .expect("get")
        .expect("group");
    assert_eq!(
        without.members, None,
        "members are not read unless asked for"
    );

    let u1 = store
        .resource(
            &a.id,
            Kind::User,
            "u1",
            Load {
                members: false,
                groups: true,
                deleted: false,
            },
        )
        .await
        .expect("get")
        .expect("user");
    let groups = u1.groups.expect("loaded");
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].id, "g1");
    assert_eq!(groups[0].display.as_deref(), Some("Staff"));

    store
        .delete_resource(&a.id, Kind::User, "u1", None)
        .await
        .expect("delete user");
    let g = store
        .resource(
            &a.id,
            Kind::Group,
            "g1",
            Load {
                members: true,
                groups: false,
                deleted: false,
            },
        )
        .await
        .expect("get")
        .expect("group");
    assert_eq!(
        g.members
            .expect("loaded")
            .iter()
            .map(|m| m.id.as_str())
            .collect::<Vec<_>>(),
        ["u2"],
        "deleting a user removes its memberships"
    );

    let out = store
        .update_resource(
            &a.id,
            Kind::Group,
            "g1",
            None,
            group("Staff", vec![MemberOp::Clear, MemberOp::Add(member("u3"))]),
        )
        .await
        .expect("replace members");
    assert_eq!(out.members.removed, vec!["u2".to_owned()]);
    assert_eq!(out.members.added, vec![member("u3")]);
    let ops = vec![
        MemberOp::Clear,
        MemberOp::Add(member("u3")),
        MemberOp::Add(member("u4")),
    ];
    let out = store
        .update_resource(&a.id, Kind::Group, "g1", None, group("Staff", ops))
        .await
        .expect("replace members again");
    assert!(
        out.members.removed.is_empty(),
        "u3 was removed and re-added: no change"
    );
    assert_eq!(out.members.added, vec![member("u4")]);

    let found = store
        .existing_ids(
            &a.id,
            &["u3".into(), "g1".into(), "u1".into(), "zzz".into()],
        )
        .await
        .expect("ids");
    assert_eq!(found.len(), 2);
    assert_eq!(found.get("g1"), Some(&Kind::Group));
}

pub async fn lists_filter_sort_and_page(store: &dyn Store) {
    let registry = SchemaRegistry::standard();
    let users = registry.view("User").expect("User");
    let (a, ka) = new_connection("l");
    let (b, kb) = new_connection("l2");
    store
        .create_connection(a.clone(), ka)
        .await
        .expect("create");
    store
        .create_connection(b.clone(), kb)
        .await
        .expect("create");
    for i in 0..25 {
        store
            .create_resource(
                &a.id,
                Kind::User,
                &format!("u{i:02}"),
                user(&format!("User{i:02}"), &format!("u{i}@Example.org")),
            )
            .await
            .expect("user");
    }
    store
        .create_resource(&b.id, Kind::User, "other", user("User01", "u1@example.org"))
        .await
        .expect("other tenant");

    let list =
        |filter: Option<&'static str>, start: PageStart, count: u64, sort: Option<(&str, bool)>| {
            let filter = filter.map(|f| Filter::parse(f).expect("parses"));
            let sort = sort.map(|(p, d)| (AttrPath::parse(p).expect("path"), d));
            let id = a.id.clone();
            let users = users.clone();
            async move {
                let query = ListQuery {
                    filter: filter.as_ref(),
                    schemas: &users,
                    sort,
                    start,
                    count,
                    load: Load::default(),
                };
                store.list_resources(&id, Kind::User, &query).await
            }
        };
    let names = |p: &Page| {
        p.resources
            .iter()
            .map(|r| r.body["userName"].as_str().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
    };

    let page = list(
        Some(r#"userName eq "USER01""#),
        PageStart::Index(1),
        100,
        None,
    )
    .await
    .expect("list");
    assert_eq!(
        (page.total_results, names(&page)),
        (1, vec!["User01".to_owned()]),
        "other tenants are invisible"
    );
    let page = list(
        Some(r#"emails.value eq "U3@example.ORG""#),
        PageStart::Index(1),
        100,
        None,
    )
    .await
    .expect("list");
    assert_eq!(names(&page), ["User03"]);
    let page = list(
        Some(r#"externalId eq "ext-User04""#),
        PageStart::Index(1),
        100,
        None,
    )
    .await
    .expect("list");
    assert_eq!(names(&page), ["User04"]);
    let page = list(Some(r#"id eq "u05""#), PageStart::Index(1), 100, None)
        .await
        .expect("list");
    assert_eq!(names(&page), ["User05"]);
    let page = list(
        Some(r#"userName eq "75c0ea40-8ce3-4b46-a5b4-1b1f3bd4e3b8""#),
        PageStart::Index(1),
        100,
        None,
    )
    .await
    .expect("list");
    assert_eq!((page.total_results, page.resources.len()), (0, 0));
    let page = list(
        Some(r#"userName sw "user1" and not (userName ew "9")"#),
        PageStart::Index(1),
        100,
        None,
    )
    .await
    .expect("list");
    assert_eq!(page.total_results, 9, "{:?}", names(&page));
    let page = list(
        Some(r#"meta.lastModified gt "2000-01-01T00:00:00Z" and emails co "u2""#),
        PageStart::Index(1),
        100,
        None,
    )
    .await
    .expect("list");
    assert_eq!(
        names(&page),
        ["User02", "User20", "User21", "User22", "User23", "User24"]
    );

    let page = list(None, PageStart::Index(11), 10, None)
        .await
        .expect("list");
    assert_eq!((page.total_results, page.resources.len()), (25, 10));
    assert_eq!(names(&page)[0], "User10");
    let page = list(None, PageStart::Index(21), 10, None)
        .await
        .expect("list");
    assert_eq!(page.resources.len(), 5);
    let page = list(None, PageStart::Index(1), 0, None)
        .await
        .expect("count=0");
    assert_eq!((page.total_results, page.resources.len()), (25, 0));
    let page = list(None, PageStart::Index(1), 3, Some(("userName", true)))
        .await
        .expect("sorted");
    assert_eq!(names(&page), ["User24", "User23", "User22"]);
    let page = list(
        Some(r#"userName sw "User2""#),
        PageStart::Index(2),
        2,
        Some(("userName", false)),
    )
    .await
    .expect("sorted");
    assert_eq!(
        (page.total_results, names(&page)),
        (5, vec!["User21".to_owned(), "User22".to_owned()])
    );

    assert!(matches!(
        list(None, PageStart::Cursor(Some("garbage".into())), 5, None).await,
        Err(StoreError::InvalidCursor)
    ));
}

/// A cursor walk over a directory that changes under it sees every user that existed for the
/// whole walk exactly once.
pub async fn cursor_walks_never_skip_or_repeat(store: &dyn Store) {
    let registry = SchemaRegistry::standard();
    let users = registry.view("User").expect("User");
    let (a, ka) = new_connection("c");
    store
        .create_connection(a.clone(), ka)
        .await
        .expect("create");
    for i in 0..30 {
        store
            .create_resource(
                &a.id,
                Kind::User,
                &format!("u{i:02}"),
                user(&format!("user{i:02}"), &format!("{i}@x")),
            )
            .await
            .expect("user");
    }
    for filter in [
        None,
        Some(Filter::parse(r#"emails co "@x""#).expect("parses")),
    ] {
        let mut seen = Vec::new();
        let mut cursor = None;
        let mut step = 0;
        loop {
            let query = ListQuery {
                filter: filter.as_ref(),
                schemas: &users,
                sort: None,
                start: PageStart::Cursor(cursor.clone()),
                count: 7,
                load: Load::default(),
            };
            let page = store
                .list_resources(&a.id, Kind::User, &query)
                .await
                .expect("page");
            seen.extend(page.resources.iter().map(|r| r.id.clone()));
            // Change the directory between pages: delete a user already seen, add a new one.
            if let Some(first) = page.resources.first() {
                store
                    .delete_resource(&a.id, Kind::User, &first.id, None)
                    .await
                    .expect("delete");
            }
            store
                .create_resource(
                    &a.id,
                    Kind::User,
                    &format!("new{step}-{}", filter.is_some()),
                    user(&format!("new{step}-{}", filter.is_some()), "n@x"),
                )
                .await
                .expect("insert");
            step += 1;
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
            assert!(step < 50, "the walk must end");
        }
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "no repeats");
        let originals: Vec<&String> = seen.iter().filter(|id| id.starts_with('u')).collect();
        assert!(originals.len() >= 30 - step, "{originals:?}");
        if filter.is_none() {
            for i in 0..30 {
                let id = format!("u{i:02}");
                let deleted_before_seen = !seen.contains(&id);
                assert!(
                    !deleted_before_seen,
                    "{id} existed for the whole walk and was skipped"
                );
            }
        }
    }
}

pub async fn request_log_keeps_the_newest(store: &dyn Store) {
    let (a, ka) = new_connection("r");
    store
        .create_connection(a.clone(), ka)
        .await
        .expect("create");
    let entry = |i: u16| RequestLogEntry {
        time: OffsetDateTime::now_utc(),
        request_id: format!("req-{i}"),
        method: "GET".into(),
        path: "/Users".into(),
        status: 200 + i,
        latency_ms: 1,
        scim_type: None,
        detail: None,
        warnings: vec![],
    };
    let batch: Vec<(String, RequestLogEntry)> = (0..15).map(|i| (a.id.clone(), entry(i))).collect();
    store.log_requests(&batch, 10).await.expect("log");
    store
        .log_requests(&[("deleted-connection".into(), entry(99))], 10)
        .await
        .expect("entries of unknown connections are dropped");
    let recent = store.recent_requests(&a.id, 200).await.expect("recent");
    assert_eq!(recent.len(), 10);
    assert_eq!(recent[0].request_id, "req-14", "newest first");
    assert_eq!(recent[9].request_id, "req-5");

    // A later batch, two connections interleaved: each keeps its own newest, in order.
    let (b, kb) = new_connection("r2");
    store
        .create_connection(b.clone(), kb)
        .await
        .expect("create");
    let batch: Vec<(String, RequestLogEntry)> = (15..19)
        .flat_map(|i| [(a.id.clone(), entry(i)), (b.id.clone(), entry(i + 100))])
        .collect();
    store.log_requests(&batch, 10).await.expect("log");
    let ids = |entries: Vec<RequestLogEntry>| -> Vec<String> {
        entries.into_iter().map(|e| e.request_id).collect()
    };
    let expected: Vec<String> = (9..19).rev().map(|i| format!("req-{i}")).collect();
    assert_eq!(
        ids(store.recent_requests(&a.id, 200).await.expect("recent")),
        expected
    );
    let expected: Vec<String> = (115..119).rev().map(|i| format!("req-{i}")).collect();
    assert_eq!(
        ids(store.recent_requests(&b.id, 200).await.expect("recent")),
        expected
    );
}

pub async fn mapping_generations_and_leases(store: &dyn Store) {
    let (a, ka) = new_connection("mapping");
    store
        .create_connection(a.clone(), ka)
        .await
        .expect("create");
    for i in 0..3 {
        store
            .create_resource(
                &a.id,
                Kind::User,
                &format!("u{i}"),
                user(&format!("m{i}"), "m@x"),
            )
            .await
            .expect("user");
    }
    let fresh = store
        .resource(&a.id, Kind::User, "u0", Load::default())
        .await
        .expect("get")
        .expect("user");
    assert_eq!(fresh.mapped, None);
    assert_eq!(
        store.mapping_progress(&a.id).await.expect("progress"),
        (3, 0)
    );

    let lease = std::time::Duration::from_secs(30);
    let claimed = store.claim_stale_users(10, lease).await.expect("claim");
    assert_eq!(claimed.len(), 3);
    assert!(claimed
        .iter()
        .all(|c| c.connection_id == a.id && c.resource.groups.is_some()));
    assert!(
        store
            .claim_stale_users(10, lease)
            .await
            .expect("claim")
            .is_empty(),
        "leased users are not handed out twice"
    );

    let record = |generation| MappedRecord {
        generation,
        value: json!({"properties": {"email": "m@x"}}),
    };
    let save = |connection_id: &str, user_id: &str, epoch, record| MappedSave {
        connection_id: connection_id.to_owned(),
        user_id: user_id.to_owned(),
        epoch,
        record,
    };
    store
        .save_mapped(&[save(&a.id, "u0", 0, record(1))])
        .await
        .expect("save");
    store
        .save_mapped(&[save(&a.id, "u1", 99, record(1))])
        .await
        .expect("a stale version is ignored");
    assert_eq!(
        store.mapping_progress(&a.id).await.expect("progress"),
        (3, 1)
    );
    let saved = store
        .resource(&a.id, Kind::User, "u0", Load::default())
        .await
        .expect("get")
        .expect("user");
    assert_eq!(saved.mapped, Some(record(1)));

    let quick = store
        .claim_stale_users(10, std::time::Duration::ZERO)
        .await
        .expect("claim");
    assert!(quick.is_empty(), "u1 and u2 are still leased for 30 s");
    // A change to a leased user ends the lease: its worker's view is outdated anyway.
    store
        .update_resource(&a.id, Kind::User, "u1", None, user("m1", "changed@x"))
        .await
        .expect("update");
    let reclaimed = store
        .claim_stale_users(10, std::time::Duration::ZERO)
        .await
        .expect("claim");
    assert_eq!(
        reclaimed
            .iter()
            .map(|c| c.resource.id.as_str())
            .collect::<Vec<_>>(),
        ["u1"]
    );

    let connection = store
        .update_connection(
            &a.id,
            ConnectionUpdate {
                custom_mapping: Some(Some(StoredMapping {
                    value: json!({"group_role_mappings": [{"group": "G", "role": "admin"}]}),
                    reads_groups: true,
                })),
                ..Default::default()
            },
        )
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(
        connection.mapping_generation, 2,
        "a new mapping is a new generation"
    );
    assert_eq!(
        store.mapping_progress(&a.id).await.expect("progress"),
        (3, 0)
    );
    store
        .save_mapped(&[save(&a.id, "u0", 0, record(2))])
        .await
        .expect("save");
    assert_eq!(
        store.mapping_progress(&a.id).await.expect("progress"),
        (3, 1)
    );

    store
        .create_resource(
            &a.id,
            Kind::Group,
            "g",
            group("G", vec![MemberOp::Add(member("u0"))]),
        )
        .await
        .expect("group");
    assert_eq!(
        store.mapping_progress(&a.id).await.expect("progress"),
        (3, 0),
        "joining a group may change roles"
    );
    store
        .save_mapped(&[save(&a.id, "u0", 1, record(2))])
        .await
        .expect("save");
    store
        .mark_group_members_stale(&a.id, "g")
        .await
        .expect("stale");
    assert_eq!(
        store.mapping_progress(&a.id).await.expect("progress"),
        (3, 0)
    );
    store
        .save_mapped(&[save(&a.id, "u0", 1, record(2))])
        .await
        .expect("a view computed before the last change is not saved");
    assert_eq!(
        store.mapping_progress(&a.id).await.expect("progress"),
        (3, 0)
    );
    store
        .save_mapped(&[save(&a.id, "u0", 2, record(2))])
        .await
        .expect("save");
    assert_eq!(
        store.mapping_progress(&a.id).await.expect("progress"),
        (3, 1)
    );
    store
        .delete_resource(&a.id, Kind::Group, "g", None)
        .await
        .expect("delete group");
    assert_eq!(
        store.mapping_progress(&a.id).await.expect("progress"),
        (3, 0),
        "losing a group may change roles"
    );
}

async fn user_version(store: &dyn Store, connection_id: &str, id: &str) -> i64 {
    store
        .resource(connection_id, Kind::User, id, Load::default())
        .await
        .expect("read")
        .expect("exists")
        .version
}

/// A mapping without role rules does not read groups: membership changes still give members a
/// new version (their `groups` changed) but leave their mapped views current.
pub async fn membership_changes_leave_views_current_when_the_mapping_ignores_groups(
    store: &dyn Store,
) {
    let (a, ka) = new_connection("no-roles");
    let a = store.create_connection(a, ka).await.expect("create");
    store
        .create_resource(&a.id, Kind::User, "u0", user("u0", "u0@x"))
        .await
        .expect("user");
    let claimed = store
        .claim_stale_users(10, std::time::Duration::from_secs(60))
        .await
        .expect("claim");
    let epoch = claimed
        .iter()
        .find(|u| u.resource.id == "u0")
        .expect("u0")
        .epoch;
    store
        .save_mapped(&[MappedSave {
            connection_id: a.id.clone(),
            user_id: "u0".into(),
            epoch,
            record: MappedRecord {
                generation: a.mapping_generation,
                value: json!({}),
            },
        }])
        .await
        .expect("save");
    let before = user_version(store, &a.id, "u0").await;
    assert_eq!(
        store.mapping_progress(&a.id).await.expect("progress"),
        (1, 1)
    );

    store
        .create_resource(
            &a.id,
            Kind::Group,
            "g",
            group("G", vec![MemberOp::Add(member("u0"))]),
        )
        .await
        .expect("group");
    store
        .mark_group_members_stale(&a.id, "g")
        .await
        .expect("stale");
    store
        .delete_resource(&a.id, Kind::Group, "g", None)
        .await
        .expect("delete group");
    assert_eq!(
        store.mapping_progress(&a.id).await.expect("progress"),
        (1, 1),
        "no recompute for a mapping that ignores groups"
    );
    assert_eq!(
        user_version(store, &a.id, "u0").await,
        before + 2,
        "joining and losing the group are each a new version"
    );
}

pub async fn deleted_users_stay_readable_until_pruned(store: &dyn Store) {
    let (a, ka) = new_connection("deleted");
    store
        .create_connection(a.clone(), ka)
        .await
        .expect("create");
    store
        .create_resource(&a.id, Kind::User, "u1", user("gone", "gone@x"))
        .await
        .expect("user");
    store
        .create_resource(
            &a.id,
            Kind::Group,
            "g",
            group("G", vec![MemberOp::Add(member("u1"))]),
        )
        .await
        .expect("group");
    store
        .delete_resource(&a.id, Kind::User, "u1", None)
        .await
        .expect("delete");

    assert!(
        store
            .resource(&a.id, Kind::User, "u1", Load::default())
            .await
            .expect("get")
            .is_none(),
        "SCIM no longer sees it"
    );
    let kept = store
        .resource(
            &a.id,
            Kind::User,
            "u1",
            Load {
                deleted: true,
                ..Load::default()
            },
        )
        .await
        .expect("get")
        .expect("the directory still does");
    assert!(kept.deleted_at.is_some());
    assert_eq!(
        kept.version, 3,
        "joining the group and the deletion are writes"
    );
    assert!(matches!(
        store.delete_resource(&a.id, Kind::User, "u1", None).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store
        .existing_ids(&a.id, &["u1".into()])
        .await
        .expect("ids")
        .is_empty());
    assert_eq!(store.member_count(&a.id, "g").await.expect("count"), 0);

    let registry = scimgate_protocol::SchemaRegistry::standard();
    let users = registry.view("User").expect("User");
    let by_email = Filter::parse(r#"emails.value eq "gone@x""#).expect("parses");
    let visible = ListQuery {
        filter: Some(&by_email),
        schemas: &users,
        sort: None,
        start: PageStart::Index(1),
        count: 10,
        load: Load::default(),
    };
    assert_eq!(
        store
            .list_resources(&a.id, Kind::User, &visible)
            .await
            .expect("list")
            .total_results,
        0
    );
    let everything = ListQuery {
        filter: None,
        schemas: &users,
        sort: None,
        start: PageStart::Index(1),
        count: 10,
        load: Load {
            deleted: true,
            ..Load::default()
        },
    };
    assert_eq!(
        store
            .list_resources(&a.id, Kind::User, &everything)
            .await
            .expect("list")
            .total_results,
        1
    );

    store
        .create_resource(&a.id, Kind::User, "u2", user("GONE", "gone@x"))
        .await
        .expect("the userName is free again");
    let late = store
        .update_resource(
            &a.id,
            Kind::Group,
            "g",
            None,
            group("G", vec![MemberOp::Add(member("u1"))]),
        )
        .await
        .expect("update");
    assert!(
        late.members.added.is_empty(),
        "a deleted user is not added as a member"
    );
    assert_eq!(store.member_count(&a.id, "g").await.expect("count"), 0);

    assert_eq!(
        store
            .prune_deleted(kept.deleted_at.expect("deleted") - time::Duration::seconds(1))
            .await
            .expect("prune"),
        0
    );
    assert_eq!(
        store
            .prune_deleted(OffsetDateTime::now_utc() + time::Duration::seconds(1))
            .await
            .expect("prune"),
        1
    );
    assert!(store
        .resource(
            &a.id,
            Kind::User,
            "u1",
            Load {
                deleted: true,
                ..Load::default()
            }
        )
        .await
        .expect("get")
        .is_none());
    assert!(
        store
            .resource(&a.id, Kind::User, "u2", Load::default())
            .await
            .expect("get")
            .is_some(),
        "live users are never pruned"
    );
}

pub async fn indirect_membership_changes_bump_versions(store: &dyn Store) {
    let (a, ka) = new_connection("indirect");
    store
        .create_connection(a.clone(), ka)
        .await
        .expect("create");
    store
        .create_resource(&a.id, Kind::User, "u", user("u", "u@x"))
        .await
        .expect("user");
    store
        .create_resource(&a.id, Kind::Group, "g", group("G", vec![]))
        .await
        .expect("group");
    let version = |kind, id: &'static str| {
        let id = id.to_owned();
        let connection = a.id.clone();
        async move {
            store
                .resource(&connection, kind, &id, Load::default())
                .await
                .expect("get")
                .expect("exists")
                .version
        }
    };
    store
        .update_resource(
            &a.id,
            Kind::Group,
            "g",
            None,
            group("G", vec![MemberOp::Add(member("u"))]),
        )
        .await
        .expect("add member");
    assert_eq!(
        version(Kind::User, "u").await,
        2,
        "the user's groups changed"
    );
    store
        .delete_resource(&a.id, Kind::User, "u", None)
        .await
        .expect("delete user");
    assert_eq!(
        version(Kind::Group, "g").await,
        3,
        "the group's members changed"
    );
}

/// A write stores the user's mapped view in the row it writes, computed from what the write's
/// transaction sees (the user's groups included), so the recompute has nothing to do for it.
pub async fn writes_store_the_mapped_view(store: &dyn Store) {
    let (a, ka) = new_connection("mapped");
    let a = store.create_connection(a, ka).await.expect("create");
    let view = |name: &str, groups: serde_json::Value| MappedRecord {
        generation: a.mapping_generation,
        value: json!({"userName": name, "groups": groups}),
    };
    let created = store
        .create_resource(&a.id, Kind::User, "u", user("ann", "ann@x"))
        .await
        .expect("user");
    assert_eq!(created.resource.mapped, Some(view("ann", json!([]))));
    let connection_id = a.id.clone();
    let read = || {
        let connection_id = connection_id.clone();
        async move {
            store
                .resource(&connection_id, Kind::User, "u", Load::default())
                .await
                .expect("read")
                .expect("user")
        }
    };
    assert_eq!(read().await.mapped, Some(view("ann", json!([]))));
    assert_eq!(
        store.mapping_progress(&a.id).await.expect("progress"),
        (1, 1),
        "nothing left for the recompute"
    );

    store
        .create_resource(
            &a.id,
            Kind::Group,
            "g",
            group("Admins", vec![MemberOp::Add(member("u"))]),
        )
        .await
        .expect("group");
    let renamed = store
        .update_resource(&a.id, Kind::User, "u", None, user("anne", "ann@x"))
        .await
        .expect("update");
    assert_eq!(
        renamed.resource.mapped,
        Some(view("anne", json!(["Admins"])))
    );
    let stored = read().await;
    assert_eq!(stored.mapped, Some(view("anne", json!(["Admins"]))));

    let again = store
        .update_resource(&a.id, Kind::User, "u", None, user("anne", "ann@x"))
        .await
        .expect("same state again");
    assert_eq!(again.resource.version, stored.version, "no new version");
    assert_eq!(read().await, stored, "nothing rewritten");
}

/// Gives the connection a custom mapping, which starts a new mapping generation.
async fn remap(store: &dyn Store, connection_id: &str) -> Connection {
    store
        .update_connection(
            connection_id,
            ConnectionUpdate {
                custom_mapping: Some(Some(StoredMapping {
                    value: json!({"group_role_mappings": []}),
                    reads_groups: false,
                })),
                ..Default::default()
            },
        )
        .await
        .expect("update")
        .expect("exists")
}

/// A create maps its user from the connection as it read it, which a mapping change may
/// overtake before the insert: the user must then be stored as of the generation it was mapped
/// with, so that the recompute takes it, never as current.
pub async fn users_created_while_the_mapping_changes_are_left_to_the_recompute(store: &dyn Store) {
    let (a, ka) = new_connection("remapped");
    let a = store.create_connection(a, ka).await.expect("create");
    let creates = (0..40).map(|i| {
        let connection_id = a.id.clone();
        async move {
            store
                .create_resource(
                    &connection_id,
                    Kind::User,
                    &format!("u{i}"),
                    user(&format!("n{i}"), "n@x"),
                )
                .await
                .expect("user")
        }
    });
    let change = async {
        tokio::task::yield_now().await;
        remap(store, &a.id).await
    };
    let (created, changed) = tokio::join!(futures::future::join_all(creates), change);
    assert_eq!(changed.mapping_generation, a.mapping_generation + 1);
    let mut behind = Vec::new();
    for user in &created {
        let stored = store
            .resource(&a.id, Kind::User, &user.resource.id, Load::default())
            .await
            .expect("read")
            .expect("user");
        let generation = stored.mapped.as_ref().expect("mapped").generation;
        assert!(
            generation == a.mapping_generation || generation == changed.mapping_generation,
            "{} was mapped with generation {generation}",
            stored.id
        );
        if generation < changed.mapping_generation {
            behind.push(stored.id);
        }
    }
    let mut claimed: Vec<String> = store
        .claim_stale_users(100, std::time::Duration::from_secs(60))
        .await
        .expect("claim")
        .into_iter()
        .map(|c| c.resource.id)
        .collect();
    claimed.sort();
    behind.sort();
    assert_eq!(
        claimed, behind,
        "exactly the users mapped before the change are left to the recompute"
    );
    assert_eq!(
        store.mapping_progress(&a.id).await.expect("progress"),
        (40, 40 - behind.len() as u64)
    );
}

/// A SCIM create passes the connection it read to authenticate. Read before a mapping change,
/// it maps the user as of the older generation, which the recompute then takes; read after,
/// as current. Either way the user, its emails and its event are stored whole, and a taken
/// userName is refused as by any create.
pub async fn users_created_with_the_callers_connection(store: &dyn Store) {
    let (a, ka) = new_connection("known");
    let before = store.create_connection(a, ka).await.expect("create");
    let after = remap(store, &before.id).await;
    assert_eq!(after.mapping_generation, before.mapping_generation + 1);
    let last = events_after(store, 0)
        .await
        .last()
        .map_or(0, |e| e.sequence);

    let stale = store
        .create_user(&before, "stale", user("stale", "stale@x"))
        .await
        .expect("stale");
    let current = store
        .create_user(&after, "current", user("current", "current@x"))
        .await
        .expect("current");
    for (created, generation) in [
        (&stale, before.mapping_generation),
        (&current, after.mapping_generation),
    ] {
        let stored = store
            .resource(&after.id, Kind::User, &created.resource.id, Load::default())
            .await
            .expect("read")
            .expect("user");
        assert_eq!(stored.body, created.resource.body);
        assert_eq!(stored.version, 1);
        assert_eq!(
            stored.mapped.as_ref().expect("mapped").generation,
            generation,
            "{} is stored as of the generation it was mapped with",
            stored.id
        );
        assert_eq!(
            with_email(store, &after.id, &format!("{}@x", created.resource.id)).await,
            vec![created.resource.id.clone()]
        );
    }
    let claimed: Vec<String> = store
        .claim_stale_users(10, std::time::Duration::from_secs(60))
        .await
        .expect("claim")
        .into_iter()
        .map(|c| c.resource.id)
        .collect();
    assert_eq!(
        claimed,
        vec!["stale".to_owned()],
        "only the stale one is remapped"
    );

    let events = events_after(store, last).await;
    assert_eq!(types(&events), vec!["user.created", "user.created"]);
    assert!(events
        .iter()
        .all(|e| e.connection_id.as_deref() == Some(after.id.as_str())));

    let taken = store
        .create_user(&after, "again", user("STALE", "other@x"))
        .await;
    assert!(matches!(taken, Err(StoreError::UserNameTaken(_))));
    assert!(store
        .resource(&after.id, Kind::User, "again", Load::default())
        .await
        .expect("read")
        .is_none());
}

/// [`describer`] that also gives users a mapped view: their userName and their groups' names.
pub fn mapper() -> std::sync::Arc<dyn EventSource> {
    struct Mapper;
    impl EventSource for Mapper {
        fn events(&self, effect: Effect<'_>) -> Vec<NewEvent> {
            describe(effect)
        }
        fn mapped_view(
            &self,
            connection: &Connection,
            user: &StoredResource,
            groups: &[GroupSummary],
        ) -> Option<MappedRecord> {
            let names: Vec<_> = groups.iter().map(|g| g.display_name.clone()).collect();
            Some(MappedRecord {
                generation: connection.mapping_generation,
                value: json!({"userName": user.body["userName"], "groups": names}),
            })
        }
    }
    std::sync::Arc::new(Mapper)
}

/// The app's side of the outbox, reduced to what the store must get right: the events of an
/// effect, typed by what happened, naming what they concern.
pub fn describer() -> std::sync::Arc<dyn EventSource> {
    std::sync::Arc::new(describe)
}

fn event(event_type: &str, connection: Option<&Connection>, data: serde_json::Value) -> NewEvent {
    NewEvent {
        event_type: event_type.to_owned(),
        connection_id: connection.map(|c| c.id.clone()),
        customer_id: connection.map(|c| c.customer_id.clone()),
        data,
        changes: json!([]),
    }
}

fn describe(effect: Effect<'_>) -> Vec<NewEvent> {
    match effect {
        Effect::ConnectionCreated(c) => vec![event("connection.created", Some(c), json!({}))],
        Effect::ConnectionUpdated { before, after } => vec![event(
            "connection.updated",
            Some(after),
            json!({"previous_display_name": before.display_name}),
        )],
        Effect::ConnectionDeleted(c) => vec![event("connection.deleted", Some(c), json!({}))],
        Effect::ScimKeyReset(c) => {
            vec![event("connection.scim_api_key_reset", Some(c), json!({}))]
        }
        Effect::ScimKeyExpiring {
            connection,
            expires_at,
        } => vec![event(
            "connection.scim_api_key_expiring",
            Some(connection),
            json!({"expires_at": expires_at.unix_timestamp()}),
        )],
        Effect::ResourceWritten {
            connection,
            before,
            after,
            groups,
            members,
        } => {
            let kind = after.kind.as_str().to_lowercase();
            let mut events = Vec::new();
            if before.is_none_or(|b| b.body != after.body) {
                let verb = if before.is_some() {
                    "updated"
                } else {
                    "created"
                };
                let groups: Vec<_> = groups.iter().map(|g| g.display_name.clone()).collect();
                events.push(event(
                    &format!("{kind}.{verb}"),
                    Some(connection),
                    json!({"id": after.id, "version": after.version, "groups": groups}),
                ));
            }
            for m in &members.added {
                events.push(event(
                    "group.member_added",
                    Some(connection),
                    json!({"group": after.id, "member": m.id}),
                ));
            }
            for id in &members.removed {
                events.push(event(
                    "group.member_removed",
                    Some(connection),
                    json!({"group": after.id, "member": id}),
                ));
            }
            events
        }
        Effect::ResourceDeleted {
            connection,
            resource,
            groups,
        } => {
            let groups: Vec<_> = groups.iter().map(|g| g.display_name.clone()).collect();
            vec![event(
                &format!("{}.deleted", resource.kind.as_str().to_lowercase()),
                Some(connection),
                json!({"id": resource.id, "groups": groups}),
            )]
        }
        Effect::EndpointDisabled(w) => {
            vec![event(
                "webhook_endpoint.disabled",
                None,
                json!({"id": w.id}),
            )]
        }
    }
}

pub fn all(after: i64) -> EventQuery {
    EventQuery {
        after,
        limit: 1000,
        ..EventQuery::default()
    }
}

pub async fn events_after(store: &dyn Store, after: i64) -> Vec<Event> {
    store.sequence_events().await.expect("sequence");
    store.events(&all(after)).await.expect("events")
}

fn types(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.event_type.as_str()).collect()
}

pub async fn writes_emit_their_events_atomically(store: &dyn Store) {
    let (new, key) = new_connection("outbox");
    let c = store.create_connection(new, key).await.expect("connection");
    let (other, other_key) = new_connection("elsewhere");
    let other = store
        .create_connection(other, other_key)
        .await
        .expect("other");
    store
        .create_resource(&c.id, Kind::User, "u1", user("ada", "ada@x.org"))
        .await
        .expect("u1");
    store
        .update_resource(&c.id, Kind::User, "u1", None, user("ada", "ada@x.org"))
        .await
        .expect("same state again");
    store
        .update_resource(&c.id, Kind::User, "u1", None, user("ada", "ada@y.org"))
        .await
        .expect("new email");
    let taken = store
        .create_resource(&c.id, Kind::User, "u9", user("ADA", "other@x.org"))
        .await;
    assert!(matches!(taken, Err(StoreError::UserNameTaken(_))));
    store
        .create_resource(&c.id, Kind::User, "u2", user("bob", "bob@x.org"))
        .await
        .expect("u2");
    store
        .create_resource(
            &c.id,
            Kind::Group,
            "g",
            group("eng", vec![MemberOp::Add(member("u1"))]),
        )
        .await
        .expect("group");
    store
        .update_resource(
            &c.id,
            Kind::Group,
            "g",
            None,
            group("eng", vec![MemberOp::Add(member("u1"))]),
        )
        .await
        .expect("member already there");
    store
        .update_resource(
            &c.id,
            Kind::Group,
            "g",
            None,
            group(
                "eng",
                vec![MemberOp::Remove("u1".into()), MemberOp::Add(member("u2"))],
            ),
        )
        .await
        .expect("swap members");
    store
        .update_resource(&c.id, Kind::User, "u2", None, user("bob", "bob@y.org"))
        .await
        .expect("bob changes");
    store
        .delete_resource(&c.id, Kind::User, "u2", None)
        .await
        .expect("delete bob");
    store
        .create_resource(&other.id, Kind::User, "o1", user("ola", "ola@x.org"))
        .await
        .expect("other user");

    let events = events_after(store, 0).await;
    assert_eq!(
        types(&events),
        [
            "connection.created",
            "connection.created",
            "user.created",
            "user.updated",
            "user.created",
            "group.created",
            "group.member_added",
            "group.member_added",
            "group.member_removed",
            "user.updated",
            "user.deleted",
            "user.created"
        ],
        "one event per change, none for writes that changed nothing or failed"
    );
    for pair in events.windows(2) {
        assert!(pair[0].sequence < pair[1].sequence, "strictly ordered");
        assert_ne!(pair[0].id, pair[1].id);
    }
    assert_eq!(events[3].data["version"], 2, "the no-op kept the version");
    assert_eq!(
        events[9].data["groups"],
        json!(["eng"]),
        "the user's groups, read in the write's transaction"
    );
    assert_eq!(events[10].data["groups"], json!(["eng"]));
    assert_eq!(events[2].customer_id.as_deref(), Some("outbox"));

    let mine = store
        .events(&EventQuery {
            connection_id: Some(c.id.clone()),
            ..all(0)
        })
        .await
        .expect("by connection");
    assert_eq!(mine.len(), 10);
    let theirs = store
        .events(&EventQuery {
            customer_id: Some("elsewhere".into()),
            ..all(0)
        })
        .await
        .expect("by customer");
    assert_eq!(types(&theirs), ["connection.created", "user.created"]);
    let members = store
        .events(&EventQuery {
            types: vec!["group.member_added".into(), "group.member_removed".into()],
            ..all(events[6].sequence)
        })
        .await
        .expect("by type, after a cursor");
    assert_eq!(
        types(&members),
        ["group.member_added", "group.member_removed"]
    );
    let page = store
        .events(&EventQuery {
            limit: 2,
            ..all(events[0].sequence)
        })
        .await
        .expect("page");
    assert_eq!(page, events[1..3]);

    let last = events.last().map_or(0, |e| e.sequence);
    assert_eq!(store.last_sequence().await.expect("last"), last);
    store
        .update_connection(
            &c.id,
            ConnectionUpdate {
                display_name: Some(Some("Renamed".into())),
                ..ConnectionUpdate::default()
            },
        )
        .await
        .expect("rename");
    store
        .replace_scim_key(
            &c.id,
            NewScimKey {
                hash: b"next".to_vec(),
                expires_at: None,
            },
            OffsetDateTime::now_utc(),
        )
        .await
        .expect("reset key");
    assert!(store.delete_connection(&c.id).await.expect("delete"));
    let later = events_after(store, last).await;
    assert_eq!(
        types(&later),
        [
            "connection.updated",
            "connection.scim_api_key_reset",
            "connection.deleted"
        ]
    );
    assert_eq!(later[0].data["previous_display_name"], "outbox Inc");
    assert_eq!(
        events_after(store, 0).await.len(),
        events.len() + 3,
        "events outlive their connection"
    );
}

/// Many writers at once, and a reader following with a cursor: the reader sees every event
/// exactly once, in order. (A rolled-back write may leave a hole in the sequence on PostgreSQL;
/// these writes all land, so a hole here would be an event the reader skipped.)
pub async fn concurrent_writers_never_make_a_reader_skip(store: &dyn Store) {
    let (new, key) = new_connection("busy");
    let c = store.create_connection(new, key).await.expect("connection");
    let start = events_after(store, 0).await.len();
    let writers = 8;
    let per_writer = 25;
    let write_all = async {
        let tasks = (0..writers).map(|w| {
            let id = c.id.clone();
            async move {
                for i in 0..per_writer {
                    let name = format!("w{w}-{i}");
                    store
                        .create_resource(&id, Kind::User, &name, user(&name, "x@x.org"))
                        .await
                        .expect("write");
                    if i % 5 == 0 {
                        store.sequence_events().await.expect("sequence");
                    }
                }
            }
        });
        futures::future::join_all(tasks).await;
    };
    let read_all = async {
        let mut seen: Vec<Event> = Vec::new();
        let mut cursor = 0;
        let wanted = start + writers * per_writer;
        for _ in 0..20_000 {
            store.sequence_events().await.expect("sequence");
            let page = store.events(&all(cursor)).await.expect("read");
            for e in &page {
                assert_eq!(e.sequence, cursor + 1, "no hole after {cursor}");
                cursor = e.sequence;
            }
            seen.extend(page);
            if seen.len() >= wanted {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        seen
    };
    let ((), seen) = tokio::join!(write_all, read_all);
    let everything = events_after(store, 0).await;
    assert_eq!(seen.len(), start + writers * per_writer);
    assert_eq!(seen, everything, "the follower saw exactly the final log");
}

/// Writes that arrive together may share a commit (SQLite batches them): one that fails must
/// roll back only itself, leaving no row, email or event behind, and the others must all land.
pub async fn concurrent_writes_that_fail_roll_back_alone(store: &dyn Store) {
    let (new, key) = new_connection("crowd");
    let c = store.create_connection(new, key).await.expect("connection");
    let start = events_after(store, 0).await.len();
    let names = 30;
    let attempts = (0..names).flat_map(|i| {
        let id = c.id.clone();
        // Every name twice: the second to arrive must fail, with its own email.
        [("first", i), ("second", i)].map(|(try_, i)| {
            let id = id.clone();
            async move {
                let name = format!("crowd-{i}");
                let email = format!("{try_}-{i}@x.org");
                let result = store
                    .create_resource(&id, Kind::User, &format!("{try_}-{i}"), user(&name, &email))
                    .await;
                (i, result)
            }
        })
    });
    let results = futures::future::join_all(attempts).await;
    let mut won = vec![0; names];
    for (i, result) in &results {
        match result {
            Ok(_) => won[*i] += 1,
            Err(StoreError::UserNameTaken(_)) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert!(
        won.iter().all(|w| *w == 1),
        "each name created exactly once: {won:?}"
    );

    let registry = scimgate_protocol::SchemaRegistry::standard();
    let users = registry.view("User").expect("User");
    fn matching<'a>(filter: Option<&'a Filter>, users: &'a ResourceSchemas<'a>) -> ListQuery<'a> {
        ListQuery {
            filter,
            schemas: users,
            sort: None,
            start: PageStart::Index(1),
            count: 1000,
            load: Load::default(),
        }
    }
    let page = store
        .list_resources(&c.id, Kind::User, &matching(None, &users))
        .await
        .expect("list");
    assert_eq!(page.total_results, names as u64);
    for user in &page.resources {
        let (try_, i) = user.id.split_once('-').expect("id");
        let email =
            Filter::parse(&format!(r#"emails.value eq "{try_}-{i}@x.org""#)).expect("parses");
        let found = store
            .list_resources(&c.id, Kind::User, &matching(Some(&email), &users))
            .await
            .expect("list");
        assert_eq!(found.resources.len(), 1, "the winner's email is indexed");
        let (loser, _) = if try_ == "first" {
            ("second", i)
        } else {
            ("first", i)
        };
        let lost =
            Filter::parse(&format!(r#"emails.value eq "{loser}-{i}@x.org""#)).expect("parses");
        let found = store
            .list_resources(&c.id, Kind::User, &matching(Some(&lost), &users))
            .await
            .expect("list");
        assert_eq!(found.total_results, 0, "the failed write left no email row");
    }
    let events = events_after(store, 0).await;
    assert_eq!(
        types(&events[start..]),
        vec!["user.created"; names],
        "one event per write that landed, none for those that failed"
    );
}

fn endpoint(url: &str, types: &[&str], connection: Option<&str>) -> NewWebhookEndpoint {
    NewWebhookEndpoint {
        id: uuid::Uuid::new_v4().to_string(),
        url: url.to_owned(),
        description: None,
        event_types: types.iter().map(|t| (*t).to_owned()).collect(),
        connection_id: connection.map(str::to_owned),
        enabled: true,
        secret: "whsec_c2VjcmV0".into(),
    }
}

fn attempt(delivery: &Delivery, success: bool) -> Attempt {
    Attempt {
        delivery_id: delivery.id,
        at: OffsetDateTime::now_utc(),
        success,
        status_code: Some(if success { 204 } else { 503 }),
        latency_ms: 3,
        response: (!success).then(|| "down".to_owned()),
        error: None,
    }
}

fn outcome(
    stream: &ClaimedStream,
    attempts: Vec<Attempt>,
    retry_in: Option<Duration>,
) -> StreamOutcome {
    StreamOutcome {
        endpoint_id: stream.endpoint.id.clone(),
        stream: stream.stream.clone(),
        lease: stream.lease.clone(),
        attempts,
        retry_at: retry_in.map(|d| OffsetDateTime::now_utc() + d),
        retry_window: Duration::days(3),
    }
}

async fn claim(store: &dyn Store) -> Vec<ClaimedStream> {
    store.sequence_events().await.expect("sequence");
    store.fan_out_events(1000).await.expect("fan out");
    let mut claimed = store
        .claim_webhook_streams(16, 10, std::time::Duration::from_secs(30))
        .await
        .expect("claim");
    claimed.sort_by(|a, b| (&a.endpoint.url, &a.stream).cmp(&(&b.endpoint.url, &b.stream)));
    claimed
}

fn user_ids(stream: &ClaimedStream) -> Vec<String> {
    stream
        .deliveries
        .iter()
        .map(|d| d.event.data["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

pub async fn webhook_queues_deliver_in_order_per_connection(store: &dyn Store) {
    let (a, key) = new_connection("a");
    let a = store.create_connection(a, key).await.expect("a");
    let (b, key) = new_connection("b");
    let b = store.create_connection(b, key).await.expect("b");
    store
        .create_resource(&a.id, Kind::User, "before", user("before", "b@x.org"))
        .await
        .expect("a user from before the endpoint");
    store.sequence_events().await.expect("sequence");
    let all_types = store
        .create_webhook_endpoint(endpoint("http://e.example/all", &[], None))
        .await
        .expect("endpoint");
    let only_a = store
        .create_webhook_endpoint(endpoint(
            "http://e.example/a",
            &["user.created"],
            Some(&a.id),
        ))
        .await
        .expect("filtered endpoint");
    assert_eq!(store.webhook_endpoints().await.expect("list").len(), 2);
    for (conn, id) in [(&a, "u1"), (&b, "u2"), (&a, "u3")] {
        store
            .create_resource(&conn.id, Kind::User, id, user(id, "u@x.org"))
            .await
            .expect("user");
    }
    store
        .update_resource(&a.id, Kind::User, "u1", None, user("u1", "new@x.org"))
        .await
        .expect("update");

    let mut claimed = claim(store).await;
    claimed.sort_by_key(|s| (s.endpoint.url.clone(), s.stream == b.id));
    let shape: Vec<(&str, String, Vec<String>)> = claimed
        .iter()
        .map(|s| {
            let conn = if s.stream == a.id { "A" } else { "B" };
            (s.endpoint.url.as_str(), conn.to_owned(), user_ids(s))
        })
        .collect();
    assert_eq!(
        shape,
        [
            (
                "http://e.example/a",
                "A".to_owned(),
                vec!["u1".to_owned(), "u3".to_owned()]
            ),
            (
                "http://e.example/all",
                "A".to_owned(),
                vec!["u1".to_owned(), "u3".to_owned(), "u1".to_owned()]
            ),
            (
                "http://e.example/all",
                "B".to_owned(),
                vec!["u2".to_owned()]
            ),
        ],
        "only events after the endpoint's creation, filtered, in order per connection"
    );
    assert!(
        store
            .claim_webhook_streams(16, 10, std::time::Duration::from_secs(30))
            .await
            .expect("claim again")
            .is_empty(),
        "leased streams are handed out once"
    );
    let (to_a, all_a, all_b) = (&claimed[0], &claimed[1], &claimed[2]);
    // The endpoint fails on u3: u1 is done, u3 and everything after it wait.
    store
        .complete_webhook_stream(outcome(
            all_a,
            vec![
                attempt(&all_a.deliveries[0], true),
                attempt(&all_a.deliveries[1], false),
            ],
            Some(Duration::hours(1)),
        ))
        .await
        .expect("partial failure");
    for s in [to_a, all_b] {
        let attempts = s.deliveries.iter().map(|d| attempt(d, true)).collect();
        store
            .complete_webhook_stream(outcome(s, attempts, None))
            .await
            .expect("success");
    }
    assert!(
        claim(store).await.is_empty(),
        "the failed stream waits for its retry; the others are drained"
    );
    // Another connection's events are not held back by A's failure.
    store
        .create_resource(&b.id, Kind::User, "u4", user("u4", "u@x.org"))
        .await
        .expect("user");
    let claimed = claim(store).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(user_ids(&claimed[0]), ["u4"]);
    store
        .complete_webhook_stream(outcome(
            &claimed[0],
            vec![attempt(&claimed[0].deliveries[0], true)],
            None,
        ))
        .await
        .expect("done");

    let log = store
        .webhook_deliveries(&all_types.id, None, 100)
        .await
        .expect("deliveries");
    assert_eq!(log.len(), 5);
    let failed = log
        .iter()
        .find(|d| d.state == DeliveryState::Pending && !d.attempts.is_empty())
        .expect("the failed delivery");
    assert_eq!(failed.attempts.len(), 1);
    assert_eq!(failed.attempts[0].status_code, Some(503));
    assert_eq!(failed.attempts[0].response.as_deref(), Some("down"));
    assert!(failed.next_attempt_at.is_some());
    let page = store
        .webhook_deliveries(&all_types.id, Some(log[1].id), 2)
        .await
        .expect("older page");
    assert_eq!(page, log[2..4]);

    let retried = store
        .retry_webhook_delivery(&all_types.id, failed.id)
        .await
        .expect("retry");
    assert_eq!(retried, Some(failed.id));
    let claimed = claim(store).await;
    assert_eq!(user_ids(&claimed[0]), ["u3", "u1"], "the retry comes first");
    assert_eq!(claimed[0].deliveries[0].attempts, 1);
    let attempts = claimed[0]
        .deliveries
        .iter()
        .map(|d| attempt(d, true))
        .collect();
    store
        .complete_webhook_stream(outcome(&claimed[0], attempts, None))
        .await
        .expect("drained");

    assert_eq!(
        store
            .replay_webhook_events(&only_a.id, 0)
            .await
            .expect("replay"),
        3,
        "a replay reaches back before the endpoint existed"
    );
    // A dispatcher that dies holding a lease: once it lapses, the stream is handed out again.
    store.sequence_events().await.expect("sequence");
    let lapsed = store
        .claim_webhook_streams(16, 10, std::time::Duration::ZERO)
        .await
        .expect("claim");
    assert_eq!(lapsed.len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let again = claim(store).await;
    assert_eq!(again.len(), 1);
    assert_eq!(user_ids(&again[0]), ["before", "u1", "u3"]);
    store
        .complete_webhook_stream(outcome(&lapsed[0], vec![], None))
        .await
        .expect("a stale lease records nothing");
    assert!(claim(store).await.is_empty(), "the new lease still holds");
    let delivered = store
        .retry_webhook_delivery(&only_a.id, again[0].deliveries[0].id)
        .await
        .expect("retry pending");
    assert!(delivered.is_some());
    assert_eq!(
        store
            .retry_webhook_delivery(&only_a.id, i64::MAX)
            .await
            .expect("retry unknown"),
        None
    );

    assert!(store
        .delete_webhook_endpoint(&only_a.id)
        .await
        .expect("delete"));
    assert!(store
        .webhook_endpoint(&only_a.id)
        .await
        .expect("read")
        .is_none());
}

pub async fn failing_endpoints_are_disabled_and_resume_when_enabled(store: &dyn Store) {
    let (a, key) = new_connection("a");
    let a = store.create_connection(a, key).await.expect("a");
    let hook = store
        .create_webhook_endpoint(endpoint("http://down.example", &[], None))
        .await
        .expect("endpoint");
    store
        .create_resource(&a.id, Kind::User, "u1", user("u1", "u@x.org"))
        .await
        .expect("user");
    let claimed = claim(store).await;
    let mut failure = outcome(
        &claimed[0],
        vec![attempt(&claimed[0].deliveries[0], false)],
        Some(Duration::ZERO),
    );
    failure.retry_window = Duration::ZERO;
    store
        .complete_webhook_stream(failure)
        .await
        .expect("failure");
    let disabled = store
        .webhook_endpoint(&hook.id)
        .await
        .expect("read")
        .expect("still there");
    assert!(!disabled.enabled);
    assert!(disabled
        .disabled_reason
        .as_deref()
        .is_some_and(|r| r.contains("retry window")));
    let events = events_after(store, 0).await;
    assert_eq!(
        events.last().map(|e| e.event_type.as_str()),
        Some("webhook_endpoint.disabled")
    );
    assert!(claim(store).await.is_empty(), "a disabled endpoint waits");
    store
        .update_webhook_endpoint(
            &hook.id,
            WebhookEndpointUpdate {
                enabled: Some(true),
                ..WebhookEndpointUpdate::default()
            },
        )
        .await
        .expect("enable");
    let resumed = claim(store).await;
    let resumed: Vec<_> = resumed
        .iter()
        .map(|s| (s.stream == a.id, user_ids(s)))
        .collect();
    assert!(
        resumed.contains(&(true, vec!["u1".to_owned()])),
        "the queue resumes where it stopped: {resumed:?}"
    );
    assert_eq!(resumed.len(), 2, "the disable event went to its own queue");
}

pub async fn events_are_pruned_and_expiring_keys_warned_once(store: &dyn Store) {
    let (new, mut key) = new_connection("expiring");
    key.expires_at = Some(OffsetDateTime::now_utc() + Duration::days(5));
    let c = store.create_connection(new, key).await.expect("connection");
    let (forever, key) = new_connection("forever");
    store
        .create_connection(forever, key)
        .await
        .expect("connection without expiry");
    let until = OffsetDateTime::now_utc() + Duration::days(14);
    assert_eq!(store.warn_expiring_keys(until).await.expect("warn"), 1);
    assert_eq!(
        store.warn_expiring_keys(until).await.expect("again"),
        0,
        "once per key"
    );
    let events = events_after(store, 0).await;
    let warning = events
        .iter()
        .find(|e| e.event_type == "connection.scim_api_key_expiring")
        .expect("warning");
    assert_eq!(warning.connection_id.as_deref(), Some(c.id.as_str()));
    let hook = store
        .create_webhook_endpoint(endpoint("http://e.example", &[], None))
        .await
        .expect("endpoint");
    store
        .create_resource(&c.id, Kind::User, "u1", user("u1", "u@x.org"))
        .await
        .expect("user");
    assert_eq!(claim(store).await.len(), 1);
    assert_eq!(
        store
            .prune_events(OffsetDateTime::now_utc() - Duration::hours(1))
            .await
            .expect("prune nothing"),
        0
    );
    let total = events_after(store, 0).await.len() as u64;
    assert_eq!(
        store
            .prune_events(OffsetDateTime::now_utc() + Duration::seconds(1))
            .await
            .expect("prune"),
        total
    );
    assert!(events_after(store, 0).await.is_empty());
    assert!(store
        .webhook_deliveries(&hook.id, None, 10)
        .await
        .expect("deliveries")
        .is_empty());
    assert!(
        store.last_sequence().await.expect("last") >= total as i64,
        "sequences are not reused"
    );
}

async fn with_email(store: &dyn Store, connection_id: &str, email: &str) -> Vec<String> {
    let registry = SchemaRegistry::standard();
    let users = registry.view("User").expect("User");
    let filter = Filter::parse(&format!(r#"emails.value eq "{email}""#)).expect("parses");
    let query = ListQuery {
        filter: Some(&filter),
        schemas: &users,
        sort: None,
        start: PageStart::Index(1),
        count: 10,
        load: Load::default(),
    };
    let page = store
        .list_resources(connection_id, Kind::User, &query)
        .await
        .expect("list");
    page.resources.into_iter().map(|r| r.id).collect()
}

/// A user create sends its row, emails and events together: with no email there is no emails
/// statement at all, with several each is indexed, and replacing them keeps only the new ones.
pub async fn users_with_no_email_or_several_are_created_whole(store: &dyn Store) {
    let (new, key) = new_connection("emails");
    let c = store.create_connection(new, key).await.expect("connection");
    let mut none = user("no-mail", "unused@x.org");
    none.body["emails"] = json!([]);
    none.indexed.emails.clear();
    store
        .create_resource(&c.id, Kind::User, "none", none)
        .await
        .expect("a user without email");
    let mut two = user("two-mail", "One@X.org");
    two.indexed.emails.push("two@x.org".into());
    store
        .create_resource(&c.id, Kind::User, "two", two)
        .await
        .expect("a user with two emails");

    assert_eq!(with_email(store, &c.id, "one@x.org").await, ["two"]);
    assert_eq!(with_email(store, &c.id, "TWO@x.org").await, ["two"]);
    assert!(with_email(store, &c.id, "unused@x.org").await.is_empty());

    let mut replaced = user("two-mail", "three@x.org");
    replaced.indexed.emails.push("four@x.org".into());
    store
        .update_resource(&c.id, Kind::User, "two", None, replaced)
        .await
        .expect("new emails");
    assert!(with_email(store, &c.id, "one@x.org").await.is_empty());
    assert_eq!(with_email(store, &c.id, "four@x.org").await, ["two"]);

    let created: Vec<String> = events_after(store, 0)
        .await
        .iter()
        .filter(|e| e.event_type == "user.created")
        .filter_map(|e| e.data["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(created, ["none", "two"], "one event per user created");
}

#[macro_export]
macro_rules! store_suite {
    ($make:expr) => {
        $crate::store_suite!(@cases $make(suite::describer());
            connection_lifecycle,
            scim_keys_rotate_with_overlap,
            integration_keys,
            user_names_are_unique_per_connection_case_insensitively,
            versions_guard_writes,
            memberships_are_rows,
            lists_filter_sort_and_page,
            cursor_walks_never_skip_or_repeat,
            request_log_keeps_the_newest,
            mapping_generations_and_leases,
            deleted_users_stay_readable_until_pruned,
            indirect_membership_changes_bump_versions,
            writes_emit_their_events_atomically,
            concurrent_writers_never_make_a_reader_skip,
            webhook_queues_deliver_in_order_per_connection,
            failing_endpoints_are_disabled_and_resume_when_enabled,
            events_are_pruned_and_expiring_keys_warned_once,
            concurrent_writes_that_fail_roll_back_alone,
            users_with_no_email_or_several_are_created_whole,
            membership_changes_leave_views_current_when_the_mapping_ignores_groups
        );
        $crate::store_suite!(@cases $make(suite::mapper());
            writes_store_the_mapped_view,
            users_created_while_the_mapping_changes_are_left_to_the_recompute,
            users_created_with_the_callers_connection
        );
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (store, _guard) = $make.await;
                suite::$case(&store).await;
            }
        )*
    };
}
