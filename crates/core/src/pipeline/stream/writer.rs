//! The writer: each mapped batch to the sink — or, while the sink is down, to the outbox —
//! and then the batch's [`Commit`] (ledger rows, dead letters, stories, the batch's
//! checkpoint) queued for the committer, only once the sink acknowledged the batch. It runs
//! on the stream's own task; a sink that takes writes in flight gets batch n+1 while batch
//! n commits (`flight.rs`), their commits still queued in batch order. Also here: opening the sink, the dead-letter thresholds, and
//! deletes after a completed full refresh.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tracing::warn;

use super::flight::{Answer, Flight, WriteFuture};
use super::mapper::MappedBatch;
use super::{StreamRun, Timings};
use crate::connector::{SinkStream, WriteReport};
use crate::drift::{DriftClass, DriftEvent};
use crate::error::{Error, ErrorKind};
use crate::failpoint;
use crate::pipeline::explain::Capture;
use crate::record::{ContentHash, Key, Record};
use crate::report::StreamReport;
use crate::state::{Checkpoint, Commit, DeadLetter, LedgerEntry, OutboxEntry};

/// Writes one stream's batches and queues their commits, in order.
pub(super) struct Writer<'a> {
    /// The stream's run: the sink, names, options and progress.
    pub run: &'a StreamRun,
    /// The stream as the sink knows it.
    pub sink_stream: &'a Arc<SinkStream>,
    /// The mapper's batches. Borrowed, not owned: the receiver lives until the committer
    /// is joined, so a mapper blocked on a full channel stays parked until then.
    pub batches: &'a mut mpsc::Receiver<Result<MappedBatch, Error>>,
    /// Commits for the committer; dropped when the writer ends, which ends the committer.
    pub commits: mpsc::Sender<Commit>,
    /// Why the sink is down (its error's kind and text), once it is: batches then go to the outbox.
    pub sink_down: Option<(ErrorKind, String)>,
    /// Records the outbox can still take.
    pub outbox_room: u64,
}

/// How the writer ended.
pub(super) struct Written {
    /// The first failure: a mapper's error, the sink's, or a threshold crossed.
    pub result: Result<(), Error>,
    /// Whether the last batch written finished the pass.
    pub completed: bool,
    /// Why the sink is down, if it went down (or was still down after the outbox).
    pub sink_down: Option<(ErrorKind, String)>,
}

/// A batch made ready for the sink: all its commit is made of but the sink's answer.
struct Staged {
    records: Arc<[Record]>,
    hashes: Vec<ContentHash>,
    /// Raw inputs, for dead letters of records the sink rejects.
    raws: Vec<Option<serde_json::Value>>,
    ledger: Vec<LedgerEntry>,
    cap: Capture,
    dead: Vec<DeadLetter>,
    deletes: Vec<Key>,
    unchanged: Vec<Key>,
    checkpoint: Checkpoint,
}

/// What became of a staged batch's records.
enum Sent {
    /// It had none to write.
    Nothing,
    /// The sink committed them.
    Written(WriteReport),
    /// The sink is down: they go to the outbox.
    Queued,
}

/// What the writer waits for next. Held for one turn of the writer's loop, so not boxed.
#[allow(clippy::large_enum_variant)]
enum Step {
    /// The mapper's next batch (`None`: it is done).
    Batch(Option<Result<MappedBatch, Error>>),
    /// The oldest write in flight answered.
    Answer(Option<(Staged, Answer)>),
    /// Nothing is left to wait for.
    Done,
}

/// The batch's counts into the stream's report, when the writer takes it.
fn count(report: &mut StreamReport, b: &MappedBatch) {
    report.batches += 1;
    report.read += b.read;
    report.filtered += b.filtered;
    report.mapped += b.mapped;
    report.skipped_unchanged += b.skipped;
    report.superseded += b.superseded;
    report.stale_pages += b.stale;
}

