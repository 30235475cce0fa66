//! The simulated site's EventLogEntry rows, read back over HTTP as the
//! official daemon reads them: for each kind of write, exactly which rows are
//! logged, in which order, with which attribute_name, entity, meta, project
//! and user (the shapes in the project's reference notes on the event log);
//! and the log's faults: rows that become visible late and ids never seen.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use sg_protocol::Auth;
use sg_sim::{EventFaults, ServerOptions};
use support::*;

fn project_link() -> Value {
    json!({"type": "Project", "id": PROJECT_ID, "name": PROJECT_NAME})
}

fn project() -> Value {
    json!({"type": "Project", "id": PROJECT_ID})
}

/// A link as a multi_entity `added`/`removed` item shows it.
fn item(entity_type: &str, id: i64, name: &str) -> Value {
    json!({"type": entity_type, "id": id, "name": name, "valid": "valid"})
}

fn link(entity_type: &str, id: i64, name: &str) -> Value {
    json!({"type": entity_type, "id": id, "name": name})
}

fn ids(rows: &[Value]) -> Vec<i64> {
    rows.iter().map(|r| r["id"].as_i64().expect("id")).collect()
}

/// Ids rise strictly, with no gap (one caller, no faults: nothing else takes ids).
fn assert_consecutive(rows: &[Value]) {
    let ids = ids(rows);
    for w in ids.windows(2) {
        assert_eq!(
            w[1],
            w[0] + 1,
            "ids of one call rise one by one:\n{}",
            describe(rows)
        );
    }
}

/// The fields every row of the main script's calls shares.
fn assert_common(row: &Value, project: &Value) {
    assert_eq!(row["user"]["type"], json!("ApiUser"), "{row}");
    assert_eq!(row["user"]["name"], json!(SCRIPT), "{row}");
    assert_eq!(&row["project"], project, "project of {row}");
    let created_at = row["created_at"]
        .as_str()
        .unwrap_or_else(|| panic!("created_at: {row}"));
    assert!(
        chrono::NaiveDateTime::parse_from_str(created_at, "%Y-%m-%dT%H:%M:%SZ").is_ok(),
        "created_at in the Z form: {created_at}"
    );
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("a dictionary")
}

/// A forward Change row's meta, exactly.
fn change_meta(
    entity_type: &str,
    id: i64,
    field: &str,
    data_type: &str,
    change: Value,
) -> Map<String, Value> {
    let mut m = obj(json!({
        "type": "attribute_change", "attribute_name": field, "entity_type": entity_type,
        "entity_id": id, "field_data_type": data_type
    }));
    m.extend(obj(change));
    m
}

/// Checks a Change row's top-level fields and its meta, exactly.
fn assert_change(row: &Value, entity: Value, field: &str, meta_want: &Map<String, Value>) {
    // A null entity (a retired record) leaves the type to meta, as for a consumer.
    let entity_type = entity["type"]
        .as_str()
        .or(meta_want["entity_type"].as_str())
        .expect("a type")
        .to_string();
    assert_eq!(
        row["event_type"],
        json!(format!("Shotgun_{entity_type}_Change")),
        "{row}"
    );
    assert_eq!(row["attribute_name"], json!(field), "{row}");
    assert_eq!(row["entity"], entity, "entity of {row}");
    assert_eq!(&meta(row), meta_want, "meta of {}", row["id"]);
}

