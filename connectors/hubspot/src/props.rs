//! HubSpot properties as a stream's declared schema, and record values typed by them.
//!
//! HubSpot sends every property value as a string. The properties API says what each one
//! is; a record's values are converted by it (numbers, booleans, multi-checkbox values
//! split at `;` into arrays, an empty string as null for anything but a string), and the
//! same types become the stream's JSON Schema: every listed property is present in a record
//! (null when unset), so a property removed from the portal is `missing_field` drift, one
//! added is `new_field`, one retyped `type_changed`, and a new enumeration option
//! `enum_value` — each with its path (`/properties/<name>`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

/// One property as the properties API lists it (the fields the connector uses).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Property {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub field_type: String,
    #[serde(default)]
    pub options: Vec<PropOption>,
}

/// An enumeration option.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PropOption {
    pub value: String,
}

/// The properties API's answer.
#[derive(Debug, Deserialize)]
pub(crate) struct PropertyList {
    pub results: Vec<Property>,
}

/// What a property's values are.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Text,
    Number,
    Bool,
    Date,
    DateTime,
    Enum {
        options: Vec<String>,
        multi: bool,
    },
    /// Object ids, `;`-separated as sent (`hs_merged_object_ids`): an array of strings with
    /// no options, whatever type the properties API gives it, so a new id is no drift.
    Ids,
}

/// Properties whose values are lists of object ids (see [`Kind::Ids`]).
pub(crate) const ID_LISTS: [&str; 2] = ["hs_merged_object_ids", "hs_calculated_merged_vids"];

impl Property {
    pub(crate) fn kind(&self) -> Kind {
        if ID_LISTS.contains(&self.name.as_str()) {
            return Kind::Ids;
        }
        match self.kind.as_str() {
            "number" => Kind::Number,
            "bool" => Kind::Bool,
            "date" => Kind::Date,
            "datetime" => Kind::DateTime,
            "enumeration" if self.field_type == "booleancheckbox" => Kind::Bool,
            "enumeration" => Kind::Enum {
                options: self.options.iter().map(|o| o.value.clone()).collect(),
                multi: self.field_type == "checkbox",
            },
            _ => Kind::Text,
        }
    }
}

/// The properties of one object, by name, in the order they are requested.
pub(crate) type Kinds = BTreeMap<String, Kind>;

/// The kinds of `list`, restricted to `only` when the config names properties.
pub(crate) fn kinds(list: &PropertyList, only: Option<&[String]>) -> Kinds {
    list.results
        .iter()
        .filter(|p| only.is_none_or(|o| o.iter().any(|n| n == &p.name)))
        .map(|p| (p.name.clone(), p.kind()))
        .collect()
}

fn property_schema(kind: &Kind) -> Value {
    match kind {
        Kind::Text => json!({ "type": ["string", "null"] }),
        Kind::Number => json!({ "type": ["number", "null"] }),
        Kind::Bool => json!({ "type": ["boolean", "null"] }),
        Kind::Date => json!({ "type": ["string", "null"], "format": "date" }),
        Kind::DateTime => json!({ "type": ["string", "null"], "format": "date-time" }),
        Kind::Enum { options, multi: false } => {
            let mut values: Vec<Value> = options.iter().cloned().map(Value::String).collect();
            values.push(Value::Null);
            json!({ "type": ["string", "null"], "enum": values })
        }
        Kind::Enum { options, multi: true } => {
            json!({ "type": ["array", "null"], "items": { "type": "string", "enum": options } })
        }
        Kind::Ids => json!({ "type": ["array", "null"], "items": { "type": "string" } }),
    }
}

