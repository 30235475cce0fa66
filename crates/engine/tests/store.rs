//! The stores themselves: values bound and read back through SQL,
//! transactions and schema changes on both; and on PostgreSQL, every column
//! type read back, schemas kept apart, and connections that come back after
//! the server dropped them.

#[macro_use]
mod common;

use serde_json::json;

use common::{
    cond, engine, entities, field, ids, obj, postgres_url, schema, schema_fields, store, Backend,
};
use sg_engine::frag::Fragment;
use sg_engine::sql::SqlValue;
use sg_engine::store::Rows;
use sg_engine::{Connection, EngineError, PostgresStore, Store};

fn int(i: i64) -> SqlValue {
    SqlValue::Int(i)
}

fn real(f: f64) -> SqlValue {
    SqlValue::Real(f)
}

fn text(s: &str) -> SqlValue {
    SqlValue::Text(s.to_string())
}

/// Runs a fragment as a query on `conn`.
fn query(conn: &mut dyn Connection, f: Fragment) -> Result<Rows, EngineError> {
    let (sql, params) = f.finish(conn.dialect());
    conn.query(&sql, &params)
}

/// One row of a query through a reader.
fn row_of(store: &impl Store, f: Fragment) -> Vec<SqlValue> {
    store
        .with_reader(&mut |conn| query(conn, f.clone()))
        .unwrap_or_else(|e| panic!("{}: {e}", f.sql))
        .into_iter()
        .next()
        .expect("a row")
}

/// A table `t (i, r, s)` of integers, reals and text, with four rows.
fn table_of_values(store: &impl Store) {
    let d = store.dialect();
    store
        .with_transaction(&mut |conn| {
            conn.execute_batch(&format!(
                "CREATE TABLE \"t\" (\"i\" {}, \"r\" {}, \"s\" {})",
                d.integer_column(),
                d.real_column(),
                d.text_column()
            ))?;
            let rows = [
                [int(1), real(1.5), text("héllo")],
                [int(-7), real(-0.25), text("it's \"q\" 100%")],
                [int(i64::MAX), real(2.0), SqlValue::Null],
                [SqlValue::Null, SqlValue::Null, text("")],
            ];
            for row in rows {
                let mut f = Fragment::text("INSERT INTO \"t\" (\"i\", \"r\", \"s\") VALUES (");
                for (n, v) in row.into_iter().enumerate() {
                    if n > 0 {
                        f.push(", ");
                    }
                    f.bind(v);
                }
                f.push(")");
                let (sql, params) = f.finish(conn.dialect());
                assert_eq!(conn.execute(&sql, &params)?, 1);
            }
            Ok(())
        })
        .expect("the rows are written");
}

/// Integers, reals, text and nulls go in as parameters and come back as they
/// went; counts, sums, comparisons and EXISTS read back as numbers.
fn values_round_trip_through_sql(backend: Backend) {
    let store = store(backend);
    table_of_values(&store);
    let rows = store
        .with_reader(&mut |conn| {
            query(
                conn,
                Fragment::text(
                    "SELECT \"i\", \"r\", \"s\" FROM \"t\" ORDER BY \"i\" IS NULL, \"i\"",
                ),
            )
        })
        .expect("the rows read back");
    assert_eq!(
        rows,
        vec![
            vec![int(-7), real(-0.25), text("it's \"q\" 100%")],
            vec![int(1), real(1.5), text("héllo")],
            vec![int(i64::MAX), real(2.0), SqlValue::Null],
            vec![SqlValue::Null, SqlValue::Null, text("")],
        ]
    );
    // SUM of integers is an integer (NUMERIC on PostgreSQL), of reals a real.
    assert_eq!(
        row_of(
            &store,
            Fragment::text(
                "SELECT COUNT(*), COUNT(\"i\"), SUM(\"i\"), SUM(\"r\"), MAX(\"s\") FROM \"t\" WHERE \"i\" < 100"
            )
        ),
        vec![int(2), int(2), int(-6), real(1.25), text("it's \"q\" 100%")]
    );
    // Sums of nothing are null.
    assert_eq!(
        row_of(
            &store,
            Fragment::text("SELECT SUM(\"i\"), SUM(\"r\"), COUNT(*) FROM \"t\" WHERE 1 = 0")
        ),
        vec![SqlValue::Null, SqlValue::Null, int(0)]
    );
    // Truth values read as 0 or 1.
    assert_eq!(
        row_of(
            &store,
            Fragment::text(
                "SELECT EXISTS (SELECT 1 FROM \"t\"), 1 = 0, (SELECT \"i\" > 0 FROM \"t\" WHERE \"i\" = 1)"
            )
        ),
        vec![int(1), int(0), int(1)]
    );
    // Parameters compare by their own type: a real against an integer
    // column, an integer against a real column.
    let mut f = Fragment::text("SELECT COUNT(*) FROM \"t\" WHERE \"i\" > ");
    f.bind(real(-0.5)).push(" AND \"r\" <= ").bind(int(2));
    assert_eq!(row_of(&store, f), vec![int(2)]);
    let mut f = Fragment::text("SELECT \"s\" FROM \"t\" WHERE \"i\" = ");
    f.bind(int(1))
        .push(" LIMIT ")
        .bind(int(1))
        .push(" OFFSET ")
        .bind(int(0));
    assert_eq!(row_of(&store, f), vec![text("héllo")]);
}