/// The rows of one call: the create logs New, one in_create Change row per
/// field set (given or defaulted), each link's back-reference row right after
/// its forward row, and nothing for audit fields.
#[tokio::test]
async fn create_logs_new_in_create_rows_and_back_references() {
    let site = start().await;
    let c = site.client();
    let q = create(&c, "Sequence", json!({"code": "q", "project": project()})).await;
    let a = create(&c, "Asset", json!({"code": "a"})).await;
    let last = last_event_id(&c).await;
    let shot = create(
        &c,
        "Shot",
        json!({"code": "s", "project": project(), "sg_sequence": {"type": "Sequence", "id": q, "name": "q"}, "assets": [{"type": "Asset", "id": a}]}),
    )
    .await;
    let rows = events_after(&c, last).await;
    assert_consecutive(&rows);
    for row in &rows {
        let p = if row["entity"]["type"] == json!("Asset") {
            Value::Null
        } else {
            project_link()
        };
        assert_common(row, &p);
    }

    let new = &rows[0];
    assert_eq!(
        new["event_type"],
        json!("Shotgun_Shot_New"),
        "{}",
        describe(&rows)
    );
    assert_eq!(new["attribute_name"], Value::Null);
    assert_eq!(new["entity"], link("Shot", shot, "s"));
    assert_eq!(
        meta(new),
        obj(json!({"type": "new_entity", "entity_type": "Shot", "entity_id": shot}))
    );

    let shot_link = link("Shot", shot, "s");
    let scalar = |field: &str, dt: &str, value: Value| {
        change_meta(
            "Shot",
            shot,
            field,
            dt,
            json!({"old_value": null, "new_value": value, "in_create": true}),
        )
    };
    // (field, meta, back-reference row expected after it)
    let expected: Vec<(&str, Map<String, Value>, Option<Value>)> = vec![
        (
            "assets",
            change_meta(
                "Shot",
                shot,
                "assets",
                "multi_entity",
                json!({"added": [item("Asset", a, "a")], "removed": [], "in_create": true}),
            ),
            Some(link("Asset", a, "a")),
        ),
        ("code", scalar("code", "text", json!("s")), None),
        ("project", scalar("project", "entity", project_link()), None),
        (
            "sg_priority",
            scalar("sg_priority", "number", json!(5)),
            None,
        ),
        (
            "sg_sequence",
            scalar("sg_sequence", "entity", link("Sequence", q, "q")),
            Some(link("Sequence", q, "q")),
        ),
        (
            "sg_status_list",
            scalar("sg_status_list", "status_list", json!("wtg")),
            None,
        ),
    ];
    let forward: Vec<&Value> = rows
        .iter()
        .filter(|r| r["event_type"] == json!("Shotgun_Shot_Change"))
        .collect();
    let mut got: Vec<&str> = forward
        .iter()
        .map(|r| r["attribute_name"].as_str().unwrap_or(""))
        .collect();
    got.sort();
    let mut want: Vec<&str> = expected.iter().map(|(f, _, _)| *f).collect();
    want.sort();
    assert_eq!(
        got,
        want,
        "one in_create row per field set, defaults included, audit fields never:\n{}",
        describe(&rows)
    );
    assert_eq!(
        rows.len(),
        1 + expected.len() + 2,
        "New + in_create rows + 2 back-references:\n{}",
        describe(&rows)
    );

    for (field, meta_want, back) in &expected {
        let at = rows
            .iter()
            .position(|r| {
                r["event_type"] == json!("Shotgun_Shot_Change")
                    && r["attribute_name"] == json!(field)
            })
            .expect("row");
        let row = &rows[at];
        assert_change(row, shot_link.clone(), field, meta_want);
        if let Some(target) = back {
            let back_row = rows
                .get(at + 1)
                .unwrap_or_else(|| panic!("no back-reference after {field}"));
            let dt = if *field == "assets" {
                "multi_entity"
            } else {
                "entity"
            };
            let back_meta = change_meta(
                "Shot",
                shot,
                "shots",
                dt,
                json!({
                    "added": [item("Shot", shot, "s")], "removed": [], "in_create": true,
                    "actual_attribute_changed": format!("Shot.{field}"),
                    "original_event_log_entry_id": row["id"],
                }),
            );
            assert_change(back_row, target.clone(), "shots", &back_meta);
        }
    }
    let all = events_after(&c, 0).await;
    for row in &all {
        let name = row["attribute_name"].as_str().unwrap_or("");
        assert!(
            !AUDIT_FIELDS.contains(&name),
            "audit fields are never logged: {row}"
        );
    }
}

/// An update logs one Change row per changed field with old_value and
/// new_value (links as `{type, id, name}`), back-reference rows on both the
/// new and the old target of an entity field, and nothing for unchanged values.
#[tokio::test]
async fn update_logs_old_and_new_values() {
    let site = start().await;
    let c = site.client();
    let q1 = create(&c, "Sequence", json!({"code": "q1"})).await;
    let q2 = create(&c, "Sequence", json!({"code": "q2"})).await;
    let shot = create(
        &c,
        "Shot",
        json!({"code": "s", "project": project(), "sg_cut_in": 1, "sg_due": "2024-01-01", "sg_sequence": {"type": "Sequence", "id": q1}}),
    )
    .await;
    let url = json!({"url": "https://example.com", "name": "x", "link_type": "web", "content_type": null});
    let last = last_event_id(&c).await;
    update(
        &c,
        "Shot",
        shot,
        json!({
            "code": "s2", "sg_cut_in": 2, "sg_rate": 1.5, "sg_due": "2024-02-02", "sg_start": "2024-03-04T05:06:07Z",
            "sg_hero": true, "sg_status_list": "ip", "sg_shot_type": "Hero", "sg_color": "1,2,3", "sg_link": url,
            "sg_data": {"k": [1]}, "sg_sequence": {"type": "Sequence", "id": q2}
        }),
    )
    .await;
    let rows = events_after(&c, last).await;
    assert_consecutive(&rows);
    rows.iter()
        .filter(|r| r["entity"]["type"] == json!("Shot"))
        .for_each(|r| assert_common(r, &project_link()));
    let cases: Vec<(&str, &str, Value, Value)> = vec![
        ("code", "text", json!("s"), json!("s2")),
        ("sg_cut_in", "number", json!(1), json!(2)),
        ("sg_rate", "float", Value::Null, json!(1.5)),
        ("sg_due", "date", json!("2024-01-01"), json!("2024-02-02")),
        (
            "sg_start",
            "date_time",
            Value::Null,
            json!("2024-03-04T05:06:07Z"),
        ),
        ("sg_hero", "checkbox", json!(false), json!(true)),
        ("sg_status_list", "status_list", json!("wtg"), json!("ip")),
        ("sg_shot_type", "list", Value::Null, json!("Hero")),
        ("sg_color", "color", Value::Null, json!("1,2,3")),
        ("sg_link", "url", Value::Null, url.clone()),
        ("sg_data", "serializable", Value::Null, json!({"k": [1]})),
        (
            "sg_sequence",
            "entity",
            link("Sequence", q1, "q1"),
            link("Sequence", q2, "q2"),
        ),
    ];
    assert_eq!(rows.len(), cases.len() + 2, "{}", describe(&rows));
    for (field, dt, old, new) in &cases {
        let at = rows.iter().position(|r| {
            r["entity"]["type"] == json!("Shot") && r["attribute_name"] == json!(field)
        });
        let at = at.unwrap_or_else(|| panic!("no row for {field}:\n{}", describe(&rows)));
        let want = change_meta(
            "Shot",
            shot,
            field,
            dt,
            json!({"old_value": old, "new_value": new}),
        );
        assert_change(&rows[at], link("Shot", shot, "s2"), field, &want);
    }
    // The Sequences' back-references follow the forward row.
    let forward = rows
        .iter()
        .position(|r| r["attribute_name"] == json!("sg_sequence"))
        .expect("forward");
    let back: Vec<&Value> = rows[forward + 1..].iter().take(2).collect();
    assert_eq!(back.len(), 2, "{}", describe(&rows));
    for (target, name, added, removed) in [
        (q2, "q2", json!([item("Shot", shot, "s2")]), json!([])),
        (q1, "q1", json!([]), json!([item("Shot", shot, "s2")])),
    ] {
        let row = back
            .iter()
            .find(|r| r["entity"]["id"] == json!(target))
            .unwrap_or_else(|| panic!("no back-reference on {name}"));
        let want = change_meta(
            "Shot",
            shot,
            "shots",
            "entity",
            json!({"added": added, "removed": removed, "actual_attribute_changed": "Shot.sg_sequence",
                   "original_event_log_entry_id": rows[forward]["id"]}),
        );
        assert_change(row, link("Sequence", target, name), "shots", &want);
    }

    // The same values again change nothing and log nothing.
    let last = last_event_id(&c).await;
    update(&c, "Shot", shot, json!({"code": "s2", "sg_cut_in": 2, "sg_rate": 1.5, "sg_sequence": {"type": "Sequence", "id": q2}})).await;
    let rows = events_after(&c, last).await;
    assert!(rows.is_empty(), "{}", describe(&rows));
}