/// The JSON Schema of an object's records: `id`, `properties` (each one typed and
/// required), `createdAt`, `updatedAt`, `archived`.
pub(crate) fn object_schema(kinds: &Kinds) -> Value {
    let props: Map<String, Value> = kinds.iter().map(|(n, k)| (n.clone(), property_schema(k))).collect();
    let required: Vec<&String> = kinds.keys().collect();
    json!({
        "type": "object",
        "required": ["id", "properties", "createdAt", "updatedAt", "archived"],
        "properties": {
            "id": { "type": "string" },
            "properties": { "type": "object", "required": required, "properties": props },
            "createdAt": { "type": "string", "format": "date-time" },
            "updatedAt": { "type": "string", "format": "date-time" },
            "archived": { "type": "boolean" },
            "archivedAt": { "type": ["string", "null"], "format": "date-time" },
        }
    })
}

/// A value typed by its property's kind; a value that does not parse stays the string
/// HubSpot sent (the drift check then reports it against the declared type).
fn convert(kind: &Kind, raw: Value) -> Value {
    let Value::String(s) = raw else { return raw };
    if s.is_empty() && *kind != Kind::Text {
        return Value::Null;
    }
    match kind {
        Kind::Number => match serde_json::from_str::<Value>(s.trim()) {
            Ok(n @ Value::Number(_)) => n,
            _ => Value::String(s),
        },
        Kind::Bool => match s.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(s),
        },
        Kind::Enum { multi: true, .. } => Value::Array(s.split(';').map(|v| Value::String(v.to_owned())).collect()),
        Kind::Ids => Value::Array(
            s.split(';').map(str::trim).filter(|v| !v.is_empty()).map(|v| Value::String(v.to_owned())).collect(),
        ),
        _ => Value::String(s),
    }
}

/// A record's `properties` typed by `kinds`, every listed property present (null when
/// HubSpot left it out); properties not listed are kept as sent.
pub(crate) fn type_record(kinds: &Kinds, mut record: Value) -> Value {
    let mut sent = match record.get_mut("properties").map(Value::take) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let mut out = Map::new();
    for (name, kind) in kinds {
        let v = sent.remove(name).unwrap_or(Value::Null);
        out.insert(name.clone(), convert(kind, v));
    }
    out.extend(sent);
    if let Some(obj) = record.as_object_mut() {
        obj.insert("properties".to_owned(), Value::Object(out));
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_typed_by_their_property() {
        let list: PropertyList = serde_json::from_value(json!({ "results": [
            { "name": "n", "type": "number", "fieldType": "number" },
            { "name": "b", "type": "bool", "fieldType": "booleancheckbox" },
            { "name": "m", "type": "enumeration", "fieldType": "checkbox", "options": [{ "label": "A", "value": "a" }, { "label": "B", "value": "b" }] },
            { "name": "e", "type": "enumeration", "fieldType": "select", "options": [{ "label": "A", "value": "a" }] },
            { "name": "s", "type": "string", "fieldType": "text" },
            { "name": "hs_merged_object_ids", "type": "enumeration", "fieldType": "checkbox", "options": [] },
        ]}))
        .unwrap();
        let kinds = kinds(&list, None);
        let r = type_record(
            &kinds,
            json!({ "id": "1", "properties": { "n": "12.5", "b": "true", "m": "a;b", "e": "", "s": "", "x": "kept",
                "hs_merged_object_ids": "7;9" } }),
        );
        assert_eq!(
            r["properties"],
            json!({ "n": 12.5, "b": true, "m": ["a", "b"], "e": null, "s": "", "x": "kept",
                "hs_merged_object_ids": ["7", "9"] })
        );
        let schema = object_schema(&kinds);
        assert_eq!(schema["properties"]["properties"]["properties"]["e"]["enum"], json!(["a", null]));
        // Merged ids are ids, not options: no `enum` for a new one to fall outside of.
        let merged = &schema["properties"]["properties"]["properties"]["hs_merged_object_ids"];
        assert_eq!(*merged, json!({ "type": ["array", "null"], "items": { "type": "string" } }));
        let only = ["n".to_owned()];
        assert_eq!(super::kinds(&list, Some(&only)).len(), 1);
    }
}
