//! Issue 19, "crashes everywhere": every source × sink path below is killed at each named
//! failpoint and by random SIGKILLs, rerun after each kill and run clean; the sink must hold
//! each key once with the source's last version, and a second clean run must write nothing
//! (tests/src/crash.rs). One line per path; `cargo xtask crash --kills 20` runs the full sweep.
//! The PostgreSQL sink is defined here: it needs the testkit, a dev-dependency.

use dovetail_e2e::Scratch;
use dovetail_e2e::crash::sinks::{HubspotSink, JsonlSink, RestCreateSink, SqliteSink};
use dovetail_e2e::crash::sources::{FileSource, HubspotSource, RestSource, StripeSource};
use dovetail_e2e::crash::{CrashPath, CrashSink, ENGINE_FAILPOINTS, PIPELINE, Rows, StreamSpec, field_text};
use dovetail_e2e::crash_path;
use dovetail_testkit::pg;
use serde_json::Value;

crash_path!(rest_cursor_to_sqlite, RestSource::cursor(), SqliteSink);
crash_path!(rest_link_to_sqlite, RestSource::link(), SqliteSink);
crash_path!(rest_page_to_sqlite, RestSource::page(), SqliteSink);
crash_path!(rest_offset_to_sqlite, RestSource::offset(), SqliteSink);
crash_path!(rest_incremental_to_sqlite, RestSource::incremental(), SqliteSink);
crash_path!(rest_child_to_sqlite, RestSource::child(), SqliteSink);
crash_path!(files_to_sqlite, FileSource::jsonl(), SqliteSink);
crash_path!(stripe_to_sqlite, StripeSource::customers(), SqliteSink);
crash_path!(hubspot_to_sqlite, HubspotSource::contacts(), SqliteSink);
crash_path!(files_with_repeats_to_sqlite, FileSource::jsonl_with_repeats(), SqliteSink);
crash_path!(files_to_jsonl, FileSource::jsonl(), JsonlSink);
crash_path!(files_to_rest_create, FileSource::jsonl(), RestCreateSink::new());
crash_path!(files_to_postgres, FileSource::jsonl(), PostgresSink::new());
crash_path!(files_to_hubspot, FileSource::jsonl(), HubspotSink::new());
crash_path!(
    files_to_stripe,
    dovetail_e2e::crash::stripe::StripeFiles::new(),
    dovetail_e2e::crash::stripe::StripeSink::new()
);

/// The Stripe sink killed with a create made and its answer held, keys alive and past
/// their life (tests/src/crash/stripe.rs).
#[test]
fn files_to_stripe_held_creates() {
    dovetail_e2e::crash::stripe::held_creates("files_to_stripe_held_creates");
}

/// The fleet path: `dovetail worker` on PostgreSQL state killed while it holds the stream's
/// lease, a second worker taking over after the lease expired (tests/src/crash/fleet.rs).
#[test]
fn worker_rest_cursor_to_sqlite() {
    let Some(db) = pg::database("crash_worker_fleet") else { return };
    let path = CrashPath::new("worker_rest_cursor_to_sqlite", RestSource::cursor(), SqliteSink);
    dovetail_e2e::crash::fleet::sweep(path, db.url());
}

/// Every failpoint the engine names is reached by some path above.
#[test]
fn every_named_failpoint_is_swept() {
    let swept: Vec<&str> =
        [SqliteSink.failpoints(), JsonlSink.failpoints(), RestCreateSink::new().failpoints()].concat();
    for name in dovetail_core::failpoint::ALL {
        assert!(swept.contains(name), "failpoint `{name}` is reached by no crash path");
    }
}

/// The postgres sink on the testkit's throwaway PostgreSQL: one database per path, a schema
/// of its own per run history (`crash_1`, `crash_2`, ...), one table per stream.
pub struct PostgresSink {
    db: Option<pg::TestDb>,
    histories: u32,
}

impl PostgresSink {
    /// A fresh database; none where no PostgreSQL exists and `DOVETAIL_ALLOW_NO_PG=1`
    /// (the path is then skipped, as every PG test is).
    pub fn new() -> Self {
        // The test's name (libtest names its thread after it) for the skip log.
        let current = std::thread::current();
        let test = current.name().filter(|n| *n != "main").unwrap_or("crash_postgres");
        PostgresSink { db: pg::database(test), histories: 0 }
    }

    fn schema(&self) -> String {
        format!("crash_{}", self.histories)
    }
}

impl Default for PostgresSink {
    fn default() -> Self {
        Self::new()
    }
}

impl CrashSink for PostgresSink {
    fn available(&self) -> bool {
        self.db.is_some()
    }

    fn start(&mut self, _: &Scratch, _: &[StreamSpec]) -> String {
        let db = self.db.as_ref().expect("the sweep skips a sink that is not available");
        self.histories += 1;
        format!(
            "[pipelines.{PIPELINE}.sink]\nkind = \"postgres\"\nurl = \"{}\"\nschema = \"{}\"\n",
            db.url(),
            self.schema()
        )
    }

    fn rows(&mut self, _: &Scratch, stream: &StreamSpec) -> Rows {
        let db = self.db.as_ref().expect("the sink was started");
        let sql = format!("SELECT row_to_json(t)::text FROM \"{}\".\"{}\" t", self.schema(), stream.name);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let texts: Vec<String> = rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(conn);
            // No table yet (the run wrote nothing): the sink holds nothing.
            match client.query(&sql, &[]).await {
                Ok(rows) => rows.iter().map(|r| r.get::<_, String>(0)).collect(),
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => Vec::new(),
                Err(e) => panic!("read {}.{}: {e}", self.schema(), stream.name),
            }
        });
        texts
            .iter()
            .map(|t| {
                let mut v: Value = serde_json::from_str(t).expect("row_to_json is JSON");
                if let Some(o) = v.as_object_mut() {
                    o.remove("_synced_at");
                }
                (field_text(&v[&stream.key]), stream.fields.iter().map(|f| field_text(&v[f])).collect())
            })
            .collect()
    }

    fn failpoints(&self) -> Vec<&'static str> {
        // `mid_batch`: the batch COPYed into the staging table, not yet merged or committed.
        ENGINE_FAILPOINTS.iter().copied().chain(["mid_batch"]).collect()
    }
}
