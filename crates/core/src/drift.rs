//! Response-shape drift: records compared, before mapping, with the stream's stored
//! baseline schema.
//!
//! Classes: a field whose JSON type is not one the baseline allows (`type_changed`), a null
//! where the baseline does not allow one (`null_value`), a field the baseline does not know
//! (`new_field`), a field the baseline marks required that is absent (`missing_field`), a
//! value outside the baseline's `enum` (or `const`, or `oneOf`/`anyOf` of them, as schemars
//! derives for Rust enums: `enum_value`). Sinks add `column_type`: a value whose JSON type no
//! longer fits the destination column (see [`crate::connector::WriteReport::drift`]).
//! `integer` and `number` are one numeric type here. A null is tolerated (the record goes
//! on, the value stays null) but recorded; a field only ever seen as null has no type to
//! change from. Each distinct (path, class) is one [`DriftEvent`] with a count, never one
//! event per record; `enum_value` events are kept per distinct value (up to
//! [`ENUM_VALUES_KEPT`] per path), so accepting them takes each value into the baseline.
//!
//! What happens to a drifting record is the pipeline's [`DriftPolicy`] for the class.

use std::collections::BTreeMap;

use serde_json::Value;

pub use crate::drift_policy::{DriftAction, DriftPolicy};
pub use crate::names::DriftClass;
use crate::schema::{type_name, types_of};

/// Distinct values kept as their own `enum_value` event per path and run; later ones are
/// counted in one event whose observed value is `(other values)`.
pub const ENUM_VALUES_KEPT: usize = 16;

/// Longest observed (or expected) text an event keeps; longer ones are cut with `…`.
const SHOWN_MAX: usize = 120;

/// One kind of difference at one JSON path, seen `count` times in a run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DriftEvent {
    /// JSON pointer of the field, e.g. `/price` or `/owner/login`.
    pub path: String,
    /// `type_changed`, `null_value`, `new_field`, `missing_field`, `enum_value` or `column_type`.
    pub change: DriftClass,
    /// What the baseline allows (`number`, `string|null`, `"open"|"closed"`), or `absent` for
    /// a new field.
    pub expected: String,
    /// What arrived (`string`; for `enum_value` the value as JSON, e.g. `"archived"`), or
    /// `absent` for a missing field.
    pub observed: String,
    /// Records that showed it in this run.
    pub count: u64,
    /// When it was first seen in this run (RFC 3339).
    pub first_seen: String,
    /// Where it was first seen (`GET /v1/items?... item 3`).
    pub first_at: String,
}

impl DriftEvent {
    /// One sentence for logs and dead letters: `/price: type_changed (expected number, observed string)`.
    pub fn describe(&self) -> String {
        format!("{}: {} (expected {}, observed {})", self.path, self.change, self.expected, self.observed)
    }
}

/// What checking one record found: the events it showed for the first time in this run
/// (to log once each), and the strictest policy among everything it showed.
#[derive(Debug, Default)]
pub struct Checked {
    /// Events new in this run.
    pub fresh: Vec<DriftEvent>,
    /// The strictest action of the record's drifts (`Warn` when it has none).
    pub action: DriftAction,
    /// The drift that decided `action`, when it is stricter than `Warn` (for the dead
    /// letter's reason or the pause's).
    pub cause: Option<Box<DriftEvent>>,
}

/// Compares records with a baseline schema and accumulates drift events.
#[derive(Debug)]
pub struct DriftTracker {
    baseline: Node,
    policy: DriftPolicy,
    events: BTreeMap<EventKey, DriftEvent>,
}

/// (JSON pointer, class, observed value for `enum_value` else empty).
type EventKey = (String, DriftClass, String);

/// Array elements checked per array: enough to see a type change, bounded per record.
const ITEMS_CHECKED: usize = 8;

/// `$ref`s followed while compiling, so a recursive schema ends.
const REF_DEPTH: usize = 16;

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
    /// Allowed non-null values (`enum`, `const`) when the schema lists them, and their
    /// text for events (`"open"|"closed"`); boxed, so nodes without stay small.
    values: Option<Box<(Vec<Value>, String)>>,
}

