//! [`MemoryState`]: core's state store in memory, the reference the state conformance suite
//! (`dovetail-testkit`) holds `dovetail-state` to, and vice versa.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;

use super::lock;
use crate::error::Error;
use crate::record::{ContentHash, Key};
use crate::state::{
    Checkpoint, Commit, DeadLetter, DeliveryStore, HistoryStore, LedgerVersion, OutboxEntry, PausedStream,
    PendingCreate, RunLock, RunOutcome, RunRecord, StoredDrift,
};

/// Ledger rows of one stream: key → (content hash, pass, destination id, repeated).
type LedgerRows = BTreeMap<String, (ContentHash, u64, Option<String>, bool)>;

#[derive(Debug, Clone, Default)]
struct StateInner {
    checkpoints: BTreeMap<(String, String), Checkpoint>,
    ledger: BTreeMap<(String, String), LedgerRows>,
    /// Dead letters in id order, each with when it was last seen (retention prunes by it) and
    /// the hash of its full raw input (dedup; the stored raw may be cut, as in SQLite).
    dead_letters: Vec<(DeadLetter, String, [u8; 16])>,
    next_dead_letter: i64,
    runs: Vec<RunRecord>,
    next_run: i64,
    baselines: BTreeMap<(String, String), Value>,
    locks: HashSet<String>,
    outbox: BTreeMap<(String, String), Vec<OutboxEntry>>,
    next_outbox: i64,
    paused: BTreeMap<(String, String), PausedStream>,
    /// Drift history in the order rows were first recorded.
    drift: Vec<StoredDrift>,
    /// Explain stories: (pipeline, stream) → key → (story, later unchanged read).
    stories: BTreeMap<(String, String), BTreeMap<String, MemStory>>,
    /// (pipeline, stream, run) → (mapping config, key columns).
    explain_runs: BTreeMap<(String, String, i64), RunMapping>,
    /// Pages fetched per (pipeline, stream, run): what pruning a run removes with it.
    pages: BTreeMap<(String, String, i64), u64>,
    /// The sink mark stored with each stream's last commit that carried one.
    sink_marks: BTreeMap<(String, String), String>,
    /// Pending creates per stream, by canonical key.
    pending: BTreeMap<(String, String), BTreeMap<String, PendingCreate>>,
    /// The request id of the last write that delivered each key.
    write_requests: BTreeMap<(String, String), BTreeMap<String, String>>,
    /// Commits whose checkpoint position equals this fail at the checkpoint (a test hook).
    fail_at_position: Option<Value>,
}

/// The mapping config and key columns a stream ran with.
type RunMapping = (Option<Value>, Vec<String>);

/// A key's stored story and the latest unchanged read after it.
#[derive(Debug, Clone, Default)]
struct MemStory {
    story: Option<crate::explain::StoredStory>,
    unchanged: Option<crate::explain::StoredFetch>,
}

/// A state store in memory: atomic commits under one mutex, run locks per pipeline. It
/// keeps what `dovetail-state` keeps and answers as it does (the state conformance suite in
/// `dovetail-testkit` runs on both).
#[derive(Debug, Clone, Default)]
pub struct MemoryState {
    inner: Arc<Mutex<StateInner>>,
}

impl MemoryState {
    /// Make every commit whose checkpoint position equals `position` fail at its checkpoint,
    /// after its ledger, outbox, dead-letter and explain parts were applied, which are then
    /// rolled back: the failure a database raises mid-transaction, which memory never does
    /// on its own. `None` heals.
    pub fn fail_commits_at_position(&self, position: Option<Value>) {
        lock(&self.inner).fail_at_position = position;
    }
}

#[derive(Debug)]
struct MemLock(Arc<Mutex<StateInner>>, String);

impl RunLock for MemLock {}

impl Drop for MemLock {
    fn drop(&mut self) {
        lock(&self.0).locks.remove(&self.1);
    }
}

fn k(p: &str, s: &str) -> (String, String) {
    (p.to_owned(), s.to_owned())
}

