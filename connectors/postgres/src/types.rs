//! Column types and values: which PostgreSQL type a field gets, whether a JSON value fits a
//! column, and each value's binary COPY encoding ([`Cell`]).
//!
//! | JSON Schema of the field | column |
//! |---|---|
//! | `integer` | `bigint` |
//! | `number` (or `integer` and `number`) | `numeric` (exact) |
//! | `number` with `format` `float` or `double` | `double precision` |
//! | `boolean` | `boolean` |
//! | `string` with `format: date-time` | `timestamptz` |
//! | `string` with `format: date` / `uuid` | `date` / `uuid` |
//! | `string` | `text` |
//! | `object`, `array`, several types, or unknown | `jsonb` |
//!
//! Without a schema, fields seen only as numbers get `numeric`, only as strings `text`,
//! only as booleans `boolean`, anything else `jsonb`.

use std::borrow::Cow;
use std::error::Error as StdError;

use bytes::{BufMut, BytesMut};
use serde_json::Value;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::config::NulPolicy;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A column type the sink can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PgType {
    BigInt,
    Int,
    SmallInt,
    /// `numeric`, with `(precision, scale)` when the column has them.
    Numeric(Option<(i32, i32)>),
    Double,
    Real,
    Bool,
    /// `text`, or `varchar(n)` with its limit in characters.
    Text(Option<usize>),
    Jsonb,
    Json,
    Timestamptz,
    Date,
    Uuid,
    /// A type of an existing table the sink cannot write (`inet`, `bytea`...): left alone,
    /// and a record carrying a value for it is `column_type` drift.
    Other,
}

impl PgType {
    /// The type of a new column for a field whose schema allows `types` (`format` given).
    pub(crate) fn of_schema(types: &[String], format: Option<&str>) -> PgType {
        let mut t: Vec<&str> = types.iter().map(String::as_str).filter(|t| *t != "null").collect();
        t.sort_unstable();
        t.dedup();
        match (t.as_slice(), format) {
            (["integer"], _) => PgType::BigInt,
            (["integer", "number"] | ["number"], Some("float" | "double")) => PgType::Double,
            (["integer", "number"] | ["number"], _) => PgType::Numeric(None),
            (["boolean"], _) => PgType::Bool,
            (["string"], Some("date-time")) => PgType::Timestamptz,
            (["string"], Some("date")) => PgType::Date,
            (["string"], Some("uuid")) => PgType::Uuid,
            (["string"], _) => PgType::Text(None),
            _ => PgType::Jsonb,
        }
    }

