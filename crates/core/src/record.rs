//! Records, their keys and provenance, content hashing, and field paths.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

/// Where a record came from, shared by every record of one page.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Provenance {
    /// Connector kind that produced the record (`files`, `github`, ...).
    pub connector: String,
    /// Endpoint or file the record was read from (URL without secrets, or a path).
    pub endpoint: String,
    /// Vendor API version pinned for the request, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// When the page was fetched (RFC 3339).
    pub fetched_at: String,
    /// The vendor's request id, when it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// HTTP status of the response, for connectors that speak HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Served from the last good response because the remote was unavailable (`use_cache`):
    /// the data may be old.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
}

/// One record flowing through a pipeline.
#[derive(Debug, Clone)]
pub struct Record {
    /// The record's fields. Numbers keep their exact decimal text (serde_json `arbitrary_precision`).
    pub data: Value,
    /// Position inside the endpoint, used in messages (`orders.jsonl line 17`).
    pub location: Option<Location>,
    /// Where the page came from.
    pub provenance: Arc<Provenance>,
    /// Primary key of the mapped record; filled by the engine after mapping.
    pub key: Option<Key>,
    /// Where the source's tolerant decoding filled in a value the vendor did not send (a
    /// null or missing array read as `[]`): each is counted as drift unless the stream's
    /// baseline allows what the vendor sent, so a coercion is recorded, never silent.
    pub coerced: Option<Box<[crate::drift::DriftEvent]>>,
    /// The source says this record was deleted (a tombstone): its data holds at least the
    /// primary-key fields; the engine maps it for its key and deletes that key at the sink
    /// under the stream's delete mode, never writing it (docs/connector-guide.md).
    pub deleted: bool,
}

impl Record {
    /// A tombstone: the source says the record with these (at least primary-key) fields was deleted.
    pub fn tombstone(data: Value, provenance: Arc<Provenance>) -> Self {
        Record { deleted: true, ..Record::new(data, provenance) }
    }
    /// A record with data and provenance, no location and no key yet.
    pub fn new(data: Value, provenance: Arc<Provenance>) -> Self {
        Record { data, location: None, provenance, key: None, coerced: None, deleted: false }
    }
    /// Note the coercions the source's decoding made on this record (none: unchanged).
    pub fn coerced(mut self, coercions: Vec<crate::drift::DriftEvent>) -> Self {
        self.coerced = (!coercions.is_empty()).then(|| coercions.into_boxed_slice());
        self
    }
    /// Set the record's location.
    pub fn at(mut self, location: Location) -> Self {
        self.location = Some(location);
        self
    }
    /// `endpoint line N` / `endpoint item N` / `endpoint`, for messages.
    pub fn whereabouts(&self) -> String {
        match &self.location {
            Some(l) => format!("{} {l}", self.provenance.endpoint),
            None => self.provenance.endpoint.clone(),
        }
    }
}

/// Position of a record inside its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// 1-based line of a text file.
    Line(u64),
    /// 0-based index of the record in a response or page.
    Item(u64),
}

impl Location {
    /// Append the same text as `Display` (`item 17`) without the formatting machinery,
    /// which cost ~0.8 % of a REST sync when the state store wrote one per record.
    pub fn push_to(&self, out: &mut String) {
        let (word, n) = match self {
            Location::Line(n) => ("line ", n),
            Location::Item(n) => ("item ", n),
        };
        out.push_str(word);
        out.push_str(itoa::Buffer::new().format(*n));
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Item(n) => write!(f, "item {n}"),
        }
    }
}

/// A primary-key value: one JSON value per key field, in key order. Cheap to clone: the
/// engine hands the same key to the ledger, the sink and the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(Arc<str>);

