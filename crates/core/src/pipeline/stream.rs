//! One stream's run: a reader task, a mapper task and a writer loop joined by bounded channels.
//!
//! The writer is the only place that commits: it writes a batch to the sink, then commits the
//! ledger, dead letters and the checkpoint computed for that batch in one state transaction.
//! So a checkpoint never runs ahead of what the sink acknowledged.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::prepare::{Prepared, Preparer};
use super::{Shared, StreamOptions};
use crate::connector::{Batch, Cx, Next, ReadRequest, SinkStream};
use crate::error::{Error, ErrorKind};
use crate::failpoint;
use crate::record::{Key, Record, compare_cursors};
use crate::report::StreamReport;
use crate::state::{Checkpoint, Commit, CursorState, DeadLetter, LedgerEntry};
use crate::stream::{DeleteMode, StreamSpec, SyncMode};

/// A mapped batch on its way to the writer, with the checkpoint that becomes true once it is written.
struct MappedBatch {
    to_write: Vec<Prepared>,
    /// Keys to stamp with the current pass (read unchanged, or dead-lettered with a key).
    unchanged: Vec<Key>,
    skipped: u64,
    dead: Vec<DeadLetter>,
    checkpoint: Checkpoint,
    read: u64,
    filtered: u64,
    mapped: u64,
    done: bool,
}

/// Counters kept by the tasks, merged into the report at the end.
#[derive(Default)]
struct Timings {
    read: u128,
    map: u128,
    ledger: u128,
    write: u128,
    commit: u128,
}

pub(crate) struct StreamRun {
    pub shared: Arc<Shared>,
    pub spec: StreamSpec,
    pub opts: StreamOptions,
    pub dry_run: bool,
    pub cx: Cx,
}

impl StreamRun {
    pub(crate) fn key_columns(&self) -> Result<Vec<String>, Error> {
        if let Some(pk) = &self.opts.primary_key {
            return Ok(pk.clone());
        }
        let mapping = self.opts.mapping.as_deref();
        self.spec
            .primary_key
            .iter()
            .map(|p| match mapping {
                None => Ok(p.as_str().to_owned()),
                Some(m) => m.output_path(p.as_str()).ok_or_else(|| {
                    Error::config(format!("the mapping drops primary key field `{p}`; keep it or set `primary_key` for the stream to the output column"))
                }),
            })
            .collect()
    }

    /// Run the stream to the end of its pass, an error, or cancellation.
    pub async fn run(self) -> (StreamReport, Option<Error>) {
        let mut report = StreamReport::default();
        let err = self.run_inner(&mut report).await.err();
        report.outcome = match &err {
            Some(e) if *e.kind() == ErrorKind::Interrupted => "interrupted".into(),
            Some(_) => "failed".into(),
            None => "succeeded".into(),
        };
        report.error = err.as_ref().filter(|e| *e.kind() != ErrorKind::Interrupted).map(|e| e.report());
        let err = err.map(|e| e.in_pipeline(&self.shared.name).in_stream(&self.spec.name));
        (report, err)
    }

