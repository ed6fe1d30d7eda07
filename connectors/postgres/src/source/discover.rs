//! What the source learns from the catalog before it reads: the columns and their types, the
//! key (the primary key unless configured), whether the cursor may be NULL, and that the
//! cursor and key columns can be ordered. Every problem is a `Config` error naming the key
//! of `[source]` and the column.

use dovetail_core::Error;
use serde_json::{Map, Value, json};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{Kind, Type};
use tokio_postgres::{Client, GenericClient};

use super::config::PostgresSourceConfig;
use crate::error::PgErr;
use crate::ident::{qualified, quote};

/// One column of the table or query.
#[derive(Debug, Clone)]
pub(crate) struct Col {
    pub name: String,
    pub ty: Type,
}

/// The relation as the catalog describes it.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    /// `"schema"."table"` or `(query) AS _dovetail_q`, for `FROM`.
    pub from: String,
    /// What messages call it: `public.customers` or `query`.
    pub shown: String,
    pub columns: Vec<Col>,
    /// Indexes into `columns`.
    pub key: Vec<usize>,
    pub cursor: Option<usize>,
    /// The cursor column is declared `NOT NULL` (so the pass skips looking for NULLs).
    pub cursor_not_null: bool,
}

impl Shape {
    /// JSON Schema of the records, from the column types.
    pub fn schema(&self) -> Value {
        let props: Map<String, Value> = self.columns.iter().map(|c| (c.name.clone(), schema_of(&c.ty))).collect();
        let required: Vec<&String> = self.columns.iter().map(|c| &c.name).collect();
        json!({ "type": "object", "properties": props, "required": required })
    }
}

/// A column's JSON Schema: what [`super::sql::value_expr`] makes of its values.
fn schema_of(ty: &Type) -> Value {
    let t = |name: &str| json!({ "type": [name, "null"] });
    if matches!(ty.kind(), Kind::Array(_)) {
        return t("array");
    }
    match *ty {
        Type::INT2 | Type::INT4 | Type::INT8 => t("integer"),
        Type::NUMERIC => t("number"),
        Type::FLOAT4 | Type::FLOAT8 => json!({ "type": ["number", "null"], "format": "double" }),
        Type::BOOL => t("boolean"),
        Type::JSON | Type::JSONB => json!({}),
        Type::TIMESTAMPTZ => json!({ "type": ["string", "null"], "format": "date-time" }),
        Type::DATE => json!({ "type": ["string", "null"], "format": "date" }),
        Type::UUID => json!({ "type": ["string", "null"], "format": "uuid" }),
        Type::BYTEA => json!({ "type": ["string", "null"], "contentEncoding": "base64" }),
        _ => t("string"),
    }
}

fn err(op: &str) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
    move |e| PgErr::source(op).err(e)
}

