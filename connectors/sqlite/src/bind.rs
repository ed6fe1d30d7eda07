//! Binding JSON values to SQLite parameters without losing a digit.
//!
//! SQLite's INTEGER, REAL and NUMERIC column affinities turn numeric text into numbers
//! lossily (a 20-digit integer becomes a REAL, only 15 significant digits survive a
//! TEXT→REAL conversion). The sink therefore declares numeric columns with no type (BLOB
//! affinity keeps every value exactly as bound) and binds:
//!
//! | JSON value                         | bound as                             |
//! |------------------------------------|--------------------------------------|
//! | integer that fits i64              | INTEGER                              |
//! | other number whose text is exactly what formatting its f64 gives back (`1.5`, `1e300`) | REAL |
//! | any other number (`12345678901234567890`, `0.1000000000000000000001`, `1.50`) | TEXT, the exact digits |
//! | string                             | TEXT                                 |
//! | boolean                            | INTEGER 0 / 1                        |
//! | object, array                      | TEXT holding compact JSON            |
//! | null, or field missing             | NULL                                 |
//!
//! Into a TEXT-affinity column every number is bound as its exact text, since SQLite would
//! otherwise render a REAL with its own (shorter) formatting.

use std::fmt::Write as _;

use rusqlite::ToSql;
use rusqlite::types::{ToSqlOutput, ValueRef};
use serde_json::{Number, Value};

use crate::column::Affinity;

/// One parameter value, borrowing from the record where it can.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bound<'a> {
    /// SQL NULL.
    Null,
    /// A 64-bit integer.
    Integer(i64),
    /// A float whose formatting gives back the source text exactly.
    Real(f64),
    /// Text borrowed from the record (strings and exact number digits).
    Text(&'a str),
    /// Compact JSON of an object or array.
    Json(String),
}

impl ToSql for Bound<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Bound::Null => ValueRef::Null,
            Bound::Integer(i) => ValueRef::Integer(*i),
            Bound::Real(f) => ValueRef::Real(*f),
            Bound::Text(s) => ValueRef::Text(s.as_bytes()),
            Bound::Json(s) => ValueRef::Text(s.as_bytes()),
        }))
    }
}

/// The parameter for a field's value (`None`: the record lacks the field) in a column of
/// the given affinity. Fails only if an object or array cannot be serialized.
pub(crate) fn bind(value: Option<&Value>, affinity: Affinity) -> Result<Bound<'_>, String> {
    Ok(match value {
        None | Some(Value::Null) => Bound::Null,
        Some(Value::Bool(b)) => Bound::Integer(i64::from(*b)),
        Some(Value::Number(n)) => number(n, affinity),
        Some(Value::String(s)) => Bound::Text(s),
        Some(v @ (Value::Array(_) | Value::Object(_))) => {
            Bound::Json(serde_json::to_string(v).map_err(|e| format!("cannot serialize nested value as JSON: {e}"))?)
        }
    })
}

/// The parameter for a JSON number: INTEGER when it fits i64, REAL when that is exact,
/// else its exact decimal text.
pub(crate) fn number(n: &Number, affinity: Affinity) -> Bound<'_> {
    let text = n.as_str();
    if affinity == Affinity::Text {
        return Bound::Text(text);
    }
    if let Some(i) = n.as_i64() {
        return Bound::Integer(i);
    }
    // An integer beyond i64 has no exact REAL; and SQLite renders REALs with 15 significant
    // digits, so a REAL with more would not read back as it was written.
    if !text.contains(['.', 'e', 'E']) || significant_digits(text) > 15 {
        return Bound::Text(text);
    }
    match exact_f64(text) {
        Some(f) => Bound::Real(f),
        None => Bound::Text(text),
    }
}

/// Significant digits of a decimal literal's mantissa, outer zeros not counted (`0.00120` → 2, `1.5e7` → 2).
fn significant_digits(text: &str) -> usize {
    // Counted in place: collecting the digits into a String cost ~1.5 % of a REST sync.
    let mantissa = text.split(['e', 'E']).next().unwrap_or(text).as_bytes();
    let digits = || mantissa.iter().filter(|b| b.is_ascii_digit());
    let total = digits().count();
    let leading = digits().take_while(|b| **b == b'0').count();
    if leading == total {
        return 1;
    }
    let trailing = digits().rev().take_while(|b| **b == b'0').count();
    total - leading - trailing
}

/// The f64 of `text` if formatting that f64 (plainly or in exponent form) gives back
/// exactly `text`, so storing the float loses nothing, not even the spelling. (serde_json
/// spells parsed exponents `e+300`; a `+` in the exponent is taken as the same spelling.)
pub(crate) fn exact_f64(text: &str) -> Option<f64> {
    let f: f64 = text.parse().ok()?;
    if !f.is_finite() {
        return None;
    }
    if plain_canonical(text) && significant_digits(text) <= 15 && f.abs() >= f64::MIN_POSITIVE {
        // Distinct decimals of at most 15 significant digits are distinct normal f64s, so
        // the shortest round-trip formatting gives these digits back, and `{}` writes them
        // positionally in exactly this canonical spelling: no need to format and compare.
        return Some(f);
    }
    let mut buf = StackText::default();
    if write!(buf, "{f}").is_ok() && buf.as_str() == text {
        return Some(f);
    }
    buf.len = 0;
    if write!(buf, "{f:e}").is_ok() && same_exponent_form(buf.as_str(), text) {
        return Some(f);
    }
    None
}

