//! `summarize` against a small site: every summary type, every grouping type,
//! nested groupings, filters, retired records, null groups and faults.
//!
//! The dataset (active Shots 1-5 of project 1; Shot 6 is retired):
//!
//! | id | code    | description | cut_in | duration | rate | hero  | due        | created_at           | status | type | sequence        | users      |
//! |----|---------|-------------|--------|----------|------|-------|------------|----------------------|--------|------|-----------------|------------|
//! | 1  | alpha   | "x"         | 1001   | 10       | 1.5  | true  | 2024-01-01 | 2024-01-01T10:00:00Z | ip     | Hero | SQ010           | Ann        |
//! | 2  | Avon    | ""          | 1015   | 20       | 2.5  | false | 2024-01-03 | 2024-01-03T23:59:59Z | ip     | BG   | SQ010           | (none)     |
//! | 3  | bravo   | null        | 1100   | null     | null | true  | 2024-02-15 | 2024-02-15T00:00:00Z | fin    | Hero | sq020           | Ann, Bob   |
//! | 4  | Charlie | "y"         | -5     | 30       | -0.5 | false | 2024-04-10 | 2023-12-31T23:00:00Z | wtg    | null | SQ030 (retired) | Cid (retired) |
//! | 5  | null    | null        | null   | 0        | null | unset | null       | null                 | null   | null | null            | (unset)    |
//! | 6  | delta (retired) | ... | 5000   | 100      |      | true  |            |                      | ip     |      | SQ010           |            |

#[macro_use]
mod common;

use serde_json::{json, Value};

use common::{store, Backend, TestEngine};
use sg_engine::{Engine, Store};
use sg_protocol::{ErrorCode, Fault, Schema, SummarizeParams};

fn field(data_type: &str, valid_types: &[&str]) -> Value {
    let mut properties = json!({
        "default_value": {"value": null, "editable": false},
        "summary_default": {"value": "none", "editable": true}
    });
    if !valid_types.is_empty() {
        properties["valid_types"] = json!({"value": valid_types, "editable": true});
    }
    json!({"data_type": {"value": data_type, "editable": false}, "properties": properties})
}

fn schema() -> Schema {
    let fields = json!({
        "Project": {"id": field("number", &[]), "name": field("text", &[]), "archived": field("checkbox", &[])},
        "Sequence": {"id": field("number", &[]), "code": field("text", &[]),
                     "project": field("entity", &["Project"])},
        "HumanUser": {"id": field("number", &[]), "name": field("text", &[]), "login": field("text", &[])},
        "Shot": {
            "id": field("number", &[]),
            "code": field("text", &[]),
            "description": field("text", &[]),
            "sg_cut_in": field("number", &[]),
            "sg_cut_duration": field("number", &[]),
            "sg_rate": field("float", &[]),
            "sg_hero": field("checkbox", &[]),
            "sg_due": field("date", &[]),
            "created_at": field("date_time", &[]),
            "sg_status_list": field("status_list", &[]),
            "sg_shot_type": field("list", &[]),
            "sg_link": field("url", &[]),
            "sg_sequence": field("entity", &["Sequence"]),
            "project": field("entity", &["Project"]),
            "users": field("multi_entity", &["HumanUser"])
        },
        "Task": {
            "id": field("number", &[]),
            "content": field("text", &[]),
            "sg_status_list": field("status_list", &[]),
            "est_in_mins": field("number", &[]),
            "entity": field("entity", &["Shot", "Sequence"]),
            "project": field("entity", &["Project"]),
            "task_assignees": field("multi_entity", &["HumanUser"])
        }
    });
    Schema::from_json(&fields, None).expect("the test schema parses")
}

fn link(entity_type: &str, id: i64) -> Value {
    json!({"type": entity_type, "id": id})
}

fn engine(backend: Backend) -> TestEngine {
    let engine = Engine::new(store(backend), schema()).expect("the engine starts");
    let p1 = link("Project", 1);
    engine
        .load_dataset(&json!({
            "Project": [{"id": 1, "name": "Alpha", "archived": false}],
            "Sequence": [
                {"id": 10, "code": "SQ010", "project": p1},
                {"id": 11, "code": "sq020", "project": p1},
                {"id": 12, "code": "SQ030", "project": p1, "__retired": true}
            ],
            "HumanUser": [
                {"id": 100, "name": "Ann", "login": "ann"},
                {"id": 101, "name": "Bob", "login": "bob"},
                {"id": 102, "name": "Cid", "login": "cid", "__retired": true}
            ],
            "Shot": [
                {"id": 1, "code": "alpha", "description": "x", "sg_cut_in": 1001, "sg_cut_duration": 10,
                 "sg_rate": 1.5, "sg_hero": true, "sg_due": "2024-01-01", "created_at": "2024-01-01T10:00:00Z",
                 "sg_status_list": "ip", "sg_shot_type": "Hero", "sg_sequence": link("Sequence", 10),
                 "project": p1, "users": [link("HumanUser", 100)]},
                {"id": 2, "code": "Avon", "description": "", "sg_cut_in": 1015, "sg_cut_duration": 20,
                 "sg_rate": 2.5, "sg_hero": false, "sg_due": "2024-01-03", "created_at": "2024-01-03T23:59:59Z",
                 "sg_status_list": "ip", "sg_shot_type": "BG", "sg_sequence": link("Sequence", 10),
                 "project": p1, "users": []},
                {"id": 3, "code": "bravo", "description": null, "sg_cut_in": 1100, "sg_cut_duration": null,
                 "sg_rate": null, "sg_hero": true, "sg_due": "2024-02-15", "created_at": "2024-02-15T00:00:00Z",
                 "sg_status_list": "fin", "sg_shot_type": "Hero", "sg_sequence": link("Sequence", 11),
                 "project": p1, "users": [link("HumanUser", 100), link("HumanUser", 101)]},
                {"id": 4, "code": "Charlie", "description": "y", "sg_cut_in": -5, "sg_cut_duration": 30,
                 "sg_rate": -0.5, "sg_hero": false, "sg_due": "2024-04-10", "created_at": "2023-12-31T23:00:00Z",
                 "sg_status_list": "wtg", "sg_shot_type": null, "sg_sequence": link("Sequence", 12),
                 "project": p1, "users": [link("HumanUser", 102)]},
                {"id": 5, "sg_cut_duration": 0, "project": p1},
                {"id": 6, "code": "delta", "sg_cut_in": 5000, "sg_cut_duration": 100, "sg_hero": true,
                 "sg_status_list": "ip", "sg_sequence": link("Sequence", 10), "project": p1, "__retired": true}
            ],
            "Task": [
                {"id": 1, "content": "Anim", "entity": link("Shot", 1), "sg_status_list": "ip",
                 "est_in_mins": 60, "project": p1, "task_assignees": [link("HumanUser", 100)]},
                {"id": 2, "content": "Comp", "entity": link("Shot", 1), "sg_status_list": "fin",
                 "est_in_mins": 30, "project": p1},
                {"id": 3, "content": "Light", "entity": link("Shot", 3), "sg_status_list": "fin", "project": p1},
                {"id": 4, "content": "Edit", "entity": link("Sequence", 10), "sg_status_list": "wtg",
                 "est_in_mins": 10, "project": p1},
                {"id": 5, "content": "Old", "entity": link("Shot", 6), "sg_status_list": "ip",
                 "est_in_mins": 5, "project": p1}
            ]
        }))
        .expect("the dataset loads");
    engine
}