impl Node {
    fn compile(schema: &Value, root: &Value, depth: usize) -> Node {
        if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
            // A `$ref` with siblings is rare in what we read; the target decides.
            return match resolve(root, target).filter(|_| depth < REF_DEPTH) {
                Some(t) => Node::compile(t, root, depth + 1),
                None => Node::default(),
            };
        }
        let branches = ["anyOf", "oneOf"].iter().find_map(|k| schema.get(*k).and_then(Value::as_array));
        if let Some(branches) = branches.filter(|_| schema.get("type").is_none()) {
            return Node::union(branches.iter().map(|b| Node::compile(b, root, depth + 1)).collect());
        }
        let names = types_of(schema);
        let types = names.iter().map(|t| bit(t)).fold(0, |a, b| a | b);
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let props = schema.get("properties").and_then(Value::as_object).map(|p| {
            let mut v: Vec<(String, Node, bool)> = p
                .iter()
                .map(|(k, s)| (k.clone(), Node::compile(s, root, depth), required.contains(&k.as_str())))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        });
        let required = props.as_ref().map_or(0, |p| p.iter().filter(|x| x.2).count());
        let values: Option<Vec<Value>> = match (schema.get("enum"), schema.get("const")) {
            (Some(Value::Array(e)), _) => Some(e.iter().filter(|v| !v.is_null()).cloned().collect()),
            (_, Some(c)) if !c.is_null() => Some(vec![c.clone()]),
            _ => None,
        };
        // An `enum` listing null allows null even when `type` does not say so.
        let null_listed = schema.get("enum").and_then(Value::as_array).is_some_and(|e| e.iter().any(Value::is_null));
        let mut node = Node {
            types: if null_listed && types != 0 { types | NULL } else { types },
            expected: names.join("|"),
            props,
            required,
            items: schema.get("items").map(|i| Box::new(Node::compile(i, root, depth))),
            values: None,
        };
        node.set_values(values);
        node
    }

    /// `anyOf`/`oneOf`: a value fits when it fits a branch. Types and listed values are
    /// merged; properties and items come from the first branch that has them. Values are
    /// only checked when every branch that allows a non-null value lists its values.
    fn union(branches: Vec<Node>) -> Node {
        let mut out = Node::default();
        let mut names: Vec<&str> = Vec::new();
        let mut values = Some(Vec::new());
        let mut open = false;
        for b in &branches {
            open |= b.types == 0 && b.values.is_none();
            let listed = b.values.as_deref().map(|v| &v.0);
            for name in b.expected.split('|').filter(|n| !n.is_empty()) {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            match (listed, &mut values) {
                (Some(v), Some(acc)) => acc.extend(v.iter().cloned()),
                (None, _) if b.types & !NULL == 0 && b.types != 0 => {} // a null branch lists nothing
                _ => values = None,
            }
        }
        out.types = if open { 0 } else { branches.iter().fold(0, |a, b| a | b.types) };
        out.expected = names.join("|");
        let mut branches = branches;
        for b in &mut branches {
            if out.props.is_none() && b.props.is_some() {
                out.props = b.props.take();
                out.required = b.required;
            }
            if out.items.is_none() {
                out.items = b.items.take();
            }
        }
        out.set_values(values.filter(|v| !v.is_empty()));
        out
    }

    fn set_values(&mut self, values: Option<Vec<Value>>) {
        self.values = values.map(|v| {
            let shown: Vec<String> = v.iter().map(crate::record::canonical_json).collect();
            let text = shorten(&shown.join("|"));
            Box::new((v, text))
        });
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

/// The schema a local `$ref` (`#/$defs/State`, `#/definitions/State`) points to.
fn resolve<'a>(root: &'a Value, target: &str) -> Option<&'a Value> {
    root.pointer(target.strip_prefix('#')?)
}

/// `text`, cut to [`SHOWN_MAX`] characters with `…` when longer.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(SHOWN_MAX) {
        None => text.to_owned(),
        Some((at, _)) => format!("{}…", &text[..at]),
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

/// Whether `v` is one of `values` (numbers compared exactly, by value: `1.0` is `1`).
fn listed(values: &[Value], v: &Value) -> bool {
    values.iter().any(|x| match (x, v) {
        (Value::Number(a), Value::Number(b)) => crate::number::compare(a, b) == std::cmp::Ordering::Equal,
        _ => x == v,
    })
}

impl DriftTracker {
    /// A tracker against `baseline` (a JSON Schema as `schema::infer` writes it, declared,
    /// or derived by schemars), with every class under `warn`.
    pub fn new(baseline: Value) -> Self {
        Self::with_policy(baseline, DriftPolicy::default())
    }

    /// A tracker that also says, per record, what `policy` does with its drift.
    pub fn with_policy(baseline: Value, policy: DriftPolicy) -> Self {
        DriftTracker { baseline: Node::compile(&baseline, &baseline, 0), policy, events: BTreeMap::new() }
    }

    /// The policy records are judged by.
    pub fn policy(&self) -> &DriftPolicy {
        &self.policy
    }

