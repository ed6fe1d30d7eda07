//! Versioned schema migrations of the PostgreSQL store.
//!
//! [`MIGRATIONS`] is append-only: entry `i` brings the schema from version `i` to `i + 1`;
//! `schema_version` records one row per applied migration. Migrating takes a transaction-
//! scoped advisory lock first, so a second process finding a migration in progress waits for
//! it and then sees it applied. A schema newer than this code knows is refused rather than
//! misread. Never edit a released migration; add a new one.

use dovetail_core::Error;

use crate::error::privilege_err;
use crate::{Conn, PgTarget, pg_err};

/// Ordered schema migrations (see the module docs). Migration 1 is everything the SQLite
/// store had reached at its version 9, in PostgreSQL's types: raw inputs as `bytea` (text
/// cannot hold a NUL), hashes as 16-byte `bytea`.
pub const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE streams (
        id       BIGSERIAL PRIMARY KEY,
        pipeline TEXT NOT NULL,
        stream   TEXT NOT NULL,
        UNIQUE (pipeline, stream)
    );
    CREATE TABLE checkpoints (
        stream_id  BIGINT PRIMARY KEY REFERENCES streams (id),
        checkpoint TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE ledger (
        stream_id BIGINT NOT NULL REFERENCES streams (id),
        key       TEXT NOT NULL,
        hash      BYTEA NOT NULL CHECK (length(hash) = 16),
        pass      BIGINT NOT NULL,
        dest_id   TEXT,
        run_id    BIGINT,
        fetch_id  BIGINT,
        item      BIGINT,
        outcome   BIGINT,
        repeated  BOOLEAN NOT NULL DEFAULT false,
        PRIMARY KEY (stream_id, key)
    );
    CREATE TABLE sink_marks (
        stream_id BIGINT PRIMARY KEY REFERENCES streams (id),
        mark      TEXT NOT NULL
    );
    CREATE TABLE dead_letters (
        id           BIGSERIAL PRIMARY KEY,
        pipeline     TEXT NOT NULL,
        stream       TEXT NOT NULL,
        key          TEXT,
        kind         TEXT NOT NULL,
        reason       TEXT NOT NULL,
        path         TEXT,
        location     TEXT NOT NULL DEFAULT '',
        raw          BYTEA NOT NULL,
        raw_len      BIGINT,
        raw_hash     BYTEA NOT NULL CHECK (length(raw_hash) = 16),
        created_at   TEXT NOT NULL,
        last_seen_at TEXT NOT NULL,
        seen_count   BIGINT NOT NULL DEFAULT 1,
        UNIQUE (pipeline, stream, location, raw_hash)
    );
    CREATE INDEX dead_letters_by_stream ON dead_letters (pipeline, stream, id);
    CREATE TABLE runs (
        id          BIGSERIAL PRIMARY KEY,
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
    CREATE TABLE http_cache (
        key           TEXT PRIMARY KEY,
        status        INTEGER NOT NULL,
        etag          TEXT,
        last_modified TEXT,
        headers       TEXT NOT NULL,
        body          BYTEA NOT NULL,
        stored_at     TEXT NOT NULL,
        seq           BIGSERIAL NOT NULL
    );
    CREATE INDEX http_cache_by_seq ON http_cache (seq);
    CREATE TABLE outbox (
        id        BIGSERIAL PRIMARY KEY,
        stream_id BIGINT NOT NULL REFERENCES streams (id),
        key       TEXT NOT NULL,
        hash      BYTEA NOT NULL CHECK (length(hash) = 16),
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
        until    TEXT,
        PRIMARY KEY (pipeline, stream)
    );
    CREATE TABLE drift_events (
        id          BIGSERIAL PRIMARY KEY,
        pipeline    TEXT NOT NULL,
        stream      TEXT NOT NULL,
        path        TEXT NOT NULL,
        change      TEXT NOT NULL,
        expected    TEXT NOT NULL,
        observed    TEXT NOT NULL,
        count       BIGINT NOT NULL,
        first_seen  TEXT NOT NULL,
        last_seen   TEXT NOT NULL,
        first_at    TEXT NOT NULL,
        accepted_at TEXT,
        UNIQUE (pipeline, stream, path, change, observed)
    );
    CREATE TABLE explain_fetches (
        id          BIGSERIAL PRIMARY KEY,
        stream_id   BIGINT NOT NULL REFERENCES streams (id),
        run_id      BIGINT NOT NULL,
        url         TEXT NOT NULL,
        status      INTEGER,
        request_id  TEXT,
        api_version TEXT,
        fetched_at  TEXT NOT NULL,
        stale       BOOLEAN NOT NULL DEFAULT false,
        connector   TEXT NOT NULL,
        records     BYTEA,
        unchanged   TEXT
    );
    CREATE INDEX explain_fetches_by_run ON explain_fetches (stream_id, run_id);
    CREATE TABLE explain_stories (
        stream_id BIGINT NOT NULL REFERENCES streams (id),
        key       TEXT NOT NULL,
        run_id    BIGINT NOT NULL,
        fetch_id  BIGINT,
        location  TEXT,
        outcome   TEXT NOT NULL,
        reason    TEXT,
        raw       BYTEA,
        PRIMARY KEY (stream_id, key)
    );
    CREATE TABLE explain_runs (
        stream_id   BIGINT NOT NULL REFERENCES streams (id),
        run_id      BIGINT NOT NULL,
        mapping     TEXT,
        key_columns TEXT NOT NULL,
        PRIMARY KEY (stream_id, run_id)
    );
"#,
    // 2: rotated OAuth2 refresh tokens, always sealed (`dovetail_state::SecretKey::seal`, the
    // row's key as associated data): a shared database never holds one in plaintext.
    r#"
    CREATE TABLE tokens (
        key        TEXT PRIMARY KEY,
        sealed     BYTEA NOT NULL,
        updated_at TEXT NOT NULL
    );
"#,
    // 3: where a pause's cause happened (a URL), apart from its reason.
    r#"
    ALTER TABLE paused_streams ADD COLUMN location TEXT;
"#,
    // 4: fencing and commit receipts. `run_locks` names the current holder of each
    // pipeline's run lock (a token per taking), so a run that lost its lock's connection and
    // took it again knows whether another run held it meanwhile, and every commit of a lock
    // holder checks it still is one. `streams.last_commit` is the token of the stream's last
    // commit: after a connection dropped during COMMIT, it says whether that commit landed.
    r#"
    CREATE TABLE run_locks (
        pipeline TEXT PRIMARY KEY,
        holder   TEXT NOT NULL,
        taken_at TEXT NOT NULL
    );
    ALTER TABLE streams ADD COLUMN last_commit TEXT;
"#,
    // 5: the ledger without its foreign key to `streams`. Checking it ran a trigger and a
    // query per ledger row written, a third of a commit's ledger upsert (docs/performance.md);
    // a row's `stream_id` always comes from `streams`, whose rows are never deleted.
    r#"
    ALTER TABLE ledger DROP CONSTRAINT IF EXISTS ledger_stream_id_fkey;
"#,
    // 6 (issue 23): vendor rate budgets shared by every
    // process on this state, one token bucket per (host, credential hash) (`budget.rs`):
    // `tokens` as of `updated_at`, `granted` the last take's permits, `blocked_until` a wait
    // the vendor asked for.
    r#"
    CREATE TABLE rate_budgets (
        key TEXT PRIMARY KEY,
        tokens DOUBLE PRECISION NOT NULL,
        granted INTEGER NOT NULL DEFAULT 0,
        updated_at TIMESTAMPTZ NOT NULL,
        blocked_until TIMESTAMPTZ
    );
"#,
    // 7 (issue 23): workers, stream leases and their history, schedule ticks
    // (`dovetail worker`, crate::lease). Times are the server's (`clock_timestamp()`), so
    // hosts' clocks never decide who holds what.
    r#"
    CREATE TABLE workers (
        id           TEXT PRIMARY KEY,
        host         TEXT NOT NULL,
        pid          BIGINT NOT NULL,
        started_at   TIMESTAMPTZ NOT NULL,
        heartbeat_at TIMESTAMPTZ NOT NULL,
        stopped_at   TIMESTAMPTZ
    );
    CREATE TABLE leases (
        pipeline        TEXT NOT NULL,
        unit            TEXT NOT NULL,
        streams         TEXT[] NOT NULL,
        holder          TEXT,
        epoch           BIGINT NOT NULL DEFAULT 0,
        acquired_at     TIMESTAMPTZ,
        expires_at      TIMESTAMPTZ,
        previous_holder TEXT,
        done_tick       BIGINT,
        PRIMARY KEY (pipeline, unit)
    );
    CREATE TABLE lease_history (
        id              BIGSERIAL PRIMARY KEY,
        pipeline        TEXT NOT NULL,
        unit            TEXT NOT NULL,
        event           TEXT NOT NULL,
        holder          TEXT NOT NULL,
        epoch           BIGINT NOT NULL,
        previous_holder TEXT,
        tick            BIGINT,
        at              TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
    );
    CREATE INDEX lease_history_by_unit ON lease_history (pipeline, unit, id);
    CREATE TABLE schedule_ticks (
        pipeline   TEXT NOT NULL,
        tick       BIGINT NOT NULL,
        seen_by    TEXT NOT NULL,
        seen_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (pipeline, tick)
    );
"#,
    // 8 (issue 24): creates sent whose destination id is not known yet
    // (`DeliveryStore::record_pending_create`), written before the request goes out.
    r#"
    CREATE TABLE pending_creates (
        pipeline        TEXT NOT NULL,
        stream          TEXT NOT NULL,
        key             TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        since           TEXT NOT NULL,
        PRIMARY KEY (pipeline, stream, key)
    );
"#,
    // 9: a key queued again in the outbox replaces its waiting entry (`commit::OUTBOX_INSERT`),
    // found by this index.
    r#"
    CREATE INDEX outbox_by_key ON outbox (stream_id, key);
"#,
    // 10 (issue 23): the strictest rate and burst a process asked of a shared budget lately —
    // a limit learned from a vendor's rate-limit headers — kept with the bucket so every
    // process refills at it (crate::budget).
    r#"
    ALTER TABLE rate_budgets ADD COLUMN rate DOUBLE PRECISION, ADD COLUMN capacity DOUBLE PRECISION,
        ADD COLUMN limited_at TIMESTAMPTZ;
"#,
    // 11 (issue 24): the destination's request id of the last write that delivered each key
    // (`DeliveryStore::record_write_request`: Stripe's `Request-Id`), for `dovetail explain`.
    r#"
    CREATE TABLE write_requests (
        pipeline   TEXT NOT NULL,
        stream     TEXT NOT NULL,
        key        TEXT NOT NULL,
        request_id TEXT NOT NULL,
        PRIMARY KEY (pipeline, stream, key)
    );
"#,
];

/// The schema version this code writes: the number of known migrations.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The advisory-lock key migrations of `schema` take (xxh3 of a fixed prefix and the name).
fn lock_key(schema: &str) -> i64 {
    xxhash_rust::xxh3::xxh3_64(format!("dovetail migrate\0{schema}").as_bytes()) as i64
}

/// Bring `target`'s schema up to [`SCHEMA_VERSION`]; returns the version it is at.
pub(crate) async fn migrate(conn: &mut Conn, target: &PgTarget) -> Result<i64, Error> {
    migrate_with(conn, target, MIGRATIONS).await
}

/// [`migrate`] with a given list (tests use shorter and longer ones).
pub async fn migrate_with(
    conn: &mut tokio_postgres::Client,
    target: &PgTarget,
    migrations: &[&str],
) -> Result<i64, Error> {
    let err = |op: &str| {
        let op = op.to_owned();
        move |e| pg_err(target, &op, e)
    };
    let schema = target.schema();
    let tx = conn.transaction().await.map_err(err("starting a migration"))?;
    // Waits while another process migrates; released with the transaction.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key(schema)])
        .await
        .map_err(err("waiting for a migration"))?;
    let exists: bool = tx
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", &[&schema])
        .await
        .map_err(err("looking for the state schema"))?
        .get(0);
    let user = target.user().unwrap_or("?");
    if !exists {
        let db = target.database().unwrap_or(user);
        tx.batch_execute(&format!("CREATE SCHEMA \"{schema}\"")).await.map_err(|e| {
            let needs = format!("CREATE on database \"{db}\" (to create schema \"{schema}\")");
            privilege_err(
                target,
                "creating the state schema",
                &needs,
                &format!("GRANT CREATE ON DATABASE \"{db}\" TO \"{user}\""),
                e,
            )
        })?;
    }
    let needs = format!("USAGE and CREATE on schema \"{schema}\"");
    let grant = format!("GRANT USAGE, CREATE ON SCHEMA \"{schema}\" TO \"{user}\"");
    let has_versions: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = 'schema_version')",
            &[&schema],
        )
        .await
        .map_err(err("looking for the schema_version table"))?
        .get(0);
    if !has_versions {
        // Qualified: a schema the user may not use is skipped by `search_path`, which would
        // hide the missing privilege behind "no schema has been selected to create in".
        tx.batch_execute(&format!(
            "CREATE TABLE \"{schema}\".schema_version (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)"
        ))
        .await
        .map_err(|e| privilege_err(target, "creating the schema_version table", &needs, &grant, e))?;
    }
    let current: i64 = tx
        .query_one(&format!("SELECT coalesce(max(version), 0) FROM \"{schema}\".schema_version"), &[])
        .await
        .map_err(|e| privilege_err(target, "reading the schema version", &needs, &grant, e))?
        .get(0);
    let known = migrations.len() as i64;
    if current > known {
        return Err(Error::config(format!(
            "the PostgreSQL state schema `{schema}` at {} has schema version {current}, but this dovetail only knows \
             versions up to {known}; it was written by a newer dovetail — upgrade dovetail or set `state.schema` to \
             another schema",
            target.place()
        )));
    }
    for (i, sql) in migrations.iter().enumerate().skip(current as usize) {
        let version = i as i64 + 1;
        tx.batch_execute(sql)
            .await
            .map_err(|e| privilege_err(target, &format!("applying schema migration {version}"), &needs, &grant, e))?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)",
            &[&version, &jiff::Timestamp::now().to_string()],
        )
        .await
        .map_err(err("recording a schema migration"))?;
        tracing::info!(at = target.place(), schema, version, "applied state schema migration");
    }
    tx.commit().await.map_err(err("committing schema migrations"))?;
    Ok(known.max(current))
}

#[cfg(test)]
mod tests {
    use dovetail_testkit::pg;

    use crate::{PgState, PgTarget};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_ledger_has_no_foreign_key_to_check_per_row() {
        let Some(db) = pg::database("ledger_no_fkey") else { return };
        let st = PgState::new(PgTarget::parse(db.url(), None).unwrap()).unwrap();
        st.ready().await.unwrap();
        let c = st.conn().await.unwrap();
        let sql = "SELECT count(*) FROM pg_constraint WHERE conrelid = 'dovetail.ledger'::regclass AND contype = 'f'";
        let n: i64 = c.query_one(sql, &[]).await.unwrap().get(0);
        assert_eq!(n, 0, "a foreign key on the ledger runs a trigger and a query per row written");
    }
}