/// A transaction is committed when its work succeeds and rolled back when
/// it fails; readers see only committed work.
fn transactions_commit_or_roll_back(backend: Backend) {
    let store = store(backend);
    table_of_values(&store);
    let count = || row_of(&store, Fragment::text("SELECT COUNT(*) FROM \"t\""));
    let insert = |conn: &mut dyn Connection| -> Result<(), EngineError> {
        let (sql, params) =
            Fragment::text("INSERT INTO \"t\" (\"i\") VALUES (42)").finish(conn.dialect());
        conn.execute(&sql, &params).map(|_| ())
    };
    let failed: Result<(), EngineError> = store.with_transaction(&mut |conn| {
        insert(conn)?;
        Err(EngineError::Store("the work failed".into()))
    });
    assert!(failed.is_err());
    assert_eq!(count(), vec![int(4)], "rolled back");
    let bad_sql = store.with_transaction(&mut |conn| {
        insert(conn)?;
        conn.execute_batch("INSERT INTO \"nope\" VALUES (1)")
    });
    assert!(bad_sql.is_err());
    assert_eq!(
        count(),
        vec![int(4)],
        "rolled back after a failed statement"
    );
    store
        .with_transaction(&mut |conn| insert(conn))
        .expect("the insert commits");
    assert_eq!(count(), vec![int(5)], "committed");
    let mut f = Fragment::text("DELETE FROM \"t\" WHERE \"i\" = ");
    f.bind(int(42));
    let (sql, params) = f.finish(store.dialect());
    let deleted = store
        .with_transaction(&mut |conn| conn.execute(&sql, &params))
        .expect("the delete commits");
    assert_eq!(deleted, 1);
}

/// A new schema adds columns (and link tables) to the tables in place; the
/// records keep their values and take values of the new fields.
fn schema_changes_add_fields(backend: Backend) {
    let e = engine(backend);
    e.upsert_records("Shot", &[obj(json!({"id": 1, "code": "sh010"}))])
        .expect("a shot is written");
    e.upsert_records("Asset", &[obj(json!({"id": 7, "code": "rock"}))])
        .expect("an asset is written");
    let mut fields = schema_fields();
    fields["Shot"]["sg_new_text"] = field("text", json!({}));
    fields["Shot"]["sg_new_links"] = field("multi_entity", json!({"valid_types": ["Asset"]}));
    let new_schema = sg_protocol::Schema::from_json(&fields, None).expect("the new schema parses");
    e.set_schema(new_schema).expect("the schema changes");
    e.upsert_records(
        "Shot",
        &[obj(
            json!({"id": 1, "sg_new_text": "New", "sg_new_links": [{"type": "Asset", "id": 7}]}),
        )],
    )
    .expect("the new fields are written");
    let shots = entities(
        &e,
        json!({"type": "Shot", "return_fields": ["code", "sg_new_text", "sg_new_links"],
            "filters": {"logical_operator": "and", "conditions": [cond("sg_new_text", "is", json!(["new"]))]}}),
    );
    assert_eq!(
        shots,
        vec![
            json!({"type": "Shot", "id": 1, "code": "sh010", "sg_new_text": "New",
            "sg_new_links": [{"type": "Asset", "id": 7, "name": "rock"}]})
        ]
    );
}