/// A `summarize` request as the client sends it (filters already translated).
fn request(
    entity_type: &str,
    summaries: &[(&str, &str)],
    grouping: &[(&str, &str, &str)],
    conditions: Value,
) -> Value {
    json!({
        "type": entity_type,
        "summaries": summaries.iter().map(|(f, t)| json!({"field": f, "type": t})).collect::<Vec<_>>(),
        "grouping": grouping.iter().map(|(f, t, d)| json!({"field": f, "type": t, "direction": d})).collect::<Vec<_>>(),
        "filters": {"logical_operator": "and", "conditions": conditions}
    })
}

fn run(engine: &TestEngine, request: Value) -> Value {
    let params = SummarizeParams::from_json(request.as_object().expect("a dictionary"))
        .expect("the request parses");
    engine.summarize(&params).expect("summarize answers")
}

fn fault(engine: &TestEngine, request: Value) -> Fault {
    let params = SummarizeParams::from_json(request.as_object().expect("a dictionary"))
        .expect("the request parses");
    match engine.summarize(&params) {
        Ok(v) => panic!("expected a fault, got {v}"),
        Err(e) => e.to_fault(),
    }
}

/// The summaries of a request with no grouping, which must have `groups: []`.
fn totals(engine: &TestEngine, entity_type: &str, summaries: &[(&str, &str)]) -> Value {
    let got = run(engine, request(entity_type, summaries, &[], json!([])));
    assert_eq!(got["groups"], json!([]), "no grouping gives no groups");
    got["summaries"].clone()
}

