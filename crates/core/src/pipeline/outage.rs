//! What a stream does about remotes that stay down: the durable outbox of a sink that is
//! down (queued by the writer in `stream/writer.rs`, drained here before the next read) and the
//! `on_unavailable` policy applied to a stream's outcome.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tracing::{error, info, warn};

use super::stream::{StreamRun, Timings};
use crate::connector::SinkStream;
use crate::error::{Error, ErrorKind};
use crate::record::Record;
use crate::report::StreamReport;
use crate::state::{Commit, DeadLetter, LedgerEntry, PauseKind, PausedStream};
use crate::stream::OnUnavailable;

impl StreamRun {
    /// Deliver what earlier runs queued, oldest first. Returns why the sink is still down (the
    /// error's kind and text), if it is.
    pub(super) async fn drain_outbox(
        &self,
        sink_stream: &Arc<SinkStream>,
        pass: u64,
        report: &mut StreamReport,
        t: &mut Timings,
    ) -> Result<Option<(ErrorKind, String)>, Error> {
        let sh = &self.shared;
        let name = &self.spec.name;
        loop {
            if self.cx.cancel.is_cancelled() {
                return Ok(None);
            }
            let entries = sh.state.outbox(&sh.name, name, sh.batch_size).await?;
            if entries.is_empty() {
                return Ok(None);
            }
            info!(stream = %name, records = entries.len(), "delivering records queued in the outbox");
            let started = Instant::now();
            let prov = Arc::new(crate::record::Provenance {
                connector: "outbox".into(),
                endpoint: format!("outbox of {name}"),
                ..Default::default()
            });
            let records: Arc<[Record]> = entries
                .iter()
                .map(|e| {
                    let mut r = Record::new(e.data.clone(), prov.clone());
                    r.key = Some(e.key.clone());
                    r
                })
                .collect();
            let hashes: Vec<_> = entries.iter().map(|e| e.hash).collect();
            let batch = sh.batch(name, sink_stream.clone(), records, &hashes).await?;
            let wr = match sh.sink.write(batch, &self.cx).await {
                Ok(wr) => wr,
                Err(e) if e.kind().disposition().is_outage() => {
                    warn!(stream = %name, error = %e.report(), "the sink is still down; the outbox keeps its records");
                    return Ok(Some((e.kind().clone(), e.report())));
                }
                Err(e) => return Err(e),
            };
            t.write += started.elapsed().as_nanos();
            let mut dest_ids = wr.dest_ids;
            dest_ids.resize(entries.len(), None);
            let mut rejected: BTreeMap<usize, Error> = wr.rejected.into_iter().collect();
            let mut ledger = Vec::new();
            let mut dead = Vec::new();
            for (i, e) in entries.iter().enumerate() {
                match rejected.remove(&i) {
                    Some(err) => dead.push(DeadLetter {
                        id: 0,
                        pipeline: sh.name.clone(),
                        stream: name.clone(),
                        key: Some(e.key.as_str().to_owned()),
                        kind: err.kind().name().to_owned(),
                        reason: format!(
                            "{}: the sink rejected the record (from the outbox): {}",
                            e.location.as_deref().unwrap_or("outbox"),
                            err.report()
                        ),
                        path: None,
                        location: e.location.clone(),
                        raw: crate::record::canonical_json(&e.data),
                        created_at: crate::now_rfc3339(),
                        raw_len: None,
                        seen_count: 1,
                    }),
                    None => ledger.push(LedgerEntry { key: e.key.clone(), hash: e.hash, dest_id: dest_ids[i].take() }),
                }
            }
            report.outbox_delivered += wr.written;
            report.written += wr.written;
            report.replayed += wr.replayed;
            report.dead_lettered += dead.len() as u64;
            let commit = Commit {
                pipeline: sh.name.clone(),
                stream: name.clone(),
                pass,
                ledger,
                dead_letters: dead,
                outbox_done: entries.iter().map(|e| e.id).collect(),
                sink_mark: sh.sink.mark(name),
                ..Default::default()
            };
            sh.state.commit(commit).await?;
        }
    }

    /// Turn an outage into the stream's policy: `pause` records the pause and reports the
    /// stream paused; a stream that ran cleanly loses an earlier outage pause.
    pub(super) async fn apply_outage_policy(&self, err: Option<Error>, report: &mut StreamReport) -> Option<Error> {
        let sh = &self.shared;
        let name = &self.spec.name;
        match err {
            Some(e) if e.kind().disposition().is_outage() && self.opts.on_unavailable == OnUnavailable::Pause => {
                // Where it happened is stored apart (`location`): the reason leads every table.
                let reason = format!("{} error: {}", e.kind(), e.reason());
                error!(stream = %name, reason = %reason, "stream paused: it stopped at its last checkpoint and the next run probes the remote");
                let pause = PausedStream {
                    pipeline: sh.name.clone(),
                    stream: name.clone(),
                    kind: PauseKind::Unavailable,
                    reason: reason.clone(),
                    since: crate::now_rfc3339(),
                    until: None,
                    location: e.context().location.clone(),
                };
                if let Err(e) = sh.state.pause(&pause).await {
                    return Some(e);
                }
                report.paused = Some(reason);
                Some(e)
            }
            None => match sh.state.unpause(&sh.name, name).await {
                Ok(true) => {
                    info!(stream = %name, "the remote is back: the stream is no longer paused");
                    None
                }
                Ok(false) => None,
                Err(e) => Some(e),
            },
            other => other,
        }
    }
}
