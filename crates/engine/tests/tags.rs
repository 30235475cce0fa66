//! tag_list fields hold tag names: written and read as lists of strings in
//! their order, filtered by `is`, `is_not`, `name_contains`,
//! `name_not_contains` and `name_id` as a site filters them, on both stores.
//!
//! The dataset (Shots; Tag records 1 "hero", 2 "fx", 3 "old" retired):
//!
//! | id | tag_list            |
//! |----|---------------------|
//! | 1  | hero, fx            |
//! | 2  | FX                  |
//! | 3  | (none)              |
//! | 4  | Hero fx             |
//! | 5  | Ünïcode             |
//! | 6  | hero, old (retired) |

#[macro_use]
mod common;

use serde_json::{json, Value};

use common::{cond, field, ids, obj, params, store, Backend, TestEngine};
use sg_engine::Engine;
use sg_protocol::{Schema, SummarizeParams};

fn schema(with_tags: bool) -> Schema {
    let mut fields = json!({
        "Shot": {
            "id": field("number", json!({})),
            "code": field("text", json!({})),
            "tag_list": field("tag_list", json!({"valid_types": ["Tag"]}))
        }
    });
    if with_tags {
        fields["Tag"] = json!({"id": field("number", json!({})), "name": field("text", json!({}))});
    }
    Schema::from_json(&fields, None).expect("schema")
}

fn tagged(backend: Backend, with_tags: bool) -> TestEngine {
    let e = Engine::new(store(backend), schema(with_tags)).expect("engine");
    let mut dataset = json!({
        "Shot": [
            {"id": 1, "code": "a", "tag_list": ["hero", "fx"]},
            {"id": 2, "code": "b", "tag_list": ["FX"]},
            {"id": 3, "code": "c", "tag_list": []},
            {"id": 4, "code": "d", "tag_list": ["Hero fx"]},
            {"id": 5, "code": "e", "tag_list": ["Ünïcode"]},
            {"id": 6, "code": "f", "tag_list": ["hero", "old"], "__retired": true}
        ]
    });
    if with_tags {
        dataset["Tag"] = json!([
            {"id": 1, "name": "hero"}, {"id": 2, "name": "fx"},
            {"id": 3, "name": "old", "__retired": true}
        ]);
    }
    e.load_dataset(&dataset).expect("dataset");
    e
}

fn tags_of(e: &TestEngine, id: i64) -> Value {
    let found = e
        .read(&params(
            json!({"type": "Shot", "return_fields": ["tag_list"],
            "filters": {"logical_operator": "and", "conditions": [cond("id", "is", json!([id]))]}}),
        ))
        .expect("read");
    found["entities"][0]["tag_list"].clone()
}

fn matching(e: &TestEngine, relation: &str, value: Value) -> Vec<i64> {
    ids(
        e,
        "Shot",
        json!([cond("tag_list", relation, json!([value]))]),
    )
}

/// The names come back as written, in their order, each once; none reads
/// as an empty list; a write replaces the list; both reply paths agree.
fn names_round_trip_in_order(backend: Backend) {
    let e = tagged(backend, true);
    assert_eq!(tags_of(&e, 1), json!(["hero", "fx"]));
    assert_eq!(tags_of(&e, 3), json!([]));
    e.upsert_records(
        "Shot",
        &[
            obj(json!({"id": 1, "tag_list": ["z", "a \"q\" é", "z", "m"]})),
            obj(json!({"id": 2, "tag_list": null})),
            obj(json!({"id": 7, "code": "new"})),
        ],
    )
    .expect("written");
    assert_eq!(tags_of(&e, 1), json!(["z", "a \"q\" é", "m"]));
    assert_eq!(tags_of(&e, 2), json!([]));
    assert_eq!(tags_of(&e, 7), json!([]));
    let request = params(json!({"type": "Shot", "return_fields": ["code", "tag_list"]}));
    let text = e.read_json(&request, Vec::new()).expect("json");
    let parsed: Value = serde_json::from_slice(&text).expect("valid JSON");
    assert_eq!(parsed, e.read(&request).expect("read"));
    for bad in [json!("hero"), json!([1]), json!([{"type": "Tag", "id": 1}])] {
        let refused = e.upsert_records("Shot", &[obj(json!({"id": 3, "tag_list": bad}))]);
        assert!(refused.is_err(), "{bad} is not a list of names");
    }
    assert_eq!(tags_of(&e, 3), json!([]), "a refused write changes nothing");
}

