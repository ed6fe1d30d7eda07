//! Tables: DDL, added columns, and the SQL text of upserts and deletes.
//!
//! A table has the stream's key columns first (in key order), then the other fields sorted
//! by name, then `_synced_at` and, for soft-deleting streams, the soft-delete column; its
//! primary key is the stream's key. Column types are chosen in [`crate::column`].

use std::collections::{BTreeMap, HashMap};

use dovetail_core::{DeleteMode, Error, SinkStream};
use rusqlite::Connection;
use serde_json::{Map, Value};

use crate::column::{Affinity, Column, Role, SYNCED_AT, Seen, column_def, quote};
use crate::error::db_error;

/// Rows per multi-row upsert: per-statement work (reset, bind checks, the VDBE program's
/// start and end) is paid once per this many rows.
const ROWS_PER_UPSERT: usize = 10;
/// SQLite's default limit on parameters per statement (`SQLITE_MAX_VARIABLE_NUMBER`).
const MAX_PARAMS: usize = 32_766;

/// A table as the sink knows it, with the SQL of its upsert.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) name: String,
    pub(crate) columns: Vec<Column>,
    /// Indices of the key columns in `columns`, in the stream's key order.
    pub(crate) keys: Vec<usize>,
    /// Data column names, exactly.
    exact: HashMap<String, usize>,
    /// Every column name, ASCII-lowercased (SQLite compares names that way).
    folded: HashMap<String, usize>,
    pub(crate) upsert_sql: String,
    /// The same upsert for [`Table::rows_per_upsert`] rows at once (row r's parameters
    /// follow row r−1's), so a batch takes one statement step per that many rows.
    pub(crate) upsert_many_sql: String,
    /// Rows per multi-row upsert (1: the single-row statement only).
    pub(crate) rows_per_upsert: usize,
    /// The bound columns sorted by name (byte order, as a record's fields are), each with
    /// its 1-based parameter in a row of the upsert: binding walks a record's fields and
    /// these together instead of looking each column up.
    pub(crate) by_name: Vec<(usize, usize)>,
}

