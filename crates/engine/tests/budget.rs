//! Limits no caller can break: a read or summarize given a time budget is
//! stopped soon after it and fails with `OverBudget` (and the store serves
//! the next query as before), and one whose filter tests too many
//! conditions, or a summarize asking for too many grouping levels or groups,
//! fails with `OverLimit` before it builds them.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::{cond, engine, params, Backend, TestEngine};
use serde_json::{json, Value};
use sg_engine::{EngineError, QueryLimits, Store};
use sg_protocol::SummarizeParams;

/// Shots in the dataset the budgets are tried on.
const SHOTS: i64 = 20_000;

/// Shots in the dataset the limits are tried on: every cut-in (0-99) with
/// every status.
const FEW_SHOTS: i64 = 1_000;

fn dataset_engine(backend: Backend) -> TestEngine {
    dataset_engine_of(backend, SHOTS)
}

fn dataset_engine_of(backend: Backend, shots: i64) -> TestEngine {
    let e = engine(backend);
    let shots: Vec<Value> = (1..=shots)
        .map(|i| {
            let status = ["ip", "wtg", "fin"][(i % 3) as usize];
            json!({"id": i, "code": format!("shot_{i}"), "sg_cut_in": i % 100,
                   "description": format!("take {i} of a long description of shot {i}"),
                   "sg_status_list": status})
        })
        .collect();
    e.load_dataset(&json!({"Shot": shots}))
        .expect("the dataset loads");
    e
}

/// A read whose filter is an `or` of `n` `contains` conditions, none of
/// which matches: every condition is a pattern match on every Shot. With
/// 5,000 it runs for minutes unbounded.
fn costly_read(n: usize) -> sg_protocol::ReadParams {
    let conditions: Vec<Value> = (0..n)
        .map(|k| cond("description", "contains", json!([format!("absent {k}")])))
        .collect();
    params(json!({"type": "Shot", "return_fields": ["code"],
        "filters": {"logical_operator": "or", "conditions": conditions}}))
}

fn costly_summarize(n: usize) -> SummarizeParams {
    let conditions: Vec<Value> = (0..n)
        .map(|k| cond("description", "contains", json!([format!("absent {k}")])))
        .collect();
    summarize_params(json!({"type": "Shot",
        "filters": {"logical_operator": "or", "conditions": conditions},
        "summaries": [{"field": "id", "type": "count"}],
        "grouping": [{"field": "sg_status_list", "type": "exact", "direction": "asc"}]}))
}

fn summarize_params(v: Value) -> SummarizeParams {
    SummarizeParams::from_json(v.as_object().expect("an object")).expect("valid summarize params")
}

/// Whether `result` is an `OverBudget` error; panics with what it was otherwise.
fn assert_over_budget<T: std::fmt::Debug>(result: Result<T, EngineError>, what: &str) {
    match result {
        Err(EngineError::OverBudget(_)) => {}
        other => panic!("{what}: expected OverBudget, got {other:?}"),
    }
}

/// A statement that runs for about a second on each store.
fn slow_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => {
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) \
             SELECT COUNT(*) FROM n"
        }
        Backend::Postgres => "SELECT COUNT(*) FROM (SELECT pg_sleep(1)) s",
    }
}

/// The store's reader (the one just stopped: the pool hands out the last
/// one given back) runs a statement longer than `budget` to its end.
fn assert_reader_unbounded(e: &TestEngine, backend: Backend, budget: Duration) {
    let started = Instant::now();
    let rows = e
        .store()
        .with_reader(&mut |c| c.query(slow_sql(backend), &[]))
        .expect("an unbounded statement after the stop");
    assert_eq!(rows.len(), 1);
    assert!(
        started.elapsed() > budget,
        "the statement was not slow enough to tell"
    );
}