/// A batch's records, hashes, raw inputs and ledger rows apart, for the sink and the commit.
fn stage(b: MappedBatch) -> Staged {
    let cap = b.trail.capture(&b.to_write);
    let ledger = b.to_write.iter().map(|p| LedgerEntry { key: p.key.clone(), hash: p.hash, dest_id: None }).collect();
    let hashes = b.to_write.iter().map(|p| p.hash).collect();
    let (records, raws): (Vec<_>, Vec<_>) = b.to_write.into_iter().map(|p| (p.record, p.raw)).unzip();
    Staged {
        records: records.into(),
        hashes,
        raws,
        ledger,
        cap,
        dead: b.dead,
        deletes: b.deletes,
        unchanged: b.unchanged,
        checkpoint: b.checkpoint,
    }
}

impl<'a> Writer<'a> {
    /// Write batches until the mapper is done or something fails. A batch's commit is queued
    /// only after the sink acknowledged it (or the outbox took it), so a crash leaves the
    /// checkpoint at or behind what the sink holds — never ahead. A sink that takes writes in
    /// flight ([`crate::connector::Sink::writes_in_flight`]) is handed the next batch while
    /// one commits; the answers are taken, and the commits queued, in batch order.
    pub async fn run(mut self, report: &mut StreamReport, t: &mut Timings) -> Written {
        let run = self.run;
        let depth = if run.dry_run { 1 } else { run.shared.sink.writes_in_flight().max(1) };
        let mut flight: Flight<'a, Staged> = Flight::new();
        let (mut open, mut completed) = (true, false);
        let mark = || run.shared.sink.mark(&run.spec.name);
        let mut result = loop {
            let room = open && flight.len() < depth;
            let step = tokio::select! {
                biased;
                answer = flight.next(&mut t.write, &mark), if !flight.is_empty() => Step::Answer(answer),
                batch = self.batches.recv(), if room => Step::Batch(batch),
                else => Step::Done,
            };
            let b = match step {
                Step::Done => break Ok(()),
                Step::Answer(None) => continue,
                Step::Answer(Some((staged, answer))) => {
                    match self.landed(&mut flight, staged, answer, report, t).await {
                        Ok(true) => continue,
                        other => break other.map(|_| ()),
                    }
                }
                Step::Batch(None) => {
                    open = false;
                    continue;
                }
                Step::Batch(Some(Err(e))) => break self.land_all(&mut flight, report, t).await.and(Err(e)),
                Step::Batch(Some(Ok(b))) => b,
            };
            count(report, &b);
            completed = b.done;
            if depth > 1 && self.sink_down.is_none() && b.deletes.is_empty() && !b.to_write.is_empty() {
                let staged = stage(b);
                let overlaps = !flight.is_empty();
                match flight.meanwhile(self.start(&staged, overlaps), &mark).await {
                    Ok(write) => flight.push(staged, write),
                    Err(e) => break self.land_all(&mut flight, report, t).await.and(Err(e)),
                }
                continue;
            }
            // Deletes, the outbox, a dry run or nothing to write: alone, after every write before.
            match self.land_all(&mut flight, report, t).await {
                Ok(true) => {}
                other => break other.map(|_| ()),
            }
            let step = match self.write_batch(b, report, t).await {
                Ok(commit) => self.deliver(&mut flight, commit, report).await,
                Err(e) => Err(e),
            };
            match step {
                Ok(true) => {}
                other => break other.map(|_| ()),
            }
        };
        // Stopped with writes in flight: they end (their commits are not queued), rather than
        // being dropped halfway through.
        flight.drain(&mut t.write, &mark).await;
        if result.is_ok() {
            result = run.check_all_dead_lettered(report);
        }
        Written { result, completed, sink_down: self.sink_down }
    }

    /// A batch's commit to the committer (the writes in flight going on while it waits for
    /// room), then the progress and the dead-letter thresholds. `Ok(false)`: the committer
    /// failed; its error is collected when it is joined.
    async fn deliver(
        &mut self,
        flight: &mut Flight<'a, Staged>,
        commit: Option<Commit>,
        report: &mut StreamReport,
    ) -> Result<bool, Error> {
        let run = self.run;
        if let Some(commit) = commit {
            failpoint::hit("after_sink_commit");
            let mark = || run.shared.sink.mark(&run.spec.name);
            if flight.meanwhile(self.commits.send(commit), &mark).await.is_err() {
                return Ok(false);
            }
        }
        if let Some(p) = &run.progress {
            p.batch(&run.spec.name, report);
        }
        run.check_threshold(report).map(|()| true)
    }

