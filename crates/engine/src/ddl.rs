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
            Storage::Json => columns.push((name.clone(), "TEXT".to_string())),
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
                     \"dst_type\" {text} NOT NULL, \"dst_id\" {int} NOT NULL, PRIMARY KEY (\"src_id\", \"pos\"))"
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

/// The statements that create one type's table, link tables and indexes.
/// They are idempotent (`IF NOT EXISTS`).
pub fn create_table_sql(table: &TableLayout, dialect: Dialect) -> String {
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
    let mut sql = format!(
        "CREATE TABLE IF NOT EXISTS \"{}\" ({});\n",
        table.entity_type,
        columns.join(", ")
    );
    for stmt in link_tables_and_indexes(table, dialect) {
        sql.push_str(&stmt);
        sql.push_str(";\n");
    }
    sql
}

/// The statements that add to `old`'s table the fields `new` has and it lacks.
pub fn add_fields_sql(old: &TableLayout, new: &TableLayout, dialect: Dialect) -> String {
    let added = TableLayout {
        entity_type: new.entity_type.clone(),
        fields: new
            .fields
            .iter()
            .filter(|(name, _)| !old.fields.contains_key(*name))
            .map(|(name, f)| (name.clone(), f.clone()))
            .collect(),
        display_field: None,
    };
    let t = &new.entity_type;
    let mut sql = String::new();
    for (column, definition) in column_definitions(&added, dialect) {
        sql.push_str(&format!(
            "ALTER TABLE \"{t}\" ADD COLUMN \"{column}\" {definition};\n"
        ));
    }
    for stmt in link_tables_and_indexes(&added, dialect) {
        sql.push_str(&stmt);
        sql.push_str(";\n");
    }
    sql
}

/// The statements that remove from `old`'s table the fields `new` no longer
/// has: their indexes, columns and link tables, so the same field name can
/// be created again later.
pub fn drop_fields_sql(old: &TableLayout, new: &TableLayout) -> String {
    let t = &old.entity_type;
    let mut sql = String::new();
    // The link indexes carry the status too: they go with it (set_schema
    // creates them again without it).
    if old.fields.contains_key("sg_status_list") && !new.fields.contains_key("sg_status_list") {
        for field in old.fields.values().filter(|f| f.storage == Storage::Entity) {
            sql.push_str(&format!(
                "DROP INDEX IF EXISTS \"{t}__{}__idx\";\n",
                field.name
            ));
        }
    }
    for field in old
        .fields
        .values()
        .filter(|f| !new.fields.contains_key(&f.name))
    {
        let name = &field.name;
        match field.storage {
            Storage::Id => {}
            Storage::Links => {
                sql.push_str(&format!("DROP TABLE IF EXISTS \"{t}__{name}\";\n"));
            }
            Storage::Entity => {
                sql.push_str(&format!("DROP INDEX IF EXISTS \"{t}__{name}__idx\";\n"));
                sql.push_str(&format!(
                    "ALTER TABLE \"{t}\" DROP COLUMN \"{name}__type\";\n"
                ));
                sql.push_str(&format!(
                    "ALTER TABLE \"{t}\" DROP COLUMN \"{name}__id\";\n"
                ));
            }
            _ => {
                sql.push_str(&format!("DROP INDEX IF EXISTS \"{t}__{name}__idx\";\n"));
                sql.push_str(&format!("ALTER TABLE \"{t}\" DROP COLUMN \"{name}\";\n"));
            }
        }
    }
    sql
}
