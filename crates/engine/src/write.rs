//! Writing records: the one place that puts a record's values into its table
//! and link tables. Loading a dataset, the simulated site's writes and the
//! cache's sync all go through here.

use std::sync::Arc;

use serde_json::{Map, Value};

use sg_protocol::value::EntityLink;

use crate::codec::{encode_entity, encode_links, encode_scalar};
use crate::error::{bad_request, unknown, EngineError};
use crate::frag::Fragment;
use crate::layout::{FieldLayout, Storage, TableLayout};
use crate::sql::{Dialect, SqlArray, SqlValue};
use crate::store::Connection;

/// Inserts a record or, if its id exists, sets the given fields on it.
/// Fields not in `record` keep their values; `"__retired"` sets the flag.
/// Unknown fields are refused, so nothing is half-written.
pub fn upsert_record(
    conn: &mut dyn Connection,
    table: &TableLayout,
    record: &Map<String, Value>,
) -> Result<(), EngineError> {
    upsert_records(conn, table, std::slice::from_ref(record))
}

/// A column a record sets, by its quoted name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Column {
    Id,
    Retired,
    Named(Arc<str>),
}

impl Column {
    fn name(&self) -> &str {
        match self {
            Column::Id => "\"id\"",
            Column::Retired => "\"__retired\"",
            Column::Named(name) => name,
        }
    }
}

/// The quoted names of columns, separated by commas.
fn column_list(columns: &[Column]) -> String {
    let names: Vec<&str> = columns.iter().map(Column::name).collect();
    names.join(", ")
}

/// A record in stored form: its columns, their kinds and values, and its
/// link lists. It owns all it holds, so it can be made on one thread and
/// written on another.
#[derive(Debug)]
pub(crate) struct Encoded {
    id: i64,
    columns: Vec<Column>,
    kinds: Vec<ColumnKind>,
    values: Vec<SqlValue>,
    links: Vec<(String, Vec<EntityLink>)>,
}

/// The type of a column (see `crate::ddl`): what its array is bound as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnKind {
    Int,
    Real,
    Text,
}

impl ColumnKind {
    fn of(storage: Storage) -> ColumnKind {
        match storage {
            Storage::Id
            | Storage::Integer
            | Storage::Bool
            | Storage::DateTime
            | Storage::Entity
            | Storage::Links => ColumnKind::Int,
            Storage::Real => ColumnKind::Real,
            Storage::Text | Storage::Date | Storage::Json | Storage::Tags => ColumnKind::Text,
        }
    }
}

fn encode_record(table: &TableLayout, record: &Map<String, Value>) -> Result<Encoded, EngineError> {
    let t = &table.entity_type;
    let id = record
        .get("id")
        .and_then(Value::as_i64)
        .ok_or_else(|| bad_request(format!("{t} record needs an integer 'id'")))?;
    let mut encoder = RecordEncoder::new();
    encoder.id(id);
    for (name, value) in record {
        if name == "id" || name == "type" {
            continue;
        }
        if name == "__retired" {
            encoder.retired(value.as_bool().unwrap_or(false));
            continue;
        }
        let field = table.field(name).ok_or_else(|| unknown("write", t, name))?;
        match field.storage {
            Storage::Id => {}
            Storage::Entity => {
                let (link_type, link_id) = encode_entity(field, value)?;
                encoder.entity(field, link_type, link_id);
            }
            Storage::Links => encoder.links(field, encode_links(field, value)?),
            _ => encoder.scalar(field, encode_scalar(field, value)?),
        }
    }
    encoder.finish(table)
}

/// Builds one record's stored form field by field, in the order the fields
/// come (from a record's map, or straight from a reply's JSON text: see
/// `crate::decode`).
pub(crate) struct RecordEncoder {
    id: Option<i64>,
    record: Encoded,
}

impl RecordEncoder {
    pub(crate) fn new() -> RecordEncoder {
        RecordEncoder {
            id: None,
            // The id's value is set by `finish`, wherever it came.
            record: Encoded {
                id: 0,
                columns: vec![Column::Id],
                kinds: vec![ColumnKind::Int],
                values: vec![SqlValue::Null],
                links: Vec::new(),
            },
        }
    }

