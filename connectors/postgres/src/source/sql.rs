//! The statements a pass runs: each column turned into its JSON value on the server, and the
//! keyset conditions. Positions and the cursor bound travel as text and are cast back to
//! the column's type, so every orderable type compares exactly as PostgreSQL orders it.

use tokio_postgres::types::{Kind, Type};

use super::discover::{Col, Shape};
use crate::ident::quote;

/// Where a page starts.
pub(crate) enum From<'a> {
    /// Rows whose cursor is NULL, after this key (`None`: from the first).
    Nulls(Option<&'a [String]>),
    /// Rows at or past the cursor bound (`None`: every row with a cursor, or every row).
    Since(Option<&'a str>),
    /// Rows after this (cursor, key) position (the cursor `None` for a stream without one).
    After(Option<&'a str>, &'a [String]),
}

/// The column's value as JSON: what `row_to_json` writes, except timestamptz (RFC 3339 in
/// UTC with microseconds), bytea (base64) and types JSON does not know (their text).
fn value_expr(col: &Col) -> String {
    let c = format!("t.{}", quote(&col.name));
    if let Kind::Array(elem) = col.ty.kind() {
        return if known(elem) { c } else { format!("{c}::text[]") };
    }
    match col.ty {
        Type::TIMESTAMPTZ => format!(
            "CASE WHEN isfinite({c}) THEN to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') ELSE {c}::text END"
        ),
        Type::BYTEA => format!("translate(encode({c}, 'base64'), E'\\n', '')"),
        ref t if known(t) => c,
        _ => format!("{c}::text"),
    }
}

/// Types `row_to_json` writes as dovetail maps them (numbers exact, JSON as JSON).
fn known(t: &Type) -> bool {
    matches!(
        *t,
        Type::INT2
            | Type::INT4
            | Type::INT8
            | Type::NUMERIC
            | Type::FLOAT4
            | Type::FLOAT8
            | Type::BOOL
            | Type::TEXT
            | Type::VARCHAR
            | Type::BPCHAR
            | Type::JSON
            | Type::JSONB
            | Type::DATE
            | Type::UUID
    )
}

/// `t."col"`, compared bytewise when it is text: the engine compares text cursors by their
/// bytes, and the pass must order them the same way.
fn ordered(col: &Col, cursor: bool) -> String {
    let c = format!("t.{}", quote(&col.name));
    let text = matches!(col.ty, Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME);
    if cursor && text { format!("{c} COLLATE \"C\"") } else { c }
}

/// `$n` cast back to the column's type.
fn param(n: usize, col: &Col) -> String {
    format!("CAST(${n}::text AS {}.{})", quote(col.ty.schema()), quote(col.ty.name()))
}

/// One page's statement and its text parameters.
pub(crate) fn page(shape: &Shape, from: &From<'_>, limit: usize) -> (String, Vec<String>) {
    let exprs: Vec<String> = shape.columns.iter().map(|c| format!("{} AS {}", value_expr(c), quote(&c.name))).collect();
    let cursor = shape.cursor.map(|i| &shape.columns[i]);
    let keys: Vec<&Col> = shape.key.iter().map(|&i| &shape.columns[i]).collect();
    let mut order: Vec<String> = Vec::new();
    let mut pos: Vec<String> = Vec::new();
    if let Some(c) = cursor {
        pos.push(format!("t.{}::text", quote(&c.name)));
        if !matches!(from, From::Nulls(_)) {
            order.push(ordered(c, true));
        }
    }
    for k in &keys {
        pos.push(format!("t.{}::text", quote(&k.name)));
        order.push(ordered(k, false));
    }
    let mut params: Vec<String> = Vec::new();
    // `lead`: the first column is the cursor.
    let after = |cols: &[&Col], values: &[String], lead: bool, params: &mut Vec<String>| {
        let lhs: Vec<String> = cols.iter().enumerate().map(|(i, c)| ordered(c, lead && i == 0)).collect();
        let rhs: Vec<String> = cols
            .iter()
            .zip(values)
            .map(|(c, v)| {
                params.push(v.clone());
                param(params.len(), c)
            })
            .collect();
        format!("({}) > ({})", lhs.join(", "), rhs.join(", "))
    };
    let cond = match (from, cursor) {
        (From::Nulls(after_key), Some(c)) => {
            let null = format!("t.{} IS NULL", quote(&c.name));
            match after_key {
                Some(k) => format!("{null} AND {}", after(&keys, k, false, &mut params)),
                None => null,
            }
        }
        (From::Since(Some(since)), Some(c)) => {
            params.push((*since).to_owned());
            format!("{} >= {}", ordered(c, true), param(1, c))
        }
        (From::Since(_), Some(c)) => format!("t.{} IS NOT NULL", quote(&c.name)),
        (From::After(Some(cv), k), Some(c)) => {
            let mut cols = vec![c];
            cols.extend(keys.iter().copied());
            let mut values = vec![(*cv).to_owned()];
            values.extend(k.iter().cloned());
            after(&cols, &values, true, &mut params)
        }
        (From::After(_, k), _) => after(&keys, k, false, &mut params),
        (_, None) => "true".to_owned(),
    };
    let sql = format!(
        "SELECT row_to_json(x)::text, {} FROM {} t CROSS JOIN LATERAL (SELECT {}) x WHERE {cond} ORDER BY {} LIMIT {limit}",
        pos.join(", "),
        shape.from,
        exprs.join(", "),
        order.join(", ")
    );
    (sql, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(cursor_type: Type) -> Shape {
        let col = |name: &str, ty: Type| Col { name: name.to_owned(), ty };
        Shape {
            from: "\"public\".\"t\"".into(),
            shown: "public.t".into(),
            columns: vec![col("a", Type::INT8), col("b", Type::TEXT), col("at", cursor_type)],
            key: vec![0, 1],
            cursor: Some(2),
            cursor_not_null: false,
        }
    }

    #[test]
    fn a_page_after_a_position_compares_cursor_and_key_as_one_row() {
        let key = ["7".to_owned(), "x".to_owned()];
        let (sql, params) = page(&shape(Type::TIMESTAMPTZ), &From::After(Some("2026-01-01 00:00:00+00"), &key), 5);
        assert!(
            sql.contains(
                "WHERE (t.\"at\", t.\"a\", t.\"b\") > (CAST($1::text AS \"pg_catalog\".\"timestamptz\"), \
                 CAST($2::text AS \"pg_catalog\".\"int8\"), CAST($3::text AS \"pg_catalog\".\"text\")) \
                 ORDER BY t.\"at\", t.\"a\", t.\"b\" LIMIT 5"
            ),
            "{sql}"
        );
        assert_eq!(params, vec!["2026-01-01 00:00:00+00", "7", "x"]);
    }

    #[test]
    fn a_text_cursor_orders_bytewise_and_null_rows_go_by_key() {
        let (sql, params) = page(&shape(Type::TEXT), &From::Since(Some("m")), 5);
        assert!(sql.contains("WHERE t.\"at\" COLLATE \"C\" >= CAST($1::text AS \"pg_catalog\".\"text\")"), "{sql}");
        assert!(sql.contains("ORDER BY t.\"at\" COLLATE \"C\", t.\"a\", t.\"b\""), "{sql}");
        assert_eq!(params, vec!["m"]);
        let (sql, params) = page(&shape(Type::TEXT), &From::Nulls(None), 5);
        assert!(sql.contains("WHERE t.\"at\" IS NULL ORDER BY t.\"a\", t.\"b\" LIMIT 5"), "{sql}");
        assert!(params.is_empty());
    }
}
