//! What `dovetail explain PIPELINE STREAM KEY` tells, and how long it is kept.
//!
//! The engine captures each record's story at commit time, in the same state transaction
//! as its ledger row ([`ExplainBatch`] inside [`crate::state::Commit`]): the page that
//! fetched it ([`Fetch`]), the raw source record and the write outcome ([`Story`], one per
//! key, latest version only), and the mapping in force for the stream in that run. Records
//! skipped as unchanged cost one key in their page's [`Fetch::unchanged`] list, not a row.
//! [`Retention`] bounds run history, stories, drift events and old dead letters.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::mapping::Mapping;
use crate::record::{Key, Provenance};

/// How much of each record's story a run keeps for `dovetail explain` (`[state] explain`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExplainCapture {
    /// Request, outcome and the raw source record of every written or dead-lettered record
    /// (costs ~30 % CPU on a bulk initial load: docs/explain.md).
    Full,
    /// Request and outcome; the raw record only for dead letters (explain shows no raw data
    /// or output diff for written records). The default: ~5 % CPU on a bulk initial load.
    #[default]
    Metadata,
    /// Nothing: `dovetail explain` only knows what the ledger and dead letters hold.
    Off,
}

/// How long run history and what explain needs are kept (`[state.retention]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Runs kept per pipeline, newest first (`None`: no count limit). The newest run of a
    /// pipeline is always kept.
    pub runs: Option<u64>,
    /// Runs (with their stories and fetches) and accepted drift events older than this go.
    pub max_age: Option<Duration>,
    /// Dead letters not seen for this long go (`None`, the default: dead letters stay until
    /// replayed, because they are records still owed to the sink).
    pub dead_letters_max_age: Option<Duration>,
    /// Rows deleted per write transaction, so a run's commits never wait long behind pruning.
    pub batch: usize,
}

/// Default `[state.retention] runs`.
pub const DEFAULT_RETAIN_RUNS: u64 = 50;
/// Default `[state.retention] max_age`: 30 days.
pub const DEFAULT_RETAIN_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

impl Default for Retention {
    fn default() -> Self {
        Retention {
            runs: Some(DEFAULT_RETAIN_RUNS),
            max_age: Some(DEFAULT_RETAIN_AGE),
            dead_letters_max_age: None,
            batch: 1000,
        }
    }
}

/// What one pruning pass removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    /// Run records.
    pub runs: u64,
    /// Fetch rows (pages) of pruned runs.
    pub fetches: u64,
    /// Record stories of pruned runs.
    pub stories: u64,
    /// Accepted drift events.
    pub drift_events: u64,
    /// Dead letters (only with `dead_letters_max_age`).
    pub dead_letters: u64,
}

impl Pruned {
    /// Whether anything was removed.
    pub fn is_empty(&self) -> bool {
        *self == Pruned::default()
    }
}

/// The write outcome of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Written; the ledger did not know the key.
    Inserted,
    /// Written; the ledger knew the key with another content hash.
    Updated,
    /// Read again with the content hash the ledger holds: not written.
    Unchanged,
    /// Not delivered: see the reason.
    DeadLettered,
}

impl Outcome {
    /// The stored name (`inserted`, `updated`, `unchanged`, `dead_lettered`).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Inserted => "inserted",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
    /// Parse a stored name.
    pub fn parse(s: &str) -> Option<Outcome> {
        Some(match s {
            "inserted" => Outcome::Inserted,
            "updated" => Outcome::Updated,
            "unchanged" => Outcome::Unchanged,
            "dead_lettered" => Outcome::DeadLettered,
            _ => return None,
        })
    }
}

/// One fetched page of a commit: the request that produced it and the keys it brought
/// that were unchanged.
#[derive(Debug, Clone)]
pub struct Fetch {
    /// The page's provenance (URL with secrets redacted, status, request id, time).
    pub provenance: Arc<Provenance>,
    /// Keys read unchanged from this page (their story is this fetch and run).
    pub unchanged: Vec<Key>,
}

