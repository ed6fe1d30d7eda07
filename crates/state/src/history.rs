//! Synchronous operations on run history and schema baselines.

use dovetail_core::drift::DriftEvent;
use dovetail_core::state::{DeadLetterCount, DeadLetterGroup, RunRecord, StoredDrift};
use dovetail_core::{Error, RunOutcome, now_rfc3339};
use rusqlite::{OptionalExtension, Row, params};
use serde_json::Value;

use crate::Db;
use crate::error::{DbResultExt, json_err, stored_name};
use crate::ops::limit;

/// Outcome of a run that has not finished (yet).
pub const RUNNING: RunOutcome = RunOutcome::Running;
/// Outcome given to a `running` run once its pipeline's lock is taken again: the process that
/// started it is gone and can never finish it.
pub const ABANDONED: RunOutcome = RunOutcome::Abandoned;

/// Insert a `running` run and return its id.
pub(crate) fn begin_run(db: &mut Db, pipeline: &str, started_at: &str) -> Result<i64, Error> {
    db.conn
        .prepare_cached("INSERT INTO runs (pipeline, started_at, outcome) VALUES (?1, ?2, ?3)")
        .and_then(|mut st| st.insert((pipeline, started_at, RUNNING.as_str())))
        .op("recording the start of a run")
}

/// Store a run's end, outcome and report.
pub(crate) fn finish_run(
    db: &mut Db,
    id: i64,
    finished_at: &str,
    outcome: RunOutcome,
    report: &Value,
) -> Result<(), Error> {
    let report = serde_json::to_string(report).map_err(|e| json_err("the run report", e))?;
    let n = db
        .conn
        .prepare_cached("UPDATE runs SET finished_at = ?2, outcome = ?3, report = ?4 WHERE id = ?1")
        .and_then(|mut st| st.execute(params![id, finished_at, outcome.as_str(), report]))
        .op("recording the end of a run")?;
    if n == 0 {
        return Err(Error::internal(format!("state store: there is no run with id {id} to finish")));
    }
    Ok(())
}

/// Mark the pipeline's `running` runs [`ABANDONED`]; called with its run lock held.
pub(crate) fn abandon_runs(db: &mut Db, pipeline: &str) -> Result<usize, Error> {
    db.conn
        .prepare_cached("UPDATE runs SET outcome = ?3 WHERE pipeline = ?1 AND outcome = ?2")
        .and_then(|mut st| st.execute((pipeline, RUNNING.as_str(), ABANDONED.as_str())))
        .op("marking abandoned runs")
}

/// A run without its report, and the stored report's text; `Err` for an outcome this
/// dovetail does not know.
fn run_row(r: &Row<'_>) -> rusqlite::Result<Result<(RunRecord, Option<String>), Error>> {
    let outcome = match stored_name("runs", "outcome", &r.get::<_, String>(4)?) {
        Ok(o) => o,
        Err(e) => return Ok(Err(e)),
    };
    let run = RunRecord {
        id: r.get(0)?,
        pipeline: r.get(1)?,
        started_at: r.get(2)?,
        finished_at: r.get(3)?,
        outcome,
        report: None,
    };
    Ok(Ok((run, r.get(5)?)))
}

/// Every pipeline with a run, by name (from the `runs_by_pipeline` index, no report is read).
pub(crate) fn run_pipelines(db: &mut Db) -> Result<Vec<String>, Error> {
    db.conn
        .prepare_cached("SELECT DISTINCT pipeline FROM runs ORDER BY pipeline")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
        .op("listing the pipelines in the run history")
}

/// The latest runs, newest first.
pub(crate) fn runs(db: &mut Db, pipeline: Option<&str>, n: usize) -> Result<Vec<RunRecord>, Error> {
    const COLS: &str = "SELECT id, pipeline, started_at, finished_at, outcome, report FROM runs";
    let rows: Vec<Result<(RunRecord, Option<String>), Error>> = match pipeline {
        Some(p) => db
            .conn
            .prepare_cached(&format!("{COLS} WHERE pipeline = ?2 ORDER BY id DESC LIMIT ?1"))
            .and_then(|mut st| st.query_map(params![limit(n), p], run_row)?.collect()),
        None => db
            .conn
            .prepare_cached(&format!("{COLS} ORDER BY id DESC LIMIT ?1"))
            .and_then(|mut st| st.query_map([limit(n)], run_row)?.collect()),
    }
    .op("listing runs")?;
    rows.into_iter()
        .map(|row| {
            let (mut run, report) = row?;
            if let Some(text) = report {
                let v = serde_json::from_str(&text).map_err(|e| json_err("a stored run report", e))?;
                run.report = Some(v);
            }
            Ok(run)
        })
        .collect()
}

/// The stored schema baseline of a stream.
pub(crate) fn baseline(db: &mut Db, pipeline: &str, stream: &str) -> Result<Option<Value>, Error> {
    let text: Option<String> = db
        .conn
        .prepare_cached("SELECT schema FROM baselines WHERE pipeline = ?1 AND stream = ?2")
        .and_then(|mut st| st.query_row((pipeline, stream), |r| r.get(0)).optional())
        .op("reading a schema baseline")?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| json_err("a stored schema baseline", e))).transpose()
}

