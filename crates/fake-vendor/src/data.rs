//! The record set: generated from `(seed, id)` on the fly, so a million records cost no memory.
//!
//! Listing order is `(updated_at, id)`. Initial records have timestamps increasing with the
//! id (every 10th shares its predecessor's), so their order is the id order and positions are
//! found by binary search. Touched and added records move to a small ordered "tail" whose
//! timestamps lie past every other record's, so the listing is "untouched base, then tail".

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::ops::Bound;

use crate::config::{DriftKind, Faults};

/// A position in listing order: `(updated_at as epoch seconds, id)`.
pub(crate) type Key = (i64, u64);

/// 2024-01-01T00:00:00Z: the first record's timestamp.
const EPOCH: i64 = 1_704_067_200;
/// Seconds between consecutive distinct timestamps.
const STEP: i64 = 37;
/// `big` = this + id: 20 digits, beyond f64's exact integers, to prove exactness end to end.
const BIG_BASE: u64 = 12_345_678_901_234_567_890;

const ADJECTIVES: [&str; 16] = [
    "Amber", "Brave", "Calm", "Dusty", "Eager", "Fancy", "Gentle", "Happy", "Icy", "Jolly", "Kind", "Lucky", "Mellow",
    "Nimble", "Odd", "Proud",
];
const NOUNS: [&str; 16] = [
    "Anchor", "Badger", "Comet", "Dynamo", "Falcon", "Gadget", "Harbor", "Island", "Jigsaw", "Kettle", "Lantern",
    "Magnet", "Nugget", "Orbit", "Pebble", "Quartz",
];
const TAGS: [&str; 8] = ["red", "green", "blue", "sale", "new", "bulk", "fragile", "eco"];

#[derive(Debug, Clone, Copy)]
struct Version {
    ts: i64,
    rev: u32,
}

/// The mutable part of the dataset; everything else is a pure function of `(seed, id)`.
pub(crate) struct Dataset {
    seed: u64,
    /// Records at start: ids `1..=base`, untouched ones in the base order.
    base: u64,
    /// Base ids that were touched and now live in the tail.
    touched: BTreeSet<u64>,
    /// Touched and added records in listing order.
    tail: BTreeSet<Key>,
    versions: HashMap<u64, Version>,
    total: u64,
    max_ts: i64,
}