    async fn run_inner(&self, report: &mut StreamReport) -> Result<(), Error> {
        let sh = &self.shared;
        let name = self.spec.name.clone();
        let incremental = self.opts.sync_mode == SyncMode::Incremental;
        let delete_mode = if incremental { DeleteMode::Keep } else { self.opts.delete_mode };
        if incremental && self.opts.delete_mode != DeleteMode::Keep {
            return Err(Error::config(format!("stream `{name}`: `delete` needs `sync_mode = \"full_refresh\"`")));
        }
        let cursor_field = if incremental { self.spec.cursor_field.clone() } else { None };
        let key_columns = self.key_columns()?;
        let sink_stream =
            Arc::new(SinkStream { name: name.clone(), key_columns: key_columns.clone(), schema: None, delete_mode });
        if !self.dry_run {
            sh.sink.open(&sink_stream, &self.cx).await?;
        }
        let prev = sh.state.checkpoint(&sh.name, &name).await?;
        let start = starting_checkpoint(prev, incremental);
        report.resumed = !start.pass_complete && start.position.is_some();
        if report.resumed {
            let position = start.position.as_ref().map(crate::record::canonical_json).unwrap_or_default();
            info!(stream = %name, pass = start.pass, %position, "resuming from checkpoint");
        }
        let mut cp = start.clone();
        cp.pass_complete = false;
        let need_baseline = sh.state.baseline(&sh.name, &name).await?.is_none();
        // Initial load: with an empty ledger (and the run lock held) no key can be known, so
        // the per-batch lookups are skipped. A key repeated within this run is then written
        // twice — an idempotent upsert — instead of being counted unchanged the second time.
        let ledger_known = sh.state.has_ledger(&sh.name, &name).await?;

        let (page_tx, mut page_rx) = mpsc::channel(1);
        let (batch_tx, mut batch_rx) = mpsc::channel::<Result<MappedBatch, Error>>(1);

        // Reader: pages in order until the pass is done, an error, or cancellation.
        let reader = {
            let source = sh.source.clone();
            let cx = self.cx.clone();
            let mut req = ReadRequest {
                stream: name.clone(),
                position: cp.position.clone(),
                since: cursor_field.as_ref().and_then(|_| cp.floor.as_ref().map(|f| f.value.clone())),
                batch_size: sh.batch_size,
            };
            tokio::spawn(async move {
                let mut read_ns = 0u128;
                loop {
                    if cx.cancel.is_cancelled() {
                        break;
                    }
                    let t = Instant::now();
                    let page = source.read(&req, &cx).await;
                    read_ns += t.elapsed().as_nanos();
                    let stop = match &page {
                        Ok(p) => match &p.next {
                            Next::More(pos) => {
                                req.position = Some(pos.clone());
                                false
                            }
                            Next::Done { .. } => true,
                        },
                        Err(_) => true,
                    };
                    if page_tx.send(page).await.is_err() || stop {
                        break;
                    }
                }
                read_ns
            })
        };

        // Mapper: map, key, filter by cursor, hash, look up the ledger; compute each batch's checkpoint.
        let mapper = {
            let preparer = Preparer {
                pipeline: sh.name.clone(),
                stream: name.clone(),
                mapping: self.opts.mapping.clone().unwrap_or_else(|| Arc::new(crate::connector::Identity)),
                key_columns,
                identity: self.opts.mapping.is_none(),
            };
            let state = sh.state.clone();
            let pipeline = sh.name.clone();
            let stream = name.clone();
            let track_touched = delete_mode != DeleteMode::Keep;
            let mut cp = cp.clone();
            tokio::spawn(async move {
                let (mut map_ns, mut ledger_ns) = (0u128, 0u128);
                let mut baseline_pending = need_baseline;
                while let Some(page) = page_rx.recv().await {
                    let page = match page {
                        Ok(p) => p,
                        Err(e) => {
                            let _ = batch_tx.send(Err(e)).await;
                            break;
                        }
                    };
                    let t = Instant::now();
                    let endpoint = page.records.first().map(|r| r.provenance.endpoint.clone()).unwrap_or_default();
                    let mut b = MappedBatch {
                        to_write: Vec::with_capacity(page.records.len()),
                        unchanged: vec![],
                        skipped: 0,
                        dead: vec![],
                        checkpoint: Checkpoint::default(),
                        read: (page.records.len() + page.rejects.len()) as u64,
                        filtered: 0,
                        mapped: 0,
                        done: false,
                    };
                    if baseline_pending && !page.records.is_empty() {
                        let schema = crate::schema::infer(page.records.iter().map(|r| &r.data));
                        if let Err(e) = state.save_baseline(&pipeline, &stream, &schema).await {
                            warn!(stream = %stream, error = %e, "could not store the schema baseline");
                        }
                        baseline_pending = false;
                    }
                    for r in page.rejects {
                        b.dead.push(preparer.reject(&endpoint, r));
                    }
                    let mut candidates = Vec::with_capacity(page.records.len());
                    for rec in page.records {
                        let cursor = cursor_field.as_ref().map(|f| f.get(&rec.data).cloned());
                        let (ep, loc) = (rec.provenance.endpoint.clone(), rec.location);
                        match preparer.prepare(rec) {
                            Err(dl) => b.dead.push(*dl),
                            Ok(items) => {
                                for p in items {
                                    b.mapped += 1;
                                    match &cursor {
                                        None => candidates.push(p),
                                        Some(c) => match admit(
                                            &mut cp,
                                            c.as_ref(),
                                            &p.key,
                                            cursor_field.as_ref().map(|f| f.as_str()).unwrap_or(""),
                                        ) {
                                            Ok(true) => candidates.push(p),
                                            Ok(false) => b.filtered += 1,
                                            Err(reason) => {
                                                let msg = format!("{}: {reason}", super::prepare::where_of(&ep, &loc));
                                                let raw = crate::record::canonical_json(
                                                    p.raw.as_ref().unwrap_or(&p.record.data),
                                                );
                                                b.dead.push(preparer.dead_letter(
                                                    Some(&p.key),
                                                    "data",
                                                    msg,
                                                    cursor_field.as_ref().map(|f| f.to_string()),
                                                    &ep,
                                                    &loc,
                                                    raw,
                                                ));
                                            }
                                        },
                                    }
                                }
                            }
                        }
                    }
                    map_ns += t.elapsed().as_nanos();
                    let t = Instant::now();
                    let keys: Vec<Key> =
                        if ledger_known { candidates.iter().map(|p| p.key.clone()).collect() } else { Vec::new() };
                    let lookup = if ledger_known {
                        state.ledger_lookup(&pipeline, &stream, &keys).await
                    } else {
                        Ok(vec![None; candidates.len()])
                    };
                    match lookup {
                        Ok(known) => {
                            for (p, old) in candidates.into_iter().zip(known) {
                                if old == Some(p.hash) {
                                    b.unchanged.push(p.key);
                                } else {
                                    b.to_write.push(p);
                                }
                            }
                        }
                        Err(e) => {
                            let _ = batch_tx.send(Err(e)).await;
                            break;
                        }
                    }
                    b.skipped = b.unchanged.len() as u64;
                    if track_touched {
                        // Dead-lettered records still exist at the source: keep their rows.
                        b.unchanged.extend(b.dead.iter().filter_map(|d| d.key.clone().map(Key::from_canonical)));
                    }
                    ledger_ns += t.elapsed().as_nanos();
                    match page.next {
                        Next::More(pos) => cp.position = Some(pos),
                        Next::Done { resume } => {
                            cp.position = resume;
                            cp.pass_complete = true;
                            if cp.max.is_some() {
                                cp.floor = cp.max.clone();
                            }
                            b.done = true;
                        }
                    }
                    b.checkpoint = cp.clone();
                    if batch_tx.send(Ok(b)).await.is_err() {
                        break;
                    }
                }
                (map_ns, ledger_ns)
            })
        };

        // Writer: sink first, then one state transaction; the checkpoint follows the sink.
        // Commits run in order on their own task, up to two batches behind the sink, so the
        // sink never waits for the state store; each commit is queued only after its own
        // batch was acknowledged, so a crash leaves the checkpoint at or behind what the sink
        // holds — never ahead.
        let mut t = Timings::default();
        let mut result: Result<(), Error> = Ok(());
        let mut completed = false;
        let (commit_tx, mut commit_rx) = mpsc::channel::<Commit>(2);
        let committer = {
            let state = sh.state.clone();
            tokio::spawn(async move {
                let mut ns = 0u128;
                while let Some(commit) = commit_rx.recv().await {
                    let started = Instant::now();
                    state.commit(commit).await?;
                    failpoint::hit("after_checkpoint");
                    ns += started.elapsed().as_nanos();
                }
                Ok::<u128, Error>(ns)
            })
        };
        while let Some(batch) = batch_rx.recv().await {
            let b = match batch {
                Ok(b) => b,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            report.batches += 1;
            report.read += b.read;
            report.filtered += b.filtered;
            report.mapped += b.mapped;
            report.skipped_unchanged += b.skipped;
            completed = b.done;
            let commit = match self.write_batch(b, &sink_stream, report, &mut t).await {
                Ok(c) => c,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            if let Some(commit) = commit {
                failpoint::hit("after_sink_commit");
                if commit_tx.send(commit).await.is_err() {
                    break; // the committer failed; its error is collected below
                }
            }
            if let Err(e) = self.check_threshold(report) {
                result = Err(e);
                break;
            }
        }
        drop(commit_tx);
        match committer.await {
            Ok(Ok(ns)) => t.commit = ns,
            Ok(Err(e)) => result = result.and(Err(e)),
            Err(e) => result = result.and(Err(Error::internal(format!("state commit task ended abnormally: {e}")))),
        }
        drop(batch_rx);
        let read_ns = reader.await.unwrap_or(0);
        let (map_ns, ledger_ns) = mapper.await.unwrap_or((0, 0));
        t.read = read_ns;
        t.map = map_ns;
        t.ledger = ledger_ns;

        if result.is_ok() && completed && delete_mode != DeleteMode::Keep && !self.dry_run {
            result = self.propagate_deletes(&sink_stream, cp.pass, report, &mut t).await;
        }
        let ms = |ns: u128| (ns / 1_000_000) as u64;
        report.stage_ms = BTreeMap::from([
            ("read".to_owned(), ms(t.read)),
            ("map".to_owned(), ms(t.map)),
            ("ledger".to_owned(), ms(t.ledger)),
            ("write".to_owned(), ms(t.write)),
            ("commit".to_owned(), ms(t.commit)),
        ]);
        result?;
        if !completed {
            if self.cx.cancel.is_cancelled() {
                return Err(Error::new(ErrorKind::Interrupted, "stopped by signal; the checkpoint was committed"));
            }
            return Err(Error::internal("the source stopped before the end of the pass"));
        }
        Ok(())
    }

    async fn write_batch(
        &self,
        b: MappedBatch,
        sink_stream: &Arc<SinkStream>,
        report: &mut StreamReport,
        t: &mut Timings,
    ) -> Result<Option<Commit>, Error> {
        let sh = &self.shared;
        let mut dead = b.dead;
        if self.dry_run {
            report.written += b.to_write.len() as u64;
            report.dead_lettered += dead.len() as u64;
            return Ok(None);
        }
        let mut ledger: Vec<LedgerEntry> =
            b.to_write.iter().map(|p| LedgerEntry { key: p.key.clone(), hash: p.hash, dest_id: None }).collect();
        if !b.to_write.is_empty() {
            let started = Instant::now();
            let (records, mut raws): (Vec<_>, Vec<_>) = b.to_write.into_iter().map(|p| (p.record, p.raw)).unzip();
            let records: Arc<[Record]> = records.into();
            let wr = sh.sink.write(Batch { stream: sink_stream.clone(), records: records.clone() }, &self.cx).await?;
            t.write += started.elapsed().as_nanos();
            for (i, id) in wr.dest_ids.into_iter().enumerate() {
                if let Some(e) = ledger.get_mut(i) {
                    e.dest_id = id;
                }
            }
            let mut rejected: Vec<usize> = Vec::new();
            for (i, err) in wr.rejected {
                if let Some(rec) = records.get(i) {
                    let at = rec.whereabouts();
                    let raw = raws.get_mut(i).and_then(Option::take).unwrap_or_else(|| rec.data.clone());
                    let key = ledger.get(i).map(|e| e.key.clone());
                    dead.push(DeadLetter {
                        id: 0,
                        pipeline: sh.name.clone(),
                        stream: self.spec.name.clone(),
                        key: key.map(|k| k.as_str().to_owned()),
                        kind: err.kind().name().to_owned(),
                        reason: format!("{at}: the sink rejected the record: {}", err.report()),
                        path: None,
                        location: Some(at),
                        raw: crate::record::canonical_json(&raw),
                        created_at: crate::now_rfc3339(),
                        seen_count: 1,
                    });
                    rejected.push(i);
                }
            }
            rejected.sort_unstable();
            for i in rejected.into_iter().rev() {
                ledger.remove(i);
            }
            report.written += wr.written;
        }
        report.dead_lettered += dead.len() as u64;
        let touched = if sink_stream.delete_mode != DeleteMode::Keep { b.unchanged } else { Vec::new() };
        let commit = Commit {
            pipeline: sh.name.clone(),
            stream: self.spec.name.clone(),
            pass: b.checkpoint.pass,
            ledger,
            touched,
            forget: vec![],
            dead_letters: dead,
            resolved_dead_letters: vec![],
            checkpoint: Some(b.checkpoint),
        };
        Ok(Some(commit))
    }

    fn check_threshold(&self, r: &StreamReport) -> Result<(), Error> {
        let sh = &self.shared;
        if let Some(max) = sh.max_dead_letters
            && r.dead_lettered > max
        {
            return Err(Error::data(format!(
                "{} records were dead-lettered, more than max_dead_letters = {max}; the good records so far are committed — see `dovetail dead-letters list`",
                r.dead_lettered
            )));
        }
        if let Some(ratio) = sh.max_dead_letter_ratio
            && r.read >= 100
            && (r.dead_lettered as f64) > ratio * r.read as f64
        {
            return Err(Error::data(format!(
                "{} of {} records were dead-lettered ({:.1}%), more than max_dead_letter_ratio = {ratio}; see `dovetail dead-letters list`",
                r.dead_lettered,
                r.read,
                100.0 * r.dead_lettered as f64 / r.read as f64
            )));
        }
        Ok(())
    }

    async fn propagate_deletes(
        &self,
        sink_stream: &SinkStream,
        pass: u64,
        report: &mut StreamReport,
        t: &mut Timings,
    ) -> Result<(), Error> {
        let sh = &self.shared;
        loop {
            let keys = sh.state.stale_keys(&sh.name, &self.spec.name, pass, 1000).await?;
            if keys.is_empty() {
                return Ok(());
            }
            let started = Instant::now();
            report.deleted += sh.sink.delete(sink_stream, &keys, &self.cx).await?;
            t.write += started.elapsed().as_nanos();
            let commit = Commit {
                pipeline: sh.name.clone(),
                stream: self.spec.name.clone(),
                pass,
                forget: keys,
                ..Default::default()
            };
            sh.state.commit(commit).await?;
        }
    }
}

/// The checkpoint a run starts from: resume inside an unfinished pass, or start the next pass.
fn starting_checkpoint(prev: Option<Checkpoint>, incremental: bool) -> Checkpoint {
    let prev = prev.unwrap_or(Checkpoint { pass_complete: true, ..Default::default() });
    if !prev.pass_complete {
        return prev;
    }
    Checkpoint {
        // A follow position survives passes only for incremental reads; a full refresh starts over.
        position: if incremental { prev.position } else { None },
        pass: prev.pass + 1,
        floor: if incremental { prev.floor } else { None },
        max: if incremental { prev.max } else { None },
        pass_complete: true,
    }
}

/// Decide whether a record passes the inclusive cursor bound, and track the pass maximum.
fn admit(cp: &mut Checkpoint, cursor: Option<&Value>, key: &Key, field: &str) -> Result<bool, String> {
    let Some(c) = cursor.filter(|c| !c.is_null()) else {
        return Err(format!("missing cursor field `{field}`"));
    };
    if let Some(floor) = &cp.floor {
        match compare_cursors(c, &floor.value) {
            None => {
                return Err(format!(
                    "cursor `{field}` value {c} cannot be compared with the checkpoint's {}",
                    floor.value
                ));
            }
            Some(Ordering::Less) => return Ok(false),
            Some(Ordering::Equal) if floor.keys.iter().any(|k| k == key.as_str()) => {
                return Ok(false);
            }
            _ => {}
        }
    }
    match &mut cp.max {
        None => cp.max = Some(CursorState { value: c.clone(), keys: vec![key.as_str().to_owned()] }),
        Some(max) => match compare_cursors(c, &max.value) {
            Some(Ordering::Greater) => *max = CursorState { value: c.clone(), keys: vec![key.as_str().to_owned()] },
            Some(Ordering::Equal) => {
                if !max.keys.iter().any(|k| k == key.as_str()) {
                    max.keys.push(key.as_str().to_owned());
                }
            }
            Some(Ordering::Less) => {}
            None => {
                return Err(format!("cursor `{field}` value {c} cannot be compared with {}", max.value));
            }
        },
    }
    Ok(true)
}
