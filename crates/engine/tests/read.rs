//! Integration tests of `read`: every relation on every data type, null
//! handling, deep paths, link names, sorting, paging and faults.

#[macro_use]
mod common;

use common::{cond, engine, entities, ids, obj, params, Backend, TestEngine};
use serde_json::{json, Value};
use sg_protocol::value::format_date_time;
use sg_protocol::{DataType, Relation};

/// The production every semantic test reads.
fn production(backend: Backend) -> TestEngine {
    // A minute ago, so that "the next week" from the query's own clock excludes it.
    production_at(backend, chrono::Utc::now().timestamp() - 60)
}

/// The production, with Shot 2 created at `created` (seconds since the epoch).
fn production_at(backend: Backend, created: i64) -> TestEngine {
    let e = engine(backend);
    let now = format_date_time(created);
    let dataset = json!({
        "Project": [{"id": 1, "name": "Alpha"}, {"id": 2, "name": "Beta", "archived": true}],
        "Sequence": [
            {"id": 1, "code": "SEQ_A", "project": {"type": "Project", "id": 1}},
            {"id": 2, "code": "seq_b", "project": {"type": "Project", "id": 1}},
            {"id": 3, "code": "100%_done", "project": {"type": "Project", "id": 2}}],
        "Asset": [
            {"id": 1, "code": "hero", "sg_asset_type": "Character"},
            {"id": 2, "code": "Villain", "sg_asset_type": "Prop"},
            {"id": 3, "code": "tree", "sg_asset_type": "Prop", "__retired": true}],
        "HumanUser": [{"id": 1, "name": "Ann", "login": "ann"}, {"id": 2, "name": "Bob", "login": "bob"}],
        "Shot": [
            {"id": 1, "code": "sh010", "description": "Opening shot", "sg_cut_in": 10, "sg_rate": 1.5,
             "sg_hero": true, "sg_due": "2024-01-05", "created_at": "2024-01-05T10:00:00Z",
             "sg_status_list": "ip", "sg_sequence": {"type": "Sequence", "id": 1},
             "project": {"type": "Project", "id": 1},
             "assets": [{"type": "Asset", "id": 1}, {"type": "Asset", "id": 2}],
             "users": [{"type": "HumanUser", "id": 1}], "tags": ["hero", "fx"]},
            {"id": 2, "code": "SH020", "sg_cut_in": 20, "sg_rate": 2.5, "sg_hero": false,
             "sg_due": "2024-02-01", "created_at": now, "sg_status_list": "wtg",
             "sg_sequence": {"type": "Sequence", "id": 2}, "project": {"type": "Project", "id": 1},
             "assets": [{"type": "Asset", "id": 3}],
             "users": [{"type": "HumanUser", "id": 1}, {"type": "HumanUser", "id": 2}],
             "tags": ["FX"]},
            {"id": 3, "code": "sh030", "description": "it's a \"test\" 100%", "sg_status_list": "fin",
             "project": {"type": "Project", "id": 2}},
            {"id": 4, "code": "sh040", "project": {"type": "Project", "id": 1}, "__retired": true},
            {"id": 5, "code": "Ünïcode", "sg_cut_in": 5, "sg_status_list": "ip",
             "sg_sequence": {"type": "Sequence", "id": 3}, "project": {"type": "Project", "id": 1},
             "tags": ["ünïque", "Hero"]}]
    });
    e.load_dataset(&dataset).expect("dataset loads");
    e
}

fn one(path: &str, relation: &str, values: Value) -> Value {
    json!([cond(path, relation, values)])
}

/// Text relations match case-insensitively, treat null as the site does and
/// take `%`, `_` and quotes as plain characters.
fn text_relations(backend: Backend) {
    let e = production(backend);
    assert_eq!(
        ids(&e, "Shot", one("code", "is", json!(["SH010"]))),
        vec![1]
    );
    assert_eq!(
        ids(&e, "Shot", one("description", "is", json!([null]))),
        vec![2, 5]
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("description", "is_not", json!(["opening SHOT"]))
        ),
        vec![2, 3, 5]
    );
    assert_eq!(
        ids(&e, "Shot", one("description", "contains", json!(["100%"]))),
        vec![3]
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("description", "contains", json!(["'s a \"t"]))
        ),
        vec![3]
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("description", "not_contains", json!(["shot"]))
        ),
        vec![2, 3, 5]
    );
    assert_eq!(
        ids(&e, "Shot", one("code", "starts_with", json!(["SH0"]))),
        vec![1, 2, 3]
    );
    assert_eq!(
        ids(&e, "Shot", one("code", "ends_with", json!(["20"]))),
        vec![2]
    );
    assert_eq!(
        ids(&e, "Shot", one("code", "in", json!(["sh010", "SH030"]))),
        vec![1, 3]
    );
    assert_eq!(
        ids(&e, "Shot", one("code", "not_in", json!(["sh010", "SH030"]))),
        vec![2, 5]
    );
    assert_eq!(
        ids(&e, "Shot", one("code", "in", json!([["sh010", "sh020"]]))),
        vec![1, 2]
    );
    assert_eq!(
        ids(&e, "Shot", one("code", "is", json!(["ünïcode"]))),
        vec![5],
        "non-ASCII letters fold too"
    );
    assert_eq!(
        ids(&e, "Shot", one("code", "is", json!(["Ünïcode"]))),
        vec![5]
    );
    assert_eq!(
        ids(&e, "Shot", one("code", "starts_with", json!(["_"]))),
        Vec::<i64>::new()
    );
    assert_eq!(
        ids(&e, "Sequence", one("code", "starts_with", json!(["100%_"]))),
        vec![3]
    );
}

