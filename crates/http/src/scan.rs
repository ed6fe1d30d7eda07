//! Reading a few values out of a JSON body without decoding the rest.
//!
//! A paginator needs only the next cursor (or URL, or total) and the number of items to
//! know where the listing goes on; decoding every record first would put that work between
//! one page's arrival and the next page's request. [`scan`] validates the whole body (an
//! undecodable page is still caught, and retried, at once) while materializing only the
//! values at the wanted JSON pointers and counting the items array.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// What [`scan`] found.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Found {
    /// The value at each wanted pointer, in order (`None`: absent).
    pub(crate) values: Vec<Option<Value>>,
    /// Length of the items array (`None`: absent, or not an array).
    pub(crate) items: Option<usize>,
}

#[derive(Clone, Copy)]
enum Target {
    Value(usize),
    Items,
}

/// Validate `body` as JSON and return the values at `pointers` and the length of the array
/// at `items` (RFC 6901 pointers; `""` is the whole body).
pub(crate) fn scan(body: &[u8], pointers: &[&str], items: &str) -> Result<Found, serde_json::Error> {
    let tokens: Vec<Vec<String>> = pointers.iter().map(|p| tokens_of(p)).collect();
    let item_tokens = tokens_of(items);
    let mut alive: Vec<(Target, &[String])> =
        tokens.iter().enumerate().map(|(i, t)| (Target::Value(i), t.as_slice())).collect();
    alive.push((Target::Items, item_tokens.as_slice()));
    let mut found = Found { values: vec![None; pointers.len()], items: None };
    let mut de = serde_json::Deserializer::from_slice(body);
    Seed { alive, found: &mut found }.deserialize(&mut de)?;
    de.end()?;
    Ok(found)
}

/// The reference tokens of a JSON pointer (`/a~1b/0` → `["a/b", "0"]`).
fn tokens_of(pointer: &str) -> Vec<String> {
    if pointer.is_empty() {
        return Vec::new();
    }
    pointer.split('/').skip(1).map(|t| t.replace("~1", "/").replace("~0", "~")).collect()
}

/// One node of the body, with the targets whose path runs through it.
struct Seed<'a, 't> {
    alive: Vec<(Target, &'t [String])>,
    found: &'a mut Found,
}

impl<'de> DeserializeSeed<'de> for Seed<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if let [(target, [])] = self.alive.as_slice() {
            match *target {
                Target::Value(i) => self.found.values[i] = Some(serde::Deserialize::deserialize(d)?),
                Target::Items => self.found.items = d.deserialize_any(Count)?,
            }
            return Ok(());
        }
        if self.alive.iter().any(|(_, rest)| rest.is_empty()) {
            // A target here and others inside it (say, a cursor inside the items): decode
            // this value once and look the others up in it.
            let v: Value = serde::Deserialize::deserialize(d)?;
            for (target, rest) in self.alive {
                let at = rest.iter().try_fold(&v, |v, t| match v {
                    Value::Object(m) => m.get(t),
                    Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get(i)),
                    _ => None,
                });
                match target {
                    Target::Value(i) => self.found.values[i] = at.cloned(),
                    Target::Items => self.found.items = at.and_then(Value::as_array).map(Vec::len),
                }
            }
            return Ok(());
        }
        if self.alive.is_empty() {
            <IgnoredAny as serde::Deserialize>::deserialize(d)?;
            return Ok(());
        }
        d.deserialize_any(Node { alive: self.alive, found: self.found })
    }
}

/// Walks an object or array, descending only into members some target runs through.
struct Node<'a, 't> {
    alive: Vec<(Target, &'t [String])>,
    found: &'a mut Found,
}

/// The targets that continue below the member named `token`.
fn below<'t>(alive: &[(Target, &'t [String])], token: &str) -> Vec<(Target, &'t [String])> {
    alive.iter().filter(|(_, rest)| rest[0] == token).map(|&(t, rest)| (t, &rest[1..])).collect()
}

impl<'de> Visitor<'de> for Node<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            let alive = below(&self.alive, &key);
            map.next_value_seed(Seed { alive, found: &mut *self.found })?;
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        loop {
            let alive = below(&self.alive, &i.to_string());
            if seq.next_element_seed(Seed { alive, found: &mut *self.found })?.is_none() {
                return Ok(());
            }
            i += 1;
        }
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
    // serde_json's `arbitrary_precision` hands numbers over as a one-entry map, which
    // `visit_map` above walks like any object.
}

/// The length of an array; `None` for any other value.
struct Count;

impl<'de> Visitor<'de> for Count {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<usize>, A::Error> {
        let mut n = 0;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            n += 1;
        }
        Ok(Some(n))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<usize>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Option<usize>, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Option<usize>, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Option<usize>, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Option<usize>, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Option<usize>, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Option<usize>, E> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn finds_what_value_pointer_finds() {
        let body = br#"{"data":[{"id":1},{"id":2,"n":12345678901234567890}],"meta":{"next":"c2","a/b":{"~t":[5,6]}},"total":17}"#;
        let v: Value = serde_json::from_slice(body).unwrap();
        let ptrs = ["/meta/next", "/total", "/meta/a~1b/~0t/1", "/missing", "/data/1/n"];
        let found = scan(body, &ptrs, "/data").unwrap();
        for (p, got) in ptrs.iter().zip(&found.values) {
            assert_eq!(got.as_ref(), v.pointer(p), "pointer {p}");
        }
        assert_eq!(found.values[4].as_ref().map(ToString::to_string).as_deref(), Some("12345678901234567890"));
        assert_eq!(found.items, Some(2));
    }

    #[test]
    fn counts_a_root_array_and_rejects_what_is_not_json() {
        assert_eq!(scan(br#"[1, {"a": [2]}, "x"]"#, &[], "").unwrap().items, Some(3));
        assert_eq!(scan(br#"{"data": {"a": 1}}"#, &[], "/data").unwrap().items, None);
        assert_eq!(
            scan(br#"{"data": []}"#, &["/next"], "/data").unwrap(),
            Found { values: vec![None], items: Some(0) }
        );
        assert!(scan(br#"{"data": [1, 2"#, &[], "/data").is_err());
        assert!(scan(br#"{"data": [1]} trailing"#, &[], "/data").is_err());
        let v = scan(br#"{"next": null, "data": [true]}"#, &["/next"], "/data").unwrap();
        assert_eq!((v.values[0].clone(), v.items), (Some(json!(null)), Some(1)));
    }
}