/// A schema without some fields drops their columns (the status, which the
/// link indexes carry, included), and the same fields can come back later.
fn schema_changes_remove_fields(backend: Backend) {
    let e = engine(backend);
    e.upsert_records(
        "Shot",
        &[obj(
            json!({"id": 1, "code": "sh010", "sg_status_list": "ip"}),
        )],
    )
    .expect("a shot is written");
    let full = schema_fields();
    let mut fewer = full.clone();
    for f in ["sg_status_list", "sg_sequence", "assets", "sg_cut_in"] {
        fewer["Shot"].as_object_mut().expect("Shot").remove(f);
    }
    let parse = |v: &serde_json::Value| sg_protocol::Schema::from_json(v, None).expect("parses");
    e.set_schema(parse(&fewer)).expect("fields go");
    assert_eq!(
        ids(&e, "Shot", json!([cond("code", "is", json!(["sh010"]))])),
        vec![1]
    );
    e.set_schema(parse(&full)).expect("fields come back");
    let shots = entities(
        &e,
        json!({"type": "Shot", "return_fields": ["code", "sg_status_list", "sg_sequence"]}),
    );
    assert_eq!(
        shots,
        vec![
            json!({"type": "Shot", "id": 1, "code": "sh010", "sg_status_list": null, "sg_sequence": null})
        ]
    );
}

/// Many records in one call: runs of different field sets, the same id twice
/// (the later values win), link lists replaced, and a bad value writing nothing.
fn batches_of_records(backend: Backend) {
    let e = engine(backend);
    e.upsert_records(
        "Asset",
        &[
            obj(json!({"id": 7, "code": "rock"})),
            obj(json!({"id": 8, "code": "tree"})),
        ],
    )
    .expect("assets");
    let batch = vec![
        obj(json!({"id": 1, "code": "a", "assets": [{"type": "Asset", "id": 7}]})),
        obj(json!({"id": 2, "code": "b"})),
        obj(json!({"id": 3, "sg_cut_in": 5})),
        obj(
            json!({"id": 1, "code": "a2", "assets": [{"type": "Asset", "id": 8}, {"type": "Asset", "id": 7}]}),
        ),
    ];
    e.upsert_records("Shot", &batch)
        .expect("the batch is written");
    let shots = entities(
        &e,
        json!({"type": "Shot", "return_fields": ["code", "sg_cut_in", "assets"]}),
    );
    assert_eq!(shots[0]["code"], json!("a2"));
    assert_eq!(
        shots[0]["assets"],
        json!([{"type": "Asset", "id": 8, "name": "tree"}, {"type": "Asset", "id": 7, "name": "rock"}])
    );
    assert_eq!(
        (shots[1]["code"].clone(), shots[2]["sg_cut_in"].clone()),
        (json!("b"), json!(5))
    );
    let bad = vec![
        obj(json!({"id": 4, "code": "c"})),
        obj(json!({"id": 5, "sg_cut_in": "not a number"})),
    ];
    assert!(e.upsert_records("Shot", &bad).is_err());
    assert_eq!(
        ids(&e, "Shot", json!([])),
        vec![1, 2, 3],
        "a bad value writes nothing"
    );
}

/// A Shot with a value of every data type (some null), varied by `i` and `round`.
fn varied_shot(i: i64, round: i64) -> serde_json::Map<String, serde_json::Value> {
    let n = i + round;
    let some = |v: serde_json::Value| if n % 5 == 0 { json!(null) } else { v };
    obj(json!({
        "id": i,
        "code": format!("sh{i:03}_{round}\tq\"\\"),
        "description": some(json!(format!("line one\nline two {n} é"))),
        "sg_cut_in": some(json!(n * 10 - 500)),
        "sg_rate": some(json!(n as f64 / 8.0)),
        "sg_budget": some(json!(1.5e9 + n as f64)),
        "sg_done": some(json!(n % 101)),
        "sg_length": some(json!(n * 24)),
        "src_in": some(json!(n * 1000)),
        "sg_hero": n % 2 == 0,
        "sg_due": some(json!(format!("2024-01-{:02}", n % 28 + 1))),
        "created_at": some(json!(format!("2024-03-{:02}T10:{:02}:00Z", n % 28 + 1, n % 60))),
        "sg_status_list": some(json!(["ip", "wtg", "fin"][(n % 3) as usize])),
        "sg_shot_type": some(json!(["Hero", "BG"][(n % 2) as usize])),
        "sg_data": some(json!({"k": n, "list": [1, "two"]})),
        "sg_sequence": some(json!({"type": "Sequence", "id": n % 3 + 1})),
        "project": some(json!({"type": "Project", "id": 1})),
        "assets": match n % 4 {
            0 => json!([]),
            1 => json!([{"type": "Asset", "id": 7}]),
            _ => json!([{"type": "Asset", "id": 8}, {"type": "Asset", "id": 7}]),
        },
        "users": if n % 3 == 0 { json!([{"type": "HumanUser", "id": 1}]) } else { json!([]) },
    }))
}