/// Store (replace) a stream's schema baseline.
pub(crate) fn save_baseline(db: &mut Db, pipeline: &str, stream: &str, schema: &Value) -> Result<(), Error> {
    let text = serde_json::to_string(schema).map_err(|e| json_err("the schema baseline", e))?;
    db.conn
        .prepare_cached(
            "INSERT INTO baselines (pipeline, stream, schema, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (pipeline, stream) DO UPDATE SET schema = excluded.schema,
                 updated_at = excluded.updated_at",
        )
        .and_then(|mut st| st.execute(params![pipeline, stream, text, now_rfc3339()]))
        .op("saving a schema baseline")?;
    Ok(())
}

/// Add a run's drift events to the history (one transaction). A drift seen again after it
/// was accepted is open again.
pub(crate) fn record_drift(db: &mut Db, pipeline: &str, stream: &str, events: &[DriftEvent]) -> Result<(), Error> {
    let tx = db.conn.transaction().op("starting a drift update")?;
    {
        let mut st = tx
            .prepare_cached(
                "INSERT INTO drift_events
                   (pipeline, stream, path, change, expected, observed, count, first_seen, last_seen, first_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9)
                 ON CONFLICT (pipeline, stream, path, change, observed) DO UPDATE SET
                   count = count + excluded.count, last_seen = excluded.last_seen,
                   expected = excluded.expected, accepted_at = NULL",
            )
            .op("preparing the drift insert")?;
        for e in events {
            let count = i64::try_from(e.count).unwrap_or(i64::MAX);
            st.execute(params![
                pipeline,
                stream,
                e.path,
                e.change.as_str(),
                e.expected,
                e.observed,
                count,
                e.first_seen,
                e.first_at
            ])
            .op("storing a drift event")?;
        }
    }
    tx.commit().op("committing drift events")
}

/// Drift history, newest first.
pub(crate) fn drift_events(db: &mut Db, pipeline: Option<&str>) -> Result<Vec<StoredDrift>, Error> {
    let mut st = db
        .conn
        .prepare_cached(
            "SELECT pipeline, stream, path, change, expected, observed, count, first_seen, last_seen,
                    first_at, accepted_at
             FROM drift_events WHERE ?1 IS NULL OR pipeline = ?1 ORDER BY last_seen DESC, id DESC",
        )
        .op("preparing the drift query")?;
    let rows = st
        .query_map([pipeline], |r| {
            let change = match stored_name("drift_events", "change", &r.get::<_, String>(3)?) {
                Ok(c) => c,
                Err(e) => return Ok(Err(e)),
            };
            Ok(Ok(StoredDrift {
                pipeline: r.get(0)?,
                stream: r.get(1)?,
                path: r.get(2)?,
                change,
                expected: r.get(4)?,
                observed: r.get(5)?,
                count: u64::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
                first_seen: r.get(7)?,
                last_seen: r.get(8)?,
                first_at: r.get(9)?,
                accepted_at: r.get(10)?,
            }))
        })
        .op("reading drift events")?;
    rows.collect::<Result<Vec<_>, _>>().op("reading a drift event")?.into_iter().collect()
}

/// Mark a stream's open drift events accepted.
pub(crate) fn accept_drift(db: &mut Db, pipeline: &str, stream: &str, at: &str) -> Result<u64, Error> {
    let n = db
        .conn
        .prepare_cached(
            "UPDATE drift_events SET accepted_at = ?3 WHERE pipeline = ?1 AND stream = ?2 AND accepted_at IS NULL",
        )
        .and_then(|mut st| st.execute(params![pipeline, stream, at]))
        .op("accepting drift events")?;
    Ok(n as u64)
}

/// A dead letter's reason without the `LOCATION: ` it starts with (the location is a column
/// of its own): records failing the same way at different lines share one group. The same
/// expression runs on PostgreSQL.
pub const REASON_WITHOUT_LOCATION: &str = "CASE WHEN location IS NOT NULL \
     AND substr(reason, 1, length(location) + 2) = location || ': ' \
     THEN substr(reason, length(location) + 3) ELSE reason END";

/// Dead letters counted per reason or path (or in total), most first.
pub(crate) fn dead_letter_counts(
    db: &mut Db,
    pipeline: Option<&str>,
    stream: Option<&str>,
    by: Option<DeadLetterGroup>,
) -> Result<Vec<DeadLetterCount>, Error> {
    let column = match by {
        Some(DeadLetterGroup::Reason) => REASON_WITHOUT_LOCATION,
        Some(DeadLetterGroup::Path) => "path",
        None => "NULL",
    };
    let sql = format!(
        "SELECT {column}, COUNT(*) FROM dead_letters WHERE (?1 IS NULL OR pipeline = ?1) AND (?2 IS NULL OR stream = ?2) \
         GROUP BY 1 ORDER BY 2 DESC, 1 ASC NULLS FIRST"
    );
    let mut st = db.conn.prepare_cached(&sql).op("preparing the dead-letter count")?;
    let rows: Vec<DeadLetterCount> = st
        .query_map(params![pipeline, stream], |r| {
            Ok(DeadLetterCount { value: r.get(0)?, count: r.get::<_, i64>(1)?.max(0) as u64 })
        })
        .and_then(|rows| rows.collect())
        .op("counting dead letters")?;
    // COUNT over no rows still answers one row only without GROUP BY: the total is 0.
    if by.is_none() && rows.is_empty() {
        return Ok(vec![DeadLetterCount { value: None, count: 0 }]);
    }
    Ok(rows)
}
