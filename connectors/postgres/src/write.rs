//! A batch in one transaction: admit the records (names, the column limit), add the
//! columns new fields need, convert every value (drift, NUL), keep the last record of each
//! key, `COPY … (FORMAT binary)` them into a temporary table and merge that into the table
//! with one `INSERT … ON CONFLICT DO UPDATE … WHERE … IS DISTINCT FROM …`.
//!
//! A batch waits on round trips more than on the server (docs/performance.md), so its
//! statements go out pipelined ([`dovetail_pg::tx`]): BEGIN, the stage and the COPY's start
//! in one round trip, the rows, then the COPY's end, the merge, the offsets row and (when
//! nothing needs an answer first) COMMIT in a second.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;

use dovetail_core::drift::{DriftClass, DriftEvent};
use dovetail_core::{Batch, ColumnDrift, DeleteMode, Disposition, Error, Key, Record, SinkStream, WriteReport};
use serde_json::Value;
use tokio::sync::Mutex as AsyncMutex;
use tokio_postgres::GenericClient;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::ToSql;

use crate::config::NulPolicy;
use crate::error::PgErr;
use crate::ident::{quote, short};
use crate::table::{MAX_COLUMNS, Role, Table};
use crate::turn::{Gate, Mine};
use crate::types::{Cell, Misfit, PgType, convert};

/// The staging table of a batch (temporary, emptied at commit).
const STAGE: &str = "_dovetail_stage";

/// A pooled connection inside a batch's transaction.
pub(crate) type Tx = dovetail_pg::TxConn<deadpool_postgres::Object>;

/// What a batch's transaction sent: its report and the epoch of its offsets row (none
/// without a checkpoint, or when the answer was lost).
pub(crate) struct Sent {
    pub(crate) report: WriteReport,
    pub(crate) epoch: Option<i64>,
}

/// A batch's transaction done: committed already, or to be committed by the caller.
pub(crate) struct Written {
    pub(crate) sent: Sent,
    pub(crate) committed: bool,
}

/// A failed batch; `unsure` when its COMMIT was sent and the connection failed before every
/// answer came (it may have landed).
pub(crate) struct Failed {
    pub(crate) err: Error,
    pub(crate) unsure: Option<Sent>,
}

impl Failed {
    /// A failure before the COMMIT was sent: nothing of the batch landed.
    pub(crate) fn before(err: Error) -> Failed {
        Failed { err, unsure: None }
    }
}

/// Which table a stream is written to, and the settings that shape it.
pub(crate) struct Target<'a> {
    pub(crate) schema: &'a str,
    /// The table's name in PostgreSQL (prefixed and shortened).
    pub(crate) table: String,
    /// The table's name before shortening (the prefix and the stream).
    pub(crate) full_name: String,
    pub(crate) stream: &'a SinkStream,
    pub(crate) soft_col: &'a str,
    pub(crate) nul: NulPolicy,
}

/// The stream's table (cached), or a new one from the stream's schema when it has one.
/// `Ok(None)`: no table and no schema yet (the first batch shapes it).
pub(crate) async fn resolve<'t, C: GenericClient>(
    c: &C,
    tables: &'t mut HashMap<String, Table>,
    t: &Target<'_>,
    reload: bool,
) -> Result<Option<&'t mut Table>, Error> {
    if t.stream.key_columns.is_empty() {
        return Err(Error::config(format!(
            "stream `{}` has no primary key; the postgres sink upserts by primary key",
            t.stream.name
        )));
    }
    if reload || !fresh(tables, t) {
        tables.remove(&t.stream.name);
        let table = match Table::load(c, t.schema, &t.table, t.stream, t.soft_col).await? {
            Some(table) => Some(table),
            None => match schema_fields(t.stream.schema.as_ref()) {
                Some(fields) if fields.len() + 2 <= MAX_COLUMNS => Some(Table::create(c, t, fields).await?),
                _ => None,
            },
        };
        if let Some(table) = table {
            tables.insert(t.stream.name.clone(), table);
        }
    }
    Ok(tables.get_mut(&t.stream.name))
}

