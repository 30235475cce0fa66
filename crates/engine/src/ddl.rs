//! Creates the tables and indexes of a [`Layout`](crate::layout::Layout), and
//! adds the columns of fields that appear later.

use sg_protocol::DataType;

use crate::layout::{Storage, TableLayout};
use crate::sql::Dialect;

/// The columns of a table's fields (without `id` and `__retired`), as
/// `(name, type)` pairs.
fn column_definitions(table: &TableLayout, dialect: Dialect) -> Vec<(String, String)> {
    let int = dialect.integer_column().to_string();
    let text = dialect.text_column().to_string();
    let mut columns = Vec::new();
    for field in table.fields.values() {
        let name = &field.name;
        match field.storage {
            Storage::Id | Storage::Links => {}
            Storage::Integer | Storage::Bool | Storage::DateTime => {
                columns.push((name.clone(), int.clone()))
            }
            Storage::Real => columns.push((name.clone(), dialect.real_column().to_string())),
            Storage::Text | Storage::Date => columns.push((name.clone(), text.clone())),
            Storage::Json | Storage::Tags => columns.push((name.clone(), "TEXT".to_string())),
            Storage::Entity => {
                columns.push((format!("{name}__type"), text.clone()));
                columns.push((format!("{name}__id"), int.clone()));
            }
        }
    }
    columns
}

/// Link tables and indexes of a table's fields.
fn link_tables_and_indexes(table: &TableLayout, dialect: Dialect) -> Vec<String> {
    let int = dialect.integer_column();
    let text = dialect.text_column();
    let t = &table.entity_type;
    let mut statements = Vec::new();
    for field in table.fields.values() {
        let name = &field.name;
        let index = |columns: &str| {
            format!("CREATE INDEX IF NOT EXISTS \"{t}__{name}__idx\" ON \"{t}\" ({columns})")
        };
        match field.storage {
            Storage::DateTime => statements.push(index(&format!("\"{name}\""))),
            Storage::Text | Storage::Date
                if table.display_field.as_deref() == Some(name.as_str())
                    || matches!(field.data_type, DataType::StatusList | DataType::List) =>
            {
                // With the retired flag in the index, counts and filters on
                // statuses never touch the table itself. Text is compared
                // case-insensitively, so its index holds the folded key.
                let key = match field.storage {
                    Storage::Text => dialect.text_index_key(&format!("\"{name}\"")),
                    _ => format!("\"{name}\""),
                };
                statements.push(index(&format!("{key}, \"__retired\"")))
            }
            Storage::Entity => {
                // Most reads filter a link and the status together (a project
                // and `sg_status_list is 'ip'`): with the status in the link's
                // index, such a page comes straight off the index, in id order.
                let status = table
                    .fields
                    .get("sg_status_list")
                    .filter(|f| f.data_type == DataType::StatusList)
                    .map(|_| ", \"sg_status_list\"")
                    .unwrap_or("");
                statements.push(index(&format!(
                    "\"{name}__id\", \"{name}__type\", \"__retired\"{status}"
                )))
            }
            Storage::Links => {
                statements.push(format!(
                    "CREATE TABLE IF NOT EXISTS \"{t}__{name}\" (\"src_id\" {int} NOT NULL, \"pos\" {int} NOT NULL, \
                     \"dst_type\" {text} NOT NULL, \"dst_id\" {int} NOT NULL, PRIMARY KEY (\"src_id\", \"pos\")){}",
                    link_table_options(dialect)
                ));
                statements.push(format!(
                    "CREATE INDEX IF NOT EXISTS \"{t}__{name}__dst_idx\" ON \"{t}__{name}\" (\"dst_id\", \"dst_type\")"
                ));
            }
            _ => {}
        }
    }
    statements
}

/// The statement that creates one type's table (without its link tables and indexes).
fn create_main_table_sql(table: &TableLayout, dialect: Dialect) -> String {
    let int = dialect.integer_column();
    let mut columns = vec![
        format!("\"id\" {int} PRIMARY KEY"),
        format!("\"__retired\" {int} NOT NULL DEFAULT 0"),
    ];
    columns.extend(
        column_definitions(table, dialect)
            .into_iter()
            .map(|(n, d)| format!("\"{n}\" {d}")),
    );
    format!(
        "CREATE TABLE IF NOT EXISTS \"{}\" ({});\n",
        table.entity_type,
        columns.join(", ")
    )
}

/// The statements that create one type's table, link tables and indexes.
/// They are idempotent (`IF NOT EXISTS`).
pub fn create_table_sql(table: &TableLayout, dialect: Dialect) -> String {
    let mut sql = create_main_table_sql(table, dialect);
    for stmt in link_tables_and_indexes(table, dialect) {
        sql.push_str(&stmt);
        sql.push_str(";\n");
    }
    sql
}