fn a_read_past_its_budget_stops_and_the_store_reads_on(backend: Backend) {
    let e = dataset_engine(backend);
    let budget = Duration::from_millis(300);
    let started = Instant::now();
    assert_over_budget(
        e.read_json_budgeted(&costly_read(5_000), Vec::new(), budget),
        "a costly read",
    );
    let took = started.elapsed();
    // Stopped soon after the budget (the margin is for a loaded machine,
    // not a speed claim).
    assert!(
        took < budget + Duration::from_secs(3),
        "the read stopped only after {took:?}"
    );
    // The connection that was stopped serves the next reads, and keeps no
    // clock or timeout of the stopped one.
    assert_reader_unbounded(&e, backend, budget);
    let found = e.read(&costly_read(10)).expect("a read after the stop");
    assert_eq!(found["entities"], json!([]));
    let found = e
        .read_budgeted(
            &params(json!({"type": "Shot", "return_fields": ["code"],
                "filters": {"logical_operator": "and",
                            "conditions": [cond("id", "is", json!([7]))]}})),
            Duration::from_secs(60),
        )
        .expect("a budgeted read within its budget");
    assert_eq!(found["entities"][0]["code"], json!("shot_7"));
    let json = e
        .read_json_budgeted(
            &params(json!({"type": "Shot", "return_fields": ["code"],
                "filters": {"logical_operator": "and",
                            "conditions": [cond("id", "in", json!([1, 2]))]}})),
            Vec::new(),
            Duration::from_secs(60),
        )
        .expect("a budgeted read as JSON");
    let parsed: Value = serde_json::from_slice(&json).expect("JSON");
    assert_eq!(parsed["entities"].as_array().map(Vec::len), Some(2));
}

fn a_summarize_past_its_budget_stops_and_the_store_summarizes_on(backend: Backend) {
    let e = dataset_engine(backend);
    let budget = Duration::from_millis(300);
    let started = Instant::now();
    assert_over_budget(
        e.summarize_budgeted(&costly_summarize(5_000), budget),
        "a costly summarize",
    );
    let took = started.elapsed();
    assert!(
        took < budget + Duration::from_secs(3),
        "the summarize stopped only after {took:?}"
    );
    assert_reader_unbounded(&e, backend, budget);
    let counted = e
        .summarize_budgeted(
            &summarize_params(
                json!({"type": "Shot", "filters": {"logical_operator": "and", "conditions": []},
                "summaries": [{"field": "id", "type": "record_count"}]}),
            ),
            Duration::from_secs(60),
        )
        .expect("a summarize within its budget");
    assert_eq!(counted["summaries"]["id"], json!(SHOTS));
}

/// A query that fails for its own reasons keeps its own error.
fn a_budgeted_query_keeps_its_own_faults(backend: Backend) {
    let e = dataset_engine_of(backend, FEW_SHOTS);
    let failed = e.read_budgeted(
        &params(json!({"type": "Shot", "return_fields": ["code"],
            "filters": {"logical_operator": "and",
                        "conditions": [cond("no_such_field", "is", json!([1]))]}})),
        Duration::from_secs(60),
    );
    assert!(
        matches!(failed, Err(EngineError::Fault(_))),
        "got {failed:?}"
    );
}

fn grouping(field: &str) -> Value {
    json!({"field": field, "type": "exact", "direction": "asc"})
}

fn too_many_grouping_levels_are_over_the_limit(backend: Backend) {
    let e = dataset_engine_of(backend, FEW_SHOTS);
    let max = QueryLimits::default().max_groupings;
    let levels = |n: usize| -> SummarizeParams {
        let grouping: Vec<Value> = (0..n)
            .map(|k| grouping(["sg_status_list", "sg_cut_in", "sg_status_list"][k % 3]))
            .collect();
        summarize_params(json!({"type": "Shot",
            "filters": {"logical_operator": "and", "conditions": []},
            "summaries": [{"field": "id", "type": "count"}], "grouping": grouping}))
    };
    let budget = Duration::from_secs(60);
    let at_most = e.summarize_budgeted(&levels(max), budget);
    assert!(at_most.is_ok(), "{max} levels: {at_most:?}");
    for n in [max + 1, 200] {
        let over = e.summarize_budgeted(&levels(n), budget);
        assert!(
            matches!(over, Err(EngineError::OverLimit(_))),
            "{n} levels: {over:?}"
        );
    }
    // The unbudgeted call (the simulated site's) answers whatever it is asked.
    assert!(e.summarize(&levels(max + 1)).is_ok());
}

