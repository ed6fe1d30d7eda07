//! The mapper: turns the reader's pages into the writer's batches. Per page: the drift
//! check against the stream's baseline (quarantine, pause), mapping, keys, the cursor
//! filter, content hashes, the ledger lookup that sorts new and changed records from
//! unchanged and superseded ones (a key repeated in the pass: `versions.rs`), the notes `dovetail explain` needs, and the checkpoint that becomes true
//! once the batch is written. Pages smaller than the batch size are merged, so a sink
//! transaction and a state commit carry `batch_size` records, not one page's worth.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::versions::Versions;
use crate::connector::{Next, Page};
use crate::drift::DriftEvent;
use crate::error::Error;
use crate::pipeline::cursor::admit;
use crate::pipeline::drift_check::DriftCheck;
use crate::pipeline::explain::{Ctx, Trail};
use crate::pipeline::prepare::{Prepared, Preparer, where_of};
use crate::record::{FieldPath, Key, Location, Record};
use crate::state::{Checkpoint, DeadLetter, StateStore};

/// A mapped batch on its way to the writer, with the checkpoint that becomes true once it is written.
pub(super) struct MappedBatch {
    pub to_write: Vec<Prepared>,
    /// Keys to stamp with the current pass (read unchanged, or dead-lettered with a key).
    pub unchanged: Vec<Key>,
    pub skipped: u64,
    /// Records a later record of their key replaced in this run (not written).
    pub superseded: u64,
    pub dead: Vec<DeadLetter>,
    /// Keys the source said were deleted (tombstones), none of them also in `to_write`.
    pub deletes: Vec<Key>,
    pub checkpoint: Checkpoint,
    pub read: u64,
    pub filtered: u64,
    pub mapped: u64,
    pub done: bool,
    /// Pages that came from the last good responses (`use_cache`).
    pub stale: u64,
    pub trail: Trail,
}

impl MappedBatch {
    /// Records in the batch, whatever becomes of them.
    fn size(&self) -> usize {
        self.to_write.len() + self.unchanged.len() + self.dead.len() + self.deletes.len() + self.filtered as usize
    }

    /// Append a later batch: its records, its counts, and its (later) checkpoint.
    fn absorb(&mut self, later: MappedBatch) {
        self.to_write.extend(later.to_write);
        self.unchanged.extend(later.unchanged);
        self.skipped += later.skipped;
        self.superseded += later.superseded;
        self.dead.extend(later.dead);
        self.deletes.extend(later.deletes);
        self.checkpoint = later.checkpoint;
        self.read += later.read;
        self.filtered += later.filtered;
        self.mapped += later.mapped;
        self.done = later.done;
        self.stale += later.stale;
        self.trail.absorb(later.trail);
    }
}

/// Maps one stream's pages into batches for the writer.
pub(super) struct Mapper {
    /// The reader's pages.
    pub pages: mpsc::Receiver<Result<Page, Error>>,
    /// Batches (or the failure that ends the run) for the writer, in page order.
    pub batches: mpsc::Sender<Result<MappedBatch, Error>>,
    /// Maps, keys and hashes records; makes their dead letters.
    pub preparer: Preparer,
    /// Where the ledger is looked up.
    pub state: Arc<dyn StateStore>,
    /// The cursor field of an incremental stream (`None`: every mapped record passes).
    pub cursor_field: Option<FieldPath>,
    /// With a lookback: the low end of the re-read margin, which passes the cursor filter.
    pub lookback_floor: Option<Value>,
    /// The run's checkpoint, moved by every page.
    pub checkpoint: Checkpoint,
    /// The drift policy's state for this run.
    pub drift: DriftCheck,
    /// What `dovetail explain` captures in this run.
    pub explain: Arc<Ctx>,
    /// Whether the ledger holds any key of the stream (an initial load skips every lookup).
    pub ledger_known: bool,
    /// Whether dead-lettered keys count as touched (a full refresh that deletes).
    pub track_touched: bool,
    /// Whether the stream deletes what the source says was deleted (its delete mode is not
    /// `keep`); else tombstones are dropped unread.
    pub apply_deletes: bool,
    /// Records per batch for the writer.
    pub batch_size: usize,
    /// Records after which the mapper stops short of the end of the pass (`run --limit`).
    pub limit: Option<u64>,
}

