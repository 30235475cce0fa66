//! SQL text building: bound values, identifier quoting, and the [`Dialect`]
//! seam that keeps the query logic free of backend-specific syntax.
//!
//! Values only ever reach SQL as bound parameters; identifiers only ever come
//! from the schema, and [`quote_ident`] refuses any that are not plain names.

use crate::error::EngineError;

/// A value bound to a statement or read back from one.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl SqlValue {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            SqlValue::Int(i) => Some(*i),
            SqlValue::Real(f) => Some(*f as i64),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            SqlValue::Text(s) => Some(s),
            _ => None,
        }
    }
    pub fn is_null(&self) -> bool {
        matches!(self, SqlValue::Null)
    }
}

/// A column of values bound as one array parameter (see
/// [`crate::store::Connection::execute_arrays`]).
#[derive(Debug, Clone, PartialEq)]
pub enum SqlArray {
    Int(Vec<Option<i64>>),
    Real(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
}

impl SqlArray {
    /// The PostgreSQL array type a placeholder of this column is cast to.
    pub fn postgres_type(&self) -> &'static str {
        match self {
            SqlArray::Int(_) => "bigint[]",
            SqlArray::Real(_) => "double precision[]",
            SqlArray::Text(_) => "text[]",
        }
    }
}

/// The type of the items of a list bound as JSON (see [`Dialect::json_items`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    Int,
    Real,
    Text,
}

impl ItemKind {
    /// The kind of a list of stored values (real if any is), and the list
    /// as a JSON array; `None` if it holds nulls.
    pub fn json_list(values: &[SqlValue]) -> Option<(ItemKind, String)> {
        let mut kind = ItemKind::Int;
        let mut items = Vec::with_capacity(values.len());
        for v in values {
            items.push(match v {
                SqlValue::Int(i) => serde_json::Value::from(*i),
                SqlValue::Real(f) => {
                    kind = ItemKind::Real;
                    serde_json::Value::from(*f)
                }
                SqlValue::Text(t) => {
                    kind = ItemKind::Text;
                    serde_json::Value::from(t.as_str())
                }
                SqlValue::Null => return None,
            });
        }
        Some((kind, serde_json::Value::Array(items).to_string()))
    }
}