    /// Every write in flight answered and its commit queued, in order.
    async fn land_all(
        &mut self,
        flight: &mut Flight<'a, Staged>,
        report: &mut StreamReport,
        t: &mut Timings,
    ) -> Result<bool, Error> {
        let run = self.run;
        let mark = || run.shared.sink.mark(&run.spec.name);
        while let Some((staged, answer)) = flight.next(&mut t.write, &mark).await {
            if !self.landed(flight, staged, answer, report, t).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The oldest write in flight answered: its commit queued. When it failed, the writes
    /// after it finish first (a sink in flight commits none of them after a failure), then
    /// the failure is what it would have been alone (an outage: the outbox) and the later
    /// batches are written again, one at a time, in order.
    async fn landed(
        &mut self,
        flight: &mut Flight<'a, Staged>,
        staged: Staged,
        (answer, mark): Answer,
        report: &mut StreamReport,
        t: &mut Timings,
    ) -> Result<bool, Error> {
        let err = match answer {
            Ok(wr) => {
                let commit = self.finish(staged, Sent::Written(wr), Some(mark), report, t).await?;
                return self.deliver(flight, Some(commit), report).await;
            }
            Err(e) => e,
        };
        let run = self.run;
        let later = flight.drain(&mut t.write, &|| run.shared.sink.mark(&run.spec.name)).await;
        let sent = self.answered(err)?;
        let commit = self.finish(staged, sent, None, report, t).await?;
        if !self.deliver(flight, Some(commit), report).await? {
            return Ok(false);
        }
        for (staged, (answer, mark)) in later {
            let (sent, mark) = match answer {
                Ok(wr) => (Sent::Written(wr), Some(mark)),
                Err(e) => {
                    tracing::debug!(stream = %run.spec.name, error = %e.report(), "writing a batch again after the failure before it");
                    (self.send(&staged, t).await?, None)
                }
            };
            let commit = self.finish(staged, sent, mark, report, t).await?;
            if !self.deliver(flight, Some(commit), report).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// One batch to the sink (or the outbox), alone; the commit that goes with it (`None` in
    /// a dry run).
    async fn write_batch(
        &mut self,
        b: MappedBatch,
        report: &mut StreamReport,
        t: &mut Timings,
    ) -> Result<Option<Commit>, Error> {
        if self.run.dry_run {
            report.written += b.to_write.len() as u64;
            report.deleted += b.deletes.len() as u64;
            report.dead_lettered += b.dead.len() as u64;
            return Ok(None);
        }
        let staged = stage(b);
        let sent = self.send(&staged, t).await?;
        self.finish(staged, sent, None, report, t).await.map(Some)
    }

    /// The commit of a batch the sink answered (or the outbox took): rejections and drift
    /// dead-lettered, destination ids kept, then the batch's deletes. `mark`: the sink's mark
    /// taken when the write answered (else it is taken now, after the deletes).
    async fn finish(
        &mut self,
        staged: Staged,
        sent: Sent,
        mark: Option<Option<String>>,
        report: &mut StreamReport,
        t: &mut Timings,
    ) -> Result<Commit, Error> {
        let run = self.run;
        let Staged { records, raws, mut ledger, mut cap, mut dead, deletes, unchanged, checkpoint, .. } = staged;
        match sent {
            Sent::Queued => {
                self.delete(deletes, report, t).await?;
                return self.queue(&records, &ledger, unchanged, dead, checkpoint, report);
            }
            Sent::Nothing => {}
            Sent::Written(mut wr) => {
                let mut raws = raws;
                let mut rejected = run.drift().sink(&mut wr, &records, &mut raws, &ledger, &mut dead, report)?;
                for (i, id) in wr.dest_ids.into_iter().enumerate() {
                    if let Some(e) = ledger.get_mut(i) {
                        e.dest_id = id;
                    }
                }
                for (i, err) in wr.rejected {
                    if let Some(rec) = records.get(i) {
                        let raw = raws.get_mut(i).and_then(Option::take).unwrap_or_else(|| rec.data.clone());
                        dead.push(self.rejection(rec, raw, ledger.get(i).map(|e| &e.key), &err));
                        rejected.push(i);
                    }
                }
                rejected.sort_unstable();
                cap.written(&records, raws, &rejected);
                for i in rejected.into_iter().rev() {
                    ledger.remove(i);
                }
                report.written += wr.written;
                report.replayed += wr.replayed;
            }
        }
        // After the records: a key is never both written and deleted in one batch (versions.rs).
        let forget = self.delete(deletes, report, t).await?;
        report.dead_lettered += dead.len() as u64;
        let explain = cap.finish(&dead);
        Ok(Commit {
            pipeline: run.shared.name.clone(),
            stream: run.spec.name.clone(),
            pass: checkpoint.pass,
            ledger,
            touched: self.touched(unchanged),
            forget,
            dead_letters: dead,
            resolved_dead_letters: vec![],
            checkpoint: Some(checkpoint),
            outbox_add: vec![],
            outbox_done: vec![],
            explain,
            sink_mark: mark.unwrap_or_else(|| run.shared.sink.mark(&run.spec.name)),
        })
    }

    /// The batch's records to the sink, unless it is down or there are none, and its answer.
    async fn send(&mut self, staged: &Staged, t: &mut Timings) -> Result<Sent, Error> {
        if staged.records.is_empty() {
            return Ok(Sent::Nothing);
        }
        if self.sink_down.is_some() {
            return Ok(Sent::Queued);
        }
        let started = Instant::now();
        let answer = self.start(staged, false).await?.await;
        t.write += started.elapsed().as_nanos();
        match answer {
            Ok(wr) => Ok(Sent::Written(wr)),
            Err(e) => self.answered(e),
        }
    }

    /// The sink's write of a staged batch, started (not awaited): the batch with its create
    /// hints and checkpoint, after the worker's lease check; `overlaps`: an earlier write is
    /// still in flight.
    async fn start(&self, staged: &Staged, overlaps: bool) -> Result<WriteFuture<'a>, Error> {
        let run: &'a StreamRun = self.run;
        let sh = &run.shared;
        let batch = sh.batch(&run.spec.name, self.sink_stream.clone(), staged.records.clone(), &staged.hashes).await?;
        let mut batch = batch.with_column_drift(run.drift().column_drift()).with_checkpoint(staged.checkpoint.clone());
        if let Some(fence) = &run.fence {
            // The window left for sinks that cannot fence in their own transaction is from
            // here to the end of the write (docs/deploy.md).
            fence.check(&sh.name, &run.spec.name).await?;
            batch.lease_epoch = fence.epoch(&run.spec.name);
        }
        batch.overlaps = overlaps;
        Ok(sh.sink.write(batch, &run.cx))
    }

    /// A failed write: an outage sends its batch (and the later ones) to the outbox, anything
    /// else stops the stream.
    fn answered(&mut self, e: Error) -> Result<Sent, Error> {
        if !e.kind().disposition().is_outage() {
            return Err(e);
        }
        let (run, sh) = (self.run, &self.run.shared);
        warn!(stream = %run.spec.name, sink = sh.sink.kind(), error = %e.report(), "the sink is down: records go to the outbox and are delivered when it is back");
        self.sink_down = Some((e.kind().clone(), e.report()));
        Ok(Sent::Queued)
    }

    /// The deletes the source reported in a batch, to the sink under the stream's delete
    /// mode; the keys for the ledger to forget. The outbox holds records, not deletes: a sink
    /// that is down fails the stream before the batch's checkpoint, so the next run reads the
    /// deletes again.
    async fn delete(&mut self, keys: Vec<Key>, report: &mut StreamReport, t: &mut Timings) -> Result<Vec<Key>, Error> {
        if keys.is_empty() {
            return Ok(keys);
        }
        let (run, sh) = (self.run, &self.run.shared);
        if let Some((kind, cause)) = &self.sink_down {
            return Err(Error::new(
                kind.clone(),
                format!(
                    "the sink `{}` is down ({cause}) and the {} deletes the source reported cannot wait in the outbox; the stream stops at the checkpoint before them",
                    sh.sink.kind(),
                    keys.len()
                ),
            ));
        }
        if let Some(fence) = &run.fence {
            fence.check(&sh.name, &run.spec.name).await?;
        }
        let started = Instant::now();
        report.deleted += sh.sink.delete(self.sink_stream, &keys, &run.cx).await?;
        t.write += started.elapsed().as_nanos();
        Ok(keys)
    }

    /// The commit of a batch whose sink is down: its records queued in the outbox with the
    /// checkpoint that passes them, in one transaction — durable either way.
    fn queue(
        &mut self,
        records: &[Record],
        ledger: &[LedgerEntry],
        unchanged: Vec<Key>,
        dead: Vec<DeadLetter>,
        checkpoint: Checkpoint,
        report: &mut StreamReport,
    ) -> Result<Commit, Error> {
        let sh = &self.run.shared;
        let n = records.len() as u64;
        if n > self.outbox_room {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "the sink `{}` is unavailable and the outbox is full ({} records); the stream stops at its checkpoint",
                    sh.sink.kind(),
                    sh.outbox_max
                ),
            ));
        }
        self.outbox_room -= n;
        report.outbox_queued += n;
        report.dead_lettered += dead.len() as u64;
        let outbox_add = records
            .iter()
            .zip(ledger)
            .map(|(r, e)| OutboxEntry {
                id: 0,
                key: e.key.clone(),
                hash: e.hash,
                data: r.data.clone(),
                location: Some(r.whereabouts()),
            })
            .collect();
        Ok(Commit {
            pipeline: sh.name.clone(),
            stream: self.run.spec.name.clone(),
            pass: checkpoint.pass,
            touched: self.touched(unchanged),
            dead_letters: dead,
            checkpoint: Some(checkpoint),
            outbox_add,
            ..Default::default()
        })
    }