/// splitmix64: a fast, well-mixed hash so every field is a pure function of (seed, id, salt).
fn mix(seed: u64, id: u64, salt: u64) -> u64 {
    let mut z = seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn base_ts(id: u64) -> i64 {
    // id - id/10 repeats the previous value exactly at every multiple of 10: the cursor ties.
    EPOCH + (id - id / 10) as i64 * STEP
}

impl Dataset {
    pub(crate) fn new(seed: u64, records: u64) -> Dataset {
        Dataset {
            seed,
            base: records,
            touched: BTreeSet::new(),
            tail: BTreeSet::new(),
            versions: HashMap::new(),
            total: records,
            max_ts: base_ts(records.max(1)),
        }
    }

    /// Number of records.
    pub(crate) fn len(&self) -> u64 {
        self.base - self.touched.len() as u64 + self.tail.len() as u64
    }

    fn version(&self, id: u64) -> Option<Version> {
        match self.versions.get(&id) {
            Some(v) => Some(*v),
            None if id >= 1 && id <= self.base => Some(Version { ts: base_ts(id), rev: 0 }),
            None => None,
        }
    }

    pub(crate) fn exists(&self, id: u64) -> bool {
        id >= 1 && id <= self.total
    }

    /// Moves the records to the end of the listing with a new `updated_at` and changed fields.
    pub(crate) fn touch(&mut self, ids: &[u64]) {
        for &id in ids {
            let Some(old) = self.version(id) else { continue };
            self.tail.remove(&(old.ts, id));
            if id <= self.base {
                self.touched.insert(id);
            }
            self.max_ts += 1;
            let v = Version { ts: self.max_ts, rev: old.rev + 1 };
            self.versions.insert(id, v);
            self.tail.insert((v.ts, id));
        }
    }

    /// Appends `n` records with fresh ids and timestamps past every existing one.
    pub(crate) fn add(&mut self, n: u64) {
        for _ in 0..n {
            self.total += 1;
            self.max_ts += 1;
            self.versions.insert(self.total, Version { ts: self.max_ts, rev: 0 });
            self.tail.insert((self.max_ts, self.total));
        }
    }

    /// Smallest base id in `1..=base+1` for which `pred` (monotone: false, then true) holds.
    fn first_base_id(&self, pred: impl Fn(u64) -> bool) -> u64 {
        let (mut lo, mut hi) = (1u64, self.base + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(mid) { hi = mid } else { lo = mid + 1 }
        }
        lo
    }

    /// Ids in listing order from base id `id` on (skipping touched ones), then the tail from
    /// `tail_from`; up to `n`, plus whether more follow.
    fn collect(&self, mut id: u64, tail_from: Bound<Key>, tail_skip: usize, n: usize) -> (Vec<u64>, bool) {
        let mut out = Vec::with_capacity(n.min(4096) + 1);
        let mut touched = self.touched.range(id..).peekable();
        while id <= self.base && out.len() <= n {
            if touched.peek() == Some(&&id) {
                touched.next();
            } else {
                out.push(id);
            }
            id += 1;
        }
        if out.len() <= n {
            let want = n + 1 - out.len();
            out.extend(self.tail.range((tail_from, Bound::Unbounded)).skip(tail_skip).take(want).map(|k| k.1));
        }
        let more = out.len() > n;
        out.truncate(n);
        (out, more)
    }

    /// Listing position of the first record with `updated_at >= since` (all records when `None`).
    pub(crate) fn rank_of_since(&self, since: Option<i64>) -> u64 {
        let Some(since) = since else { return 0 };
        let id = self.first_base_id(|id| base_ts(id) >= since);
        if id <= self.base {
            id - 1 - self.touched.range(..id).count() as u64
        } else {
            self.base - self.touched.len() as u64 + self.tail.range(..(since, 0)).count() as u64
        }
    }

    /// Up to `n` ids starting at listing position `rank`, and whether more follow.
    pub(crate) fn page_at_rank(&self, rank: u64, n: usize) -> (Vec<u64>, bool) {
        let base_count = self.base - self.touched.len() as u64;
        if rank < base_count {
            // The rank-th untouched id: start at rank+1 and step over each touched id at or below it.
            let mut id = rank + 1;
            for &t in &self.touched {
                if t <= id { id += 1 } else { break }
            }
            self.collect(id, Bound::Unbounded, 0, n)
        } else {
            let skip = usize::try_from(rank - base_count).unwrap_or(usize::MAX);
            self.collect(self.base + 1, Bound::Unbounded, skip, n)
        }
    }

    /// Up to `n` ids strictly after `key` (or from `updated_at >= since` when no key), and whether more follow.
    pub(crate) fn page_after(&self, key: Option<Key>, since: Option<i64>, n: usize) -> (Vec<u64>, bool) {
        match key {
            Some(key) => {
                let id = self.first_base_id(|id| (base_ts(id), id) > key);
                self.collect(id, Bound::Excluded(key), 0, n)
            }
            None => match since {
                Some(since) => {
                    let id = self.first_base_id(|id| base_ts(id) >= since);
                    self.collect(id, Bound::Included((since, 0)), 0, n)
                }
                None => self.collect(1, Bound::Unbounded, 0, n),
            },
        }
    }

    /// The listing key of a record.
    pub(crate) fn key_of(&self, id: u64) -> Option<Key> {
        self.version(id).map(|v| (v.ts, id))
    }

    /// Appends the record's JSON (as the faults currently shape it) to `out`.
    pub(crate) fn write_record(&self, out: &mut Vec<u8>, id: u64, faults: &Faults) {
        let Some(v) = self.version(id) else { return };
        let s = self.seed;
        let h = mix(s, id, 1);
        let nulled = faults.null_ratio > 0.0 && unit(mix(s, id, 2)) < faults.null_ratio;
        let drifted = faults.drift_after.is_some_and(|k| id > k);
        let name_field = if drifted && faults.drift == DriftKind::Rename { "title" } else { "name" };

        // Bytes and itoa, not `write!`: the formatting machinery was ~40 % of the vendor's
        // CPU on `bench-rest`, and its latency is on the client's critical path.
        out.extend_from_slice(b"{\"id\":");
        push_u64(out, id);
        out.extend_from_slice(b",\"updated_at\":\"");
        write_ts(out, v.ts);
        out.extend_from_slice(b"\",\"");
        out.extend_from_slice(name_field.as_bytes());
        out.extend_from_slice(b"\":");
        if nulled {
            out.extend_from_slice(b"null");
        } else {
            out.push(b'"');
            out.extend_from_slice(ADJECTIVES[(h & 15) as usize].as_bytes());
            out.push(b' ');
            out.extend_from_slice(NOUNS[((h >> 4) & 15) as usize].as_bytes());
            out.push(b' ');
            push_u64(out, id);
            if v.rev > 0 {
                out.extend_from_slice(b" rev");
                push_u64(out, u64::from(v.rev));
            }
            out.push(b'"');
        }
        out.extend_from_slice(b",\"price\":");
        let cents = 100 + (h >> 8) % 99_900;
        let quoted = drifted && faults.drift == DriftKind::TypeChange;
        if nulled {
            out.extend_from_slice(b"null");
        } else {
            if quoted {
                out.push(b'"');
            }
            push_u64(out, cents / 100);
            out.push(b'.');
            push_digits(out, cents % 100, 2);
            if quoted {
                out.push(b'"');
            }
        }
        let quantity = (h >> 28) % 500 + u64::from(v.rev);
        let active = (h >> 40) & 1 == 0;
        out.extend_from_slice(b",\"quantity\":");
        push_u64(out, quantity);
        out.extend_from_slice(if active { b",\"active\":true,\"tags\":" } else { b",\"active\":false,\"tags\":" });
        if nulled {
            out.extend_from_slice(b"null");
        } else {
            out.push(b'[');
            let count = (h >> 41) % 4;
            let start = (h >> 43) % 8;
            for k in 0..count {
                if k > 0 {
                    out.push(b',');
                }
                // Step 3 is coprime with 8, so the tags of one record are distinct.
                out.push(b'"');
                out.extend_from_slice(TAGS[((start + k * 3) % 8) as usize].as_bytes());
                out.push(b'"');
            }
            out.push(b']');
        }
        let owner = 1 + (h >> 46) % 50;
        out.extend_from_slice(b",\"owner\":{\"id\":");
        push_u64(out, owner);
        out.extend_from_slice(b",\"login\":\"user");
        push_u64(out, owner);
        out.extend_from_slice(b"\"},\"notes\":");
        if (h >> 52).is_multiple_of(5) {
            out.extend_from_slice(b"null");
        } else {
            out.extend_from_slice(b"\"Note ");
            push_u64(out, id);
            out.extend_from_slice(b": handle with care\"");
        }
        out.extend_from_slice(b",\"big\":");
        push_u64(out, BIG_BASE + id);
        out.push(b'}');
    }

    /// Number of comments of an item (0–3).
    pub(crate) fn comment_count(&self, item: u64) -> u64 {
        mix(self.seed, item, 3) % 4
    }

    /// Appends comment `index` (0-based, ordered by `created_at`) of `item` to `out`.
    pub(crate) fn write_comment(&self, out: &mut Vec<u8>, item: u64, index: u64) {
        let id = (item - 1) * 3 + index + 1;
        let created = base_ts(item) + (index as i64 + 1) * 60;
        let _ = write!(
            out,
            "{{\"id\":{id},\"item_id\":{item},\"body\":\"Comment {} on item {item}\",\"created_at\":\"",
            index + 1
        );
        write_ts(out, created);
        out.extend_from_slice(b"\"}");
    }
}

/// Writes epoch seconds as RFC 3339 UTC (`2024-01-01T00:00:00Z`); hand-rolled because it runs once per record.
pub(crate) fn write_ts(out: &mut Vec<u8>, secs: i64) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        let _ =
            write!(out, "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60);
        return;
    }
    // In range, every part is non-negative: digits by hand (see `write_record`).
    let part = |n: i64| n.unsigned_abs();
    push_digits(out, part(year), 4);
    out.push(b'-');
    push_digits(out, part(month), 2);
    out.push(b'-');
    push_digits(out, part(day), 2);
    out.push(b'T');
    push_digits(out, part(rem / 3600), 2);
    out.push(b':');
    push_digits(out, part((rem % 3600) / 60), 2);
    out.push(b':');
    push_digits(out, part(rem % 60), 2);
    out.push(b'Z');
}

