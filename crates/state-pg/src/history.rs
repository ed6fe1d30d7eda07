//! [`HistoryStore`] for [`PgState`]: runs, dead letters, drift, and (in [`crate::explain`])
//! key stories and retention.

use async_trait::async_trait;
use dovetail_core::drift::DriftEvent;
use dovetail_core::explain::{KeyHistory, Pruned, Retention};
use dovetail_core::state::{DeadLetter, DeadLetterCount, DeadLetterGroup, HistoryStore, RunRecord, StoredDrift};
use dovetail_core::{Error, Key, RunOutcome};
use serde_json::Value;
use tokio_postgres::Row;

use crate::{PgState, json_err, limit, stored_name, text};

/// Outcome of a run that has not finished (yet).
pub const RUNNING: RunOutcome = RunOutcome::Running;
/// Outcome given to a `running` run once its pipeline's lock is taken again.
pub const ABANDONED: RunOutcome = RunOutcome::Abandoned;

pub(crate) const DEAD_LETTER_COLS: &str =
    "id, pipeline, stream, key, kind, reason, path, NULLIF(location, ''), raw, created_at, seen_count, raw_len";

pub(crate) fn dead_letter_row(r: &Row) -> DeadLetter {
    let raw: Vec<u8> = r.get(8);
    DeadLetter {
        id: r.get(0),
        pipeline: r.get(1),
        stream: r.get(2),
        key: r.get(3),
        kind: r.get(4),
        reason: r.get(5),
        path: r.get(6),
        location: r.get(7),
        raw: String::from_utf8_lossy(&raw).into_owned(),
        created_at: r.get(9),
        seen_count: r.get::<_, i64>(10) as u64,
        raw_len: r.get::<_, Option<i64>>(11).map(|n| n as u64),
    }
}

#[async_trait]
impl HistoryStore for PgState {
    async fn begin_run(&self, pipeline: &str, started_at: &str) -> Result<i64, Error> {
        let c = self.conn().await?;
        let row = c
            .query_one(
                "INSERT INTO runs (pipeline, started_at, outcome) VALUES ($1, $2, $3) RETURNING id",
                &[&pipeline, &started_at, &RUNNING.as_str()],
            )
            .await
            .map_err(|e| self.err("recording the start of a run", e))?;
        Ok(row.get(0))
    }

    async fn finish_run(&self, id: i64, finished_at: &str, outcome: RunOutcome, report: &Value) -> Result<(), Error> {
        let report = serde_json::to_string(report).map_err(|e| json_err("the run report", e))?;
        let c = self.conn().await?;
        let n = c
            .execute(
                "UPDATE runs SET finished_at = $2, outcome = $3, report = $4 WHERE id = $1",
                &[&id, &finished_at, &outcome.as_str(), &&*text(&report)],
            )
            .await
            .map_err(|e| self.err("recording the end of a run", e))?;
        if n == 0 {
            return Err(Error::internal(format!("state store: there is no run with id {id} to finish")));
        }
        Ok(())
    }

    async fn runs(&self, pipeline: Option<&str>, n: usize) -> Result<Vec<RunRecord>, Error> {
        let c = self.conn().await?;
        let rows = c
            .query(
                "SELECT id, pipeline, started_at, finished_at, outcome, report FROM runs
                 WHERE $2::text IS NULL OR pipeline = $2 ORDER BY id DESC LIMIT $1",
                &[&limit(n), &pipeline],
            )
            .await
            .map_err(|e| self.err("listing runs", e))?;
        rows.into_iter()
            .map(|r| {
                let report = r
                    .get::<_, Option<&str>>(5)
                    .map(|t| serde_json::from_str(t).map_err(|e| json_err("a stored run report", e)))
                    .transpose()?;
                Ok(RunRecord {
                    id: r.get(0),
                    pipeline: r.get(1),
                    started_at: r.get(2),
                    finished_at: r.get(3),
                    outcome: stored_name("runs", "outcome", r.get(4))?,
                    report,
                })
            })
            .collect()
    }

