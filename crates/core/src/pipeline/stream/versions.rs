//! Which record of a key the sink gets when the source repeats the key in one pass: the
//! last one, and a rerun over the same data writes none of them.
//!
//! Three small structures, none holding every key of the run:
//! - the pending batch's keys: a later record of a key drops the earlier one from the batch
//!   (`superseded`) and is judged against what the sink holds;
//! - the window: keys and hashes of the last [`IN_FLIGHT`] batches sent to the writer, whose
//!   ledger rows may not be committed yet — a later record is compared with the hash the
//!   sink will hold, not with the ledger row it replaces;
//! - the held records: a key the ledger marks repeated (an earlier pass wrote it twice) comes
//!   again in this pass with a hash that differs from the ledger's. It is held back: a later
//!   record of the key supersedes it; at the end of the pass (or when more than `hold_max`
//!   are held, oldest first) it is written, as it is then the last one seen.
//!
//! Deletes the source reports take their place in this order: a delete supersedes its key's
//! pending or held record, a later record of the key undoes a pending delete, and the window
//! remembers a deleted key (no hash), so a later record is judged new, not by a stale ledger row.
//!
//! A held record is not delivered, so no checkpoint may pass it: while records are held,
//! each batch carries the checkpoint from before the page of the earliest held record
//! (its ledger rows still commit). A crash, a failed page or a cancelled run then resumes
//! at that page and reads the held record again; a run that stops early drops what it
//! holds instead of writing a version the rest of the pass may supersede.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use super::mapper::MappedBatch;
use crate::pipeline::prepare::Prepared;
use crate::record::{ContentHash, Key};
use crate::state::{Checkpoint, LedgerVersion};

/// Batches sent to the writer whose ledger rows may still be uncommitted: one in the batch
/// channel, one being written, two in the commit channel and one being committed (the
/// channel sizes in `pipeline/stream.rs`), plus one of margin. Too many only costs memory;
/// too few would compare a record with a stale ledger row.
const IN_FLIGHT: usize = 6;

/// Where a key's earlier record sits in the pending batch.
enum Slot {
    /// In `to_write`, at this index.
    Write(usize),
    /// Counted unchanged, at this index of `unchanged`.
    Unchanged(usize),
    /// Deleted (the source said so), at this index of `deletes`.
    Delete(usize),
}

/// A hasher for keys that are already hashes (the pending batch's 64-bit key hashes): one
/// multiply instead of SipHash over a `Key` cloned per record.
#[derive(Default)]
struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The pending batch's keys by a 64-bit hash of the key; a hit is checked against the key.
type Pending = HashMap<u64, Slot, std::hash::BuildHasherDefault<Prehashed>>;

fn key_hash(k: &Key) -> u64 {
    xxhash_rust::xxh3::xxh3_64(k.as_str().as_bytes())
}

/// One stream's record versions in a run (see the module docs).
pub(super) struct Versions {
    /// Keys and hashes written by the last batches sent, oldest first (empty when the run
    /// looks nothing up: an initial load compares with nothing).
    window: VecDeque<HashMap<Key, Option<ContentHash>>>,
    /// Whether to keep the window (the run looks the ledger up).
    lookups: bool,
    /// The pending batch's keys (checked against the record when a hash matches).
    pending: Pending,
    /// Indices in the pending batch's `to_write` of records a later one superseded.
    dropped: Vec<usize>,
    /// Indices in the pending batch's `deletes` of deletes a later record of the key undid.
    undeleted: Vec<usize>,
    /// Records held back, by arrival, each with the checkpoint from before its page.
    held: BTreeMap<u64, (Prepared, Arc<Checkpoint>)>,
    /// The checkpoint from before the page being sorted (kept only when looking up).
    page_start: Option<Arc<Checkpoint>>,
    /// The arrival number of each held key.
    held_keys: HashMap<Key, u64>,
    /// Arrivals so far.
    seq: u64,
    /// Most records held at once.
    hold_max: usize,
    /// Whether the hold overflowed in this run (warned once).
    overflowed: bool,
}

impl Versions {
    /// Versions for a run that looks the ledger up (`lookups`) and holds at most `hold_max` records.
    pub fn new(lookups: bool, hold_max: usize) -> Versions {
        Versions {
            window: VecDeque::new(),
            lookups,
            pending: Pending::default(),
            dropped: Vec::new(),
            undeleted: Vec::new(),
            held: BTreeMap::new(),
            held_keys: HashMap::new(),
            page_start: None,
            seq: 0,
            hold_max: hold_max.max(1),
            overflowed: false,
        }
    }

    /// A page is about to be sorted; `before` is the checkpoint from before it, where a
    /// resumed run would read the page again.
    pub fn begin_page(&mut self, before: &Checkpoint) {
        if self.lookups {
            self.page_start = Some(Arc::new(before.clone()));
        }
    }

