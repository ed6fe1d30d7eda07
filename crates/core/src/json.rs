//! The names of JSON value types: the one place that says what a value's type is called,
//! for schema inference and drift reports (JSON Schema's names) and for error messages
//! ("expected a JSON object, found an array"). Connectors use these instead of their own
//! `match` (`cargo xtask tidy` refuses a copy under `connectors/`).

use serde_json::Value;

/// The type of a JSON value, an integral number told apart from others (JSON Schema's
/// `integer`: `3`, `3.0` and `3e2` are integers, `3.5` is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    /// `null`.
    Null,
    /// `true` or `false`.
    Boolean,
    /// A number without a fractional part.
    Integer,
    /// Any other number.
    Number,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

impl JsonType {
    /// The type of `v`.
    pub fn of(v: &Value) -> JsonType {
        match v {
            Value::Null => JsonType::Null,
            Value::Bool(_) => JsonType::Boolean,
            Value::Number(n) if crate::number::is_integral(n) => JsonType::Integer,
            Value::Number(_) => JsonType::Number,
            Value::String(_) => JsonType::String,
            Value::Array(_) => JsonType::Array,
            Value::Object(_) => JsonType::Object,
        }
    }

    /// Its JSON Schema name (`integer`, `number`, `object`, ...), as schemas and drift
    /// reports spell it.
    pub fn name(self) -> &'static str {
        match self {
            JsonType::Null => "null",
            JsonType::Boolean => "boolean",
            JsonType::Integer => "integer",
            JsonType::Number => "number",
            JsonType::String => "string",
            JsonType::Array => "array",
            JsonType::Object => "object",
        }
    }

    /// How a message names it after "found": `a number` (an integer too: messages do not
    /// tell them apart), `an object`, `null`.
    pub fn phrase(self) -> &'static str {
        match self {
            JsonType::Null => "null",
            JsonType::Boolean => "a boolean",
            JsonType::Integer | JsonType::Number => "a number",
            JsonType::String => "a string",
            JsonType::Array => "an array",
            JsonType::Object => "an object",
        }
    }
}

/// The JSON Schema type name of a value (`integer` for integral numbers).
pub fn json_type_name(v: &Value) -> &'static str {
    JsonType::of(v).name()
}

/// A value's type as a message says it: `a string`, `an array`, `null` (any number is
/// `a number`).
pub fn json_type_phrase(v: &Value) -> &'static str {
    // Numbers are one phrase, so they skip `is_integral` (which may parse the decimal text).
    match v {
        Value::Number(_) => JsonType::Number.phrase(),
        other => JsonType::of(other).phrase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every caller's output as it was before the names moved here: schema inference and drift
    /// (`schema::type_name`) and the messages of mappings and the JSONL reader.
    #[test]
    fn names_and_phrases_of_every_type() {
        let cases = [
            (json!(null), "null", "null"),
            (json!(true), "boolean", "a boolean"),
            (json!(3), "integer", "a number"),
            (json!(-3), "integer", "a number"),
            (serde_json::from_str::<Value>("3.0").unwrap(), "integer", "a number"),
            (serde_json::from_str::<Value>("3e2").unwrap(), "integer", "a number"),
            (json!(3.5), "number", "a number"),
            (serde_json::from_str::<Value>("1234567890.123456789").unwrap(), "number", "a number"),
            (json!("x"), "string", "a string"),
            (json!([1]), "array", "an array"),
            (json!({"a": 1}), "object", "an object"),
        ];
        for (v, name, phrase) in cases {
            assert_eq!((json_type_name(&v), json_type_phrase(&v)), (name, phrase), "{v}");
            assert_eq!(JsonType::of(&v).phrase(), phrase, "{v}");
        }
    }
}
