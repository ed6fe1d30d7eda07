//! Schema migrations.
//!
//! [`MIGRATIONS`] is an append-only list: entry `i` brings the schema from version `i` to
//! `i + 1`. The `schema_version` table records one row per applied migration. Opening a
//! database applies only the missing ones, each in its own `IMMEDIATE` transaction together
//! with its version row, so a crash mid-upgrade leaves a consistent, resumable schema and two
//! processes opening the same file at once cannot both apply a migration. A database whose
//! version is newer than this code knows is refused rather than misread.
//!
//! Never edit a released migration; add a new one.

use std::path::Path;

use dovetail_core::Error;
use rusqlite::{Connection, TransactionBehavior};

use crate::error::DbResultExt;

/// Ordered schema migrations (see the module docs).
const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    r#"
    CREATE TABLE streams (
        id       INTEGER PRIMARY KEY,
        pipeline TEXT NOT NULL,
        stream   TEXT NOT NULL,
        UNIQUE (pipeline, stream)
    );
    CREATE TABLE checkpoints (
        stream_id  INTEGER PRIMARY KEY REFERENCES streams (id),
        checkpoint TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE ledger (
        stream_id INTEGER NOT NULL REFERENCES streams (id),
        key       TEXT NOT NULL,
        hash      BLOB NOT NULL CHECK (length(hash) = 16),
        pass      INTEGER NOT NULL,
        dest_id   TEXT,
        PRIMARY KEY (stream_id, key)
    ) WITHOUT ROWID;
    CREATE TABLE dead_letters (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        pipeline   TEXT NOT NULL,
        stream     TEXT NOT NULL,
        key        TEXT,
        kind       TEXT NOT NULL,
        reason     TEXT NOT NULL,
        path       TEXT,
        location   TEXT NOT NULL DEFAULT '',
        raw        TEXT NOT NULL,
        created_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL,
        seen_count INTEGER NOT NULL DEFAULT 1,
        UNIQUE (pipeline, stream, location, raw)
    );
    CREATE INDEX dead_letters_by_stream ON dead_letters (pipeline, stream, id);
    CREATE TABLE runs (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        pipeline    TEXT NOT NULL,
        started_at  TEXT NOT NULL,
        finished_at TEXT,
        outcome     TEXT NOT NULL,
        report      TEXT
    );
    CREATE INDEX runs_by_pipeline ON runs (pipeline, id);
    CREATE TABLE baselines (
        pipeline   TEXT NOT NULL,
        stream     TEXT NOT NULL,
        schema     TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (pipeline, stream)
    );
    "#,
    // 2: HTTP response cache (bounded by the writer: see `cache.rs`).
    r#"
    CREATE TABLE http_cache (
        key           TEXT PRIMARY KEY,
        status        INTEGER NOT NULL,
        etag          TEXT,
        last_modified TEXT,
        headers       TEXT NOT NULL,
        body          BLOB NOT NULL,
        stored_at     TEXT NOT NULL,
        seq           INTEGER NOT NULL
    );
    CREATE INDEX http_cache_by_seq ON http_cache (seq);
    "#,
    // 3: durable outbox (records owed to a sink that is down) and paused streams.
    // AUTOINCREMENT: outbox ids increase in queue order and are never reused, even after the
    // newest entry is delivered and deleted.
    r#"
    CREATE TABLE outbox (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        stream_id INTEGER NOT NULL REFERENCES streams (id),
        key       TEXT NOT NULL,
        hash      BLOB NOT NULL CHECK (length(hash) = 16),
        data      TEXT NOT NULL,
        location  TEXT,
        queued_at TEXT NOT NULL
    );
    CREATE INDEX outbox_by_stream ON outbox (stream_id, id);
    CREATE TABLE paused_streams (
        pipeline TEXT NOT NULL,
        stream   TEXT NOT NULL,
        kind     TEXT NOT NULL,
        reason   TEXT NOT NULL,
        since    TEXT NOT NULL,
        PRIMARY KEY (pipeline, stream)
    );
    "#,
    // 4: drift history, one row per (stream, path, change, observed shape).
    r#"
    CREATE TABLE drift_events (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        pipeline    TEXT NOT NULL,
        stream      TEXT NOT NULL,
        path        TEXT NOT NULL,
        change      TEXT NOT NULL,
        expected    TEXT NOT NULL,
        observed    TEXT NOT NULL,
        count       INTEGER NOT NULL,
        first_seen  TEXT NOT NULL,
        last_seen   TEXT NOT NULL,
        first_at    TEXT NOT NULL,
        accepted_at TEXT,
        UNIQUE (pipeline, stream, path, change, observed)
    );
    "#,
    // 5: what `dovetail explain` needs, written in the commit that writes the ledger rows.
    // A written record's story is four small columns on its ledger row (no second B-tree per
    // record): the run, the page (`explain_fetches`), its line in that page's `records` text,
    // and the outcome (1 inserted, 2 updated). A page row holds, one line per written record,
    // `location<TAB>raw JSON`, and its unchanged keys one per line, so a skipped record
    // costs no row. Dead-lettered records (rare) get a row in `explain_stories`; each stream
    // and run records the mapping applied.
    r#"
    ALTER TABLE ledger ADD COLUMN run_id INTEGER;
    ALTER TABLE ledger ADD COLUMN fetch_id INTEGER;
    ALTER TABLE ledger ADD COLUMN item INTEGER;
    ALTER TABLE ledger ADD COLUMN outcome INTEGER;
    CREATE TABLE explain_fetches (
        id          INTEGER PRIMARY KEY,
        stream_id   INTEGER NOT NULL REFERENCES streams (id),
        run_id      INTEGER NOT NULL,
        url         TEXT NOT NULL,
        status      INTEGER,
        request_id  TEXT,
        api_version TEXT,
        fetched_at  TEXT NOT NULL,
        stale       INTEGER NOT NULL DEFAULT 0,
        connector   TEXT NOT NULL,
        records     TEXT,
        unchanged   TEXT
    );
    CREATE INDEX explain_fetches_by_run ON explain_fetches (stream_id, run_id);
    CREATE TABLE explain_stories (
        stream_id INTEGER NOT NULL REFERENCES streams (id),
        key       TEXT NOT NULL,
        run_id    INTEGER NOT NULL,
        fetch_id  INTEGER,
        location  TEXT,
        outcome   TEXT NOT NULL,
        reason    TEXT,
        raw       TEXT,
        PRIMARY KEY (stream_id, key)
    ) WITHOUT ROWID;
    CREATE TABLE explain_runs (
        stream_id   INTEGER NOT NULL REFERENCES streams (id),
        run_id      INTEGER NOT NULL,
        mapping     TEXT,
        key_columns TEXT NOT NULL,
        PRIMARY KEY (stream_id, run_id)
    ) WITHOUT ROWID;
    "#,
    // 6: dead letters deduplicated by a hash of the raw input instead of the raw text (a
    // unique index on the text stored a large input twice), and a raw input longer than
    // `DEAD_LETTER_RAW_MAX` kept cut, with its full length. SQLite cannot drop a table's
    // UNIQUE constraint, so the table is rebuilt; `raw_hash` is backfilled by
    // `backfill_dead_letters` in the same transaction.
    r#"
    CREATE TABLE dead_letters_v2 (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        pipeline   TEXT NOT NULL,
        stream     TEXT NOT NULL,
        key        TEXT,
        kind       TEXT NOT NULL,
        reason     TEXT NOT NULL,
        path       TEXT,
        location   TEXT NOT NULL DEFAULT '',
        raw        TEXT NOT NULL,
        raw_len    INTEGER,
        raw_hash   BLOB CHECK (raw_hash IS NULL OR length(raw_hash) = 16),
        created_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL,
        seen_count INTEGER NOT NULL DEFAULT 1
    );
    INSERT INTO dead_letters_v2
        (id, pipeline, stream, key, kind, reason, path, location, raw, created_at, last_seen_at, seen_count)
        SELECT id, pipeline, stream, key, kind, reason, path, location, raw, created_at, last_seen_at, seen_count
        FROM dead_letters;
    DELETE FROM sqlite_sequence WHERE name = 'dead_letters_v2';
    INSERT INTO sqlite_sequence (name, seq) SELECT 'dead_letters_v2', seq FROM sqlite_sequence WHERE name = 'dead_letters';
    DROP TABLE dead_letters;
    ALTER TABLE dead_letters_v2 RENAME TO dead_letters;
    CREATE INDEX dead_letters_by_stream ON dead_letters (pipeline, stream, id);
    CREATE UNIQUE INDEX dead_letters_dedup ON dead_letters (pipeline, stream, location, raw_hash);
    "#,
    // 7: the sink's mark per stream (a table's creation marker, a file's committed length),
    // written in the commit of the batch it follows; a stream without a row is "unknown".
    r#"
    CREATE TABLE sink_marks (
        stream_id INTEGER PRIMARY KEY REFERENCES streams (id),
        mark      TEXT NOT NULL
    );
    "#,
    // 8: a key written twice in one pass (the source repeats it) is marked for good, so later
    // runs hold back its earlier records until the pass shows whether a later one follows.
    r#"
    ALTER TABLE ledger ADD COLUMN repeated INTEGER NOT NULL DEFAULT 0;
    "#,
    // 9: a pause that lifts by itself at a time (a rate-limited API's "come back at T").
    r#"
    ALTER TABLE paused_streams ADD COLUMN until TEXT;
    "#,
    // 10: where a pause's cause happened (a URL), apart from its reason.
    r#"
    ALTER TABLE paused_streams ADD COLUMN location TEXT;
    "#,
    // 11: creates sent whose destination id is not known yet (`DeliveryStore::
    // record_pending_create`), written before the request goes out.
    r#"
    CREATE TABLE pending_creates (
        pipeline        TEXT NOT NULL,
        stream          TEXT NOT NULL,
        key             TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        since           TEXT NOT NULL,
        PRIMARY KEY (pipeline, stream, key)
    ) WITHOUT ROWID;
    "#,
    // 12: a key queued again in the outbox replaces its waiting entry (`ops::commit`), found
    // by this index.
    r#"
    CREATE INDEX outbox_by_key ON outbox (stream_id, key);
    "#,
    // 13: the destination's request id of the last write that delivered each key
    // (`DeliveryStore::record_write_request`: Stripe's `Request-Id`), for `dovetail explain`.
    r#"
    CREATE TABLE write_requests (
        pipeline   TEXT NOT NULL,
        stream     TEXT NOT NULL,
        key        TEXT NOT NULL,
        request_id TEXT NOT NULL,
        PRIMARY KEY (pipeline, stream, key)
    ) WITHOUT ROWID;
    "#,
];

