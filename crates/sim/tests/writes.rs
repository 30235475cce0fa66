//! Writes on the simulated site over real HTTP, driven by the project's Rust
//! client with the params the official Python client sends: round trips of
//! every writable data type, defaults, audit fields, validation, batches,
//! inverse links, delete/revive with their cascade, schema edits, and who may
//! write (credentials, scripts without events, session tokens).

mod support;

use serde_json::{json, Value};

use sg_protocol::Auth;
use sg_sim::{EventFaults, ServerOptions};
use support::*;

fn project() -> Value {
    json!({"type": "Project", "id": PROJECT_ID, "name": PROJECT_NAME})
}

/// Every Shot field of the small schema with a first and a second value.
fn data_type_cases(seq1: i64, seq2: i64, a1: i64, a2: i64) -> Vec<(&'static str, Value, Value)> {
    vec![
        ("code", json!("sh010"), json!("sh010 <b>é&amp;</b>")),
        ("description", json!("first\nline"), json!("")),
        ("sg_cut_in", json!(1001), json!(-5)),
        ("sg_priority", json!(1), json!(9)),
        ("sg_rate", json!(1.5), json!(23.976)),
        ("sg_budget", json!(9.99), json!(1000000.25)),
        ("sg_done", json!(50), json!(100)),
        ("sg_length", json!(600), json!(0)),
        ("sg_hero", json!(true), json!(false)),
        ("sg_due", json!("2024-02-29"), json!("2025-12-31")),
        (
            "sg_start",
            json!("2024-01-02T03:04:05Z"),
            json!("2030-06-07T08:09:10Z"),
        ),
        ("sg_status_list", json!("ip"), json!("fin")),
        ("sg_shot_type", json!("Hero"), json!("BG")),
        ("sg_kind", json!("Asset"), json!("Shot")),
        ("sg_color", json!("255,0,0"), json!("pipeline_step")),
        (
            "sg_uuid",
            json!("5d7f6b9e-0000-4000-8000-000000000000"),
            json!("6e8a7cae-1111-4111-9111-111111111111"),
        ),
        (
            "sg_link",
            json!({"url": "https://example.com/a", "name": "a", "link_type": "web", "content_type": null}),
            json!({"url": "https://example.com/b?x=1", "name": "b", "link_type": "web", "content_type": "text/html"}),
        ),
        (
            "sg_data",
            json!({"a": [1, 2, {"b": null}]}),
            json!({"z": "text", "n": 1.5}),
        ),
        (
            "sg_sequence",
            json!({"type": "Sequence", "id": seq1, "name": "sq1"}),
            json!({"type": "Sequence", "id": seq2, "name": "sq2"}),
        ),
        ("project", project(), project()),
        (
            "assets",
            json!([{"type": "Asset", "id": a1, "name": "tree"}]),
            json!([{"type": "Asset", "id": a1, "name": "tree"}, {"type": "Asset", "id": a2, "name": "rock"}]),
        ),
        (
            "tag_list",
            json!(["hero", "fx"]),
            json!(["night shoot", "hero"]),
        ),
    ]
}

/// Numbers compare by value (1.5 == 1.5, 2 == 2.0); everything else exactly.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

async fn fixtures(c: &sg_client::Client) -> (i64, i64, i64, i64) {
    let seq1 = create(c, "Sequence", json!({"code": "sq1", "project": project()})).await;
    let seq2 = create(c, "Sequence", json!({"code": "sq2", "project": project()})).await;
    let a1 = create(c, "Asset", json!({"code": "tree", "project": project()})).await;
    let a2 = create(c, "Asset", json!({"code": "rock", "project": project()})).await;
    (seq1, seq2, a1, a2)
}

/// Create returns the given fields plus `type`, `id` and the return fields;
/// update returns `{type, id, <updated fields>}`; reads give back exactly what
/// was written, for every writable data type, and null clears each one
/// (a checkbox reads false).
#[tokio::test]
async fn every_data_type_round_trips() {
    let site = start().await;
    let c = site.client();
    let (seq1, seq2, a1, a2) = fixtures(&c).await;
    let cases = data_type_cases(seq1, seq2, a1, a2);
    let names: Vec<&str> = cases.iter().map(|(f, _, _)| *f).collect();

    let mut first = serde_json::Map::new();
    for (field, v1, _) in &cases {
        first.insert(field.to_string(), v1.clone());
    }
    let created = create_returning(&c, "Shot", Value::Object(first), &["created_at"]).await;
    let id = created["id"].as_i64().expect("id");
    assert_eq!(created["type"], json!("Shot"));
    assert!(
        created["created_at"].is_string(),
        "return_fields are returned too: {created}"
    );
    for (field, v1, _) in &cases {
        assert!(
            same(&created[*field], v1),
            "create returned {field} = {} for {v1}",
            created[*field]
        );
    }
    let read_back = find(&c, "Shot", id, &names).await.expect("the new Shot");
    for (field, v1, _) in &cases {
        assert!(
            same(&read_back[*field], v1),
            "read {field} = {} after writing {v1}",
            read_back[*field]
        );
    }

    let mut second = serde_json::Map::new();
    for (field, _, v2) in &cases {
        second.insert(field.to_string(), v2.clone());
    }
    let updated = update(&c, "Shot", id, Value::Object(second)).await;
    assert_eq!(
        (updated["type"].clone(), updated["id"].clone()),
        (json!("Shot"), json!(id))
    );
    let mut returned: Vec<&String> = updated
        .as_object()
        .expect("dict")
        .keys()
        .filter(|k| *k != "type" && *k != "id")
        .collect();
    returned.sort();
    let mut expected_keys: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    expected_keys.sort();
    assert_eq!(
        returned,
        expected_keys.iter().collect::<Vec<_>>(),
        "update returns exactly the updated fields"
    );
    let read_back = find(&c, "Shot", id, &names).await.expect("the Shot");
    for (field, _, v2) in &cases {
        assert!(
            same(&updated[*field], v2),
            "update returned {field} = {} for {v2}",
            updated[*field]
        );
        assert!(
            same(&read_back[*field], v2),
            "read {field} = {} after writing {v2}",
            read_back[*field]
        );
    }

    let mut nulls = serde_json::Map::new();
    for field in names.iter().filter(|f| **f != "code") {
        nulls.insert(field.to_string(), Value::Null);
    }
    update(&c, "Shot", id, Value::Object(nulls)).await;
    let cleared = find(&c, "Shot", id, &names).await.expect("the Shot");
    for field in names.iter().filter(|f| **f != "code") {
        let want = match *field {
            "sg_hero" => json!(false),
            "assets" | "tag_list" => json!([]),
            _ => Value::Null,
        };
        assert_eq!(cleared[*field], want, "{field} after writing null");
    }
}