/// Column types from a schema's top-level `properties`, if it has them.
fn schema_fields(schema: Option<&Value>) -> Option<BTreeMap<String, PgType>> {
    let schema = schema?;
    let props = schema.get("properties")?.as_object()?;
    Some(
        props
            .iter()
            .filter(|(k, _)| !k.contains('\0'))
            .map(|(k, p)| {
                let types = dovetail_core::schema::property_types(schema, k);
                (k.clone(), PgType::of_schema(&types, p.get("format").and_then(Value::as_str)))
            })
            .collect(),
    )
}

/// The type of a new column for `field`: the schema's, else what the batch's records hold
/// (those not in `refused`).
fn field_type(stream: &SinkStream, records: &[Record], refused: &HashMap<usize, String>, field: &str) -> PgType {
    if let Some(p) = stream.schema.as_ref().and_then(|s| s.get("properties")?.get(field)) {
        let types = dovetail_core::schema::property_types(stream.schema.as_ref().unwrap_or(&Value::Null), field);
        if !types.is_empty() {
            return PgType::of_schema(&types, p.get("format").and_then(Value::as_str));
        }
    }
    let admitted = records.iter().enumerate().filter(|(i, _)| !refused.contains_key(i));
    PgType::of_values(admitted.filter_map(|(_, r)| r.data.get(field)))
}

/// Write a batch in one transaction on `tx` (which this begins); on error nothing of it
/// stays and the cached table is forgotten (its column adds were rolled back).
/// With a checkpoint, it is stored in the same transaction (`crate::offsets`, the new epoch
/// returned), sent together with the merge. With `commit`, COMMIT goes out with the merge
/// too, unless the offsets row's answer decides a lease fence first, and once `gate` opens.
/// The stream's tables are locked only until the rows go out, not through the COMMIT, so
/// the stream's next batch is written meanwhile.
pub(crate) async fn write_batch(
    tx: &Tx,
    tables: &AsyncMutex<HashMap<String, Table>>,
    t: &Target<'_>,
    batch: &Batch,
    commit: bool,
    (mine, gate): (&Mine, &Gate),
) -> Result<Written, Failed> {
    let result = write_in_tx(tx, tables, t, batch, commit, (mine, gate)).await;
    if result.is_err() {
        tables.lock().await.remove(&t.stream.name);
    }
    result
}

async fn write_in_tx(
    tx: &Tx,
    tables: &AsyncMutex<HashMap<String, Table>>,
    t: &Target<'_>,
    batch: &Batch,
    commit: bool,
    (mine, gate): (&Mine, &Gate),
) -> Result<Written, Failed> {
    let report = WriteReport::default();
    let what = format!("writing to table `{}.{}`", t.schema, t.table);
    let save = match &batch.checkpoint {
        Some(cp) => {
            Some(crate::offsets::prepare(tx, t.schema, &t.table, cp, batch.lease_epoch).await.map_err(Failed::before)?)
        }
        None => None,
    };
    // A lease fence is decided on the offsets row's answer, so COMMIT waits for it.
    let commit = commit && !save.as_ref().is_some_and(crate::offsets::Save::fenced);
    let (shaped, begun) = {
        let mut tables = tables.lock().await;
        shape(tx, &mut tables, t, &batch.records, &what).await?
    };
    if !begun {
        mine.shaped();
    }
    let Some((table, refused)) = shaped else {
        // Nothing to write: the checkpoint alone.
        if !begun {
            tx.begin().await.map_err(|e| Failed::before(PgErr::new(&what).err(e)))?;
        }
        let epoch = match &save {
            Some(save) => Some(save.run(tx.client()).await.map_err(Failed::before)?),
            None => None,
        };
        return Ok(Written { sent: Sent { report, epoch }, committed: false });
    };
    // Rows the merge inserted or changed, not records sent: a record the table already
    // holds as it is was not written. A stream resumed from this sink's committed position
    // (a crash between its commit and the state's) lacks that batch's ledger rows, so the
    // next pass sends those records again; they change nothing and count nothing.
    let how = How { begun, save: save.as_ref(), commit, mine, gate };
    copy_and_merge(tx, &table, t, batch, &refused, report, how).await
}