/// Creates a type's table, or brings the existing one to its layout: adds
/// the columns of fields chosen since it was made and drops those of fields
/// no longer chosen (and their link tables), then creates its link tables
/// and indexes, once every column they name exists.
pub fn ensure_columns(
    conn: &mut dyn crate::store::Connection,
    table: &TableLayout,
    dialect: Dialect,
) -> Result<(), crate::error::EngineError> {
    use crate::sql::SqlValue;
    conn.execute_batch(&create_main_table_sql(table, dialect))?;
    let name = table.entity_type.as_str();
    let (columns_sql, _) = crate::frag::Fragment::text(dialect.columns_sql()).finish(dialect);
    let present: Vec<String> = conn
        .query(&columns_sql, &[SqlValue::Text(name.to_string())])?
        .into_iter()
        .filter_map(|r| r.first().and_then(|v| v.as_str().map(str::to_string)))
        .collect();
    let wanted = column_definitions(table, dialect);
    for (column, definition) in &wanted {
        if !present.contains(column) {
            conn.execute_batch(&format!(
                "ALTER TABLE \"{name}\" ADD COLUMN \"{column}\" {definition}"
            ))?;
        }
    }
    let keep: Vec<&str> = wanted
        .iter()
        .map(|(c, _)| c.as_str())
        .chain(["id", "__retired"])
        .collect();
    let stale: Vec<&String> = present
        .iter()
        .filter(|c| !keep.contains(&c.as_str()))
        .collect();
    if !stale.is_empty() {
        // Indexes name the field; a link index also carries the status.
        for field in table
            .fields
            .values()
            .filter(|f| f.storage == Storage::Entity)
        {
            conn.execute_batch(&format!(
                "DROP INDEX IF EXISTS \"{name}__{}__idx\"",
                field.name
            ))?;
        }
        // Every index of a stale field goes before any column: a stale link's
        // index may carry another stale column (the status).
        for column in &stale {
            let field = column
                .strip_suffix("__type")
                .or_else(|| column.strip_suffix("__id"))
                .unwrap_or(column);
            conn.execute_batch(&format!("DROP INDEX IF EXISTS \"{name}__{field}__idx\""))?;
        }
        for column in stale {
            conn.execute_batch(&format!("ALTER TABLE \"{name}\" DROP COLUMN \"{column}\""))?;
        }
    }
    // Link tables of multi-entity fields no longer chosen.
    let (tables_sql, _) = crate::frag::Fragment::text(dialect.tables_sql()).finish(dialect);
    let prefix = format!("{name}__");
    for existing in conn.query(&tables_sql, &[])? {
        let Some(existing) = existing
            .first()
            .and_then(|v| v.as_str().map(str::to_string))
        else {
            continue;
        };
        if let Some(field) = existing.strip_prefix(&prefix) {
            let chosen = table
                .field(field)
                .is_some_and(|f| f.storage == Storage::Links);
            if !chosen && !field.contains("__") {
                conn.execute_batch(&format!("DROP TABLE IF EXISTS \"{existing}\""))?;
            }
        }
    }
    conn.execute_batch(&create_table_sql(table, dialect))
}

/// The statements that create one type's table and link tables with their
/// primary keys only: a table about to be bulk-loaded gets its other indexes
/// afterwards (from [`create_table_sql`]), which is much faster.
pub fn create_unindexed_sql(table: &TableLayout, dialect: Dialect) -> String {
    let mut sql = create_main_table_sql(table, dialect);
    for stmt in link_tables_and_indexes(table, dialect) {
        if stmt.starts_with("CREATE TABLE") {
            sql.push_str(&stmt);
            sql.push_str(";\n");
        }
    }
    sql
}

/// The names of the tables that hold a type: `<table>` and its link tables
/// `<table>__<field>` (a field name never contains `__`).
pub fn tables_of(
    conn: &mut dyn crate::store::Connection,
    table_name: &str,
    dialect: Dialect,
) -> Result<Vec<String>, crate::error::EngineError> {
    let (tables_sql, _) = crate::frag::Fragment::text(dialect.tables_sql()).finish(dialect);
    let prefix = format!("{table_name}__");
    Ok(conn
        .query(&tables_sql, &[])?
        .into_iter()
        .filter_map(|r| r.first().and_then(|v| v.as_str().map(str::to_string)))
        .filter(|t| {
            t == table_name
                || t.strip_prefix(&prefix)
                    .is_some_and(|f| !f.is_empty() && !f.contains("__"))
        })
        .collect())
}

