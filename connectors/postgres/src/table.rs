//! Tables: what an existing one holds, creating one from the stream's schema or first
//! batch, added columns, the column notes (`_dovetail_columns`), and the SQL of the merge.
//!
//! A table has the stream's key columns first (in key order), then the other fields sorted
//! by name, then `_synced_at` and, for soft-deleting streams, the soft-delete column; its
//! primary key is the stream's key. Field names longer than 63 bytes get a shortened column
//! name ([`crate::ident::short`]); the notes table maps each column back to its field. Table
//! names (prefix and stream) are shortened the same way, each noted in [`TABLES_TABLE`].

use std::collections::{BTreeMap, HashMap};

use dovetail_core::{DeleteMode, Error, SinkStream};
use tokio_postgres::GenericClient;

use crate::error::PgErr;
use crate::ident::{SYNCED_AT, literal, qualified, quote, short};
use crate::types::PgType;
use crate::write::Target;

/// The notes table: which field each column holds (`table_name`, `column_name`, `field`).
pub const NOTES_TABLE: &str = "_dovetail_columns";
/// Which stream each table holds and its name before shortening (`table_name`, `stream`,
/// `full_name`): a table name over 63 bytes is shortened like a column's.
pub const TABLES_TABLE: &str = "_dovetail_tables";
/// PostgreSQL's most columns in a table.
pub(crate) const MAX_COLUMNS: usize = 1_600;
/// What opens a table's comment, followed by its creation marker.
const MARKER_TAG: &str = "dovetail:table ";

/// What the sink puts in a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A record field.
    Data,
    /// The time of the write.
    SyncedAt,
    /// NULL on write, the time of the delete on soft delete.
    SoftDelete,
}

/// One column, in table order.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    /// The record field it holds (its name, for the sink's own columns).
    pub(crate) field: String,
    /// The column name in PostgreSQL.
    pub(crate) name: String,
    pub(crate) ty: PgType,
    pub(crate) role: Role,
    pub(crate) key: bool,
}

/// A table as the sink knows it.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub(crate) schema: String,
    /// The table name in PostgreSQL.
    pub(crate) name: String,
    pub(crate) columns: Vec<Column>,
    /// Data columns by field.
    pub(crate) by_field: HashMap<String, usize>,
    /// Indices of the key columns, in the stream's key order.
    pub(crate) keys: Vec<usize>,
}

impl Table {
    /// `schema.table`, quoted.
    pub(crate) fn qualified(&self) -> String {
        qualified(&self.schema, &self.name)
    }