impl Key {
    /// Build a key from its parts. The canonical form is compact JSON: `1`, `"a"`, `[1,"a"]`.
    pub fn from_parts(parts: &[&Value]) -> Key {
        if parts.len() == 1 {
            Key(canonical_json(parts[0]).into())
        } else {
            let mut s = String::from("[");
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push_str(&canonical_json(p));
            }
            s.push(']');
            Key(s.into())
        }
    }
    /// Rebuild a key from its canonical text (as stored in the ledger).
    pub fn from_canonical(s: impl Into<String>) -> Key {
        Key(s.into().into())
    }
    /// The canonical text of this key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The key's parts as JSON values, one per key field.
    pub fn parts(&self, fields: usize) -> Vec<Value> {
        let v: Value = serde_json::from_str(&self.0).unwrap_or(Value::Null);
        if fields == 1 {
            vec![v]
        } else {
            match v {
                Value::Array(a) => a,
                other => vec![other],
            }
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Compact JSON with object keys sorted, so equal values give equal text.
///
/// serde_json's map is a BTreeMap in this workspace (no `preserve_order`), so plain
/// serialization is already canonical.
pub fn canonical_json(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// 128-bit content hash of a record's data, over its canonical JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentHash(pub [u8; 16]);

impl ContentHash {
    /// A hash no record has (in practice: 2^-128): what `forget_ledger` leaves on a row that
    /// keeps its destination id, so the record is written again, as an update.
    pub const VOID: ContentHash = ContentHash([0; 16]);

    /// Hash a value's content with xxh3-128: a walk over the value (object keys in sorted
    /// order, every string and number length-prefixed, numbers by their exact text), so equal
    /// values hash equal and no two different values share an encoding. Walking instead of
    /// serializing to JSON skips escaping and formatting on the hot path.
    ///
    /// The encoding is written to a reused per-thread buffer and hashed in one call: the
    /// same bytes give the same xxh3 digest as feeding them piecewise, at a fraction of the
    /// cost of a streaming update per field.
    pub fn of(v: &Value) -> ContentHash {
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUF.with_borrow_mut(|buf| {
            buf.clear();
            encode(buf, v);
            let digest = xxhash_rust::xxh3::xxh3_128(buf);
            // A huge record must not pin its size in every worker thread.
            if buf.capacity() > 1 << 20 {
                *buf = Vec::new();
            }
            ContentHash(digest.to_be_bytes())
        })
    }
    /// Lowercase hex, for idempotency keys and display.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A cursor value moved back by `d`: RFC 3339 timestamps by that duration, integers by
/// that many seconds. `None` for any other value (no lookback is possible).
pub fn cursor_minus(v: &Value, d: std::time::Duration) -> Option<Value> {
    match v {
        Value::String(s) => {
            let t: jiff::Timestamp = s.parse().ok()?;
            let back = jiff::SignedDuration::try_from(d).ok()?;
            Some(Value::String(t.checked_sub(back).ok()?.to_string()))
        }
        Value::Number(n) => {
            let i: i64 = n.as_i64()?;
            Some(Value::from(i.checked_sub(i64::try_from(d.as_secs()).ok()?)?))
        }
        _ => None,
    }
}

/// The idempotency key of one version of one record: `dt-` and the xxh3-128 of (pipeline,
/// stream, primary key, content hash), each length-prefixed. The same record content always
/// gets the same key, in any process and on any rerun; a changed record gets a new one.
pub fn idempotency_key(pipeline: &str, stream: &str, key: &Key, hash: &ContentHash) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for part in [pipeline.as_bytes(), stream.as_bytes(), key.as_str().as_bytes(), &hash.0[..]] {
        h.update(&(part.len() as u64).to_be_bytes());
        h.update(part);
    }
    format!("dt-{}", ContentHash(h.digest128().to_be_bytes()).to_hex())
}

/// The hashed encoding of a value (see [`ContentHash::of`]).
fn encode(out: &mut Vec<u8>, v: &Value) {
    fn bytes(out: &mut Vec<u8>, tag: u8, b: &[u8]) {
        out.push(tag);
        out.extend_from_slice(&(b.len() as u64).to_le_bytes());
        out.extend_from_slice(b);
    }
    match v {
        Value::Null => out.push(b'n'),
        Value::Bool(true) => out.push(b't'),
        Value::Bool(false) => out.push(b'f'),
        Value::Number(n) => bytes(out, b'#', n.as_str().as_bytes()),
        Value::String(s) => bytes(out, b's', s.as_bytes()),
        Value::Array(items) => {
            out.push(b'[');
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                encode(out, item);
            }
        }
        Value::Object(map) => {
            out.push(b'{');
            out.extend_from_slice(&(map.len() as u64).to_le_bytes());
            for (k, item) in map {
                bytes(out, b'k', k.as_bytes());
                encode(out, item);
            }
        }
    }
}

/// A dotted field path such as `customer.address.city` or `items[0].sku`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct FieldPath(String);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg<'a> {
    Field(&'a str),
    Index(usize),
}

impl FieldPath {
    /// A path from its dotted text.
    pub fn new(s: impl Into<String>) -> Self {
        FieldPath(s.into())
    }
    /// The dotted text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    fn segments(&self) -> Vec<Seg<'_>> {
        let mut out = Vec::new();
        for part in self.0.split('.') {
            let (name, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if !name.is_empty() {
                out.push(Seg::Field(name));
            }
            while let Some(end) = rest.find(']') {
                // A `]` with no `[` before it (`a[0]]`, found by fuzzing) ends the path here.
                let Some(inner) = rest.get(1..end) else { break };
                match inner.parse::<usize>() {
                    Ok(i) => out.push(Seg::Index(i)),
                    Err(_) => out.push(Seg::Field(inner)),
                }
                rest = &rest[end + 1..];
            }
        }
        out
    }
    /// Whether the path is a single top-level field.
    pub fn is_top_level(&self) -> bool {
        !self.0.contains('.') && !self.0.contains('[')
    }
    /// The value at this path, if present.
    pub fn get<'v>(&self, v: &'v Value) -> Option<&'v Value> {
        if self.is_top_level() {
            return v.get(&self.0);
        }
        let mut cur = v;
        for s in self.segments() {
            cur = match s {
                Seg::Field(f) => cur.get(f)?,
                Seg::Index(i) => cur.get(i)?,
            };
        }
        Some(cur)
    }
    /// A mutable reference to the value at this path, if present.
    pub fn get_mut<'v>(&self, v: &'v mut Value) -> Option<&'v mut Value> {
        let mut cur = v;
        for s in self.segments() {
            cur = match s {
                Seg::Field(f) => cur.get_mut(f)?,
                Seg::Index(i) => cur.get_mut(i)?,
            };
        }
        Some(cur)
    }
    /// Remove and return the value at this path.
    pub fn take(&self, v: &mut Value) -> Option<Value> {
        let segs = self.segments();
        let (last, parents) = segs.split_last()?;
        let mut cur = v;
        for s in parents {
            cur = match s {
                Seg::Field(f) => cur.get_mut(*f)?,
                Seg::Index(i) => cur.get_mut(*i)?,
            };
        }
        match last {
            Seg::Field(f) => cur.as_object_mut()?.remove(*f),
            Seg::Index(i) => cur.get_mut(*i).map(Value::take),
        }
    }
    /// Set the value at this path, creating objects along the way.
    pub fn set(&self, v: &mut Value, new: Value) -> bool {
        let segs = self.segments();
        let Some((last, parents)) = segs.split_last() else {
            return false;
        };
        let mut cur = v;
        for s in parents {
            cur = match s {
                Seg::Field(f) => {
                    let Some(obj) = cur.as_object_mut() else {
                        return false;
                    };
                    obj.entry(f.to_string()).or_insert_with(|| Value::Object(Default::default()))
                }
                Seg::Index(i) => match cur.get_mut(*i) {
                    Some(x) => x,
                    None => return false,
                },
            };
        }
        match last {
            Seg::Field(f) => match cur.as_object_mut() {
                Some(obj) => {
                    obj.insert(f.to_string(), new);
                    true
                }
                None => false,
            },
            Seg::Index(i) => match cur.get_mut(*i) {
                Some(x) => {
                    *x = new;
                    true
                }
                None => false,
            },
        }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for FieldPath {
    fn from(s: &str) -> Self {
        FieldPath(s.to_owned())
    }
}

/// Total order of cursor values: numbers numerically (exactly, beyond f64), RFC 3339
/// timestamps by instant, other strings lexicographically. `None` when the two cannot be compared.
pub fn compare_cursors(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Some(crate::number::compare(x, y)),
        (Value::String(x), Value::String(y)) => {
            // Two UTC timestamps written alike (`2026-01-02T03:04:05.678Z`, same length) sort
            // as text: no parsing on the per-record path.
            if same_utc_shape(x, y) {
                return Some(x.cmp(y));
            }
            if let (Ok(tx), Ok(ty)) = (x.parse::<jiff::Timestamp>(), y.parse::<jiff::Timestamp>()) {
                Some(tx.cmp(&ty))
            } else {
                Some(x.cmp(y))
            }
        }
        _ => None,
    }
}

