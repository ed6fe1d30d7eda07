//! Declarative mappings: columns from nested paths, select, drop, rename, default, cast, constant.
//!
//! The operations always apply in that order, whatever order the config lists them in:
//! `columns` → `select` → `drop` → `rename` → `default` → `cast` → `constant`.
//! So `cast`, `default` and `constant` name fields by their output (renamed) names.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::connector::{Transform, TransformError};
use crate::json::json_type_phrase;
use crate::number;
use crate::record::FieldPath;

/// The type a `cast` converts a field to. Null stays null.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CastType {
    /// Text; numbers keep their exact digits, objects and arrays become JSON text.
    String,
    /// Whole number of any size (exact; `"42"`, `42.0` and `true` are accepted).
    Integer,
    /// Exact decimal number of any precision (`"12.50"` stays 12.50).
    Number,
    /// `true`/`false`, `"yes"`/`"no"`, `"1"`/`"0"`, `1`/`0`.
    Boolean,
    /// RFC 3339 timestamp normalized to UTC; numbers are Unix seconds.
    Timestamp,
    /// JSON text parsed into a value.
    Json,
}

/// A declarative mapping, as written in config under `[pipelines.NAME.streams.STREAM.mapping]`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// New top-level columns taken from nested paths: `{ customer_city = "customer.address.city" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub columns: BTreeMap<String, FieldPath>,
    /// Keep only these fields (paths), plus the `columns` just created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select: Option<Vec<FieldPath>>,
    /// Remove these fields (paths).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<FieldPath>,
    /// Rename top-level fields: `{ old = "new" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rename: BTreeMap<String, String>,
    /// Value to use when a field is missing or null: `{ status = "new" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub default: BTreeMap<String, Value>,
    /// Convert fields to a type: `{ amount = "number", qty = "integer" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cast: BTreeMap<String, CastType>,
    /// Set fields to a constant: `{ source_system = "shop" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub constant: BTreeMap<String, Value>,
}

/// Builds a [`Mapping`] in code.
#[derive(Debug, Default)]
pub struct MappingBuilder(Mapping);

impl MappingBuilder {
    /// Add a top-level column from a nested path.
    pub fn column(mut self, name: &str, path: &str) -> Self {
        self.0.columns.insert(name.into(), FieldPath::new(path));
        self
    }
    /// Keep only these fields.
    pub fn select(mut self, fields: &[&str]) -> Self {
        self.0.select = Some(fields.iter().map(|f| FieldPath::new(*f)).collect());
        self
    }
    /// Remove a field.
    pub fn drop(mut self, field: &str) -> Self {
        self.0.drop.push(FieldPath::new(field));
        self
    }
    /// Rename a top-level field.
    pub fn rename(mut self, from: &str, to: &str) -> Self {
        self.0.rename.insert(from.into(), to.into());
        self
    }
    /// Default for a missing or null field.
    pub fn default_value(mut self, field: &str, v: Value) -> Self {
        self.0.default.insert(field.into(), v);
        self
    }
    /// Cast a field.
    pub fn cast(mut self, field: &str, to: CastType) -> Self {
        self.0.cast.insert(field.into(), to);
        self
    }
    /// Set a constant field.
    pub fn constant(mut self, field: &str, v: Value) -> Self {
        self.0.constant.insert(field.into(), v);
        self
    }
    /// The mapping.
    pub fn build(self) -> Mapping {
        self.0
    }
}

impl Mapping {
    /// Start building a mapping in code.
    pub fn builder() -> MappingBuilder {
        MappingBuilder::default()
    }