    /// The dead letter of a record the sink rejected.
    fn rejection(&self, rec: &Record, raw: serde_json::Value, key: Option<&Key>, err: &Error) -> DeadLetter {
        let at = rec.whereabouts();
        DeadLetter {
            id: 0,
            pipeline: self.run.shared.name.clone(),
            stream: self.run.spec.name.clone(),
            key: key.map(|k| k.as_str().to_owned()),
            kind: err.kind().name().to_owned(),
            reason: format!("{at}: the sink rejected the record: {}", err.report()),
            path: None,
            location: Some(at),
            raw: crate::record::canonical_json(&raw),
            created_at: crate::now_rfc3339(),
            raw_len: None,
            seen_count: 1,
        }
    }

    /// Keys to stamp with the pass: only a stream that deletes what a full refresh missed needs them.
    fn touched(&self, unchanged: Vec<Key>) -> Vec<Key> {
        if self.run.propagates_deletes() { unchanged } else { Vec::new() }
    }
}

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
            .filter(|d| d.stream == self.spec.name && d.change == DriftClass::ColumnType && d.accepted_at.is_some())
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

    /// `Err` once the stream's dead letters pass `max_dead_letters` or `max_dead_letter_ratio`.
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

    /// `Err` when the stream read at least [`ALL_DEAD_LETTERED_MIN`](crate::pipeline::ALL_DEAD_LETTERED_MIN)
    /// records and dead-lettered every one (unless the stream allows it): a source or mapping
    /// that no longer fits its data, which must not end as a success that wrote nothing.
    /// Checked once the stream read everything, so a bad first batch among good ones passes.
    pub(super) fn check_all_dead_lettered(&self, r: &StreamReport) -> Result<(), Error> {
        let min = crate::pipeline::ALL_DEAD_LETTERED_MIN;
        let delivered = r.written + r.skipped_unchanged + r.outbox_queued;
        if self.opts.allow_all_dead_lettered || r.read < min || r.dead_lettered < r.read || delivered > 0 {
            return Ok(());
        }
        Err(Error::data(format!(
            "every one of the {} records read was dead-lettered; the dead letters are committed — see `dovetail dead-letters list`, or set `fail_when_all_dead_lettered = false` for the stream",
            r.read
        )))
    }

    /// After a completed full refresh: delete from the sink the keys this pass did not
    /// touch, and forget them in the ledger, a thousand at a time.
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
                sink_mark: sh.sink.mark(&self.spec.name),
                ..Default::default()
            };
            sh.state.commit(commit).await?;
        }
    }
}
