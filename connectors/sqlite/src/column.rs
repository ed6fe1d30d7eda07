//! Columns: identifier quoting, SQLite type affinities, and the declared type a field gets
//! from the JSON types seen for it.
//!
//! Columns that may hold numbers are declared with no type (BLOB affinity), so SQLite
//! stores each value exactly as [`crate::bind`] bound it; only fields that are always
//! strings, objects or arrays get `TEXT`.

use std::collections::BTreeMap;

use serde_json::Value;

/// Column the sink sets to the time of each write (RFC 3339, UTC).
pub const SYNCED_AT: &str = "_synced_at";

/// `ident` as a double-quoted SQL identifier, embedded quotes doubled.
pub(crate) fn quote(ident: &str) -> String {
    let mut s = String::with_capacity(ident.len() + 2);
    s.push('"');
    for c in ident.chars() {
        if c == '"' {
            s.push('"');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// A column's type affinity, by SQLite's rules for its declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Affinity {
    /// Declared `TEXT`, `CHAR`, `CLOB`...: numbers are converted to text.
    Text,
    /// Declared `INTEGER`...: numeric text is converted, lossily when big.
    Integer,
    /// Declared `REAL`, `FLOAT`, `DOUBLE`: integers become floats.
    Real,
    /// Any other declared type: numeric text is converted, lossily when big.
    Numeric,
    /// No declared type (or `BLOB`): values are stored as bound.
    Blob,
}

impl Affinity {
    /// The affinity of a declared column type (SQLite's datatype rules 1-5).
    pub(crate) fn of_declared(declared: &str) -> Affinity {
        let t = declared.to_ascii_uppercase();
        if t.contains("INT") {
            Affinity::Integer
        } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
            Affinity::Text
        } else if t.is_empty() || t.contains("BLOB") {
            Affinity::Blob
        } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
            Affinity::Real
        } else {
            Affinity::Numeric
        }
    }
}

/// The JSON types seen for one field, as bit flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Seen(u8);

impl Seen {
    const NULL: u8 = 1;
    const SCALAR: u8 = 2; // boolean or number
    const TEXTUAL: u8 = 4; // string, object or array

    /// Note one value of the field.
    pub(crate) fn add(&mut self, v: &Value) {
        self.0 |= match v {
            Value::Null => Self::NULL,
            Value::Bool(_) | Value::Number(_) => Self::SCALAR,
            Value::String(_) | Value::Array(_) | Value::Object(_) => Self::TEXTUAL,
        };
    }

    /// The types a JSON Schema property allows (`["string","null"]`); an unknown or
    /// missing type counts as anything.
    pub(crate) fn from_schema(types: &[String]) -> Seen {
        let mut s = Seen(0);
        for t in types {
            s.0 |= match t.as_str() {
                "null" => Self::NULL,
                "string" | "object" | "array" => Self::TEXTUAL,
                _ => Self::SCALAR,
            };
        }
        if s.0 & !Self::NULL == 0 { Seen(s.0 | Self::SCALAR) } else { s }
    }

    /// `TEXT` when the field only ever holds strings, objects or arrays; else no declared
    /// type, so numbers are kept exactly as bound.
    pub(crate) fn declared_type(self) -> &'static str {
        if self.0 & !Self::NULL == Self::TEXTUAL { "TEXT" } else { "" }
    }
}

/// What the sink puts in a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A record field of the same name.
    Data,
    /// The time of the write.
    SyncedAt,
    /// NULL on write, the time of the delete on soft delete.
    SoftDelete,
}

/// One column of a table, in table order.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub(crate) name: String,
    pub(crate) affinity: Affinity,
    pub(crate) role: Role,
    /// Part of the primary key.
    pub(crate) key: bool,
}

/// Field types from a schema's top-level `properties`, if it has them.
pub(crate) fn schema_fields(schema: Option<&Value>) -> Option<BTreeMap<String, Seen>> {
    let schema = schema?;
    let props = schema.get("properties")?.as_object()?;
    let fields = props
        .keys()
        .filter(|k| !k.contains('\0'))
        .map(|k| (k.clone(), Seen::from_schema(&dovetail_core::schema::property_types(schema, k))))
        .collect();
    Some(fields)
}

pub(crate) fn column_def(name: &str, seen: Seen, key: bool) -> String {
    let mut def = quote(name);
    let ty = seen.declared_type();
    if !ty.is_empty() {
        def.push(' ');
        def.push_str(ty);
    }
    if key {
        def.push_str(" NOT NULL");
    }
    def
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_affinities() {
        assert_eq!(quote(r#"we"ird name"#), r#""we""ird name""#);
        assert_eq!(Affinity::of_declared(""), Affinity::Blob);
        assert_eq!(Affinity::of_declared("text"), Affinity::Text);
        assert_eq!(Affinity::of_declared("BIGINT"), Affinity::Integer);
        assert_eq!(Affinity::of_declared("DECIMAL(10,2)"), Affinity::Numeric);
        let s = Seen::from_schema(&["string".into(), "null".into()]);
        assert_eq!(s.declared_type(), "TEXT");
        assert_eq!(Seen::from_schema(&["integer".into()]).declared_type(), "");
        assert_eq!(Seen::from_schema(&[]).declared_type(), "");
        assert_eq!(Seen::from_schema(&["null".into()]).declared_type(), "");
    }
}