    /// Check one record; returns the events it triggered for the first time in this run
    /// (so the caller can log each once) and the strictest action among all it showed.
    /// Allocates nothing when the record does not drift.
    pub fn check(&mut self, data: &Value, at: &dyn Fn() -> String) -> Checked {
        let mut out = Checked::default();
        let baseline = std::mem::take(&mut self.baseline);
        let mut path: Vec<&str> = Vec::new();
        self.walk(&baseline, data, &mut path, at, &mut out);
        self.baseline = baseline;
        out
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
        out: &mut Checked,
    ) {
        let observed = value_bits(v);
        if observed == NULL {
            if node.types != 0 && node.types & NULL == 0 {
                self.note(path, DriftClass::NullValue, &node.expected, "null", at, out);
            }
            return;
        }
        if node.types & !NULL != 0 && node.types & observed == 0 {
            self.note(path, DriftClass::TypeChanged, &node.expected, type_name(v), at, out);
            return;
        }
        if let Some(values) = node.values.as_deref()
            && !listed(&values.0, v)
        {
            self.note_value(path, &values.1, v, at, out);
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
                            self.walk(n, child, path, at, out);
                        }
                        None if !child.is_null() => {
                            self.note(path, DriftClass::NewField, "absent", type_name(child), at, out)
                        }
                        None => {}
                    }
                    path.pop();
                }
                if required_seen < node.required {
                    for (name, n, req) in node.props.iter().flatten() {
                        if *req && !obj.contains_key(name) {
                            let here: Vec<&str> = path.iter().copied().chain([name.as_str()]).collect();
                            self.note(&here, DriftClass::MissingField, &n.expected, "absent", at, out);
                        }
                    }
                }
            }
            Value::Array(items) => {
                let Some(item) = node.items.as_deref() else { return };
                path.push("*");
                for element in items.iter().take(ITEMS_CHECKED) {
                    self.walk(item, element, path, at, out);
                }
                path.pop();
            }
            _ => {}
        }
    }

    /// Count a drift found outside the baseline check — a source that could not decode a
    /// record because a field changed type (`Reject::drift`), a sink column the value no
    /// longer fits — and say what the policy does with its record. `fresh` in the result
    /// holds the event when it is new in this run.
    pub fn record(&mut self, event: DriftEvent) -> Checked {
        let change = event.change;
        let value = if change == DriftClass::EnumValue { event.observed.clone() } else { String::new() };
        let key = (event.path.clone(), change, value);
        let mut out = Checked::default();
        match self.events.get_mut(&key) {
            Some(e) => e.count += event.count.max(1),
            None => {
                out.fresh.push(event.clone());
                self.events.insert(key, event.clone());
            }
        }
        let action = self.policy.action(change);
        if action > DriftAction::Warn {
            out.action = action;
            out.cause = Some(Box::new(event));
        }
        out
    }

    /// Count a coercion the source's decoding made ([`crate::Record::coerced`]: a null or a
    /// missing value read as a default) — unless the baseline allows what the vendor sent
    /// (a null where null is allowed, an absent field that is optional), as it does once
    /// such a drift is accepted.
    pub fn record_coercion(&mut self, event: &DriftEvent) -> Checked {
        if self.baseline_allows(&event.path, event.change) {
            return Checked::default();
        }
        self.record(event.clone())
    }

    fn baseline_allows(&self, path: &str, change: DriftClass) -> bool {
        let mut node = &self.baseline;
        let mut required = false;
        for seg in path.split('/').skip(1) {
            let seg = seg.replace("~1", "/").replace("~0", "~");
            let next = if seg == "*" {
                required = false;
                node.items.as_deref()
            } else {
                node.prop(&seg, &mut 0).map(|(_, n, req)| {
                    required = *req;
                    n
                })
            };
            match next {
                Some(n) => node = n,
                None => return false,
            }
        }
        match change {
            DriftClass::NullValue => node.types == 0 || node.types & NULL != 0,
            DriftClass::MissingField => !required,
            _ => false,
        }
    }

    #[cold]
    #[inline(never)]
    fn note_value(&mut self, path: &[&str], expected: &str, v: &Value, at: &dyn Fn() -> String, out: &mut Checked) {
        let shown = shorten(&crate::record::canonical_json(v));
        self.note(path, DriftClass::EnumValue, expected, &shown, at, out);
    }

    // Off the hot path: only a drifting value gets here.
    #[cold]
    #[inline(never)]
    fn note(
        &mut self,
        path: &[&str],
        change: DriftClass,
        expected: &str,
        observed: &str,
        at: &dyn Fn() -> String,
        out: &mut Checked,
    ) {
        let mut pointer = String::new();
        for seg in path {
            push_segment(&mut pointer, seg);
        }
        let mut observed = observed;
        let mut value = String::new();
        if change == DriftClass::EnumValue {
            value = observed.to_owned();
            let known = self.events.contains_key(&(pointer.clone(), change, value.clone()));
            if !known && self.events.keys().filter(|k| k.0 == pointer && k.1 == change).count() >= ENUM_VALUES_KEPT {
                observed = "(other values)";
                value = observed.to_owned();
            }
        }
        let key = (pointer, change, value);
        let action = self.policy.action(change);
        let e = match self.events.get_mut(&key) {
            Some(e) => {
                e.count += 1;
                e
            }
            None => {
                let e = DriftEvent {
                    path: key.0.clone(),
                    change,
                    expected: expected.to_owned(),
                    observed: observed.to_owned(),
                    count: 1,
                    first_seen: crate::now_rfc3339(),
                    first_at: at(),
                };
                out.fresh.push(e.clone());
                self.events.entry(key).or_insert(e)
            }
        };
        if action > out.action {
            out.action = action;
            out.cause = Some(Box::new(DriftEvent { count: 1, ..e.clone() }));
        }
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

#[path = "drift_accept.rs"]
mod accepting;
pub use accepting::accept;

#[cfg(test)]
#[path = "drift_tests.rs"]
mod tests;