/// Rust steps of a migration, run in its transaction after its SQL: migration 6 hashes (and,
/// past the bound, cuts) the raw input of every dead letter stored before it.
fn after_migration(version: i64, tx: &Connection) -> Result<(), Error> {
    if version == 6 {
        backfill_dead_letters(tx)?;
    }
    Ok(())
}

fn backfill_dead_letters(tx: &Connection) -> Result<(), Error> {
    let rows: Vec<(i64, String)> = tx
        .prepare("SELECT id, raw FROM dead_letters WHERE raw_hash IS NULL")
        .and_then(|mut st| st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .op("reading dead letters to hash")?;
    let mut st = tx
        .prepare("UPDATE dead_letters SET raw = ?2, raw_len = ?3, raw_hash = ?4 WHERE id = ?1")
        .op("preparing the dead-letter backfill")?;
    for (id, raw) in rows {
        let hash = dovetail_core::state::raw_hash(&raw);
        let (kept, full) = dovetail_core::state::bounded_raw(&raw);
        st.execute(rusqlite::params![id, kept, full.map(|n| n as i64), &hash[..]])
            .op("hashing a stored dead letter")?;
    }
    Ok(())
}

/// The schema version this code writes: the number of known migrations.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Bring the database at `path` up to [`SCHEMA_VERSION`].
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), Error> {
    migrate_with(conn, path, MIGRATIONS, after_migration)
}

