//! The drift policy applied in a stream's run: records checked against the baseline in the
//! mapper (warn, quarantine, pause), `column_type` drift reported by the sink in the writer,
//! the run's events stored, and a drift pause recorded.

use std::sync::Arc;

use serde_json::Value;
use tracing::{error, warn};

use super::prepare::{Preparer, where_of};
use crate::connector::{ColumnDrift, Page, WriteReport};
use crate::drift::{Checked, DriftAction, DriftClass, DriftEvent, DriftPolicy, DriftTracker};
use crate::error::Error;
use crate::record::{Record, canonical_json};
use crate::report::StreamReport;
use crate::state::{DeadLetter, LedgerEntry, PauseKind, PausedStream, StateStore};

/// The mapper's drift state for one stream run.
pub(super) struct DriftCheck {
    tracker: Option<DriftTracker>,
    /// No stored baseline yet: the first page with records becomes it.
    baseline_pending: bool,
    policy: DriftPolicy,
    pipeline: String,
    stream: String,
    state: Arc<dyn StateStore>,
    /// Why the stream pauses, once a record's policy said so.
    pause: Option<String>,
}

impl DriftCheck {
    pub(super) fn new(
        baseline: Option<Value>,
        policy: DriftPolicy,
        pipeline: &str,
        stream: &str,
        state: Arc<dyn StateStore>,
    ) -> Self {
        DriftCheck {
            baseline_pending: baseline.is_none(),
            tracker: baseline.map(|b| DriftTracker::with_policy(b, policy)),
            policy,
            pipeline: pipeline.to_owned(),
            stream: stream.to_owned(),
            state,
            pause: None,
        }
    }

    /// Check a page before mapping: quarantined records move from `page.records` into
    /// `dead`; the source's own rejects go to `dead` too (their drift counted). `Err` when
    /// the policy pauses the stream: the page must then be neither written nor committed.
    pub(super) async fn page(
        &mut self,
        page: &mut Page,
        preparer: &Preparer,
        endpoint: &str,
        dead: &mut Vec<DeadLetter>,
    ) -> Result<(), Error> {
        let mut checks = true;
        if self.baseline_pending && page.records.iter().any(|r| !r.deleted) {
            let schema = crate::schema::infer(page.records.iter().filter(|r| !r.deleted).map(|r| &r.data));
            if let Err(e) = self.state.save_baseline(&self.pipeline, &self.stream, &schema).await {
                warn!(stream = %self.stream, error = %e, "could not store the schema baseline");
            }
            self.tracker = Some(DriftTracker::with_policy(schema, self.policy));
            self.baseline_pending = false;
            // The page the baseline was made from fits it; only its coercions are counted.
            checks = false;
        }
        if let Some(d) = &mut self.tracker {
            let mut quarantined: Vec<(usize, DriftEvent)> = Vec::new();
            let mut pause = None;
            for (i, rec) in page.records.iter().enumerate() {
                if rec.deleted {
                    continue; // a tombstone's data is the key, not the record's shape
                }
                let mut c = if checks { d.check(&rec.data, &|| rec.whereabouts()) } else { Checked::default() };
                for e in rec.coerced.iter().flatten() {
                    let more = d.record_coercion(e);
                    c.fresh.extend(more.fresh);
                    if more.action > c.action {
                        (c.action, c.cause) = (more.action, more.cause);
                    }
                }
                log_fresh(&self.stream, &c, "response shape drifted from the stream's baseline");
                match (c.action, c.cause) {
                    (DriftAction::Pause, Some(cause)) => {
                        pause = Some(cause);
                        break;
                    }
                    (DriftAction::Quarantine, Some(cause)) => quarantined.push((i, *cause)),
                    _ => {}
                }
            }
            if let Some(cause) = pause {
                return Err(self.paused(&cause));
            }
            for (i, cause) in quarantined.into_iter().rev() {
                let rec = page.records.remove(i);
                dead.push(quarantine(preparer, rec, &cause));
            }
        }
        for mut r in std::mem::take(&mut page.rejects) {
            let checked = match (r.drift.take(), &mut self.tracker) {
                (Some(e), Some(d)) => d.record(*e),
                _ => Checked::default(),
            };
            log_fresh(&self.stream, &checked, "response shape drifted; the source could not decode the record");
            if let (DriftAction::Pause, Some(cause)) = (checked.action, checked.cause) {
                return Err(self.paused(&cause));
            }
            dead.push(preparer.reject(endpoint, r));
        }
        Ok(())
    }

    fn paused(&mut self, cause: &DriftEvent) -> Error {
        let reason = pause_reason(&self.pipeline, &self.stream, cause);
        self.pause = Some(reason.clone());
        // The pause is the cause, not a bad record: no dead letter was written, so the kind's
        // advice ("see the dead letters") would point at nothing.
        Error::data(reason).with_hint(DRIFT_PAUSE_HINT)
    }

    /// The run's events, and why the stream paused, if it did.
    pub(super) fn finish(self) -> (Vec<DriftEvent>, Option<String>) {
        (self.tracker.map(|d| d.events()).unwrap_or_default(), self.pause)
    }
}

fn log_fresh(stream: &str, c: &Checked, what: &str) {
    for e in &c.fresh {
        warn!(stream = %stream, path = %e.path, change = %e.change, expected = %e.expected, observed = %e.observed, at = %e.first_at, "{what}");
    }
}

/// What lifts a drift pause (`{pipeline}`/`{stream}` filled in by `Error::next_step`).
pub(crate) const DRIFT_PAUSE_HINT: &str = "review the drift with `dovetail drift --pipeline {pipeline}`, then \
     `dovetail drift accept {pipeline} {stream}` (or change the drift policy) and run again";

