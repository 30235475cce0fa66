//! Query plans of the reads that page through a type: sorted by id (as an
//! import, `find` without sorts and every keyset page do), SQLite must walk
//! the primary key rather than sort every matching row to return one page.
//! A sort there made paging through a large type quadratic.

#[macro_use]
mod common;

use common::{engine, params, Backend};
use serde_json::json;
use sg_engine::sql::{Dialect, SqlArray, SqlValue};
use sg_engine::store::Rows;
use sg_engine::{Connection, EngineError, Store};

/// A connection that notes every query before running it.
struct Noting<'c> {
    inner: &'c mut dyn Connection,
    queries: Vec<(String, Vec<SqlValue>)>,
}

impl Connection for Noting<'_> {
    fn dialect(&self) -> Dialect {
        self.inner.dialect()
    }
    fn query(&mut self, sql: &str, params: &[SqlValue]) -> Result<Rows, EngineError> {
        self.queries.push((sql.to_string(), params.to_vec()));
        self.inner.query(sql, params)
    }
    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<usize, EngineError> {
        self.inner.execute(sql, params)
    }
    fn execute_batch(&mut self, sql: &str) -> Result<(), EngineError> {
        self.inner.execute_batch(sql)
    }
    fn execute_arrays(&mut self, sql: &str, arrays: &[SqlArray]) -> Result<usize, EngineError> {
        self.inner.execute_arrays(sql, arrays)
    }
}

/// The plan lines (`EXPLAIN QUERY PLAN`) of the main query of a read of Shots.
fn main_query_plan(direction: &str, return_only: &str) -> Vec<String> {
    let e = engine(Backend::Sqlite);
    let shots: Vec<_> = (1..=50)
        .map(|i| json!({"id": i, "code": format!("sh{i:03}"), "__retired": i % 7 == 0}))
        .collect();
    e.load_dataset(&json!({ "Shot": shots }))
        .expect("dataset loads");
    let read = params(json!({
        "type": "Shot",
        "return_fields": ["code"],
        "filters": {"logical_operator": "and", "conditions": [
            {"path": "id", "relation": "greater_than", "values": [10]}]},
        "sorts": [{"field_name": "id", "direction": direction}],
        "paging": {"entities_per_page": 5, "current_page": 1},
        "return_only": return_only,
    }));
    let layout = e.catalog().layout.clone();
    e.store()
        .with_reader(&mut |c| {
            let mut noting = Noting {
                inner: c,
                queries: Vec::new(),
            };
            let page = sg_engine::read::query(&mut noting, &layout, &read)?.to_value();
            assert_eq!(
                page["entities"].as_array().map(Vec::len),
                Some(5),
                "a full page"
            );
            let (sql, values) = noting
                .queries
                .iter()
                .find(|(sql, _)| sql.contains("ORDER BY"))
                .cloned()
                .expect("the read ran its main query");
            let plan = c.query(&format!("EXPLAIN QUERY PLAN {sql}"), &values)?;
            Ok(plan
                .into_iter()
                .map(|row| match row.last() {
                    Some(SqlValue::Text(detail)) => detail.clone(),
                    other => format!("{other:?}"),
                })
                .collect())
        })
        .expect("the read runs")
}

#[test]
fn a_read_sorted_by_id_walks_the_primary_key() {
    for direction in ["asc", "desc"] {
        for return_only in ["active", "retired"] {
            let plan = main_query_plan(direction, return_only);
            assert!(
                plan.iter().any(|line| line.contains("PRIMARY KEY")),
                "{direction}/{return_only}: {plan:?}"
            );
            assert!(
                !plan.iter().any(|line| line.contains("TEMP B-TREE")),
                "{direction}/{return_only} sorts its rows: {plan:?}"
            );
        }
    }
}