/// multi_entity updates in set, add and remove modes; add skips links already
/// there, remove ignores links that are not, and the update returns the whole list.
#[tokio::test]
async fn multi_entity_set_add_and_remove() {
    let site = start().await;
    let c = site.client();
    let a: Vec<i64> = {
        let mut ids = Vec::new();
        for code in ["a1", "a2", "a3", "a4"] {
            ids.push(create(&c, "Asset", json!({"code": code})).await);
        }
        ids
    };
    let link = |i: usize| json!({"type": "Asset", "id": a[i]});
    let shot = create(
        &c,
        "Shot",
        json!({"code": "s", "assets": [link(0), link(1)]}),
    )
    .await;
    let names = |v: &Value| pairs(v).into_iter().map(|(_, id)| id).collect::<Vec<_>>();

    let r = update_mode(&c, "Shot", shot, "assets", json!([link(2), link(0)]), "add").await;
    assert_eq!(
        names(&r["assets"]),
        vec![a[0], a[1], a[2]],
        "add appends new links only: {r}"
    );
    assert_eq!(
        r["assets"][2]["name"],
        json!("a3"),
        "returned links carry names"
    );
    let r = update_mode(
        &c,
        "Shot",
        shot,
        "assets",
        json!([link(1), link(3)]),
        "remove",
    )
    .await;
    assert_eq!(names(&r["assets"]), vec![a[0], a[2]]);
    let r = update_mode(&c, "Shot", shot, "assets", json!([link(3), link(1)]), "set").await;
    assert_eq!(
        names(&r["assets"]),
        vec![a[3], a[1]],
        "set keeps the given order"
    );
    assert_eq!(
        names(&get(&c, "Shot", shot, "assets").await),
        vec![a[3], a[1]]
    );
    // No mode is set.
    let r = update(&c, "Shot", shot, json!({"assets": [link(2)]})).await;
    assert_eq!(names(&r["assets"]), vec![a[2]]);
    let r = update_mode(&c, "Shot", shot, "assets", json!([]), "set").await;
    assert_eq!(r["assets"], json!([]));
    let f = fault(&c, "update", json!({"type": "Shot", "id": shot, "fields": [{"field_name": "assets", "value": [link(0)], "multi_entity_update_mode": "toggle"}]})).await;
    assert_eq!(f.code.as_i64(), 103);
}