/// Refreshes the planner's statistics of a type's table and link tables
/// (after a bulk load). On SQLite from a sample of each index: the planner
/// needs their shape, not exact counts, and a full analysis reads every
/// index of the type again.
pub fn analyze_tables_of(
    conn: &mut dyn crate::store::Connection,
    table_name: &str,
    dialect: Dialect,
) -> Result<(), crate::error::EngineError> {
    let names = tables_of(conn, table_name, dialect)?;
    if dialect == Dialect::Sqlite {
        conn.execute_batch("PRAGMA analysis_limit = 1000")?;
    }
    for name in &names {
        conn.execute_batch(&format!("ANALYZE \"{name}\""))?;
    }
    Ok(())
}

/// Drops a type's table and link tables.
pub fn drop_tables_of(
    conn: &mut dyn crate::store::Connection,
    table_name: &str,
    dialect: Dialect,
) -> Result<(), crate::error::EngineError> {
    for t in tables_of(conn, table_name, dialect)? {
        conn.execute_batch(&format!("DROP TABLE IF EXISTS \"{t}\""))?;
    }
    Ok(())
}

/// The fields a type's stored table holds, read from its columns and link
/// tables (`None` when there is no such table).
pub fn stored_fields(
    conn: &mut dyn crate::store::Connection,
    table_name: &str,
    dialect: Dialect,
) -> Result<Option<std::collections::BTreeSet<String>>, crate::error::EngineError> {
    use crate::sql::SqlValue;
    let tables = tables_of(conn, table_name, dialect)?;
    if !tables.iter().any(|t| t == table_name) {
        return Ok(None);
    }
    let (columns_sql, _) = crate::frag::Fragment::text(dialect.columns_sql()).finish(dialect);
    let mut fields = std::collections::BTreeSet::new();
    for row in conn.query(&columns_sql, &[SqlValue::Text(table_name.to_string())])? {
        let Some(column) = row.first().and_then(|v| v.as_str()) else {
            continue;
        };
        if column == "__retired" {
            continue;
        }
        let field = column
            .strip_suffix("__type")
            .or_else(|| column.strip_suffix("__id"))
            .unwrap_or(column);
        fields.insert(field.to_string());
    }
    let prefix = format!("{table_name}__");
    fields.extend(
        tables
            .iter()
            .filter_map(|t| t.strip_prefix(&prefix).map(str::to_string)),
    );
    Ok(Some(fields))
}

/// Renames a type's table and link tables from `from` to `to` (whose tables
/// must be gone). On PostgreSQL the indexes that carry the old name (the
/// primary keys) are renamed too, since index names are shared by a schema.
pub fn rename_tables_of(
    conn: &mut dyn crate::store::Connection,
    from: &str,
    to: &str,
    dialect: Dialect,
) -> Result<(), crate::error::EngineError> {
    use crate::sql::SqlValue;
    for t in tables_of(conn, from, dialect)? {
        let renamed = format!("{to}{}", &t[from.len()..]);
        conn.execute_batch(&format!("ALTER TABLE \"{t}\" RENAME TO \"{renamed}\""))?;
        if dialect == Dialect::Postgres {
            let mut query = crate::frag::Fragment::text(
                "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() AND tablename = ",
            );
            query.bind(SqlValue::Text(renamed.clone()));
            let (sql, params) = query.finish(dialect);
            let indexes = conn.query(&sql, &params)?;
            for index in indexes {
                let Some(index) = index.first().and_then(|v| v.as_str()) else {
                    continue;
                };
                if let Some(rest) = index.strip_prefix(from) {
                    conn.execute_batch(&format!(
                        "ALTER INDEX \"{index}\" RENAME TO \"{to}{rest}\""
                    ))?;
                }
            }
        }
    }
    Ok(())
}

/// The statements that drop a table's secondary indexes (those
/// [`create_table_sql`] makes besides the primary keys), before a bulk load.
pub fn drop_indexes_sql(table: &TableLayout, _dialect: Dialect) -> String {
    let t = &table.entity_type;
    let mut sql = String::new();
    for field in table.fields.values() {
        let name = &field.name;
        sql.push_str(&format!("DROP INDEX IF EXISTS \"{t}__{name}__idx\";\n"));
        if field.storage == Storage::Links {
            sql.push_str(&format!("DROP INDEX IF EXISTS \"{t}__{name}__dst_idx\";\n"));
        }
    }
    sql
}

/// SQLite keeps a link table in its primary key's B-tree alone: a link row
/// is no more than its key, and a rowid table would store each row twice,
/// once by rowid and once in the key's index.
fn link_table_options(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => " WITHOUT ROWID",
        Dialect::Postgres => "",
    }
}
