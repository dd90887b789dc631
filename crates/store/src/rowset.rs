//! Many rows in ONE bound parameter: a JSON array of objects that the
//! database unpacks into a table (`json_to_recordset` on PostgreSQL,
//! `json_each` on SQLite).
//!
//! Why: a multi-row `VALUES ($1, ...), ($12, ...)` list has a different SQL
//! text for every batch size, and each text is parsed, planned and cached as
//! a prepared statement of its own. A busy gateway wrote a few hundred such
//! texts per run of the benchmark, overflowing sqlx's per-connection
//! statement cache (so they were prepared again and again) and spending about
//! an eighth of PostgreSQL's statement time on planning. One JSON parameter
//! keeps one text, prepared once per connection, whatever the batch size,
//! and has no limit on bind parameters to cut batches for.

use crate::Backend;

/// SQL types of a row set's columns (PostgreSQL names; SQLite takes what the
/// JSON holds: integers, text or NULL).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Type {
    Text,
    BigInt,
}

impl Type {
    fn postgres(self) -> &'static str {
        match self {
            Type::Text => "text",
            Type::BigInt => "bigint",
        }
    }
}

/// A table expression aliased `r` that reads the JSON array of objects
/// (encoded with `to_json`) bound at placeholder `$param`: one row per
/// element, with `columns` taken from the element's fields of the same
/// names, plus `r.ord`, the element's position, to `ORDER BY` when the
/// rows' order matters (ids given out in it).
pub(crate) fn table(backend: Backend, param: usize, columns: &[(&str, Type)]) -> String {
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    match backend {
        Backend::Postgres => {
            let defs: Vec<String> = columns
                .iter()
                .map(|(name, ty)| format!("{name} {}", ty.postgres()))
                .collect();
            format!(
                "ROWS FROM (json_to_recordset(CAST(${param} AS json)) AS ({})) \
                 WITH ORDINALITY AS r({}, ord)",
                defs.join(", "),
                names.join(", ")
            )
        }
        Backend::Sqlite => {
            let fields: Vec<String> = names
                .iter()
                .map(|name| format!("json_extract(value, '$.{name}') AS {name}"))
                .collect();
            format!(
                "(SELECT {}, key AS ord FROM json_each(${param})) AS r",
                fields.join(", ")
            )
        }
    }
}

/// A one-column table of the JSON array of scalars bound at `$param`, for
/// `x IN (SELECT v FROM ...)`: the id lists of deletes and lookups, one SQL
/// text whatever their length.
pub(crate) fn list(backend: Backend, param: usize, ty: Type) -> String {
    match backend {
        Backend::Postgres => format!(
            "(SELECT CAST(value AS {}) AS v FROM json_array_elements_text(CAST(${param} AS json)))",
            ty.postgres()
        ),
        Backend::Sqlite => format!("(SELECT value AS v FROM json_each(${param}))"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_table_names_types_and_order() {
        let sql = table(
            Backend::Postgres,
            2,
            &[("a", Type::Text), ("b", Type::BigInt)],
        );
        assert_eq!(
            sql,
            "ROWS FROM (json_to_recordset(CAST($2 AS json)) AS (a text, b bigint)) \
             WITH ORDINALITY AS r(a, b, ord)"
        );
    }

    #[test]
    fn sqlite_table_extracts_each_field() {
        let sql = table(
            Backend::Sqlite,
            1,
            &[("a", Type::Text), ("b", Type::BigInt)],
        );
        assert_eq!(
            sql,
            "(SELECT json_extract(value, '$.a') AS a, json_extract(value, '$.b') AS b, \
             key AS ord FROM json_each($1)) AS r"
        );
    }
}