/// What the mapper hands back when it ends.
#[derive(Default)]
pub(super) struct Mapped {
    /// Time spent mapping pages (ns).
    pub map_ns: u128,
    /// Time spent on ledger lookups (ns).
    pub ledger_ns: u128,
    /// The run's drift events.
    pub drift: Vec<DriftEvent>,
    /// Why the drift policy paused the stream, if it did.
    pub pause: Option<String>,
    /// Whether the run's record limit stopped the mapper.
    pub limited: bool,
}

impl Mapper {
    /// Start mapping; the task ends when the reader is done, a page fails, or the writer stops.
    pub fn spawn(self) -> JoinHandle<Mapped> {
        // In the stream's span, so what the stage logs (HTTP exchanges included) names the
        // pipeline, run and stream.
        tokio::spawn(tracing::Instrument::in_current_span(self.run()))
    }

    async fn run(mut self) -> Mapped {
        let (mut map_ns, mut ledger_ns) = (0u128, 0u128);
        let mut pending: Option<MappedBatch> = None;
        // Which record of a repeated key wins; holds at most one batch's worth of records.
        let mut versions = Versions::new(self.ledger_known, self.batch_size);
        let mut left = self.limit;
        let mut limited = false;
        while let Some(page) = self.pages.recv().await {
            let mut page = match page {
                Ok(p) => p,
                Err(e) => {
                    // What was read before the failure is still delivered and committed.
                    self.fail(&mut versions, pending.take(), e).await;
                    break;
                }
            };
            let cut = match left.as_mut().and_then(|n| cut_at_limit(&mut page, n)) {
                Some(cut) => {
                    limited = true;
                    cut
                }
                None => false,
            };
            let t = Instant::now();
            versions.begin_page(&self.checkpoint);
            let endpoint = page.records.first().map(|r| r.provenance.endpoint.clone()).unwrap_or_default();
            let mut b = self.batch_of(&page);
            if let Err(e) = self.drift.page(&mut page, &self.preparer, &endpoint, &mut b.dead).await {
                // The policy pauses: what came before this page is still delivered.
                self.fail(&mut versions, pending.take(), e).await;
                break;
            }
            let (candidates, deletes) = self.map(page.records, &mut b);
            let page_dead = b.dead.len();
            map_ns += t.elapsed().as_nanos();
            // The page joins the pending batch before it is sorted: a key repeated within the
            // batch keeps only its last record.
            let mut b = match pending.take() {
                Some(mut p) => {
                    p.absorb(b);
                    p
                }
                None => b,
            };
            let t = Instant::now();
            if let Err(e) = self.sort_by_ledger(&mut versions, candidates, deletes, page_dead, &mut b).await {
                let _ = self.batches.send(Err(e)).await;
                break;
            }
            ledger_ns += t.elapsed().as_nanos();
            self.advance(if cut { None } else { Some(page.next) }, &mut b);
            if limited {
                pending = Some(b);
                break;
            }
            if !b.done && b.size() < self.batch_size {
                pending = Some(b);
                continue;
            }
            versions.finish(&mut b);
            if self.batches.send(Ok(b)).await.is_err() {
                break;
            }
        }
        // The reader stopped without finishing the pass (cancellation, the limit): deliver
        // what was read.
        if let Some(p) = self.release(&mut versions, pending.take()) {
            let _ = self.batches.send(Ok(p)).await;
        }
        let (drift, pause) = self.drift.finish();
        Mapped { map_ns, ledger_ns, drift, pause, limited }
    }