/// One multi_entity update: mode, value, added and removed asset indexes, and
/// the back-references expected (asset index, added?).
type Step = (
    &'static str,
    Value,
    Vec<usize>,
    Vec<usize>,
    Vec<(usize, bool)>,
);

/// multi_entity updates log `added`/`removed` (no old_value/new_value), with
/// one back-reference row per target, from either side of the pair.
#[tokio::test]
async fn multi_entity_changes_log_added_and_removed() {
    let site = start().await;
    let c = site.client();
    let mut a = Vec::new();
    for code in ["a1", "a2", "a3"] {
        a.push(create(&c, "Asset", json!({"code": code})).await);
    }
    let asset = |i: usize| json!({"type": "Asset", "id": a[i]});
    let shot = create(
        &c,
        "Shot",
        json!({"code": "s", "assets": [asset(0), asset(1)]}),
    )
    .await;
    let shot_link = link("Shot", shot, "s");
    let shot_item = json!([item("Shot", shot, "s")]);

    // (mode, value, added, removed, back-references: (asset index, added?))
    let steps: Vec<Step> = vec![
        (
            "set",
            json!([asset(1), asset(2)]),
            vec![2],
            vec![0],
            vec![(2, true), (0, false)],
        ),
        (
            "add",
            json!([asset(0), asset(2)]),
            vec![0],
            vec![],
            vec![(0, true)],
        ),
        (
            "remove",
            json!([asset(1)]),
            vec![],
            vec![1],
            vec![(1, false)],
        ),
    ];
    for (mode, value, added, removed, backs) in steps {
        let last = last_event_id(&c).await;
        update_mode(&c, "Shot", shot, "assets", value, mode).await;
        let rows = events_after(&c, last).await;
        assert_consecutive(&rows);
        assert_eq!(rows.len(), 1 + backs.len(), "{mode}:\n{}", describe(&rows));
        let items = |list: &[usize]| {
            Value::Array(
                list.iter()
                    .map(|i| item("Asset", a[*i], ["a1", "a2", "a3"][*i]))
                    .collect(),
            )
        };
        let want = change_meta(
            "Shot",
            shot,
            "assets",
            "multi_entity",
            json!({"added": items(&added), "removed": items(&removed)}),
        );
        assert_change(&rows[0], shot_link.clone(), "assets", &want);
        for (row, (i, adding)) in rows[1..].iter().zip(backs) {
            let (add, rem) = if adding {
                (shot_item.clone(), json!([]))
            } else {
                (json!([]), shot_item.clone())
            };
            let want = change_meta(
                "Shot",
                shot,
                "shots",
                "multi_entity",
                json!({"added": add, "removed": rem, "actual_attribute_changed": "Shot.assets", "original_event_log_entry_id": rows[0]["id"]}),
            );
            assert_change(
                row,
                link("Asset", a[i], ["a1", "a2", "a3"][i]),
                "shots",
                &want,
            );
        }
    }
    // Adding what is there, or removing what is not, logs nothing.
    let last = last_event_id(&c).await;
    update_mode(&c, "Shot", shot, "assets", json!([asset(0)]), "add").await;
    update_mode(&c, "Shot", shot, "assets", json!([asset(1)]), "remove").await;
    assert!(events_after(&c, last).await.is_empty());

    // From the Asset side: the back-reference is on the Shot and describes the Asset.
    let last = last_event_id(&c).await;
    update_mode(
        &c,
        "Asset",
        a[1],
        "shots",
        json!([{"type": "Shot", "id": shot}]),
        "add",
    )
    .await;
    let rows = events_after(&c, last).await;
    assert_eq!(rows.len(), 2, "{}", describe(&rows));
    let want = change_meta(
        "Asset",
        a[1],
        "shots",
        "multi_entity",
        json!({"added": shot_item, "removed": []}),
    );
    assert_change(&rows[0], link("Asset", a[1], "a2"), "shots", &want);
    let want = change_meta(
        "Asset",
        a[1],
        "assets",
        "multi_entity",
        json!({"added": [item("Asset", a[1], "a2")], "removed": [], "actual_attribute_changed": "Asset.shots", "original_event_log_entry_id": rows[0]["id"]}),
    );
    assert_change(&rows[1], shot_link, "assets", &want);
}

