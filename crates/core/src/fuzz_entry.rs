//! The bodies of the fuzz targets over core's parsers (`fuzz/fuzz_targets/`, `cargo xtask
//! fuzz`), public so the fuzz crate and the stable replay of every committed corpus and
//! crash file (tests/tests/fuzz_replay.rs) call the same code. Each returns without
//! panicking whatever the bytes, and asserts the properties that must hold.

use std::cmp::Ordering;

use serde_json::Value;

use crate::mapping::Mapping;
use crate::record::{ContentHash, FieldPath, canonical_json, compare_cursors};

/// The first line of `data` and the JSON document after it.
fn split(data: &[u8]) -> Option<(&str, Value)> {
    let text = std::str::from_utf8(data).ok()?;
    let (head, rest) = text.split_once('\n')?;
    Some((head, serde_json::from_str(rest).ok()?))
}

/// `PATH\nJSON`: a field path read from and written into a document; what `set` wrote,
/// `get` reads back.
pub fn field_path(data: &[u8]) {
    let Some((path, mut doc)) = split(data) else { return };
    let path = FieldPath::new(path);
    let _ = path.get(&doc);
    if path.set(&mut doc, Value::from("fuzz")) {
        assert_eq!(path.get(&doc), Some(&Value::from("fuzz")), "set then get at `{}`", path.as_str());
    }
}

/// `MAPPING_JSON\nRECORD_JSON`: a declarative mapping applied to a record, twice: the same
/// input maps to the same output.
pub fn mapping(data: &[u8]) {
    let Some((spec, record)) = split(data) else { return };
    let Ok(mapping) = serde_json::from_str::<Mapping>(spec) else { return };
    let once = mapping.map(record.clone()).ok();
    assert_eq!(once, mapping.map(record).ok(), "a mapping gave two answers for one record");
}

/// `A\nB` (two JSON values): cursor comparison is antisymmetric and reflexive, numbers are
/// compared exactly, and a value's content hash survives its canonical text.
pub fn cursors(data: &[u8]) {
    let Some((a, b)) = split(data) else { return };
    let Ok(a) = serde_json::from_str::<Value>(a) else { return };
    assert_eq!(compare_cursors(&a, &a).unwrap_or(Ordering::Equal), Ordering::Equal, "{a} vs itself");
    if let (Some(ab), Some(ba)) = (compare_cursors(&a, &b), compare_cursors(&b, &a)) {
        assert_eq!(ab, ba.reverse(), "{a} vs {b}");
    }
    for v in [&a, &b] {
        let again: Value = serde_json::from_str(&canonical_json(v)).unwrap_or(Value::Null);
        assert_eq!(ContentHash::of(v), ContentHash::of(&again), "the hash of {v} changed through its text");
    }
}