/// `n` in decimal.
fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `n` zero-padded to at least `width` digits (`{n:0width$}`).
fn push_digits(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(n).as_bytes();
    out.extend(std::iter::repeat_n(b'0', width.saturating_sub(digits.len())));
    out.extend_from_slice(digits);
}

/// Parses an RFC 3339 instant to epoch seconds, rounding up so `>=` on whole seconds stays exact.
pub(crate) fn parse_ts(text: &str) -> Option<i64> {
    let ts: jiff::Timestamp = text.parse().ok()?;
    let secs = ts.as_second();
    Some(if ts.subsec_nanosecond() > 0 { secs + 1 } else { secs })
}

/// Index for duplicate detection: `external_id` when present, else the whole canonical body.
pub(crate) fn dedup_key(body: &serde_json::Map<String, serde_json::Value>) -> String {
    match body.get("external_id") {
        Some(v) => format!("external_id:{v}"),
        None => format!("body:{}", serde_json::Value::Object(body.clone())),
    }
}

/// Objects created through the write endpoints.
#[derive(Default)]
pub(crate) struct Created {
    pub(crate) objects: Vec<serde_json::Value>,
    pub(crate) by_external_id: HashMap<String, usize>,
    pub(crate) seen: BTreeSet<String>,
    pub(crate) idempotency: BTreeMap<String, (serde_json::Value, bytes::Bytes)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact bytes of records under each fault shape, as the `write!`-based writer
    /// produced them (taken from the binary before the byte writer replaced it): the
    /// writer is hand-built, so a slip in a quote, a comma or zero padding shows here.
    #[test]
    fn records_are_written_byte_for_byte_as_before() {
        let mut d = Dataset::new(9, 3000);
        d.touch(&[5]);
        let write = |id: u64, faults: &Faults| {
            let mut out = Vec::new();
            d.write_record(&mut out, id, faults);
            String::from_utf8(out).unwrap()
        };
        let plain = Faults::default();
        let nulls_and_type =
            Faults { null_ratio: 0.3, drift_after: Some(1500), drift: DriftKind::TypeChange, ..Faults::default() };
        let rename = Faults { drift_after: Some(10), drift: DriftKind::Rename, ..Faults::default() };
        let cases = [
            (
                1,
                &plain,
                r#"{"id":1,"updated_at":"2024-01-01T00:00:37Z","name":"Brave Nugget 1","price":473.44,"quantity":182,"active":true,"tags":["sale","fragile"],"owner":{"id":33,"login":"user33"},"notes":"Note 1: handle with care","big":12345678901234567891}"#,
            ),
            (
                5,
                &plain,
                r#"{"id":5,"updated_at":"2024-01-02T03:45:01Z","name":"Mellow Orbit 5 rev1","price":459.63,"quantity":201,"active":false,"tags":["new"],"owner":{"id":26,"login":"user26"},"notes":"Note 5: handle with care","big":12345678901234567895}"#,
            ),
            (
                3,
                &nulls_and_type,
                r#"{"id":3,"updated_at":"2024-01-01T00:01:51Z","name":null,"price":null,"quantity":87,"active":false,"tags":null,"owner":{"id":49,"login":"user49"},"notes":null,"big":12345678901234567893}"#,
            ),
            (
                4,
                &nulls_and_type,
                r#"{"id":4,"updated_at":"2024-01-01T00:02:28Z","name":"Mellow Jigsaw 4","price":162.00,"quantity":439,"active":true,"tags":["red","sale","fragile"],"owner":{"id":47,"login":"user47"},"notes":"Note 4: handle with care","big":12345678901234567894}"#,
            ),
            (
                2000,
                &nulls_and_type,
                r#"{"id":2000,"updated_at":"2024-01-01T18:30:00Z","name":"Gentle Badger 2000","price":"548.15","quantity":159,"active":false,"tags":["new","eco","blue"],"owner":{"id":50,"login":"user50"},"notes":"Note 2000: handle with care","big":12345678901234569890}"#,
            ),
            (
                20,
                &rename,
                r#"{"id":20,"updated_at":"2024-01-01T00:11:06Z","title":"Happy Lantern 20","price":302.02,"quantity":255,"active":true,"tags":[],"owner":{"id":17,"login":"user17"},"notes":"Note 20: handle with care","big":12345678901234567910}"#,
            ),
        ];
        for (id, faults, expected) in cases {
            assert_eq!(write(id, faults), expected, "record {id}");
        }
    }