fn pause_reason(pipeline: &str, stream: &str, cause: &DriftEvent) -> String {
    format!(
        "{}: response shape drifted: {}; the drift policy pauses the stream at its last checkpoint — `dovetail drift accept {pipeline} {stream}` takes the change into the baseline and resumes it",
        cause.first_at,
        cause.describe()
    )
}

/// The dead letter of a record the policy quarantines (kind `drift`).
fn quarantine(preparer: &Preparer, rec: Record, cause: &DriftEvent) -> DeadLetter {
    // The key of the mapped record, when it maps, so a full refresh keeps the sink's row.
    let key = preparer.prepare(rec.clone()).ok().and_then(|p| p.into_iter().next()).map(|p| p.key);
    let at = where_of(&rec.provenance.endpoint, &rec.location);
    let reason = format!("{at}: response shape drifted: {}; the drift policy quarantines the record", cause.describe());
    let raw = canonical_json(&rec.data);
    preparer.dead_letter(
        key.as_ref(),
        "drift",
        reason,
        Some(cause.path.clone()),
        &rec.provenance.endpoint,
        &rec.location,
        raw,
    )
}

/// Count `e` into `events` (one per path, class and observed shape); whether it is new.
fn count_in(events: &mut Vec<DriftEvent>, e: DriftEvent) -> bool {
    match events.iter_mut().find(|x| x.path == e.path && x.change == e.change && x.observed == e.observed) {
        Some(x) => {
            x.count += e.count.max(1);
            false
        }
        None => {
            events.push(e);
            true
        }
    }
}

/// The drift policy of one stream as the writer applies it to what the sink reports, and as
/// the end of a run stores what was seen.
pub(super) struct StreamDrift<'a> {
    pub policy: DriftPolicy,
    pub pipeline: &'a str,
    pub stream: &'a str,
}

impl StreamDrift<'_> {
    /// What the sink does with `column_type` drift, from the policy.
    pub fn column_drift(&self) -> ColumnDrift {
        match self.policy.action(DriftClass::ColumnType) {
            DriftAction::Warn => ColumnDrift::Write,
            _ => ColumnDrift::Refuse,
        }
    }

    /// Apply the policy to the sink's `column_type` drift of one batch: count and log it;
    /// refused records become dead letters (their indices are returned, to leave the
    /// ledger); `Err` when the policy pauses (the batch is then not committed).
    pub fn sink(
        &self,
        wr: &mut WriteReport,
        records: &[Record],
        raws: &mut [Option<Value>],
        ledger: &[LedgerEntry],
        dead: &mut Vec<DeadLetter>,
        report: &mut StreamReport,
    ) -> Result<Vec<usize>, Error> {
        let action = self.policy.action(DriftClass::ColumnType);
        let mut refused = Vec::new();
        for (i, e) in std::mem::take(&mut wr.drift) {
            if count_in(&mut report.drift, e.clone()) {
                warn!(stream = %self.stream, path = %e.path, change = %e.change, expected = %e.expected, observed = %e.observed, at = %e.first_at, policy = action.name(), "a value no longer fits its sink column");
            }
            match action {
                DriftAction::Warn => {}
                DriftAction::Pause => {
                    let reason = pause_reason(self.pipeline, self.stream, &e);
                    report.paused = Some(reason.clone());
                    return Err(Error::data(reason));
                }
                DriftAction::Quarantine => {
                    let Some(rec) = records.get(i) else { continue };
                    let at = rec.whereabouts();
                    let raw = raws.get_mut(i).and_then(Option::take).unwrap_or_else(|| rec.data.clone());
                    dead.push(DeadLetter {
                        id: 0,
                        pipeline: self.pipeline.to_owned(),
                        stream: self.stream.to_owned(),
                        key: ledger.get(i).map(|l| l.key.as_str().to_owned()),
                        kind: "drift".into(),
                        reason: format!(
                            "{at}: the value no longer fits its sink column: {}; the drift policy quarantines the record",
                            e.describe()
                        ),
                        path: Some(e.path.clone()),
                        location: Some(at),
                        raw: canonical_json(&raw),
                        created_at: crate::now_rfc3339(),
                        raw_len: None,
                        seen_count: 1,
                    });
                    refused.push(i);
                }
            }
        }
        Ok(refused)
    }

    /// Store the run's drift (the mapper's events and the sink's, already in
    /// `report.drift`) and, when the policy paused the stream, the pause (kind `drift`).
    pub async fn store(
        &self,
        state: &dyn StateStore,
        dry_run: bool,
        events: Vec<DriftEvent>,
        pause: Option<String>,
        report: &mut StreamReport,
    ) {
        let mut all = events;
        for e in std::mem::take(&mut report.drift) {
            count_in(&mut all, e);
        }
        report.drift = all;
        if let Some(reason) = pause {
            report.paused = Some(reason);
        }
        if dry_run {
            return;
        }
        // The history outlives run reports; losing it must not fail a run that delivered.
        if !report.drift.is_empty()
            && let Err(e) = state.record_drift(self.pipeline, self.stream, &report.drift).await
        {
            warn!(stream = %self.stream, error = %e.report(), "could not store drift events");
        }
        if let Some(reason) = &report.paused {
            error!(stream = %self.stream, reason = %reason, "stream paused for drift: it stopped at its last checkpoint");
            let pause = PausedStream {
                pipeline: self.pipeline.to_owned(),
                stream: self.stream.to_owned(),
                kind: PauseKind::Drift,
                reason: reason.clone(),
                since: crate::now_rfc3339(),
                until: None,
                location: None,
            };
            if let Err(e) = state.pause(&pause).await {
                // The run still reports the stream paused; the next run re-reads the page
                // and pauses again.
                warn!(stream = %self.stream, error = %e.report(), "could not store the pause");
            }
        }
    }
}