/// Moving a Task between Shots logs the Task.entity row, then a back-reference
/// on each Shot (added on the new one, removed on the old one), both pointing
/// at the forward row and describing the Task side.
/// tag_list changes log the names gained and lost as `added`/`removed`
/// (the multi-entity shape with names as items: no real site's row for a
/// tag_list has been seen), in create and update alike; a name no Tag has
/// yet makes a Tag first, with its own New row; an update that changes
/// nothing logs nothing.
#[tokio::test]
async fn tag_list_changes_log_the_names_added_and_removed() {
    let site = start().await;
    let c = site.client();
    let last = last_event_id(&c).await;
    let shot = create(&c, "Shot", json!({"code": "s", "tag_list": ["hero", "fx"]})).await;
    let rows = events_after(&c, last).await;
    assert_consecutive(&rows);
    let tag_rows: Vec<&Value> = rows
        .iter()
        .filter(|r| r["event_type"] == json!("Shotgun_Tag_New"))
        .collect();
    assert_eq!(
        tag_rows.len(),
        2,
        "a Tag for each new name:\n{}",
        describe(&rows)
    );
    let in_create = rows
        .iter()
        .find(|r| r["attribute_name"] == json!("tag_list"))
        .unwrap_or_else(|| panic!("an in_create row for tag_list:\n{}", describe(&rows)));
    assert_change(
        in_create,
        link("Shot", shot, "s"),
        "tag_list",
        &change_meta(
            "Shot",
            shot,
            "tag_list",
            "tag_list",
            json!({"added": ["hero", "fx"], "removed": [], "in_create": true}),
        ),
    );

    for (mode, value, added, removed) in [
        ("add", json!(["rain", "HERO"]), json!(["rain"]), json!([])),
        ("remove", json!(["fx"]), json!([]), json!(["fx"])),
        (
            "set",
            json!(["night"]),
            json!(["night"]),
            json!(["hero", "rain"]),
        ),
    ] {
        let last = last_event_id(&c).await;
        update_mode(&c, "Shot", shot, "tag_list", value, mode).await;
        let rows = events_after(&c, last).await;
        let changes: Vec<&Value> = rows
            .iter()
            .filter(|r| r["event_type"] == json!("Shotgun_Shot_Change"))
            .collect();
        assert_eq!(changes.len(), 1, "{mode}:\n{}", describe(&rows));
        assert_change(
            changes[0],
            link("Shot", shot, "s"),
            "tag_list",
            &change_meta(
                "Shot",
                shot,
                "tag_list",
                "tag_list",
                json!({"added": added, "removed": removed}),
            ),
        );
    }
    let last = last_event_id(&c).await;
    update(&c, "Shot", shot, json!({"tag_list": ["night"]})).await;
    assert!(events_after(&c, last).await.is_empty(), "no change, no row");
}