/// Whether `text` is spelled as Rust's `{}` writes a float with a fraction: an optional
/// `-`, no leading zero but a lone `0`, a `.`, and a fraction not ending in `0`.
fn plain_canonical(text: &str) -> bool {
    let body = text.strip_prefix('-').unwrap_or(text);
    let Some((int, frac)) = body.split_once('.') else {
        return false;
    };
    let int_ok = int == "0" || (!int.is_empty() && !int.starts_with('0'));
    int_ok
        && int.bytes().all(|b| b.is_ascii_digit())
        && !frac.is_empty()
        && !frac.ends_with('0')
        && frac.bytes().all(|b| b.is_ascii_digit())
}

/// Whether Rust's `{:e}` output (`2.5e-7`, `1e300`) spells the same number as `text`
/// (`2.5e-7`, `1e+300`, `1E300`): same mantissa, same exponent up to a `+` sign.
fn same_exponent_form(formatted: &str, text: &str) -> bool {
    let (Some((m1, e1)), Some((m2, e2))) = (formatted.split_once('e'), text.split_once(['e', 'E'])) else {
        return false;
    };
    m1 == m2 && e1 == e2.strip_prefix('+').unwrap_or(e2)
}

/// A small fixed buffer for formatting floats without allocating; overflowing it fails.
struct StackText {
    bytes: [u8; 64],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        StackText { bytes: [0; 64], len: 0 }
    }
}

impl StackText {
    fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in, so the prefix is valid UTF-8.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.bytes.len() {
            return Err(std::fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(s: &str) -> Number {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn significant_digits_ignore_sign_point_exponent_and_outer_zeros() {
        for (text, n) in [
            ("0.00120", 2),
            ("1.5e7", 2),
            ("-12.340E-5", 4),
            ("100", 1),
            ("0", 1),
            ("0.000", 1),
            ("1234567890.12345678", 18),
            ("10.01", 4),
        ] {
            assert_eq!(significant_digits(text), n, "{text}");
        }
    }

    #[test]
    fn numbers_bind_exactly() {
        let b = Affinity::Blob;
        assert_eq!(number(&num("42"), b), Bound::Integer(42));
        assert_eq!(number(&num("-9223372036854775808"), b), Bound::Integer(i64::MIN));
        assert_eq!(number(&num("12345678901234567890"), b), Bound::Text("12345678901234567890"));
        assert_eq!(number(&num("1.5"), b), Bound::Real(1.5));
        assert_eq!(number(&num("0.1"), b), Bound::Real(0.1));
        assert_eq!(number(&num("1e300"), b), Bound::Real(1e300));
        assert_eq!(number(&num("2.5E-7"), b), Bound::Real(2.5e-7));
        assert_eq!(
            number(&num("0.123456789012345678901234567891"), b),
            Bound::Text("0.123456789012345678901234567891")
        );
        assert_eq!(number(&num("1.50"), b), Bound::Text("1.50"));
        assert_eq!(number(&num("1.0"), b), Bound::Text("1.0"));
        assert_eq!(number(&num("1e400"), b), Bound::Text("1e+400"));
        assert_eq!(number(&num("7"), Affinity::Text), Bound::Text("7"));
        // 17 significant digits: SQLite would print it back as 0.3.
        assert_eq!(number(&num("0.30000000000000004"), b), Bound::Text("0.30000000000000004"));
        // Shortest-round-trip formatting pads with zeros: equal text, different value.
        assert_eq!(number(&num("12345678901234570000"), b), Bound::Text("12345678901234570000"));
        assert_eq!(number(&num("123456789012345.6"), b), Bound::Text("123456789012345.6"));
        assert_eq!(number(&num("12345678901234.5"), b), Bound::Real(12345678901234.5));
    }

    #[test]
    fn the_canonical_fast_path_agrees_with_formatting() {
        // Every decimal the fast path accepts must be one that formatting gives back.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut accepted = 0;
        for _ in 0..200_000 {
            let digits = 1 + (next() % 17) as usize;
            let mantissa: String = (0..digits).map(|_| char::from(b'0' + (next() % 10) as u8)).collect();
            let point = (next() % (digits as u64 + 3)) as usize;
            let text = if point >= digits {
                format!("0.{}{mantissa}", "0".repeat(point - digits))
            } else {
                format!("{}.{}", &mantissa[..digits - point], &mantissa[digits - point..])
            };
            let text = if next() % 2 == 0 { format!("-{text}") } else { text };
            if !plain_canonical(&text) || significant_digits(&text) > 15 {
                continue;
            }
            let f: f64 = text.parse().unwrap();
            if f.abs() < f64::MIN_POSITIVE {
                continue;
            }
            accepted += 1;
            assert_eq!(format!("{f}"), text, "fast path would store {text} inexactly");
        }
        assert!(accepted > 10_000, "the generator reached the fast path only {accepted} times");
        assert!(!plain_canonical("1.50") && !plain_canonical("01.5") && !plain_canonical("1e5"));
        assert!(!plain_canonical(".5") && !plain_canonical("5.") && !plain_canonical("-0.0"));
    }

    #[test]
    fn other_values_bind_by_kind() {
        let v = serde_json::json!({"b": true, "s": "x", "o": {"k": [1, null]}, "n": null});
        assert_eq!(bind(v.get("b"), Affinity::Blob).unwrap(), Bound::Integer(1));
        assert_eq!(bind(v.get("s"), Affinity::Text).unwrap(), Bound::Text("x"));
        assert_eq!(bind(v.get("o"), Affinity::Text).unwrap(), Bound::Json(r#"{"k":[1,null]}"#.into()));
        assert_eq!(bind(v.get("n"), Affinity::Blob).unwrap(), Bound::Null);
        assert_eq!(bind(v.get("missing"), Affinity::Blob).unwrap(), Bound::Null);
    }
}