/// The table the batch goes to, made or widened for it (in the transaction, which is then
/// begun), and the records refused; `None` when there is nothing to write. Returns whether
/// BEGIN was sent: at once when the table or its columns need statements of their own
/// (rare), else it goes out with the stage.
async fn shape(
    tx: &Tx,
    tables: &mut HashMap<String, Table>,
    t: &Target<'_>,
    records: &[Record],
    what: &str,
) -> Result<(Option<(Table, HashMap<usize, String>)>, bool), Failed> {
    let c = tx.client();
    let mut begun = false;
    let mut begin = async || -> Result<(), Failed> {
        if !begun {
            begun = true;
            tx.begin().await.map_err(|e| Failed::before(PgErr::new(what).err(e)))?;
        }
        Ok(())
    };
    if !records.is_empty() && !fresh(tables, t) {
        begin().await?;
        if resolve(c, tables, t, false).await.map_err(Failed::before)?.is_none() {
            // No schema: the key columns typed from the batch; the other fields come next as
            // added columns, like new fields of any batch.
            let keys = t
                .stream
                .key_columns
                .iter()
                .map(|k| (k.clone(), field_type(t.stream, records, &HashMap::new(), k)))
                .collect();
            let created = Table::create(c, t, keys).await.map_err(Failed::before)?;
            tables.insert(t.stream.name.clone(), created);
        }
    }
    let table = match tables.get_mut(&t.stream.name) {
        Some(table) if !records.is_empty() => table,
        _ => return Ok((None, begun)),
    };
    let (fields, refused) = admit(table, t, records);
    if !fields.is_empty() {
        begin().await?;
        table.add_columns(c, fields).await.map_err(Failed::before)?;
    }
    Ok((Some((table.clone(), refused)), begun))
}

/// How a batch's last round trip ends: whether BEGIN was sent already, the offsets row to
/// store, and whether COMMIT goes with it (once `gate` opens); `mine` is told when every
/// statement was answered.
struct How<'a> {
    begun: bool,
    save: Option<&'a crate::offsets::Save>,
    commit: bool,
    mine: &'a Mine,
    gate: &'a Gate,
}

/// Whether the stream's table is known and current (`resolve` needs no statement).
fn fresh(tables: &HashMap<String, Table>, t: &Target<'_>) -> bool {
    let soft = t.stream.delete_mode == DeleteMode::SoftDelete;
    tables.get(&t.stream.name).is_some_and(|cached| cached.soft_delete_column().is_some() == soft)
}

