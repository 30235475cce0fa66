//! Creates the tables and indexes of a [`Layout`].

use crate::layout::{Storage, TableLayout};
use crate::sql::Dialect;

/// The statements that create one type's table, link tables and indexes.
/// They are idempotent (`IF NOT EXISTS`).
pub fn create_table_sql(table: &TableLayout, dialect: Dialect) -> String {
    let int = dialect.integer_column();
    let text = dialect.text_column();
    let mut columns = vec![
        format!("\"id\" {int} PRIMARY KEY"),
        format!("\"__retired\" {int} NOT NULL DEFAULT 0"),
    ];
    let mut indexes = Vec::new();
    let mut link_tables = Vec::new();
    let t = &table.entity_type;
    for field in table.fields.values() {
        let name = &field.name;
        match field.storage {
            Storage::Id => {}
            Storage::Integer | Storage::Bool | Storage::DateTime => {
                columns.push(format!("\"{name}\" {int}"));
                if field.storage == Storage::DateTime {
                    indexes.push(format!(
                        "CREATE INDEX IF NOT EXISTS \"{t}__{name}__idx\" ON \"{t}\" (\"{name}\")"
                    ));
                }
            }
            Storage::Real => columns.push(format!("\"{name}\" {}", dialect.real_column())),
            Storage::Text | Storage::Date => {
                columns.push(format!("\"{name}\" {text}"));
                let indexed = table.display_field.as_deref() == Some(name.as_str())
                    || matches!(
                        field.data_type,
                        sg_protocol::DataType::StatusList | sg_protocol::DataType::List
                    );
                if indexed {
                    indexes.push(format!(
                        "CREATE INDEX IF NOT EXISTS \"{t}__{name}__idx\" ON \"{t}\" (\"{name}\")"
                    ));
                }
            }
            Storage::Json => columns.push(format!("\"{name}\" TEXT")),
            Storage::Entity => {
                columns.push(format!("\"{name}__type\" {text}"));
                columns.push(format!("\"{name}__id\" {int}"));
                indexes.push(format!(
                    "CREATE INDEX IF NOT EXISTS \"{t}__{name}__idx\" ON \"{t}\" (\"{name}__id\", \"{name}__type\")"
                ));
            }
            Storage::Links => {
                link_tables.push(format!(
                    "CREATE TABLE IF NOT EXISTS \"{t}__{name}\" (\"src_id\" {int} NOT NULL, \"pos\" {int} NOT NULL, \
                     \"dst_type\" {text} NOT NULL, \"dst_id\" {int} NOT NULL, PRIMARY KEY (\"src_id\", \"pos\"))"
                ));
                indexes.push(format!(
                    "CREATE INDEX IF NOT EXISTS \"{t}__{name}__dst_idx\" ON \"{t}__{name}\" (\"dst_id\", \"dst_type\")"
                ));
            }
        }
    }
    let mut sql = format!(
        "CREATE TABLE IF NOT EXISTS \"{t}\" ({});\n",
        columns.join(", ")
    );
    for stmt in link_tables.iter().chain(indexes.iter()) {
        sql.push_str(stmt);
        sql.push_str(";\n");
    }
    sql
}
