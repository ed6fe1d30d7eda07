//! The blocking side of writes and deletes: one transaction per call, one cached upsert
//! statement per table shape, rows bound straight from the records.

use std::collections::HashMap;

use dovetail_core::drift::{DriftClass, DriftEvent};
use dovetail_core::{Batch, ColumnDrift, DeleteMode, Error, Key, Record, SinkStream, WriteReport};
use rusqlite::limits::Limit;
use rusqlite::{CachedStatement, Connection, ErrorCode, TransactionBehavior};

use crate::admit::{self, Shape};
use crate::bind::{Bound, bind};
use crate::column::{self, Role, Seen};
use crate::error::{db_error, is_row_error};
use crate::table::Table;

/// How one record fared when bound to the upsert.
enum Fit {
    /// Every field has a column; the statement is ready to run.
    Bound,
    /// The record has fields the table lacks: add columns, then retry it.
    NeedsColumns,
}

/// Which table a stream is written to, and the settings that shape it.
pub(crate) struct Target<'a> {
    pub(crate) table: String,
    pub(crate) stream: &'a SinkStream,
    pub(crate) soft_col: &'a str,
}

/// Load the stream's table (cached), or create it from the stream's schema when it has
/// one. `Ok(None)`: the table does not exist and has no schema yet (created on first write).
pub(crate) fn resolve<'t>(
    conn: &Connection,
    tables: &'t mut HashMap<String, Table>,
    t: &Target<'_>,
    reload: bool,
) -> Result<Option<&'t mut Table>, Error> {
    if t.stream.key_columns.is_empty() {
        return Err(Error::config(format!(
            "stream `{}` has no primary key; the sqlite sink upserts by primary key",
            t.stream.name
        )));
    }
    let soft = t.stream.delete_mode == DeleteMode::SoftDelete;
    let stale = match tables.get(&t.stream.name) {
        Some(cached) => reload || cached.soft_delete_column().is_some() != soft,
        None => true,
    };
    if stale {
        tables.remove(&t.stream.name);
        let table = match Table::load(conn, &t.table, t.stream, t.soft_col)? {
            Some(table) => Some(table),
            None => match column::schema_fields(t.stream.schema.as_ref()) {
                Some(fields) if admit::schema_fits(conn, t, &fields) => {
                    Some(Table::create(conn, &t.table, t.stream, fields, t.soft_col)?)
                }
                // Too many properties for one table: the records written shape it instead.
                _ => None,
            },
        };
        if let Some(table) = table {
            tables.insert(t.stream.name.clone(), table);
        }
    }
    Ok(tables.get_mut(&t.stream.name))
}

/// Upsert a batch in one transaction. On error nothing of the batch is kept, and the
/// cached table is dropped so the next call re-reads it (column adds were rolled back).
pub(crate) fn write_batch(
    conn: &mut Connection,
    tables: &mut HashMap<String, Table>,
    t: &Target<'_>,
    batch: &Batch,
) -> Result<WriteReport, Error> {
    let mut report = WriteReport::default();
    if batch.records.is_empty() {
        return Ok(report);
    }
    let result = write_in_tx(conn, tables, t, batch, &mut report);
    if result.is_err() {
        tables.remove(&t.stream.name);
    }
    result.map(|()| report)
}

