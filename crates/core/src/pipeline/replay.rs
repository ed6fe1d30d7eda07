//! Dead-letter replay: re-process stored raw inputs through the current mapping and sink.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Pipeline;
use super::prepare::{Prepared, Preparer};
use crate::connector::{Cx, Identity, SinkStream};
use crate::error::Error;
use crate::record::{Provenance, Record};
use crate::report::{RunOutcome, RunReport, StreamReport};
use crate::state::{Commit, DeadLetter, LedgerEntry};
use crate::stream::{DeleteMode, StreamSpec};

/// What replaying one stream's dead letters needs for every batch.
struct Replay<'a> {
    preparer: Preparer,
    sink_stream: Arc<SinkStream>,
    /// The stream's checkpoint pass, stamped on the ledger rows (checkpoints do not move).
    pass: u64,
    cx: &'a Cx,
}

impl Pipeline {
    /// Re-process this pipeline's dead letters (all, or those with `ids`) through the current
    /// mapping and sink. Those that now pass are delivered (or found unchanged) and removed in
    /// the same transaction as their ledger rows; the others stay. Checkpoints do not move.
    /// In the report, `written` + `skipped_unchanged` were resolved, `dead_lettered` still fail.
    pub async fn replay_dead_letters(
        &self,
        ids: Option<&[i64]>,
        cancel: CancellationToken,
    ) -> Result<RunReport, Error> {
        let sh = &self.shared;
        let _lock = sh.state.lock(&sh.name).await?;
        let started = Instant::now();
        let mut report =
            RunReport { pipeline: sh.name.clone(), started_at: crate::now_rfc3339(), ..Default::default() };
        let cx = Cx { pipeline: sh.name.clone(), cancel, pending: Some(sh.pending_creates()) };
        // Keys and schemas the remote declares are needed to map the letters again.
        self.discover(&cx).await?;
        let specs = sh.source.streams();
        let mut letters = sh.state.dead_letters(Some(&sh.name), None, usize::MAX).await?;
        if let Some(ids) = ids {
            letters.retain(|d| ids.contains(&d.id));
        }
        let mut by_stream: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for d in letters {
            by_stream.entry(d.stream.clone()).or_default().push(d);
        }
        for (stream, letters) in by_stream {
            let Some(spec) = specs.iter().find(|s| s.name == stream) else {
                let sr = StreamReport {
                    dead_lettered: letters.len() as u64,
                    outcome: RunOutcome::Failed,
                    error: Some(format!("the source no longer has stream `{stream}`")),
                    ..Default::default()
                };
                report.streams.insert(stream, sr);
                continue;
            };
            let sr = self.replay_stream(spec, &letters, &cx).await?;
            report.streams.insert(stream, sr);
        }
        report.finished_at = crate::now_rfc3339();
        report.duration_ms = started.elapsed().as_millis() as u64;
        report.outcome =
            if report.total(|s| s.dead_lettered) == 0 { RunOutcome::Succeeded } else { RunOutcome::Failed };
        report.exit_code = if report.outcome == RunOutcome::Succeeded { 0 } else { crate::ErrorKind::Data.exit_code() };
        Ok(report)
    }

    /// Replay one stream's dead letters, a batch at a time.
    async fn replay_stream(&self, spec: &StreamSpec, letters: &[DeadLetter], cx: &Cx) -> Result<StreamReport, Error> {
        let sh = &self.shared;
        let stream = &spec.name;
        let mut sr = StreamReport::default();
        let opts = sh.streams.get(stream).cloned().unwrap_or_default();
        let key_columns = super::explain::key_columns(spec, &opts)?;
        let preparer = Preparer {
            pipeline: sh.name.clone(),
            stream: stream.clone(),
            mapping: opts.mapping.clone().unwrap_or_else(|| Arc::new(Identity)),
            key_columns: key_columns.clone(),
            identity: opts.mapping.is_none(),
        };
        let delete_mode =
            if opts.sync_mode == crate::stream::SyncMode::FullRefresh { opts.delete_mode } else { DeleteMode::Keep };
        let sink_stream = Arc::new(SinkStream { name: stream.clone(), key_columns, schema: None, delete_mode });
        // A sink that lost what the ledger remembers is found so here too: else this replay's
        // commit would store the lost sink's new mark and the next run would trust it.
        let remembered = sh.recall_sink(&sink_stream, cx).await?;
        sh.sink.open(&sink_stream, cx).await?;
        sh.adopt_mark(stream, remembered).await?;
        let checkpoint_pass = sh.state.checkpoint(&sh.name, stream).await?.map(|c| c.pass).unwrap_or(0);
        let replay = Replay { preparer, sink_stream, pass: checkpoint_pass, cx };
        for chunk in letters.chunks(sh.batch_size) {
            self.replay_batch(&replay, chunk, &mut sr).await?;
        }
        sr.outcome = if sr.dead_lettered == 0 { RunOutcome::Succeeded } else { RunOutcome::Failed };
        info!(pipeline = %sh.name, stream = %stream, delivered = sr.written, unchanged = sr.skipped_unchanged, still_failing = sr.dead_lettered, "dead letters replayed");
        Ok(sr)
    }