#[tokio::test]
async fn moving_a_task_logs_back_references_on_both_shots() {
    let site = start().await;
    let c = site.client();
    let s1 = create(&c, "Shot", json!({"code": "s1", "project": project()})).await;
    let s2 = create(&c, "Shot", json!({"code": "s2", "project": project()})).await;
    let task = create(
        &c,
        "Task",
        json!({"content": "anim", "project": project(), "entity": {"type": "Shot", "id": s1}}),
    )
    .await;
    let last = last_event_id(&c).await;
    update(
        &c,
        "Task",
        task,
        json!({"entity": {"type": "Shot", "id": s2}}),
    )
    .await;
    let rows = events_after(&c, last).await;
    assert_consecutive(&rows);
    rows.iter().for_each(|r| assert_common(r, &project_link()));
    assert_eq!(rows.len(), 3, "{}", describe(&rows));
    let want = change_meta(
        "Task",
        task,
        "entity",
        "entity",
        json!({"old_value": link("Shot", s1, "s1"), "new_value": link("Shot", s2, "s2")}),
    );
    assert_change(&rows[0], link("Task", task, "anim"), "entity", &want);
    for (shot, name, added, removed) in [
        (s2, "s2", json!([item("Task", task, "anim")]), json!([])),
        (s1, "s1", json!([]), json!([item("Task", task, "anim")])),
    ] {
        let row = rows[1..]
            .iter()
            .find(|r| r["entity"]["id"] == json!(shot))
            .unwrap_or_else(|| panic!("no row on {name}"));
        let want = change_meta(
            "Task",
            task,
            "tasks",
            "entity",
            json!({"added": added, "removed": removed, "actual_attribute_changed": "Task.entity", "original_event_log_entry_id": rows[0]["id"]}),
        );
        assert_change(row, link("Shot", shot, name), "tasks", &want);
    }

    // The same move from the Shot side: Shot.tasks forward row, then the
    // Task.entity back-reference (old/new values), and the old Shot loses it.
    let last = last_event_id(&c).await;
    update_mode(
        &c,
        "Shot",
        s1,
        "tasks",
        json!([{"type": "Task", "id": task}]),
        "add",
    )
    .await;
    let rows = events_after(&c, last).await;
    assert_consecutive(&rows);
    assert_eq!(rows.len(), 3, "{}", describe(&rows));
    let forward = change_meta(
        "Shot",
        s1,
        "tasks",
        "multi_entity",
        json!({"added": [item("Task", task, "anim")], "removed": []}),
    );
    assert_change(&rows[0], link("Shot", s1, "s1"), "tasks", &forward);
    let task_row = rows
        .iter()
        .find(|r| r["entity"]["type"] == json!("Task"))
        .expect("Task.entity back-reference");
    let want = change_meta(
        "Shot",
        s1,
        "entity",
        "multi_entity",
        json!({"old_value": link("Shot", s2, "s2"), "new_value": link("Shot", s1, "s1"),
               "actual_attribute_changed": "Shot.tasks", "original_event_log_entry_id": rows[0]["id"]}),
    );
    assert_change(task_row, link("Task", task, "anim"), "entity", &want);
    let old_shot = rows
        .iter()
        .find(|r| r["entity"]["id"] == json!(s2))
        .expect("a row on the old Shot");
    // The old Shot losing the Task is the back-reference of Task.entity moving
    // away from it, so its meta describes the Task side.
    let want = change_meta(
        "Task",
        task,
        "tasks",
        "entity",
        json!({"added": [], "removed": [item("Task", task, "anim")],
               "actual_attribute_changed": "Task.entity", "original_event_log_entry_id": rows[0]["id"]}),
    );
    assert_change(old_shot, link("Shot", s2, "s2"), "tasks", &want);
}

fn is_retirement_stamp(s: &str) -> bool {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S UTC").is_ok()
        && s.ends_with(" UTC")
        && s.len() == 23
}