    /// For messages: `schema.table`.
    pub(crate) fn display(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// Read an existing table, check its primary key is the stream's and add the system
    /// columns it lacks. `None` when there is no such table.
    pub(crate) async fn load<C: GenericClient>(
        c: &C,
        schema: &str,
        name: &str,
        stream: &SinkStream,
        soft_col: &str,
    ) -> Result<Option<Table>, Error> {
        let shown = format!("{schema}.{name}");
        let e = |op: String| move |err| PgErr::new(&op).err(err);
        let rows = c
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), \
                 coalesce(a.attnum = ANY(i.indkey), false) \
                 FROM pg_attribute a JOIN pg_class t ON t.oid = a.attrelid \
                 JOIN pg_namespace n ON n.oid = t.relnamespace \
                 LEFT JOIN pg_index i ON i.indrelid = t.oid AND i.indisprimary \
                 WHERE n.nspname = $1 AND t.relname = $2 AND t.relkind IN ('r', 'p') \
                 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                &[&schema, &name],
            )
            .await
            .map_err(e(format!("reading the columns of table `{shown}`")))?;
        if rows.is_empty() {
            return Ok(None);
        }
        let fields = notes(c, schema, name).await?;
        let soft = (stream.delete_mode == DeleteMode::SoftDelete).then_some(soft_col);
        let mut columns = Vec::with_capacity(rows.len() + 2);
        let mut pk = Vec::new();
        for r in &rows {
            let (col, ty, key): (String, String, bool) = (r.get(0), r.get(1), r.get(2));
            let field = fields.get(&col).cloned().unwrap_or_else(|| col.clone());
            let role = if col == SYNCED_AT {
                Role::SyncedAt
            } else if soft.is_some_and(|s| short(s) == col) {
                Role::SoftDelete
            } else {
                Role::Data
            };
            if key {
                pk.push(field.clone());
            }
            let ty = PgType::of_format(&ty);
            if ty == PgType::Other && role == Role::Data {
                tracing::warn!(
                    table = shown.as_str(),
                    column = col.as_str(),
                    "column has a type the postgres sink cannot write; it is left alone"
                );
            }
            columns.push(Column { field, name: col, ty, role, key });
        }
        let (mut have, mut want) = (pk.clone(), stream.key_columns.clone());
        have.sort_unstable();
        want.sort_unstable();
        if have != want {
            return Err(Error::config(format!(
                "table `{shown}` has primary key ({}) but stream `{}` has key ({}); fix the stream's primary key or drop the table",
                pk.join(", "),
                stream.name,
                stream.key_columns.join(", ")
            )));
        }
        for (system, role) in [(Some(SYNCED_AT), Role::SyncedAt), (soft, Role::SoftDelete)] {
            let Some(system) = system else { continue };
            if !columns.iter().any(|c| c.role == role) {
                let sql = format!(
                    "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} timestamptz",
                    qualified(schema, name),
                    quote(&short(system))
                );
                c.batch_execute(&sql).await.map_err(e(format!("adding column `{system}` to table `{shown}`")))?;
                tracing::info!(table = shown.as_str(), column = system, "added column");
                columns.push(Column::system(system, role));
            }
        }
        Table::assemble(schema, name, columns, &stream.key_columns).map(Some)
    }

    /// Create the table: the stream's key columns, then `fields` sorted, then the system
    /// columns; a fresh marker in its comment, and a note per column.
    pub(crate) async fn create<C: GenericClient>(
        c: &C,
        t: &Target<'_>,
        mut fields: BTreeMap<String, PgType>,
    ) -> Result<Table, Error> {
        let (schema, name, stream, soft_col) = (t.schema, t.table.as_str(), t.stream, t.soft_col);
        let shown = format!("{schema}.{name}");
        let soft = (stream.delete_mode == DeleteMode::SoftDelete).then_some(soft_col);
        let mut columns = Vec::new();
        for key in &stream.key_columns {
            let ty = fields.remove(key).unwrap_or(PgType::Text(None));
            columns.push(Column { field: key.clone(), name: short(key), ty, role: Role::Data, key: true });
        }
        for (field, ty) in fields {
            columns.push(Column { name: short(&field), field, ty, role: Role::Data, key: false });
        }
        for (system, role) in [(Some(SYNCED_AT), Role::SyncedAt), (soft, Role::SoftDelete)] {
            if let Some(system) = system {
                columns.push(Column::system(system, role));
            }
        }
        let defs: Vec<String> = columns
            .iter()
            .map(|col| format!("{} {}{}", quote(&col.name), col.ty.ddl(), if col.key { " NOT NULL" } else { "" }))
            .collect();
        let keys: Vec<String> = columns.iter().filter(|c| c.key).map(|c| quote(&c.name)).collect();
        let table = qualified(schema, name);
        let sql = format!(
            "CREATE TABLE {table} ({}, PRIMARY KEY ({})); COMMENT ON TABLE {table} IS {}",
            defs.join(", "),
            keys.join(", "),
            literal(&format!("{MARKER_TAG}{}", new_marker()))
        );
        c.batch_execute(&sql).await.map_err(|e| PgErr::new(&format!("creating table `{shown}`")).err(e))?;
        crate::offsets::forget(c, schema, name).await?;
        note_table(c, schema, name, &stream.name, &t.full_name).await?;
        let table = Table::assemble(schema, name, columns, &stream.key_columns)?;
        note(c, &table, table.columns.iter().filter(|c| c.role == Role::Data)).await?;
        tracing::info!(table = shown.as_str(), columns = table.columns.len(), "created table");
        Ok(table)
    }

    /// `ALTER TABLE … ADD COLUMN` for each new field, noted.
    pub(crate) async fn add_columns<C: GenericClient>(
        &mut self,
        c: &C,
        fields: BTreeMap<String, PgType>,
    ) -> Result<(), Error> {
        if fields.is_empty() {
            return Ok(());
        }
        let shown = self.display();
        let from = self.columns.len();
        let mut adds = Vec::new();
        for (field, ty) in fields {
            let name = short(&field);
            adds.push(format!("ADD COLUMN {} {}", quote(&name), ty.ddl()));
            tracing::info!(
                table = shown.as_str(),
                column = name.as_str(),
                field = field.as_str(),
                r#type = ty.ddl(),
                "added column"
            );
            self.columns.push(Column { field, name, ty, role: Role::Data, key: false });
        }
        let sql = format!("ALTER TABLE {} {}", self.qualified(), adds.join(", "));
        c.batch_execute(&sql).await.map_err(|e| PgErr::new(&format!("adding columns to table `{shown}`")).err(e))?;
        note(c, self, self.columns[from..].iter()).await?;
        let keys: Vec<String> = self.keys.iter().map(|&i| self.columns[i].field.clone()).collect();
        let columns = std::mem::take(&mut self.columns);
        *self = Table::assemble(&self.schema, &self.name, columns, &keys)?;
        Ok(())
    }

    fn assemble(schema: &str, name: &str, columns: Vec<Column>, key_fields: &[String]) -> Result<Table, Error> {
        let by_field: HashMap<String, usize> = columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.role == Role::Data)
            .map(|(i, c)| (c.field.clone(), i))
            .collect();
        let keys = key_fields
            .iter()
            .map(|k| {
                by_field
                    .get(k)
                    .copied()
                    .ok_or_else(|| Error::config(format!("key field `{k}` is not a column of table `{schema}.{name}`")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Table { schema: schema.to_owned(), name: name.to_owned(), columns, by_field, keys })
    }

    /// The soft-delete column, when the table has one for this stream.
    pub(crate) fn soft_delete_column(&self) -> Option<&Column> {
        self.columns.iter().find(|c| c.role == Role::SoftDelete)
    }

    /// The data columns the sink writes (indices), in table order: every data column of a
    /// type it can write.
    pub(crate) fn written(&self) -> Vec<usize> {
        (0..self.columns.len())
            .filter(|&i| self.columns[i].role == Role::Data && self.columns[i].ty != PgType::Other)
            .collect()
    }
}

impl Column {
    /// A `timestamptz` column the sink keeps itself.
    fn system(name: &str, role: Role) -> Column {
        Column { field: name.to_owned(), name: short(name), ty: PgType::Timestamptz, role, key: false }
    }
}

/// A new table marker: random enough that a table dropped and made again differs.
fn new_marker() -> String {
    use std::hash::{BuildHasher, RandomState};
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{:016x}", RandomState::new().hash_one((nanos, std::process::id())))
}

/// The table's marker: `None` when there is no such table, `Some(None)` when it has none.
pub(crate) async fn marker<C: GenericClient>(c: &C, schema: &str, name: &str) -> Result<Option<Option<String>>, Error> {
    let row = c
        .query_opt(
            "SELECT obj_description(t.oid, 'pg_class') FROM pg_class t JOIN pg_namespace n ON n.oid = t.relnamespace \
             WHERE n.nspname = $1 AND t.relname = $2 AND t.relkind IN ('r', 'p')",
            &[&schema, &name],
        )
        .await
        .map_err(|e| PgErr::new(&format!("looking up table `{schema}.{name}`")).err(e))?;
    Ok(row.map(|r| {
        let comment: Option<String> = r.get(0);
        comment
            .and_then(|c| c.strip_prefix(MARKER_TAG).map(|m| m.chars().take_while(char::is_ascii_hexdigit).collect()))
    }))
}

/// Create the schema and the notes table when missing, once per process and sink, under a
/// transaction advisory lock: concurrent `CREATE … IF NOT EXISTS` of one name can fail.
pub(crate) async fn setup(c: &mut tokio_postgres::Client, schema: &str) -> Result<(), Error> {
    let what = format!("creating schema `{schema}` and its column notes");
    let tx = c.transaction().await.map_err(|e| PgErr::new(&what).err(e))?;
    let sql = format!(
        "SELECT pg_advisory_xact_lock(hashtext('dovetail postgres sink setup')); \
         CREATE SCHEMA IF NOT EXISTS {}; \
         CREATE TABLE IF NOT EXISTS {} (table_name text NOT NULL, column_name text NOT NULL, field text NOT NULL, \
         PRIMARY KEY (table_name, column_name)); \
         CREATE TABLE IF NOT EXISTS {o} (table_name text PRIMARY KEY, checkpoint text NOT NULL, epoch bigint NOT NULL); \
         ALTER TABLE {o} ADD COLUMN IF NOT EXISTS lease_epoch bigint; \
         CREATE TABLE IF NOT EXISTS {t} (table_name text PRIMARY KEY, stream text NOT NULL, full_name text NOT NULL)",
        quote(schema),
        qualified(schema, NOTES_TABLE),
        o = qualified(schema, crate::offsets::OFFSETS_TABLE),
        t = qualified(schema, TABLES_TABLE)
    );
    tx.batch_execute(&sql).await.map_err(|e| PgErr::new(&what).err(e))?;
    tx.commit().await.map_err(|e| PgErr::new(&what).err(e))
}

/// Column → field, for the columns of `table` noted in the notes table (none when it does
/// not exist).
async fn notes<C: GenericClient>(c: &C, schema: &str, table: &str) -> Result<HashMap<String, String>, Error> {
    let what = format!("reading the column notes of table `{schema}.{table}`");
    let exists = c
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&qualified(schema, NOTES_TABLE)])
        .await
        .map_err(|e| PgErr::new(&what).err(e))?;
    if !exists.get::<_, bool>(0) {
        return Ok(HashMap::new());
    }
    let sql = format!("SELECT column_name, field FROM {} WHERE table_name = $1", qualified(schema, NOTES_TABLE));
    let rows = c.query(&sql, &[&table]).await.map_err(|e| PgErr::new(&what).err(e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Note which stream table `name` holds, and its name before shortening.
async fn note_table<C: GenericClient>(c: &C, schema: &str, name: &str, stream: &str, full: &str) -> Result<(), Error> {
    let sql = format!(
        "INSERT INTO {} (table_name, stream, full_name) VALUES ($1, $2, $3) \
         ON CONFLICT (table_name) DO UPDATE SET stream = EXCLUDED.stream, full_name = EXCLUDED.full_name",
        qualified(schema, TABLES_TABLE)
    );
    c.execute(&sql, &[&name, &stream, &full])
        .await
        .map_err(|e| PgErr::new(&format!("noting the stream of table `{schema}.{name}`")).err(e))?;
    Ok(())
}

/// Note the fields of `columns` of `table`.
async fn note<'a, C: GenericClient>(
    c: &C,
    table: &Table,
    columns: impl Iterator<Item = &'a Column>,
) -> Result<(), Error> {
    let notes = qualified(&table.schema, NOTES_TABLE);
    let (cols, fields): (Vec<&str>, Vec<&str>) = columns.map(|c| (c.name.as_str(), c.field.as_str())).unzip();
    let what = format!("noting the columns of table `{}`", table.display());
    let sql = format!(
        "INSERT INTO {notes} (table_name, column_name, field) SELECT $1, c, f FROM unnest($2::text[], $3::text[]) AS u(c, f) \
         ON CONFLICT (table_name, column_name) DO UPDATE SET field = EXCLUDED.field"
    );
    c.execute(&sql, &[&table.name, &cols, &fields]).await.map_err(|e| PgErr::new(&what).err(e))?;
    Ok(())
}