/// One record's latest story, as a commit stores it.
#[derive(Debug, Clone)]
pub struct Story {
    /// Canonical primary key.
    pub key: Key,
    /// Index into [`ExplainBatch::fetches`] (`None`: the page is not known, e.g. a dead
    /// letter the source could not decode).
    pub fetch: Option<usize>,
    /// Where in the page, for a dead letter (`<endpoint> line 17`); a written record's is
    /// its record's [`ExplainBatch::location`].
    pub location: Option<String>,
    /// What happened.
    pub outcome: Outcome,
    /// Why, for a dead letter.
    pub reason: Option<String>,
    /// The raw source record as compact JSON, when the story carries it as text (dead
    /// letters); see [`ExplainBatch::raw_text`].
    pub raw: Option<String>,
    /// Index of the record in [`ExplainBatch::records`] whose raw input this story keeps
    /// (serialized by the state store off the engine's writer path).
    pub item: Option<usize>,
}

/// The explain part of a [`crate::state::Commit`].
#[derive(Debug, Clone, Default)]
pub struct ExplainBatch {
    /// The run that commits it.
    pub run_id: i64,
    /// The stream's mapping config as JSON (`None`: identity or a mapping in code), and its
    /// output primary-key columns; stored once per stream and run.
    pub mapping: Option<Arc<str>>,
    /// Output primary-key columns of the stream, in order.
    pub key_columns: Arc<[String]>,
    /// Pages of this batch.
    pub fetches: Vec<Fetch>,
    /// Stories of written and dead-lettered records.
    pub stories: Vec<Story>,
    /// The batch's records as the sink got them (shared, not copied).
    pub records: Option<Arc<[crate::record::Record]>>,
    /// Raw inputs of those records where a mapping changed them (`None`: the record's data
    /// is its raw input).
    pub raws: Vec<Option<Value>>,
    /// Keep the raw records (`full` capture); without it only outcomes and pages are kept.
    pub with_raw: bool,
    /// Locations of the written records when `records` is not kept (`metadata` capture).
    pub locations: Vec<Option<crate::record::Location>>,
}

impl ExplainBatch {
    /// Where a written record was in its page (`line 17`, `item 3`).
    pub fn location(&self, story: &Story) -> Option<crate::record::Location> {
        let i = story.item?;
        match &self.records {
            Some(r) => r.get(i)?.location,
            None => *self.locations.get(i)?,
        }
    }

    /// The raw source record of a story as compact JSON (`None` in `metadata` capture).
    pub fn raw_text(&self, story: &Story) -> Option<String> {
        if story.raw.is_some() {
            return story.raw.clone();
        }
        if !self.with_raw {
            return None;
        }
        let i = story.item?;
        let v = match self.raws.get(i) {
            Some(Some(raw)) => raw,
            _ => &self.records.as_ref()?.get(i)?.data,
        };
        Some(crate::record::canonical_json(v))
    }
}

/// A stored fetch, as explain reads it back.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredFetch {
    /// Run that read the page.
    pub run_id: i64,
    /// Request method (`GET`; sources only read).
    pub method: String,
    /// Endpoint (URL with secret query values redacted, or a file path).
    pub url: String,
    /// HTTP status, when the connector recorded it.
    pub status: Option<u16>,
    /// The vendor's request id.
    pub request_id: Option<String>,
    /// Vendor API version sent.
    pub api_version: Option<String>,
    /// When the page was fetched (RFC 3339).
    pub fetched_at: String,
    /// Served from the cache while the remote was down.
    pub stale: bool,
    /// Connector kind.
    pub connector: String,
}

impl StoredFetch {
    /// The fetch of a page read by run `run_id`.
    pub fn of(run_id: i64, p: &Provenance) -> StoredFetch {
        StoredFetch {
            run_id,
            method: method_of(&p.endpoint).to_owned(),
            url: p.endpoint.clone(),
            status: p.status,
            request_id: p.request_id.clone(),
            api_version: p.api_version.clone(),
            fetched_at: p.fetched_at.clone(),
            stale: p.stale,
            connector: p.connector.clone(),
        }
    }
}

/// `GET` for an HTTP endpoint (sources only read), `READ` for a file or anything else.
pub fn method_of(endpoint: &str) -> &'static str {
    if endpoint.starts_with("http://") || endpoint.starts_with("https://") { "GET" } else { "READ" }
}

/// Everything the state store knows about one key of one stream.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeyHistory {
    /// Latest stored story: (run id, outcome, reason, raw, location, the fetch if kept).
    pub story: Option<StoredStory>,
    /// The latest run after the story that read the key unchanged, with its fetch.
    pub unchanged: Option<StoredFetch>,
    /// The ledger row: content hash (hex), pass, destination id.
    pub ledger: Option<LedgerView>,
    /// The mapping config stored for the story's run (`None`: identity or code).
    pub mapping: Option<Value>,
    /// Output primary-key columns recorded with the story's run.
    pub key_columns: Vec<String>,
    /// The newest dead letter stored with this key.
    pub dead_letter: Option<crate::state::DeadLetter>,
}