    /// Send what was merged so far, then the error that ends the run.
    async fn fail(&self, versions: &mut Versions, pending: Option<MappedBatch>, e: Error) {
        if let Some(p) = self.release(versions, pending) {
            let _ = self.batches.send(Ok(p)).await;
        }
        let _ = self.batches.send(Err(e)).await;
    }

    /// The last batch of a run that ends before its pass does: what was merged so far. Held
    /// records are dropped with the run: its checkpoint stays before them, so the next run
    /// reads them again and the rest of the pass can still supersede them.
    fn release(&self, versions: &mut Versions, pending: Option<MappedBatch>) -> Option<MappedBatch> {
        let mut b = pending?;
        versions.finish(&mut b);
        Some(b)
    }

    /// An empty batch for a page, with its read count and its explain trail.
    fn batch_of(&self, page: &Page) -> MappedBatch {
        let mut b = MappedBatch {
            to_write: Vec::with_capacity(page.records.len()),
            unchanged: vec![],
            skipped: 0,
            superseded: 0,
            dead: vec![],
            deletes: vec![],
            checkpoint: Checkpoint::default(),
            read: (page.records.iter().filter(|r| !r.deleted).count() + page.rejects.len()) as u64,
            filtered: 0,
            mapped: 0,
            done: false,
            stale: u64::from(page.records.first().is_some_and(|r| r.provenance.stale)),
            trail: self.explain.trail(),
        };
        b.trail.page(&page.records);
        b
    }

    /// Map a page's records; those that pass the cursor filter are candidates for the ledger.
    /// Its tombstones become deletes, placed among the candidates in page order.
    fn map(&mut self, records: Vec<Record>, b: &mut MappedBatch) -> (Vec<Prepared>, Vec<(usize, Key)>) {
        let mut candidates = Vec::with_capacity(records.len());
        let mut deletes = Vec::new();
        for rec in records {
            if rec.deleted {
                self.deleted_keys(rec, candidates.len(), &mut deletes, b);
                continue;
            }
            // No per-record copies: the provenance is shared and the cursor is read from
            // the raw input each prepared record still holds.
            let (prov, loc) = (rec.provenance.clone(), rec.location);
            match self.preparer.prepare(rec) {
                Err(dl) => b.dead.push(*dl),
                Ok(items) => {
                    for p in items {
                        b.mapped += 1;
                        if self.admit(&p, &prov.endpoint, &loc, b) {
                            candidates.push(p);
                        }
                    }
                }
            }
        }
        (candidates, deletes)
    }

    /// The keys of a tombstone, mapped like a record so a renamed key column still matches
    /// (no cursor filter, hash or drift check: nothing of it is written), each with the number
    /// of candidates before it. One that yields no key is dead-lettered, saying it was a delete.
    fn deleted_keys(&self, rec: Record, at: usize, deletes: &mut Vec<(usize, Key)>, b: &mut MappedBatch) {
        if !self.apply_deletes {
            return;
        }
        match self.preparer.prepare(rec) {
            Ok(items) => deletes.extend(items.into_iter().map(|p| (at, p.key))),
            Err(mut dl) => {
                dl.reason = format!("{} (a record the source reported deleted)", dl.reason);
                b.dead.push(*dl);
            }
        }
    }

    /// Whether a mapped record passes the inclusive cursor filter (moving the pass maximum);
    /// one below it is counted filtered, one whose cursor is missing or cannot be compared
    /// becomes a dead letter.
    fn admit(&mut self, p: &Prepared, endpoint: &str, loc: &Option<Location>, b: &mut MappedBatch) -> bool {
        let Some(field) = &self.cursor_field else { return true };
        let raw = p.raw.as_ref().unwrap_or(&p.record.data);
        match admit(&mut self.checkpoint, field.get(raw), &p.key, field.as_str(), self.lookback_floor.as_ref()) {
            Ok(true) => true,
            Ok(false) => {
                b.filtered += 1;
                false
            }
            Err(reason) => {
                let msg = format!("{}: {reason}", where_of(endpoint, loc));
                let raw = crate::record::canonical_json(raw);
                b.dead.push(self.preparer.dead_letter(
                    Some(&p.key),
                    "data",
                    msg,
                    Some(field.to_string()),
                    endpoint,
                    loc,
                    raw,
                ));
                false
            }
        }
    }