/// Every field of every Shot, sorted by id, as a read gives them.
fn all_shots(e: &common::TestEngine) -> Vec<serde_json::Value> {
    let fields: Vec<String> = e
        .catalog()
        .schema
        .entity("Shot")
        .expect("Shot")
        .fields
        .keys()
        .cloned()
        .collect();
    let mut found = Vec::new();
    for return_only in ["active", "retired"] {
        found.extend(entities(
            e,
            json!({"type": "Shot", "return_fields": fields, "return_only": return_only,
                   "sorts": [{"field_name": "id", "direction": "asc"}],
                   "paging": {"entities_per_page": 500, "current_page": 1}}),
        ));
    }
    found
}

/// Many records written in one call (on PostgreSQL: bound as arrays, a
/// statement per run) read back the same as the same records written one at
/// a time, for every data type and null, new rows and rows updated in place.
fn bulk_writes_equal_writes_one_by_one(backend: Backend) {
    let bulk = engine(backend);
    let single = engine(backend);
    for e in [&bulk, &single] {
        e.upsert_records("Project", &[obj(json!({"id": 1, "name": "p"}))])
            .expect("project");
        e.upsert_records(
            "Sequence",
            &(1..=3)
                .map(|i| obj(json!({"id": i, "code": format!("sq{i}")})))
                .collect::<Vec<_>>(),
        )
        .expect("sequences");
        e.upsert_records(
            "Asset",
            &[
                obj(json!({"id": 7, "code": "rock"})),
                obj(json!({"id": 8, "code": "tree"})),
            ],
        )
        .expect("assets");
        e.upsert_records(
            "HumanUser",
            &[obj(json!({"id": 1, "name": "ann", "login": "ann"}))],
        )
        .expect("user");
    }
    for round in 0..2 {
        let mut records: Vec<_> = (1..=120).map(|i| varied_shot(i, round)).collect();
        // As an import page: every record says whether it is retired (the
        // same columns throughout make one run, one statement).
        for (n, r) in records.iter_mut().enumerate() {
            r.insert("__retired".into(), json!(n % 7 == 0));
        }
        bulk.upsert_records("Shot", &records).expect("bulk write");
        for record in &records {
            single
                .upsert_records("Shot", std::slice::from_ref(record))
                .expect("single write");
        }
        let (b, s) = (all_shots(&bulk), all_shots(&single));
        assert_eq!(b.len(), 120, "round {round}");
        assert_eq!(b, s, "round {round}");
        let shot_2 = b.iter().find(|r| r["id"] == json!(2)).expect("Shot 2");
        assert_eq!(shot_2["code"], json!(format!("sh002_{round}\tq\"\\")));
        assert_eq!(
            shot_2["assets"].as_array().map(Vec::len),
            Some(2),
            "round {round}"
        );
    }
    // A bad value among many writes nothing.
    let mut bad: Vec<_> = (200..240).map(|i| varied_shot(i, 0)).collect();
    bad[30].insert("sg_cut_in".into(), json!("not a number"));
    assert!(bulk.upsert_records("Shot", &bad).is_err());
    assert_eq!(all_shots(&bulk).len(), 120, "a bad value writes nothing");
}

engine_tests!(
    bulk_writes_equal_writes_one_by_one,
    batches_of_records,
    values_round_trip_through_sql,
    transactions_commit_or_roll_back,
    schema_changes_add_fields,
    schema_changes_remove_fields,
    statistics_of_one_type_are_refreshed,
    a_session_lock_is_held_by_one_store_at_a_time,
    a_link_listed_twice_is_stored_once,
);