    pub(crate) fn id(&mut self, id: i64) {
        self.id = Some(id);
    }

    pub(crate) fn retired(&mut self, retired: bool) {
        self.push(
            Column::Retired,
            ColumnKind::Int,
            SqlValue::Int(retired as i64),
        );
    }

    /// An entity field: its type and id columns (both null for no link).
    pub(crate) fn entity(&mut self, field: &FieldLayout, link_type: SqlValue, link_id: SqlValue) {
        self.push(
            Column::Named(field.shared_type_column_name()),
            ColumnKind::Text,
            link_type,
        );
        self.push(
            Column::Named(field.shared_column_name()),
            ColumnKind::Int,
            link_id,
        );
    }

    pub(crate) fn links(&mut self, field: &FieldLayout, links: Vec<EntityLink>) {
        self.record.links.push((field.name.clone(), links));
    }

    /// A single-column field, its value encoded.
    pub(crate) fn scalar(&mut self, field: &FieldLayout, value: SqlValue) {
        self.push(
            Column::Named(field.shared_column_name()),
            ColumnKind::of(field.storage),
            value,
        );
    }

    fn push(&mut self, column: Column, kind: ColumnKind, value: SqlValue) {
        self.record.columns.push(column);
        self.record.kinds.push(kind);
        self.record.values.push(value);
    }

    pub(crate) fn finish(mut self, table: &TableLayout) -> Result<Encoded, EngineError> {
        let id = self.id.ok_or_else(|| {
            bad_request(format!(
                "{} record needs an integer 'id'",
                table.entity_type
            ))
        })?;
        self.record.id = id;
        self.record.values[0] = SqlValue::Int(id);
        Ok(self.record)
    }
}

/// Bound values per statement, well under both stores' limits.
const MAX_PARAMS: usize = 8_000;

/// Rows per run of records written together (an import page is 500).
const MAX_RUN_ROWS: usize = 5_000;

/// Fewer rows than this are written with plain bound values: the array form
/// pays off for bulk loads (import pages, records read whole), not one row.
const MIN_ARRAY_ROWS: usize = 16;

/// The upsert of `ON CONFLICT ("id") DO ...` for `columns` (the first is `id`).
fn on_conflict(columns: &[Column]) -> String {
    if columns.len() > 1 {
        let sets: Vec<String> = columns[1..]
            .iter()
            .map(|c| format!("{0} = excluded.{0}", c.name()))
            .collect();
        format!(" ON CONFLICT (\"id\") DO UPDATE SET {}", sets.join(", "))
    } else {
        " ON CONFLICT (\"id\") DO NOTHING".to_string()
    }
}

/// One column of a run of records as an array of its kind. A value that does
/// not fit the column is refused, as binding it alone would be.
fn column_array(
    table: &TableLayout,
    run: &[Encoded],
    index: usize,
    kind: ColumnKind,
) -> Result<SqlArray, EngineError> {
    let misfit = |value: &SqlValue| {
        bad_request(format!(
            "{}: cannot store {value:?} in column {}",
            table.entity_type,
            run[0].columns[index].name()
        ))
    };
    let values = run.iter().map(|r| &r.values[index]);
    Ok(match kind {
        ColumnKind::Int => SqlArray::Int(
            values
                .map(|v| match v {
                    SqlValue::Null => Ok(None),
                    SqlValue::Int(i) => Ok(Some(*i)),
                    SqlValue::Real(f)
                        if f.fract() == 0.0 && *f >= i64::MIN as f64 && *f < i64::MAX as f64 =>
                    {
                        Ok(Some(*f as i64))
                    }
                    other => Err(misfit(other)),
                })
                .collect::<Result<_, _>>()?,
        ),
        ColumnKind::Real => SqlArray::Real(
            values
                .map(|v| match v {
                    SqlValue::Null => Ok(None),
                    SqlValue::Int(i) => Ok(Some(*i as f64)),
                    SqlValue::Real(f) => Ok(Some(*f)),
                    other => Err(misfit(other)),
                })
                .collect::<Result<_, _>>()?,
        ),
        ColumnKind::Text => SqlArray::Text(
            values
                .map(|v| match v {
                    SqlValue::Null => None,
                    SqlValue::Int(i) => Some(i.to_string()),
                    SqlValue::Real(f) => Some(f.to_string()),
                    SqlValue::Text(t) => Some(t.clone()),
                })
                .collect(),
        ),
    })
}