/// `[(group_value, summaries.id)]` of one grouped count of Shots.
fn counts_by(engine: &TestEngine, path: &str, grouping: &str, dir: &str) -> Vec<(Value, Value)> {
    let got = run(
        engine,
        request(
            "Shot",
            &[("id", "count")],
            &[(path, grouping, dir)],
            json!([]),
        ),
    );
    assert_eq!(
        got["summaries"]["id"],
        json!(5),
        "the total counts every group"
    );
    got["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| (g["group_value"].clone(), g["summaries"]["id"].clone()))
        .collect()
}

fn pairs(expected: &[(Value, i64)]) -> Vec<(Value, Value)> {
    expected
        .iter()
        .map(|(v, n)| (v.clone(), json!(n)))
        .collect()
}

/// record_count and count: count of `id` and of a checkbox is every record;
/// count of text skips null and ""; of a link skips nulls and links to retired
/// records; of a multi-entity field counts records with a live link.
fn counts(backend: Backend) {
    let e = engine(backend);
    assert_eq!(
        totals(
            &e,
            "Shot",
            &[
                ("id", "record_count"),
                ("code", "count"),
                ("description", "count"),
                ("sg_cut_in", "count"),
                ("sg_hero", "count"),
                ("sg_sequence", "count"),
                ("users", "count"),
                ("sg_due", "count"),
                ("created_at", "count")
            ]
        ),
        json!({"id": 5, "code": 4, "description": 2, "sg_cut_in": 4, "sg_hero": 5, "sg_sequence": 3,
               "users": 2, "sg_due": 4, "created_at": 4})
    );
    assert_eq!(totals(&e, "Shot", &[("id", "count")]), json!({"id": 5}));
    assert_eq!(
        totals(&e, "Shot", &[("sg_link", "record_count")]),
        json!({"sg_link": 5})
    );
}

/// sum keeps the field's type (integer for number, float for float), average
/// is a float, and both skip nulls.
fn sums_and_averages(backend: Backend) {
    let e = engine(backend);
    let got = totals(
        &e,
        "Shot",
        &[
            ("sg_cut_in", "sum"),
            ("sg_rate", "sum"),
            ("sg_cut_duration", "average"),
        ],
    );
    assert_eq!(
        got,
        json!({"sg_cut_in": 3111, "sg_rate": 3.5, "sg_cut_duration": 15.0})
    );
    assert!(
        got["sg_cut_in"].is_i64() && got["sg_rate"].is_f64() && got["sg_cut_duration"].is_f64()
    );
    assert_eq!(
        totals(&e, "Shot", &[("sg_cut_in", "average")]),
        json!({"sg_cut_in": 777.75})
    );
    assert_eq!(totals(&e, "Shot", &[("id", "sum")]), json!({"id": 15}));
}

/// maximum and minimum on numbers (and dates); earliest and latest render dates
/// as YYYY-MM-DD and date-times in the Z form.
fn extremes(backend: Backend) {
    let e = engine(backend);
    assert_eq!(
        totals(
            &e,
            "Shot",
            &[
                ("sg_cut_in", "maximum"),
                ("sg_rate", "minimum"),
                ("sg_due", "earliest"),
                ("created_at", "latest")
            ]
        ),
        json!({"sg_cut_in": 1100, "sg_rate": -0.5, "sg_due": "2024-01-01", "created_at": "2024-02-15T00:00:00Z"})
    );
    assert_eq!(
        totals(
            &e,
            "Shot",
            &[
                ("sg_cut_in", "minimum"),
                ("sg_rate", "maximum"),
                ("sg_due", "latest"),
                ("created_at", "earliest")
            ]
        ),
        json!({"sg_cut_in": -5, "sg_rate": 2.5, "sg_due": "2024-04-10", "created_at": "2023-12-31T23:00:00Z"})
    );
    assert_eq!(
        totals(
            &e,
            "Shot",
            &[("sg_due", "maximum"), ("created_at", "minimum")]
        ),
        json!({"sg_due": "2024-04-10", "created_at": "2023-12-31T23:00:00Z"})
    );
}

/// checked/unchecked count checkboxes (unset is unchecked); percentage is the
/// share checked (checkbox) or not empty (others); status_percentage the share
/// of done statuses; status_list the count of each status.
fn checkbox_and_status_summaries(backend: Backend) {
    let e = engine(backend);
    assert_eq!(
        totals(&e, "Shot", &[("sg_hero", "checked")]),
        json!({"sg_hero": 2})
    );
    assert_eq!(
        totals(&e, "Shot", &[("sg_hero", "unchecked")]),
        json!({"sg_hero": 3})
    );
    assert_eq!(
        totals(
            &e,
            "Shot",
            &[
                ("sg_hero", "percentage"),
                ("code", "percentage"),
                ("sg_status_list", "status_percentage")
            ]
        ),
        json!({"sg_hero": 40, "code": 80, "sg_status_list": 20})
    );
    assert_eq!(
        totals(
            &e,
            "Shot",
            &[
                ("sg_status_list", "status_list"),
                ("sg_shot_type", "status_list")
            ]
        ),
        json!({"sg_status_list": {"fin": 1, "ip": 2, "wtg": 1}, "sg_shot_type": {"BG": 1, "Hero": 2}})
    );
}

/// Summaries of nothing: counts and sums are 0, averages and extremes null,
/// percentages 0, status_list {}.
fn empty_results(backend: Backend) {
    let e = engine(backend);
    let got = run(
        &e,
        request(
            "Shot",
            &[
                ("id", "count"),
                ("sg_cut_in", "sum"),
                ("sg_rate", "sum"),
                ("sg_cut_duration", "average"),
                ("sg_due", "latest"),
                ("sg_hero", "percentage"),
                ("sg_status_list", "status_list"),
            ],
            &[],
            json!([{"path": "code", "relation": "is", "values": ["nothing"]}]),
        ),
    );
    assert_eq!(
        got,
        json!({"summaries": {"id": 0, "sg_cut_in": 0, "sg_rate": 0.0, "sg_cut_duration": null,
                             "sg_due": null, "sg_hero": 0, "sg_status_list": {}}, "groups": []})
    );
    let grouped = run(
        &e,
        request(
            "Shot",
            &[("id", "count")],
            &[("sg_status_list", "exact", "asc")],
            json!([{"path": "code", "relation": "is", "values": ["nothing"]}]),
        ),
    );
    assert_eq!(grouped, json!({"summaries": {"id": 0}, "groups": []}));
}

/// Summaries of deep fields go through entity links; a link to a retired
/// record (Task 5 -> Shot 6) or of another type (Task 4 -> Sequence) is null.
fn deep_summaries(backend: Backend) {
    let e = engine(backend);
    assert_eq!(
        totals(
            &e,
            "Task",
            &[
                ("entity.Shot.sg_cut_in", "sum"),
                ("entity.Shot.code", "count"),
                ("entity.Shot.sg_hero", "checked"),
                ("task_assignees", "count"),
                ("entity", "count")
            ]
        ),
        json!({"entity.Shot.sg_cut_in": 3102, "entity.Shot.code": 3, "entity.Shot.sg_hero": 3,
               "task_assignees": 1, "entity": 4})
    );
    assert_eq!(
        totals(&e, "Shot", &[("sg_sequence.Sequence.code", "count")]),
        json!({"sg_sequence.Sequence.code": 3})
    );
}

/// The site's own example (test_summary_values): exact on a status gives
/// group_name == group_value, sorted; nulls form the last group going up and
/// the first going down; retired Shot 6 (ip, 5000) is left out.
fn exact_on_status_with_null_group_and_directions(backend: Backend) {
    let e = engine(backend);
    let got = run(
        &e,
        request(
            "Shot",
            &[("id", "count"), ("sg_cut_in", "sum")],
            &[("sg_status_list", "exact", "asc")],
            json!([]),
        ),
    );
    assert_eq!(
        got,
        json!({
            "summaries": {"id": 5, "sg_cut_in": 3111},
            "groups": [
                {"group_name": "fin", "group_value": "fin", "summaries": {"id": 1, "sg_cut_in": 1100}},
                {"group_name": "ip", "group_value": "ip", "summaries": {"id": 2, "sg_cut_in": 2016}},
                {"group_name": "wtg", "group_value": "wtg", "summaries": {"id": 1, "sg_cut_in": -5}},
                {"group_name": "", "group_value": null, "summaries": {"id": 1, "sg_cut_in": 0}}
            ]
        })
    );
    assert_eq!(
        counts_by(&e, "sg_status_list", "exact", "desc"),
        pairs(&[
            (Value::Null, 1),
            (json!("wtg"), 1),
            (json!("ip"), 2),
            (json!("fin"), 1)
        ])
    );
}

/// exact on an entity field: the name is the linked record's display name and
/// the value a link with `valid`; groups sort by name case-insensitively; a
/// link to a retired record falls into the null group.
fn exact_on_entity(backend: Backend) {
    let e = engine(backend);
    let got = run(
        &e,
        request(
            "Shot",
            &[("id", "count")],
            &[("sg_sequence", "exact", "asc")],
            json!([]),
        ),
    );
    assert_eq!(
        got["groups"],
        json!([
            {"group_name": "SQ010", "group_value": {"type": "Sequence", "id": 10, "name": "SQ010", "valid": "valid"},
             "summaries": {"id": 2}},
            {"group_name": "sq020", "group_value": {"type": "Sequence", "id": 11, "name": "sq020", "valid": "valid"},
             "summaries": {"id": 1}},
            {"group_name": "", "group_value": null, "summaries": {"id": 2}}
        ])
    );
    // Links to several types sort by name across types.
    let got = run(
        &e,
        request(
            "Task",
            &[("id", "count")],
            &[("entity", "exact", "asc")],
            json!([]),
        ),
    );
    let names: Vec<(Value, Value)> = got["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| (g["group_name"].clone(), g["summaries"]["id"].clone()))
        .collect();
    assert_eq!(
        names,
        vec![
            (json!("alpha"), json!(2)),
            (json!("bravo"), json!(1)),
            (json!("SQ010"), json!(1)),
            (json!(""), json!(1))
        ]
    );
}

/// exact on checkbox, number, float, date and date_time fields: the value in
/// wire form, group_name equal to it, in order of the value.
fn exact_on_scalars(backend: Backend) {
    let e = engine(backend);
    assert_eq!(
        counts_by(&e, "sg_hero", "exact", "asc"),
        pairs(&[(json!(false), 3), (json!(true), 2)])
    );
    assert_eq!(
        counts_by(&e, "sg_cut_duration", "exact", "asc"),
        pairs(&[
            (json!(0), 1),
            (json!(10), 1),
            (json!(20), 1),
            (json!(30), 1),
            (Value::Null, 1)
        ])
    );
    assert_eq!(
        counts_by(&e, "sg_rate", "exact", "desc"),
        pairs(&[
            (Value::Null, 2),
            (json!(2.5), 1),
            (json!(1.5), 1),
            (json!(-0.5), 1)
        ])
    );
    assert_eq!(
        counts_by(&e, "sg_due", "exact", "asc"),
        pairs(&[
            (json!("2024-01-01"), 1),
            (json!("2024-01-03"), 1),
            (json!("2024-02-15"), 1),
            (json!("2024-04-10"), 1),
            (Value::Null, 1)
        ])
    );
    assert_eq!(
        counts_by(&e, "created_at", "exact", "asc")[0],
        (json!("2023-12-31T23:00:00Z"), json!(1))
    );
    let got = run(
        &e,
        request(
            "Shot",
            &[("id", "count")],
            &[("sg_hero", "exact", "asc")],
            json!([]),
        ),
    );
    assert_eq!(got["groups"][1]["group_name"], json!(true));
}

/// firstletter upper-cases the first letter (so "alpha" and "Avon" share "A"),
/// and on an entity field uses the linked record's name.
fn firstletter(backend: Backend) {
    let e = engine(backend);
    assert_eq!(
        counts_by(&e, "code", "firstletter", "asc"),
        pairs(&[
            (json!("A"), 2),
            (json!("B"), 1),
            (json!("C"), 1),
            (Value::Null, 1)
        ])
    );
    assert_eq!(
        counts_by(&e, "sg_sequence", "firstletter", "asc"),
        pairs(&[(json!("S"), 3), (Value::Null, 2)])
    );
    let got = run(
        &e,
        request(
            "Shot",
            &[("id", "count")],
            &[("code", "firstletter", "asc")],
            json!([]),
        ),
    );
    assert_eq!(got["groups"][0]["group_name"], json!("A"));
}

/// Date groupings on a date field: day/oneday, week (its Monday), fivedays
/// (spans from 1970-01-01), month, quarter and year.
fn date_groupings_on_dates(backend: Backend) {
    let e = engine(backend);
    let null = (Value::Null, 1);
    assert_eq!(
        counts_by(&e, "sg_due", "day", "asc"),
        pairs(&[
            (json!("2024-01-01"), 1),
            (json!("2024-01-03"), 1),
            (json!("2024-02-15"), 1),
            (json!("2024-04-10"), 1),
            null.clone()
        ])
    );
    assert_eq!(
        counts_by(&e, "sg_due", "oneday", "asc"),
        counts_by(&e, "sg_due", "day", "asc")
    );
    assert_eq!(
        counts_by(&e, "sg_due", "week", "asc"),
        pairs(&[
            (json!("2024-01-01"), 2),
            (json!("2024-02-12"), 1),
            (json!("2024-04-08"), 1),
            null.clone()
        ])
    );
    assert_eq!(
        counts_by(&e, "sg_due", "fivedays", "asc"),
        pairs(&[
            (json!("2023-12-29"), 1),
            (json!("2024-01-03"), 1),
            (json!("2024-02-12"), 1),
            (json!("2024-04-07"), 1),
            null.clone()
        ])
    );
    assert_eq!(
        counts_by(&e, "sg_due", "month", "asc"),
        pairs(&[
            (json!("2024-01"), 2),
            (json!("2024-02"), 1),
            (json!("2024-04"), 1),
            null.clone()
        ])
    );
    assert_eq!(
        counts_by(&e, "sg_due", "quarter", "desc"),
        pairs(&[null.clone(), (json!("2024-Q2"), 1), (json!("2024-Q1"), 3)])
    );
    assert_eq!(
        counts_by(&e, "sg_due", "year", "asc"),
        pairs(&[(json!("2024"), 4), null])
    );
}

/// Date groupings on a date_time field bucket in UTC: 23:59:59 stays on its
/// day, and 2023-12-31T23:00:00Z is in 2023.
fn date_groupings_on_date_times(backend: Backend) {
    let e = engine(backend);
    let null = (Value::Null, 1);
    assert_eq!(
        counts_by(&e, "created_at", "day", "asc"),
        pairs(&[
            (json!("2023-12-31"), 1),
            (json!("2024-01-01"), 1),
            (json!("2024-01-03"), 1),
            (json!("2024-02-15"), 1),
            null.clone()
        ])
    );
    assert_eq!(
        counts_by(&e, "created_at", "week", "asc"),
        pairs(&[
            (json!("2023-12-25"), 1),
            (json!("2024-01-01"), 2),
            (json!("2024-02-12"), 1),
            null.clone()
        ])
    );
    assert_eq!(
        counts_by(&e, "created_at", "month", "asc"),
        pairs(&[
            (json!("2023-12"), 1),
            (json!("2024-01"), 2),
            (json!("2024-02"), 1),
            null.clone()
        ])
    );
    assert_eq!(
        counts_by(&e, "created_at", "quarter", "asc"),
        pairs(&[(json!("2023-Q4"), 1), (json!("2024-Q1"), 3), null.clone()])
    );
    assert_eq!(
        counts_by(&e, "created_at", "year", "desc"),
        pairs(&[null, (json!("2024"), 3), (json!("2023"), 1)])
    );
}

/// Number buckets give the lower bound, rounding down below zero, on number,
/// float and id fields.
fn number_buckets(backend: Backend) {
    let e = engine(backend);
    let null = (Value::Null, 1);
    assert_eq!(
        counts_by(&e, "sg_cut_in", "tens", "asc"),
        pairs(&[
            (json!(-10), 1),
            (json!(1000), 1),
            (json!(1010), 1),
            (json!(1100), 1),
            null.clone()
        ])
    );
    assert_eq!(
        counts_by(&e, "sg_cut_in", "hundreds", "asc"),
        pairs(&[
            (json!(-100), 1),
            (json!(1000), 2),
            (json!(1100), 1),
            null.clone()
        ])
    );
    assert_eq!(
        counts_by(&e, "sg_cut_in", "thousands", "desc"),
        pairs(&[null.clone(), (json!(1000), 3), (json!(-1000), 1)])
    );
    assert_eq!(
        counts_by(&e, "sg_cut_in", "tensofthousands", "asc"),
        pairs(&[(json!(-10000), 1), (json!(0), 3), null.clone()])
    );
    assert_eq!(
        counts_by(&e, "sg_cut_in", "hundredsofthousands", "asc"),
        pairs(&[(json!(-100000), 1), (json!(0), 3), null.clone()])
    );
    assert_eq!(
        counts_by(&e, "sg_cut_in", "millions", "asc"),
        pairs(&[(json!(-1000000), 1), (json!(0), 3), null])
    );
    assert_eq!(
        counts_by(&e, "sg_rate", "tens", "asc"),
        pairs(&[(json!(-10), 1), (json!(0), 2), (Value::Null, 2)])
    );
    assert_eq!(counts_by(&e, "id", "tens", "asc"), pairs(&[(json!(0), 5)]));
}

/// entitytype groups by the link's type; links to retired records are null.
fn entitytype(backend: Backend) {
    let e = engine(backend);
    let got = run(
        &e,
        request(
            "Task",
            &[("id", "count")],
            &[("entity", "entitytype", "asc")],
            json!([]),
        ),
    );
    assert_eq!(
        got["groups"],
        json!([
            {"group_name": "Sequence", "group_value": "Sequence", "summaries": {"id": 1}},
            {"group_name": "Shot", "group_value": "Shot", "summaries": {"id": 3}},
            {"group_name": "", "group_value": null, "summaries": {"id": 1}}
        ])
    );
}

/// Two grouping levels: each group holds its subgroups under `groups`, each
/// level has its own totals, leaf groups have no `groups` key, and every
/// summary type folds correctly into the upper level.
fn nested_grouping(backend: Backend) {
    let e = engine(backend);
    let got = run(
        &e,
        request(
            "Shot",
            &[
                ("id", "count"),
                ("sg_cut_duration", "average"),
                ("sg_cut_in", "maximum"),
                ("sg_hero", "percentage"),
                ("sg_shot_type", "status_list"),
            ],
            &[
                ("sg_sequence", "exact", "asc"),
                ("sg_status_list", "exact", "desc"),
            ],
            json!([]),
        ),
    );
    let seq =
        |id: i64, name: &str| json!({"type": "Sequence", "id": id, "name": name, "valid": "valid"});
    assert_eq!(
        got,
        json!({
            "summaries": {"id": 5, "sg_cut_duration": 15.0, "sg_cut_in": 1100, "sg_hero": 40,
                          "sg_shot_type": {"BG": 1, "Hero": 2}},
            "groups": [
                {"group_name": "SQ010", "group_value": seq(10, "SQ010"),
                 "summaries": {"id": 2, "sg_cut_duration": 15.0, "sg_cut_in": 1015, "sg_hero": 50,
                               "sg_shot_type": {"BG": 1, "Hero": 1}},
                 "groups": [
                    {"group_name": "ip", "group_value": "ip",
                     "summaries": {"id": 2, "sg_cut_duration": 15.0, "sg_cut_in": 1015, "sg_hero": 50,
                                   "sg_shot_type": {"BG": 1, "Hero": 1}}}
                 ]},
                {"group_name": "sq020", "group_value": seq(11, "sq020"),
                 "summaries": {"id": 1, "sg_cut_duration": null, "sg_cut_in": 1100, "sg_hero": 100,
                               "sg_shot_type": {"Hero": 1}},
                 "groups": [
                    {"group_name": "fin", "group_value": "fin",
                     "summaries": {"id": 1, "sg_cut_duration": null, "sg_cut_in": 1100, "sg_hero": 100,
                                   "sg_shot_type": {"Hero": 1}}}
                 ]},
                {"group_name": "", "group_value": null,
                 "summaries": {"id": 2, "sg_cut_duration": 15.0, "sg_cut_in": -5, "sg_hero": 0,
                               "sg_shot_type": {}},
                 "groups": [
                    {"group_name": "", "group_value": null,
                     "summaries": {"id": 1, "sg_cut_duration": 0.0, "sg_cut_in": null, "sg_hero": 0,
                                   "sg_shot_type": {}}},
                    {"group_name": "wtg", "group_value": "wtg",
                     "summaries": {"id": 1, "sg_cut_duration": 30.0, "sg_cut_in": -5, "sg_hero": 0,
                                   "sg_shot_type": {}}}
                 ]}
            ]
        })
    );
}

/// Grouping by a deep field goes through the entity link; records whose link
/// does not resolve fall into the null group.
fn deep_grouping(backend: Backend) {
    let e = engine(backend);
    let got = run(
        &e,
        request(
            "Task",
            &[("est_in_mins", "sum")],
            &[("entity.Shot.sg_status_list", "exact", "asc")],
            json!([]),
        ),
    );
    assert_eq!(
        got,
        json!({"summaries": {"est_in_mins": 105}, "groups": [
            {"group_name": "fin", "group_value": "fin", "summaries": {"est_in_mins": 0}},
            {"group_name": "ip", "group_value": "ip", "summaries": {"est_in_mins": 90}},
            {"group_name": "", "group_value": null, "summaries": {"est_in_mins": 15}}
        ]})
    );
}

/// Filters (plain and deep) narrow both the totals and the groups.
fn filters_with_grouping(backend: Backend) {
    let e = engine(backend);
    let got = run(
        &e,
        request(
            "Shot",
            &[("id", "count"), ("sg_cut_in", "sum")],
            &[("sg_status_list", "exact", "asc")],
            json!([{"path": "sg_cut_in", "relation": "greater_than", "values": [1000]}]),
        ),
    );
    assert_eq!(
        got,
        json!({"summaries": {"id": 3, "sg_cut_in": 3116}, "groups": [
            {"group_name": "fin", "group_value": "fin", "summaries": {"id": 1, "sg_cut_in": 1100}},
            {"group_name": "ip", "group_value": "ip", "summaries": {"id": 2, "sg_cut_in": 2016}}
        ]})
    );
    let got = run(
        &e,
        request(
            "Shot",
            &[("id", "count")],
            &[("code", "firstletter", "asc")],
            json!([{"path": "sg_sequence.Sequence.code", "relation": "is", "values": ["SQ010"]}]),
        ),
    );
    assert_eq!(
        got,
        json!({"summaries": {"id": 2}, "groups": [
            {"group_name": "A", "group_value": "A", "summaries": {"id": 2}}
        ]})
    );
}

/// Retired records are never summarized, and records of archived projects are
/// left out when include_archived_projects is false (the site's test).
fn retired_and_archived_records(backend: Backend) {
    let e = engine(backend);
    assert_eq!(
        totals(&e, "Shot", &[("sg_cut_in", "maximum")]),
        json!({"sg_cut_in": 1100})
    );
    e.load_dataset(&json!({
        "Project": [{"id": 2, "name": "Old", "archived": true}],
        "Shot": [{"id": 7, "code": "echo", "sg_cut_in": 7000, "project": link("Project", 2)}]
    }))
    .expect("more records load");
    assert_eq!(
        totals(&e, "Shot", &[("id", "count"), ("sg_cut_in", "maximum")]),
        json!({"id": 6, "sg_cut_in": 7000})
    );
    let mut req = request(
        "Shot",
        &[("id", "count"), ("sg_cut_in", "maximum")],
        &[],
        json!([]),
    );
    req["include_archived_projects"] = json!(false);
    assert_eq!(
        run(&e, req)["summaries"],
        json!({"id": 5, "sg_cut_in": 1100})
    );
    let mut req = request(
        "Shot",
        &[("id", "count")],
        &[],
        json!([{"path": "project", "relation": "is", "values": [link("Project", 2)]}]),
    );
    req["include_archived_projects"] = json!(false);
    assert_eq!(run(&e, req)["summaries"], json!({"id": 0}));
}

/// Unknown types and fields give read's faults; summaries and groupings that
/// do not apply to the field's data type, paths through multi-entity fields
/// and clustered_date give fault 103. None of them panic.
fn faults(backend: Backend) {
    let e = engine(backend);
    let check = |req: Value, needle: &str| {
        let f = fault(&e, req.clone());
        assert_eq!(f.code, ErrorCode::BadRequest, "{req}");
        assert!(f.message.contains(needle), "{req}: {}", f.message);
    };
    check(
        request("NoSuchType", &[("id", "count")], &[], json!([])),
        "entity type NoSuchType doesn't exist",
    );
    check(
        request("Shot", &[("foo", "count")], &[], json!([])),
        "API summarize() Shot.foo doesn't exist",
    );
    check(
        request("Shot", &[("foo", "record_count")], &[], json!([])),
        "API summarize() Shot.foo doesn't exist",
    );
    check(
        request(
            "Shot",
            &[("id", "count")],
            &[("foo", "exact", "asc")],
            json!([]),
        ),
        "API summarize() Shot.foo doesn't exist",
    );
    check(
        request(
            "Shot",
            &[("sg_sequence.Sequence.foo", "count")],
            &[],
            json!([]),
        ),
        "API summarize() Sequence.foo doesn't exist",
    );
    check(
        request(
            "Shot",
            &[("id", "count")],
            &[],
            json!([{"path": "foo", "relation": "is", "values": [1]}]),
        ),
        "Shot.foo doesn't exist",
    );
    for (field, summary) in [
        ("code", "sum"),
        ("code", "average"),
        ("sg_due", "sum"),
        ("code", "maximum"),
        ("sg_cut_in", "earliest"),
        ("code", "checked"),
        ("sg_cut_in", "unchecked"),
        ("sg_shot_type", "status_percentage"),
        ("code", "status_list"),
        ("sg_sequence", "sum"),
        ("users", "maximum"),
    ] {
        check(
            request("Shot", &[(field, summary)], &[], json!([])),
            &format!("can't be summarized with '{summary}'"),
        );
    }
    for (field, grouping) in [
        ("sg_cut_in", "day"),
        ("code", "month"),
        ("code", "tens"),
        ("sg_due", "hundreds"),
        ("sg_cut_in", "firstletter"),
        ("code", "entitytype"),
        ("users", "exact"),
        ("sg_link", "exact"),
        ("sg_hero", "firstletter"),
    ] {
        check(
            request(
                "Shot",
                &[("id", "count")],
                &[(field, grouping, "asc")],
                json!([]),
            ),
            &format!("can't be grouped by '{grouping}'"),
        );
    }
    check(
        request(
            "Shot",
            &[("id", "count")],
            &[("sg_due", "clustered_date", "asc")],
            json!([]),
        ),
        "'clustered_date' is not supported",
    );
    check(
        request("Shot", &[("users.HumanUser.name", "count")], &[], json!([])),
        "multi-entity",
    );
    check(
        request(
            "Shot",
            &[("id", "count")],
            &[("users.HumanUser.name", "exact", "asc")],
            json!([]),
        ),
        "multi-entity",
    );
    check(
        request("Shot", &[("code.Sequence.code", "count")], &[], json!([])),
        "not a link field",
    );
}

/// Text groups are case-insensitive: "IP" and "ip" are one group.
fn text_groups_ignore_case(backend: Backend) {
    let e = engine(backend);
    e.load_dataset(&json!({"Shot": [{"id": 8, "code": "x", "sg_status_list": "IP", "project": link("Project", 1)}]}))
        .expect("one more shot loads");
    let got = counts_by_all(&e);
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[1].1, json!(3));
    assert_eq!(
        got[1].0.as_str().map(str::to_lowercase),
        Some("ip".to_string())
    );
}

fn counts_by_all(e: &TestEngine) -> Vec<(Value, Value)> {
    let got = run(
        e,
        request(
            "Shot",
            &[("id", "count")],
            &[("sg_status_list", "exact", "asc")],
            json!([]),
        ),
    );
    got["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| (g["group_value"].clone(), g["summaries"]["id"].clone()))
        .collect()
}

/// Speed: count grouped by status over 1,000,000 Shots. Run with
/// `cargo test --release -p sg-engine --test summarize -- --ignored --nocapture`
/// (`sqlite::` or `postgres::` after `--` picks one store).
fn a_million_rows_grouped_by_status(backend: Backend) {
    let e = Engine::new(store(backend), schema()).expect("the engine starts");
    e.store()
        .with_transaction(&mut |conn| {
            conn.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000) \
                 INSERT INTO \"Shot\" (\"id\", \"code\", \"sg_cut_in\", \"sg_status_list\", \"sg_hero\") \
                 SELECT i, 'shot_' || i, i % 1000, CASE i % 4 WHEN 0 THEN 'ip' WHEN 1 THEN 'fin' \
                 WHEN 2 THEN 'wtg' ELSE NULL END, i % 2 FROM n",
                &[],
            )
        })
        .expect("a million shots load");
    let req = request(
        "Shot",
        &[("id", "count")],
        &[("sg_status_list", "exact", "asc")],
        json!([]),
    );
    let params =
        SummarizeParams::from_json(req.as_object().expect("a dictionary")).expect("parses");
    let count_by_status = params.clone();
    let _ = e.summarize(&params).expect("warm-up");
    let start = std::time::Instant::now();
    let got = e.summarize(&params).expect("summarize answers");
    let took = start.elapsed();
    println!("count by status over 1,000,000 rows: {took:?}");
    assert_eq!(got["summaries"]["id"], json!(1_000_000));
    assert_eq!(got["groups"][0]["summaries"]["id"], json!(250_000));
    let req = request(
        "Shot",
        &[
            ("id", "count"),
            ("sg_cut_in", "sum"),
            ("sg_hero", "checked"),
        ],
        &[
            ("sg_status_list", "exact", "asc"),
            ("sg_cut_in", "hundreds", "asc"),
        ],
        json!([]),
    );
    let params =
        SummarizeParams::from_json(req.as_object().expect("a dictionary")).expect("parses");
    let start = std::time::Instant::now();
    let got = e.summarize(&params).expect("summarize answers");
    println!(
        "three summaries, two levels over 1,000,000 rows: {:?}",
        start.elapsed()
    );
    assert_eq!(
        got["groups"][0]["groups"].as_array().map(Vec::len),
        Some(10)
    );
    // With an index that covers the status and the retired flag (ddl.rs does
    // not create one today), the count by status needs no table lookups.
    e.store()
        .with_transaction(&mut |conn| {
            conn.execute_batch(
                "CREATE INDEX \"Shot__status_live\" ON \"Shot\" (\"sg_status_list\", \"__retired\")",
            )
        })
        .expect("the index is created");
    let params = count_by_status;
    let _ = e.summarize(&params).expect("warm-up");
    let start = std::time::Instant::now();
    let _ = e.summarize(&params).expect("summarize answers");
    println!(
        "count by status with a covering index: {:?}",
        start.elapsed()
    );
}