    /// The type of a new column for a field seen holding these values (no schema).
    pub(crate) fn of_values<'a>(values: impl IntoIterator<Item = &'a Value>) -> PgType {
        let mut seen: Option<PgType> = None;
        for v in values {
            let t = match v {
                Value::Null => continue,
                Value::Number(_) => PgType::Numeric(None),
                Value::String(_) => PgType::Text(None),
                Value::Bool(_) => PgType::Bool,
                Value::Array(_) | Value::Object(_) => PgType::Jsonb,
            };
            match seen {
                None => seen = Some(t),
                Some(s) if s == t => {}
                Some(_) => return PgType::Jsonb,
            }
        }
        seen.unwrap_or(PgType::Jsonb)
    }

    /// A type as `format_type` prints it.
    pub(crate) fn of_format(s: &str) -> PgType {
        let (base, args) = match s.split_once('(') {
            Some((b, a)) => (b, a.trim_end_matches(')')),
            None => (s, ""),
        };
        let nums: Vec<i64> = args.split(',').filter_map(|a| a.trim().parse().ok()).collect();
        match base {
            "bigint" => PgType::BigInt,
            "integer" => PgType::Int,
            "smallint" => PgType::SmallInt,
            "numeric" => match nums.as_slice() {
                [p] => PgType::Numeric(Some((*p as i32, 0))),
                [p, s] => PgType::Numeric(Some((*p as i32, *s as i32))),
                _ => PgType::Numeric(None),
            },
            "double precision" => PgType::Double,
            "real" => PgType::Real,
            "boolean" => PgType::Bool,
            "text" => PgType::Text(None),
            "character varying" => PgType::Text(nums.first().map(|n| *n as usize)),
            "jsonb" => PgType::Jsonb,
            "json" => PgType::Json,
            "timestamp with time zone" => PgType::Timestamptz,
            "date" => PgType::Date,
            "uuid" => PgType::Uuid,
            _ => PgType::Other,
        }
    }

    /// The type in `CREATE TABLE` / `ADD COLUMN`.
    pub(crate) fn ddl(self) -> &'static str {
        match self {
            PgType::BigInt => "bigint",
            PgType::Int => "integer",
            PgType::SmallInt => "smallint",
            PgType::Numeric(_) => "numeric",
            PgType::Double => "double precision",
            PgType::Real => "real",
            PgType::Bool => "boolean",
            PgType::Text(_) => "text",
            PgType::Jsonb | PgType::Other => "jsonb",
            PgType::Json => "json",
            PgType::Timestamptz => "timestamptz",
            PgType::Date => "date",
            PgType::Uuid => "uuid",
        }
    }

    /// The staging column's type (SQL and wire): the merge assigns it to the real column.
    pub(crate) fn stage(self) -> (&'static str, Type) {
        match self {
            PgType::BigInt | PgType::Int | PgType::SmallInt => ("bigint", Type::INT8),
            PgType::Numeric(_) => ("numeric", Type::NUMERIC),
            PgType::Double | PgType::Real => ("double precision", Type::FLOAT8),
            PgType::Bool => ("boolean", Type::BOOL),
            PgType::Text(_) => ("text", Type::TEXT),
            PgType::Jsonb | PgType::Json | PgType::Other => ("jsonb", Type::JSONB),
            PgType::Timestamptz => ("timestamptz", Type::TIMESTAMPTZ),
            PgType::Date => ("date", Type::DATE),
            PgType::Uuid => ("uuid", Type::UUID),
        }
    }

    /// What the column takes, in JSON terms (for drift events).
    pub(crate) fn expects(self) -> &'static str {
        match self {
            PgType::BigInt => "integer (bigint)",
            PgType::Int => "integer (integer)",
            PgType::SmallInt => "integer (smallint)",
            PgType::Numeric(_) => "number (numeric)",
            PgType::Double | PgType::Real => "number (floating point)",
            PgType::Bool => "boolean",
            PgType::Text(_) => "string",
            PgType::Jsonb | PgType::Json => "any JSON",
            PgType::Timestamptz => "string (date-time)",
            PgType::Date => "string (date)",
            PgType::Uuid => "string (uuid)",
            PgType::Other => "nothing (a column type the sink cannot write)",
        }
    }
}

/// One value on its way into the staging table, in PostgreSQL's binary format.
#[derive(Debug)]
pub(crate) enum Cell<'a> {
    Null,
    I64(i64),
    F64(f64),
    Bool(bool),
    Text(Cow<'a, str>),
    /// Compact JSON text.
    Json(String),
    /// The numeric's binary encoding.
    Numeric(Vec<u8>),
    /// Microseconds since 2000-01-01 UTC.
    Timestamp(i64),
    /// Days since 2000-01-01.
    Date(i32),
    Uuid([u8; 16]),
}

impl ToSql for Cell<'_> {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Cell::Null => return Ok(IsNull::Yes),
            Cell::I64(v) | Cell::Timestamp(v) => out.put_i64(*v),
            Cell::F64(v) => out.put_f64(*v),
            Cell::Bool(v) => out.put_u8(u8::from(*v)),
            Cell::Text(s) => out.put_slice(s.as_bytes()),
            Cell::Json(s) => {
                out.put_u8(1); // jsonb format version
                out.put_slice(s.as_bytes());
            }
            Cell::Numeric(b) => out.put_slice(b),
            Cell::Date(d) => out.put_i32(*d),
            Cell::Uuid(b) => out.put_slice(b),
        }
        Ok(IsNull::No)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Why a value cannot go into its column as it is.
#[derive(Debug, PartialEq)]
pub(crate) enum Misfit {
    /// Its JSON type (or range, or format) is not what the column takes: `column_type`
    /// drift; what was observed.
    Type(String),
    /// It holds a NUL character at this JSON path below the field (`""` for the field itself).
    Nul(String),
}

/// A value converted, and whether NUL characters were stripped from it.
pub(crate) struct Converted<'a> {
    pub(crate) cell: Cell<'a>,
    pub(crate) stripped: bool,
}