/// Values written to look like SQL are only ever compared as values.
fn sql_shaped_values_are_plain_values(backend: Backend) {
    let e = production(backend);
    for v in ["' OR 1=1 --", "\"; DROP TABLE \"Shot\"; --", "%", "_"] {
        assert_eq!(
            ids(&e, "Shot", one("code", "is", json!([v]))),
            Vec::<i64>::new(),
            "{v}"
        );
    }
    assert_eq!(
        ids(&e, "Shot", json!([])),
        vec![1, 2, 3, 5],
        "the table is intact"
    );
}

/// Numbers: comparisons, ranges (inclusive), in, and null.
fn number_relations(backend: Backend) {
    let e = production(backend);
    assert_eq!(
        ids(&e, "Shot", one("sg_cut_in", "is", json!([10]))),
        vec![1]
    );
    assert_eq!(
        ids(&e, "Shot", one("sg_cut_in", "less_than", json!([15]))),
        vec![1, 5]
    );
    assert_eq!(
        ids(&e, "Shot", one("sg_cut_in", "greater_than", json!([10]))),
        vec![2]
    );
    assert_eq!(
        ids(&e, "Shot", one("sg_cut_in", "between", json!([5, 10]))),
        vec![1, 5]
    );
    assert_eq!(
        ids(&e, "Shot", one("sg_cut_in", "not_between", json!([5, 10]))),
        vec![2, 3]
    );
    assert_eq!(
        ids(&e, "Shot", one("sg_cut_in", "in", json!([5, 20]))),
        vec![2, 5]
    );
    assert_eq!(
        ids(&e, "Shot", one("sg_cut_in", "not_in", json!([5, 20]))),
        vec![1, 3]
    );
    assert_eq!(
        ids(&e, "Shot", one("sg_cut_in", "is", json!([null]))),
        vec![3]
    );
    assert_eq!(
        ids(&e, "Shot", one("sg_cut_in", "is_not", json!([null]))),
        vec![1, 2, 5]
    );
    assert_eq!(
        ids(&e, "Shot", one("sg_cut_in", "in", json!([10, null]))),
        vec![1, 3]
    );
    assert_eq!(
        ids(&e, "Shot", one("id", "in", json!([1, 3, 4]))),
        vec![1, 3]
    );
    assert_eq!(
        ids(&e, "Shot", one("sg_rate", "greater_than", json!([2]))),
        vec![2]
    );
    assert_eq!(
        ids(&e, "Shot", one("sg_rate", "between", json!([1.0, 2.0]))),
        vec![1]
    );
}

/// A checkbox is never null: unset reads and matches as false.
fn checkbox_relations(backend: Backend) {
    let e = production(backend);
    assert_eq!(
        ids(&e, "Shot", one("sg_hero", "is", json!([true]))),
        vec![1]
    );
    assert_eq!(
        ids(&e, "Shot", one("sg_hero", "is", json!([false]))),
        vec![2, 3, 5]
    );
    assert_eq!(
        ids(&e, "Shot", one("sg_hero", "is_not", json!([true]))),
        vec![2, 3, 5]
    );
    let shot = &entities(
        &e,
        json!({"type": "Shot", "return_fields": ["sg_hero"], "filters": {"logical_operator": "and", "conditions": [cond("id", "is", json!([3]))]}}),
    )[0];
    assert_eq!(shot["sg_hero"], json!(false));
}

/// Dates and date-times: absolute comparisons and the relative relations.
fn date_relations(backend: Backend) {
    let e = production(backend);
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("sg_due", "greater_than", json!(["2024-01-10"]))
        ),
        vec![2]
    );
    assert_eq!(
        ids(&e, "Shot", one("sg_due", "is", json!(["2024-01-05"]))),
        vec![1]
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("sg_due", "between", json!(["2024-01-01", "2024-01-31"]))
        ),
        vec![1]
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("sg_due", "in", json!(["2024-01-05", "2024-02-01"]))
        ),
        vec![1, 2]
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("created_at", "less_than", json!(["2024-06-01T00:00:00Z"]))
        ),
        vec![1]
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("created_at", "is", json!(["2024-01-05T10:00:00Z"]))
        ),
        vec![1]
    );
    assert_eq!(
        ids(&e, "Shot", one("created_at", "in_last", json!([1, "DAY"]))),
        vec![2]
    );
    assert_eq!(
        ids(&e, "Shot", one("created_at", "in_last", json!([5, "YEAR"]))),
        vec![1, 2]
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("created_at", "not_in_last", json!([1, "HOUR"]))
        ),
        vec![1, 3, 5]
    );
    assert_eq!(
        ids(&e, "Shot", one("created_at", "in_next", json!([1, "WEEK"]))),
        Vec::<i64>::new()
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("created_at", "not_in_next", json!([1, "MONTH"]))
        ),
        vec![1, 2, 3, 5]
    );
    let now = chrono::Utc::now();
    if (now - chrono::Duration::seconds(120)).date_naive() == now.date_naive() {
        // Shot 2 was created a minute ago, so (but just after midnight) it is in today's periods.
        assert_eq!(
            ids(&e, "Shot", one("created_at", "in_calendar_day", json!([0]))),
            vec![2]
        );
        assert_eq!(
            ids(
                &e,
                "Shot",
                one("created_at", "in_calendar_day", json!([-1]))
            ),
            Vec::<i64>::new()
        );
        assert_eq!(
            ids(
                &e,
                "Shot",
                one("created_at", "in_calendar_week", json!([0]))
            ),
            vec![2]
        );
        assert_eq!(
            ids(
                &e,
                "Shot",
                one("created_at", "in_calendar_month", json!([0]))
            ),
            vec![2]
        );
        assert_eq!(
            ids(
                &e,
                "Shot",
                one("created_at", "in_calendar_year", json!([0]))
            ),
            vec![2]
        );
    }
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("created_at", "in_calendar_year", json!([-100]))
        ),
        Vec::<i64>::new()
    );
    assert_eq!(
        ids(&e, "Shot", one("sg_due", "in_last", json!([100, "YEAR"]))),
        vec![1, 2]
    );
    assert_eq!(
        ids(&e, "Shot", one("sg_due", "in_calendar_month", json!([0]))),
        Vec::<i64>::new()
    );
}

