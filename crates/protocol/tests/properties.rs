//! Properties over generated input: a printed filter parses back to the same AST; a PATCH `add`
//! followed by the `remove` of the same value restores the resource; evaluation and PATCH
//! application never panic, whatever the filter and the resource look like.

use proptest::prelude::*;
use scimgate_protocol::filter::parse_filter;
use scimgate_protocol::{
    apply_patch, normalize, AttrPath, CompValue, CompareOp, Filter, NormalizeOptions, ParseLimits,
    PatchRequest, SchemaRegistry, ENTERPRISE_USER_SCHEMA, USER_SCHEMA,
};
use serde_json::{json, Value};

fn attr_name() -> impl Strategy<Value = String> {
    "[a-zA-Z][a-zA-Z0-9_-]{0,7}".prop_filter("keywords are not attribute names", |s| {
        !["and", "or", "not"].contains(&s.to_ascii_lowercase().as_str())
    })
}

fn attr_path(allow_urn: bool) -> impl Strategy<Value = AttrPath> {
    let urn = if allow_urn {
        prop_oneof![
            Just(None),
            Just(Some(USER_SCHEMA.to_owned())),
            Just(Some(ENTERPRISE_USER_SCHEMA.to_owned()))
        ]
        .boxed()
    } else {
        Just(None).boxed()
    };
    (urn, attr_name(), proptest::option::of(attr_name())).prop_map(|(urn, name, sub)| AttrPath {
        urn,
        name,
        sub,
    })
}

fn comp_value() -> impl Strategy<Value = CompValue> {
    prop_oneof![
        Just(CompValue::Null),
        any::<bool>().prop_map(CompValue::Bool),
        any::<i64>().prop_map(|n| CompValue::Number(n.into())),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(CompValue::Number)),
        any::<String>().prop_map(CompValue::String),
        "20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,3})?(Z|[+-][01][0-9]:[0-5][0-9])"
            .prop_map(CompValue::String),
    ]
}

fn compare_op() -> impl Strategy<Value = CompareOp> {
    prop_oneof![
        Just(CompareOp::Eq),
        Just(CompareOp::Ne),
        Just(CompareOp::Co),
        Just(CompareOp::Sw),
        Just(CompareOp::Ew),
        Just(CompareOp::Gt),
        Just(CompareOp::Ge),
        Just(CompareOp::Lt),
        Just(CompareOp::Le),
    ]
}

/// Filters as the parser builds them: `and` / `or` chains hold at least two items, and a chain
/// never directly holds a chain of the same kind (the parser would flatten it).
fn filter(allow_urn: bool, allow_value_path: bool) -> BoxedStrategy<Filter> {
    let leaf = prop_oneof![
        (attr_path(allow_urn), compare_op(), comp_value())
            .prop_map(|(path, op, value)| Filter::Compare { path, op, value }),
        attr_path(allow_urn).prop_map(Filter::Present),
    ];
    leaf.prop_recursive(4, 24, 4, move |inner| {
        let mut options = vec![
            prop::collection::vec(inner.clone(), 2..4)
                .prop_map(|items| {
                    Filter::And(
                        items
                            .into_iter()
                            .flat_map(|f| match f {
                                Filter::And(nested) => nested,
                                other => vec![other],
                            })
                            .collect(),
                    )
                })
                .boxed(),
            prop::collection::vec(inner.clone(), 2..4)
                .prop_map(|items| {
                    Filter::Or(
                        items
                            .into_iter()
                            .flat_map(|f| match f {
                                Filter::Or(nested) => nested,
                                other => vec![other],
                            })
                            .collect(),
                    )
                })
                .boxed(),
            inner.clone().prop_map(|f| Filter::Not(Box::new(f))).boxed(),
        ];
        if allow_value_path {
            options.push(
                (attr_name(), filter(false, false))
                    .prop_map(|(name, f)| Filter::ValuePath {
                        path: AttrPath::new(name),
                        filter: Box::new(f),
                    })
                    .boxed(),
            );
        }
        prop::strategy::Union::new(options)
    })
    .boxed()
}