    /// Look the candidates up in the ledger and sort them into the pending batch (see
    /// `versions.rs`): a key with the same hash is unchanged, an earlier record of a key
    /// repeated in the pass is superseded, the rest is written (`known`: an update). The
    /// page's deletes go in page order: each drops its key's earlier pending record, and a
    /// later record of the key undoes it.
    async fn sort_by_ledger(
        &self,
        versions: &mut Versions,
        candidates: Vec<Prepared>,
        deletes: Vec<(usize, Key)>,
        page_dead: usize,
        b: &mut MappedBatch,
    ) -> Result<(), Error> {
        let (pipeline, stream) = (&self.preparer.pipeline, &self.preparer.stream);
        let known = if self.ledger_known {
            let keys: Vec<Key> = candidates.iter().map(|p| p.key.clone()).collect();
            self.state.ledger_versions(pipeline, stream, &keys).await?
        } else {
            vec![None; candidates.len()]
        };
        let mut deletes = deletes.into_iter().peekable();
        for (i, (p, old)) in candidates.into_iter().zip(known).enumerate() {
            while let Some((_, key)) = deletes.next_if(|(at, _)| *at == i) {
                versions.delete(key, b);
            }
            versions.sort(p, old, b);
        }
        for (_, key) in deletes {
            versions.delete(key, b);
        }
        if self.track_touched {
            // Dead-lettered records still exist at the source: keep their rows.
            b.unchanged.extend(
                b.dead[b.dead.len() - page_dead..].iter().filter_map(|d| d.key.clone().map(Key::from_canonical)),
            );
        }
        Ok(())
    }

    /// Move the checkpoint past the page; the batch carries a copy.
    fn advance(&mut self, next: Option<Next>, b: &mut MappedBatch) {
        // `None`: a page cut at the limit; the checkpoint stays before it, so it is read again.
        if let Some(next) = next {
            self.advance_past(next, b);
        }
        b.checkpoint = self.checkpoint.clone();
    }

    fn advance_past(&mut self, next: Next, b: &mut MappedBatch) {
        let cp = &mut self.checkpoint;
        match next {
            Next::More(pos) | Next::Later(pos) => cp.position = Some(pos),
            Next::Done { resume } => {
                cp.position = resume;
                cp.pass_complete = true;
                if cp.max.is_some() {
                    cp.floor = cp.max.clone();
                }
                b.done = true;
            }
        }
    }
}