    /// Sort one candidate into the pending batch: superseding the key's earlier record there
    /// or held, then unchanged, held, or to write. `ledger`: the key's row (`None` when absent
    /// or not looked up).
    pub fn sort(&mut self, p: Prepared, ledger: Option<LedgerVersion>, b: &mut MappedBatch) {
        if !self.held_keys.is_empty()
            && let Some(seq) = self.held_keys.remove(&p.key)
        {
            self.held.remove(&seq);
            b.superseded += 1;
        }
        let kh = key_hash(&p.key);
        match self.pending.get(&kh) {
            Some(Slot::Write(i)) if b.to_write[*i].key == p.key => {
                self.dropped.push(*i);
                b.superseded += 1;
            }
            Some(Slot::Unchanged(i)) if b.unchanged[*i] == p.key => {
                b.skipped -= 1;
                b.superseded += 1;
            }
            Some(Slot::Delete(i)) if b.deletes[*i] == p.key => {
                // Deleted earlier in the batch and back now: the delete never reaches the sink,
                // so the record is judged against what the sink holds, as any other.
                self.undeleted.push(*i);
            }
            _ => {}
        }
        let in_flight = match self.window.iter().all(HashMap::is_empty) {
            true => None,
            false => self.window.iter().rev().find_map(|m| m.get(&p.key)).copied(),
        };
        let (old, repeated) = match in_flight {
            // A batch in flight writes the key (its hash) or deletes it (`None`).
            Some(h) => (h, false),
            None => (ledger.map(|v| v.hash), ledger.is_some_and(|v| v.repeated)),
        };
        if old == Some(p.hash) {
            b.trail.unchanged(&p);
            self.pending.insert(kh, Slot::Unchanged(b.unchanged.len()));
            b.unchanged.push(p.key);
            b.skipped += 1;
        } else if repeated {
            self.pending.remove(&kh);
            self.hold(Prepared { known: true, ..p }, b);
        } else {
            self.write(Prepared { known: old.is_some(), ..p }, b);
        }
    }

    /// The source says `key` was deleted, after everything sorted so far: its pending or
    /// held record is superseded and the key joins the batch's deletes (once).
    pub fn delete(&mut self, key: Key, b: &mut MappedBatch) {
        if !self.held_keys.is_empty()
            && let Some(seq) = self.held_keys.remove(&key)
        {
            self.held.remove(&seq);
            b.superseded += 1;
        }
        let kh = key_hash(&key);
        match self.pending.get(&kh) {
            Some(Slot::Write(i)) if b.to_write[*i].key == key => {
                self.dropped.push(*i);
                b.superseded += 1;
            }
            Some(Slot::Delete(i)) if b.deletes[*i] == key && !self.undeleted.contains(i) => return,
            _ => {}
        }
        self.pending.insert(kh, Slot::Delete(b.deletes.len()));
        b.deletes.push(key);
    }

    /// Make the pending batch ready to send: at the end of the pass the held records join
    /// it; otherwise its checkpoint goes back to before the earliest held record. Superseded
    /// records leave it; its written keys join the window.
    pub fn finish(&mut self, b: &mut MappedBatch) {
        if b.done {
            while let Some((_, (p, _))) = self.held.pop_first() {
                self.held_keys.remove(&p.key);
                self.write(p, b);
            }
        } else if let Some((_, (_, before))) = self.held.first_key_value() {
            b.checkpoint = Checkpoint::clone(before);
        }
        if !self.dropped.is_empty() {
            self.dropped.sort_unstable();
            let mut dropped = self.dropped.iter().peekable();
            let mut i = 0;
            b.to_write.retain(|_| {
                let keep = dropped.next_if_eq(&&i).is_none();
                i += 1;
                keep
            });
            self.dropped.clear();
        }
        if !self.undeleted.is_empty() {
            let mut i = 0;
            b.deletes.retain(|_| {
                let keep = !self.undeleted.contains(&i);
                i += 1;
                keep
            });
            self.undeleted.clear();
        }
        self.pending.clear();
        if self.lookups {
            let deleted = b.deletes.iter().map(|k| (k.clone(), None));
            self.window.push_back(b.to_write.iter().map(|p| (p.key.clone(), Some(p.hash))).chain(deleted).collect());
            if self.window.len() > IN_FLIGHT {
                self.window.pop_front();
            }
        }
    }

    fn write(&mut self, p: Prepared, b: &mut MappedBatch) {
        self.pending.insert(key_hash(&p.key), Slot::Write(b.to_write.len()));
        b.to_write.push(p);
    }

    /// Hold a record back; past `hold_max`, the oldest held one is written now. Holding
    /// needs the page's starting checkpoint (kept whenever the ledger is looked up, the
    /// only time a key can be known as repeated); without it the record is written.
    fn hold(&mut self, p: Prepared, b: &mut MappedBatch) {
        let Some(before) = self.page_start.clone() else {
            return self.write(p, b);
        };
        self.seq += 1;
        self.held_keys.insert(p.key.clone(), self.seq);
        self.held.insert(self.seq, (p, before));
        if self.held.len() > self.hold_max
            && let Some((_, (oldest, _))) = self.held.pop_first()
        {
            self.held_keys.remove(&oldest.key);
            if !self.overflowed {
                self.overflowed = true;
                tracing::warn!(
                    held = self.hold_max,
                    "more changed records of repeated keys are pending than can be held (batch_size): \
                     writing the oldest; the sink still ends with each key's last record, but this \
                     run writes versions a later record supersedes"
                );
            }
            self.write(oldest, b);
        }
    }
}