/// Fragments the filter grammar is made of, so random text reaches deep into the parser.
fn filter_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("userName".to_owned()),
        Just("emails".to_owned()),
        Just("name.givenName".to_owned()),
        Just("meta.lastModified".to_owned()),
        Just("members".to_owned()),
        Just("active".to_owned()),
        Just("value".to_owned()),
        Just("type".to_owned()),
        Just(format!("{ENTERPRISE_USER_SCHEMA}:manager.value")),
        Just("eq".to_owned()),
        Just("ne".to_owned()),
        Just("co".to_owned()),
        Just("gt".to_owned()),
        Just("le".to_owned()),
        Just("pr".to_owned()),
        Just("and".to_owned()),
        Just("or".to_owned()),
        Just("not".to_owned()),
        Just("(".to_owned()),
        Just(")".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just("\"work\"".to_owned()),
        Just("\"2011-05-13T04:42:34Z\"".to_owned()),
        Just("true".to_owned()),
        Just("null".to_owned()),
        Just("42".to_owned()),
        Just("-1.5e3".to_owned()),
        Just("\"\\u00e9\\\"\"".to_owned()),
        any::<String>(),
    ];
    prop::collection::vec(token, 0..24).prop_map(|tokens| tokens.join(" "))
}

/// Any JSON, shallow: what a hostile or broken resource may hold in place of an attribute.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        "[a-z@.]{0,8}".prop_map(Value::String),
        Just(json!("2011-05-13T04:42:34Z")),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("value".to_owned()),
                    Just("type".to_owned()),
                    Just("primary".to_owned()),
                    Just("givenName".to_owned())
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn hostile_resource() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        prop_oneof![
            Just("userName"),
            Just("name"),
            Just("emails"),
            Just("active"),
            Just("meta"),
            Just("members"),
            Just("displayName"),
            Just(ENTERPRISE_USER_SCHEMA),
        ],
        json_value(),
        0..6,
    )
    .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

fn base_user() -> impl Strategy<Value = Value> {
    (
        "[a-z]{1,8}",
        proptest::option::of("[A-Z][a-z]{0,6}"),
        proptest::collection::vec(
            (
                "[a-z]{1,6}@[a-z]{1,4}\\.org",
                prop_oneof![Just("work"), Just("home"), Just("other")],
            ),
            0..4,
        ),
        proptest::option::of("[0-9]{1,6}"),
        any::<bool>(),
    )
        .prop_map(|(user_name, given, emails, employee, active)| {
            let mut user =
                json!({"schemas": [USER_SCHEMA], "userName": user_name, "active": active});
            if let Some(g) = given {
                user["name"] = json!({"givenName": g});
            }
            if !emails.is_empty() {
                user["emails"] = emails
                    .into_iter()
                    .map(|(value, kind)| json!({"value": value, "type": kind}))
                    .collect();
            }
            if let Some(e) = employee {
                user["schemas"] = json!([USER_SCHEMA, ENTERPRISE_USER_SCHEMA]);
                user[ENTERPRISE_USER_SCHEMA] = json!({"employeeNumber": e});
            }
            user
        })
}