    /// Apply the mapping to one record.
    pub fn map(&self, mut data: Value) -> Result<Value, TransformError> {
        if !data.is_object() {
            return Err(TransformError {
                path: "$".into(),
                reason: format!("expected a JSON object, found {}", json_type_phrase(&data)),
            });
        }
        let mut created: Vec<&str> = Vec::new();
        for (name, path) in &self.columns {
            let v = path.get(&data).cloned().unwrap_or(Value::Null);
            obj(&mut data).insert(name.clone(), v);
            created.push(name);
        }
        if let Some(select) = &self.select {
            let mut out = Value::Object(Map::new());
            for p in select {
                if let Some(v) = p.take(&mut data) {
                    p.set(&mut out, v);
                }
            }
            for c in &created {
                if let Some(v) = obj(&mut data).remove(*c) {
                    obj(&mut out).insert((*c).to_owned(), v);
                }
            }
            data = out;
        }
        for p in &self.drop {
            p.take(&mut data);
        }
        if !self.rename.is_empty() {
            let m = obj(&mut data);
            let moved: Vec<(String, Value)> =
                self.rename.iter().filter_map(|(from, to)| m.remove(from).map(|v| (to.clone(), v))).collect();
            for (to, v) in moved {
                m.insert(to, v);
            }
        }
        for (field, v) in &self.default {
            let m = obj(&mut data);
            match m.get(field) {
                None | Some(Value::Null) => {
                    m.insert(field.clone(), v.clone());
                }
                _ => {}
            }
        }
        for (field, to) in &self.cast {
            if let Some(slot) = obj(&mut data).get_mut(field) {
                let v = slot.take();
                *slot = cast(v, *to).map_err(|reason| TransformError { path: field.clone(), reason })?;
            }
        }
        for (field, v) in &self.constant {
            obj(&mut data).insert(field.clone(), v.clone());
        }
        Ok(data)
    }

    /// Whether the mapping changes nothing.
    pub fn is_identity(&self) -> bool {
        *self == Mapping::default()
    }
}

fn obj(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

impl Transform for Mapping {
    fn apply(&self, data: Value) -> Result<Vec<Value>, TransformError> {
        self.map(data).map(|v| vec![v])
    }

    fn output_path(&self, input: &str) -> Option<String> {
        let mut name = self
            .columns
            .iter()
            .find(|(_, p)| p.as_str() == input)
            .map(|(c, _)| c.clone())
            .unwrap_or_else(|| input.to_owned());
        if let Some(sel) = &self.select
            && !sel.iter().any(|p| p.as_str() == name)
            && !self.columns.contains_key(&name)
        {
            return None;
        }
        if self.drop.iter().any(|p| p.as_str() == name) {
            return None;
        }
        if let Some(to) = self.rename.get(&name) {
            name = to.clone();
        }
        Some(name)
    }

    fn describe(&self) -> Option<Value> {
        serde_json::to_value(self).ok()
    }
}

fn show(v: &Value) -> String {
    let s = crate::record::canonical_json(v);
    if s.len() > 60 { format!("{}…", &s[..s.floor_char_boundary(60)]) } else { s }
}

/// Convert a value to a type, exactly; `Err` says why it cannot.
pub fn cast(v: Value, to: CastType) -> Result<Value, String> {
    if v.is_null() {
        return Ok(v);
    }
    let fail = |v: &Value, what: &str| Err(format!("cannot cast {} {} to {what}", json_type_phrase(v), show(v)));
    match to {
        CastType::String => Ok(match v {
            Value::String(_) => v,
            Value::Number(n) => Value::String(n.to_string()),
            Value::Bool(b) => Value::String(b.to_string()),
            other => Value::String(crate::record::canonical_json(&other)),
        }),
        CastType::Integer => {
            let n = match &v {
                Value::Number(n) => Some(n.clone()),
                Value::String(s) => number::parse_exact(s),
                Value::Bool(b) => Some(serde_json::Number::from(*b as u8)),
                _ => None,
            };
            match n {
                Some(n) if number::is_integral(&n) => Ok(Value::Number(integral_text(&n))),
                _ => fail(&v, "integer"),
            }
        }
        CastType::Number => match &v {
            Value::Number(_) => Ok(v),
            Value::String(s) => match number::parse_exact(s) {
                Some(n) => Ok(Value::Number(n)),
                None => fail(&v, "number"),
            },
            _ => fail(&v, "number"),
        },
        CastType::Boolean => match &v {
            Value::Bool(_) => Ok(v),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "y" | "1" | "t" => Ok(Value::Bool(true)),
                "false" | "no" | "n" | "0" | "f" => Ok(Value::Bool(false)),
                _ => fail(&v, "boolean"),
            },
            Value::Number(n) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
                Ok(Value::Bool(n.as_i64() == Some(1)))
            }
            _ => fail(&v, "boolean"),
        },
        CastType::Timestamp => match &v {
            Value::String(s) => match s.trim().parse::<jiff::Timestamp>() {
                Ok(t) => Ok(Value::String(t.to_string())),
                Err(_) => fail(&v, "timestamp (RFC 3339)"),
            },
            Value::Number(n) => match n.as_i64().and_then(|s| jiff::Timestamp::from_second(s).ok()) {
                Some(t) => Ok(Value::String(t.to_string())),
                None => fail(&v, "timestamp (Unix seconds)"),
            },
            _ => fail(&v, "timestamp"),
        },
        CastType::Json => match &v {
            Value::String(s) => {
                serde_json::from_str(s).map_err(|e| format!("cannot cast a string {} to json: {e}", show(&v)))
            }
            _ => Ok(v),
        },
    }
}

