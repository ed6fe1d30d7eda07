//! Issue 19, "crashes everywhere": every source × sink path below is killed at each named
//! failpoint and by random SIGKILLs, rerun after each kill and run clean; the sink must hold
//! each key once with the source's last version, and a second clean run must write nothing
//! (tests/src/crash.rs). One line per path; `cargo xtask crash --kills 20` runs the full sweep.

use dovetail_e2e::crash::sinks::{JsonlSink, PostgresSink, RestCreateSink, SqliteSink};
use dovetail_e2e::crash::sources::{FileSource, RestSource};
use dovetail_e2e::crash_path;

crash_path!(rest_cursor_to_sqlite, RestSource::cursor(), SqliteSink);
crash_path!(rest_link_to_sqlite, RestSource::link(), SqliteSink);
crash_path!(rest_page_to_sqlite, RestSource::page(), SqliteSink);
crash_path!(rest_offset_to_sqlite, RestSource::offset(), SqliteSink);
crash_path!(rest_incremental_to_sqlite, RestSource::incremental(), SqliteSink);
crash_path!(rest_child_to_sqlite, RestSource::child(), SqliteSink);
crash_path!(files_to_sqlite, FileSource::jsonl(), SqliteSink);
crash_path!(files_with_repeats_to_sqlite, FileSource::jsonl_with_repeats(), SqliteSink);
crash_path!(files_to_jsonl, FileSource::jsonl(), JsonlSink);
crash_path!(files_to_rest_create, FileSource::jsonl(), RestCreateSink::new());
crash_path!(files_to_postgres, FileSource::jsonl(), PostgresSink::new());

/// Every failpoint the engine names is reached by some path above.
#[test]
fn every_named_failpoint_is_swept() {
    use dovetail_e2e::crash::CrashSink;
    let swept: Vec<&str> =
        [SqliteSink.failpoints(), JsonlSink.failpoints(), RestCreateSink::new().failpoints()].concat();
    for name in dovetail_core::failpoint::ALL {
        assert!(swept.contains(name), "failpoint `{name}` is reached by no crash path");
    }
}