/// `v` as a value of a column of type `ty`.
pub(crate) fn convert<'a>(v: &'a Value, ty: PgType, nul: NulPolicy) -> Result<Converted<'a>, Misfit> {
    let plain = |cell| Ok(Converted { cell, stripped: false });
    let misfit = || Misfit::Type(dovetail_core::json_type_name(v).to_owned());
    match (ty, v) {
        (_, Value::Null) => plain(Cell::Null),
        (PgType::BigInt | PgType::Int | PgType::SmallInt, Value::Number(n)) => {
            let i = n.as_i64().ok_or_else(|| Misfit::Type(format!("{} {n}", dovetail_core::json_type_name(v))))?;
            let ok = match ty {
                PgType::Int => i32::try_from(i).is_ok(),
                PgType::SmallInt => i16::try_from(i).is_ok(),
                _ => true,
            };
            if !ok {
                return Err(Misfit::Type(format!("integer {n} (out of range)")));
            }
            plain(Cell::I64(i))
        }
        (PgType::Numeric(limits), Value::Number(n)) => {
            let text = n.to_string();
            let (bytes, int_digits) = numeric(&text).ok_or_else(|| Misfit::Type(format!("number {text}")))?;
            if let Some((p, s)) = limits
                && int_digits > i64::from(p - s)
            {
                return Err(Misfit::Type(format!("number {text} (more than {} integer digits)", p - s)));
            }
            plain(Cell::Numeric(bytes))
        }
        (PgType::Double | PgType::Real, Value::Number(n)) => {
            let f = n.as_f64().filter(|f| f.is_finite()).ok_or_else(misfit)?;
            if ty == PgType::Real && !(f as f32).is_finite() {
                return Err(Misfit::Type(format!("number {n} (out of range)")));
            }
            plain(Cell::F64(f))
        }
        (PgType::Bool, Value::Bool(b)) => plain(Cell::Bool(*b)),
        (PgType::Text(limit), Value::String(s)) => {
            if let Some(max) = limit
                && s.chars().count() > max
            {
                return Err(Misfit::Type(format!("string longer than {max} characters")));
            }
            match (s.contains('\0'), nul) {
                (false, _) => plain(Cell::Text(Cow::Borrowed(s))),
                (true, NulPolicy::DeadLetter) => Err(Misfit::Nul(String::new())),
                (true, NulPolicy::Strip) => {
                    Ok(Converted { cell: Cell::Text(Cow::Owned(s.replace('\0', ""))), stripped: true })
                }
            }
        }
        (PgType::Timestamptz, Value::String(s)) => {
            let ts: jiff::Timestamp =
                s.parse().map_err(|_| Misfit::Type("string (not an RFC 3339 date-time)".to_owned()))?;
            plain(Cell::Timestamp(ts.as_microsecond() - PG_EPOCH_MICROS))
        }
        (PgType::Date, Value::String(s)) => {
            let d: jiff::civil::Date = s.parse().map_err(|_| Misfit::Type("string (not a date)".to_owned()))?;
            let epoch = jiff::civil::date(2000, 1, 1);
            let days = (d - epoch).get_days();
            plain(Cell::Date(days))
        }
        (PgType::Uuid, Value::String(s)) => uuid(s).map(|b| Converted { cell: Cell::Uuid(b), stripped: false }),
        (PgType::Jsonb | PgType::Json, _) => match nul_path(v) {
            None => plain(Cell::Json(v.to_string())),
            Some(path) if nul == NulPolicy::DeadLetter => Err(Misfit::Nul(path)),
            Some(_) => Ok(Converted { cell: Cell::Json(strip(v).to_string()), stripped: true }),
        },
        _ => Err(misfit()),
    }
}

/// A UUID's 16 bytes from its text (hyphens optional, either case).
fn uuid(s: &str) -> Result<[u8; 16], Misfit> {
    let bad = || Misfit::Type("string (not a UUID)".to_owned());
    let hex: Vec<u8> = s.bytes().filter(|b| *b != b'-').collect();
    if hex.len() != 32 || s.len() > 36 {
        return Err(bad());
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16).ok_or_else(bad);
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Ok(out)
}

/// The JSON pointer (below the value) of the first string or key holding a NUL.
fn nul_path(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => s.contains('\0').then(String::new),
        Value::Array(a) => a.iter().enumerate().find_map(|(i, x)| nul_path(x).map(|p| format!("/{i}{p}"))),
        Value::Object(o) => o.iter().find_map(|(k, x)| {
            let seg = k.replace('~', "~0").replace('/', "~1");
            if k.contains('\0') { Some(format!("/{seg}")) } else { nul_path(x).map(|p| format!("/{seg}{p}")) }
        }),
        _ => None,
    }
}