/// An integral number written without fraction or exponent (`2.0` → `2`, `1e3` → `1000`).
fn integral_text(n: &serde_json::Number) -> serde_json::Number {
    if n.is_i64() || n.is_u64() {
        return n.clone();
    }
    let s = n.to_string();
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.as_str()),
    };
    let (mant, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i64>().unwrap_or(0)),
        None => (body, 0),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    let mut digits = format!("{int}{frac}");
    let point = int.len() as i64 + exp;
    if point >= digits.len() as i64 {
        digits.push_str(&"0".repeat((point - digits.len() as i64) as usize));
    } else {
        digits.truncate(point.max(0) as usize);
    }
    let trimmed = digits.trim_start_matches('0');
    let text = if trimmed.is_empty() {
        "0".to_owned()
    } else if neg {
        format!("-{trimmed}")
    } else {
        trimmed.to_owned()
    };
    serde_json::from_str(&text).unwrap_or_else(|_| n.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn applies_every_operation_in_order() {
        let m = Mapping::builder()
            .column("city", "customer.address.city")
            .select(&["id", "amount", "status", "note"])
            .drop("note")
            .rename("id", "order_id")
            .default_value("status", json!("new"))
            .cast("amount", CastType::Number)
            .cast("order_id", CastType::Integer)
            .constant("source", json!("shop"))
            .build();
        let out = m.map(json!({"id": "7", "amount": "12.50", "note": "x", "extra": 1, "customer": {"address": {"city": "Oslo"}}})).unwrap();
        assert_eq!(
            out,
            json!({"order_id": 7, "amount": parse("12.50"), "status": "new", "city": "Oslo", "source": "shop"})
        );
        assert_eq!(out["amount"].to_string(), "12.50");
        assert_eq!(m.output_path("id").as_deref(), Some("order_id"));
        assert_eq!(m.output_path("note"), None);
        assert_eq!(m.output_path("customer.address.city").as_deref(), Some("city"));
    }

    #[test]
    fn cast_failures_name_the_field() {
        let m = Mapping::builder().cast("qty", CastType::Integer).build();
        let e = m.map(json!({"qty": "4x"})).unwrap_err();
        assert_eq!(e.path, "qty");
        assert_eq!(e.reason, "cannot cast a string \"4x\" to integer");
        assert!(m.map(json!({"qty": "2.5"})).is_err());
        assert!(m.map(json!([1])).is_err());
    }

    #[test]
    fn casts_are_exact() {
        assert_eq!(
            cast(json!("12345678901234567890123"), CastType::Integer).unwrap().to_string(),
            "12345678901234567890123"
        );
        assert_eq!(cast(parse("2.000"), CastType::Integer).unwrap().to_string(), "2");
        assert_eq!(cast(parse("1.5e1"), CastType::Integer).unwrap().to_string(), "15");
        assert_eq!(
            cast(parse("0.123456789012345678901234567890"), CastType::String).unwrap(),
            json!("0.123456789012345678901234567890")
        );
        assert_eq!(cast(json!("no"), CastType::Boolean).unwrap(), json!(false));
        assert_eq!(
            cast(json!("2024-05-01T12:00:00+02:00"), CastType::Timestamp).unwrap(),
            json!("2024-05-01T10:00:00Z")
        );
        assert_eq!(cast(json!("{\"a\":1}"), CastType::Json).unwrap(), json!({"a": 1}));
        assert_eq!(cast(Value::Null, CastType::Integer).unwrap(), Value::Null);
    }
}