/// count_distinct counts distinct non-null values (a link to a retired record
/// is none), in total and per group
/// (distinct counts of groups do not add up, so each level counts its own).
fn count_distinct(backend: Backend) {
    let e = engine(backend);
    assert_eq!(
        totals(
            &e,
            "Shot",
            &[
                ("sg_status_list", "count_distinct"),
                ("sg_cut_in", "count_distinct")
            ]
        ),
        json!({"sg_status_list": 3, "sg_cut_in": 4})
    );
    // SQ010 and sq020: Shot 4's link to the retired SQ030 counts as none.
    assert_eq!(
        totals(&e, "Shot", &[("sg_sequence", "count_distinct")]),
        json!({"sg_sequence": 2})
    );
    let got = run(
        &e,
        request(
            "Shot",
            &[("sg_cut_in", "count_distinct")],
            &[("sg_status_list", "exact", "asc")],
            json!([]),
        ),
    );
    let per_status: Vec<(Value, Value)> = got["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            (
                g["group_value"].clone(),
                g["summaries"]["sg_cut_in"].clone(),
            )
        })
        .collect();
    assert_eq!(
        per_status,
        pairs(&[
            (json!("fin"), 1),
            (json!("ip"), 2),
            (json!("wtg"), 1),
            (Value::Null, 0)
        ])
    );
    assert_eq!(
        fault(
            &e,
            request("Shot", &[("users", "count_distinct")], &[], json!([]))
        )
        .code,
        ErrorCode::BadRequest
    );
}