fn patch_body(ops: Value) -> PatchRequest {
    let body =
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});
    PatchRequest::parse(&body).expect("generated PATCH parses")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn printed_filters_parse_back_to_the_same_ast(f in filter(true, true)) {
        let printed = f.to_string();
        let limits = ParseLimits { max_len: usize::MAX, max_depth: 64 };
        let again = parse_filter(&printed, &limits).map_err(|e| TestCaseError::fail(format!("{printed:?}: {e}")))?;
        prop_assert_eq!(again, f, "printed as {:?}", printed);
    }

    #[test]
    fn parsing_and_evaluating_never_panic(text in filter_text(), resource in hostile_resource()) {
        let registry = SchemaRegistry::standard();
        if let Ok(f) = Filter::parse(&text) {
            for rt in ["User", "Group"] {
                let rs = registry.view(rt).expect("resource type");
                let _ = f.validate(&rs);
                let _ = f.matches(&resource, &rs);
            }
        }
    }

    #[test]
    fn generated_filters_evaluate_without_panicking(f in filter(true, true), resource in hostile_resource()) {
        let registry = SchemaRegistry::standard();
        let rs = registry.view("User").expect("User");
        let _ = f.validate(&rs);
        let _ = f.matches(&resource, &rs);
    }

    #[test]
    fn patch_application_never_panics(ops in prop::collection::vec((
        prop_oneof![Just("add"), Just("replace"), Just("remove"), Just("Replace")],
        proptest::option::of(prop_oneof![
            Just("emails".to_owned()), Just("emails[type eq \"work\"].value".to_owned()), Just("name.givenName".to_owned()),
            Just("members".to_owned()), Just("active".to_owned()), Just(ENTERPRISE_USER_SCHEMA.to_owned()),
            Just(format!("{ENTERPRISE_USER_SCHEMA}:manager")), Just("emails[value co \"@\"]".to_owned()),
        ]),
        proptest::option::of(json_value()),
    ), 0..5), user in base_user()) {
        let registry = SchemaRegistry::standard();
        let rs = registry.view("User").expect("User");
        let user = normalize(&user, &rs, NormalizeOptions::default()).expect("generated user normalizes");
        let ops: Vec<Value> = ops.into_iter().map(|(op, path, value)| {
            let mut o = json!({"op": op});
            if let Some(p) = path { o["path"] = json!(p); }
            if let Some(v) = value { o["value"] = v; }
            o
        }).collect();
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});
        if let Ok(request) = PatchRequest::parse(&body) {
            for lenient in [true, false] {
                let _ = apply_patch(user.clone(), &request, &rs, NormalizeOptions { lenient });
            }
        }
    }

    #[test]
    fn adding_then_removing_an_email_restores_the_user(user in base_user(), local in "[a-z]{1,8}", kind in prop_oneof![Just("work"), Just("home")]) {
        let registry = SchemaRegistry::standard();
        let rs = registry.view("User").expect("User");
        let user = normalize(&user, &rs, NormalizeOptions::default()).expect("normalizes");
        let address = format!("{local}@added.example");
        let add = patch_body(json!([{"op": "add", "path": "emails", "value": [{"value": address, "type": kind}]}]));
        let added = apply_patch(user.clone(), &add, &rs, NormalizeOptions::default()).expect("add applies");
        prop_assert!(!added.changes.is_empty());
        let remove = patch_body(json!([{"op": "remove", "path": format!("emails[value eq \"{address}\"]")}]));
        let restored = apply_patch(added.resource, &remove, &rs, NormalizeOptions::default()).expect("remove applies");
        prop_assert_eq!(restored.resource, user);
    }

    #[test]
    fn adding_then_removing_a_simple_or_extension_attribute_restores_the_user(
        user in base_user(),
        path in prop_oneof![Just("nickName".to_owned()), Just("name.familyName".to_owned()), Just(format!("{ENTERPRISE_USER_SCHEMA}:costCenter"))],
        value in "[A-Za-z0-9]{1,10}",
    ) {
        let registry = SchemaRegistry::standard();
        let rs = registry.view("User").expect("User");
        let user = normalize(&user, &rs, NormalizeOptions::default()).expect("normalizes");
        let add = patch_body(json!([{"op": "add", "path": path, "value": value}]));
        let added = apply_patch(user.clone(), &add, &rs, NormalizeOptions::default()).expect("add applies");
        prop_assert_eq!(added.changes.len(), 1);
        let remove = patch_body(json!([{"op": "remove", "path": path}]));
        let restored = apply_patch(added.resource, &remove, &rs, NormalizeOptions::default()).expect("remove applies");
        prop_assert_eq!(restored.resource, user);
    }

    #[test]
    fn adding_then_removing_members_by_value_list_restores_the_group(
        existing in prop::collection::btree_set("[a-f0-9]{8}", 0..20),
        new in prop::collection::btree_set("[g-z]{8}", 1..10),
    ) {
        let registry = SchemaRegistry::standard();
        let rs = registry.view("Group").expect("Group");
        let mut group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "G"});
        if !existing.is_empty() {
            group["members"] = existing.iter().map(|id| json!({"value": id})).collect();
        }
        let listed: Vec<Value> = new.iter().map(|id| json!({"value": id})).collect();
        let add = patch_body(json!([{"op": "Add", "path": "members", "value": listed}]));
        let added = apply_patch(group.clone(), &add, &rs, NormalizeOptions::default()).expect("add applies");
        prop_assert_eq!(added.resource["members"].as_array().map(Vec::len), Some(existing.len() + new.len()));
        let remove = patch_body(json!([{"op": "Remove", "path": "members", "value": listed}]));
        let restored = apply_patch(added.resource, &remove, &rs, NormalizeOptions::default()).expect("remove applies");
        prop_assert_eq!(restored.resource, group);
    }
}