/// Delete logs, children first, a retirement_date Change (no
/// field_data_type) then a Retirement row for each Task of the Shot and then
/// the Shot; revive logs the mirror image with Revival rows whose meta has no
/// `type`. `entity` reads null on every row of a record while it is retired,
/// old New rows included, and comes back with the record. Records that link
/// to the retired Shot get no rows.
#[tokio::test]
async fn delete_and_revive_log_retirement_and_revival_with_cascades() {
    let site = start().await;
    let c = site.client();
    let shot = create(&c, "Shot", json!({"code": "s", "project": project()})).await;
    let on = json!({"type": "Shot", "id": shot});
    let t1 = create(
        &c,
        "Task",
        json!({"content": "anim", "project": project(), "entity": on}),
    )
    .await;
    let t2 = create(
        &c,
        "Task",
        json!({"content": "comp", "project": project(), "entity": on}),
    )
    .await;
    create(&c, "Asset", json!({"code": "a", "shots": [on]})).await;
    let new_row_id = events_after(&c, 0)
        .await
        .iter()
        .find(|r| r["event_type"] == json!("Shotgun_Shot_New"))
        .expect("New")["id"]
        .clone();

    let last = last_event_id(&c).await;
    assert_eq!(delete(&c, "Shot", shot).await, json!(true));
    let rows = events_after(&c, last).await;
    assert_consecutive(&rows);
    assert_eq!(rows.len(), 6, "{}", describe(&rows));
    let stamp = meta(&rows[0])["new_value"]
        .as_str()
        .expect("a stamp")
        .to_string();
    assert!(
        is_retirement_stamp(&stamp),
        "retirement stamps read YYYY-MM-DD HH:MM:SS UTC: {stamp}"
    );
    let call_time = rows[0]["created_at"]
        .as_str()
        .expect("created_at")
        .replace('T', " ")
        .replace('Z', " UTC");
    assert_eq!(stamp, call_time, "the stamp is the time of the delete");
    for (pair_rows, (entity_type, id, name)) in rows.chunks(2).zip([
        ("Task", t1, "anim"),
        ("Task", t2, "comp"),
        ("Shot", shot, "s"),
    ]) {
        let (change, retirement) = (&pair_rows[0], &pair_rows[1]);
        assert_common(change, &project_link());
        assert_common(retirement, &project_link());
        let want = obj(
            json!({"type": "attribute_change", "attribute_name": "retirement_date", "entity_type": entity_type,
                              "entity_id": id, "old_value": null, "new_value": stamp}),
        );
        assert_change(change, Value::Null, "retirement_date", &want);
        assert_eq!(
            retirement["event_type"],
            json!(format!("Shotgun_{entity_type}_Retirement"))
        );
        assert_eq!(retirement["attribute_name"], Value::Null);
        assert_eq!(
            retirement["entity"],
            Value::Null,
            "entity is null while the record is retired"
        );
        assert_eq!(
            meta(retirement),
            obj(
                json!({"type": "entity_retirement", "entity_type": entity_type, "entity_id": id, "id": id,
                       "class_name": entity_type, "display_name": name, "retirement_date": stamp})
            )
        );
    }
    let log = events_after(&c, 0).await;
    let new_row = log
        .iter()
        .find(|r| r["id"] == new_row_id)
        .expect("the Shot's New row");
    assert_eq!(
        new_row["entity"],
        Value::Null,
        "old rows of a retired record read entity null too"
    );

    let last = last_event_id(&c).await;
    assert_eq!(revive(&c, "Shot", shot).await, json!(true));
    let rows = events_after(&c, last).await;
    assert_consecutive(&rows);
    assert_eq!(rows.len(), 6, "{}", describe(&rows));
    for (pair_rows, (entity_type, id, name)) in rows.chunks(2).zip([
        ("Task", t1, "anim"),
        ("Task", t2, "comp"),
        ("Shot", shot, "s"),
    ]) {
        let (change, revival) = (&pair_rows[0], &pair_rows[1]);
        assert_common(change, &project_link());
        let want = obj(
            json!({"type": "attribute_change", "attribute_name": "retirement_date", "entity_type": entity_type,
                              "entity_id": id, "old_value": stamp, "new_value": null}),
        );
        assert_change(
            change,
            link(entity_type, id, name),
            "retirement_date",
            &want,
        );
        assert_eq!(
            revival["event_type"],
            json!(format!("Shotgun_{entity_type}_Revival"))
        );
        assert_eq!(revival["attribute_name"], Value::Null);
        assert_eq!(revival["entity"], link(entity_type, id, name));
        assert_eq!(
            meta(revival),
            obj(
                json!({"class_name": entity_type, "display_name": name, "entity_id": id, "entity_type": entity_type, "id": id})
            ),
            "Revival meta has no type key"
        );
    }
    let log = events_after(&c, 0).await;
    let new_row = log
        .iter()
        .find(|r| r["id"] == new_row_id)
        .expect("the Shot's New row");
    assert_eq!(
        new_row["entity"],
        link("Shot", shot, "s"),
        "entity is back once the record is"
    );
    assert!(
        !log.iter()
            .any(|r| r["entity"]["type"] == json!("Asset") && r["id"].as_i64() > Some(last - 6)),
        "no rows for records linking to it"
    );

    // Deleting a Task alone logs just its two rows.
    let last = last_event_id(&c).await;
    delete(&c, "Task", t1).await;
    let rows = events_after(&c, last).await;
    let types: Vec<&str> = rows
        .iter()
        .map(|r| r["event_type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        types,
        vec!["Shotgun_Task_Change", "Shotgun_Task_Retirement"]
    );
}

/// Schema edits log Shotgun_DisplayColumn_New, _Change and _Delete rows on a
/// DisplayColumn entity, and nothing for existing records.
#[tokio::test]
async fn schema_edits_log_display_column_rows() {
    let site = start().await;
    let c = site.client();
    create(&c, "Shot", json!({"code": "s"})).await;
    let mut kinds = Vec::new();
    for (method, params) in [
        (
            "schema_field_create",
            json!({"type": "Shot", "data_type": "number", "properties": [{"property_name": "name", "value": "Cost Estimate"}]}),
        ),
        (
            "schema_field_update",
            json!({"type": "Shot", "field_name": "sg_cost_estimate", "properties": [{"property_name": "name", "value": "Cost (k$)"}]}),
        ),
        (
            "schema_field_delete",
            json!({"type": "Shot", "field_name": "sg_cost_estimate"}),
        ),
    ] {
        let last = last_event_id(&c).await;
        call(&c, method, params).await;
        let rows = events_after(&c, last).await;
        assert_eq!(rows.len(), 1, "{method}:\n{}", describe(&rows));
        let row = &rows[0];
        assert_common(row, &Value::Null);
        assert_eq!(row["entity"]["type"], json!("DisplayColumn"), "{row}");
        let m = meta(row);
        assert_eq!(m["entity_type"], json!("DisplayColumn"));
        assert_eq!(m["entity_id"], row["entity"]["id"]);
        assert!(m["type"].is_string(), "{row}");
        kinds.push((
            row["event_type"].as_str().unwrap_or("").to_string(),
            m["type"].clone(),
        ));
    }
    let types: Vec<&str> = kinds.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        vec![
            "Shotgun_DisplayColumn_New",
            "Shotgun_DisplayColumn_Change",
            "Shotgun_DisplayColumn_Delete"
        ]
    );
    assert_eq!(
        (kinds[0].1.clone(), kinds[1].1.clone()),
        (json!("new_entity"), json!("attribute_change"))
    );
}