/// Upserts a run of records that set the same columns on SQLite: one
/// prepared single-row statement run for each. SQLite runs in the process, so
/// a statement costs no round trip, and this skips building, hashing and
/// parsing a statement thousands of values long.
fn upsert_run_row_by_row(
    conn: &mut dyn Connection,
    table: &TableLayout,
    run: &[Encoded],
) -> Result<(), EngineError> {
    let columns = &run[0].columns;
    let placeholders = vec!["?"; columns.len()].join(", ");
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({placeholders}){}",
        table.table(),
        column_list(columns),
        on_conflict(columns)
    );
    conn.execute_each(&sql, &mut run.iter().map(|r| r.values.as_slice()))?;
    Ok(())
}

/// Upserts a run of records that set the same columns in one statement on
/// PostgreSQL, each column bound as one array: the statement's text depends
/// only on the columns, so it is prepared once per table, however many rows.
fn upsert_run_as_arrays(
    conn: &mut dyn Connection,
    table: &TableLayout,
    run: &[Encoded],
) -> Result<(), EngineError> {
    let columns = &run[0].columns;
    let arrays = run[0]
        .kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| column_array(table, run, i, *kind))
        .collect::<Result<Vec<_>, _>>()?;
    let placeholders: Vec<String> = arrays
        .iter()
        .enumerate()
        .map(|(i, a)| format!("${}::{}", i + 1, a.postgres_type()))
        .collect();
    let sql = format!(
        "INSERT INTO {} ({}) SELECT * FROM unnest({}){}",
        table.table(),
        column_list(columns),
        placeholders.join(", "),
        on_conflict(columns)
    );
    conn.execute_arrays(&sql, &arrays)?;
    Ok(())
}

/// Upserts many records of one type in few statements: one multi-row
/// `INSERT ... ON CONFLICT` per run of records that set the same fields, and
/// for each list field one `DELETE` and one multi-row `INSERT` of links.
/// Every value is checked first, so a bad one writes nothing.
pub fn upsert_records(
    conn: &mut dyn Connection,
    table: &TableLayout,
    records: &[Map<String, Value>],
) -> Result<(), EngineError> {
    write_encoded(conn, table, &encode_records(table, records)?)
}

/// Records checked and put in stored form for one table, ready for
/// [`write_encoded`]. Encoding before the write transaction begins keeps the
/// store's one writer busy with writing only (an import encodes pages of
/// several types while one of them is written).
#[derive(Debug, Default)]
pub struct EncodedRecords {
    records: Vec<Encoded>,
}

impl EncodedRecords {
    pub(crate) fn push(&mut self, record: Encoded) {
        self.records.push(record);
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The id of the last record.
    pub fn last_id(&self) -> Option<i64> {
        self.records.last().map(|r| r.id)
    }
}

/// Checks and encodes records of `table`; the first bad value refuses all.
pub fn encode_records(
    table: &TableLayout,
    records: &[Map<String, Value>],
) -> Result<EncodedRecords, EngineError> {
    Ok(EncodedRecords {
        records: records
            .iter()
            .map(|r| encode_record(table, r))
            .collect::<Result<Vec<_>, _>>()?,
    })
}

/// Writes records encoded by [`encode_records`] for the same `table`, as
/// [`upsert_records`] does.
pub fn write_encoded(
    conn: &mut dyn Connection,
    table: &TableLayout,
    encoded: &EncodedRecords,
) -> Result<(), EngineError> {
    let encoded = &encoded.records;
    let postgres = conn.dialect() == Dialect::Postgres;
    let mut start = 0;
    while start < encoded.len() {
        let columns = &encoded[start].columns;
        let mut end = start;
        let mut ids = std::collections::HashSet::new();
        // Same fields, distinct ids (a statement may touch a row once), not too many.
        while end < encoded.len()
            && encoded[end].columns == *columns
            && end - start < MAX_RUN_ROWS
            && ids.insert(encoded[end].id)
        {
            end += 1;
        }
        if postgres && end - start >= MIN_ARRAY_ROWS {
            upsert_run_as_arrays(conn, table, &encoded[start..end])?;
            start = end;
            continue;
        }
        if !postgres {
            upsert_run_row_by_row(conn, table, &encoded[start..end])?;
            start = end;
            continue;
        }
        // A short run on PostgreSQL: one multi-row statement.
        let mut sql = Fragment::text(format!(
            "INSERT INTO {} ({}) VALUES ",
            table.table(),
            column_list(columns)
        ));
        for (row, record) in encoded[start..end].iter().enumerate() {
            sql.push(if row > 0 { ", (" } else { "(" });
            for (i, value) in record.values.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.bind(value.clone());
            }
            sql.push(")");
        }
        sql.push(&on_conflict(columns));
        let (text, params) = sql.finish(conn.dialect());
        conn.execute(&text, &params)?;
        start = end;
    }
    let mut fields: Vec<&str> = encoded
        .iter()
        .flat_map(|e| e.links.iter().map(|(f, _)| f.as_str()))
        .collect();
    fields.sort_unstable();
    fields.dedup();
    for field in fields {
        let lists: Vec<(i64, &Vec<EntityLink>)> = encoded
            .iter()
            .flat_map(|e| {
                e.links
                    .iter()
                    .filter(|(f, _)| f == field)
                    .map(move |(_, l)| (e.id, l))
            })
            .collect();
        replace_links(conn, table, field, &lists)?;
    }
    Ok(())
}