fn migrate_with(
    conn: &mut Connection,
    path: &Path,
    migrations: &[&str],
    after: fn(i64, &Connection) -> Result<(), Error>,
) -> Result<(), Error> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version    INTEGER PRIMARY KEY,
            applied_at TEXT NOT NULL
        )",
    )
    .op("creating the schema_version table")?;
    let known = migrations.len() as i64;
    let current = current_version(conn)?;
    if current > known {
        return Err(too_new(path, current, known));
    }
    for (i, sql) in migrations.iter().enumerate().skip(current as usize) {
        let version = i as i64 + 1;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).op("starting a migration")?;
        // Another process may have migrated between our read and our write lock.
        let now = current_version(&tx)?;
        if now >= version {
            continue;
        }
        tx.execute_batch(sql).op(&format!("applying schema migration {version}"))?;
        after(version, &tx)?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?1, ?2)",
            (version, jiff::Timestamp::now().to_string()),
        )
        .op("recording a schema migration")?;
        tx.commit().op(&format!("committing schema migration {version}"))?;
        tracing::info!(path = %path.display(), version, "applied state schema migration");
    }
    Ok(())
}

/// The highest applied migration (0 for a new database).
fn current_version(conn: &Connection) -> Result<i64, Error> {
    conn.query_row("SELECT coalesce(max(version), 0) FROM schema_version", [], |r| r.get(0))
        .op("reading the schema version")
}