/// Which new fields become columns, and which records are refused (by index, with why)
/// because a field of theirs cannot: a NUL in its name, a column name already taken by
/// another field or by the sink, or one column too many.
fn admit(table: &Table, t: &Target<'_>, records: &[Record]) -> (BTreeMap<String, PgType>, HashMap<usize, String>) {
    let mut new: BTreeMap<String, PgType> = BTreeMap::new();
    let mut names: HashMap<String, String> = HashMap::new(); // new column name → field
    let mut refused = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        let Some(obj) = r.data.as_object() else {
            refused.insert(i, "record data is not a JSON object".to_owned());
            continue;
        };
        let mut mine: Vec<(&String, String)> = Vec::new();
        let mut why = None;
        for k in obj.keys().filter(|k| !table.by_field.contains_key(*k) && !new.contains_key(*k)) {
            let name = short(k);
            if k.contains('\0') {
                why = Some(format!("field name {k:?} contains a NUL character, which PostgreSQL names cannot hold"));
            } else if let Some(c) = table.columns.iter().find(|c| c.name == name) {
                why = Some(match c.role {
                    Role::Data => format!("field `{k}` would be column `{name}`, which holds field `{}`", c.field),
                    _ => format!("field `{k}` clashes with column `{name}`, which the sink sets itself"),
                });
            } else if let Some(other) = names.get(&name).filter(|f| *f != k) {
                why = Some(format!("field `{k}` would be column `{name}`, like field `{other}`"));
            } else {
                mine.push((k, name));
                continue;
            }
            break;
        }
        if why.is_none() && table.columns.len() + new.len() + mine.len() > MAX_COLUMNS {
            why = Some(format!(
                "the record needs {} columns in table `{}`; PostgreSQL allows at most {MAX_COLUMNS} columns in a table",
                table.columns.len() + new.len() + mine.len(),
                table.display()
            ));
        }
        match why {
            Some(why) => {
                refused.insert(i, why);
            }
            None => {
                for (k, name) in mine {
                    names.insert(name, k.clone());
                    new.insert(k.clone(), PgType::Jsonb);
                }
            }
        }
    }
    for (field, ty) in new.iter_mut() {
        *ty = field_type(t.stream, records, &refused, field);
    }
    (new, refused)
}

/// One row per key (the last record of a key wins), values in the order of
/// [`Table::written`]; refusals, drift and the count in `report`.
fn convert_rows<'b>(
    table: &Table,
    t: &Target<'_>,
    batch: &'b Batch,
    refused: &HashMap<usize, String>,
    report: &mut WriteReport,
) -> Vec<Vec<Cell<'b>>> {
    let cols = table.written();
    let mut rows: Vec<Vec<Cell<'b>>> = Vec::new();
    // Keys borrowed from the batch where the record carries one: no allocation per record.
    let mut slot: HashMap<Cow<'b, str>, usize> = HashMap::with_capacity(batch.records.len());
    let unwritable: HashSet<&str> = table
        .columns
        .iter()
        .filter(|c| c.role == Role::Data && c.ty == PgType::Other)
        .map(|c| c.field.as_str())
        .collect();
    for (i, record) in batch.records.iter().enumerate() {
        let reject = |why: String| (i, Error::data(why).in_connector(crate::KIND).at(record.whereabouts()));
        if let Some(why) = refused.get(&i) {
            report.rejected.push(reject(why.clone()));
            continue;
        }
        let Some(obj) = record.data.as_object() else { continue };
        let mut row = Vec::with_capacity(cols.len());
        let mut drift: Option<DriftEvent> = None;
        let mut bad = None;
        for &ci in &cols {
            let col = &table.columns[ci];
            let v = obj.get(&col.field).unwrap_or(&Value::Null);
            if col.key && v.is_null() {
                bad = Some(format!("key field `{}` is missing or null", col.field));
                break;
            }
            match convert(v, col.ty, t.nul) {
                Ok(c) => {
                    if c.stripped && drift.is_none() {
                        drift =
                            Some(event(table, &col.field, "string without NUL", "string with NUL (removed)", record));
                    }
                    row.push(c.cell);
                }
                Err(Misfit::Type(observed)) if !col.key => {
                    if drift.is_none() {
                        drift = Some(event(table, &col.field, col.ty.expects(), &observed, record));
                    }
                    row.push(Cell::Null);
                }
                Err(Misfit::Type(observed)) => {
                    bad = Some(format!(
                        "key field `{}` holds {observed}; its column in table `{}` takes {}",
                        col.field,
                        table.display(),
                        col.ty.expects()
                    ));
                    break;
                }
                Err(Misfit::Nul(path)) => {
                    bad = Some(format!(
                        "field `{}{path}` holds a NUL character, which PostgreSQL refuses in text and jsonb \
                         (set `nul = \"strip\"` on the sink to remove it)",
                        col.field
                    ));
                    break;
                }
            }
        }
        if let Some(why) = bad {
            report.rejected.push(reject(why));
            continue;
        }
        if drift.is_none()
            && let Some((f, v)) = obj.iter().find(|(f, v)| unwritable.contains(f.as_str()) && !v.is_null())
        {
            drift = Some(event(table, f, PgType::Other.expects(), dovetail_core::json_type_name(v), record));
        }
        if let Some(e) = drift {
            report.drift.push((i, e));
            if batch.column_drift == ColumnDrift::Refuse {
                continue;
            }
        }
        let key = match &record.key {
            Some(k) => Cow::Borrowed(k.as_str()),
            None => Cow::Owned(
                table
                    .keys
                    .iter()
                    .map(|&k| obj.get(&table.columns[k].field).map(Value::to_string).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("\u{1}"),
            ),
        };
        match slot.get(&key) {
            Some(&at) => rows[at] = row,
            None => {
                slot.insert(key, rows.len());
                rows.push(row);
            }
        }
        report.written += 1;
    }
    rows
}