/// `is` a name: the record has that tag (any letters' case); `is None`:
/// it has none; `is_not` the rest, records without tags among them.
fn is_and_is_not_test_one_tag(backend: Backend) {
    let e = tagged(backend, true);
    assert_eq!(matching(&e, "is", json!("hero")), vec![1]);
    assert_eq!(matching(&e, "is", json!("HERO")), vec![1]);
    assert_eq!(matching(&e, "is", json!("fx")), vec![1, 2]);
    assert_eq!(matching(&e, "is", json!("ünïcode")), vec![5]);
    assert_eq!(matching(&e, "is", json!("her")), Vec::<i64>::new());
    assert_eq!(matching(&e, "is", Value::Null), vec![3]);
    assert_eq!(matching(&e, "is_not", json!("fx")), vec![3, 4, 5]);
    assert_eq!(matching(&e, "is_not", Value::Null), vec![1, 2, 4, 5]);
}

/// `name_contains`: one of the tags contains the text; `name_not_contains`:
/// none does.
fn name_contains_looks_inside_each_name(backend: Backend) {
    let e = tagged(backend, true);
    assert_eq!(matching(&e, "name_contains", json!("fx")), vec![1, 2, 4]);
    assert_eq!(matching(&e, "name_contains", json!("ER")), vec![1, 4]);
    assert_eq!(matching(&e, "name_contains", json!("NÏ")), vec![5]);
    assert_eq!(matching(&e, "name_contains", json!("%")), Vec::<i64>::new());
    assert_eq!(matching(&e, "name_not_contains", json!("fx")), vec![3, 5]);
    assert_eq!(
        ids(
            &e,
            "Shot",
            json!([
                cond("tag_list", "name_contains", json!(["hero"])),
                cond("tag_list", "is_not", json!(["fx"]))
            ])
        ),
        vec![4]
    );
}

/// `name_id`: the record has the tag whose (live) Tag record has the id;
/// without Tag records no record has it.
fn name_id_finds_the_tag_by_its_record(backend: Backend) {
    let e = tagged(backend, true);
    assert_eq!(matching(&e, "name_id", json!(1)), vec![1]);
    assert_eq!(matching(&e, "name_id", json!(2)), vec![1, 2]);
    assert_eq!(
        matching(&e, "name_id", json!(3)),
        Vec::<i64>::new(),
        "retired"
    );
    assert_eq!(matching(&e, "name_id", json!(99)), Vec::<i64>::new());
    let untagged = tagged(backend, false);
    assert_eq!(matching(&untagged, "name_id", json!(1)), Vec::<i64>::new());
    assert_eq!(matching(&untagged, "is", json!("hero")), vec![1]);
}

/// What the site refuses on a tag_list is refused with its fault.
fn other_uses_are_refused(backend: Backend) {
    let e = tagged(backend, true);
    let fault = |request: Value| {
        e.read(&params(request.clone()))
            .err()
            .unwrap_or_else(|| panic!("{request} is refused"))
            .to_fault()
    };
    for (relation, value) in [
        ("is", json!(5)),
        ("is", json!({"type": "Tag", "id": 1})),
        ("name_id", json!("hero")),
        ("name_contains", Value::Null),
        ("in", json!(["hero"])),
        ("contains", json!("hero")),
        ("name_is", json!("hero")),
    ] {
        let f = fault(
            json!({"type": "Shot", "filters": {"logical_operator": "and",
            "conditions": [cond("tag_list", relation, json!([value]))]}}),
        );
        assert_eq!(f.code.as_i64(), 103, "{relation} {value}: {}", f.message);
    }
    let f =
        fault(json!({"type": "Shot", "sorts": [{"field_name": "tag_list", "direction": "asc"}]}));
    assert_eq!(f.code.as_i64(), 103, "{}", f.message);
}

/// A count of tag_list values counts the records with tags; the summaries
/// and groupings that need a single value are refused.
fn summaries_count_records_with_tags(backend: Backend) {
    let e = tagged(backend, true);
    let summarize = |request: Value| {
        let p = SummarizeParams::from_json(request.as_object().expect("object")).expect("params");
        e.summarize(&p)
    };
    let counted = summarize(
        json!({"type": "Shot", "filters": {"logical_operator": "and", "conditions": []},
        "summaries": [{"field": "tag_list", "type": "count"}, {"field": "id", "type": "count"}]}),
    )
    .expect("count");
    assert_eq!(counted["summaries"]["tag_list"], json!(4));
    assert_eq!(counted["summaries"]["id"], json!(5));
    assert!(summarize(
        json!({"type": "Shot", "filters": {"logical_operator": "and", "conditions": []},
        "summaries": [{"field": "tag_list", "type": "count_distinct"}]})
    )
    .is_err());
    assert!(summarize(
        json!({"type": "Shot", "filters": {"logical_operator": "and", "conditions": []},
        "summaries": [{"field": "id", "type": "count"}],
        "grouping": [{"field": "tag_list", "type": "exact", "direction": "asc"}]})
    )
    .is_err());
}

engine_tests!(
    names_round_trip_in_order,
    is_and_is_not_test_one_tag,
    name_contains_looks_inside_each_name,
    name_id_finds_the_tag_by_its_record,
    other_uses_are_refused,
    summaries_count_records_with_tags,
);
