//! The sink contract: what design.md promises for every sink, checked on the real sink
//! (real files and databases in a temp dir — never a mock) through the real engine.
//!
//! ```text
//! SinkContract::new("sqlite", |dir| SqliteSink::build(config(dir), &BuildCx::default()), read_rows)
//!     .bad_record(json!({ "id": 99, "NAME": "clashes with `name`" }))
//!     .run()
//!     .await;
//! ```
//!
//! `read` gives back what the destination holds for a stream as a consumer sees it (for an
//! append-only log, the last line per key). Fields whose names start with `_` are dovetail's
//! bookkeeping (`_synced_at`, `_deleted`) and are left out of comparisons.

use std::path::Path;
use std::sync::Arc;

use dovetail_core::testing::{MemorySource, MemoryState};
use dovetail_core::{
    Batch, Cx, DeleteMode, Error, HistoryStore, Key, Pipeline, Provenance, Record, RunOptions, RunOutcome, Sink,
    SinkStream,
};
use serde_json::{Value, json};

use super::{CheckResult, Outcome};

/// Builds the sink under test writing into the given (empty, temporary) directory.
pub type BuildSink = Arc<dyn Fn(&Path) -> Result<Arc<dyn Sink>, Error> + Send + Sync>;

/// Reads back what the sink stored in a directory for a stream, one JSON object per row.
pub type ReadBack = Arc<dyn Fn(&Path, &str) -> Result<Vec<Value>, String> + Send + Sync>;

/// The stream every sink check writes.
const STREAM: &str = "contract_items";
/// The pipeline name of the sink checks.
const PIPELINE: &str = "contract";

/// The contract of one sink connector, built by its `tests/contract.rs`.
pub struct SinkContract {
    connector: String,
    build: BuildSink,
    read: ReadBack,
    bad_record: Option<Value>,
    /// Why no record can be refused by this sink (`refuses_nothing`).
    refuses_nothing: Option<String>,
    example_config: Option<(Value, super::ParseConfig)>,
}

impl std::fmt::Debug for SinkContract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkContract").field("connector", &self.connector).finish_non_exhaustive()
    }
}

/// The records the checks write: a key, text, an exact decimal, a nested object.
fn records() -> Vec<Value> {
    (1..=5)
        .map(|i| {
            let amount: Value = serde_json::from_str(&format!("1234567890.12345678{i}")).unwrap_or(Value::Null);
            json!({ "id": i, "name": format!("item {i}"), "amount": amount, "meta": { "rank": i } })
        })
        .collect()
}

/// Rows by `id` without `_` bookkeeping fields, sorted.
fn normalize(rows: Vec<Value>) -> Vec<Value> {
    let mut rows: Vec<Value> = rows
        .into_iter()
        .map(|mut r| {
            if let Some(o) = r.as_object_mut() {
                o.retain(|k, _| !k.starts_with('_'));
            }
            r
        })
        .collect();
    rows.sort_by_key(|r| r.get("id").map(ToString::to_string).unwrap_or_default());
    rows
}

fn ids(rows: &[Value]) -> Vec<String> {
    rows.iter().map(|r| r.get("id").map(ToString::to_string).unwrap_or_default()).collect()
}

impl SinkContract {
    /// The contract of a sink: `build` makes it over a temp directory, `read` reads back a
    /// stream's rows from that directory.
    pub fn new<S, B, R>(connector: &str, build: B, read: R) -> SinkContract
    where
        S: Sink + 'static,
        B: Fn(&Path) -> Result<S, Error> + Send + Sync + 'static,
        R: Fn(&Path, &str) -> Result<Vec<Value>, String> + Send + Sync + 'static,
    {
        SinkContract {
            connector: connector.to_owned(),
            build: Arc::new(move |dir: &Path| build(dir).map(|s| Arc::new(s) as Arc<dyn Sink>)),
            read: Arc::new(read),
            bad_record: None,
            refuses_nothing: None,
            example_config: None,
        }
    }