/// The `column_type` drift of `record` in field `field` of `table`.
fn event(table: &Table, field: &str, expected: &str, observed: &str, record: &Record) -> DriftEvent {
    DriftEvent {
        path: format!("/{}", field.replace('~', "~0").replace('/', "~1")),
        change: DriftClass::ColumnType,
        expected: expected.to_owned(),
        observed: observed.to_owned(),
        count: 1,
        first_seen: dovetail_core::now_rfc3339(),
        first_at: format!("{} (table `{}`)", record.whereabouts(), table.display()),
    }
}

/// `COPY` the batch's rows into the connection's staging table, then one merge into the
/// table, the offsets row (`save`) and, with `commit`, COMMIT sent with it; returns what
/// the merge inserted or changed and the offsets row's epoch. Two round trips: BEGIN
/// (unless `begun`), the stage, the COPY's start (the rows converted meanwhile); then the
/// COPY's end, the merge, the offsets row and COMMIT. Every statement is prepared before its
/// round is sent (once per connection and shape of table), so none can follow the COMMIT.
/// With the stream's batch before still committing, the COMMIT waits for its answer
/// (`crate::turn`); the rest of the round does not.
async fn copy_and_merge(
    tx: &Tx,
    table: &Table,
    t: &Target<'_>,
    batch: &Batch,
    refused: &HashMap<usize, String>,
    mut report: WriteReport,
    how: How<'_>,
) -> Result<Written, Failed> {
    let How { begun, save, commit, mine, gate } = how;
    let shown = table.display();
    let what = format!("writing to table `{shown}`");
    let e = |err| PgErr::new(&what).err(err);
    let c = tx.client();
    let cols = table.written();
    let names: Vec<String> = cols.iter().map(|&i| quote(&table.columns[i].name)).collect();
    let defs: Vec<String> =
        cols.iter().zip(&names).map(|(&i, n)| format!("{n} {}", table.columns[i].ty.stage().0)).collect();
    let types: Vec<_> = cols.iter().map(|&i| table.columns[i].ty.stage().1).collect();
    // One stage per connection and column set, emptied when its transaction ends (`ON
    // COMMIT DELETE ROWS` truncates in place): creating and dropping a temp table per batch
    // wrote a dozen catalog rows, and `TRUNCATE` gives the table a new file each time.
    let defs = defs.join(", ");
    let stage = format!("{STAGE}_{:016x}", xxhash_rust::xxh3::xxh3_64(defs.as_bytes()));
    let stage_sql = format!("CREATE TEMP TABLE IF NOT EXISTS {stage} ({defs}) ON COMMIT DELETE ROWS");
    let copy_sql = format!("COPY {stage} ({}) FROM STDIN (FORMAT binary)", names.join(", "));
    let merge_sql = merge_sql(table, &cols, &stage);
    let opened = async {
        let begin = async { if begun { Ok(()) } else { tx.begin().await } };
        // The merge is prepared after the stage exists, before the COPY holds the connection.
        let merge = tx.prepare_cached(&merge_sql);
        let copy = async { c.copy_in(&tx.prepare_cached(&copy_sql).await?).await };
        tokio::try_join!(biased; begin, c.batch_execute(&stage_sql), merge, copy)
    };
    let (opened, rows) = tokio::join!(biased; opened, async { convert_rows(table, t, batch, refused, &mut report) });
    let ((), (), merge, sink) = opened.map_err(|err| Failed::before(e(err)))?;
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    let mut refs: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(cols.len());
    for row in &rows {
        refs.clear();
        refs.extend(row.iter().map(|c| c as &(dyn ToSql + Sync)));
        writer.as_mut().write(&refs).await.map_err(|err| Failed::before(e(err)))?;
    }
    drop(refs);
    drop(rows);
    dovetail_core::failpoint::hit("mid_batch");
    // A statement failing before it is sent (on its first poll) stops the COMMIT.
    let failed = &AtomicBool::new(false);
    let note = |r: Result<u64, tokio_postgres::Error>| {
        if r.is_err() {
            failed.store(true, Relaxed);
        }
        r.map_err(e)
    };
    let statements = async {
        let answers = tokio::join!(
            biased;
            async { note(writer.finish().await) },
            async {
                // Rows locked only once the batch before holds all of its (`crate::turn`).
                if let Err(err) = gate.locked().await {
                    failed.store(true, Relaxed);
                    return Err(err);
                }
                note(c.execute(&merge, &[]).await)
            },
            async {
                let Some(save) = save else { return Ok(None) };
                let saved = match gate.locked().await {
                    Ok(()) => save.run(c).await,
                    Err(err) => Err(err),
                };
                failed.fetch_or(saved.is_err(), Relaxed);
                saved.map(Some)
            },
        );
        // Every lock the batch takes is taken: the stream's next batch may begin — unless this
        // transaction made or widened the table, which the next batch cannot see before the
        // COMMIT.
        if !begun {
            mine.committing();
        }
        answers
    };
    let ((copied, merged, saved), committed) = tokio::join!(
        biased;
        statements,
        async {
            // Checked again after the gate: the statements were sent before it, and may
            // have failed since.
            if !commit || failed.load(Relaxed) || gate.wait().await.is_err() || failed.load(Relaxed) {
                return None;
            }
            Some(tx.commit().await.map_err(e))
        },
    );
    let written = merged.as_ref().ok().copied();
    let epoch = saved.as_ref().ok().copied().flatten();
    let statements = copied.and(merged).and(saved);
    match (statements, committed) {
        (Ok(_), None) => Ok(Written { sent: Sent { report: counted(report, written), epoch }, committed: false }),
        (Ok(_), Some(Ok(()))) => {
            Ok(Written { sent: Sent { report: counted(report, written), epoch }, committed: true })
        }
        (Ok(_), Some(Err(err))) => Err(Failed { err, unsure: Some(Sent { report: counted(report, written), epoch }) }),
        // COMMIT went out but the connection failed before every answer came: the batch may
        // have landed.
        (Err(err), Some(_)) if err.kind().disposition() == Disposition::Outage => {
            Err(Failed { err, unsure: Some(Sent { report: counted(report, written), epoch }) })
        }
        // Refused by the server: the transaction is aborted (a COMMIT sent rolled it back).
        (Err(err), _) => Err(Failed::before(err)),
    }
}