fn too_many_groups_are_over_the_limit(backend: Backend) {
    let e = dataset_engine_of(backend, FEW_SHOTS);
    let by = |fields: &[&str]| {
        summarize_params(json!({"type": "Shot",
            "filters": {"logical_operator": "and", "conditions": []},
            "summaries": [{"field": "id", "type": "count"},
                          {"field": "sg_status_list", "type": "status_list"}],
            "grouping": fields.iter().map(|f| grouping(f)).collect::<Vec<_>>()}))
    };
    let budget = Duration::from_secs(60);
    let limited = |max_groups: usize| QueryLimits {
        max_groups,
        ..QueryLimits::default()
    };
    // 100 cut-ins, each with its 3 statuses: 100 + 300 groups in the answer.
    let answer = e
        .summarize(&by(&["sg_cut_in", "sg_status_list"]))
        .expect("unlimited");
    assert_eq!(answer["groups"].as_array().map(Vec::len), Some(100));
    e.set_limits(limited(400));
    assert_eq!(
        e.summarize_budgeted(&by(&["sg_cut_in", "sg_status_list"]), budget)
            .expect("at the limit"),
        answer
    );
    e.set_limits(limited(399));
    let over = e.summarize_budgeted(&by(&["sg_cut_in", "sg_status_list"]), budget);
    assert!(
        matches!(over, Err(EngineError::OverLimit(_))),
        "400 groups: {over:?}"
    );
    // A grouping query of 1,000 rows stops fetching past the limit.
    let over = e.summarize_budgeted(&by(&["code"]), budget);
    assert!(
        matches!(over, Err(EngineError::OverLimit(_))),
        "1,000 groups: {over:?}"
    );
    assert_eq!(e.limits().max_groups, 399);
}

fn filters_of_too_many_conditions_are_over_the_limit(backend: Backend) {
    let e = dataset_engine_of(backend, FEW_SHOTS);
    let max = QueryLimits::default().max_conditions;
    let budget = Duration::from_secs(60);
    let over = e.read_budgeted(&costly_read(max + 1), budget);
    assert!(
        matches!(over, Err(EngineError::OverLimit(_))),
        "{} conditions: {over:?}",
        max + 1
    );
    // Answered where it arrived, it is left to be answered elsewhere.
    let inline = e.read_json_within(&costly_read(max + 1), Vec::new(), budget);
    assert!(
        matches!(inline, Ok(None)),
        "{} conditions inline: {inline:?}",
        max + 1
    );
    let over = e.summarize_budgeted(&costly_summarize(max + 1), budget);
    assert!(
        matches!(over, Err(EngineError::OverLimit(_))),
        "{} conditions: {over:?}",
        max + 1
    );
    // `is` conditions on one path are one list, however many: 20,000 of
    // them (every id but 7 absent) are within the limit.
    let is: Vec<Value> = (0..20_000)
        .map(|k| cond("id", "is", json!([if k == 0 { 7 } else { FEW_SHOTS + k }])))
        .collect();
    let found = e
        .read_budgeted(
            &params(json!({"type": "Shot", "return_fields": ["code"],
                "filters": {"logical_operator": "or", "conditions": is}})),
            budget,
        )
        .expect("an or of is conditions");
    assert_eq!(found["entities"][0]["code"], json!("shot_7"));
}

engine_tests!(
    a_read_past_its_budget_stops_and_the_store_reads_on,
    a_summarize_past_its_budget_stops_and_the_store_summarizes_on,
    a_budgeted_query_keeps_its_own_faults,
    too_many_grouping_levels_are_over_the_limit,
    too_many_groups_are_over_the_limit,
    filters_of_too_many_conditions_are_over_the_limit,
);