fn write_in_tx(
    conn: &mut Connection,
    tables: &mut HashMap<String, Table>,
    t: &Target<'_>,
    batch: &Batch,
    report: &mut WriteReport,
) -> Result<(), Error> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| db_error(e, format!("cannot start a transaction on table `{}`", t.table)))?;
    // Records refused before they could shape the table (see `admit`), ascending.
    let mut refused = Vec::new();
    if resolve(&tx, tables, t, false)?.is_none() {
        let shape = Shape::new_table(&t.table, t.stream, t.soft_col, admit::column_limit(&tx));
        let plan = shape.plan(&batch.records, 0);
        refused = plan.refused;
        let created = Table::create(&tx, &t.table, t.stream, plan.fields, t.soft_col)?;
        tables.insert(t.stream.name.clone(), created);
    }
    let Some(table) = tables.get_mut(&t.stream.name) else {
        return Err(Error::internal(format!("table `{}` vanished from the cache", t.table)));
    };
    let synced_at = dovetail_core::now_rfc3339();
    let mut next = 0;
    while next < batch.records.len() {
        let stopped = {
            let prepare = |sql: &str| {
                tx.prepare_cached(sql)
                    .map_err(|e| db_error(e, format!("cannot prepare the upsert into table `{}`", table.name)))
            };
            let mut stmts = Stmts { one: prepare(&table.upsert_sql)?, many: None };
            if table.rows_per_upsert > 1 && batch.records.len() - next >= table.rows_per_upsert {
                stmts.many = Some(prepare(&table.upsert_many_sql)?);
            }
            let run = Run { records: &batch.records, synced_at: &synced_at, mode: batch.column_drift };
            upsert_run(&tx, &mut stmts, table, &run, next, &mut refused, report)?
        };
        match stopped {
            None => break,
            Some(at) => {
                let plan = Shape::of(table, &t.stream.key_columns, admit::column_limit(&tx)).plan(&batch.records, at);
                if plan.fields.is_empty() && plan.refused.first().is_none_or(|r| r.0 != at) {
                    // Nothing to add for the record that asked: stop rather than ask again.
                    let at = batch.records[at].whereabouts();
                    return Err(Error::internal(format!("no column could be added to table `{}`", table.name)).at(at));
                }
                refused = plan.refused;
                table.add_columns(&tx, plan.fields)?;
                next = at;
            }
        }
    }
    tx.commit().map_err(|e| db_error(e, format!("cannot commit the batch to table `{}`", t.table)))?;
    // The bundled SQLite pools every connection's page cache in one LRU, so clean pages this
    // sink will not read again (appends move on) would evict the state store's hot pages.
    // Dropping them keeps the sink's share to one batch's working set.
    conn.release_memory().map_err(|e| db_error(e, "cannot release the page cache"))
}

/// What one upsert run writes, and how.
struct Run<'a> {
    records: &'a [Record],
    synced_at: &'a str,
    /// What a value that does not fit its column gets.
    mode: ColumnDrift,
}

/// The upsert statements of one run: one row at a time, and `rows_per_upsert` rows at once.
struct Stmts<'c> {
    one: CachedStatement<'c>,
    many: Option<CachedStatement<'c>>,
}

/// Upsert `records[from..]` until one needs new columns; returns its index, if any.
///
/// Records are bound into the multi-row statement as they come and it runs once full. A
/// record refused while binding (bad key, unbindable value, a misfit under `Refuse`) never
/// takes a slot. If a full statement fails on a row, SQLite undoes that statement alone and
/// its records are upserted one at a time, so the bad row is refused and the others
/// written, as without the multi-row statement. Records bound when the run stops (end of
/// batch, new columns needed) are upserted one at a time too.
fn upsert_run(
    conn: &Connection,
    stmts: &mut Stmts<'_>,
    table: &Table,
    run: &Run<'_>,
    from: usize,
    refused: &mut [(usize, String)],
    report: &mut WriteReport,
) -> Result<Option<usize>, Error> {
    let records = run.records;
    let half = records.len() / 2;
    let params = table.by_name.len();
    let mut slots: Vec<usize> = Vec::with_capacity(table.rows_per_upsert);
    let mut next_refused = refused.partition_point(|r| r.0 < from);
    for (i, record) in records.iter().enumerate().skip(from) {
        if i == half {
            // Crash tests abort here: half the batch is inside an uncommitted transaction.
            dovetail_core::failpoint::hit("mid_batch");
        }
        if let Some((_, why)) = refused.get_mut(next_refused).filter(|r| r.0 == i) {
            next_refused += 1;
            refuse(conn, table, record, i, Reject::Data(std::mem::take(why)), report)?;
            continue;
        }
        let mut misfit = None;
        let offset = if stmts.many.is_some() { slots.len() * params } else { 0 };
        let stmt = stmts.many.as_mut().unwrap_or(&mut stmts.one);
        match bind_record(stmt, offset, table, record, run.synced_at, &mut misfit) {
            Ok(Fit::NeedsColumns) => {
                one_by_one(conn, stmts, table, run, &slots, report)?;
                return Ok(Some(i));
            }
            Ok(Fit::Bound) => {
                if let Some(col) = misfit {
                    report.drift.push((i, misfit_event(table, col, record)));
                    if run.mode == ColumnDrift::Refuse {
                        continue;
                    }
                }
            }
            Err(r) => {
                refuse(conn, table, record, i, r, report)?;
                continue;
            }
        }
        let Some(many) = stmts.many.as_mut() else {
            let outcome = stmts.one.raw_execute().map(|_| ()).map_err(Reject::Db);
            settle(conn, table, record, i, outcome, report)?;
            continue;
        };
        slots.push(i);
        if slots.len() == table.rows_per_upsert {
            match many.raw_execute() {
                Ok(_) => report.written += slots.len() as u64,
                Err(e) if is_row_error(&e) && !conn.is_autocommit() => {
                    one_by_one(conn, stmts, table, run, &slots, report)?
                }
                Err(e) => {
                    let at = records[slots[0]].whereabouts();
                    return Err(db_error(e, format!("cannot write to table `{}`", table.name)).at(at));
                }
            }
            slots.clear();
            if records.len() - i - 1 < table.rows_per_upsert {
                stmts.many = None; // too few left to fill it again
            }
        }
    }
    one_by_one(conn, stmts, table, run, &slots, report)?;
    Ok(None)
}