/// `report` with what the merge wrote, when it answered.
fn counted(mut report: WriteReport, written: Option<u64>) -> WriteReport {
    if let Some(w) = written {
        report.written = w;
    }
    report
}

/// `INSERT … SELECT … FROM stage ON CONFLICT (key) DO UPDATE … WHERE … IS DISTINCT FROM …`:
/// a row whose data did not change is not touched (its `_synced_at` stays).
fn merge_sql(table: &Table, cols: &[usize], stage: &str) -> String {
    let q = |i: usize| quote(&table.columns[i].name);
    let mut insert: Vec<String> = cols.iter().map(|&i| q(i)).collect();
    let mut select = insert.clone();
    let data: Vec<String> = cols.iter().filter(|&&i| !table.columns[i].key).map(|&i| q(i)).collect();
    let mut set: Vec<String> = data.iter().map(|c| format!("{c} = EXCLUDED.{c}")).collect();
    let mut changed = if data.is_empty() {
        "false".to_owned()
    } else {
        let t: Vec<String> = data.iter().map(|c| format!("t.{c}")).collect();
        let x: Vec<String> = data.iter().map(|c| format!("EXCLUDED.{c}")).collect();
        format!("ROW({}) IS DISTINCT FROM ROW({})", t.join(", "), x.join(", "))
    };
    for c in &table.columns {
        let n = quote(&c.name);
        match c.role {
            Role::SyncedAt => {
                insert.push(n.clone());
                select.push("now()".into());
                set.push(format!("{n} = EXCLUDED.{n}"));
            }
            Role::SoftDelete => {
                set.push(format!("{n} = NULL"));
                changed.push_str(&format!(" OR t.{n} IS NOT NULL"));
            }
            Role::Data => {}
        }
    }
    let keys: Vec<String> = table.keys.iter().map(|&i| q(i)).collect();
    format!(
        "INSERT INTO {} AS t ({}) SELECT {} FROM {stage} ON CONFLICT ({}) DO UPDATE SET {} WHERE {changed}",
        table.qualified(),
        insert.join(", "),
        select.join(", "),
        keys.join(", "),
        set.join(", ")
    )
}

