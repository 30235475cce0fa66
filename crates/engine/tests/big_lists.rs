//! Filters with thousands of values or conditions: `in` and `not_in` lists,
//! and `or` groups of `is` (and other) conditions, on scalar and link
//! fields. Each must give the records the filter's meaning picks, computed
//! here from the dataset, on both stores: SQLite limits how deep an
//! expression nests (1,000) and how many placeholders a statement has
//! (32,766), and neither may show through.

#[macro_use]
mod common;

use common::{cond, engine, params, Backend, TestEngine};
use serde_json::{json, Value};

/// Shots in the dataset.
const SHOTS: i64 = 3000;
/// Sequences; the last one is retired.
const SEQUENCES: i64 = 40;

/// Shot `i`'s code: null for every 11th, upper case for every 7th.
fn code(i: i64) -> Option<String> {
    match (i % 11, i % 7) {
        (0, _) => None,
        (_, 0) => Some(format!("SHOT_{i}")),
        _ => Some(format!("shot_{i}")),
    }
}

/// Shot `i`'s sequence: none for every 13th.
fn sequence(i: i64) -> Option<i64> {
    (i % 13 != 0).then_some(i % SEQUENCES + 1)
}

fn dataset_engine(backend: Backend) -> TestEngine {
    let e = engine(backend);
    let sequences: Vec<Value> = (1..=SEQUENCES)
        .map(|i| json!({"id": i, "code": format!("sq{i}"), "__retired": i == SEQUENCES}))
        .collect();
    let shots: Vec<Value> = (1..=SHOTS)
        .map(|i| {
            json!({"id": i, "code": code(i), "sg_cut_in": i % 500,
                   "sg_sequence": sequence(i).map(|s| json!({"type": "Sequence", "id": s}))})
        })
        .collect();
    e.load_dataset(&json!({"Sequence": sequences, "Shot": shots}))
        .expect("the dataset loads");
    e
}

/// The ids of the Shots `filters` (a filter group) picks, in id order.
fn read_ids(e: &TestEngine, filters: Value) -> Vec<i64> {
    let p = params(
        json!({"type": "Shot", "return_fields": ["id"], "filters": filters,
        "sorts": [{"field_name": "id", "direction": "asc"}],
        "paging": {"entities_per_page": SHOTS + 10, "current_page": 1}}),
    );
    let found = e
        .read(&p)
        .unwrap_or_else(|err| panic!("the read fails: {err}"));
    found["entities"]
        .as_array()
        .expect("entities")
        .iter()
        .filter_map(|r| r["id"].as_i64())
        .collect()
}

fn all_of(conditions: Vec<Value>) -> Value {
    json!({"logical_operator": "and", "conditions": conditions})
}

fn any_of(conditions: Vec<Value>) -> Value {
    json!({"logical_operator": "or", "conditions": conditions})
}

fn shots_where(keep: impl Fn(i64) -> bool) -> Vec<i64> {
    (1..=SHOTS).filter(|&i| keep(i)).collect()
}

/// `n` codes in lower case, every third one a Shot's: matched whatever
/// case they are stored in.
fn codes(n: i64) -> Vec<Value> {
    (1..=n)
        .map(|k| {
            json!(if k % 3 == 0 {
                format!("shot_{k}")
            } else {
                format!("none_{k}")
            })
        })
        .collect()
}

/// Whether Shot `i`'s code is one of [`codes`]`(n)`.
fn has_code_listed(n: i64) -> impl Fn(i64) -> bool {
    move |i| code(i).is_some() && i <= n && i % 3 == 0
}

fn in_lists_of_text(backend: Backend) {
    let e = dataset_engine(backend);
    for n in [5_000, 20_000] {
        let values = codes(n);
        assert_eq!(
            read_ids(&e, all_of(vec![cond("code", "in", json!(values))])),
            shots_where(has_code_listed(n)),
            "code in {n} values"
        );
        // `not_in` matches null codes too.
        assert_eq!(
            read_ids(&e, all_of(vec![cond("code", "not_in", json!(values))])),
            shots_where(|i| !has_code_listed(n)(i)),
            "code not_in {n} values"
        );
        let is: Vec<Value> = values
            .iter()
            .map(|v| cond("code", "is", json!([v])))
            .collect();
        assert_eq!(
            read_ids(&e, any_of(is)),
            shots_where(has_code_listed(n)),
            "an or of {n} code is conditions"
        );
    }
}

