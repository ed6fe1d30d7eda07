//! Response-shape drift: records compared, before mapping, with the stream's stored
//! baseline schema.
//!
//! Classes: a field whose JSON type is not one the baseline allows (`type_changed`), a null
//! where the baseline does not allow one (`null_value`), a field the baseline does not know
//! (`new_field`), a field the baseline marks required that is absent (`missing_field`).
//! `integer` and `number` are one numeric type here. A null is tolerated (the record goes
//! on, the value stays null) but recorded; a field only ever seen as null has no type to
//! change from. Each distinct (path, class) is one [`DriftEvent`] with a count, never one
//! event per record.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::schema::{type_name, types_of};

/// One kind of difference at one JSON path, seen `count` times in a run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DriftEvent {
    /// JSON pointer of the field, e.g. `/price` or `/owner/login`.
    pub path: String,
    /// `type_changed`, `null_value`, `new_field` or `missing_field`.
    pub change: String,
    /// What the baseline allows (`number`, `string|null`), or `absent` for a new field.
    pub expected: String,
    /// What arrived (`string`), or `absent` for a missing field.
    pub observed: String,
    /// Records that showed it in this run.
    pub count: u64,
    /// When it was first seen in this run (RFC 3339).
    pub first_seen: String,
    /// Where it was first seen (`GET /v1/items?... item 3`).
    pub first_at: String,
}

/// Compares records with a baseline schema and accumulates drift events.
#[derive(Debug)]
pub struct DriftTracker {
    baseline: Node,
    events: BTreeMap<(String, &'static str), DriftEvent>,
}

/// Array elements checked per array: enough to see a type change, bounded per record.
const ITEMS_CHECKED: usize = 8;

// JSON types as bits, so a check is one AND.
const NULL: u8 = 1;
const BOOL: u8 = 2;
const INT: u8 = 4;
const NUM: u8 = 8;
const STR: u8 = 16;
const ARR: u8 = 32;
const OBJ: u8 = 64;

/// A baseline schema compiled for checking: type bits, properties sorted by name for
/// binary search, and the texts an event needs, rendered once.
#[derive(Debug, Default)]
struct Node {
    /// Allowed types; 0 when the schema says nothing (anything goes).
    types: u8,
    /// `number|null`, for events.
    expected: String,
    /// Properties, sorted by name (objects with `properties` only).
    props: Option<Vec<(String, Node, bool)>>,
    /// How many properties are required.
    required: usize,
    /// Element schema of arrays.
    items: Option<Box<Node>>,
}

impl Node {
    fn compile(schema: &Value) -> Node {
        let names = types_of(schema);
        let types = names.iter().map(|t| bit(t)).fold(0, |a, b| a | b);
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let props = schema.get("properties").and_then(Value::as_object).map(|p| {
            let mut v: Vec<(String, Node, bool)> =
                p.iter().map(|(k, s)| (k.clone(), Node::compile(s), required.contains(&k.as_str()))).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        });
        let required = props.as_ref().map_or(0, |p| p.iter().filter(|x| x.2).count());
        Node {
            types,
            expected: names.join("|"),
            props,
            required,
            items: schema.get("items").map(|i| Box::new(Node::compile(i))),
        }
    }

    /// The property `key`, trying `props[*next]` first: records usually list their fields in
    /// the baseline's (sorted) order, so walking them in step costs one comparison per
    /// field; anything else falls back to a binary search.
    fn prop(&self, key: &str, next: &mut usize) -> Option<&(String, Node, bool)> {
        let props = self.props.as_ref()?;
        if let Some(p) = props.get(*next).filter(|p| p.0 == key) {
            *next += 1;
            return Some(p);
        }
        let i = props.binary_search_by(|p| p.0.as_str().cmp(key)).ok()?;
        *next = i + 1;
        Some(&props[i])
    }
}

fn bit(name: &str) -> u8 {
    match name {
        "null" => NULL,
        "boolean" => BOOL,
        "integer" => INT,
        "number" => NUM,
        "string" => STR,
        "array" => ARR,
        "object" => OBJ,
        _ => 0,
    }
}

/// The type bit of a value; integers and numbers each count as both (one numeric type).
fn value_bits(v: &Value) -> u8 {
    match v {
        Value::Null => NULL,
        Value::Bool(_) => BOOL,
        Value::Number(_) => INT | NUM,
        Value::String(_) => STR,
        Value::Array(_) => ARR,
        Value::Object(_) => OBJ,
    }
}

impl DriftTracker {
    /// A tracker against `baseline` (a JSON Schema as `schema::infer` writes it, or declared).
    pub fn new(baseline: Value) -> Self {
        DriftTracker { baseline: Node::compile(&baseline), events: BTreeMap::new() }
    }