/// Status and list fields match case-insensitively, as text does on the site.
fn list_relations(backend: Backend) {
    let e = production(backend);
    assert_eq!(
        ids(&e, "Shot", one("sg_status_list", "is", json!(["IP"]))),
        vec![1, 5]
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("sg_status_list", "in", json!(["ip", "fin"]))
        ),
        vec![1, 3, 5]
    );
    assert_eq!(
        ids(&e, "Shot", one("sg_status_list", "not_in", json!(["ip"]))),
        vec![2, 3]
    );
    assert_eq!(
        ids(&e, "Shot", one("sg_status_list", "is_not", json!(["wtg"]))),
        vec![1, 3, 5]
    );
    assert_eq!(
        ids(&e, "Asset", one("sg_asset_type", "is", json!(["prop"]))),
        vec![2]
    );
}

/// Entity links: by link, null, type and the linked record's name.
fn entity_relations(backend: Backend) {
    let e = production(backend);
    let seq = |id: i64| json!({"type": "Sequence", "id": id, "name": "ignored"});
    assert_eq!(
        ids(&e, "Shot", one("sg_sequence", "is", json!([seq(1)]))),
        vec![1]
    );
    assert_eq!(
        ids(&e, "Shot", one("sg_sequence", "is", json!([null]))),
        vec![3]
    );
    assert_eq!(
        ids(&e, "Shot", one("sg_sequence", "is_not", json!([seq(1)]))),
        vec![2, 3, 5]
    );
    assert_eq!(
        ids(&e, "Shot", one("sg_sequence", "is_not", json!([null]))),
        vec![1, 2, 5]
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("sg_sequence", "in", json!([seq(1), seq(2)]))
        ),
        vec![1, 2]
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("sg_sequence", "not_in", json!([seq(1), seq(2)]))
        ),
        vec![3, 5]
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("sg_sequence", "is", json!([{"type": "Asset", "id": 1}]))
        ),
        Vec::<i64>::new()
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("sg_sequence", "type_is", json!(["Sequence"]))
        ),
        vec![1, 2, 5]
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("sg_sequence", "type_is_not", json!(["Sequence"]))
        ),
        vec![3]
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("sg_sequence", "name_contains", json!(["SEQ"]))
        ),
        vec![1, 2]
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("sg_sequence", "name_not_contains", json!(["seq"]))
        ),
        vec![3, 5]
    );
    assert_eq!(
        ids(&e, "Shot", one("sg_sequence", "name_is", json!(["seq_a"]))),
        vec![1]
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("sg_sequence", "name_starts_with", json!(["100%"]))
        ),
        vec![5]
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("sg_sequence", "name_ends_with", json!(["_B"]))
        ),
        vec![2]
    );
}

/// Lists of links: `is` means "contains", `is None` means empty.
fn multi_entity_relations(backend: Backend) {
    let e = production(backend);
    let asset = |id: i64| json!({"type": "Asset", "id": id});
    let user = |id: i64| json!({"type": "HumanUser", "id": id});
    assert_eq!(
        ids(&e, "Shot", one("assets", "is", json!([asset(1)]))),
        vec![1]
    );
    assert_eq!(
        ids(&e, "Shot", one("assets", "is_not", json!([asset(1)]))),
        vec![2, 3, 5]
    );
    assert_eq!(
        ids(&e, "Shot", one("users", "is", json!([null]))),
        vec![3, 5]
    );
    assert_eq!(
        ids(&e, "Shot", one("users", "is_not", json!([null]))),
        vec![1, 2]
    );
    assert_eq!(
        ids(&e, "Shot", one("users", "in", json!([user(2), user(9)]))),
        vec![2]
    );
    assert_eq!(
        ids(&e, "Shot", one("users", "not_in", json!([user(2)]))),
        vec![1, 3, 5]
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("users", "is", json!([{"type": "Asset", "id": 1}]))
        ),
        Vec::<i64>::new(),
        "type and id both count"
    );
    // Shot 2's only asset is retired, so its list shows no link at all.
    assert_eq!(
        ids(&e, "Shot", one("assets", "type_is", json!(["Asset"]))),
        vec![1]
    );
    assert_eq!(
        ids(&e, "Shot", one("assets", "type_is_not", json!(["Asset"]))),
        vec![2, 3, 5]
    );
    assert_eq!(
        ids(&e, "Shot", one("assets", "name_contains", json!(["VIL"]))),
        vec![1]
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("assets", "name_not_contains", json!(["vil"]))
        ),
        vec![2, 3, 5]
    );
    assert_eq!(
        ids(&e, "Shot", one("cc", "is", json!([null]))),
        vec![1, 2, 3, 5]
    );
}

/// Deep paths through entity links take the linked record's value (null when
/// the link is null); through lists they match when any linked record does.
fn deep_paths_in_filters(backend: Backend) {
    let e = production(backend);
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("sg_sequence.Sequence.code", "starts_with", json!(["seq"]))
        ),
        vec![1, 2]
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("sg_sequence.Sequence.code", "is_not", json!(["seq_a"]))
        ),
        vec![2, 3, 5]
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("sg_sequence.Sequence.code", "is", json!([null]))
        ),
        vec![3]
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one(
                "sg_sequence.Sequence.project.Project.name",
                "is",
                json!(["alpha"])
            )
        ),
        vec![1, 2]
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one(
                "sg_sequence.Sequence.project.Project.name",
                "is_not",
                json!(["alpha"])
            )
        ),
        vec![3, 5]
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("project.Project.archived", "is", json!([true]))
        ),
        vec![3]
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("users.HumanUser.login", "is", json!(["bob"]))
        ),
        vec![2]
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("users.HumanUser.login", "is", json!(["ann"]))
        ),
        vec![1, 2]
    );
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("assets.Asset.sg_asset_type", "is", json!(["Prop"]))
        ),
        vec![1],
        "retired linked records do not match"
    );
    // A deep path through a link of another type simply does not match.
    assert_eq!(
        ids(
            &e,
            "Shot",
            one("sg_sequence.Asset.code", "is", json!(["hero"]))
        ),
        Vec::<i64>::new()
    );
}