/// Whether both are `YYYY-MM-DDTHH:MM:SS[.f…]Z` with the same length (so the same precision).
fn same_utc_shape(x: &str, y: &str) -> bool {
    let shaped = |s: &[u8]| {
        s.len() >= 20
            && s[s.len() - 1] == b'Z'
            && s[4] == b'-'
            && s[7] == b'-'
            && s[10] == b'T'
            && s[13] == b':'
            && s[16] == b':'
            && s[..s.len() - 1]
                .iter()
                .enumerate()
                .all(|(i, c)| matches!(i, 4 | 7 | 10 | 13 | 16 | 19) || c.is_ascii_digit())
            && (s.len() == 20 || s[19] == b'.')
    };
    x.len() == y.len() && shaped(x.as_bytes()) && shaped(y.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_to_writes_what_display_writes() {
        for loc in [Location::Item(0), Location::Item(17), Location::Line(1), Location::Line(u64::MAX)] {
            let mut s = String::from("x ");
            loc.push_to(&mut s);
            assert_eq!(s, format!("x {loc}"));
        }
    }
    use serde_json::json;

    #[test]
    fn content_hashes_are_stable_across_releases() {
        // Pinned from the streaming implementation this one replaced: a changed hash would
        // make every ledger entry look changed and rewrite every record once.
        let v: Value = serde_json::from_str(
            r#"{"id":12345678901234567890,"name":"é\"x","tags":["a",null,true,false,1.50],"nested":{"z":{},"a":[]}}"#,
        )
        .unwrap();
        assert_eq!(ContentHash::of(&v).to_hex(), "e7804afd9de90a647d152aad678e9796");
        assert_ne!(ContentHash::of(&json!({"a": "1"})), ContentHash::of(&json!({"a": 1})));
    }

    #[test]
    fn utc_timestamps_compare_without_parsing_and_others_still_parse() {
        let c = |a: &str, b: &str| compare_cursors(&json!(a), &json!(b));
        assert_eq!(c("2026-01-02T03:04:05Z", "2026-01-02T03:04:06Z"), Some(Ordering::Less));
        assert_eq!(c("2026-01-02T03:04:05.500Z", "2026-01-02T03:04:05.250Z"), Some(Ordering::Greater));
        assert!(same_utc_shape("2026-01-02T03:04:05.500Z", "2026-01-02T03:04:05.250Z"));
        // Different precision or offsets: parsed, so still chronological.
        assert!(!same_utc_shape("2026-01-02T03:04:05Z", "2026-01-02T03:04:05.1Z"));
        assert_eq!(c("2026-01-02T03:04:05.1Z", "2026-01-02T03:04:05Z"), Some(Ordering::Greater));
        assert_eq!(c("2026-01-02T04:04:05+01:00", "2026-01-02T03:04:05Z"), Some(Ordering::Equal));
        assert!(!same_utc_shape("2026-01-02T03:04:0xZ", "2026-01-02T03:04:05Z"));
    }

    #[test]
    fn paths_get_set_take() {
        let mut v = json!({"a": {"b": [1, {"c": 2}]}, "x": 1});
        assert_eq!(FieldPath::new("a.b[1].c").get(&v), Some(&json!(2)));
        assert_eq!(FieldPath::new("x").get(&v), Some(&json!(1)));
        assert!(FieldPath::new("a.z.q").set(&mut v, json!(3)));
        assert_eq!(v["a"]["z"]["q"], json!(3));
        assert_eq!(FieldPath::new("a.b[0]").take(&mut v), Some(json!(1)));
        assert_eq!(FieldPath::new("nope.x").get(&v), None);
    }

    #[test]
    fn keys_are_canonical_and_hash_ignores_key_order() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":"x"}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":"x","b":1}"#).unwrap();
        assert_eq!(ContentHash::of(&a), ContentHash::of(&b));
        assert_ne!(ContentHash::of(&a), ContentHash::of(&json!({"a": "x", "b": 2})));
        // No two different values share an encoding.
        assert_ne!(ContentHash::of(&json!(["ab", "c"])), ContentHash::of(&json!(["a", "bc"])));
        assert_ne!(ContentHash::of(&json!({"a": "1"})), ContentHash::of(&json!({"a": 1})));
        assert_ne!(ContentHash::of(&json!([[], []])), ContentHash::of(&json!([[[]]])));
        assert_ne!(ContentHash::of(&json!(null)), ContentHash::of(&json!("n")));
        let k = Key::from_parts(&[&json!(1), &json!("a")]);
        assert_eq!(k.as_str(), r#"[1,"a"]"#);
        assert_eq!(k.parts(2), vec![json!(1), json!("a")]);
        assert_eq!(Key::from_parts(&[&json!("z")]).parts(1), vec![json!("z")]);
    }

    #[test]
    fn cursors_compare_exactly_and_by_instant() {
        let big1: Value = serde_json::from_str("12345678901234567890").unwrap();
        let big2: Value = serde_json::from_str("12345678901234567891").unwrap();
        assert_eq!(compare_cursors(&big1, &big2), Some(Ordering::Less));
        let t1 = json!("2024-01-01T10:00:00+02:00");
        let t2 = json!("2024-01-01T09:00:00Z");
        assert_eq!(compare_cursors(&t1, &t2), Some(Ordering::Less));
        assert_eq!(compare_cursors(&json!(1), &json!("a")), None);
    }
}