    /// The sink's documented example config, for `sink_config_rejects_an_unknown_key`: it
    /// must deserialize as `C`, and the same with an unknown key must be refused by name.
    pub fn example_config<C: serde::de::DeserializeOwned>(mut self, example: Value) -> Self {
        let parse: super::ParseConfig =
            Arc::new(|v: Value| serde_json::from_value::<C>(v).map(|_| ()).map_err(|e| e.to_string()));
        self.example_config = Some((example, parse));
        self
    }

    /// A record (with an `id`) this sink refuses permanently, for
    /// `rejects_bad_record_keeps_rest`; without one (or `refuses_nothing`) that check fails.
    pub fn bad_record(mut self, record: Value) -> Self {
        self.bad_record = Some(record);
        self
    }

    /// The sink accepts every JSON object, so `rejects_bad_record_keeps_rest` is skipped: why.
    pub fn refuses_nothing(mut self, why: &str) -> Self {
        self.refuses_nothing = Some(why.to_owned());
        self
    }

    /// Run every check, print one `contract:` line each, and return the results (no panic).
    pub async fn results(&self) -> Vec<CheckResult> {
        let checks: Vec<(&'static str, Outcome)> = vec![
            ("sink_replay_is_idempotent", self.replay_is_idempotent().await),
            ("sink_rejects_bad_record_keeps_rest", self.rejects_bad_record_keeps_rest().await),
            ("sink_config_rejects_an_unknown_key", super::checks::example_config_check(self.example_config.as_ref())),
        ];
        checks
            .into_iter()
            .map(|(check, outcome)| {
                let r = CheckResult { connector: self.connector.clone(), check, outcome };
                println!("{r}");
                r
            })
            .collect()
    }