    /// Check one record; returns the events it triggered for the first time in this run
    /// (so the caller can log each once).
    pub fn check(&mut self, data: &Value, at: &dyn Fn() -> String) -> Vec<DriftEvent> {
        let mut fresh = Vec::new();
        let baseline = std::mem::take(&mut self.baseline);
        let mut path: Vec<&str> = Vec::new();
        self.walk(&baseline, data, &mut path, at, &mut fresh);
        self.baseline = baseline;
        fresh
    }

    /// Every event of the run, by path.
    pub fn events(&self) -> Vec<DriftEvent> {
        self.events.values().cloned().collect()
    }

    fn walk<'v>(
        &mut self,
        node: &Node,
        v: &'v Value,
        path: &mut Vec<&'v str>,
        at: &dyn Fn() -> String,
        fresh: &mut Vec<DriftEvent>,
    ) {
        let observed = value_bits(v);
        if observed == NULL {
            if node.types != 0 && node.types & NULL == 0 {
                self.note(path, "null_value", &node.expected, "null", at, fresh);
            }
            return;
        }
        if node.types & !NULL != 0 && node.types & observed == 0 {
            self.note(path, "type_changed", &node.expected, type_name(v), at, fresh);
            return;
        }
        match v {
            Value::Object(obj) => {
                if node.props.is_none() {
                    return;
                }
                let mut required_seen = 0;
                let mut next = 0;
                for (k, child) in obj {
                    path.push(k);
                    match node.prop(k, &mut next) {
                        Some((_, n, req)) => {
                            required_seen += usize::from(*req);
                            self.walk(n, child, path, at, fresh);
                        }
                        None if !child.is_null() => self.note(path, "new_field", "absent", type_name(child), at, fresh),
                        None => {}
                    }
                    path.pop();
                }
                if required_seen < node.required {
                    for (name, n, req) in node.props.iter().flatten() {
                        if *req && !obj.contains_key(name) {
                            let here: Vec<&str> = path.iter().copied().chain([name.as_str()]).collect();
                            self.note(&here, "missing_field", &n.expected, "absent", at, fresh);
                        }
                    }
                }
            }
            Value::Array(items) => {
                let Some(item) = node.items.as_deref() else { return };
                path.push("*");
                for element in items.iter().take(ITEMS_CHECKED) {
                    self.walk(item, element, path, at, fresh);
                }
                path.pop();
            }
            _ => {}
        }
    }

    /// Count a drift a source found itself (a record it could not decode because a field
    /// changed type); returns whether it is new in this run.
    pub fn record(&mut self, event: DriftEvent) -> bool {
        let change = match event.change.as_str() {
            "type_changed" => "type_changed",
            "null_value" => "null_value",
            "new_field" => "new_field",
            "missing_field" => "missing_field",
            _ => "type_changed",
        };
        match self.events.get_mut(&(event.path.clone(), change)) {
            Some(e) => {
                e.count += event.count.max(1);
                false
            }
            None => {
                self.events.insert((event.path.clone(), change), event);
                true
            }
        }
    }

    fn note(
        &mut self,
        path: &[&str],
        change: &'static str,
        expected: &str,
        observed: &str,
        at: &dyn Fn() -> String,
        fresh: &mut Vec<DriftEvent>,
    ) {
        let mut pointer = String::new();
        for seg in path {
            push_segment(&mut pointer, seg);
        }
        let key = (pointer, change);
        if let Some(e) = self.events.get_mut(&key) {
            e.count += 1;
            return;
        }
        let e = DriftEvent {
            path: key.0.clone(),
            change: change.to_owned(),
            expected: expected.to_owned(),
            observed: observed.to_owned(),
            count: 1,
            first_seen: crate::now_rfc3339(),
            first_at: at(),
        };
        fresh.push(e.clone());
        self.events.insert(key, e);
    }
}