/// Replaces the link lists of one field for several records (the last list
/// given for a record wins), in a few statements whatever their number.
pub fn replace_links(
    conn: &mut dyn Connection,
    table: &TableLayout,
    field: &str,
    lists: &[(i64, &Vec<EntityLink>)],
) -> Result<(), EngineError> {
    let link_table = table.link_table(field);
    let mut latest: Vec<(i64, &Vec<EntityLink>)> = Vec::with_capacity(lists.len());
    let mut slots: std::collections::HashMap<i64, usize> =
        std::collections::HashMap::with_capacity(lists.len());
    for (id, list) in lists {
        match slots.get(id) {
            Some(&slot) => latest[slot].1 = list,
            None => {
                slots.insert(*id, latest.len());
                latest.push((*id, list));
            }
        }
    }
    if conn.dialect() == Dialect::Postgres && latest.len() >= MIN_ARRAY_ROWS {
        return replace_links_as_arrays(conn, &link_table, &latest);
    }
    if conn.dialect() == Dialect::Sqlite {
        return replace_links_row_by_row(conn, &link_table, &latest);
    }
    for chunk in latest.chunks(MAX_PARAMS) {
        let mut delete = Fragment::text(format!("DELETE FROM {link_table} WHERE \"src_id\" IN "));
        delete.in_list(chunk.iter().map(|(id, _)| SqlValue::Int(*id)));
        let (text, params) = delete.finish(conn.dialect());
        conn.execute(&text, &params)?;
    }
    let rows = link_value_rows(&latest);
    for chunk in rows.chunks(MAX_PARAMS / 4) {
        let mut insert = Fragment::text(format!(
            "INSERT INTO {link_table} (\"src_id\", \"pos\", \"dst_type\", \"dst_id\") VALUES "
        ));
        for (i, row) in chunk.iter().enumerate() {
            insert.push(if i > 0 { ", (" } else { "(" });
            for (j, value) in row.iter().enumerate() {
                if j > 0 {
                    insert.push(", ");
                }
                insert.bind(value.clone());
            }
            insert.push(")");
        }
        let (text, params) = insert.finish(conn.dialect());
        conn.execute(&text, &params)?;
    }
    Ok(())
}