/// A tag_list takes and returns tag names: set, add and remove work on it
/// as on a multi-entity list; each name is a Tag record (made for a new
/// name, reused for one a Tag has, whatever the letters' case, and then
/// spelled as the Tag spells it); filters see the names.
#[tokio::test]
async fn tag_lists_take_and_return_names() {
    let site = start().await;
    let c = site.client();
    let shot = create(&c, "Shot", json!({"code": "s", "tag_list": ["hero", "fx"]})).await;
    assert_eq!(
        get(&c, "Shot", shot, "tag_list").await,
        json!(["hero", "fx"])
    );
    let tag_names = |tags: Vec<Value>| -> Vec<String> {
        tags.iter()
            .filter_map(|t| t["name"].as_str().map(str::to_string))
            .collect()
    };
    let tags = read(&c, "Tag", &["name"], json!([]), "active").await;
    assert_eq!(tag_names(tags.clone()), ["hero", "fx"]);

    let r = update_mode(&c, "Shot", shot, "tag_list", json!(["HERO", "rain"]), "add").await;
    assert_eq!(
        r["tag_list"],
        json!(["hero", "fx", "rain"]),
        "add appends new names, spelled as their Tag: {r}"
    );
    let r = update_mode(&c, "Shot", shot, "tag_list", json!(["fx", "x"]), "remove").await;
    assert_eq!(r["tag_list"], json!(["hero", "rain"]));
    let r = update(&c, "Shot", shot, json!({"tag_list": ["rain", "hero"]})).await;
    assert_eq!(
        r["tag_list"],
        json!(["rain", "hero"]),
        "set keeps the order"
    );
    assert_eq!(
        get(&c, "Shot", shot, "tag_list").await,
        json!(["rain", "hero"])
    );
    let tags = read(&c, "Tag", &["name"], json!([]), "active").await;
    assert_eq!(
        tag_names(tags.clone()),
        ["hero", "fx", "rain"],
        "removing a name no Tag has makes no Tag"
    );

    let other = create(&c, "Shot", json!({"code": "o", "tag_list": ["Fx"]})).await;
    let bare = create(&c, "Shot", json!({"code": "b"})).await;
    let matching = |relation: &str, value: Value| {
        let c = c.clone();
        let relation = relation.to_string();
        async move {
            read(
                &c,
                "Shot",
                &["id"],
                json!([{"path": "tag_list", "relation": relation, "values": [value]}]),
                "active",
            )
            .await
            .iter()
            .filter_map(|r| r["id"].as_i64())
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(get(&c, "Shot", other, "tag_list").await, json!(["fx"]));
    assert_eq!(matching("is", json!("Hero")).await, vec![shot]);
    assert_eq!(matching("is_not", json!("hero")).await, vec![other, bare]);
    assert_eq!(matching("name_contains", json!("X")).await, vec![other]);
    assert_eq!(
        matching("name_not_contains", json!("r")).await,
        vec![other, bare]
    );
    let fx = tags[1]["id"].as_i64().expect("Tag id");
    assert_eq!(matching("name_id", json!(fx)).await, vec![other]);
    let f = fault(
        &c,
        "read",
        json!({"type": "Shot", "filters": {"logical_operator": "and",
        "conditions": [{"path": "tag_list", "relation": "in", "values": ["hero"]}]}}),
    )
    .await;
    assert_eq!(f.code.as_i64(), 103);
}

/// Fields left out of a create get the schema's default_value; given values win.
#[tokio::test]
async fn defaults_from_the_schema_apply_on_create() {
    let site = start().await;
    let c = site.client();
    let shot = create(&c, "Shot", json!({"code": "plain"})).await;
    let r = find(
        &c,
        "Shot",
        shot,
        &["sg_priority", "sg_status_list", "sg_cut_in", "sg_hero"],
    )
    .await
    .expect("shot");
    assert_eq!(
        (
            r["sg_priority"].clone(),
            r["sg_status_list"].clone(),
            r["sg_cut_in"].clone(),
            r["sg_hero"].clone()
        ),
        (json!(5), json!("wtg"), Value::Null, json!(false))
    );
    let given = create(
        &c,
        "Shot",
        json!({"code": "given", "sg_priority": 1, "sg_status_list": "ip"}),
    )
    .await;
    let r = find(&c, "Shot", given, &["sg_priority", "sg_status_list"])
        .await
        .expect("shot");
    assert_eq!(
        (r["sg_priority"].clone(), r["sg_status_list"].clone()),
        (json!(1), json!("ip"))
    );
    let task = create(&c, "Task", json!({"content": "anim"})).await;
    let r = find(&c, "Task", task, &["color", "sg_status_list"])
        .await
        .expect("task");
    assert_eq!(
        (r["color"].clone(), r["sg_status_list"].clone()),
        (json!("pipeline_step"), json!("wtg"))
    );
    // The create result carries the defaults when asked for them.
    let r = create_returning(&c, "Task", json!({"content": "comp"}), &["color"]).await;
    assert_eq!(r["color"], json!("pipeline_step"));
}

/// created_at/updated_at/created_by/updated_by are the site's: set on create,
/// updated_at/updated_by moved by an update, and refused from callers.
#[tokio::test]
async fn audit_fields_are_set_by_the_site_and_refused_from_callers() {
    let site = start().await;
    let c = site.client();
    let audit = ["created_at", "updated_at", "created_by", "updated_by"];
    let before = chrono::Utc::now().timestamp();
    let shot = create(&c, "Shot", json!({"code": "a"})).await;
    let r = find(&c, "Shot", shot, &audit).await.expect("shot");
    let created_at = r["created_at"]
        .as_str()
        .expect("created_at is set")
        .to_string();
    assert_eq!(
        created_at.len(),
        20,
        "date_time in the client's form: {created_at}"
    );
    let stamp = chrono::NaiveDateTime::parse_from_str(&created_at, "%Y-%m-%dT%H:%M:%SZ")
        .expect("Z form")
        .and_utc()
        .timestamp();
    assert!(
        stamp >= before - 1 && stamp <= chrono::Utc::now().timestamp() + 1,
        "created_at is now"
    );
    assert_eq!(r["updated_at"], json!(created_at));
    let user = r["created_by"].clone();
    assert_eq!(
        (user["type"].clone(), user["name"].clone()),
        (json!("ApiUser"), json!(SCRIPT)),
        "{user}"
    );
    assert_eq!(r["updated_by"], user);

    next_second().await;
    update(&c, "Shot", shot, json!({"code": "b"})).await;
    let r = find(&c, "Shot", shot, &audit).await.expect("shot");
    assert_eq!(r["created_at"], json!(created_at), "created_at never moves");
    assert!(
        r["updated_at"].as_str().expect("updated_at") > created_at.as_str(),
        "updated_at moves: {r}"
    );

    let user_as = site.client_as(Auth::user(USER, PASSWORD));
    update(&user_as, "Shot", shot, json!({"code": "c"})).await;
    let r = find(&c, "Shot", shot, &audit).await.expect("shot");
    assert_eq!(
        (
            r["updated_by"]["type"].clone(),
            r["updated_by"]["name"].clone()
        ),
        (json!("HumanUser"), json!(USER))
    );
    assert_eq!(r["created_by"], user, "created_by never moves");

    let shots = count(&c, "Shot", "active").await;
    let values = [
        json!("2020-01-01T00:00:00Z"),
        json!("2020-01-01T00:00:00Z"),
        user.clone(),
        user.clone(),
    ];
    for (field, value) in audit.iter().zip(values.iter()) {
        let f = fault(&c, "create", json!({"type": "Shot", "fields": field_list(&json!({"code": "x", *field: value})), "return_fields": ["id"]})).await;
        assert_eq!(f.code.as_i64(), 103, "create with {field}: {f}");
        let f = fault(
            &c,
            "update",
            json!({"type": "Shot", "id": shot, "fields": field_list(&json!({*field: value}))}),
        )
        .await;
        assert_eq!(f.code.as_i64(), 103, "update of {field}: {f}");
    }
    for field in ["id", "type"] {
        let f = fault(
            &c,
            "update",
            json!({"type": "Shot", "id": shot, "fields": [{"field_name": field, "value": 99}]}),
        )
        .await;
        assert_eq!(f.code.as_i64(), 103, "update of {field}: {f}");
    }
    assert_eq!(count(&c, "Shot", "active").await, shots);
    assert_eq!(get(&c, "Shot", shot, "code").await, json!("c"));
}

/// Values of the wrong type, not in valid_values, links to types outside
/// valid_types or to missing records, and unknown fields or types get a 103
/// fault; neither the data nor the event log changes, for create and update alike.
#[tokio::test]
async fn invalid_writes_get_faults_and_change_nothing() {
    let site = start().await;
    let c = site.client();
    let seq = create(&c, "Sequence", json!({"code": "sq"})).await;
    let asset = create(&c, "Asset", json!({"code": "tree"})).await;
    let shot = create(
        &c,
        "Shot",
        json!({"code": "keep", "sg_cut_in": 7, "sg_sequence": {"type": "Sequence", "id": seq}}),
    )
    .await;
    let bad: Vec<(&str, Value)> = vec![
        ("code", json!(5)),
        ("code", json!({"a": 1})),
        ("sg_cut_in", json!("12")),
        ("sg_cut_in", json!(1.5)),
        ("sg_cut_in", json!(true)),
        ("sg_rate", json!("x")),
        ("sg_hero", json!(1)),
        ("sg_hero", json!("true")),
        ("sg_due", json!("2024-13-01")),
        ("sg_due", json!("2024-01-01T00:00:00Z")),
        ("sg_start", json!("2024-01-01")),
        ("sg_start", json!("yesterday")),
        ("sg_status_list", json!("nope")),
        ("sg_status_list", json!(3)),
        ("sg_shot_type", json!("Villain")),
        ("sg_kind", json!("Spaceship")),
        ("sg_link", json!("https://example.com")),
        ("sg_sequence", json!({"type": "Asset", "id": asset})),
        ("sg_sequence", json!({"type": "Sequence", "id": 9999})),
        ("sg_sequence", json!("sq")),
        ("sg_sequence", json!({"type": "Sequence"})),
        ("assets", json!([{"type": "Shot", "id": shot}])),
        (
            "assets",
            json!([{"type": "Asset", "id": asset}, {"type": "Asset", "id": 9999}]),
        ),
        ("assets", json!({"type": "Asset", "id": asset})),
        ("tag_list", json!("hero")),
        ("tag_list", json!([5])),
        ("tag_list", json!([{"type": "Tag", "id": 1}])),
        ("tag_list", json!(["hero", ""])),
        ("sg_no_such_field", json!("x")),
    ];
    let last = last_event_id(&c).await;
    let shots = count(&c, "Shot", "active").await;
    let fields = ["code", "sg_cut_in", "sg_sequence", "assets", "updated_at"];
    let before = find(&c, "Shot", shot, &fields).await.expect("shot");
    for (field, value) in &bad {
        let f = fault(
            &c,
            "create",
            json!({"type": "Shot", "fields": [{"field_name": "code", "value": "new"}, {"field_name": field, "value": value}], "return_fields": ["id"]}),
        )
        .await;
        assert_eq!(f.code.as_i64(), 103, "create {field}={value}: {f}");
        // The bad field comes last, after a good one that must not be applied either.
        let f = fault(
            &c,
            "update",
            json!({"type": "Shot", "id": shot, "fields": [{"field_name": "code", "value": "changed"}, {"field_name": "sg_cut_in", "value": 8}, {"field_name": field, "value": value}]}),
        )
        .await;
        assert_eq!(f.code.as_i64(), 103, "update {field}={value}: {f}");
    }
    for (method, params) in [
        (
            "create",
            json!({"type": "Spaceship", "fields": [{"field_name": "code", "value": "x"}], "return_fields": ["id"]}),
        ),
        (
            "update",
            json!({"type": "Shot", "id": 9999, "fields": [{"field_name": "code", "value": "x"}]}),
        ),
        (
            "update",
            json!({"type": "Shot", "id": "1", "fields": [{"field_name": "code", "value": "x"}]}),
        ),
        ("delete", json!({"type": "Shot", "id": 9999})),
        ("revive", json!({"type": "Shot", "id": 9999})),
    ] {
        let f = fault(&c, method, params.clone()).await;
        assert_eq!(f.code.as_i64(), 103, "{method} {params}: {f}");
    }
    assert_eq!(
        count(&c, "Shot", "active").await,
        shots,
        "no Shot was created"
    );
    assert_eq!(count(&c, "Shot", "retired").await, 0);
    assert_eq!(
        find(&c, "Shot", shot, &fields).await.expect("shot"),
        before,
        "the Shot is unchanged"
    );
    assert_eq!(
        pairs(&get(&c, "Sequence", seq, "shots").await),
        vec![pair("Shot", shot)]
    );
    assert_eq!(
        get(&c, "Asset", asset, "shots").await,
        json!([]),
        "no half-written inverse link"
    );
    let rows = events_after(&c, last).await;
    assert!(
        rows.is_empty(),
        "failed writes log nothing:\n{}",
        describe(&rows)
    );
}

/// A batch runs as one transaction: results in request order when every item
/// succeeds; when one fails, no item's data and no event row is left behind.
#[tokio::test]
async fn batch_is_all_or_nothing() {
    let site = start().await;
    let c = site.client();
    let keep = create(&c, "Shot", json!({"code": "keep"})).await;
    let doomed = create(&c, "Shot", json!({"code": "doomed"})).await;
    let asset = create(&c, "Asset", json!({"code": "tree"})).await;
    let last = last_event_id(&c).await;
    let good = |code: &str| json!({"request_type": "create", "type": "Shot", "fields": field_list(&json!({"code": code, "assets": [{"type": "Asset", "id": asset, "name": "tree"}]})), "return_fields": ["code"]});
    let failing_items = [
        json!({"request_type": "create", "type": "Shot", "fields": [{"field_name": "sg_cut_in", "value": "x"}], "return_fields": ["id"]}),
        json!({"request_type": "update", "type": "Shot", "id": 9999, "fields": [{"field_name": "code", "value": "x"}]}),
        json!({"request_type": "delete", "type": "Shot", "id": 9999}),
        json!({"request_type": "teleport", "type": "Shot", "id": keep}),
        json!("not a request"),
    ];
    for failing in failing_items {
        let items = json!([
            good("b1"),
            {"request_type": "update", "type": "Shot", "id": keep, "fields": [{"field_name": "code", "value": "changed"}]},
            {"request_type": "delete", "type": "Shot", "id": doomed},
            failing,
        ]);
        let f = fault(&c, "batch", items).await;
        assert_eq!(f.code.as_i64(), 103, "{f}");
        let codes: Vec<Value> = read(&c, "Shot", &["code"], json!([]), "active")
            .await
            .iter()
            .map(|r| r["code"].clone())
            .collect();
        assert_eq!(
            codes,
            vec![json!("keep"), json!("doomed")],
            "nothing of the failed batch is left"
        );
        assert_eq!(
            get(&c, "Asset", asset, "shots").await,
            json!([]),
            "no inverse link is left"
        );
        let rows = events_after(&c, last).await;
        assert!(
            rows.is_empty(),
            "a failed batch logs nothing:\n{}",
            describe(&rows)
        );
    }

    let results = call(
        &c,
        "batch",
        json!([
            good("b1"),
            {"request_type": "update", "type": "Shot", "id": keep, "fields": [{"field_name": "code", "value": "changed"}]},
            {"request_type": "delete", "type": "Shot", "id": doomed},
            {"request_type": "delete", "type": "Shot", "id": doomed},
        ]),
    )
    .await;
    let results = results.as_array().expect("a list of results").clone();
    assert_eq!(results.len(), 4);
    assert_eq!(
        (results[0]["type"].clone(), results[0]["code"].clone()),
        (json!("Shot"), json!("b1"))
    );
    let b1 = results[0]["id"].as_i64().expect("id");
    assert_eq!(
        results[1],
        json!({"type": "Shot", "id": keep, "code": "changed"})
    );
    assert_eq!(
        (results[2].clone(), results[3].clone()),
        (json!(true), json!(false)),
        "a second delete in the batch sees the first"
    );
    assert_eq!(
        pairs(&get(&c, "Asset", asset, "shots").await),
        vec![pair("Shot", b1)]
    );
    assert!(find_retired(&c, "Shot", doomed, &["id"]).await.is_some());
    let rows = events_after(&c, last).await;
    assert!(
        rows.iter()
            .any(|r| r["event_type"] == json!("Shotgun_Shot_New")),
        "{}",
        describe(&rows)
    );
    assert!(
        rows.iter()
            .any(|r| r["event_type"] == json!("Shotgun_Shot_Retirement")),
        "{}",
        describe(&rows)
    );
    let empty = call(&c, "batch", json!([])).await;
    assert_eq!(empty, json!([]));
}

/// Shot.assets and Asset.shots mirror each other whichever side is written,
/// in every update mode and on create.
#[tokio::test]
async fn shot_assets_and_asset_shots_stay_in_step() {
    let site = start().await;
    let c = site.client();
    let a1 = create(&c, "Asset", json!({"code": "a1"})).await;
    let a2 = create(&c, "Asset", json!({"code": "a2"})).await;
    let a3 = create(&c, "Asset", json!({"code": "a3"})).await;
    let asset = |id: i64| json!({"type": "Asset", "id": id});
    let s1 = create(
        &c,
        "Shot",
        json!({"code": "s1", "assets": [asset(a1), asset(a2)]}),
    )
    .await;
    let s2 = create(&c, "Shot", json!({"code": "s2"})).await;
    let shots_of = |c: &sg_client::Client, a: i64| {
        let c = c.clone();
        async move { pairs(&get(&c, "Asset", a, "shots").await) }
    };
    assert_eq!(shots_of(&c, a1).await, vec![pair("Shot", s1)]);
    assert_eq!(shots_of(&c, a2).await, vec![pair("Shot", s1)]);
    assert_eq!(shots_of(&c, a3).await, vec![]);

    update_mode(&c, "Shot", s1, "assets", json!([asset(a3)]), "add").await;
    assert_eq!(shots_of(&c, a3).await, vec![pair("Shot", s1)]);
    update_mode(&c, "Shot", s1, "assets", json!([asset(a1)]), "remove").await;
    assert_eq!(shots_of(&c, a1).await, vec![]);
    update(&c, "Shot", s1, json!({"assets": [asset(a1)]})).await;
    assert_eq!(shots_of(&c, a1).await, vec![pair("Shot", s1)]);
    assert_eq!(
        shots_of(&c, a2).await,
        vec![],
        "set drops the links left out"
    );
    assert_eq!(shots_of(&c, a3).await, vec![]);

    // From the Asset side.
    update_mode(
        &c,
        "Asset",
        a2,
        "shots",
        json!([{"type": "Shot", "id": s1}, {"type": "Shot", "id": s2}]),
        "add",
    )
    .await;
    assert_eq!(
        pairs(&get(&c, "Shot", s1, "assets").await),
        vec![pair("Asset", a1), pair("Asset", a2)]
    );
    assert_eq!(
        pairs(&get(&c, "Shot", s2, "assets").await),
        vec![pair("Asset", a2)]
    );
    update(&c, "Asset", a2, json!({"shots": []})).await;
    assert_eq!(
        pairs(&get(&c, "Shot", s1, "assets").await),
        vec![pair("Asset", a1)]
    );
    assert_eq!(get(&c, "Shot", s2, "assets").await, json!([]));
    let a4 = create(
        &c,
        "Asset",
        json!({"code": "a4", "shots": [{"type": "Shot", "id": s2}]}),
    )
    .await;
    assert_eq!(
        pairs(&get(&c, "Shot", s2, "assets").await),
        vec![pair("Asset", a4)]
    );
}

/// Task.entity and Shot.tasks mirror each other, including moving a Task from
/// one Shot to another from either side, and clearing the link.
#[tokio::test]
async fn task_entity_and_shot_tasks_stay_in_step() {
    let site = start().await;
    let c = site.client();
    let s1 = create(&c, "Shot", json!({"code": "s1"})).await;
    let s2 = create(&c, "Shot", json!({"code": "s2"})).await;
    let shot = |id: i64| json!({"type": "Shot", "id": id});
    let t1 = create(&c, "Task", json!({"content": "anim", "entity": shot(s1)})).await;
    let t2 = create(&c, "Task", json!({"content": "comp", "entity": shot(s1)})).await;
    let tasks = |c: &sg_client::Client, s: i64| {
        let c = c.clone();
        async move { pairs(&get(&c, "Shot", s, "tasks").await) }
    };
    assert_eq!(
        tasks(&c, s1).await,
        vec![pair("Task", t1), pair("Task", t2)]
    );

    // Move from the Task side.
    update(&c, "Task", t1, json!({"entity": shot(s2)})).await;
    assert_eq!(tasks(&c, s1).await, vec![pair("Task", t2)]);
    assert_eq!(tasks(&c, s2).await, vec![pair("Task", t1)]);
    let entity = get(&c, "Task", t1, "entity").await;
    assert_eq!(entity, json!({"type": "Shot", "id": s2, "name": "s2"}));

    // Move from the Shot side: t2 leaves s1 for s2.
    update_mode(
        &c,
        "Shot",
        s2,
        "tasks",
        json!([{"type": "Task", "id": t2}]),
        "add",
    )
    .await;
    assert_eq!(
        pairs(&json!([get(&c, "Task", t2, "entity").await])),
        vec![pair("Shot", s2)]
    );
    assert_eq!(tasks(&c, s1).await, vec![], "the Task's old Shot loses it");
    assert_eq!(
        tasks(&c, s2).await,
        vec![pair("Task", t1), pair("Task", t2)]
    );

    // Removing from the Shot side clears Task.entity.
    update_mode(
        &c,
        "Shot",
        s2,
        "tasks",
        json!([{"type": "Task", "id": t1}]),
        "remove",
    )
    .await;
    assert_eq!(get(&c, "Task", t1, "entity").await, Value::Null);
    // Clearing Task.entity takes it off the Shot.
    update(&c, "Task", t2, json!({"entity": null})).await;
    assert_eq!(tasks(&c, s2).await, vec![]);
    // A Shot created with tasks takes them.
    update(&c, "Task", t1, json!({"entity": shot(s1)})).await;
    let s3 = create(
        &c,
        "Shot",
        json!({"code": "s3", "tasks": [{"type": "Task", "id": t1}]}),
    )
    .await;
    assert_eq!(
        pairs(&json!([get(&c, "Task", t1, "entity").await])),
        vec![pair("Shot", s3)]
    );
    assert_eq!(tasks(&c, s1).await, vec![]);
}

/// Shot.sg_sequence and Sequence.shots (an entity field mirrored by a
/// multi_entity field) stay in step too.
#[tokio::test]
async fn shot_sequence_and_sequence_shots_stay_in_step() {
    let site = start().await;
    let c = site.client();
    let q1 = create(&c, "Sequence", json!({"code": "q1"})).await;
    let q2 = create(&c, "Sequence", json!({"code": "q2"})).await;
    let s = create(
        &c,
        "Shot",
        json!({"code": "s", "sg_sequence": {"type": "Sequence", "id": q1}}),
    )
    .await;
    assert_eq!(
        pairs(&get(&c, "Sequence", q1, "shots").await),
        vec![pair("Shot", s)]
    );
    update(
        &c,
        "Shot",
        s,
        json!({"sg_sequence": {"type": "Sequence", "id": q2}}),
    )
    .await;
    assert_eq!(get(&c, "Sequence", q1, "shots").await, json!([]));
    assert_eq!(
        pairs(&get(&c, "Sequence", q2, "shots").await),
        vec![pair("Shot", s)]
    );
    update(
        &c,
        "Sequence",
        q1,
        json!({"shots": [{"type": "Shot", "id": s}]}),
    )
    .await;
    assert_eq!(get(&c, "Shot", s, "sg_sequence").await["id"], json!(q1));
    assert_eq!(get(&c, "Sequence", q2, "shots").await, json!([]));
}

/// A Task linked to an Asset, put on a Shot through Shot.tasks, leaves the
/// Asset's tasks list: Task.entity can only point at one record.
#[tokio::test]
async fn a_task_moved_from_an_asset_to_a_shot_leaves_the_asset() {
    let site = start().await;
    let c = site.client();
    let asset = create(&c, "Asset", json!({"code": "tree"})).await;
    let shot = create(&c, "Shot", json!({"code": "s"})).await;
    let task = create(
        &c,
        "Task",
        json!({"content": "model", "entity": {"type": "Asset", "id": asset}}),
    )
    .await;
    assert_eq!(
        pairs(&get(&c, "Asset", asset, "tasks").await),
        vec![pair("Task", task)]
    );
    update(
        &c,
        "Shot",
        shot,
        json!({"tasks": [{"type": "Task", "id": task}]}),
    )
    .await;
    assert_eq!(
        pairs(&json!([get(&c, "Task", task, "entity").await])),
        vec![pair("Shot", shot)]
    );
    assert_eq!(
        pairs(&get(&c, "Shot", shot, "tasks").await),
        vec![pair("Task", task)]
    );
    assert_eq!(
        get(&c, "Asset", asset, "tasks").await,
        json!([]),
        "Asset.tasks still lists a Task whose entity is now a Shot"
    );
}

/// delete and revive return true, then false when the record already is in
/// that state; retired records are found only with return_only retired and
/// cannot be updated; links to them read as gone.
#[tokio::test]
async fn delete_and_revive() {
    let site = start().await;
    let c = site.client();
    let shot = create(&c, "Shot", json!({"code": "s"})).await;
    let asset = create(
        &c,
        "Asset",
        json!({"code": "a", "shots": [{"type": "Shot", "id": shot}]}),
    )
    .await;
    assert_eq!(
        revive(&c, "Shot", shot).await,
        json!(false),
        "revive of an active record"
    );
    assert_eq!(delete(&c, "Shot", shot).await, json!(true));
    assert_eq!(
        delete(&c, "Shot", shot).await,
        json!(false),
        "delete of a retired record"
    );
    assert!(
        find(&c, "Shot", shot, &["code"]).await.is_none(),
        "retired records are not active"
    );
    let retired = find_retired(&c, "Shot", shot, &["code"])
        .await
        .expect("found with return_only retired");
    assert_eq!(retired["code"], json!("s"));
    assert_eq!(count(&c, "Shot", "active").await, 0);
    assert_eq!(
        get(&c, "Asset", asset, "shots").await,
        json!([]),
        "links to a retired record read as gone"
    );
    let f = fault(
        &c,
        "update",
        json!({"type": "Shot", "id": shot, "fields": [{"field_name": "code", "value": "x"}]}),
    )
    .await;
    assert_eq!(f.code.as_i64(), 103);
    let f = fault(&c, "update", json!({"type": "Asset", "id": asset, "fields": [{"field_name": "shots", "value": [{"type": "Shot", "id": shot}]}]})).await;
    assert_eq!(f.code.as_i64(), 103, "no new link to a retired record");

    assert_eq!(revive(&c, "Shot", shot).await, json!(true));
    assert_eq!(revive(&c, "Shot", shot).await, json!(false));
    assert_eq!(get(&c, "Shot", shot, "code").await, json!("s"));
    assert!(find_retired(&c, "Shot", shot, &["code"]).await.is_none());
    assert_eq!(
        pairs(&get(&c, "Asset", asset, "shots").await),
        vec![pair("Shot", shot)],
        "the link is back"
    );
    update(&c, "Shot", shot, json!({"code": "again"})).await;
}

/// Deleting a Shot retires its Tasks; reviving it brings them back.
#[tokio::test]
async fn deleting_a_shot_retires_its_tasks_and_revive_brings_them_back() {
    let site = start().await;
    let c = site.client();
    let shot = create(&c, "Shot", json!({"code": "s"})).await;
    let other = create(&c, "Shot", json!({"code": "other"})).await;
    let link = |id: i64| json!({"type": "Shot", "id": id});
    let t1 = create(&c, "Task", json!({"content": "anim", "entity": link(shot)})).await;
    let t2 = create(&c, "Task", json!({"content": "comp", "entity": link(shot)})).await;
    let t3 = create(
        &c,
        "Task",
        json!({"content": "light", "entity": link(other)}),
    )
    .await;
    assert_eq!(delete(&c, "Shot", shot).await, json!(true));
    let active: Vec<i64> = read(&c, "Task", &["id"], json!([]), "active")
        .await
        .iter()
        .filter_map(|r| r["id"].as_i64())
        .collect();
    assert_eq!(active, vec![t3], "the Shot's Tasks are retired with it");
    let retired: Vec<i64> = read(&c, "Task", &["id"], json!([]), "retired")
        .await
        .iter()
        .filter_map(|r| r["id"].as_i64())
        .collect();
    assert_eq!(retired, vec![t1, t2]);
    assert_eq!(revive(&c, "Shot", shot).await, json!(true));
    let active: Vec<i64> = read(&c, "Task", &["id"], json!([]), "active")
        .await
        .iter()
        .filter_map(|r| r["id"].as_i64())
        .collect();
    assert_eq!(active, vec![t1, t2, t3], "revive brings the Tasks back");
    assert_eq!(
        pairs(&get(&c, "Shot", shot, "tasks").await),
        vec![pair("Task", t1), pair("Task", t2)]
    );
    assert_eq!(
        pairs(&json!([get(&c, "Task", t1, "entity").await])),
        vec![pair("Shot", shot)]
    );
}

/// A Task deleted on its own stays retired when its Shot, deleted afterwards
/// (within the same second), is revived: only the Tasks the Shot's delete
/// retired come back.
#[tokio::test]
async fn revive_leaves_a_separately_deleted_task_retired() {
    let site = start().await;
    let c = site.client();
    let shot = create(&c, "Shot", json!({"code": "s"})).await;
    let link = json!({"type": "Shot", "id": shot});
    let alone = create(
        &c,
        "Task",
        json!({"content": "deleted alone", "entity": link}),
    )
    .await;
    let cascaded = create(&c, "Task", json!({"content": "cascaded", "entity": link})).await;
    at_start_of_second().await;
    assert_eq!(delete(&c, "Task", alone).await, json!(true));
    assert_eq!(delete(&c, "Shot", shot).await, json!(true));
    assert_eq!(revive(&c, "Shot", shot).await, json!(true));
    assert!(
        find(&c, "Task", cascaded, &["id"]).await.is_some(),
        "the cascaded Task is back"
    );
    assert!(
        find(&c, "Task", alone, &["id"]).await.is_none(),
        "the Task deleted on its own before the Shot was revived along with the Shot"
    );
}

/// schema_field_create gives the new field's name (`sg_` + the display name,
/// `_1` when taken); the field is readable and writable at once;
/// schema_field_update changes its properties; after schema_field_delete,
/// reading or writing it is a fault.
#[tokio::test]
async fn schema_field_create_update_and_delete() {
    let site = start().await;
    let c = site.client();
    let shot = create(&c, "Shot", json!({"code": "s"})).await;
    let name = call(
        &c,
        "schema_field_create",
        json!({"type": "Shot", "data_type": "number", "properties": [{"property_name": "name", "value": "Shot Budget"}, {"property_name": "description", "value": "k$"}]}),
    )
    .await;
    assert_eq!(name, json!("sg_shot_budget"));
    let def = call(
        &c,
        "schema_field_read",
        json!({"type": "Shot", "field_name": "sg_shot_budget"}),
    )
    .await;
    assert_eq!(def["sg_shot_budget"]["data_type"]["value"], json!("number"));
    assert_eq!(def["sg_shot_budget"]["name"]["value"], json!("Shot Budget"));
    assert_eq!(def["sg_shot_budget"]["description"]["value"], json!("k$"));
    let schema = call(&c, "schema_read", json!({})).await;
    assert!(
        schema["Shot"]["sg_shot_budget"].is_object(),
        "schema_read has the new field"
    );

    assert_eq!(
        get(&c, "Shot", shot, "sg_shot_budget").await,
        Value::Null,
        "existing records read null"
    );
    update(&c, "Shot", shot, json!({"sg_shot_budget": 42})).await;
    assert_eq!(get(&c, "Shot", shot, "sg_shot_budget").await, json!(42));
    let r = create_returning(
        &c,
        "Shot",
        json!({"code": "t", "sg_shot_budget": 7}),
        &["sg_shot_budget"],
    )
    .await;
    assert_eq!(r["sg_shot_budget"], json!(7));
    let filtered = read(
        &c,
        "Shot",
        &["code"],
        json!([{"path": "sg_shot_budget", "relation": "greater_than", "values": [10]}]),
        "active",
    )
    .await;
    assert_eq!(filtered.len(), 1);
    let f = fault(&c, "update", json!({"type": "Shot", "id": shot, "fields": [{"field_name": "sg_shot_budget", "value": "lots"}]})).await;
    assert_eq!(f.code.as_i64(), 103, "the new field's data type is checked");

    let second = call(&c, "schema_field_create", json!({"type": "Shot", "data_type": "text", "properties": [{"property_name": "name", "value": "Shot Budget"}]})).await;
    assert_eq!(second, json!("sg_shot_budget_1"));
    update(&c, "Shot", shot, json!({"sg_shot_budget_1": "text now"})).await;
    assert_eq!(
        get(&c, "Shot", shot, "sg_shot_budget_1").await,
        json!("text now")
    );

    let ok = call(
        &c,
        "schema_field_update",
        json!({"type": "Shot", "field_name": "sg_shot_budget", "properties": [{"property_name": "name", "value": "Budget (k$)"}]}),
    )
    .await;
    assert_eq!(ok, json!(true));
    let def = call(
        &c,
        "schema_field_read",
        json!({"type": "Shot", "field_name": "sg_shot_budget"}),
    )
    .await;
    assert_eq!(def["sg_shot_budget"]["name"]["value"], json!("Budget (k$)"));
    assert_eq!(
        get(&c, "Shot", shot, "sg_shot_budget").await,
        json!(42),
        "values survive a property change"
    );

    assert_eq!(
        call(
            &c,
            "schema_field_delete",
            json!({"type": "Shot", "field_name": "sg_shot_budget"})
        )
        .await,
        json!(true)
    );
    let f = fault(
        &c,
        "read",
        json!({"type": "Shot", "return_fields": ["sg_shot_budget"]}),
    )
    .await;
    assert_eq!(f.code.as_i64(), 103, "reading a deleted field: {f}");
    let f = fault(&c, "update", json!({"type": "Shot", "id": shot, "fields": [{"field_name": "sg_shot_budget", "value": 1}]})).await;
    assert_eq!(f.code.as_i64(), 103, "writing a deleted field: {f}");
    let f = fault(
        &c,
        "schema_field_read",
        json!({"type": "Shot", "field_name": "sg_shot_budget"}),
    )
    .await;
    assert_eq!(f.code.as_i64(), 103);
    let f = fault(
        &c,
        "schema_field_delete",
        json!({"type": "Shot", "field_name": "sg_shot_budget"}),
    )
    .await;
    assert_eq!(f.code.as_i64(), 103, "deleting it twice");
    assert_eq!(
        get(&c, "Shot", shot, "sg_shot_budget_1").await,
        json!("text now"),
        "other fields are untouched"
    );
    for bad in [
        json!({"type": "Shot", "data_type": "number", "properties": []}),
        json!({"type": "Shot", "data_type": "warp_drive", "properties": [{"property_name": "name", "value": "X"}]}),
        json!({"type": "Spaceship", "data_type": "number", "properties": [{"property_name": "name", "value": "X"}]}),
    ] {
        let f = fault(&c, "schema_field_create", bad.clone()).await;
        assert_eq!(f.code.as_i64(), 103, "{bad}: {f}");
    }
    let f = fault(
        &c,
        "schema_field_delete",
        json!({"type": "Shot", "field_name": "id"}),
    )
    .await;
    assert_eq!(f.code.as_i64(), 103);
}

/// A field deleted and then created again under the same display name works,
/// and does not bring back the deleted field's values.
#[tokio::test]
async fn a_deleted_field_can_be_created_again() {
    let site = start().await;
    let c = site.client();
    let shot = create(&c, "Shot", json!({"code": "s"})).await;
    let spec = json!({"type": "Shot", "data_type": "number", "properties": [{"property_name": "name", "value": "Cost Estimate"}]});
    let name = call(&c, "schema_field_create", spec.clone()).await;
    let name = name.as_str().expect("a field name").to_string();
    update(&c, "Shot", shot, json!({&name: 42})).await;
    call(
        &c,
        "schema_field_delete",
        json!({"type": "Shot", "field_name": name}),
    )
    .await;
    let again = match c.call("schema_field_create", Some(spec)).await {
        Ok(v) => v,
        Err(e) => panic!("creating the field again failed: {e}"),
    };
    let again = again.as_str().expect("a field name").to_string();
    assert_eq!(
        get(&c, "Shot", shot, &again).await,
        Value::Null,
        "a new field starts empty"
    );
    update(&c, "Shot", shot, json!({&again: 1})).await;
    assert_eq!(get(&c, "Shot", shot, &again).await, json!(1));
}

/// Wrong credentials get fault 102 for every method but info, and write nothing.
#[tokio::test]
async fn bad_credentials_get_fault_102() {
    let site = start().await;
    let good = site.client();
    let last = last_event_id(&good).await;
    for auth in [
        Auth::script(SCRIPT, "wrong"),
        Auth::script("nobody", KEY),
        Auth::script(QUIET_SCRIPT, KEY),
        Auth::user(USER, "wrong"),
        Auth::user("nobody", PASSWORD),
        Auth::session("not-a-token"),
    ] {
        let c = site.client_as(auth.clone());
        for (method, params) in [
            ("read", json!({"type": "Shot", "return_fields": ["code"]})),
            (
                "create",
                json!({"type": "Shot", "fields": [{"field_name": "code", "value": "x"}], "return_fields": ["id"]}),
            ),
            (
                "batch",
                json!([{"request_type": "create", "type": "Shot", "fields": [{"field_name": "code", "value": "x"}], "return_fields": ["id"]}]),
            ),
            (
                "schema_field_create",
                json!({"type": "Shot", "data_type": "text", "properties": [{"property_name": "name", "value": "X"}]}),
            ),
            ("get_session_token", json!({})),
        ] {
            let f = fault(&c, method, params).await;
            assert_eq!(f.code.as_i64(), 102, "{method} as {auth:?}: {f}");
        }
        assert!(c.info().await.is_ok(), "info needs no credentials");
    }
    assert_eq!(count(&good, "Shot", "active").await, 0);
    let schema = call(&good, "schema_read", json!({})).await;
    assert!(schema["Shot"].get("sg_x").is_none(), "no field was created");
    assert!(events_after(&good, last).await.is_empty());
}

/// A `NAME:KEY:no-events` script's writes apply (with its ApiUser in the audit
/// fields) but log nothing; the same writes by a normal script do log.
#[tokio::test]
async fn a_script_without_events_writes_but_logs_nothing() {
    let site = start().await;
    let loud = site.client();
    let quiet = site.client_as(Auth::script(QUIET_SCRIPT, QUIET_KEY));
    let asset = create(&loud, "Asset", json!({"code": "a"})).await;
    let last = last_event_id(&loud).await;
    assert!(last > 0, "the normal script's create was logged");

    let shot = create(
        &quiet,
        "Shot",
        json!({"code": "quiet", "assets": [{"type": "Asset", "id": asset}]}),
    )
    .await;
    let task = create(
        &quiet,
        "Task",
        json!({"content": "t", "entity": {"type": "Shot", "id": shot}}),
    )
    .await;
    update(
        &quiet,
        "Shot",
        shot,
        json!({"code": "quieter", "sg_cut_in": 3}),
    )
    .await;
    call(&quiet, "batch", json!([{"request_type": "update", "type": "Task", "id": task, "fields": [{"field_name": "content", "value": "u"}]}])).await;
    assert_eq!(delete(&quiet, "Shot", shot).await, json!(true));
    assert_eq!(revive(&quiet, "Shot", shot).await, json!(true));
    let field = call(&quiet, "schema_field_create", json!({"type": "Shot", "data_type": "text", "properties": [{"property_name": "name", "value": "Quiet"}]})).await;
    assert_eq!(field, json!("sg_quiet"));

    let r = find(
        &loud,
        "Shot",
        shot,
        &[
            "code",
            "sg_cut_in",
            "assets",
            "tasks",
            "created_by",
            "updated_by",
        ],
    )
    .await
    .expect("shot");
    assert_eq!(
        (r["code"].clone(), r["sg_cut_in"].clone()),
        (json!("quieter"), json!(3))
    );
    assert_eq!(pairs(&r["assets"]), vec![pair("Asset", asset)]);
    assert_eq!(pairs(&r["tasks"]), vec![pair("Task", task)]);
    assert_eq!(
        pairs(&get(&loud, "Asset", asset, "shots").await),
        vec![pair("Shot", shot)]
    );
    assert_eq!(r["created_by"]["name"], json!(QUIET_SCRIPT));
    assert_eq!(get(&loud, "Task", task, "content").await, json!("u"));
    let rows = events_after(&loud, last).await;
    assert!(
        rows.is_empty(),
        "a no-events script logged:\n{}",
        describe(&rows)
    );

    update(&loud, "Shot", shot, json!({"code": "loud"})).await;
    let rows = events_after(&loud, last).await;
    assert_eq!(rows.len(), 1, "{}", describe(&rows));
}

/// get_session_token returns `{session_id}`; calls with `{session_token}`
/// act as the caller that got it; unknown tokens get 102.
#[tokio::test]
async fn session_tokens_act_as_their_caller() {
    let site = start().await;
    for (auth, user_type, user_name) in [
        (Auth::script(SCRIPT, KEY), "ApiUser", SCRIPT),
        (Auth::user(USER, PASSWORD), "HumanUser", USER),
    ] {
        let c = site.client_as(auth);
        let token = call(&c, "get_session_token", json!({})).await;
        let token = token["session_id"]
            .as_str()
            .expect("session_id")
            .to_string();
        assert!(!token.is_empty());
        let by_token = site.client_as(Auth::session(&token));
        let last = last_event_id(&c).await;
        let shot = create(
            &by_token,
            "Shot",
            json!({"code": format!("by {user_name}")}),
        )
        .await;
        let r = find(&by_token, "Shot", shot, &["code", "created_by"])
            .await
            .expect("shot");
        assert_eq!(
            (
                r["created_by"]["type"].clone(),
                r["created_by"]["name"].clone()
            ),
            (json!(user_type), json!(user_name))
        );
        let rows = events_after(&c, last).await;
        assert!(!rows.is_empty());
        for row in &rows {
            assert_eq!(row["user"]["type"], json!(user_type), "{row}");
        }
        // A quiet script's token stays quiet.
    }
    let quiet = site.client_as(Auth::script(QUIET_SCRIPT, QUIET_KEY));
    let token = call(&quiet, "get_session_token", json!({})).await["session_id"]
        .as_str()
        .expect("token")
        .to_string();
    let loud = site.client();
    let last = last_event_id(&loud).await;
    create(
        &site.client_as(Auth::session(&token)),
        "Shot",
        json!({"code": "quiet by token"}),
    )
    .await;
    assert!(
        events_after(&loud, last).await.is_empty(),
        "a quiet script's session logs nothing"
    );
    let f = fault(
        &site.client_as(Auth::session("0123")),
        "read",
        json!({"type": "Shot"}),
    )
    .await;
    assert_eq!(f.code.as_i64(), 102);
}

/// On the real site schema (77 types), creates apply its defaults, audit
/// fields and the inverse pairs.
#[tokio::test]
async fn the_real_schema_keeps_links_and_defaults() {
    let site = start_with(
        fixture_schema(),
        json!({"Project": [{"id": 1, "name": "Demo"}]}),
        EventFaults::default(),
        ServerOptions::default(),
    )
    .await;
    let c = site.client();
    let project = json!({"type": "Project", "id": 1});
    let seq = create(&c, "Sequence", json!({"code": "q", "project": project})).await;
    let shot = create(
        &c,
        "Shot",
        json!({"code": "s", "project": project, "sg_sequence": {"type": "Sequence", "id": seq}}),
    )
    .await;
    let asset = create(
        &c,
        "Asset",
        json!({"code": "a", "project": project, "shots": [{"type": "Shot", "id": shot}]}),
    )
    .await;
    let task = create(
        &c,
        "Task",
        json!({"content": "anim", "project": project, "entity": {"type": "Shot", "id": shot}}),
    )
    .await;
    let r = find(
        &c,
        "Shot",
        shot,
        &[
            "sg_status_list",
            "assets",
            "tasks",
            "created_by",
            "created_at",
        ],
    )
    .await
    .expect("shot");
    assert_eq!(r["sg_status_list"], json!("wtg"), "the fixture's default");
    assert_eq!(pairs(&r["assets"]), vec![pair("Asset", asset)]);
    assert_eq!(pairs(&r["tasks"]), vec![pair("Task", task)]);
    assert_eq!(r["created_by"]["type"], json!("ApiUser"));
    assert_eq!(
        pairs(&get(&c, "Sequence", seq, "shots").await),
        vec![pair("Shot", shot)]
    );
    assert_eq!(delete(&c, "Shot", shot).await, json!(true));
    assert!(find(&c, "Task", task, &["id"]).await.is_none());
    assert_eq!(revive(&c, "Shot", shot).await, json!(true));
    assert!(find(&c, "Task", task, &["id"]).await.is_some());
    let rows = events_after(&c, 0).await;
    assert!(rows
        .iter()
        .any(|r| r["event_type"] == json!("Shotgun_Asset_Change")
            && r["attribute_name"] == json!("shots")));
}