/// Nested and/or groups at any depth.
fn nested_groups(backend: Backend) {
    let e = production(backend);
    let filters = json!([{"logical_operator": "or", "conditions": [
        cond("code", "is", json!(["sh010"])),
        {"logical_operator": "and", "conditions": [
            cond("sg_cut_in", "greater_than", json!([10])),
            cond("sg_status_list", "is", json!(["wtg"]))]}]}]);
    assert_eq!(ids(&e, "Shot", filters), vec![1, 2]);
    let empty_or = json!([{"logical_operator": "or", "conditions": []}]);
    assert_eq!(ids(&e, "Shot", empty_or), vec![1, 2, 3, 5]);
}

/// Links carry the linked record's current name; links to retired records are hidden.
fn links_carry_names_resolved_when_read(backend: Backend) {
    let e = production(backend);
    let read = |e: &TestEngine| {
        entities(
            e,
            json!({"type": "Shot", "return_fields":
        ["code", "sg_sequence", "assets", "project", "sg_sequence.Sequence.code", "users.HumanUser.login", "sg_sequence.Sequence.project"],
        "filters": {"logical_operator": "and", "conditions": [cond("id", "in", json!([1, 2]))]}}),
        )
    };
    let shots = read(&e);
    assert_eq!(
        shots[0]["sg_sequence"],
        json!({"type": "Sequence", "id": 1, "name": "SEQ_A"})
    );
    assert_eq!(
        shots[0]["project"],
        json!({"type": "Project", "id": 1, "name": "Alpha"})
    );
    assert_eq!(
        shots[0]["assets"],
        json!([{"type": "Asset", "id": 1, "name": "hero"}, {"type": "Asset", "id": 2, "name": "Villain"}])
    );
    assert_eq!(shots[0]["sg_sequence.Sequence.code"], json!("SEQ_A"));
    assert_eq!(
        shots[0]["sg_sequence.Sequence.project"],
        json!({"type": "Project", "id": 1, "name": "Alpha"})
    );
    assert_eq!(shots[1]["users.HumanUser.login"], json!(["ann", "bob"]));
    assert_eq!(shots[1]["assets"], json!([]), "the retired asset is hidden");

    e.upsert_records("Sequence", &[obj(json!({"id": 1, "code": "SEQ_RENAMED"}))])
        .unwrap();
    e.upsert_records("Sequence", &[obj(json!({"id": 2, "__retired": true}))])
        .unwrap();
    e.upsert_records("Asset", &[obj(json!({"id": 2, "__retired": true}))])
        .unwrap();
    let shots = read(&e);
    assert_eq!(shots[0]["sg_sequence"]["name"], json!("SEQ_RENAMED"));
    assert_eq!(
        shots[0]["assets"],
        json!([{"type": "Asset", "id": 1, "name": "hero"}])
    );
    assert_eq!(
        shots[1]["sg_sequence"],
        Value::Null,
        "a link to a retired record reads as null"
    );
    assert_eq!(shots[1]["sg_sequence.Sequence.code"], Value::Null);
}

/// Every data type renders in its wire shape.
fn values_render_in_wire_shapes(backend: Backend) {
    let e = production(backend);
    e.upsert_records(
        "Shot",
        &[obj(
            json!({"id": 9, "code": "shapes", "sg_rate": 2.0, "sg_budget": 10.5,
        "sg_done": 50, "sg_length": 600, "src_in": 1000, "sg_kind": "Shot", "sg_color": "255,0,0",
        "sg_uuid": "5d7f6b9e-0000-4000-8000-000000000000", "image": "http://x/t.png",
        "sg_link": {"url": "http://x", "name": "x", "link_type": "web"}, "sg_data": {"a": [1]},
        "created_at": "2024-01-02T03:04:05+00:00", "sg_due": "2024-01-02"}),
        )],
    )
    .unwrap();
    let fields = [
        "sg_rate",
        "sg_budget",
        "sg_done",
        "sg_length",
        "src_in",
        "sg_kind",
        "sg_color",
        "sg_uuid",
        "image",
        "sg_link",
        "sg_data",
        "created_at",
        "sg_due",
        "sg_hero",
        "description",
        "assets",
        "sg_sequence",
    ];
    let shot = &entities(
        &e,
        json!({"type": "Shot", "return_fields": fields,
        "filters": {"logical_operator": "and", "conditions": [cond("id", "is", json!([9]))]}}),
    )[0];
    assert_eq!(shot["sg_rate"], json!(2.0));
    assert_eq!(shot["sg_budget"], json!(10.5));
    assert_eq!(shot["sg_done"], json!(50));
    assert_eq!(shot["sg_length"], json!(600));
    assert_eq!(shot["src_in"], json!(1000));
    assert_eq!(shot["sg_kind"], json!("Shot"));
    assert_eq!(shot["sg_color"], json!("255,0,0"));
    assert_eq!(shot["image"], json!("http://x/t.png"));
    assert_eq!(
        shot["sg_link"],
        json!({"url": "http://x", "name": "x", "link_type": "web"})
    );
    assert_eq!(shot["sg_data"], json!({"a": [1]}));
    assert_eq!(shot["created_at"], json!("2024-01-02T03:04:05Z"));
    assert_eq!(shot["sg_due"], json!("2024-01-02"));
    assert_eq!(shot["sg_hero"], json!(false));
    assert_eq!(shot["description"], Value::Null);
    assert_eq!(shot["assets"], json!([]));
    assert_eq!(shot["sg_sequence"], Value::Null);
    assert_eq!(shot["type"], json!("Shot"));
}