/// The rows about one field all name the same DisplayColumn.
#[tokio::test]
async fn display_column_rows_name_one_column() {
    let site = start().await;
    let c = site.client();
    let last = last_event_id(&c).await;
    call(&c, "schema_field_create", json!({"type": "Shot", "data_type": "number", "properties": [{"property_name": "name", "value": "Cost Estimate"}]})).await;
    call(&c, "schema_field_update", json!({"type": "Shot", "field_name": "sg_cost_estimate", "properties": [{"property_name": "description", "value": "k$"}]})).await;
    call(
        &c,
        "schema_field_delete",
        json!({"type": "Shot", "field_name": "sg_cost_estimate"}),
    )
    .await;
    let rows = events_after(&c, last).await;
    assert_eq!(rows.len(), 3, "{}", describe(&rows));
    let columns: BTreeSet<i64> = rows
        .iter()
        .filter_map(|r| r["entity"]["id"].as_i64())
        .collect();
    assert_eq!(
        columns.len(),
        1,
        "New, Change and Delete of one field name one DisplayColumn:\n{}",
        describe(&rows)
    );
    // The simulated site keeps no DisplayColumn records, so the link has no
    // name; the field's code is in the meta instead.
    assert_eq!(meta(&rows[0])["field_name"], json!("sg_cost_estimate"));
}

/// A DisplayColumn Change row names the changed attribute at the top level,
/// as every Change row does.
#[tokio::test]
async fn display_column_change_rows_have_an_attribute_name() {
    let site = start().await;
    let c = site.client();
    call(&c, "schema_field_create", json!({"type": "Shot", "data_type": "number", "properties": [{"property_name": "name", "value": "Cost Estimate"}]})).await;
    let last = last_event_id(&c).await;
    call(&c, "schema_field_update", json!({"type": "Shot", "field_name": "sg_cost_estimate", "properties": [{"property_name": "description", "value": "k$"}]})).await;
    let rows = events_after(&c, last).await;
    assert_eq!(rows.len(), 1);
    let m = meta(&rows[0]);
    assert!(
        rows[0]["attribute_name"].is_string(),
        "top-level attribute_name: {}",
        rows[0]
    );
    assert_eq!(rows[0]["attribute_name"], m["attribute_name"]);
}

/// Renaming a field logs a DisplayColumn Change on `human_name` from the old
/// display name to the new one.
#[tokio::test]
async fn renaming_a_field_logs_a_human_name_change() {
    let site = start().await;
    let c = site.client();
    call(&c, "schema_field_create", json!({"type": "Shot", "data_type": "number", "properties": [{"property_name": "name", "value": "Cost Estimate"}]})).await;
    let last = last_event_id(&c).await;
    call(&c, "schema_field_update", json!({"type": "Shot", "field_name": "sg_cost_estimate", "properties": [{"property_name": "name", "value": "Cost (k$)"}]})).await;
    let rows = events_after(&c, last).await;
    assert_eq!(rows.len(), 1);
    let m = meta(&rows[0]);
    assert_eq!(m["attribute_name"], json!("human_name"), "{}", rows[0]);
    assert_eq!(
        (m["old_value"].clone(), m["new_value"].clone()),
        (json!("Cost Estimate"), json!("Cost (k$)"))
    );
}

/// Renaming a Shot logs one row, Shot.code: nothing for the Tasks and Assets
/// whose links to it now show the new name, and nothing for audit fields.
/// Links in the log are live: they show the current name.
#[tokio::test]
async fn a_rename_logs_one_row() {
    let site = start().await;
    let c = site.client();
    let shot = create(&c, "Shot", json!({"code": "old"})).await;
    let on = json!({"type": "Shot", "id": shot});
    let task = create(&c, "Task", json!({"content": "anim", "entity": on})).await;
    create(&c, "Asset", json!({"code": "a", "shots": [on]})).await;
    let last = last_event_id(&c).await;
    update(&c, "Shot", shot, json!({"code": "new"})).await;
    let rows = events_after(&c, last).await;
    assert_eq!(rows.len(), 1, "{}", describe(&rows));
    let want = change_meta(
        "Shot",
        shot,
        "code",
        "text",
        json!({"old_value": "old", "new_value": "new"}),
    );
    assert_change(&rows[0], link("Shot", shot, "new"), "code", &want);
    assert_eq!(
        get(&c, "Task", task, "entity").await,
        link("Shot", shot, "new"),
        "link names are read live"
    );
    let new_row = events_after(&c, 0)
        .await
        .into_iter()
        .find(|r| r["event_type"] == json!("Shotgun_Shot_New"))
        .expect("New");
    assert_eq!(
        new_row["entity"],
        link("Shot", shot, "new"),
        "the log's links are live too"
    );
}