    /// Replay one batch of a stream's dead letters: those that map now are delivered (or
    /// found unchanged) and resolved in the same commit as their ledger rows.
    async fn replay_batch(
        &self,
        replay: &Replay<'_>,
        chunk: &[DeadLetter],
        sr: &mut StreamReport,
    ) -> Result<(), Error> {
        let sh = &self.shared;
        let stream = &replay.preparer.stream;
        let (prepared, resolved) = self.prepare_letters(&replay.preparer, chunk, sr);
        let keys: Vec<_> = prepared.iter().map(|p| p.key.clone()).collect();
        let known = sh.state.ledger_lookup(&sh.name, stream, &keys).await?;
        let mut to_write = Vec::new();
        for (p, old) in prepared.into_iter().zip(known) {
            if old == Some(p.hash) {
                sr.skipped_unchanged += 1;
            } else {
                to_write.push(p);
            }
        }
        let mut ledger: Vec<LedgerEntry> =
            to_write.iter().map(|p| LedgerEntry { key: p.key.clone(), hash: p.hash, dest_id: None }).collect();
        if !to_write.is_empty() {
            let hashes: Vec<_> = to_write.iter().map(|p| p.hash).collect();
            let records: Arc<[Record]> = to_write.into_iter().map(|p| p.record).collect();
            let batch = sh.batch(stream, replay.sink_stream.clone(), records, &hashes).await?;
            let wr = sh.sink.write(batch, replay.cx).await?;
            if !wr.rejected.is_empty() {
                return Err(Error::permanent(format!(
                    "the sink rejected {} replayed records; they stay in dead letters",
                    wr.rejected.len()
                ))
                .in_stream(stream));
            }
            for (i, id) in wr.dest_ids.into_iter().enumerate() {
                if let Some(e) = ledger.get_mut(i) {
                    e.dest_id = id;
                }
            }
            sr.written += wr.written;
            sr.replayed += wr.replayed;
        }
        let commit = Commit {
            pipeline: sh.name.clone(),
            stream: stream.clone(),
            pass: replay.pass,
            ledger,
            resolved_dead_letters: resolved,
            sink_mark: sh.sink.mark(stream),
            ..Default::default()
        };
        sh.state.commit(commit).await
    }

    /// Decode and map stored raw inputs again; returns the mapped records and the ids of the
    /// dead letters they resolve (those that still fail are counted in `sr`).
    fn prepare_letters(
        &self,
        preparer: &Preparer,
        chunk: &[DeadLetter],
        sr: &mut StreamReport,
    ) -> (Vec<Prepared>, Vec<i64>) {
        let sh = &self.shared;
        let mut prepared = Vec::new();
        let mut resolved = Vec::new();
        for d in chunk {
            sr.read += 1;
            if let Some(len) = d.raw_len {
                // Only the start of the input was kept: replaying it would deliver garbage.
                let msg = format!(
                    "dead letter #{}: its raw input was {len} bytes and only the first {} were kept, so it cannot be replayed; `dovetail dead-letters show {}` shows its start — fix the record at the source",
                    d.id,
                    crate::state::DEAD_LETTER_RAW_MAX,
                    d.id
                );
                warn!(pipeline = %sh.name, stream = %preparer.stream, id = d.id, "{msg}");
                sr.error.get_or_insert(msg);
                sr.dead_lettered += 1;
                continue;
            }
            let data = match sh.source.decode_raw(&preparer.stream, &d.raw) {
                Ok(v) => v,
                Err(_) => {
                    sr.dead_lettered += 1;
                    continue;
                }
            };
            let endpoint = d.location.clone().unwrap_or_else(|| format!("dead letter #{}", d.id));
            let prov = Arc::new(Provenance {
                connector: sh.source.kind().to_owned(),
                endpoint,
                fetched_at: crate::now_rfc3339(),
                ..Default::default()
            });
            match preparer.prepare(Record::new(data, prov)) {
                Ok(items) => {
                    sr.mapped += items.len() as u64;
                    prepared.extend(items);
                    resolved.push(d.id);
                }
                Err(_) => sr.dead_lettered += 1,
            }
        }
        (prepared, resolved)
    }
}