/// Sorts on several keys, links by name, nulls last going up; id breaks ties.
fn sorting(backend: Backend) {
    let e = production(backend);
    let sorted = |sorts: Value| -> Vec<i64> {
        entities(
            &e,
            json!({"type": "Shot", "return_fields": ["id"], "sorts": sorts}),
        )
        .iter()
        .map(|r| r["id"].as_i64().unwrap_or(-1))
        .collect()
    };
    assert_eq!(sorted(json!([])), vec![1, 2, 3, 5]);
    assert_eq!(
        sorted(json!([{"field_name": "id", "direction": "desc"}])),
        vec![5, 3, 2, 1]
    );
    assert_eq!(
        sorted(json!([{"field_name": "sg_cut_in", "direction": "asc"}])),
        vec![5, 1, 2, 3]
    );
    assert_eq!(
        sorted(json!([{"field_name": "sg_cut_in", "direction": "desc"}])),
        vec![3, 2, 1, 5]
    );
    assert_eq!(
        sorted(
            json!([{"field_name": "sg_status_list", "direction": "asc"}, {"field_name": "code", "direction": "desc"}])
        ),
        vec![3, 5, 1, 2]
    );
    assert_eq!(
        sorted(json!([{"field_name": "sg_sequence", "direction": "asc"}])),
        vec![5, 1, 2, 3]
    );
    assert_eq!(
        sorted(json!([{"field_name": "sg_sequence.Sequence.code", "direction": "desc"}])),
        vec![3, 2, 1, 5]
    );
    assert_eq!(
        sorted(json!([{"field_name": "code", "direction": "asc"}])),
        vec![1, 2, 3, 5],
        "case-insensitive"
    );
}

/// Paging: exact pages, `has_next_page`, and counts when asked.
fn paging(backend: Backend) {
    let e = production(backend);
    let page = |n: u64, legacy: bool| {
        e.read(&params(json!({"type": "Shot", "return_fields": ["id"], "paging": {"entities_per_page": 2, "current_page": n},
            "return_paging_info": legacy, "return_paging_info_without_counts": !legacy}))).unwrap()
    };
    let p1 = page(1, false);
    assert_eq!(p1["entities"].as_array().map(Vec::len), Some(2));
    assert_eq!(p1["paging_info"], json!({"has_next_page": true}));
    let p2 = page(2, false);
    assert_eq!(p2["entities"][0]["id"], json!(3));
    assert_eq!(p2["paging_info"]["has_next_page"], json!(false));
    assert_eq!(page(3, false)["entities"], json!([]));
    assert_eq!(page(1, true)["paging_info"]["entity_count"], json!(4));
}

/// Retired records are found only when asked for; archived projects can be left out.
fn retired_and_archived(backend: Backend) {
    let e = production(backend);
    let retired = entities(
        &e,
        json!({"type": "Shot", "return_only": "retired", "return_fields": ["code"]}),
    );
    assert_eq!(
        retired,
        vec![json!({"type": "Shot", "id": 4, "code": "sh040"})]
    );
    let active = entities(
        &e,
        json!({"type": "Shot", "include_archived_projects": false}),
    );
    let ids: Vec<i64> = active.iter().filter_map(|r| r["id"].as_i64()).collect();
    assert_eq!(ids, vec![1, 2, 5]);
}

fn fault_of(e: &TestEngine, v: Value) -> String {
    match e.read(&params(v.clone())) {
        Ok(r) => panic!("expected a fault for {v}, got {r}"),
        Err(err) => {
            let fault = err.to_fault();
            assert_eq!(fault.code.as_i64(), 103, "{v}");
            fault.message
        }
    }
}

/// Unknown names and bad values get fault 103 in the site's words.
fn bad_requests_are_faults(backend: Backend) {
    let e = production(backend);
    let f = |conditions: Value| json!({"type": "Shot", "filters": {"logical_operator": "and", "conditions": conditions}});
    assert_eq!(
        fault_of(&e, f(one("foo", "is", json!([1])))),
        "API read() Shot.foo doesn't exist"
    );
    assert_eq!(
        fault_of(&e, json!({"type": "Shot", "return_fields": ["foo"]})),
        "API read() Shot.foo doesn't exist"
    );
    assert_eq!(
        fault_of(&e, json!({"type": "Nope"})),
        "API read() entity type Nope doesn't exist"
    );
    fault_of(
        &e,
        json!({"type": "Shot", "sorts": [{"field_name": "nope", "direction": "asc"}]}),
    );
    fault_of(
        &e,
        json!({"type": "Shot", "sorts": [{"field_name": "assets", "direction": "asc"}]}),
    );
    fault_of(&e, f(one("sg_sequence.Nope.code", "is", json!(["x"]))));
    fault_of(&e, f(one("code.Sequence.code", "is", json!(["x"]))));
    fault_of(&e, f(one("sg_sequence.Sequence", "is", json!(["x"]))));
    fault_of(&e, f(one("code; DROP TABLE \"Shot\"", "is", json!(["x"]))));
    fault_of(&e, f(one("code", "is", json!(["a", "b"]))));
    fault_of(&e, f(one("code", "is", json!([]))));
    fault_of(&e, f(one("code", "is", json!([5]))));
    fault_of(&e, f(one("sg_cut_in", "is", json!(["5"]))));
    fault_of(&e, f(one("sg_cut_in", "between", json!([1]))));
    fault_of(&e, f(one("sg_cut_in", "less_than", json!([null]))));
    fault_of(&e, f(one("sg_due", "is", json!(["yesterday"]))));
    fault_of(&e, f(one("created_at", "in_last", json!([1, "FORTNIGHT"]))));
    fault_of(&e, f(one("created_at", "in_last", json!(["1", "DAY"]))));
    fault_of(
        &e,
        f(one("sg_sequence", "is", json!([{"type": "Sequence"}]))),
    );
    fault_of(&e, f(one("sg_hero", "is", json!(["yes"]))));
    fault_of(&e, f(one("sg_hero", "is", json!([null]))));
    fault_of(&e, f(one("image", "is", json!(["http://x"]))));
    assert_eq!(
        ids(&e, "Shot", json!([])),
        vec![1, 2, 3, 5],
        "the engine goes on answering"
    );
}

