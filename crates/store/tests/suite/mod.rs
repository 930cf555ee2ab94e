//! The behavioural suite every backend must pass. Each backend's test file calls
//! `store_suite!` with an async constructor of a fresh, empty store.

use scimgate_protocol::{AttrPath, Filter, SchemaRegistry};
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
                custom_mapping: Some(Some(json!({"default_role": "member"}))),
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
    assert_eq!(
        found,
        ScimKeyRecord {
            connection_id: new.id.clone(),
            valid_until: None,
            replaced: false
        }
    );

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
    store
        .save_mapped(&a.id, "u0", 0, record(1))
        .await
        .expect("save");
    store
        .save_mapped(&a.id, "u1", 99, record(1))
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
        .create_resource(
            &a.id,
            Kind::Group,
            "g-u1",
            group("G1", vec![MemberOp::Add(member("u1"))]),
        )
        .await
        .expect("group");
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
                custom_mapping: Some(Some(json!({}))),
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
        .save_mapped(&a.id, "u0", 0, record(2))
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
        .save_mapped(&a.id, "u0", 1, record(2))
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
        .save_mapped(&a.id, "u0", 1, record(2))
        .await
        .expect("a view computed before the last change is not saved");
    assert_eq!(
        store.mapping_progress(&a.id).await.expect("progress"),
        (3, 0)
    );
    store
        .save_mapped(&a.id, "u0", 2, record(2))
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

#[macro_export]
macro_rules! store_suite {
    ($make:expr) => {
        $crate::store_suite!(@cases $make;
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
            indirect_membership_changes_bump_versions
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