/// `now - age` as RFC 3339, compared with stored times as text (as `dovetail-state` does).
fn cutoff(age: std::time::Duration) -> String {
    let back = jiff::SignedDuration::try_from(age).unwrap_or(jiff::SignedDuration::MAX);
    jiff::Timestamp::now().checked_sub(back).unwrap_or(jiff::Timestamp::MIN).to_string()
}

/// Whether a story is a written one (kept on its ledger row) rather than a dead-letter one.
fn written(outcome: crate::explain::Outcome) -> bool {
    matches!(outcome, crate::explain::Outcome::Inserted | crate::explain::Outcome::Updated)
}

impl StateInner {
    /// A commit's explain stories, fetches and the stream's mapping for the run.
    fn apply_explain(&mut self, pipeline: &str, stream: &str, x: &crate::explain::ExplainBatch) {
        use crate::explain::{StoredFetch, StoredStory};
        if x.fetches.is_empty() && x.stories.is_empty() {
            return;
        }
        let mapping = x.mapping.as_deref().and_then(|m| serde_json::from_str(m).ok());
        let run = (pipeline.to_owned(), stream.to_owned(), x.run_id);
        self.explain_runs.entry(run.clone()).or_insert_with(|| (mapping, x.key_columns.to_vec()));
        *self.pages.entry(run).or_default() += x.fetches.len() as u64;
        let stories = self.stories.entry(k(pipeline, stream)).or_default();
        for f in &x.fetches {
            for key in &f.unchanged {
                let e = stories.entry(key.as_str().to_owned()).or_default();
                e.unchanged = Some(StoredFetch::of(x.run_id, &f.provenance));
            }
        }
        for s in &x.stories {
            let page = s.fetch.and_then(|i| x.fetches.get(i));
            // A written record's story lives with its page; without one there is none to tell.
            if written(s.outcome) && page.is_none() {
                continue;
            }
            let story = StoredStory {
                run_id: x.run_id,
                outcome: s.outcome,
                reason: s.reason.clone(),
                raw: x.raw_text(s),
                location: x.location(s).map(|l| l.to_string()).or_else(|| s.location.clone()),
                fetch: page.map(|f| StoredFetch::of(x.run_id, &f.provenance)),
            };
            stories.insert(s.key.as_str().to_owned(), MemStory { story: Some(story), unchanged: None });
        }
    }

    /// Remove replayed dead letters, and with each its dead-letter story in `id`'s stream.
    fn resolve_dead_letters(&mut self, id: &(String, String), resolved: &[i64]) {
        for (d, _, _) in self.dead_letters.iter().filter(|(d, _, _)| resolved.contains(&d.id)) {
            let Some(key) = &d.key else { continue };
            if let Some(m) = self.stories.get_mut(id).and_then(|s| s.get_mut(key))
                && m.story.as_ref().is_some_and(|s| !written(s.outcome))
            {
                m.story = None;
            }
        }
        self.dead_letters.retain(|(d, _, _)| !resolved.contains(&d.id));
    }
}