/// A sample value for a relation on a field of a data type.
fn sample(data_type: DataType, relation: Relation) -> Value {
    use Relation::*;
    let scalar = match data_type {
        DataType::Number | DataType::Duration | DataType::Timecode | DataType::Percent => json!(1),
        DataType::Float | DataType::Currency => json!(1.5),
        DataType::Checkbox => json!(true),
        DataType::Date => json!("2024-01-01"),
        DataType::DateTime => json!("2024-01-01T00:00:00Z"),
        DataType::Entity => json!({"type": "Sequence", "id": 1}),
        DataType::MultiEntity | DataType::Addressing => json!({"type": "Asset", "id": 1}),
        DataType::Image => Value::Null,
        _ => json!("x"),
    };
    match relation {
        In | NotIn => json!([scalar.clone(), scalar]),
        Between | NotBetween => json!([scalar.clone(), scalar]),
        InLast | NotInLast | InNext | NotInNext => json!([1, "DAY"]),
        InCalendarDay | InCalendarWeek | InCalendarMonth | InCalendarYear => json!([0]),
        TypeIs | TypeIsNot => json!(["Sequence"]),
        NameIs | NameContains | NameNotContains | NameStartsWith | NameEndsWith | Contains
        | NotContains | StartsWith | EndsWith => json!(["x"]),
        NameId => json!([1]),
        _ => json!([scalar]),
    }
}

/// Every relation the site supports on a data type compiles and runs; every
/// other pair gets fault 103 naming the field and the relation.
fn every_relation_on_every_data_type(backend: Backend) {
    let e = production(backend);
    let schema = common::schema();
    let shot = schema.entity("Shot").expect("Shot");
    let mut supported = 0;
    let mut refused = 0;
    for field in shot.fields.values() {
        for relation in Relation::all() {
            let values = sample(field.data_type, relation);
            let request = json!({"type": "Shot", "filters": {"logical_operator": "and",
                "conditions": [cond(&field.name, relation.name(), values.clone())]}});
            let result = e.read(&params(request));
            let expected = if field.name == "id" {
                DataType::Number
            } else {
                field.data_type
            };
            if expected.supports(relation) {
                if let Err(err) = result {
                    panic!(
                        "{} ({}) {} {values}: {err}",
                        field.name, field.data_type, relation
                    );
                }
                supported += 1;
            } else {
                let err = result.err().unwrap_or_else(|| {
                    panic!("{} {} should be refused", field.data_type, relation)
                });
                let fault = err.to_fault();
                assert_eq!(fault.code.as_i64(), 103);
                assert!(fault.message.contains(relation.name()), "{}", fault.message);
                refused += 1;
            }
        }
    }
    assert!(
        supported > 150 && refused > 300,
        "{supported} supported, {refused} refused"
    );
}

/// A deep field through a null link is null, even a checkbox (which reads as
/// false on a record that exists).
fn deep_fields_through_null_links_are_null(backend: Backend) {
    let e = production(backend);
    let shots = entities(
        &e,
        json!({"type": "Shot", "return_fields": ["project.Project.archived", "sg_sequence.Sequence.project.Project.archived"],
               "filters": {"logical_operator": "and", "conditions": [cond("id", "in", json!([1, 3]))]}}),
    );
    assert_eq!(
        shots[0]["sg_sequence.Sequence.project.Project.archived"],
        json!(false)
    );
    assert_eq!(
        shots[1]["sg_sequence.Sequence.project.Project.archived"],
        Value::Null
    );
    assert_eq!(shots[1]["project.Project.archived"], json!(true));
}