/// Within one call ids rise strictly and follow the order of the work (a
/// batch's items in order); calls follow each other; rows of one call share
/// created_at; the caller's session_uuid and user are on every row.
#[tokio::test]
async fn ids_rise_within_a_call_and_rows_carry_the_caller() {
    let site = start().await;
    let mut auth = Auth::user(USER, PASSWORD);
    auth.session_uuid = Some("3fc2e1d2-0000-4000-8000-00000000beef".into());
    let c = site.client_as(auth);
    let keep = create(&c, "Shot", json!({"code": "keep"})).await;
    let last = last_event_id(&c).await;
    let results = call(
        &c,
        "batch",
        json!([
            {"request_type": "create", "type": "Shot", "fields": [{"field_name": "code", "value": "b1"}], "return_fields": ["id"]},
            {"request_type": "update", "type": "Shot", "id": keep, "fields": [{"field_name": "code", "value": "kept"}]},
            {"request_type": "create", "type": "Shot", "fields": [{"field_name": "code", "value": "b2"}], "return_fields": ["id"]},
            {"request_type": "delete", "type": "Shot", "id": keep},
        ]),
    )
    .await;
    let b1 = results[0]["id"].as_i64().expect("b1");
    let b2 = results[2]["id"].as_i64().expect("b2");
    let rows = events_after(&c, last).await;
    assert_consecutive(&rows);
    let order: Vec<(String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["event_type"].as_str().unwrap_or("").to_string(),
                meta(r)["entity_id"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    let first = |t: &str, id: i64| {
        order
            .iter()
            .position(|(e, i)| e == t && *i == id)
            .unwrap_or_else(|| panic!("no {t} {id}:\n{}", describe(&rows)))
    };
    let positions = [
        first("Shotgun_Shot_New", b1),
        first("Shotgun_Shot_Change", keep),
        first("Shotgun_Shot_New", b2),
        first("Shotgun_Shot_Retirement", keep),
    ];
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "rows follow the batch's order:\n{}",
        describe(&rows)
    );
    let stamps: BTreeSet<&str> = rows
        .iter()
        .filter_map(|r| r["created_at"].as_str())
        .collect();
    assert_eq!(stamps.len(), 1, "one call, one created_at");
    for row in &rows {
        assert_eq!(
            row["session_uuid"],
            json!("3fc2e1d2-0000-4000-8000-00000000beef"),
            "{row}"
        );
        assert_eq!(
            (row["user"]["type"].clone(), row["user"]["name"].clone()),
            (json!("HumanUser"), json!(USER))
        );
        assert_eq!(
            row["project"],
            Value::Null,
            "Shots without a project log no project"
        );
    }
    let after = last_event_id(&c).await;
    update(&c, "Shot", b1, json!({"code": "later"})).await;
    let rows = events_after(&c, after).await;
    assert_eq!(rows.len(), 1);
    assert!(rows[0]["id"].as_i64() > Some(after));
}

/// With late commits and lost rows on: some ids become visible only after
/// higher ones (out of order), some ids never appear, and once late_commit
/// has passed every row that was not lost is visible and stays so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_and_lost_rows() {
    let late_commit = Duration::from_millis(300);
    let site = start_with(
        small_schema(),
        json!({"Project": [{"id": PROJECT_ID, "name": PROJECT_NAME}]}),
        EventFaults {
            late_commit,
            lost_rate: 0.1,
            ..EventFaults::default()
        },
        ServerOptions::default(),
    )
    .await;
    let c = site.client();
    let first_id = site.site.events.allocate() + 1;

    // A poller watches the visible ids while the writes go on.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let c = c.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut seen: BTreeSet<i64> = BTreeSet::new();
            let mut out_of_order: BTreeSet<i64> = BTreeSet::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let visible = read(&c, "EventLogEntry", &["id"], json!([]), "active").await;
                let high = seen.iter().next_back().copied().unwrap_or(0);
                for id in visible.iter().filter_map(|r| r["id"].as_i64()) {
                    if seen.insert(id) && id < high {
                        out_of_order.insert(id);
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (seen, out_of_order)
        })
    };

    let mut shots = Vec::new();
    for i in 0..50 {
        shots.push(create(&c, "Shot", json!({"code": format!("s{i:03}")})).await);
    }
    for i in 0..150 {
        update(
            &c,
            "Shot",
            shots[i % shots.len()],
            json!({"code": format!("u{i:03}")}),
        )
        .await;
    }
    let writes_done = Instant::now();
    tokio::time::sleep(late_commit + Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (seen_while_writing, out_of_order) = poller.await.expect("poller");

    let end_id = site.site.events.allocate();
    let allocated: BTreeSet<i64> = (first_id..end_id).collect();
    let visible: BTreeSet<i64> = ids(&events_after(&c, 0).await).into_iter().collect();
    assert!(
        visible.is_subset(&allocated),
        "only allocated ids are visible"
    );
    // 50 creates x 4 rows + 150 updates x 1 row.
    assert_eq!(allocated.len(), 350, "every row takes an id");
    let lost: Vec<i64> = allocated.difference(&visible).copied().collect();
    assert!(
        !out_of_order.is_empty(),
        "some ids became visible after higher ones"
    );
    assert!(
        out_of_order.iter().all(|id| visible.contains(id)),
        "late rows arrive"
    );
    assert!(!lost.is_empty(), "some ids never appear");
    let rate = lost.len() as f64 / allocated.len() as f64;
    assert!(
        (0.03..=0.2).contains(&rate),
        "about 10% of ids are lost, got {rate:.3} ({} of {})",
        lost.len(),
        allocated.len()
    );
    assert!(
        seen_while_writing.is_subset(&visible),
        "visible rows stay visible"
    );

    // Once late_commit has passed, nothing more arrives: every row not lost is visible.
    assert!(writes_done.elapsed() > late_commit);
    assert!(
        site.site.events.take_due().is_empty(),
        "no late row is still held back"
    );
    tokio::time::sleep(late_commit).await;
    let again: BTreeSet<i64> = ids(&events_after(&c, 0).await).into_iter().collect();
    assert_eq!(
        again, visible,
        "the visible set is final once late_commit has passed"
    );
    // Lost rows are lost row by row: the Shots' data is all there.
    assert_eq!(count(&c, "Shot", "active").await, 50);
}