/// Delete (or soft-delete) rows by key in one statement; returns rows affected.
pub(crate) async fn delete_keys<C: GenericClient>(c: &C, table: &Table, keys: &[Key]) -> Result<u64, Error> {
    let n = table.keys.len();
    let mut parts: Vec<Vec<String>> = vec![Vec::with_capacity(keys.len()); n];
    for key in keys {
        let values = key.parts(n);
        if values.len() != n {
            return Err(Error::data(format!(
                "key {key} has {} parts but table `{}` has {n} key columns",
                values.len(),
                table.display()
            )));
        }
        for (p, v) in values.iter().enumerate() {
            parts[p].push(match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        }
    }
    let aliases: Vec<String> = (0..n).map(|p| format!("k{p}")).collect();
    let arrays: Vec<String> = (1..=n).map(|p| format!("${p}::text[]")).collect();
    let mut cond: Vec<String> = table
        .keys
        .iter()
        .enumerate()
        .map(|(p, &i)| {
            let col = &table.columns[i];
            format!("t.{} = d.k{p}::{}", quote(&col.name), col.ty.ddl())
        })
        .collect();
    let from = format!("unnest({}) AS d({})", arrays.join(", "), aliases.join(", "));
    let sql = match table.soft_delete_column() {
        None => format!("DELETE FROM {} AS t USING {from} WHERE {}", table.qualified(), cond.join(" AND ")),
        Some(soft) => {
            let soft = quote(&soft.name);
            let synced = quote(crate::ident::SYNCED_AT);
            cond.push(format!("t.{soft} IS NULL"));
            format!(
                "UPDATE {} AS t SET {soft} = now(), {synced} = now() FROM {from} WHERE {}",
                table.qualified(),
                cond.join(" AND ")
            )
        }
    };
    let params: Vec<&(dyn ToSql + Sync)> = parts.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    c.execute(&sql, &params).await.map_err(|e| PgErr::new(&format!("deleting from table `{}`", table.display())).err(e))
}