/// `v` with every NUL removed from its strings and keys.
fn strip(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace('\0', "")),
        Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.replace('\0', ""), strip(x))).collect()),
        other => other.clone(),
    }
}

/// A decimal number's binary `numeric` encoding and its count of integer digits; `None`
/// when it is not plain decimal text or is beyond `numeric`'s range.
pub(crate) fn numeric(text: &str) -> Option<(Vec<u8>, i64)> {
    let (negative, s) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i64>().ok()?),
        None => (s, 0),
    };
    if exp.abs() > 1_000_000 {
        return None;
    }
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() || !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let dscale = (frac.len() as i64 - exp).max(0);
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|c| c - b'0').collect();
    let mut point = int.len() as i64 + exp;
    let lead = digits.iter().take_while(|d| **d == 0).count();
    digits.drain(..lead);
    point -= lead as i64;
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if dscale > 16_383 || point > 131_072 {
        return None;
    }
    let mut out = Vec::with_capacity(8 + digits.len() / 2 + 2);
    if digits.is_empty() {
        for part in [0i16, 0, 0, dscale as i16] {
            out.extend_from_slice(&part.to_be_bytes());
        }
        return Some((out, 0));
    }
    let pad = (4 - point.rem_euclid(4)) % 4;
    let weight = (point + pad) / 4 - 1;
    let mut aligned = vec![0u8; pad as usize];
    aligned.extend_from_slice(&digits);
    while !aligned.len().is_multiple_of(4) {
        aligned.push(0);
    }
    let mut groups: Vec<i16> = aligned.chunks(4).map(|c| c.iter().fold(0i16, |a, d| a * 10 + i16::from(*d))).collect();
    while groups.last() == Some(&0) {
        groups.pop();
    }
    let sign: u16 = if negative { 0x4000 } else { 0 };
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&(weight as i16).to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&(dscale as i16).to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Some((out, point.max(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn groups(text: &str) -> (i16, i16, u16, i16, Vec<i16>) {
        let (b, _) = numeric(text).unwrap();
        let w = |i: usize| i16::from_be_bytes([b[i], b[i + 1]]);
        let n = w(0);
        ((n), w(2), w(4) as u16, w(6), (0..n as usize).map(|i| w(8 + 2 * i)).collect())
    }

    #[test]
    fn encodes_numeric_exactly() {
        assert_eq!(groups("12345.678"), (3, 1, 0, 3, vec![1, 2345, 6780]));
        assert_eq!(groups("-0.0001"), (1, -1, 0x4000, 4, vec![1]));
        assert_eq!(groups("1e5"), (1, 1, 0, 0, vec![10]));
        assert_eq!(groups("1.50"), (2, 0, 0, 2, vec![1, 5000]));
        assert_eq!(groups("0"), (0, 0, 0, 0, vec![]));
        assert_eq!(numeric("12345678901234567890").unwrap().1, 20);
        assert!(numeric("1e999999999").is_none() && numeric("abc").is_none());
    }

    #[test]
    fn picks_types_and_checks_values() {
        let s = |t: &[&str]| t.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(PgType::of_schema(&s(&["integer", "null"]), None), PgType::BigInt);
        assert_eq!(PgType::of_schema(&s(&["number"]), Some("double")), PgType::Double);
        assert_eq!(PgType::of_schema(&s(&["string"]), Some("date-time")), PgType::Timestamptz);
        assert_eq!(PgType::of_schema(&s(&["string", "integer"]), None), PgType::Jsonb);
        assert_eq!(PgType::of_format("character varying(5)"), PgType::Text(Some(5)));
        assert_eq!(PgType::of_format("numeric(10,2)"), PgType::Numeric(Some((10, 2))));
        let big = json!(12345678901234567890u64);
        assert!(matches!(convert(&big, PgType::BigInt, NulPolicy::DeadLetter), Err(Misfit::Type(_))));
        let nul = json!({"a": ["x", "y\u{0}"]});
        assert_eq!(convert(&nul, PgType::Jsonb, NulPolicy::DeadLetter).err(), Some(Misfit::Nul("/a/1".into())));
        assert!(convert(&nul, PgType::Jsonb, NulPolicy::Strip).is_ok_and(|c| c.stripped));
        assert!(
            matches!(convert(&json!("x"), PgType::BigInt, NulPolicy::Strip), Err(Misfit::Type(t)) if t == "string")
        );
    }
}
