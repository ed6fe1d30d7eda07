//! `dovetail drift accept`: widening a stored baseline so an accepted drift is no longer one.

use serde_json::{Value, json};

use crate::names::DriftClass;

/// Widen `baseline` so a drift is no longer one (`dovetail drift accept`): the observed type
/// is allowed at `path` (`type_changed`, `null_value`), a new field becomes a known, optional
/// property (`new_field`), a missing field stops being required (`missing_field`), an
/// observed value joins the field's `enum` (`enum_value`; a value shown cut short, or
/// `(other values)`, lifts the field's value list instead). `column_type` drift belongs to
/// the sink's columns, not to this baseline (the engine hands accepted ones to the sink).
/// A path the baseline has no place for is left alone; returns whether anything changed.
pub fn accept(baseline: &mut Value, path: &str, change: DriftClass, observed: &str) -> bool {
    // A coercion's observed shape is `null (read as [])`: the type is the first word.
    let observed =
        if change == DriftClass::EnumValue { observed } else { observed.split(' ').next().unwrap_or(observed) };
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let Some((last, parents)) = segments.split_last() else { return false };
    let mut node = baseline;
    for seg in parents {
        let Some(next) = child(node, seg) else { return false };
        node = next;
    }
    match change {
        DriftClass::NewField => {
            let Some(props) = node.as_object_mut().map(|o| o.entry("properties").or_insert_with(|| json!({}))) else {
                return false;
            };
            let Some(props) = props.as_object_mut() else { return false };
            props.insert((*last).to_owned(), json!({ "type": observed }));
            true
        }
        DriftClass::MissingField => match node.get_mut("required").and_then(Value::as_array_mut) {
            Some(req) => {
                let before = req.len();
                req.retain(|r| r.as_str() != Some(last));
                req.len() != before
            }
            None => false,
        },
        DriftClass::TypeChanged | DriftClass::NullValue => {
            let Some(field) = child(node, last) else { return false };
            let Some(obj) = field.as_object_mut() else { return false };
            let mut types: Vec<String> = match obj.get("type") {
                Some(Value::String(t)) => vec![t.clone()],
                Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
                // No `type` of its own (`$ref`, `anyOf`): a branch of the observed type.
                _ if ["$ref", "anyOf", "oneOf"].iter().any(|k| obj.contains_key(*k)) => {
                    widen(field, json!({ "type": observed }));
                    return true;
                }
                _ => return false, // no type: anything is allowed already
            };
            if types.iter().any(|t| t == observed) {
                return false;
            }
            types.push(observed.to_owned());
            obj.insert("type".into(), json!(types));
            true
        }
        DriftClass::EnumValue => {
            let Some(field) = child(node, last) else { return false };
            let value: Option<Value> = serde_json::from_str(observed).ok().filter(|_| !observed.ends_with('…'));
            match (value, field.get_mut("enum").and_then(Value::as_array_mut)) {
                (Some(v), Some(list)) => {
                    if list.contains(&v) {
                        return false;
                    }
                    list.push(v);
                }
                (Some(v), None) => widen(field, json!({ "const": v })),
                // The value is not known exactly: stop checking this field's values.
                (None, _) => widen(field, json!({})),
            }
            true
        }
        DriftClass::ColumnType => false,
    }
}

/// Let `field` also match `branch`: one more `anyOf`/`oneOf` branch, or an `anyOf` of the
/// old schema and the branch.
fn widen(field: &mut Value, branch: Value) {
    for k in ["anyOf", "oneOf"] {
        if let Some(list) = field.get_mut(k).and_then(Value::as_array_mut) {
            list.push(branch);
            return;
        }
    }
    let old = field.take();
    *field = json!({ "anyOf": [old, branch] });
}

/// The schema of a property (`seg`) or of array elements (`*`).
fn child<'a>(node: &'a mut Value, seg: &str) -> Option<&'a mut Value> {
    if seg == "*" { node.get_mut("items") } else { node.get_mut("properties")?.get_mut(seg) }
}
