//! The state conformance suite (dovetail-testkit) on `SqliteState`, over a database file as
//! in production: a second reader connection and `flock` run locks.

use dovetail_state::SqliteState;
use dovetail_testkit::state_conformance::Subject;

async fn sqlite_file() -> Subject {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = SqliteState::open(&path).unwrap();
    Subject::new(store).keep(dir).failing_commits(move |position| {
        // The checkpoint upsert is a commit's last statement: triggers refusing it fail the
        // commit inside its transaction, after every other part was written. They live in
        // this test's database only; the store's statements see them on their next run.
        let marker = position.as_str().expect("the suite poisons with a string position").replace('\'', "''");
        let conn = rusqlite::Connection::open(&path).unwrap();
        for (name, event) in [("conformance_fail_insert", "INSERT"), ("conformance_fail_update", "UPDATE")] {
            conn.execute_batch(&format!(
                "CREATE TRIGGER {name} BEFORE {event} ON checkpoints
                   WHEN json_extract(NEW.checkpoint, '$.position') = '{marker}'
                   BEGIN SELECT RAISE(ABORT, 'state conformance: injected failure'); END;"
            ))
            .unwrap();
        }
        async {}
    })
}

dovetail_testkit::state_conformance!(sqlite_file);