/// Count a page against the records `left` before the limit. `None` while the limit is not
/// reached; else whether the page was cut: it loses what lies past the limit, its rejects
/// too, since the checkpoint stays before it and the next run reads it again.
fn cut_at_limit(page: &mut Page, left: &mut u64) -> Option<bool> {
    let n = page.records.len() as u64;
    if n < *left {
        *left -= n;
        return None;
    }
    let cut = n > *left;
    if cut {
        page.records.truncate(*left as usize);
        page.rejects.clear();
    }
    *left = 0;
    Some(cut)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::connector::Identity;
    use crate::record::{ContentHash, Provenance};
    use crate::state::{Commit, CursorState, DeliveryStore, LedgerEntry};
    use crate::testing::MemoryState;

    fn page(records: &[Value], next: Next) -> Result<Page, Error> {
        let prov = Arc::new(Provenance { connector: "memory".into(), endpoint: "mem".into(), ..Default::default() });
        let records = records.iter().map(|d| Record::new(d.clone(), prov.clone())).collect();
        Ok(Page { records, rejects: vec![], next })
    }

    fn key(id: i64) -> Key {
        Key::from_parts(&[&json!(id)])
    }

    fn keys(p: &[Prepared]) -> Vec<Key> {
        p.iter().map(|p| p.key.clone()).collect()
    }

    /// Small pages merge into batches of `batch_size`; the inclusive cursor filter drops
    /// what is below the checkpoint's floor, dead-letters a record without a cursor and
    /// tracks the pass maximum, which becomes the floor once the pass is done; the ledger
    /// sorts out the unchanged record.
    #[tokio::test]
    async fn merges_pages_and_admits_by_cursor() {
        let state = Arc::new(MemoryState::default());
        let unchanged = json!({"id": 2, "at": 5});
        let entry = LedgerEntry { key: key(2), hash: ContentHash::of(&unchanged), dest_id: None };
        let seed = Commit { pipeline: "p".into(), stream: "s".into(), ledger: vec![entry], ..Default::default() };
        state.commit(seed).await.unwrap();
        let (page_tx, pages) = mpsc::channel(8);
        let (batches, mut batch_rx) = mpsc::channel(8);
        let floor = CursorState { value: json!(5), keys: vec![] };
        let mapper = Mapper {
            pages,
            batches,
            preparer: Preparer {
                pipeline: "p".into(),
                stream: "s".into(),
                mapping: Arc::new(Identity),
                key_columns: vec!["id".into()],
                identity: true,
            },
            state: state.clone(),
            cursor_field: Some(FieldPath::new("at")),
            lookback_floor: None,
            checkpoint: Checkpoint { pass: 2, floor: Some(floor), ..Default::default() },
            drift: DriftCheck::new(None, Default::default(), "p", "s", state.clone()),
            explain: Arc::new(Ctx::new(0, Default::default(), None, &["id".to_owned()])),
            ledger_known: true,
            track_touched: false,
            apply_deletes: false,
            batch_size: 4,
            limit: None,
        }
        .spawn();
        page_tx.send(page(&[json!({"id": 1, "at": 3}), unchanged], Next::More(json!("p2")))).await.unwrap();
        page_tx.send(page(&[json!({"id": 3}), json!({"id": 4, "at": 9})], Next::More(json!("p3")))).await.unwrap();
        page_tx.send(page(&[json!({"id": 5, "at": 7})], Next::Done { resume: None })).await.unwrap();
        drop(page_tx);

        let first = batch_rx.recv().await.unwrap().unwrap();
        assert_eq!((first.read, first.mapped, first.filtered, first.skipped), (4, 4, 1, 1));
        assert_eq!(keys(&first.to_write), [key(4)]);
        assert_eq!(first.unchanged, [key(2)]);
        assert_eq!(first.dead.len(), 1);
        assert_eq!(first.dead[0].reason, "mem: missing cursor field `at`");
        assert_eq!(first.dead[0].key.as_deref(), Some(key(3).as_str()));
        assert!(!first.done);
        let max = CursorState { value: json!(9), keys: vec![key(4).as_str().to_owned()] };
        assert_eq!(first.checkpoint.position, Some(json!("p3")));
        assert_eq!(first.checkpoint.max.as_ref(), Some(&max));
        assert!(!first.checkpoint.pass_complete);

        let last = batch_rx.recv().await.unwrap().unwrap();
        assert_eq!(keys(&last.to_write), [key(5)]);
        assert!(last.done);
        assert_eq!(last.checkpoint.pass, 2);
        assert_eq!(last.checkpoint.position, None);
        assert!(last.checkpoint.pass_complete);
        assert_eq!(last.checkpoint.floor.as_ref(), Some(&max));
        assert!(batch_rx.recv().await.is_none(), "nothing after the pass");
        let mapped = mapper.await.unwrap();
        assert!(mapped.pause.is_none());
    }
}
