//! SQL fragments: a piece of SQL text with `?` placeholders and the values
//! bound to them, in order. Fragments compose freely; [`Fragment::finish`]
//! turns the placeholders into the dialect's own when the statement is whole.

use crate::sql::{Dialect, SqlValue};

/// IN lists longer than this are split by their callers, to stay under the
/// stores' limits on bound parameters.
pub const IN_LIST_MAX: usize = 500;

/// Terms joined flat by [`Fragment::join_balanced`]; more are split in halves.
const FLAT_JOIN_MAX: usize = 64;

#[derive(Debug, Clone, Default)]
pub struct Fragment {
    pub sql: String,
    pub params: Vec<SqlValue>,
}

impl Fragment {
    pub fn new() -> Fragment {
        Fragment::default()
    }

    /// A fragment of text alone.
    pub fn text(sql: impl Into<String>) -> Fragment {
        Fragment {
            sql: sql.into(),
            params: Vec::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> &mut Self {
        self.sql.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub fn bind(&mut self, value: SqlValue) -> &mut Self {
        self.sql.push('?');
        self.params.push(value);
        self
    }

    /// Appends `(?, ?, ...)` with a placeholder bound to each value: the
    /// list of an `IN`. The values must not be empty (`()` is not SQL).
    pub fn in_list(&mut self, values: impl IntoIterator<Item = SqlValue>) -> &mut Self {
        self.sql.push('(');
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.bind(value);
        }
        self.sql.push(')');
        self
    }

    /// [`Fragment::in_list`] of ids.
    pub fn in_ids(&mut self, ids: &[i64]) -> &mut Self {
        self.in_list(ids.iter().map(|id| SqlValue::Int(*id)))
    }

    pub fn append(&mut self, other: Fragment) -> &mut Self {
        self.sql.push_str(&other.sql);
        self.params.extend(other.params);
        self
    }

    /// Joins fragments with a separator.
    pub fn join(parts: Vec<Fragment>, separator: &str) -> Fragment {
        let mut out = Fragment::new();
        for (i, part) in parts.into_iter().enumerate() {
            if i > 0 {
                out.push(separator);
            }
            out.append(part);
        }
        out
    }

    /// Joins fragments with a separator as a balanced tree of parenthesized
    /// halves once there are many: SQLite refuses an expression nested more
    /// than 1,000 deep, and `a OR b OR c ...` nests one level per term. Both
    /// stores flatten the halves again when they plan, so the meaning and the
    /// plan are those of the flat list.
    pub fn join_balanced(mut parts: Vec<Fragment>, separator: &str) -> Fragment {
        if parts.len() <= FLAT_JOIN_MAX {
            return Fragment::join(parts, separator);
        }
        let right = parts.split_off(parts.len() / 2);
        let mut out = Fragment::text("(");
        out.append(Fragment::join_balanced(parts, separator))
            .push(")")
            .push(separator)
            .push("(")
            .append(Fragment::join_balanced(right, separator))
            .push(")");
        out
    }

    /// The statement text for `dialect`. Placeholders are the only `?` in the
    /// text: values are never inlined and identifiers are plain names.
    ///
    /// PostgreSQL numbers its placeholders (`$1`, `$2`, ...) and gives each a
    /// type when the statement is prepared, from where it stands. SQLite
    /// compares values by their own type instead, so each placeholder whose
    /// value is known is cast to that value's type (`$1::bigint`,
    /// `$2::float8`, `$3::text`): `sg_cut_in > 1.5` then compares as numbers
    /// on both, as the value was written, and a placeholder in a spot that
    /// names no type (`lower(?)`) still has one. A null, or a placeholder
    /// written without its value, takes the type of where it stands.
    pub fn finish(self, dialect: Dialect) -> (String, Vec<SqlValue>) {
        match dialect {
            Dialect::Sqlite => (self.sql, self.params),
            Dialect::Postgres => {
                let mut out = String::with_capacity(self.sql.len() + 16);
                let mut n = 0;
                for c in self.sql.chars() {
                    if c == '?' {
                        let cast = match self.params.get(n) {
                            Some(SqlValue::Int(_)) => "::bigint",
                            Some(SqlValue::Real(_)) => "::float8",
                            Some(SqlValue::Text(_)) => "::text",
                            Some(SqlValue::Null) | None => "",
                        };
                        n += 1;
                        out.push_str(&format!("${n}{cast}"));
                    } else {
                        out.push(c);
                    }
                }
                (out, self.params)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_keep_values_in_text_order() {
        let mut a = Fragment::text("x = ");
        a.bind(SqlValue::Int(1));
        let mut b = Fragment::text("y = ");
        b.bind(SqlValue::Text("q".into()));
        let joined = Fragment::join(vec![a, b], " AND ");
        let (sql, params) = joined.clone().finish(Dialect::Postgres);
        assert_eq!(sql, "x = $1::bigint AND y = $2::text");
        assert_eq!(params, vec![SqlValue::Int(1), SqlValue::Text("q".into())]);
        assert_eq!(joined.finish(Dialect::Sqlite).0, "x = ? AND y = ?");
    }

    #[test]
    fn long_joins_nest_as_a_shallow_tree_with_values_in_order() {
        let parts: Vec<Fragment> = (0..1000)
            .map(|i| {
                let mut f = Fragment::text("x = ");
                f.bind(SqlValue::Int(i));
                f
            })
            .collect();
        let joined = Fragment::join_balanced(parts, " OR ");
        let (mut depth, mut deepest) = (0, 0);
        for c in joined.sql.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            deepest = deepest.max(depth);
        }
        assert!(deepest <= 5, "nested {deepest} deep");
        assert_eq!(joined.sql.matches(" OR ").count(), 999);
        assert_eq!(
            joined.params,
            (0..1000).map(SqlValue::Int).collect::<Vec<_>>()
        );
    }

    #[test]
    fn in_lists_bind_each_value_in_order() {
        let mut f = Fragment::text("x IN ");
        f.in_list([SqlValue::Int(3), SqlValue::Text("a".into())])
            .push(" AND y IN ")
            .in_ids(&[4]);
        assert_eq!(f.sql, "x IN (?, ?) AND y IN (?)");
        assert_eq!(
            f.params,
            vec![
                SqlValue::Int(3),
                SqlValue::Text("a".into()),
                SqlValue::Int(4)
            ]
        );
    }

    #[test]
    fn postgres_placeholders_carry_the_type_of_their_value() {
        let mut f = Fragment::text("a > ");
        f.bind(SqlValue::Real(1.5))
            .push(" AND b = ")
            .bind(SqlValue::Null)
            .push(" AND c IN (?, ?)");
        let (sql, params) = f.finish(Dialect::Postgres);
        assert_eq!(sql, "a > $1::float8 AND b = $2 AND c IN ($3, $4)");
        assert_eq!(params, vec![SqlValue::Real(1.5), SqlValue::Null]);
    }
}