    async fn run_pipelines(&self) -> Result<Vec<String>, Error> {
        let c = self.conn().await?;
        let rows = c
            .query("SELECT DISTINCT pipeline FROM runs ORDER BY pipeline", &[])
            .await
            .map_err(|e| self.err("listing the pipelines in the run history", e))?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    async fn dead_letters(
        &self,
        pipeline: Option<&str>,
        stream: Option<&str>,
        n: usize,
    ) -> Result<Vec<DeadLetter>, Error> {
        let c = self.conn().await?;
        let sql = format!(
            "SELECT {DEAD_LETTER_COLS} FROM dead_letters
             WHERE ($2::text IS NULL OR pipeline = $2) AND ($3::text IS NULL OR stream = $3) ORDER BY id LIMIT $1"
        );
        let rows =
            c.query(&sql, &[&limit(n), &pipeline, &stream]).await.map_err(|e| self.err("listing dead letters", e))?;
        Ok(rows.iter().map(dead_letter_row).collect())
    }

    async fn dead_letter_counts(
        &self,
        pipeline: Option<&str>,
        stream: Option<&str>,
        by: Option<DeadLetterGroup>,
    ) -> Result<Vec<DeadLetterCount>, Error> {
        let column = match by {
            Some(DeadLetterGroup::Reason) => dovetail_state::REASON_WITHOUT_LOCATION,
            Some(DeadLetterGroup::Path) => "path",
            None => "NULL::text",
        };
        let c = self.conn().await?;
        let sql = format!(
            "SELECT {column}, COUNT(*) FROM dead_letters
             WHERE ($1::text IS NULL OR pipeline = $1) AND ($2::text IS NULL OR stream = $2)
             GROUP BY 1 ORDER BY 2 DESC, 1 ASC NULLS FIRST"
        );
        let rows = c.query(&sql, &[&pipeline, &stream]).await.map_err(|e| self.err("counting dead letters", e))?;
        let mut out: Vec<DeadLetterCount> =
            rows.iter().map(|r| DeadLetterCount { value: r.get(0), count: r.get::<_, i64>(1).max(0) as u64 }).collect();
        if by.is_none() && out.is_empty() {
            out.push(DeadLetterCount { value: None, count: 0 });
        }
        Ok(out)
    }

    async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, Error> {
        let c = self.conn().await?;
        let sql = format!("SELECT {DEAD_LETTER_COLS} FROM dead_letters WHERE id = $1");
        let row = c.query_opt(&sql, &[&id]).await.map_err(|e| self.err("reading a dead letter", e))?;
        Ok(row.as_ref().map(dead_letter_row))
    }

    async fn record_drift(&self, pipeline: &str, stream: &str, events: &[DriftEvent]) -> Result<(), Error> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(|e| self.err("starting a drift update", e))?;
        let st = tx
            .prepare_cached(
                "INSERT INTO drift_events
                   (pipeline, stream, path, change, expected, observed, count, first_seen, last_seen, first_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)
                 ON CONFLICT (pipeline, stream, path, change, observed) DO UPDATE SET
                   count = drift_events.count + excluded.count, last_seen = excluded.last_seen,
                   expected = excluded.expected, accepted_at = NULL",
            )
            .await
            .map_err(|e| self.err("preparing the drift insert", e))?;
        for e in events {
            let count = i64::try_from(e.count).unwrap_or(i64::MAX);
            tx.execute(
                &st,
                &[
                    &pipeline,
                    &stream,
                    &&*text(&e.path),
                    &e.change.as_str(),
                    &&*text(&e.expected),
                    &&*text(&e.observed),
                    &count,
                    &e.first_seen,
                    &&*text(&e.first_at),
                ],
            )
            .await
            .map_err(|e| self.err("storing a drift event", e))?;
        }
        tx.commit().await.map_err(|e| self.err("committing drift events", e))
    }

    async fn drift_events(&self, pipeline: Option<&str>) -> Result<Vec<StoredDrift>, Error> {
        let c = self.conn().await?;
        let rows = c
            .query(
                "SELECT pipeline, stream, path, change, expected, observed, count, first_seen, last_seen,
                        first_at, accepted_at
                 FROM drift_events WHERE $1::text IS NULL OR pipeline = $1 ORDER BY last_seen DESC, id DESC",
                &[&pipeline],
            )
            .await
            .map_err(|e| self.err("reading drift events", e))?;
        rows.into_iter()
            .map(|r| {
                Ok(StoredDrift {
                    pipeline: r.get(0),
                    stream: r.get(1),
                    path: r.get(2),
                    change: stored_name("drift_events", "change", r.get(3))?,
                    expected: r.get(4),
                    observed: r.get(5),
                    count: u64::try_from(r.get::<_, i64>(6)).unwrap_or(0),
                    first_seen: r.get(7),
                    last_seen: r.get(8),
                    first_at: r.get(9),
                    accepted_at: r.get(10),
                })
            })
            .collect()
    }

    async fn accept_drift(&self, pipeline: &str, stream: &str, at: &str) -> Result<u64, Error> {
        let c = self.conn().await?;
        c.execute(
            "UPDATE drift_events SET accepted_at = $3 WHERE pipeline = $1 AND stream = $2 AND accepted_at IS NULL",
            &[&pipeline, &stream, &at],
        )
        .await
        .map_err(|e| self.err("accepting drift events", e))
    }

    async fn key_history(&self, pipeline: &str, stream: &str, key: &Key) -> Result<KeyHistory, Error> {
        crate::explain::key_history(self, pipeline, stream, key).await
    }

    async fn write_request(&self, pipeline: &str, stream: &str, key: &Key) -> Result<Option<String>, Error> {
        self.write_lookup(pipeline, stream, key).await
    }

    async fn prune(&self, pipeline: &str, retention: &Retention) -> Result<Pruned, Error> {
        crate::explain::prune(self, pipeline, retention).await
    }
}
