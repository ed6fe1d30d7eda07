//! Turning one source record into a mapped, keyed, hashed record — or a dead letter.
//! Shared by a stream's mapper and dead-letter replay so both treat records identically.

use std::sync::Arc;

use serde_json::Value;

use crate::connector::{Reject, Transform};
use crate::json::json_type_phrase;
use crate::now_rfc3339;
use crate::record::{ContentHash, Key, Location, Record, canonical_json};
use crate::state::DeadLetter;

/// Everything needed to map records of one stream.
pub(crate) struct Preparer {
    pub pipeline: String,
    pub stream: String,
    pub mapping: Arc<dyn Transform>,
    pub key_columns: Vec<String>,
    /// Whether the mapping is the identity: then the mapped record is the raw input and no
    /// copy is kept.
    pub identity: bool,
}

/// A mapped record ready for the ledger and the sink.
pub(crate) struct Prepared {
    pub record: Record,
    pub key: Key,
    pub hash: ContentHash,
    /// Raw input, kept for a dead letter should the sink reject the record (`None` when the
    /// mapping is the identity: the record's data is the raw input).
    pub raw: Option<Value>,
    /// The ledger knew the key (with another hash): writing it is an update.
    pub known: bool,
}

impl Preparer {
    /// Map a record; each output gets its key and hash. Failures become dead letters that
    /// name the location and field, with the raw input.
    pub fn prepare(&self, record: Record) -> Result<Vec<Prepared>, Box<DeadLetter>> {
        if self.identity {
            // (A mapping refuses a non-object itself, naming what it found.)
            if !record.data.is_object() {
                return Err(Box::new(self.not_an_object(&record)));
            }
            return match self.key_of(&record.data) {
                Ok(key) => {
                    let hash = ContentHash::of(&record.data);
                    let record = Record { key: Some(key.clone()), ..record };
                    Ok(vec![Prepared { record, key, hash, raw: None, known: false }])
                }
                Err(bad) => Err(Box::new(self.bad_key(
                    &bad,
                    &record.provenance.endpoint,
                    &record.location,
                    canonical_json(&record.data),
                ))),
            };
        }
        let raw = record.data.clone();
        let outputs = match self.mapping.apply(record.data) {
            Ok(o) => o,
            Err(e) => {
                let msg = format!(
                    "{}: mapping failed at field `{}`: {}",
                    where_of(&record.provenance.endpoint, &record.location),
                    e.path,
                    e.reason
                );
                // The key as the raw record has it (unless the mapping renames it), so
                // `dovetail explain` finds the record by the key a user knows.
                let key = self.key_of(&raw).ok();
                return Err(Box::new(self.dead_letter(
                    key.as_ref(),
                    "data",
                    msg,
                    Some(e.path),
                    &record.provenance.endpoint,
                    &record.location,
                    canonical_json(&raw),
                )));
            }
        };
        let mut out = Vec::with_capacity(outputs.len());
        for data in outputs {
            let key = match self.key_of(&data) {
                Ok(k) => k,
                Err(bad) => {
                    return Err(Box::new(self.bad_key(
                        &bad,
                        &record.provenance.endpoint,
                        &record.location,
                        canonical_json(&raw),
                    )));
                }
            };
            let hash = ContentHash::of(&data);
            let rec = Record {
                data,
                location: record.location,
                provenance: record.provenance.clone(),
                key: Some(key.clone()),
                coerced: None,
                deleted: record.deleted,
            };
            out.push(Prepared { record: rec, key, hash, raw: Some(raw.clone()), known: false });
        }
        Ok(out)
    }

    /// The key of a mapped record, or the first key column it lacks or holds a non-scalar in.
    /// Keys are scalars (string, number, boolean): an object or array as a key would make
    /// the key's identity depend on a whole document, and null is no key at all.
    fn key_of(&self, data: &Value) -> Result<Key, BadKey> {
        let mut parts = Vec::with_capacity(self.key_columns.len());
        for col in &self.key_columns {
            match data.get(col) {
                Some(v) if v.is_object() || v.is_array() => {
                    return Err(BadKey { column: col.clone(), found: Some(json_type_phrase(v)) });
                }
                Some(v) if !v.is_null() => parts.push(v),
                _ => return Err(BadKey { column: col.clone(), found: None }),
            }
        }
        Ok(Key::from_parts(&parts))
    }

    fn bad_key(&self, bad: &BadKey, endpoint: &str, location: &Option<Location>, raw: String) -> DeadLetter {
        let at = where_of(endpoint, location);
        let col = &bad.column;
        let msg = match bad.found {
            None => format!("{at}: missing primary key field `{col}`"),
            Some(found) => {
                format!("{at}: primary key field `{col}` is {found}; a key must be a string, a number or a boolean")
            }
        };
        self.dead_letter(None, "data", msg, Some(col.clone()), endpoint, location, raw)
    }

    /// The dead letter of a record that is not a JSON object (e.g. a string in the array of
    /// records): it has no fields, so it has no key to miss.
    fn not_an_object(&self, record: &Record) -> DeadLetter {
        let (endpoint, location) = (&record.provenance.endpoint, &record.location);
        let msg = format!("{} is {}, not an object", where_of(endpoint, location), json_type_phrase(&record.data));
        self.dead_letter(None, "data", msg, None, endpoint, location, canonical_json(&record.data))
    }

    /// A dead letter for a record the source could not decode.
    pub fn reject(&self, endpoint: &str, r: Reject) -> DeadLetter {
        self.dead_letter(None, "data", r.reason, r.path, endpoint, &r.location, r.raw)
    }

    /// A dead letter with this stream's identity.
    #[allow(clippy::too_many_arguments)]
    pub fn dead_letter(
        &self,
        key: Option<&Key>,
        kind: &str,
        reason: String,
        path: Option<String>,
        endpoint: &str,
        location: &Option<crate::record::Location>,
        raw: String,
    ) -> DeadLetter {
        DeadLetter {
            id: 0,
            pipeline: self.pipeline.clone(),
            stream: self.stream.clone(),
            key: key.map(|k| k.as_str().to_owned()),
            kind: kind.to_owned(),
            reason,
            path,
            location: Some(where_of(endpoint, location)),
            raw,
            created_at: now_rfc3339(),
            raw_len: None,
            seen_count: 1,
        }
    }
}

/// A key column a record lacks (`found: None`) or holds a non-scalar in (its type phrase).
struct BadKey {
    column: String,
    found: Option<&'static str>,
}

/// `orders.jsonl line 17`, or just the endpoint.
pub(crate) fn where_of(endpoint: &str, loc: &Option<crate::record::Location>) -> String {
    match loc {
        Some(l) => format!("{endpoint} {l}"),
        None => endpoint.to_owned(),
    }
}
