//! Duplicate keys: `serde_json` keeps the last of two equal keys of one object silently, so
//! a line `{"n": 1, "n": 2}` would lose a value without a word. A line whose object names
//! a key twice is refused instead (a dead letter naming the key, line and column).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Why `text` (already parsed into `parsed`) cannot be taken as it is: an object in it names
/// a key twice. `None` when every key is unique.
pub(crate) fn duplicate_key(text: &str, parsed: &Value) -> Option<String> {
    // Each key in the text is a `"` followed by `:`; when the parsed value holds as many
    // keys as the text has such pairs, none was dropped (the common case: no second pass).
    if colons_after_quotes(text.as_bytes()) <= count_keys(parsed) {
        return None;
    }
    let mut de = serde_json::Deserializer::from_str(text);
    Unique.deserialize(&mut de).err().map(|e| e.to_string())
}

/// `"` (then optional whitespace) `:` pairs: at least the number of keys.
fn colons_after_quotes(b: &[u8]) -> usize {
    let mut n = 0;
    for (i, _) in b.iter().enumerate().filter(|(_, c)| **c == b':') {
        if b[..i].iter().rev().find(|c| !c.is_ascii_whitespace()) == Some(&b'"') {
            n += 1;
        }
    }
    n
}

fn count_keys(v: &Value) -> usize {
    match v {
        Value::Object(m) => m.len() + m.values().map(count_keys).sum::<usize>(),
        Value::Array(a) => a.iter().map(count_keys).sum(),
        _ => 0,
    }
}

/// Walks a JSON value, failing on the first object that names a key twice.
struct Unique;

impl<'de> DeserializeSeed<'de> for Unique {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unique {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Unique)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: Vec<Cow<'de, str>> = Vec::new();
        while let Some(key) = map.next_key_seed(Key)? {
            if seen.contains(&key) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            // A number kept exactly (`arbitrary_precision`) arrives as a one-entry map.
            if key.starts_with("$serde_json::") {
                map.next_value::<IgnoredAny>()?;
            } else {
                map.next_value_seed(Unique)?;
            }
            seen.push(key);
        }
        Ok(())
    }
}

/// A key, borrowed from the text when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(s))
    }
    fn visit_str<E>(self, s: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Option<String> {
        duplicate_key(text, &serde_json::from_str(text).unwrap())
    }

    #[test]
    fn a_key_named_twice_is_found_where_it_is() {
        assert_eq!(check(r#"{"id": 1, "n": 1, "n": 2}"#).as_deref(), Some("duplicate key `n` at line 1 column 21"));
        assert!(check(r#"{"a": {"b": 1, "b": 1e400}}"#).is_some_and(|e| e.contains("`b`")));
        assert!(check(r#"[{"a": 1}, {"a": 2, "\u0061": 3}]"#).is_some_and(|e| e.contains("`a`")));
        // Equal keys in different objects, and `":` inside strings, are fine.
        assert_eq!(check(r#"{"a": {"a": 1e400}, "b": [{"a": "x\":"}, {"a": 2}], "c": "\" : "}"#), None);
        assert_eq!(check(r#"{"id": 1, "n": 1.5}"#), None);
    }
}