fn too_new(path: &Path, found: i64, known: i64) -> Error {
    Error::config(format!(
        "the state database `{}` has schema version {found}, but this dovetail only knows \
         versions up to {known}; it was written by a newer dovetail — upgrade dovetail or \
         point `state` at another file",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_steps(_: i64, _: &Connection) -> Result<(), Error> {
        Ok(())
    }

    fn versions(conn: &Connection) -> Vec<i64> {
        let mut st = conn.prepare("SELECT version FROM schema_version ORDER BY version").unwrap();
        st.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn applies_only_missing_migrations_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let mut conn = Connection::open(&path).unwrap();
        let one = ["CREATE TABLE a (x INTEGER)"];
        migrate_with(&mut conn, &path, &one, no_steps).unwrap();
        assert_eq!(versions(&conn), vec![1]);
        // Re-running CREATE TABLE a would fail, so success proves migration 1 was skipped.
        let two = ["CREATE TABLE a (x INTEGER)", "ALTER TABLE a ADD COLUMN y TEXT"];
        migrate_with(&mut conn, &path, &two, no_steps).unwrap();
        migrate_with(&mut conn, &path, &two, no_steps).unwrap();
        assert_eq!(versions(&conn), vec![1, 2]);
        conn.execute("INSERT INTO a (x, y) VALUES (1, 'b')", []).unwrap();
    }

    #[test]
    fn failing_migration_leaves_previous_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let mut conn = Connection::open(&path).unwrap();
        let bad = ["CREATE TABLE a (x INTEGER)", "CREATE TABLE b (y); SELECT * FROM nope"];
        let err = migrate_with(&mut conn, &path, &bad, no_steps).unwrap_err();
        assert!(err.message().contains("schema migration 2"), "{err}");
        assert_eq!(versions(&conn), vec![1]);
        // Table b was created inside the failed transaction and must be gone.
        let b: i64 = conn.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'b'", [], |r| r.get(0)).unwrap();
        assert_eq!(b, 0);
    }

    /// A database written by the previous release (migrations 1–2 only, with data in every
    /// table) is brought to the current version by `SqliteState::open`, its data intact and the
    /// new tables usable.
    #[tokio::test]
    async fn a_version_2_database_upgrades_with_its_data_intact() {
        use dovetail_core::state::{Commit, DeliveryStore, HistoryStore, OutboxEntry, PausedStream};
        use dovetail_core::{ContentHash, Key};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            migrate_with(&mut conn, &path, &MIGRATIONS[..2], no_steps).unwrap();
            assert_eq!(versions(&conn), vec![1, 2]);
            conn.execute_batch(
                r#"
                INSERT INTO streams (id, pipeline, stream) VALUES (7, 'p', 's');
                INSERT INTO checkpoints VALUES (7, '{"position":{"page":3},"pass":2,"floor":null,"max":null,"pass_complete":false}', 't');
                INSERT INTO ledger VALUES (7, '"k1"', x'01010101010101010101010101010101', 2, 'dest-1');
                INSERT INTO dead_letters (pipeline, stream, kind, reason, raw, created_at, last_seen_at)
                    VALUES ('p', 's', 'data', 'bad', '{}', 't', 't');
                INSERT INTO runs (pipeline, started_at, outcome) VALUES ('p', 't', 'succeeded');
                INSERT INTO baselines VALUES ('p', 's', '{"type":"object"}', 't');
                INSERT INTO http_cache VALUES ('u', 200, NULL, NULL, '{}', x'00', 't', 1);
                "#,
            )
            .unwrap();
        }

        let st = crate::SqliteState::open(&path).unwrap();
        let conn = Connection::open(&path).unwrap();
        assert_eq!(versions(&conn), (1..=SCHEMA_VERSION).collect::<Vec<_>>());
        assert_eq!(SCHEMA_VERSION, 13);
        assert_eq!(st.sink_mark("p", "s").await.unwrap(), None, "an old stream's sink mark is unknown");

        let cp = st.checkpoint("p", "s").await.unwrap().unwrap();
        assert_eq!(cp.position, Some(serde_json::json!({"page": 3})));
        let k1 = Key::from_canonical("\"k1\"");
        let ledger = st.ledger_entries("p", "s", std::slice::from_ref(&k1)).await.unwrap();
        assert_eq!(ledger[0].as_ref().unwrap().hash, ContentHash([1; 16]));
        assert_eq!(ledger[0].as_ref().unwrap().dest_id.as_deref(), Some("dest-1"));
        // Migration 5: an old ledger row has no story; explain still finds its hash and pass.
        let h = st.key_history("p", "s", &k1).await.unwrap();
        assert!(h.story.is_none());
        assert_eq!(h.ledger.map(|l| l.pass), Some(2));
        // Migration 8: an old ledger row is not marked repeated.
        let v = st.ledger_versions("p", "s", std::slice::from_ref(&k1)).await.unwrap();
        assert_eq!(v[0].map(|v| v.repeated), Some(false));
        assert_eq!(st.dead_letters(None, None, 10).await.unwrap().len(), 1);
        // Migration 6: the old dead letter got the hash it is deduplicated by.
        let hash: Vec<u8> = conn.query_row("SELECT raw_hash FROM dead_letters", [], |r| r.get(0)).unwrap();
        assert_eq!(hash.len(), 16);
        assert_eq!(st.runs(None, 10).await.unwrap().len(), 1);
        assert_eq!(st.baseline("p", "s").await.unwrap(), Some(serde_json::json!({"type": "object"})));
        let cached: i64 = conn.query_row("SELECT count(*) FROM http_cache", [], |r| r.get(0)).unwrap();
        assert_eq!(cached, 1);

        // The new tables start empty and work for the existing stream.
        assert_eq!(st.outbox_len("p", "s").await.unwrap(), 0);
        assert!(st.paused(None).await.unwrap().is_empty());
        let entry = OutboxEntry {
            id: 0,
            key: k1,
            hash: ContentHash([2; 16]),
            data: serde_json::json!({"id": 1}),
            location: None,
        };
        let c = Commit { pipeline: "p".into(), stream: "s".into(), outbox_add: vec![entry], ..Commit::default() };
        st.commit(c).await.unwrap();
        let queued: i64 = conn.query_row("SELECT stream_id FROM outbox", [], |r| r.get(0)).unwrap();
        assert_eq!(queued, 7, "queued under the existing stream id");
        let pause = PausedStream {
            pipeline: "p".into(),
            stream: "s".into(),
            kind: dovetail_core::PauseKind::Unavailable,
            reason: "down".into(),
            since: "t".into(),
            until: None,
            location: None,
        };
        st.pause(&pause).await.unwrap();
        assert_eq!(st.paused(Some("p")).await.unwrap(), vec![pause]);
        // Migration 4: drift history, one row per shape whatever the number of runs.
        let e = dovetail_core::drift::DriftEvent {
            path: "/price".into(),
            change: dovetail_core::DriftClass::TypeChanged,
            expected: "number".into(),
            observed: "string".into(),
            count: 2,
            first_seen: "t1".into(),
            first_at: "item 0".into(),
        };
        st.record_drift("p", "s", std::slice::from_ref(&e)).await.unwrap();
        st.record_drift("p", "s", &[dovetail_core::drift::DriftEvent { first_seen: "t2".into(), ..e }]).await.unwrap();
        let stored = st.drift_events(Some("p")).await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!((stored[0].count, stored[0].first_seen.as_str(), stored[0].last_seen.as_str()), (4, "t1", "t2"));
        assert_eq!(st.accept_drift("p", "s", "t3").await.unwrap(), 1);
        assert_eq!(st.drift_events(None).await.unwrap()[0].accepted_at.as_deref(), Some("t3"));
    }

    #[test]
    fn newer_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let mut conn = Connection::open(&path).unwrap();
        migrate_with(&mut conn, &path, &["SELECT 1", "SELECT 2"], no_steps).unwrap();
        let err = migrate_with(&mut conn, &path, &["SELECT 1"], no_steps).unwrap_err();
        assert_eq!(err.kind(), &dovetail_core::ErrorKind::Config);
        assert!(err.message().contains("schema version 2"), "{err}");
        assert!(err.message().contains("up to 1"), "{err}");
    }
}