/// What differs between the SQL of the backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// A query listing the columns of `table` (bound as `?`).
    pub fn columns_sql(self) -> &'static str {
        match self {
            Dialect::Sqlite => "SELECT name FROM pragma_table_info(?)",
            Dialect::Postgres => {
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() \
                 AND table_name = ?"
            }
        }
    }

    /// A query listing every table's name.
    pub fn tables_sql(self) -> &'static str {
        match self {
            Dialect::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'",
            Dialect::Postgres => {
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            }
        }
    }

    /// A query with one row when `table` has a column `column` (both bound as `?`).
    pub fn column_exists_sql(self) -> &'static str {
        match self {
            Dialect::Sqlite => "SELECT 1 FROM pragma_table_info(?) WHERE name = ?",
            Dialect::Postgres => {
                "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() \
                 AND table_name = ? AND column_name = ?"
            }
        }
    }

    /// A case-insensitive equality between a text column and a bound `value`.
    /// SQLite text columns are declared `COLLATE NOCASE`, which folds ASCII
    /// letters and lets the index serve the comparison; values with other
    /// letters are compared through `sg_casefold`, a function every SQLite
    /// connection of the engine registers. PostgreSQL compares `lower()` of
    /// both sides (its text indexes are on `lower(column)`, see
    /// [`Dialect::text_index_key`]); `lower` folds every letter when the
    /// database's `LC_CTYPE` is a UTF-8 locale (`C.UTF-8`, `en_US.UTF-8`, ...),
    /// and ASCII letters only under plain `C`.
    pub fn text_equals(self, column: &str, placeholder: &str, value: &str) -> String {
        match self {
            Dialect::Sqlite if value.is_ascii() => format!("{column} = {placeholder}"),
            Dialect::Sqlite => format!("sg_casefold({column}) = sg_casefold({placeholder})"),
            Dialect::Postgres => format!("lower({column}) = lower({placeholder})"),
        }
    }

    /// A case-insensitive pattern match with `\` as the escape character.
    /// `ILIKE` folds letters as `lower` does (see [`Dialect::text_equals`]).
    pub fn text_like(self, expr: &str, placeholder: &str, pattern: &str) -> String {
        match self {
            Dialect::Sqlite if pattern.is_ascii() => {
                format!("{expr} LIKE {placeholder} ESCAPE '\\'")
            }
            Dialect::Sqlite => {
                format!("sg_casefold({expr}) LIKE sg_casefold({placeholder}) ESCAPE '\\'")
            }
            Dialect::Postgres => format!("{expr} ILIKE {placeholder} ESCAPE '\\'"),
        }
    }

    /// An expression folded to lower case, for comparing non-ASCII text.
    pub fn fold(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => format!("sg_casefold({expr})"),
            Dialect::Postgres => format!("lower({expr})"),
        }
    }

    /// A text expression as an ORDER BY key: ASCII letters folded, then byte
    /// order, which is SQLite's `NOCASE`. On PostgreSQL `lower` under the `C`
    /// collation folds exactly the ASCII letters, and `C` orders by bytes, so
    /// both stores sort alike whatever the database's own collation is. On
    /// SQLite a text column already has this collation (and its index serves
    /// the sort); the `COLLATE` matters for computed names (entity links).
    pub fn sort_text(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => format!("{expr} COLLATE NOCASE"),
            Dialect::Postgres => format!("lower({expr} COLLATE \"C\")"),
        }
    }

    /// A text expression as an ORDER BY key in byte order, for text that
    /// letters' case does not matter in (dates, JSON): SQLite's order, and on
    /// PostgreSQL the `C` collation's rather than the database's.
    pub fn sort_bytes(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => expr.to_string(),
            Dialect::Postgres => format!("{expr} COLLATE \"C\""),
        }
    }

    /// The key an index on a text column holds, so that the case-insensitive
    /// comparisons of [`Dialect::text_equals`] (and folded `IN` lists) can use
    /// it: the column itself on SQLite (declared `NOCASE`), `lower(column)` on
    /// PostgreSQL.
    pub fn text_index_key(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => column.to_string(),
            Dialect::Postgres => format!("lower({column})"),
        }
    }

    /// A subquery giving the items of a JSON array bound to its one
    /// placeholder, one row each, as `item` makes of the column `value` (a
    /// cast or a fold): how a long list of values is bound as one parameter,
    /// where a placeholder each would pass the stores' limits on them
    /// (32,766 on SQLite, 65,535 on PostgreSQL). `kind` is the items' type.
    pub fn json_items(self, kind: ItemKind, item: impl Fn(&str) -> String) -> String {
        match self {
            Dialect::Sqlite => format!("SELECT {} FROM json_each(?)", item("value")),
            Dialect::Postgres => {
                let typed = match kind {
                    ItemKind::Int => "value::bigint",
                    ItemKind::Real => "value::float8",
                    ItemKind::Text => "value",
                };
                format!(
                    "SELECT {} FROM jsonb_array_elements_text(?::jsonb)",
                    item(typed)
                )
            }
        }
    }

    /// The column type and collation of text columns.
    pub fn text_column(self) -> &'static str {
        match self {
            Dialect::Sqlite => "TEXT COLLATE NOCASE",
            Dialect::Postgres => "TEXT",
        }
    }

    pub fn integer_column(self) -> &'static str {
        match self {
            Dialect::Sqlite => "INTEGER",
            Dialect::Postgres => "BIGINT",
        }
    }

    pub fn real_column(self) -> &'static str {
        match self {
            Dialect::Sqlite => "REAL",
            Dialect::Postgres => "DOUBLE PRECISION",
        }
    }
}

/// Quotes an identifier that came from the schema. Anything but letters,
/// digits and underscores is refused, so no name can smuggle SQL in.
pub fn quote_ident(name: &str) -> Result<String, EngineError> {
    if is_plain_ident(name) {
        Ok(format!("\"{name}\""))
    } else {
        Err(EngineError::BadIdentifier(name.to_string()))
    }
}

pub fn is_plain_ident(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 60
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Escapes `%`, `_` and `\` for a LIKE pattern.
pub fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_that_look_like_sql_are_refused() {
        assert_eq!(quote_ident("sg_status_list").unwrap(), "\"sg_status_list\"");
        for bad in [
            "code; DROP TABLE Shot",
            "a\"b",
            "",
            "x y",
            "code--",
            "naïve",
        ] {
            assert!(quote_ident(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(escape_like("50%_a\\b"), "50\\%\\_a\\\\b");
    }
}