/// The tables the store has statistics of, of those `names`.
fn analyzed(store: &impl Store, names: &[&str]) -> Vec<String> {
    let sql = match store.dialect() {
        sg_engine::sql::Dialect::Sqlite => "SELECT DISTINCT \"tbl\" FROM \"sqlite_stat1\" ORDER BY 1",
        // Never analyzed (nor vacuumed) is -1.
        sg_engine::sql::Dialect::Postgres => {
            "SELECT relname::text FROM pg_class WHERE relnamespace = current_schema()::regnamespace \
             AND relkind = 'r' AND reltuples >= 0 ORDER BY 1"
        }
    };
    let rows = store
        .with_reader(&mut |conn| query(conn, Fragment::text(sql)))
        .unwrap_or_default();
    rows.iter()
        .filter_map(|r| r[0].as_str().map(str::to_string))
        .filter(|t| names.contains(&t.as_str()))
        .collect()
}

/// A type's table and its link tables get statistics, and only they.
fn statistics_of_one_type_are_refreshed(backend: Backend) {
    let e = engine(backend);
    e.upsert_records("Asset", &[obj(json!({"id": 7, "code": "rock"}))])
        .expect("an asset is written");
    e.upsert_records(
        "Shot",
        &[obj(
            json!({"id": 1, "code": "sh010", "assets": [{"type": "Asset", "id": 7}]}),
        )],
    )
    .expect("a shot is written");
    let names = ["Asset", "Shot", "Shot__assets", "Shot__users"];
    assert!(analyzed(e.store(), &names).is_empty(), "none yet");
    let dialect = e.store().dialect();
    e.store()
        .with_transaction(&mut |c| sg_engine::ddl::analyze_tables_of(c, "Shot", dialect))
        .expect("the shot tables are analyzed");
    let mut expected = vec!["Shot", "Shot__assets"];
    if dialect == sg_engine::sql::Dialect::Postgres {
        // An empty table has statistics too.
        expected.push("Shot__users");
    }
    assert_eq!(analyzed(e.store(), &names), expected);
}

/// On PostgreSQL one store holds a named session lock at a time, until it
/// is dropped; a SQLite store, which no other process shares, always holds it.
fn a_session_lock_is_held_by_one_store_at_a_time(backend: Backend) {
    let name = format!(
        "sg-engine test lock {} {:?}",
        std::process::id(),
        std::time::Instant::now()
    );
    let (first, second) = (store(backend), store(backend));
    let hold = |s: &sg_engine::AnyStore| s.hold_session_lock(&name).expect("the lock is asked for");
    assert!(hold(&first));
    assert!(hold(&first), "still held");
    if backend == Backend::Sqlite {
        assert!(hold(&second));
        return;
    }
    assert!(!hold(&second), "held by the first");
    assert!(hold(&first));
    drop(first);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut taken = hold(&second);
    while !taken && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        taken = hold(&second);
    }
    assert!(taken, "free once its holder is gone");
}

/// A list naming one record twice keeps it once, where it first stands:
/// written alone, in a short batch and in a long one (each store writes
/// link lists in a different way for each).
fn a_link_listed_twice_is_stored_once(backend: Backend) {
    let e = engine(backend);
    e.upsert_records(
        "Asset",
        &[
            obj(json!({"id": 7, "code": "rock"})),
            obj(json!({"id": 8, "code": "tree"})),
        ],
    )
    .expect("assets are written");
    let twice =
        json!([{"type": "Asset", "id": 8}, {"type": "Asset", "id": 7}, {"type": "Asset", "id": 8}]);
    let shot = |id: i64| obj(json!({"id": id, "code": format!("sh{id}"), "assets": twice}));
    e.upsert_records("Shot", &[shot(1)]).expect("one shot");
    e.upsert_records("Shot", &(2..5).map(shot).collect::<Vec<_>>())
        .expect("a few shots");
    e.upsert_records("Shot", &(5..40).map(shot).collect::<Vec<_>>())
        .expect("many shots");
    let shots = entities(&e, json!({"type": "Shot", "return_fields": ["assets"]}));
    assert_eq!(shots.len(), 39);
    for s in shots {
        assert_eq!(
            s["assets"],
            json!([{"type": "Asset", "id": 8, "name": "tree"}, {"type": "Asset", "id": 7, "name": "rock"}]),
            "{s}"
        );
    }
}