/// The rows of the link tables for each record's list: `(record id,
/// position in its list, link)`, a link the list names twice stored once
/// (at its first position).
fn distinct_links<'a>(
    latest: &'a [(i64, &'a Vec<EntityLink>)],
) -> impl Iterator<Item = (i64, i64, &'a EntityLink)> + 'a {
    latest.iter().flat_map(|(id, list)| {
        let mut seen = std::collections::HashSet::new();
        list.iter()
            .enumerate()
            .filter(move |(_, link)| seen.insert((link.entity_type.as_str(), link.id)))
            .map(move |(pos, link)| (*id, pos as i64, link))
    })
}

/// [`distinct_links`] as bound values, in the link table's column order.
fn link_value_rows(latest: &[(i64, &Vec<EntityLink>)]) -> Vec<[SqlValue; 4]> {
    distinct_links(latest)
        .map(|(id, pos, link)| {
            [
                SqlValue::Int(id),
                SqlValue::Int(pos),
                SqlValue::Text(link.entity_type.clone()),
                SqlValue::Int(link.id),
            ]
        })
        .collect()
}

/// [`replace_links`] on SQLite: two prepared statements, one `DELETE` run per
/// record and one `INSERT` per link, as [`upsert_run_row_by_row`] does for
/// rows. A statement of thousands of values would have to be parsed anew for
/// nearly every page: its text changes with the number of links.
fn replace_links_row_by_row(
    conn: &mut dyn Connection,
    link_table: &str,
    latest: &[(i64, &Vec<EntityLink>)],
) -> Result<(), EngineError> {
    let delete = format!("DELETE FROM {link_table} WHERE \"src_id\" = ?");
    let insert = format!(
        "INSERT INTO {link_table} (\"src_id\", \"pos\", \"dst_type\", \"dst_id\") VALUES (?, ?, ?, ?)"
    );
    // Every list is deleted before any is inserted (each record is in
    // `latest` once), so each statement is looked up once.
    let ids: Vec<[SqlValue; 1]> = latest.iter().map(|(id, _)| [SqlValue::Int(*id)]).collect();
    conn.execute_each(&delete, &mut ids.iter().map(|p| p.as_slice()))?;
    let rows = link_value_rows(latest);
    conn.execute_each(&insert, &mut rows.iter().map(|p| p.as_slice()))?;
    Ok(())
}

/// [`replace_links`] on PostgreSQL for many records: one `DELETE` and one
/// `INSERT` with the ids and links bound as arrays.
fn replace_links_as_arrays(
    conn: &mut dyn Connection,
    link_table: &str,
    latest: &[(i64, &Vec<EntityLink>)],
) -> Result<(), EngineError> {
    let ids: Vec<Option<i64>> = latest.iter().map(|(id, _)| Some(*id)).collect();
    conn.execute_arrays(
        &format!("DELETE FROM {link_table} WHERE \"src_id\" = ANY($1::bigint[])"),
        &[SqlArray::Int(ids)],
    )?;
    let (mut src, mut pos, mut dst_type, mut dst_id) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (id, at, link) in distinct_links(latest) {
        src.push(Some(id));
        pos.push(Some(at));
        dst_type.push(Some(link.entity_type.clone()));
        dst_id.push(Some(link.id));
    }
    if src.is_empty() {
        return Ok(());
    }
    conn.execute_arrays(
        &format!(
            "INSERT INTO {link_table} (\"src_id\", \"pos\", \"dst_type\", \"dst_id\") \
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[])"
        ),
        &[
            SqlArray::Int(src),
            SqlArray::Int(pos),
            SqlArray::Text(dst_type),
            SqlArray::Int(dst_id),
        ],
    )?;
    Ok(())
}

/// The next unused id of a type.
pub fn next_id(conn: &mut dyn Connection, table: &TableLayout) -> Result<i64, EngineError> {
    let rows = conn.query(
        &format!("SELECT COALESCE(MAX(\"id\"), 0) + 1 FROM {}", table.table()),
        &[],
    )?;
    Ok(rows.first().and_then(|r| r[0].as_i64()).unwrap_or(1))
}

/// Sets or clears the retired flag of a record; returns whether it changed.
pub fn set_retired(
    conn: &mut dyn Connection,
    table: &TableLayout,
    id: i64,
    retired: bool,
) -> Result<bool, EngineError> {
    let mut sql = Fragment::text(format!("UPDATE {} SET \"__retired\" = ", table.table()));
    sql.bind(SqlValue::Int(retired as i64));
    sql.push(" WHERE \"id\" = ").bind(SqlValue::Int(id));
    sql.push(" AND \"__retired\" = ")
        .bind(SqlValue::Int(!retired as i64));
    let (text, params) = sql.finish(conn.dialect());
    Ok(conn.execute(&text, &params)? > 0)
}
