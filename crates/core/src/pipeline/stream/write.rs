//! The writer's half of a stream's run: one mapped batch to the sink (or, while the sink is
//! down, to the outbox) and the state commit that goes with it; the dead-letter thresholds;
//! deletes after a completed full refresh.

use std::sync::Arc;
use std::time::Instant;

use tracing::warn;

use super::{MappedBatch, StreamRun, Timings};
use crate::connector::SinkStream;
use crate::drift::DriftEvent;
use crate::error::{Error, ErrorKind};
use crate::record::Record;
use crate::report::StreamReport;
use crate::state::{Commit, DeadLetter, LedgerEntry, OutboxEntry};
use crate::stream::DeleteMode;

impl StreamRun {
    /// Open the sink for the stream and hand it the `column_type` drifts accepted so far.
    pub(super) async fn open_sink(&self, sink_stream: &SinkStream) -> Result<(), Error> {
        let sh = &self.shared;
        sh.sink.open(sink_stream, &self.cx).await?;
        let accepted: Vec<DriftEvent> = sh
            .state
            .drift_events(Some(&sh.name))
            .await?
            .into_iter()
            .filter(|d| d.stream == self.spec.name && d.change == "column_type" && d.accepted_at.is_some())
            .map(|d| DriftEvent {
                path: d.path,
                change: d.change,
                expected: d.expected,
                observed: d.observed,
                count: d.count,
                first_seen: d.first_seen,
                first_at: d.first_at,
            })
            .collect();
        if accepted.is_empty() { Ok(()) } else { sh.sink.accept_drift(sink_stream, &accepted, &self.cx).await }
    }

    pub(super) async fn write_batch(
        &self,
        b: MappedBatch,
        sink_stream: &Arc<SinkStream>,
        report: &mut StreamReport,
        t: &mut Timings,
        sink_down: &mut Option<(ErrorKind, String)>,
        outbox_room: &mut u64,
    ) -> Result<Option<Commit>, Error> {
        let sh = &self.shared;
        let mut dead = b.dead;
        if self.dry_run {
            report.written += b.to_write.len() as u64;
            report.dead_lettered += dead.len() as u64;
            return Ok(None);
        }
        let mut cap = b.trail.capture(&b.to_write);
        let mut ledger: Vec<LedgerEntry> =
            b.to_write.iter().map(|p| LedgerEntry { key: p.key.clone(), hash: p.hash, dest_id: None }).collect();
        if !b.to_write.is_empty() {
            let started = Instant::now();
            let hashes: Vec<_> = b.to_write.iter().map(|p| p.hash).collect();
            let (records, mut raws): (Vec<_>, Vec<_>) = b.to_write.into_iter().map(|p| (p.record, p.raw)).unzip();
            let records: Arc<[Record]> = records.into();
            let wr = if sink_down.is_some() {
                None
            } else {
                let batch = sh.batch(&self.spec.name, sink_stream.clone(), records.clone(), &hashes).await?;
                let batch = batch.with_column_drift(self.drift().column_drift());
                match sh.sink.write(batch, &self.cx).await {
                    Ok(wr) => Some(wr),
                    Err(e) if e.kind().disposition().is_outage() => {
                        warn!(stream = %self.spec.name, sink = sh.sink.kind(), error = %e.report(), "the sink is down: records go to the outbox and are delivered when it is back");
                        *sink_down = Some((e.kind().clone(), e.report()));
                        None
                    }
                    Err(e) => return Err(e),
                }
            };
            t.write += started.elapsed().as_nanos();
            let Some(mut wr) = wr else {
                // Queued with the checkpoint that passes them, in one transaction: durable either way.
                let n = records.len() as u64;
                if n > *outbox_room {
                    return Err(Error::new(
                        ErrorKind::Unavailable,
                        format!(
                            "the sink `{}` is unavailable and the outbox is full ({} records); the stream stops at its checkpoint",
                            sh.sink.kind(),
                            sh.outbox_max
                        ),
                    ));
                }
                *outbox_room -= n;
                report.outbox_queued += n;
                report.dead_lettered += dead.len() as u64;
                let outbox_add = records
                    .iter()
                    .zip(&ledger)
                    .map(|(r, e)| OutboxEntry {
                        id: 0,
                        key: e.key.clone(),
                        hash: e.hash,
                        data: r.data.clone(),
                        location: Some(r.whereabouts()),
                    })
                    .collect();
                let touched = if sink_stream.delete_mode != DeleteMode::Keep { b.unchanged } else { Vec::new() };
                return Ok(Some(Commit {
                    pipeline: sh.name.clone(),
                    stream: self.spec.name.clone(),
                    pass: b.checkpoint.pass,
                    touched,
                    dead_letters: dead,
                    checkpoint: Some(b.checkpoint),
                    outbox_add,
                    ..Default::default()
                }));
            };
            let mut rejected = self.drift().sink(&mut wr, &records, &mut raws, &ledger, &mut dead, report)?;
            for (i, id) in wr.dest_ids.into_iter().enumerate() {
                if let Some(e) = ledger.get_mut(i) {
                    e.dest_id = id;
                }
            }
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
            cap.written(&records, raws, &rejected);
            for i in rejected.into_iter().rev() {
                ledger.remove(i);
            }
            report.written += wr.written;
        }
        report.dead_lettered += dead.len() as u64;
        let touched = if sink_stream.delete_mode != DeleteMode::Keep { b.unchanged } else { Vec::new() };
        let explain = cap.finish(&dead);
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
            outbox_add: vec![],
            outbox_done: vec![],
            explain,
        };
        Ok(Some(commit))
    }

    pub(super) fn check_threshold(&self, r: &StreamReport) -> Result<(), Error> {
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

    pub(super) async fn propagate_deletes(
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