/// Upsert `slots` (record indices already bound once, their drift already reported) one
/// row at a time.
fn one_by_one(
    conn: &Connection,
    stmts: &mut Stmts<'_>,
    table: &Table,
    run: &Run<'_>,
    slots: &[usize],
    report: &mut WriteReport,
) -> Result<(), Error> {
    for &i in slots {
        let record = &run.records[i];
        let outcome = match bind_record(&mut stmts.one, 0, table, record, run.synced_at, &mut None) {
            Ok(_) => stmts.one.raw_execute().map(|_| ()).map_err(Reject::Db),
            Err(r) => Err(r),
        };
        settle(conn, table, record, i, outcome, report)?;
    }
    Ok(())
}

/// Count a record's upsert as written, or refused (the batch goes on), or fail the batch.
fn settle(
    conn: &Connection,
    table: &Table,
    record: &Record,
    i: usize,
    outcome: Result<(), Reject>,
    report: &mut WriteReport,
) -> Result<(), Error> {
    match outcome {
        Ok(()) => {
            report.written += 1;
            Ok(())
        }
        Err(r) => refuse(conn, table, record, i, r, report),
    }
}

/// Record why record `i` was not written, or fail the batch when the cause is not the row.
fn refuse(
    conn: &Connection,
    table: &Table,
    record: &Record,
    i: usize,
    why: Reject,
    report: &mut WriteReport,
) -> Result<(), Error> {
    match why {
        Reject::Db(e) if !is_row_error(&e) || conn.is_autocommit() => {
            // Not about this row, or the database rolled the transaction back
            // (a trigger's RAISE(ROLLBACK)): the whole batch fails.
            Err(db_error(e, format!("cannot write to table `{}`", table.name)).at(record.whereabouts()))
        }
        Reject::Db(e) => {
            let mut doing = format!("row refused by table `{}`", table.name);
            if e.sqlite_error_code() == Some(ErrorCode::TooBig) {
                let limit = length_limit(conn);
                doing.push_str(&format!(": a SQLite row holds at most {limit} bytes (SQLITE_MAX_LENGTH)"));
            }
            let err = db_error(e, doing);
            report.rejected.push((i, err.at(record.whereabouts())));
            Ok(())
        }
        Reject::TooBig(field, bytes) => {
            let (bytes, limit) = (admit::thousands(bytes), length_limit(conn));
            let why = format!(
                "field `{field}` holds {bytes} bytes; a SQLite value holds at most {limit} bytes (SQLITE_MAX_LENGTH)"
            );
            report.rejected.push((i, Error::data(why).in_connector(crate::KIND).at(record.whereabouts())));
            Ok(())
        }
        Reject::Data(reason) => {
            let err = Error::data(reason).in_connector(crate::KIND).at(record.whereabouts());
            report.rejected.push((i, err));
            Ok(())
        }
    }
}

/// SQLite's most bytes in a value or row on this connection (`SQLITE_LIMIT_LENGTH`), grouped.
fn length_limit(conn: &Connection) -> String {
    match conn.limit(Limit::SQLITE_LIMIT_LENGTH).ok().and_then(|n| usize::try_from(n).ok()) {
        Some(n) => admit::thousands(n),
        None => "1,000,000,000".to_owned(),
    }
}

/// The `column_type` drift of `record` in column `col` of `table`.
fn misfit_event(table: &Table, col: usize, record: &Record) -> DriftEvent {
    let column = &table.columns[col];
    let value = record.data.get(&column.name).unwrap_or(&serde_json::Value::Null);
    let mut path = String::from("/");
    path.push_str(&column.name.replace('~', "~0").replace('/', "~1"));
    DriftEvent {
        path,
        change: DriftClass::ColumnType,
        expected: column.fits.names(),
        observed: Seen(Seen::bit(value)).names(),
        count: 1,
        first_seen: dovetail_core::now_rfc3339(),
        first_at: format!("{} (table `{}`)", record.whereabouts(), table.name),
    }
}

/// Why a record is not written.
enum Reject {
    /// Its data cannot be mapped to the table.
    Data(String),
    /// A field's value (name, bytes) is longer than SQLite holds.
    TooBig(String, usize),
    /// SQLite refused it (or failed).
    Db(rusqlite::Error),
}