fn postgres() -> PostgresStore {
    let url = postgres_url();
    PostgresStore::open_temporary(&url)
        .unwrap_or_else(|e| panic!("the PostgreSQL tests need a server at {url}: {e}"))
}

/// Every column type PostgreSQL gives the engine's queries reads back as the
/// right value: NUMERIC (SUM of BIGINT) as an integer when whole, else a real.
#[test]
fn postgres_reads_back_every_column_type() {
    let store = postgres();
    let row = row_of(
        &store,
        Fragment::text(
            "SELECT 1::int2, 2::int4, 3::int8, 1.5::float4, 2.5::float8, 10::numeric, 2.50::numeric, \
             -0.001::numeric, 12345678901234567890::numeric, -9223372036854775808::numeric, \
             true, false, 'x'::varchar, 'y'::text, 'z'::char(2), NULL, NULL::bigint, NULL::numeric, \
             (SELECT SUM(v) FROM (VALUES (9223372036854775807::int8), (1::int8)) AS s(v)), \
             (SELECT SUM(v) FROM (VALUES (5::int8), (-8::int8)) AS s(v))",
        ),
    );
    assert_eq!(
        row,
        vec![
            int(1),
            int(2),
            int(3),
            real(1.5),
            real(2.5),
            int(10),
            real(2.5),
            real(-0.001),
            real(12_345_678_901_234_567_890.0),
            int(i64::MIN),
            int(1),
            int(0),
            text("x"),
            text("y"),
            text("z "),
            SqlValue::Null,
            SqlValue::Null,
            SqlValue::Null,
            real(9_223_372_036_854_775_808.0),
            int(-3),
        ]
    );
    // Parameters of every kind bind where PostgreSQL types them from their
    // place, nulls included.
    store
        .with_transaction(&mut |conn| {
            conn.execute_batch(
                "CREATE TABLE \"typed\" (\"a\" int2, \"b\" int4, \"c\" float4, \"d\" boolean, \"e\" varchar(8), \"f\" bigint)",
            )?;
            conn.execute(
                "INSERT INTO \"typed\" VALUES ($1, $2, $3, $4, $5, $6)",
                &[int(7), int(-8), real(0.5), int(1), text("v"), SqlValue::Null],
            )?;
            conn.execute(
                "INSERT INTO \"typed\" VALUES ($1, $2, $3, $4, $5, $6)",
                &[SqlValue::Null, SqlValue::Null, int(2), int(0), SqlValue::Null, real(3.0)],
            )
        })
        .expect("typed parameters bind");
    let rows = store
        .with_reader(&mut |conn| {
            conn.query("SELECT * FROM \"typed\" ORDER BY \"a\" NULLS LAST", &[])
        })
        .expect("the typed rows read back");
    assert_eq!(
        rows,
        vec![
            vec![
                int(7),
                int(-8),
                real(0.5),
                int(1),
                text("v"),
                SqlValue::Null
            ],
            vec![
                SqlValue::Null,
                SqlValue::Null,
                real(2.0),
                int(0),
                SqlValue::Null,
                int(3)
            ],
        ]
    );
    let refused = store.with_transaction(&mut |conn| {
        conn.execute("INSERT INTO \"typed\" (\"a\") VALUES ($1)", &[int(70_000)])
    });
    assert!(
        refused.is_err(),
        "an integer too big for int2 is refused, not cut"
    );
}

/// Stores in different schemas of one database never see each other's
/// tables; a temporary store's schema goes when the store goes; a store
/// opened again on a named schema finds its tables.
#[test]
fn postgres_schemas_are_kept_apart() {
    let a = postgres();
    let b = postgres();
    let create = |store: &PostgresStore, value: i64| {
        store
            .with_transaction(&mut |conn| {
                conn.execute_batch("CREATE TABLE \"same\" (\"v\" bigint)")?;
                conn.execute("INSERT INTO \"same\" VALUES ($1)", &[int(value)])
            })
            .expect("the table is made")
    };
    create(&a, 1);
    create(&b, 2);
    let read = |store: &PostgresStore| row_of(store, Fragment::text("SELECT \"v\" FROM \"same\""));
    assert_eq!(read(&a), vec![int(1)]);
    assert_eq!(read(&b), vec![int(2)]);

    let gone = a
        .schema()
        .expect("a temporary store has a schema")
        .to_string();
    drop(a);
    let mut f = Fragment::text("SELECT COUNT(*) FROM pg_namespace WHERE nspname = ");
    f.bind(text(&gone));
    assert_eq!(
        row_of(&b, f),
        vec![int(0)],
        "the schema is dropped with its store"
    );

    let name = format!("{}_named", b.schema().expect("a schema"));
    let named = PostgresStore::connect(&postgres_url(), Some(&name)).expect("connects");
    create(&named, 3);
    drop(named);
    let again = PostgresStore::connect(&postgres_url(), Some(&name)).expect("connects again");
    assert_eq!(read(&again), vec![int(3)], "a named schema is kept");
    again
        .with_transaction(&mut |conn| {
            conn.execute_batch(&format!("DROP SCHEMA \"{name}\" CASCADE"))
        })
        .expect("the named schema is dropped");
}

