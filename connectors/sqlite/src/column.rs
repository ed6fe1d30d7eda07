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

/// The JSON types seen for one field (or that a column was made for), as bit flags.
/// No non-null bit means "not known": anything fits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Seen(pub(crate) u8);

/// JSON type names and their bits (integers and numbers are one type).
const NAMES: [(&str, u8); 6] = [
    ("null", Seen::NULL),
    ("boolean", Seen::BOOL),
    ("number", Seen::NUM),
    ("string", Seen::STR),
    ("array", Seen::ARR),
    ("object", Seen::OBJ),
];

impl Seen {
    const NULL: u8 = 1;
    const BOOL: u8 = 2;
    const NUM: u8 = 4;
    const STR: u8 = 8;
    const ARR: u8 = 16;
    const OBJ: u8 = 32;
    const TEXTUAL: u8 = Self::STR | Self::ARR | Self::OBJ;
    const SCALAR: u8 = Self::BOOL | Self::NUM;

    /// The bit of one value.
    pub(crate) fn bit(v: &Value) -> u8 {
        match v {
            Value::Null => Self::NULL,
            Value::Bool(_) => Self::BOOL,
            Value::Number(_) => Self::NUM,
            Value::String(_) => Self::STR,
            Value::Array(_) => Self::ARR,
            Value::Object(_) => Self::OBJ,
        }
    }

    /// Note one value of the field.
    pub(crate) fn add(&mut self, v: &Value) {
        self.0 |= Self::bit(v);
    }

    /// The types a JSON Schema property allows (`["string","null"]`); an unknown or
    /// missing type counts as anything.
    pub(crate) fn from_schema(types: &[String]) -> Seen {
        Seen::from_names(types.iter().map(|t| if t == "integer" { "number" } else { t.as_str() }))
    }

    /// From type names (`number|null` split), unknown names ignored.
    pub(crate) fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Seen {
        let bits = names.into_iter().filter_map(|n| NAMES.iter().find(|x| x.0 == n)).fold(0, |a, x| a | x.1);
        Seen(bits)
    }

    /// What a column of a table the sink did not describe was made for, from its affinity:
    /// TEXT for strings, objects and arrays, INTEGER/REAL/NUMERIC for numbers and booleans;
    /// a column without a declared type takes anything.
    pub(crate) fn of_affinity(a: Affinity) -> Seen {
        match a {
            Affinity::Text => Seen(Self::TEXTUAL),
            Affinity::Integer | Affinity::Real | Affinity::Numeric => Seen(Self::SCALAR),
            Affinity::Blob => Seen(0),
        }
    }

    /// Whether anything is known (a non-null type).
    pub(crate) fn known(self) -> bool {
        self.0 & !Self::NULL != 0
    }

    /// Whether a value of bit `bit` fits: null always does, anything does when nothing is known.
    #[inline]
    pub(crate) fn fits(self, bit: u8) -> bool {
        bit == Self::NULL || !self.known() || self.0 & bit != 0
    }

    /// Allow one more type (by name); whether that changed anything.
    pub(crate) fn widen(&mut self, name: &str) -> bool {
        let before = self.0;
        self.0 |= Seen::from_names([if name == "integer" { "number" } else { name }]).0;
        self.0 != before
    }

    /// `number|string`: the non-null types, for events and the sink's column notes.
    pub(crate) fn names(self) -> String {
        let names: Vec<&str> = NAMES.iter().filter(|x| x.1 != Self::NULL && self.0 & x.1 != 0).map(|x| x.0).collect();
        names.join("|")
    }

    /// `TEXT` when the field only ever holds strings, objects or arrays; else no declared
    /// type, so numbers are kept exactly as bound.
    pub(crate) fn declared_type(self) -> &'static str {
        let t = self.0 & !Self::NULL;
        if t != 0 && t & !Self::TEXTUAL == 0 { "TEXT" } else { "" }
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
    /// The JSON types the column was made for (a value of another type is `column_type`
    /// drift); nothing known for columns without a note and without a declared type.
    pub(crate) fits: Seen,
    pub(crate) role: Role,
    /// Part of the primary key.
    pub(crate) key: bool,
}

impl Column {
    /// A TEXT column the sink keeps itself (`_synced_at`, the soft-delete marker).
    pub(crate) fn system(name: &str, role: Role) -> Column {
        Column { name: name.to_owned(), affinity: Affinity::Text, fits: Seen::default(), role, key: false }
    }
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
        let n = Seen::from_schema(&["integer".into(), "null".into()]);
        assert_eq!(
            (n.names(), n.fits(Seen::NUM), n.fits(Seen::STR), n.fits(Seen::NULL)),
            ("number".into(), true, false, true)
        );
        assert!(Seen::from_schema(&[]).fits(Seen::OBJ), "nothing known: anything fits");
        assert_eq!(Seen::of_affinity(Affinity::Text).names(), "string|array|object");
    }
}