/// Filter values to try a relation with, for the agreement test: each
/// element is one condition's `values`.
fn value_lists(data_type: DataType, relation: Relation) -> Vec<Value> {
    use Relation::*;
    let scalars: Vec<Value> = match data_type {
        DataType::Number | DataType::Duration | DataType::Timecode | DataType::Percent => {
            vec![
                json!(0),
                json!(5),
                json!(10),
                json!(20),
                json!(-1),
                json!(1.5),
                json!(10.0),
            ]
        }
        DataType::Float | DataType::Currency => {
            vec![json!(0), json!(1.5), json!(2), json!(2.5), json!(-0.5)]
        }
        DataType::Checkbox => vec![json!(true), json!(false)],
        DataType::Date => vec![
            json!("2024-01-05"),
            json!("2024-02-01"),
            json!("2023-12-31"),
        ],
        DataType::DateTime => vec![
            json!("2024-01-05T10:00:00Z"),
            json!("2024-01-01T00:00:00Z"),
            json!("2030-01-01T00:00:00Z"),
        ],
        DataType::Entity => vec![
            json!({"type": "Sequence", "id": 1}),
            json!({"type": "Sequence", "id": 3}),
            json!({"type": "Project", "id": 2}),
            json!({"type": "Sequence", "id": 99}),
            Value::Null,
        ],
        DataType::TagList => vec![
            json!("hero"),
            json!("HERO"),
            json!("fx"),
            json!("ünï"),
            json!("ÜNÏ"),
            json!("nothing"),
            Value::Null,
        ],
        DataType::MultiEntity | DataType::Addressing => vec![
            json!({"type": "Asset", "id": 1}),
            json!({"type": "Asset", "id": 3}),
            json!({"type": "HumanUser", "id": 2}),
            Value::Null,
        ],
        DataType::Image | DataType::Url | DataType::Serializable => vec![Value::Null],
        _ => vec![
            json!("sh010"),
            json!("SH0"),
            json!("shot"),
            json!("ünïcode"),
            json!("ÜNÏ"),
            json!("100%"),
            json!("_"),
            json!(""),
            json!("ip"),
            json!("IP"),
            json!("Hero"),
            Value::Null,
        ],
    };
    let names = || {
        [
            "seq", "SEQ_A", "a", "ünï", "%", "Alpha", "ann", "HERO", "villain",
        ]
        .map(|n| json!([n]))
        .to_vec()
    };
    match relation {
        In | NotIn => {
            let mut lists: Vec<Value> = scalars
                .windows(2)
                .map(|w| json!([w[0].clone(), w[1].clone()]))
                .collect();
            lists.push(json!([scalars.clone()]));
            lists.push(json!([]));
            lists
        }
        Between | NotBetween => scalars
            .iter()
            .flat_map(|a| scalars.iter().map(move |b| json!([a.clone(), b.clone()])))
            .collect(),
        InLast | NotInLast | InNext | NotInNext => ["HOUR", "DAY", "WEEK", "MONTH", "YEAR"]
            .iter()
            .flat_map(|unit| [json!([1, unit]), json!([3, unit])])
            .collect(),
        InCalendarDay | InCalendarWeek | InCalendarMonth | InCalendarYear => {
            vec![json!([0]), json!([-1]), json!([1])]
        }
        TypeIs | TypeIsNot => vec![
            json!(["Sequence"]),
            json!(["Project"]),
            json!(["Asset"]),
            json!([null]),
        ],
        NameIs | NameContains | NameNotContains | NameStartsWith | NameEndsWith => names(),
        NameId => vec![json!([1]), json!([2])],
        Contains | NotContains | StartsWith | EndsWith
            if matches!(
                data_type,
                DataType::MultiEntity | DataType::Addressing | DataType::TagList
            ) =>
        {
            names()
        }
        _ => scalars.into_iter().map(|v| json!([v])).collect(),
    }
}

/// Both stores give the same answer, value for value and in the same order,
/// to every relation on every field with many values, to every sort, and to
/// the same faults.
#[test]
fn both_stores_answer_alike() {
    let created = chrono::Utc::now().timestamp() - 60;
    let stores = [
        production_at(Backend::Sqlite, created),
        production_at(Backend::Postgres, created),
    ];
    let schema = common::schema();
    let shot = schema.entity("Shot").expect("Shot");
    let mut fields: Vec<String> = shot.fields.keys().cloned().collect();
    fields.extend(
        [
            "sg_sequence.Sequence.code",
            "sg_sequence.Sequence.project",
            "project.Project.archived",
            "users.HumanUser.login",
            "assets.Asset.sg_asset_type",
        ]
        .map(String::from),
    );
    let answer = |e: &TestEngine, request: &Value| -> Value {
        match e.read(&params(request.clone())) {
            Ok(result) => result,
            Err(err) => json!({"fault": err.to_fault().message}),
        }
    };
    let compare = |request: Value| {
        let [a, b] = [&stores[0], &stores[1]].map(|e| answer(e, &request));
        assert_eq!(a, b, "SQLite, then PostgreSQL, for {request}");
        a
    };
    let (mut compared, mut faults) = (0, 0);
    for (name, field) in &shot.fields {
        for relation in Relation::all() {
            if !field.data_type.supports(relation) && name != "id" {
                continue;
            }
            for values in value_lists(field.data_type, relation) {
                let result = compare(json!({"type": "Shot", "return_fields": fields,
                    "filters": {"logical_operator": "and",
                        "conditions": [cond(name, relation.name(), values)]}}));
                compared += 1;
                if result.get("fault").is_some() {
                    faults += 1;
                } else {
                    assert!(result["entities"].is_array(), "{result}");
                }
            }
        }
    }
    // Through links, and every active or retired record.
    for path in [
        "sg_sequence.Sequence.code",
        "project.Project.name",
        "users.HumanUser.name",
    ] {
        for (relation, value) in [
            ("is", "seq_a"),
            ("contains", "A"),
            ("is", "ann"),
            ("in", "Alpha"),
        ] {
            for return_only in ["active", "retired"] {
                compare(
                    json!({"type": "Shot", "return_fields": fields, "return_only": return_only,
                    "filters": {"logical_operator": "or",
                        "conditions": [cond(path, relation, json!([value]))]}}),
                );
                compared += 1;
            }
        }
    }
    let mut sort_fields: Vec<&str> = shot
        .fields
        .iter()
        .filter(|(_, f)| {
            !matches!(
                f.data_type,
                DataType::MultiEntity | DataType::Addressing | DataType::TagList
            )
        })
        .map(|(n, _)| n.as_str())
        .collect();
    sort_fields.extend(["sg_sequence.Sequence.code", "sg_sequence.Sequence.project"]);
    for field in sort_fields {
        for direction in ["asc", "desc"] {
            let result = compare(json!({"type": "Shot", "return_fields": ["code"],
                "sorts": [{"field_name": field, "direction": direction}]}));
            assert_eq!(
                result["entities"].as_array().map(Vec::len),
                Some(4),
                "{field} {direction}: {result}"
            );
            compared += 1;
        }
    }
    for (entity_type, fields) in [
        ("Sequence", ["code", "project"]),
        ("Asset", ["code", "sg_asset_type"]),
        ("HumanUser", ["name", "login"]),
        ("Project", ["name", "archived"]),
    ] {
        for sort in fields {
            let result = compare(json!({"type": entity_type, "return_fields": fields,
                "sorts": [{"field_name": sort, "direction": "desc"}]}));
            assert!(result["entities"].is_array(), "{result}");
        }
    }
    assert!(
        compared > 1000 && faults * 10 < compared,
        "{compared} requests compared, {faults} of them faults"
    );
}