/// Append `/key` to a JSON pointer, escaping `~` and `/` (RFC 6901).
fn push_segment(path: &mut String, key: &str) {
    path.push('/');
    for c in key.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

/// Widen `baseline` so a drift is no longer one (`dovetail drift accept`): the observed type
/// is allowed at `path` (`type_changed`, `null_value`), a new field becomes a known, optional
/// property (`new_field`), a missing field stops being required (`missing_field`). A path
/// the baseline has no place for is left alone; returns whether anything changed.
pub fn accept(baseline: &mut Value, path: &str, change: &str, observed: &str) -> bool {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let Some((last, parents)) = segments.split_last() else { return false };
    let mut node = baseline;
    for seg in parents {
        let Some(next) = child(node, seg) else { return false };
        node = next;
    }
    match change {
        "new_field" => {
            let Some(props) = node.as_object_mut().map(|o| o.entry("properties").or_insert_with(|| json!({}))) else {
                return false;
            };
            let Some(props) = props.as_object_mut() else { return false };
            props.insert((*last).to_owned(), json!({ "type": observed }));
            true
        }
        "missing_field" => match node.get_mut("required").and_then(Value::as_array_mut) {
            Some(req) => {
                let before = req.len();
                req.retain(|r| r.as_str() != Some(last));
                req.len() != before
            }
            None => false,
        },
        "type_changed" | "null_value" => {
            let Some(field) = child(node, last) else { return false };
            let Some(obj) = field.as_object_mut() else { return false };
            let mut types: Vec<String> = match obj.get("type") {
                Some(Value::String(t)) => vec![t.clone()],
                Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
                _ => return false, // no type: anything is allowed already
            };
            if types.iter().any(|t| t == observed) {
                return false;
            }
            types.push(observed.to_owned());
            obj.insert("type".into(), json!(types));
            true
        }
        _ => false,
    }
}

/// The schema of a property (`seg`) or of array elements (`*`).
fn child<'a>(node: &'a mut Value, seg: &str) -> Option<&'a mut Value> {
    if seg == "*" { node.get_mut("items") } else { node.get_mut("properties")?.get_mut(seg) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn type_changes_new_and_missing_fields_are_one_event_each_with_a_count() {
        let baseline = crate::schema::infer([&json!({"id": 1, "price": 1.5, "name": "a", "owner": {"login": "x"}})]);
        let mut t = DriftTracker::new(baseline);
        let at = || "item 0".to_owned();
        let nulls = t.check(&json!({"id": 2, "price": 3, "name": null, "owner": {"login": "y"}}), &at);
        assert_eq!((nulls.len(), nulls[0].path.as_str(), nulls[0].change.as_str()), (1, "/name", "null_value"));
        let fresh = t.check(&json!({"id": 3, "price": "12.50", "title": "b", "owner": {"login": 7}}), &at);
        let got: Vec<(&str, &str)> = fresh.iter().map(|e| (e.path.as_str(), e.change.as_str())).collect();
        assert_eq!(
            got,
            [
                ("/owner/login", "type_changed"),
                ("/price", "type_changed"),
                ("/title", "new_field"),
                ("/name", "missing_field")
            ]
        );
        for _ in 0..9 {
            assert!(t.check(&json!({"id": 4, "price": "1.00", "name": "c", "owner": {"login": "z"}}), &at).is_empty());
        }
        let price = t.events().into_iter().find(|e| e.path == "/price").unwrap();
        assert_eq!((price.count, price.expected.as_str(), price.observed.as_str()), (10, "number", "string"));
    }

    #[test]
    fn accepting_every_event_silences_it() {
        let mut baseline = crate::schema::infer([
            &json!({"id": 1, "price": 1.5, "name": "a", "owner": {"login": "x"}, "tags": ["a"]}),
        ]);
        let drifted = json!({"id": 3, "price": "12.50", "title": "b", "owner": {"login": null}, "tags": [1]});
        let at = || "item 0".to_owned();
        let events = DriftTracker::new(baseline.clone()).check(&drifted, &at);
        assert_eq!(events.len(), 5, "{events:?}");
        for e in &events {
            assert!(accept(&mut baseline, &e.path, &e.change, &e.observed), "{e:?} changed nothing");
        }
        assert!(DriftTracker::new(baseline.clone()).check(&drifted, &at).is_empty(), "{baseline}");
        // Still a baseline: the old shape passes, and a new drift is still caught.
        let mut t = DriftTracker::new(baseline.clone());
        assert!(
            t.check(&json!({"id": 2, "price": 2.5, "name": "b", "owner": {"login": "y"}, "tags": ["b"]}), &at)
                .is_empty()
        );
        assert_eq!(t.check(&json!({"id": true, "price": 1}), &at)[0].path, "/id");
        assert!(!accept(&mut baseline, "/nowhere/deep", "type_changed", "string"));
    }
}