/// Bind every column of the upsert from one record, from parameter `offset + 1` on (its
/// slot in a multi-row upsert); `misfit` is set to the first column
/// whose value's JSON type is not one the column was made for.
fn bind_record(
    stmt: &mut CachedStatement<'_>,
    offset: usize,
    table: &Table,
    record: &Record,
    synced_at: &str,
    misfit: &mut Option<usize>,
) -> Result<Fit, Reject> {
    let Some(obj) = record.data.as_object() else {
        return Err(Reject::Data("record data is not a JSON object".into()));
    };
    for col in table.columns.iter().filter(|c| c.key) {
        if obj.get(&col.name).is_none_or(serde_json::Value::is_null) {
            return Err(Reject::Data(format!("key column `{}` is missing or null", col.name)));
        }
    }
    // The record's fields and the table's columns are both sorted by name: one merge walk
    // finds each column's value. A problem is reported for the first column in table order,
    // as a lookup per column in that order would.
    let mut fields = obj.iter().peekable();
    let mut matched = 0;
    let mut failed: Option<(usize, Reject)> = None;
    for &(ci, param) in &table.by_name {
        let col = &table.columns[ci];
        let value = match col.role {
            Role::SoftDelete => continue,
            Role::SyncedAt => Bound::Text(synced_at),
            Role::Data => {
                let mut v = None;
                while let Some((k, value)) = fields.peek() {
                    match k.as_str().cmp(col.name.as_str()) {
                        std::cmp::Ordering::Less => {
                            fields.next();
                        }
                        std::cmp::Ordering::Equal => {
                            v = Some(*value);
                            fields.next();
                            break;
                        }
                        std::cmp::Ordering::Greater => break,
                    }
                }
                if v.is_some() {
                    matched += 1;
                }
                if let Some(v) = v
                    && !col.fits.fits(Seen::bit(v))
                    && misfit.is_none_or(|m| ci < m)
                {
                    *misfit = Some(ci);
                }
                match bind(v, col.affinity) {
                    Ok(b) => b,
                    Err(e) => {
                        if failed.as_ref().is_none_or(|(f, _)| ci < *f) {
                            failed = Some((ci, Reject::Data(e)));
                        }
                        continue;
                    }
                }
            }
        };
        if let Err(e) = stmt.raw_bind_parameter(offset + param, &value)
            && failed.as_ref().is_none_or(|(f, _)| ci < *f)
        {
            let why = match (e.sqlite_error_code(), &value) {
                (Some(ErrorCode::TooBig), Bound::Text(s)) => Reject::TooBig(col.name.clone(), s.len()),
                (Some(ErrorCode::TooBig), Bound::Json(s)) => Reject::TooBig(col.name.clone(), s.len()),
                _ => Reject::Data(format!("cannot bind field `{}`: {e}", col.name)),
            };
            failed = Some((ci, why));
        }
    }
    if let Some((_, why)) = failed {
        return Err(why);
    }
    if matched < obj.len() {
        table.check_unknown_fields(obj).map_err(Reject::Data)?;
        return Ok(Fit::NeedsColumns);
    }
    Ok(Fit::Bound)
}

/// Delete (or soft-delete) rows by key in one transaction; returns rows affected.
pub(crate) fn delete_keys(conn: &mut Connection, table: &Table, keys: &[Key]) -> Result<u64, Error> {
    let what = |e: rusqlite::Error| db_error(e, format!("cannot delete from table `{}`", table.name));
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(what)?;
    let now = dovetail_core::now_rfc3339();
    let soft = table.soft_delete_column().is_some();
    let mut affected = 0u64;
    {
        let mut stmt = tx.prepare_cached(&table.delete_sql()).map_err(what)?;
        for key in keys {
            let parts = key.parts(table.keys.len());
            if parts.len() != table.keys.len() {
                return Err(Error::data(format!(
                    "key {key} has {} parts but table `{}` has {} key columns",
                    parts.len(),
                    table.name,
                    table.keys.len()
                )));
            }
            for (p, (part, &col)) in parts.iter().zip(&table.keys).enumerate() {
                let value = bind(Some(part), table.columns[col].affinity).map_err(Error::data)?;
                stmt.raw_bind_parameter(p + 1, value).map_err(what)?;
            }
            if soft {
                stmt.raw_bind_parameter(table.keys.len() + 1, now.as_str()).map_err(what)?;
            }
            affected += stmt.raw_execute().map_err(what)? as u64;
        }
    }
    tx.commit().map_err(what)?;
    Ok(affected)
}