/// Both stores give the same answer to every summary of every field, every
/// grouping of every field in both directions, and nested groupings with
/// filters; faults included.
#[test]
fn both_stores_answer_alike() {
    let stores = [engine(Backend::Sqlite), engine(Backend::Postgres)];
    let answer = |e: &TestEngine, request: &Value| -> Value {
        let params = SummarizeParams::from_json(request.as_object().expect("a dictionary"))
            .expect("the request parses");
        match e.summarize(&params) {
            Ok(result) => result,
            Err(err) => json!({"fault": err.to_fault().message}),
        }
    };
    let (mut compared, mut faults) = (0, 0);
    let mut compare = |request: Value| {
        let [a, b] = [&stores[0], &stores[1]].map(|e| answer(e, &request));
        assert_eq!(a, b, "SQLite, then PostgreSQL, for {request}");
        compared += 1;
        if a.get("fault").is_some() {
            faults += 1;
        }
    };
    let summary_types = [
        "record_count",
        "count",
        "sum",
        "maximum",
        "minimum",
        "average",
        "earliest",
        "latest",
        "percentage",
        "status_percentage",
        "status_list",
        "checked",
        "unchecked",
        "count_distinct",
    ];
    let grouping_types = [
        "exact",
        "tens",
        "hundreds",
        "thousands",
        "tensofthousands",
        "hundredsofthousands",
        "millions",
        "day",
        "week",
        "month",
        "quarter",
        "year",
        "oneday",
        "fivedays",
        "entitytype",
        "firstletter",
    ];
    let schema = schema();
    for (entity_type, deep, measures) in [
        (
            "Shot",
            vec![
                "sg_sequence.Sequence.code",
                "sg_sequence.Sequence.project",
                "project.Project.archived",
            ],
            vec![
                ("id", "count"),
                ("sg_cut_in", "sum"),
                ("sg_rate", "average"),
                ("sg_rate", "sum"),
                ("created_at", "latest"),
                ("sg_due", "earliest"),
                ("sg_hero", "checked"),
                ("sg_status_list", "status_list"),
                ("code", "count_distinct"),
                ("users", "count"),
            ],
        ),
        (
            "Task",
            vec![
                "entity.Shot.code",
                "entity.Shot.sg_cut_in",
                "entity.Shot.sg_due",
            ],
            vec![
                ("id", "count"),
                ("est_in_mins", "sum"),
                ("est_in_mins", "maximum"),
                ("sg_status_list", "status_percentage"),
                ("sg_status_list", "status_list"),
                ("entity", "count_distinct"),
                ("task_assignees", "percentage"),
            ],
        ),
    ] {
        let mut fields: Vec<String> = schema
            .entity(entity_type)
            .expect("the type is in the schema")
            .fields
            .keys()
            .cloned()
            .collect();
        fields.extend(deep.iter().map(|d| d.to_string()));
        for field in &fields {
            for summary in summary_types {
                compare(request(entity_type, &[(field, summary)], &[], json!([])));
            }
            for grouping in grouping_types {
                for direction in ["asc", "desc"] {
                    compare(request(
                        entity_type,
                        &measures,
                        &[(field, grouping, direction)],
                        json!([]),
                    ));
                }
            }
        }
        // Two and three levels, filtered.
        let levels: Vec<(&str, &str, &str)> = fields
            .iter()
            .map(|f| (f.as_str(), "exact", "asc"))
            .collect();
        for pair in levels.windows(3) {
            compare(request(entity_type, &measures, &pair[..2], json!([])));
            compare(request(
                entity_type,
                &measures,
                pair,
                json!([{"path": "sg_status_list", "relation": "in", "values": ["ip", "FIN"]}]),
            ));
        }
    }
    assert!(
        compared > 1000 && compared - faults > 300,
        "{compared} requests compared, {faults} of them faults"
    );
}

engine_tests!(
    counts,
    sums_and_averages,
    extremes,
    checkbox_and_status_summaries,
    empty_results,
    deep_summaries,
    exact_on_status_with_null_group_and_directions,
    exact_on_entity,
    exact_on_scalars,
    firstletter,
    date_groupings_on_dates,
    date_groupings_on_date_times,
    number_buckets,
    entitytype,
    nested_grouping,
    deep_grouping,
    filters_with_grouping,
    retired_and_archived_records,
    faults,
    text_groups_ignore_case,
    #[ignore]
    a_million_rows_grouped_by_status,
    count_distinct,
);