#[async_trait]
impl DeliveryStore for MemoryState {
    async fn lock(&self, pipeline: &str) -> Result<Box<dyn RunLock>, Error> {
        if !lock(&self.inner).locks.insert(pipeline.to_owned()) {
            return Err(Error::new(
                crate::ErrorKind::Busy,
                format!("pipeline `{pipeline}` is already running in this process"),
            ));
        }
        Ok(Box::new(MemLock(self.inner.clone(), pipeline.to_owned())))
    }
    async fn checkpoint(&self, pipeline: &str, stream: &str) -> Result<Option<Checkpoint>, Error> {
        Ok(lock(&self.inner).checkpoints.get(&k(pipeline, stream)).cloned())
    }
    async fn reset(&self, pipeline: &str, stream: Option<&str>) -> Result<u64, Error> {
        let mut g = lock(&self.inner);
        let before = g.checkpoints.len();
        g.checkpoints.retain(|(p, s), _| !(p == pipeline && stream.is_none_or(|x| x == s)));
        g.paused.retain(|(p, s), _| !(p == pipeline && stream.is_none_or(|x| x == s)));
        Ok((before - g.checkpoints.len()) as u64)
    }
    async fn ledger_lookup(
        &self,
        pipeline: &str,
        stream: &str,
        keys: &[Key],
    ) -> Result<Vec<Option<ContentHash>>, Error> {
        let g = lock(&self.inner);
        let l = g.ledger.get(&k(pipeline, stream));
        Ok(keys.iter().map(|key| l.and_then(|l| l.get(key.as_str())).map(|e| e.0)).collect())
    }
    async fn ledger_versions(
        &self,
        pipeline: &str,
        stream: &str,
        keys: &[Key],
    ) -> Result<Vec<Option<LedgerVersion>>, Error> {
        let g = lock(&self.inner);
        let l = g.ledger.get(&k(pipeline, stream));
        Ok(keys
            .iter()
            .map(|key| l.and_then(|l| l.get(key.as_str())).map(|e| LedgerVersion { hash: e.0, repeated: e.3 }))
            .collect())
    }
    async fn ledger_dest_ids(&self, pipeline: &str, stream: &str, keys: &[Key]) -> Result<Vec<Option<String>>, Error> {
        let g = lock(&self.inner);
        let l = g.ledger.get(&k(pipeline, stream));
        Ok(keys.iter().map(|key| l.and_then(|l| l.get(key.as_str())).and_then(|e| e.2.clone())).collect())
    }
    async fn record_pending_create(&self, pipeline: &str, stream: &str, pending: &PendingCreate) -> Result<(), Error> {
        let mut g = lock(&self.inner);
        g.pending.entry(k(pipeline, stream)).or_default().insert(pending.key.as_str().to_owned(), pending.clone());
        Ok(())
    }
    async fn pending_creates(
        &self,
        pipeline: &str,
        stream: &str,
        keys: &[Key],
    ) -> Result<Vec<Option<PendingCreate>>, Error> {
        let g = lock(&self.inner);
        let p = g.pending.get(&k(pipeline, stream));
        Ok(keys.iter().map(|key| p.and_then(|p| p.get(key.as_str())).cloned()).collect())
    }
    async fn clear_pending_create(&self, pipeline: &str, stream: &str, key: &Key) -> Result<bool, Error> {
        let mut g = lock(&self.inner);
        Ok(g.pending.get_mut(&k(pipeline, stream)).and_then(|p| p.remove(key.as_str())).is_some())
    }
    async fn record_write_request(
        &self,
        pipeline: &str,
        stream: &str,
        key: &Key,
        request_id: &str,
    ) -> Result<(), Error> {
        let mut g = lock(&self.inner);
        g.write_requests.entry(k(pipeline, stream)).or_default().insert(key.as_str().to_owned(), request_id.to_owned());
        Ok(())
    }
    async fn has_ledger(&self, pipeline: &str, stream: &str) -> Result<bool, Error> {
        Ok(lock(&self.inner).ledger.get(&k(pipeline, stream)).is_some_and(|l| !l.is_empty()))
    }
    async fn sink_mark(&self, pipeline: &str, stream: &str) -> Result<Option<String>, Error> {
        Ok(lock(&self.inner).sink_marks.get(&k(pipeline, stream)).cloned())
    }
    async fn forget_ledger(&self, pipeline: &str, stream: Option<&str>, keep_dest_ids: bool) -> Result<u64, Error> {
        let mut g = lock(&self.inner);
        let ours = |(p, s): &(String, String)| p == pipeline && stream.is_none_or(|x| x == s);
        g.checkpoints.retain(|id, _| !ours(id));
        g.sink_marks.retain(|id, _| !ours(id));
        g.write_requests.retain(|id, _| !ours(id));
        let mut changed = 0;
        for (_, rows) in g.ledger.iter_mut().filter(|(id, _)| ours(id)) {
            let before = rows.len();
            rows.retain(|_, e| keep_dest_ids && e.2.is_some());
            changed += before - rows.len();
            for e in rows.values_mut() {
                e.0 = ContentHash::VOID;
                changed += 1;
            }
        }
        Ok(changed as u64)
    }
    async fn stale_keys(&self, pipeline: &str, stream: &str, pass: u64, limit: usize) -> Result<Vec<Key>, Error> {
        let g = lock(&self.inner);
        Ok(g.ledger
            .get(&k(pipeline, stream))
            .map(|l| {
                l.iter()
                    .filter(|(_, e)| e.1 < pass)
                    .take(limit)
                    .map(|(key, _)| Key::from_canonical(key.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }
    /// Applies the parts in the order `dovetail-state` writes them; the checkpoint comes
    /// last, where [`MemoryState::fail_commits_at_position`] makes it fail.
    async fn commit(&self, c: Commit) -> Result<(), Error> {
        let mut g = lock(&self.inner);
        let poisoned = g.fail_at_position.is_some()
            && c.checkpoint.as_ref().and_then(|cp| cp.position.as_ref()) == g.fail_at_position.as_ref();
        // Only a commit bound to fail pays for a copy to roll back to.
        let before = poisoned.then(|| g.clone());
        let id = k(&c.pipeline, &c.stream);
        if let Some(x) = &c.explain {
            g.apply_explain(&c.pipeline, &c.stream, x);
        }
        // A key whose destination id the commit stores is created: its pending create goes
        // with the commit, as in the stores' transactions.
        let created: Vec<String> =
            c.ledger.iter().filter(|e| e.dest_id.is_some()).map(|e| e.key.as_str().to_owned()).collect();
        if let Some(p) = g.pending.get_mut(&id) {
            p.retain(|key, _| !created.contains(key));
        }
        let l = g.ledger.entry(id.clone()).or_default();
        for e in c.ledger {
            let old = l.get(e.key.as_str());
            let kept = old.and_then(|old| old.2.clone());
            let repeated = old.is_some_and(|old| old.3 || old.1 == c.pass);
            l.insert(e.key.as_str().to_owned(), (e.hash, c.pass, e.dest_id.or(kept), repeated));
        }
        for key in c.touched {
            if let Some(e) = l.get_mut(key.as_str()) {
                e.1 = c.pass;
            }
        }
        for key in c.forget {
            l.remove(key.as_str());
        }
        if !c.outbox_add.is_empty() || !c.outbox_done.is_empty() {
            let mut next = g.next_outbox;
            let q = g.outbox.entry(id.clone()).or_default();
            q.retain(|e| !c.outbox_done.contains(&e.id));
            for mut e in c.outbox_add {
                // A key queued again replaces its waiting entry, as the stores' commits do.
                q.retain(|w| w.key != e.key);
                next += 1;
                e.id = next;
                q.push(e);
            }
            g.next_outbox = next;
        }
        let now = crate::now_rfc3339();
        for mut d in c.dead_letters {
            let seen = if d.created_at.is_empty() { now.clone() } else { d.created_at.clone() };
            // The same raw input at the same place is one dead letter seen again.
            let hash = d.raw_hash();
            if let Some((old, last, _)) = g.dead_letters.iter_mut().find(|(o, _, h)| {
                (&o.pipeline, &o.stream, &o.location, h) == (&d.pipeline, &d.stream, &d.location, &hash)
            }) {
                old.seen_count += 1;
                (old.key, old.kind, old.reason, old.path) = (d.key, d.kind, d.reason, d.path);
                *last = seen;
                continue;
            }
            g.next_dead_letter += 1;
            d.id = g.next_dead_letter;
            d.created_at.clone_from(&seen);
            d.seen_count = 1;
            d.bound_raw();
            g.dead_letters.push((d, seen, hash));
        }
        g.resolve_dead_letters(&id, &c.resolved_dead_letters);
        if let Some(before) = before {
            *g = before;
            return Err(Error::internal("state store: injected failure at the checkpoint; the commit was rolled back")
                .in_pipeline(&c.pipeline)
                .in_stream(&c.stream));
        }
        if let Some(mark) = c.sink_mark {
            g.sink_marks.insert(id.clone(), mark);
        }
        if let Some(cp) = c.checkpoint {
            g.checkpoints.insert(id, cp);
        }
        Ok(())
    }
    async fn outbox(&self, pipeline: &str, stream: &str, limit: usize) -> Result<Vec<OutboxEntry>, Error> {
        let g = lock(&self.inner);
        Ok(g.outbox.get(&k(pipeline, stream)).map(|q| q.iter().take(limit).cloned().collect()).unwrap_or_default())
    }
    async fn outbox_len(&self, pipeline: &str, stream: &str) -> Result<u64, Error> {
        Ok(lock(&self.inner).outbox.get(&k(pipeline, stream)).map_or(0, |q| q.len() as u64))
    }
    async fn outbox_depths(&self, pipeline: Option<&str>) -> Result<Vec<(String, String, u64)>, Error> {
        let g = lock(&self.inner);
        Ok(g.outbox
            .iter()
            .filter(|((p, _), q)| !q.is_empty() && pipeline.is_none_or(|x| x == p))
            .map(|((p, s), q)| (p.clone(), s.clone(), q.len() as u64))
            .collect())
    }
    async fn pause(&self, pause: &PausedStream) -> Result<(), Error> {
        lock(&self.inner).paused.insert(k(&pause.pipeline, &pause.stream), pause.clone());
        Ok(())
    }
    async fn unpause(&self, pipeline: &str, stream: &str) -> Result<bool, Error> {
        Ok(lock(&self.inner).paused.remove(&k(pipeline, stream)).is_some())
    }
    async fn paused(&self, pipeline: Option<&str>) -> Result<Vec<PausedStream>, Error> {
        let g = lock(&self.inner);
        Ok(g.paused.values().filter(|p| pipeline.is_none_or(|x| x == p.pipeline)).cloned().collect())
    }
    async fn baseline(&self, pipeline: &str, stream: &str) -> Result<Option<Value>, Error> {
        Ok(lock(&self.inner).baselines.get(&k(pipeline, stream)).cloned())
    }
    async fn save_baseline(&self, pipeline: &str, stream: &str, schema: &Value) -> Result<(), Error> {
        lock(&self.inner).baselines.insert(k(pipeline, stream), schema.clone());
        Ok(())
    }
}

#[async_trait]
impl HistoryStore for MemoryState {
    async fn write_request(&self, pipeline: &str, stream: &str, key: &Key) -> Result<Option<String>, Error> {
        let g = lock(&self.inner);
        Ok(g.write_requests.get(&k(pipeline, stream)).and_then(|w| w.get(key.as_str())).cloned())
    }
    async fn begin_run(&self, pipeline: &str, started_at: &str) -> Result<i64, Error> {
        let mut g = lock(&self.inner);
        g.next_run += 1;
        let id = g.next_run;
        g.runs.push(RunRecord {
            id,
            pipeline: pipeline.into(),
            started_at: started_at.into(),
            finished_at: None,
            outcome: RunOutcome::Running,
            report: None,
        });
        Ok(id)
    }
    async fn finish_run(
        &self,
        run_id: i64,
        finished_at: &str,
        outcome: RunOutcome,
        report: &Value,
    ) -> Result<(), Error> {
        let mut g = lock(&self.inner);
        let r = g
            .runs
            .iter_mut()
            .find(|r| r.id == run_id)
            .ok_or_else(|| Error::internal(format!("state store: there is no run with id {run_id} to finish")))?;
        r.finished_at = Some(finished_at.into());
        r.outcome = outcome;
        r.report = Some(report.clone());
        Ok(())
    }
    async fn runs(&self, pipeline: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, Error> {
        let g = lock(&self.inner);
        Ok(g.runs.iter().rev().filter(|r| pipeline.is_none_or(|p| p == r.pipeline)).take(limit).cloned().collect())
    }
    async fn dead_letters(
        &self,
        pipeline: Option<&str>,
        stream: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, Error> {
        let g = lock(&self.inner);
        Ok(g.dead_letters
            .iter()
            .map(|(d, _, _)| d)
            .filter(|d| pipeline.is_none_or(|p| p == d.pipeline) && stream.is_none_or(|s| s == d.stream))
            .take(limit)
            .cloned()
            .collect())
    }
    async fn dead_letter_counts(
        &self,
        pipeline: Option<&str>,
        stream: Option<&str>,
        by: Option<crate::state::DeadLetterGroup>,
    ) -> Result<Vec<crate::state::DeadLetterCount>, Error> {
        use crate::state::{DeadLetterCount, DeadLetterGroup};
        let g = lock(&self.inner);
        let mut groups: std::collections::BTreeMap<Option<String>, u64> = Default::default();
        let mine = g
            .dead_letters
            .iter()
            .map(|(d, _, _)| d)
            .filter(|d| pipeline.is_none_or(|p| p == d.pipeline) && stream.is_none_or(|s| s == d.stream));
        for d in mine {
            let value = match by {
                Some(DeadLetterGroup::Reason) => Some(d.reason_alone().to_owned()),
                Some(DeadLetterGroup::Path) => d.path.clone(),
                None => None,
            };
            *groups.entry(value).or_default() += 1;
        }
        if by.is_none() && groups.is_empty() {
            groups.insert(None, 0);
        }
        let mut out: Vec<DeadLetterCount> =
            groups.into_iter().map(|(value, count)| DeadLetterCount { value, count }).collect();
        out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
        Ok(out)
    }
    async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, Error> {
        Ok(lock(&self.inner).dead_letters.iter().map(|(d, _, _)| d).find(|d| d.id == id).cloned())
    }
    async fn record_drift(
        &self,
        pipeline: &str,
        stream: &str,
        events: &[crate::drift::DriftEvent],
    ) -> Result<(), Error> {
        let mut inner = lock(&self.inner);
        for e in events {
            let same = |d: &&mut StoredDrift| {
                d.pipeline == pipeline
                    && d.stream == stream
                    && d.path == e.path
                    && d.change == e.change
                    && d.observed == e.observed
            };
            match inner.drift.iter_mut().find(same) {
                Some(d) => {
                    d.count += e.count;
                    d.last_seen.clone_from(&e.first_seen);
                    d.expected.clone_from(&e.expected);
                    d.accepted_at = None;
                }
                None => inner.drift.push(StoredDrift {
                    pipeline: pipeline.to_owned(),
                    stream: stream.to_owned(),
                    path: e.path.clone(),
                    change: e.change,
                    expected: e.expected.clone(),
                    observed: e.observed.clone(),
                    count: e.count,
                    first_seen: e.first_seen.clone(),
                    last_seen: e.first_seen.clone(),
                    first_at: e.first_at.clone(),
                    accepted_at: None,
                }),
            }
        }
        Ok(())
    }
    /// Newest last-seen first; among equal times, the row recorded last first.
    async fn drift_events(&self, pipeline: Option<&str>) -> Result<Vec<StoredDrift>, Error> {
        let inner = lock(&self.inner);
        let mut rows: Vec<(usize, &StoredDrift)> =
            inner.drift.iter().enumerate().filter(|(_, d)| pipeline.is_none_or(|p| d.pipeline == p)).collect();
        rows.sort_by(|(i, a), (j, b)| b.last_seen.cmp(&a.last_seen).then(j.cmp(i)));
        Ok(rows.into_iter().map(|(_, d)| d.clone()).collect())
    }
    async fn accept_drift(&self, pipeline: &str, stream: &str, at: &str) -> Result<u64, Error> {
        let mut n = 0;
        for d in lock(&self.inner).drift.iter_mut() {
            if d.pipeline == pipeline && d.stream == stream && d.accepted_at.is_none() {
                d.accepted_at = Some(at.to_owned());
                n += 1;
            }
        }
        Ok(n)
    }
    async fn key_history(&self, pipeline: &str, stream: &str, key: &Key) -> Result<crate::explain::KeyHistory, Error> {
        let g = lock(&self.inner);
        let id = k(pipeline, stream);
        let m = g.stories.get(&id).and_then(|s| s.get(key.as_str())).cloned().unwrap_or_default();
        let run = m.unchanged.as_ref().map(|f| f.run_id).or(m.story.as_ref().map(|s| s.run_id));
        let (mapping, key_columns) =
            run.and_then(|r| g.explain_runs.get(&(id.0.clone(), id.1.clone(), r)).cloned()).unwrap_or_default();
        let ledger = g.ledger.get(&id).and_then(|l| l.get(key.as_str())).map(|e| crate::explain::LedgerView {
            hash: e.0.to_hex(),
            pass: e.1,
            dest_id: e.2.clone(),
        });
        let dead_letter = g
            .dead_letters
            .iter()
            .rev()
            .map(|(d, _, _)| d)
            .find(|d| d.pipeline == pipeline && d.stream == stream && d.key.as_deref() == Some(key.as_str()))
            .cloned();
        Ok(crate::explain::KeyHistory {
            story: m.story,
            unchanged: m.unchanged,
            ledger,
            mapping,
            key_columns,
            dead_letter,
        })
    }
    /// Prunes what `dovetail-state` prunes: runs, with their pages (a written story keeps
    /// its run and outcome, not its request or raw record) and dead-letter stories; accepted
    /// drift past `max_age`; dead letters not seen for `dead_letters_max_age`.
    async fn prune(&self, pipeline: &str, r: &crate::explain::Retention) -> Result<crate::explain::Pruned, Error> {
        let mut g = lock(&self.inner);
        let g = &mut *g;
        let mut out = crate::explain::Pruned::default();
        let age = r.max_age.map(cutoff);
        // The oldest run to keep: the newest always; then up to `runs`, none older than max_age.
        let keep_from = g
            .runs
            .iter()
            .rev()
            .filter(|x| x.pipeline == pipeline)
            .take(r.runs.map_or(usize::MAX, |n| n.max(1) as usize))
            .enumerate()
            .take_while(|(i, x)| *i == 0 || age.as_deref().is_none_or(|a| x.started_at.as_str() >= a))
            .last()
            .map(|(_, x)| x.id);
        if let Some(from) = keep_from {
            let before = g.runs.len();
            g.runs.retain(|x| x.pipeline != pipeline || x.id >= from);
            out.runs = (before - g.runs.len()) as u64;
            g.pages.retain(|(p, _, run), n| {
                let gone = p == pipeline && *run < from;
                if gone {
                    out.fetches += *n;
                }
                !gone
            });
            g.explain_runs.retain(|(p, _, run), _| !(p == pipeline && *run < from));
            for m in g.stories.iter_mut().filter(|((p, _), _)| p == pipeline).flat_map(|(_, s)| s.values_mut()) {
                if m.unchanged.as_ref().is_some_and(|f| f.run_id < from) {
                    m.unchanged = None;
                }
                match &mut m.story {
                    Some(s) if s.run_id < from && written(s.outcome) => {
                        (s.fetch, s.raw, s.location) = (None, None, None);
                    }
                    Some(s) if s.run_id < from => {
                        m.story = None;
                        out.stories += 1;
                    }
                    _ => {}
                }
            }
        }
        if let Some(a) = &age {
            let before = g.drift.len();
            g.drift.retain(|d| !(d.pipeline == pipeline && d.accepted_at.is_some() && d.last_seen < *a));
            out.drift_events = (before - g.drift.len()) as u64;
        }
        if let Some(d) = r.dead_letters_max_age {
            let a = cutoff(d);
            let before = g.dead_letters.len();
            g.dead_letters.retain(|(dl, last, _)| !(dl.pipeline == pipeline && *last < a));
            out.dead_letters = (before - g.dead_letters.len()) as u64;
        }
        Ok(out)
    }
}