/// When the server drops the store's connections (a restart, an
/// administrator), the next read and the next write get new ones.
#[test]
fn postgres_connections_come_back_after_the_server_drops_them() {
    let store = postgres();
    let e = sg_engine::Engine::new(store, schema()).expect("the engine starts");
    e.upsert_records("Shot", &[obj(json!({"id": 1, "code": "sh010"}))])
        .expect("a shot is written");
    let pid = |store: &PostgresStore, write: bool| -> i64 {
        let mut get = |conn: &mut dyn Connection| {
            conn.query("SELECT pg_backend_pid()", &[])
                .map(|rows| rows[0][0].as_i64().unwrap_or(0))
        };
        if write {
            store.with_transaction(&mut get).expect("a pid")
        } else {
            store.with_reader(&mut get).expect("a pid")
        }
    };
    let admin = postgres();
    for write in [false, true] {
        let before = pid(e.store(), write);
        let mut kill = Fragment::text("SELECT pg_terminate_backend(");
        kill.bind(int(before)).push("::int4)");
        assert_eq!(row_of(&admin, kill), vec![int(1)]);
        // Wait until the server has ended the backend.
        for _ in 0..100 {
            let mut alive = Fragment::text("SELECT COUNT(*) FROM pg_stat_activity WHERE pid = ");
            alive.bind(int(before)).push("::int4");
            if row_of(&admin, alive) == vec![int(0)] {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let shots = entities(&e, json!({"type": "Shot", "return_fields": ["code"]}));
        assert!(!shots.is_empty(), "reads go on");
        e.upsert_records("Shot", &[obj(json!({"id": 2, "code": "sh020"}))])
            .expect("writes go on");
        assert_ne!(pid(e.store(), write), before, "a new connection");
    }
}

/// Many threads read at once while one writes.
#[test]
fn postgres_reads_and_writes_run_side_by_side() {
    let e = sg_engine::Engine::new(postgres(), schema()).expect("the engine starts");
    std::thread::scope(|scope| {
        for reader in 0..4 {
            let e = &e;
            scope.spawn(move || {
                for _ in 0..25 {
                    let shots = entities(e, json!({"type": "Shot", "return_fields": ["code"]}));
                    assert!(shots.len() <= 50, "reader {reader}");
                }
            });
        }
        for id in 1..=50 {
            e.upsert_records(
                "Shot",
                &[obj(json!({"id": id, "code": format!("sh{id:03}")}))],
            )
            .expect("a shot is written");
        }
    });
    let shots = entities(
        &e,
        json!({"type": "Shot", "return_fields": ["code"], "paging": {"entities_per_page": 500}}),
    );
    assert_eq!(shots.len(), 50);
}

/// A transaction that panics is rolled back, and the store goes on: the
/// next transaction gets a new writer, and the schema still drops.
#[test]
fn postgres_goes_on_after_a_transaction_panics() {
    let store = postgres();
    table_of_values(&store);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = store.with_transaction(&mut |conn| -> Result<(), EngineError> {
            conn.execute("INSERT INTO \"t\" (\"i\") VALUES (99)", &[])?;
            panic!("the work panics mid-transaction");
        });
    }));
    assert!(panicked.is_err());
    let count = || row_of(&store, Fragment::text("SELECT COUNT(*) FROM \"t\""));
    assert_eq!(count(), vec![int(4)], "rolled back");
    store
        .with_transaction(&mut |conn| conn.execute("INSERT INTO \"t\" (\"i\") VALUES (100)", &[]))
        .expect("the next transaction runs");
    assert_eq!(count(), vec![int(5)]);
}