/// The proxy's replies (a read written straight to JSON text) are exactly
/// the JSON of the `Value` path: every data type, deep paths through entity
/// and multi-entity links, links with names, hidden and null links, links to
/// uncached types, paging info with and without counts, empty results.
fn json_text_is_the_value_path_json(backend: Backend) {
    let e = production(backend);
    e.upsert_records(
        "Shot",
        &[
            obj(json!({"id": 9, "code": "shapes \"q\" \\ \n\t\u{1}é😀", "sg_rate": 2.0, "sg_budget": 10.5,
                "sg_done": 50, "sg_length": -600, "src_in": 1000, "sg_kind": "Shot", "sg_color": "255,0,0",
                "sg_uuid": "5d7f6b9e-0000-4000-8000-000000000000", "image": "http://x/t.png",
                "sg_link": {"url": "http://x", "name": "x", "link_type": "web", "content_type": null},
                "sg_data": {"z": [1, 2.5, {"b": null, "a": "x"}], "a": true},
                "created_at": "1970-01-01T00:00:00Z", "sg_due": "2024-02-29", "sg_hero": true,
                "tags": ["b \"q\" é", "a"],
                "cc": [{"type": "HumanUser", "id": 2}, {"type": "HumanUser", "id": 1}],
                "sg_sequence": {"type": "Sequence", "id": 3}, "project": {"type": "Project", "id": 2},
                "assets": [{"type": "Asset", "id": 2}, {"type": "Asset", "id": 3}, {"type": "Asset", "id": 1}]}),
            ),
            obj(json!({"id": 10, "code": "sequence retired", "sg_rate": 0.1,
                "sg_sequence": {"type": "Sequence", "id": 2}})),
        ],
    )
    .unwrap();
    e.upsert_records("Sequence", &[obj(json!({"id": 2, "__retired": true}))])
        .unwrap();
    let schema = common::schema();
    let mut every_field: Vec<String> = schema
        .entity("Shot")
        .expect("Shot")
        .fields
        .keys()
        .cloned()
        .collect();
    let deep = [
        "sg_sequence.Sequence.code",
        "sg_sequence.Sequence.project",
        "sg_sequence.Sequence.id",
        "sg_sequence.Sequence.project.Project.name",
        "sg_sequence.Sequence.project.Project.archived",
        "project.Project.archived",
        "users.HumanUser.login",
        "users.HumanUser.id",
        "assets.Asset.sg_asset_type",
        "assets.Asset.code",
    ];
    every_field.extend(deep.map(String::from));
    let mut requests = vec![
        json!({"type": "Shot", "return_fields": every_field}),
        json!({"type": "Shot", "return_fields": every_field, "return_only": "retired"}),
        json!({"type": "Shot", "return_fields": every_field, "return_paging_info": true,
            "paging": {"entities_per_page": 2, "current_page": 2}}),
        json!({"type": "Shot", "return_fields": every_field, "return_paging_info": true,
            "return_paging_info_without_counts": true, "paging": {"entities_per_page": 3, "current_page": 1}}),
        json!({"type": "Shot", "return_fields": ["id", "type", "code", "code", "id"],
            "return_paging_info": true, "paging": {"entities_per_page": 500, "current_page": 9}}),
        json!({"type": "Shot", "return_fields": ["code"], "filters": {"logical_operator": "and",
            "conditions": [cond("code", "is", json!(["nothing at all"]))]}}),
        json!({"type": "Shot", "return_fields": every_field, "include_archived_projects": false,
            "sorts": [{"field_name": "sg_sequence", "direction": "desc"}, {"field_name": "sg_rate", "direction": "asc"}]}),
        json!({"type": "Sequence", "return_fields": ["code", "project", "project.Project.name"]}),
        json!({"type": "Project", "return_fields": ["name", "archived"], "return_paging_info": true}),
        json!({"type": "Asset", "return_fields": ["code", "sg_asset_type"], "return_only": "retired"}),
        json!({"type": "HumanUser", "return_fields": ["name", "login"]}),
    ];
    for field in &every_field {
        requests.push(json!({"type": "Shot", "return_fields": [field],
            "sorts": [{"field_name": "code", "direction": "desc"}]}));
    }
    for path in [
        "sg_sequence.Sequence.code",
        "assets.Asset.code",
        "users.HumanUser.login",
    ] {
        requests.push(json!({"type": "Shot", "return_fields": every_field,
            "filters": {"logical_operator": "or", "conditions": [cond(path, "contains", json!(["e"]))]}}));
    }
    for request in requests {
        let p = params(request.clone());
        let value = e
            .read(&p)
            .unwrap_or_else(|err| panic!("{err} for {request}"));
        let text = e
            .read_json(&p, b"prefix:".to_vec())
            .unwrap_or_else(|err| panic!("{err} for {request}"));
        let text = String::from_utf8(text).expect("utf-8");
        assert_eq!(
            text.strip_prefix("prefix:"),
            Some(value.to_string().as_str()),
            "for {request}"
        );
    }
}

engine_tests!(
    text_relations,
    sql_shaped_values_are_plain_values,
    number_relations,
    checkbox_relations,
    date_relations,
    list_relations,
    entity_relations,
    multi_entity_relations,
    deep_paths_in_filters,
    nested_groups,
    links_carry_names_resolved_when_read,
    values_render_in_wire_shapes,
    sorting,
    paging,
    retired_and_archived,
    bad_requests_are_faults,
    every_relation_on_every_data_type,
    deep_fields_through_null_links_are_null,
    json_text_is_the_value_path_json,
);