    /// Run every check and print one `contract:` line each.
    ///
    /// # Panics
    /// When any check failed (listing the failures), so `cargo test` fails.
    pub async fn run(self) {
        let failed: Vec<String> = self
            .results()
            .await
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Fail(_)))
            .map(ToString::to_string)
            .collect();
        assert!(failed.is_empty(), "{} sink contract check(s) failed:\n{}", failed.len(), failed.join("\n"));
    }

    fn read(&self, dir: &Path) -> Result<Vec<Value>, String> {
        (self.read)(dir, STREAM).map(normalize).map_err(|e| format!("reading back failed: {e}"))
    }

    /// Write `records` as one batch, straight to a sink over `dir` (what the engine does
    /// before it commits the checkpoint).
    async fn write_directly(&self, dir: &Path, records: &[Value]) -> Result<(), String> {
        let sink = (self.build)(dir).map_err(|e| format!("building the sink failed: {}", e.report()))?;
        let stream = Arc::new(SinkStream {
            name: STREAM.into(),
            key_columns: vec!["id".into()],
            schema: None,
            delete_mode: DeleteMode::default(),
        });
        let prov = Arc::new(Provenance::default());
        let recs: Vec<Record> = records
            .iter()
            .map(|d| {
                let mut r = Record::new(d.clone(), prov.clone());
                r.key = d.get("id").map(|id| Key::from_parts(&[id]));
                r
            })
            .collect();
        sink.open(&stream, &Cx::default()).await.map_err(|e| format!("open failed: {}", e.report()))?;
        let report = sink
            .write(Batch::new(stream, recs.into()), &Cx::default())
            .await
            .map_err(|e| format!("write failed: {}", e.report()))?;
        match report.rejected.first() {
            None => Ok(()),
            Some((i, e)) => Err(format!("record {i} refused: {}", e.report())),
        }
    }

    /// Run the engine over `records` into a sink over `dir`, on `state`.
    async fn run_pipeline(
        &self,
        dir: &Path,
        records: Vec<Value>,
        state: &MemoryState,
        batch_size: usize,
    ) -> Result<dovetail_core::RunReport, String> {
        let sink = (self.build)(dir).map_err(|e| format!("building the sink failed: {}", e.report()))?;
        Pipeline::builder(PIPELINE)
            .source(MemorySource::new(STREAM, &["id"], records))
            .sink_arc(sink)
            .state(state.clone())
            .batch_size(batch_size)
            .build()
            .map_err(|e| format!("building the pipeline failed: {}", e.report()))?
            .run(RunOptions::default())
            .await
            .map_err(|e| format!("the run failed: {}", e.report()))
    }

    /// The same batch written twice stores each row once; a batch the engine replays after
    /// a crash before its checkpoint (written, state empty) stores each row once; a rerun
    /// writes nothing.
    async fn replay_is_idempotent(&self) -> Outcome {
        let r: Result<String, String> = async {
            let want = normalize(records());
            let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
            let twice = tmp.path().join("twice");
            self.write_directly(&twice, &records()).await?;
            let once = self.read(&twice)?;
            if ids(&once) != ids(&want) {
                return Err(format!("after one write the sink holds ids {:?}, expected {:?}", ids(&once), ids(&want)));
            }
            self.write_directly(&twice, &records()).await?;
            let again = self.read(&twice)?;
            if again != once {
                return Err(format!(
                    "the same batch written twice stores {} row(s), ids {:?}",
                    again.len(),
                    ids(&again)
                ));
            }
            // A crash after the sink acknowledged, before the checkpoint: the state knows
            // nothing, so the next run sends the same records again.
            let crashed = tmp.path().join("crashed");
            self.write_directly(&crashed, &records()).await?;
            let state = MemoryState::default();
            let report = self.run_pipeline(&crashed, records(), &state, 100).await?;
            if report.outcome != RunOutcome::Succeeded {
                return Err(format!("the run after the crash: {}", report.error.unwrap_or_default()));
            }
            let replayed = self.read(&crashed)?;
            if replayed != once {
                return Err(format!(
                    "after the replay the sink holds {} row(s), ids {:?}",
                    replayed.len(),
                    ids(&replayed)
                ));
            }
            let rerun = self.run_pipeline(&crashed, records(), &state, 100).await?;
            let written = rerun.total(|s| s.written);
            if written != 0 || self.read(&crashed)? != once {
                return Err(format!("a rerun wrote {written} record(s)"));
            }
            Ok(format!("{} rows once after a double write, a replay after a crash, and a rerun", once.len()))
        }
        .await;
        r.map_or_else(Outcome::Fail, Outcome::Pass)
    }

    /// A record the sink refuses is dead-lettered with a reason; the rest are stored.
    async fn rejects_bad_record_keeps_rest(&self) -> Outcome {
        let Some(bad) = &self.bad_record else {
            return match &self.refuses_nothing {
                Some(why) => Outcome::Skipped(why.clone()),
                None => Outcome::Fail(
                    "no record this sink refuses was given: give one with `.bad_record(..)`, or state why there is none with `.refuses_nothing(why)`".into(),
                ),
            };
        };
        let r: Result<String, String> = async {
            let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
            let mut input = records();
            input.insert(2, bad.clone());
            let state = MemoryState::default();
            // Batches of two: the destination is set up from good records before the bad one
            // (a sink deriving its table from the first batch sees the bad record later).
            let report = self.run_pipeline(tmp.path(), input, &state, 2).await?;
            if report.outcome != RunOutcome::Succeeded {
                return Err(format!("one refused record failed the run: {}", report.error.unwrap_or_default()));
            }
            let dead = state.dead_letters(Some(PIPELINE), Some(STREAM), 100).await.map_err(|e| e.report())?;
            let stored = self.read(tmp.path())?;
            let want = normalize(records());
            match dead.as_slice() {
                [d] if !d.reason.trim().is_empty() && ids(&stored) == ids(&want) => Ok(format!(
                    "dead-lettered ({}); the other {} stored",
                    d.reason.chars().take(80).collect::<String>(),
                    want.len()
                )),
                _ => Err(format!(
                    "{} dead letter(s) {:?}; stored ids {:?}, expected {:?}",
                    dead.len(),
                    dead.iter().map(|d| &d.reason).collect::<Vec<_>>(),
                    ids(&stored),
                    ids(&want)
                )),
            }
        }
        .await;
        r.map_or_else(Outcome::Fail, Outcome::Pass)
    }
}