/// A stored story.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredStory {
    /// Run that wrote it.
    pub run_id: i64,
    /// What happened.
    pub outcome: Outcome,
    /// Why, for a dead letter.
    pub reason: Option<String>,
    /// Raw source record (compact JSON), unless captured as metadata only.
    pub raw: Option<String>,
    /// Position in the page.
    pub location: Option<String>,
    /// The request, unless pruned.
    pub fetch: Option<StoredFetch>,
}

/// A ledger row as explain shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LedgerView {
    /// Content hash, lowercase hex.
    pub hash: String,
    /// Pass that last wrote or touched it.
    pub pass: u64,
    /// Destination id (create-only sinks).
    pub dest_id: Option<String>,
}

/// How one output field relates to the raw record.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FieldChange {
    /// `unchanged`, `renamed`, `cast`, `changed`, `dropped` or `added`.
    pub change: &'static str,
    /// Field in the raw record (`None` for an added field).
    pub from: Option<String>,
    /// Field in the output (`None` for a dropped field).
    pub to: Option<String>,
    /// Raw value.
    pub before: Option<Value>,
    /// Output value.
    pub after: Option<Value>,
}

/// Field-level diff of a raw record and its mapped output (top-level fields; nested
/// `columns` show as added). With the declarative mapping at hand, renames and casts are
/// named as such.
pub fn field_diff(raw: &Value, out: &Value, mapping: Option<&Mapping>) -> Vec<FieldChange> {
    let empty = Map::new();
    let r = raw.as_object().unwrap_or(&empty);
    let o = out.as_object().unwrap_or(&empty);
    let mut seen_out: Vec<&str> = Vec::new();
    let mut diff = Vec::new();
    for (name, before) in r {
        let target = match mapping {
            Some(m) => crate::connector::Transform::output_path(m, name),
            None => Some(name.clone()),
        };
        match target.as_deref().and_then(|t| o.get_key_value(t)) {
            Some((to, after)) => {
                seen_out.push(to);
                let cast = mapping.is_some_and(|m| m.cast.contains_key(to.as_str()));
                let change = match (to == name, before == after) {
                    (true, true) => "unchanged",
                    (false, _) => "renamed",
                    (true, false) if cast => "cast",
                    (true, false) => "changed",
                };
                diff.push(FieldChange {
                    change,
                    from: Some(name.clone()),
                    to: Some(to.clone()),
                    before: Some(before.clone()),
                    after: Some(after.clone()),
                });
            }
            None => diff.push(FieldChange {
                change: "dropped",
                from: Some(name.clone()),
                to: None,
                before: Some(before.clone()),
                after: None,
            }),
        }
    }
    for (name, after) in o {
        if !seen_out.contains(&name.as_str()) {
            diff.push(FieldChange {
                change: "added",
                from: None,
                to: Some(name.clone()),
                before: None,
                after: Some(after.clone()),
            });
        }
    }
    diff
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::mapping::CastType;

    #[test]
    fn diff_names_renames_casts_drops_and_additions() {
        let m = Mapping::builder()
            .rename("name", "full_name")
            .cast("amount", CastType::Number)
            .drop("secret_note")
            .constant("source", json!("shop"))
            .build();
        let raw = json!({"id": 1, "name": "Ada", "amount": "12.50", "secret_note": "x"});
        let out = m.map(raw.clone()).unwrap();
        let d = field_diff(&raw, &out, Some(&m));
        let by = |c: &str| {
            d.iter().filter(|f| f.change == c).map(|f| f.from.clone().or(f.to.clone()).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(by("unchanged"), ["id"]);
        assert_eq!(by("renamed"), ["name"]);
        assert_eq!(by("cast"), ["amount"]);
        assert_eq!(by("dropped"), ["secret_note"]);
        assert_eq!(by("added"), ["source"]);
        let renamed = d.iter().find(|f| f.change == "renamed").unwrap();
        assert_eq!(renamed.to.as_deref(), Some("full_name"));
    }

    #[test]
    fn identity_diff_is_all_unchanged() {
        let raw = json!({"a": 1, "b": [1, 2]});
        assert!(field_diff(&raw, &raw, None).iter().all(|f| f.change == "unchanged"));
    }
}