fn in_lists_of_numbers(backend: Backend) {
    let e = dataset_engine(backend);
    for n in [5_000, 20_000] {
        // Ids 3, 6, 9, ... and one null.
        let mut values: Vec<Value> = (1..=n).map(|k| json!(k * 3)).collect();
        values.push(Value::Null);
        let picked = |i: i64| i % 3 == 0 && i <= n * 3;
        assert_eq!(
            read_ids(&e, all_of(vec![cond("id", "in", json!(values))])),
            shots_where(picked),
            "id in {n} values"
        );
        assert_eq!(
            read_ids(&e, all_of(vec![cond("id", "not_in", json!(values))])),
            shots_where(|i| !picked(i)),
            "id not_in {n} values"
        );
        let is: Vec<Value> = (1..=n).map(|k| cond("id", "is", json!([k * 3]))).collect();
        assert_eq!(
            read_ids(&e, any_of(is)),
            shots_where(picked),
            "an or of {n} id is conditions"
        );
        // A number field through a float value, and `is` conditions mixed
        // with others that are not merged into a list.
        let mut mixed: Vec<Value> = (0..n)
            .map(|k| cond("sg_cut_in", "is", json!([(k % 1000) as f64 + 0.5])))
            .collect();
        mixed.extend((0..n / 10).map(|k| cond("id", "greater_than", json!([SHOTS + k]))));
        mixed.push(cond("sg_cut_in", "is", json!([7])));
        assert_eq!(
            read_ids(&e, any_of(mixed)),
            shots_where(|i| i % 500 == 7),
            "an or of {} mixed conditions",
            n + n / 10 + 1
        );
    }
}

/// Links to Sequences `1..=n` (most of which don't exist) and to Shots.
fn sequence_links(n: i64) -> Vec<Value> {
    (1..=n)
        .map(|k| {
            if k % 5 == 0 {
                json!({"type": "Shot", "id": k})
            } else {
                json!({"type": "Sequence", "id": k})
            }
        })
        .collect()
}

/// Whether a Shot's sequence is one of [`sequence_links`]`(n)`, and live.
fn in_sequence_links(n: i64) -> impl Fn(i64) -> bool {
    move |i| sequence(i).is_some_and(|s| s <= n && s % 5 != 0 && s != SEQUENCES)
}

fn in_lists_of_links(backend: Backend) {
    let e = dataset_engine(backend);
    for n in [5_000, 20_000] {
        let links = sequence_links(n);
        let picked = in_sequence_links(n);
        assert_eq!(
            read_ids(&e, all_of(vec![cond("sg_sequence", "in", json!(links))])),
            shots_where(&picked),
            "sg_sequence in {n} links"
        );
        assert_eq!(
            read_ids(
                &e,
                all_of(vec![cond("sg_sequence", "not_in", json!(links))])
            ),
            shots_where(|i| !picked(i)),
            "sg_sequence not_in {n} links"
        );
        let is: Vec<Value> = links
            .iter()
            .map(|l| cond("sg_sequence", "is", json!([l])))
            .collect();
        assert_eq!(
            read_ids(&e, any_of(is)),
            shots_where(&picked),
            "an or of {n} sg_sequence is conditions"
        );
        // Through the link: the value of a deep path, listed.
        let deep: Vec<Value> = (1..=n)
            .map(|k| cond("sg_sequence.Sequence.code", "is", json!([format!("SQ{k}")])))
            .collect();
        assert_eq!(
            read_ids(&e, any_of(deep)),
            shots_where(|i| sequence(i).is_some_and(|s| s <= n && s != SEQUENCES)),
            "an or of {n} deep is conditions"
        );
    }
}

/// An `or` of thousands of conditions that can't become a list, and an
/// `and` of thousands: nested no deeper than SQLite allows.
fn long_groups_of_other_conditions(backend: Backend) {
    let e = dataset_engine(backend);
    let n = 2_000;
    let starts: Vec<Value> = (1..=n)
        .map(|k| cond("code", "starts_with", json!([format!("shot_{k}9")])))
        .collect();
    let starts_with = |i: i64| {
        code(i).is_some_and(|c| {
            let c = c.to_lowercase();
            (1..=n).any(|k| c.starts_with(&format!("shot_{k}9")))
        })
    };
    assert_eq!(
        read_ids(&e, any_of(starts)),
        shots_where(starts_with),
        "an or of {n} starts_with conditions"
    );
    let not_these: Vec<Value> = (1..=n).map(|k| cond("id", "is_not", json!([k]))).collect();
    assert_eq!(
        read_ids(&e, all_of(not_these)),
        shots_where(|i| i > n),
        "an and of {n} is_not conditions"
    );
}

engine_tests!(
    in_lists_of_text,
    in_lists_of_numbers,
    in_lists_of_links,
    long_groups_of_other_conditions,
);