    #[test]
    fn timestamps_format_as_rfc3339() {
        let mut out = Vec::new();
        write_ts(&mut out, 1_704_067_200 + 86_400 * 60 + 3661);
        assert_eq!(String::from_utf8(out).unwrap(), "2024-03-01T01:01:01Z");
        assert_eq!(parse_ts("2024-03-01T01:01:01Z"), Some(1_704_067_200 + 86_400 * 60 + 3661));
        assert_eq!(parse_ts("2024-01-01T00:00:00.5Z"), Some(1_704_067_201));
    }

    #[test]
    fn every_tenth_record_ties_with_the_previous() {
        assert_eq!(base_ts(9), base_ts(10));
        assert!(base_ts(10) < base_ts(11));
        assert!(base_ts(8) < base_ts(9));
    }

    #[test]
    fn ranks_skip_touched_records_and_reach_the_tail() {
        let mut d = Dataset::new(7, 20);
        d.touch(&[3, 5]);
        d.add(2);
        assert_eq!(d.len(), 22);
        let (all, more) = d.page_at_rank(0, 100);
        assert!(!more);
        let expected: Vec<u64> = (1..=20).filter(|i| *i != 3 && *i != 5).chain([3, 5, 21, 22]).collect();
        assert_eq!(all, expected);
        for (rank, id) in expected.iter().enumerate() {
            assert_eq!(d.page_at_rank(rank as u64, 1).0, vec![*id], "rank {rank}");
            let key = d.key_of(*id).unwrap();
            let after = d.page_after(Some(key), None, 100).0;
            assert_eq!(after, expected[rank + 1..].to_vec(), "after {id}");
        }
        let since = d.key_of(21).unwrap().0;
        assert_eq!(d.rank_of_since(Some(since)), 20);
        assert_eq!(d.page_after(None, Some(since), 10).0, vec![21, 22]);
    }
}