impl Table {
    /// Read an existing table's columns, check its primary key matches the stream's, and
    /// add the system columns it lacks. `None` when the table does not exist.
    pub(crate) fn load(
        conn: &Connection,
        name: &str,
        stream: &SinkStream,
        soft_col: &str,
    ) -> Result<Option<Table>, Error> {
        let info = |e| db_error(e, format!("cannot read the columns of table `{name}`"));
        let mut stmt = conn.prepare("SELECT name, type, pk FROM pragma_table_info(?1)").map_err(info)?;
        let rows =
            stmt.query_map([name], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)));
        let rows: Vec<(String, String, i64)> = rows.and_then(Iterator::collect).map_err(info)?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut pk: Vec<&(String, String, i64)> = rows.iter().filter(|r| r.2 > 0).collect();
        pk.sort_by_key(|r| r.2);
        let mut have: Vec<&str> = pk.iter().map(|r| r.0.as_str()).collect();
        let mut want: Vec<&str> = stream.key_columns.iter().map(String::as_str).collect();
        have.sort_unstable();
        want.sort_unstable();
        if have != want {
            return Err(Error::config(format!(
                "table `{name}` has primary key ({}) but stream `{}` has key ({}); fix the stream's primary key or drop the table",
                pk.iter().map(|r| r.0.as_str()).collect::<Vec<_>>().join(", "),
                stream.name,
                stream.key_columns.join(", ")
            )));
        }
        let soft = (stream.delete_mode == DeleteMode::SoftDelete).then_some(soft_col);
        let notes = crate::notes::load(conn, name)?;
        let mut columns = Vec::with_capacity(rows.len() + 2);
        for (col, declared, pk) in &rows {
            let role = if col.eq_ignore_ascii_case(SYNCED_AT) {
                Role::SyncedAt
            } else if soft.is_some_and(|s| col.eq_ignore_ascii_case(s)) {
                Role::SoftDelete
            } else {
                Role::Data
            };
            let affinity = Affinity::of_declared(declared);
            if role == Role::Data && matches!(affinity, Affinity::Integer | Affinity::Real | Affinity::Numeric) {
                tracing::warn!(
                    table = name,
                    column = col.as_str(),
                    declared = declared.as_str(),
                    "column has a numeric declared type; SQLite may round big or very precise numbers written to it"
                );
            }
            let fits = notes.get(col).copied().unwrap_or_else(|| Seen::of_affinity(affinity));
            columns.push(Column { name: col.clone(), affinity, fits, role, key: *pk > 0 });
        }
        for (system, role) in [(Some(SYNCED_AT), Role::SyncedAt), (soft, Role::SoftDelete)] {
            let Some(system) = system else { continue };
            if !columns.iter().any(|c| c.role == role) {
                let sql = format!("ALTER TABLE {} ADD COLUMN {} TEXT", quote(name), quote(system));
                conn.execute_batch(&sql)
                    .map_err(|e| db_error(e, format!("cannot add column `{system}` to table `{name}`")))?;
                tracing::info!(table = name, column = system, "added column");
                columns.push(Column::system(system, role));
            }
        }
        Table::assemble(name, columns, &stream.key_columns).map(Some)
    }

    /// Create the table with the stream's key columns, then `fields` sorted, then the
    /// system columns. Fields whose names clash (ignoring case) with an earlier column
    /// are left out; records carrying them are rejected when written.
    pub(crate) fn create(
        conn: &Connection,
        name: &str,
        stream: &SinkStream,
        mut fields: BTreeMap<String, Seen>,
        soft_col: &str,
    ) -> Result<Table, Error> {
        let soft = (stream.delete_mode == DeleteMode::SoftDelete).then_some(soft_col);
        let mut taken: Vec<String> =
            [Some(SYNCED_AT), soft].into_iter().flatten().map(str::to_ascii_lowercase).collect();
        let mut columns = Vec::new();
        let mut defs = Vec::new();
        for key in &stream.key_columns {
            let folded = key.to_ascii_lowercase();
            if taken.contains(&folded) || key.contains('\0') {
                return Err(Error::config(format!(
                    "key column `{key}` of stream `{}` is not a usable column name",
                    stream.name
                )));
            }
            taken.push(folded);
            let seen = fields.remove(key).unwrap_or_default();
            defs.push(column_def(key, seen, true));
            columns.push(Column {
                name: key.clone(),
                affinity: Affinity::of_declared(seen.declared_type()),
                fits: seen,
                role: Role::Data,
                key: true,
            });
        }
        for (field, seen) in fields {
            let folded = field.to_ascii_lowercase();
            if taken.contains(&folded) {
                tracing::warn!(
                    table = name,
                    field = field.as_str(),
                    "field clashes with another column (names ignore case); records carrying it are rejected"
                );
                continue;
            }
            taken.push(folded);
            defs.push(column_def(&field, seen, false));
            columns.push(Column {
                name: field,
                affinity: Affinity::of_declared(seen.declared_type()),
                fits: seen,
                role: Role::Data,
                key: false,
            });
        }
        for (system, role) in [(Some(SYNCED_AT), Role::SyncedAt), (soft, Role::SoftDelete)] {
            if let Some(system) = system {
                defs.push(format!("{} TEXT", quote(system)));
                columns.push(Column::system(system, role));
            }
        }
        let keys: Vec<String> = stream.key_columns.iter().map(|k| quote(k)).collect();
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} ({}{}, PRIMARY KEY ({})) WITHOUT ROWID",
            quote(name),
            crate::marker::comment(),
            defs.join(", "),
            keys.join(", ")
        );
        conn.execute_batch(&sql).map_err(|e| db_error(e, format!("cannot create table `{name}`")))?;
        for c in columns.iter().filter(|c| c.role == Role::Data) {
            crate::notes::save(conn, name, &c.name, c.fits)?;
        }
        tracing::info!(table = name, columns = columns.len(), "created table");
        Table::assemble(name, columns, &stream.key_columns)
    }

    /// `ALTER TABLE ADD COLUMN` for each new field (skipping names that clash with an
    /// existing column, ignoring case), then rebuild the upsert.
    pub(crate) fn add_columns(&mut self, conn: &Connection, fields: BTreeMap<String, Seen>) -> Result<(), Error> {
        let mut columns = std::mem::take(&mut self.columns);
        for (field, seen) in fields {
            let folded = field.to_ascii_lowercase();
            if self.folded.contains_key(&folded) {
                continue;
            }
            let sql = format!("ALTER TABLE {} ADD COLUMN {}", quote(&self.name), column_def(&field, seen, false));
            conn.execute_batch(&sql)
                .map_err(|e| db_error(e, format!("cannot add column `{field}` to table `{}`", self.name)))?;
            tracing::info!(table = self.name.as_str(), column = field.as_str(), "added column");
            crate::notes::save(conn, &self.name, &field, seen)?;
            self.folded.insert(folded, columns.len());
            columns.push(Column {
                name: field,
                affinity: Affinity::of_declared(seen.declared_type()),
                fits: seen,
                role: Role::Data,
                key: false,
            });
        }
        let keys: Vec<String> = self.keys.iter().map(|&i| columns[i].name.clone()).collect();
        *self = Table::assemble(&self.name, columns, &keys)?;
        Ok(())
    }

    fn assemble(name: &str, columns: Vec<Column>, key_columns: &[String]) -> Result<Table, Error> {
        let mut exact = HashMap::new();
        let mut folded = HashMap::new();
        for (i, c) in columns.iter().enumerate() {
            if c.role == Role::Data {
                exact.insert(c.name.clone(), i);
            }
            folded.entry(c.name.to_ascii_lowercase()).or_insert(i);
        }
        let keys = key_columns
            .iter()
            .map(|k| {
                exact
                    .get(k)
                    .copied()
                    .ok_or_else(|| Error::config(format!("key column `{k}` is not a column of table `{name}`")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Each bound column's 1-based parameter within one row; the soft-delete column is
        // written as NULL and takes none.
        let mut by_name: Vec<(usize, usize)> = Vec::with_capacity(columns.len());
        let (mut cols, mut set) = (Vec::new(), Vec::new());
        for (i, c) in columns.iter().enumerate() {
            let q = quote(&c.name);
            if c.role == Role::SoftDelete {
                set.push(format!("{q} = NULL"));
            } else {
                by_name.push((i, by_name.len() + 1));
                if !keys.contains(&i) {
                    set.push(format!("{q} = excluded.{q}"));
                }
            }
            cols.push(q);
        }
        let params = by_name.len();
        let conflict: Vec<String> = keys.iter().map(|&i| quote(&columns[i].name)).collect();
        let rows_per_upsert = (MAX_PARAMS / params.max(1)).clamp(1, ROWS_PER_UPSERT);
        let upsert = |rows: usize| {
            let groups: Vec<String> = (0..rows)
                .map(|r| {
                    let mut next = r * params;
                    let row: Vec<String> = columns
                        .iter()
                        .map(|c| {
                            if c.role == Role::SoftDelete {
                                return "NULL".to_owned();
                            }
                            next += 1;
                            format!("?{next}")
                        })
                        .collect();
                    format!("({})", row.join(", "))
                })
                .collect();
            format!(
                "INSERT INTO {} ({}) VALUES {} ON CONFLICT ({}) DO UPDATE SET {}",
                quote(name),
                cols.join(", "),
                groups.join(", "),
                conflict.join(", "),
                set.join(", ")
            )
        };
        let (upsert_sql, upsert_many_sql) = (upsert(1), upsert(rows_per_upsert));
        by_name.sort_by(|a, b| columns[a.0].name.cmp(&columns[b.0].name));
        Ok(Table {
            name: name.to_owned(),
            columns,
            keys,
            exact,
            folded,
            upsert_sql,
            upsert_many_sql,
            rows_per_upsert,
            by_name,
        })
    }

    /// Why a record with fields the table has no data column for cannot be written as is:
    /// `Ok` when at least one of them can be added as a new column, else the reason.
    pub(crate) fn check_unknown_fields(&self, obj: &Map<String, Value>) -> Result<(), String> {
        let mut addable = false;
        for k in obj.keys() {
            if self.exact.contains_key(k) {
                continue;
            }
            if k.contains('\0') {
                return Err(format!("field name {k:?} contains a NUL character"));
            }
            if let Some(&i) = self.folded.get(&k.to_ascii_lowercase()) {
                let col = &self.columns[i];
                let why = if col.role == Role::Data {
                    "SQLite column names ignore case"
                } else {
                    "the sink sets that column itself"
                };
                return Err(format!("field `{k}` clashes with column `{}` of table `{}` ({why})", col.name, self.name));
            }
            addable = true;
        }
        if addable { Ok(()) } else { Err(format!("record fields do not match the columns of table `{}`", self.name)) }
    }

    /// Let data column `column` take values of JSON type `observed` from now on (an accepted
    /// `column_type` drift), noting it; whether anything changed.
    pub(crate) fn widen(&mut self, conn: &Connection, column: &str, observed: &str) -> Result<bool, Error> {
        let Some(&i) = self.exact.get(column) else { return Ok(false) };
        let col = &mut self.columns[i];
        if !col.fits.known() || !col.fits.widen(observed) {
            return Ok(false);
        }
        crate::notes::save(conn, &self.name, &col.name, col.fits)?;
        Ok(true)
    }

    /// The soft-delete column's name, when the table has one for this stream.
    pub(crate) fn soft_delete_column(&self) -> Option<&str> {
        self.columns.iter().find(|c| c.role == Role::SoftDelete).map(|c| c.name.as_str())
    }

    /// `DELETE` by key (`?1..?n` are the key parts), or, with a soft-delete column,
    /// `UPDATE` setting it and `_synced_at` to `?n+1` where it is not yet set.
    pub(crate) fn delete_sql(&self) -> String {
        let mut cond: Vec<String> = self
            .keys
            .iter()
            .enumerate()
            .map(|(p, &i)| format!("{} = ?{}", quote(&self.columns[i].name), p + 1))
            .collect();
        match self.soft_delete_column() {
            None => format!("DELETE FROM {} WHERE {}", quote(&self.name), cond.join(" AND ")),
            Some(soft) => {
                let now = self.keys.len() + 1;
                let synced = self
                    .columns
                    .iter()
                    .find(|c| c.role == Role::SyncedAt)
                    .map(|c| c.name.as_str())
                    .unwrap_or(SYNCED_AT);
                cond.push(format!("{} IS NULL", quote(soft)));
                format!(
                    "UPDATE {} SET {} = ?{now}, {} = ?{now} WHERE {}",
                    quote(&self.name),
                    quote(soft),
                    quote(synced),
                    cond.join(" AND ")
                )
            }
        }
    }
}