/// The shape of what `cfg` reads.
pub(crate) async fn shape(c: &Client, cfg: &PostgresSourceConfig) -> Result<Shape, Error> {
    let (from, shown, oid) = match (&cfg.table, &cfg.query) {
        (Some(table), _) => {
            let shown = format!("{}.{table}", cfg.schema);
            let oid: Option<u32> = c
                .query_one("SELECT to_regclass(format('%I.%I', $1::text, $2::text))::oid", &[&cfg.schema, table])
                .await
                .map_err(err("looking up the table"))?
                .get(0);
            let Some(oid) = oid else {
                return Err(Error::config(format!("postgres source: table `{shown}` does not exist (`source.table`)"))
                    .with_hint("check `table` and `schema` of the source, and that the user may see the schema"));
            };
            (qualified(&cfg.schema, table), shown, Some(oid))
        }
        (None, Some(q)) => (format!("({q}) AS _dovetail_q"), "query".to_owned(), None),
        (None, None) => return Err(Error::config("postgres source: set `table` or `query`")),
    };
    let stmt = c.prepare(&format!("SELECT * FROM {from} LIMIT 0")).await.map_err(|e| match e.code() {
        Some(code) if is_bad_sql(code) => Error::config(format!(
            "postgres source: `source.query` does not run: {}",
            e.as_db_error().map(|d| d.message()).unwrap_or_default()
        )),
        _ => PgErr::source(&format!("describing `{shown}`")).err(e),
    })?;
    let columns: Vec<Col> =
        stmt.columns().iter().map(|col| Col { name: col.name().to_owned(), ty: col.type_().clone() }).collect();
    for (i, col) in columns.iter().enumerate() {
        if columns[..i].iter().any(|o| o.name == col.name) {
            return Err(Error::config(format!(
                "postgres source: `{shown}` has two columns named `{}`; give them distinct names (`AS`)",
                col.name
            )));
        }
    }
    let find = |name: &str, key: &str| {
        columns.iter().position(|c| c.name == name).ok_or_else(|| {
            let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
            Error::config(format!(
                "postgres source: column `{name}` (`source.{key}`) is not a column of `{shown}` (columns: {})",
                names.join(", ")
            ))
        })
    };
    let cursor = cfg.cursor.as_deref().map(|n| find(n, "cursor")).transpose()?;
    let key_names = match (&cfg.key, oid) {
        (Some(k), _) => k.clone(),
        (None, Some(oid)) => primary_key(c, oid).await?,
        (None, None) => Vec::new(),
    };
    if key_names.is_empty() {
        return Err(Error::config(format!(
            "postgres source: `{shown}` has no primary key; set `key` to the columns that identify a row"
        )));
    }
    let key = key_names.iter().map(|n| find(n, "key")).collect::<Result<Vec<_>, _>>()?;
    let cursor_not_null = match (cursor, oid) {
        (Some(i), Some(oid)) => not_null(c, oid, &columns[i].name).await?,
        _ => false,
    };
    let shape = Shape { from, shown, columns, key, cursor, cursor_not_null };
    orderable(c, &shape).await?;
    Ok(shape)
}

/// Syntax errors, undefined tables, columns and functions: what is wrong with a `query`.
fn is_bad_sql(code: &SqlState) -> bool {
    let c = code.code();
    c.starts_with("42") && *code != SqlState::INSUFFICIENT_PRIVILEGE
}

async fn primary_key(c: &Client, oid: u32) -> Result<Vec<String>, Error> {
    let rows = c
        .query(
            "SELECT a.attname::text FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
             WHERE i.indrelid = $1 AND i.indisprimary \
             ORDER BY array_position(i.indkey::int2[], a.attnum)",
            &[&oid],
        )
        .await
        .map_err(err("reading the primary key"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

async fn not_null(c: &Client, oid: u32, column: &str) -> Result<bool, Error> {
    let row = c
        .query_opt("SELECT attnotnull FROM pg_attribute WHERE attrelid = $1 AND attname = $2", &[&oid, &column])
        .await
        .map_err(err("reading the cursor column"))?;
    Ok(row.is_some_and(|r| r.get(0)))
}

/// Each of the cursor and key columns has an ordering (a `json` or `point` column has none).
async fn orderable(c: &impl GenericClient, shape: &Shape) -> Result<(), Error> {
    let cols = shape.cursor.iter().map(|&i| (i, "cursor")).chain(shape.key.iter().map(|&i| (i, "key")));
    for (i, role) in cols {
        let col = &shape.columns[i];
        let sql = format!("SELECT 1 FROM {} t ORDER BY t.{} LIMIT 0", shape.from, quote(&col.name));
        if let Err(e) = c.prepare(&sql).await {
            if e.code() == Some(&SqlState::UNDEFINED_FUNCTION) {
                return Err(Error::config(format!(
                    "postgres source: column `{}` (`source.{role}`) of `{}` has type {}, which cannot be ordered",
                    col.name,
                    shape.shown,
                    col.ty.name()
                ))
                .with_hint(
                    "choose a column of an orderable type (a timestamp, number, text, uuid), or cast it in a `query`",
                ));
            }
            return Err(PgErr::source("checking the cursor and key columns").err(e));
        }
    }
    Ok(())
}
