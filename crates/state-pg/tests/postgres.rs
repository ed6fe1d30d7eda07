//! What only the PostgreSQL store has to get right: several processes on one schema
//! (concurrent migrations, concurrent commits to different streams), a large batch lookup,
//! and a schema from a newer dovetail.

use dovetail_core::state::{Commit, LedgerEntry};
use dovetail_core::{ContentHash, DeliveryStore, ErrorKind, Key};
use dovetail_state_pg::{PgState, PgTarget};
use dovetail_testkit::pg;

fn store(db: &pg::TestDb) -> PgState {
    PgState::new(PgTarget::parse(db.url(), None).unwrap()).unwrap()
}

fn rows(stream: &str, from: u32, n: u32) -> Commit {
    Commit {
        pipeline: "p".into(),
        stream: stream.into(),
        pass: 1,
        ledger: (from..from + n)
            .map(|i| LedgerEntry {
                key: Key::from_canonical(i.to_string()),
                hash: ContentHash([i as u8; 16]),
                dest_id: None,
            })
            .collect(),
        ..Commit::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_migrate_and_commit_to_different_streams_at_once() {
    let Some(db) = pg::database("two_processes") else { return };
    // Two stores are two pools, as two processes would have; neither has migrated yet.
    let (a, b) = (store(&db), store(&db));
    let (va, vb) = tokio::join!(a.ready(), b.ready());
    let v = dovetail_state_pg::migrations::SCHEMA_VERSION;
    assert_eq!((va.unwrap(), vb.unwrap()), (v, v), "the second waits for the first's migration");
    let writer = |st: PgState, stream: &'static str| async move {
        for batch in 0..20 {
            st.commit(rows(stream, batch * 50, 50)).await.unwrap();
        }
    };
    tokio::join!(writer(a.clone(), "s"), writer(b.clone(), "t"));
    let keys: Vec<Key> = (0..1000).map(|i: u32| Key::from_canonical(i.to_string())).collect();
    for stream in ["s", "t"] {
        let found = a.ledger_lookup("p", stream, &keys).await.unwrap();
        assert!(found.iter().all(Option::is_some), "every row of `{stream}` committed");
    }
}

#[tokio::test]
async fn a_ledger_lookup_of_ten_thousand_keys_answers_in_order() {
    let Some(db) = pg::database("ten_thousand") else { return };
    let st = store(&db);
    st.commit(rows("s", 0, 10_000)).await.unwrap();
    // Every other key exists; one statement (`key = ANY($2)`) answers all of them.
    let keys: Vec<Key> = (0..20_000).step_by(2).map(|i: u32| Key::from_canonical(i.to_string())).collect();
    let found = st.ledger_lookup("p", "s", &keys).await.unwrap();
    assert_eq!(found.len(), 10_000);
    for (i, h) in (0..20_000u32).step_by(2).zip(&found) {
        assert_eq!(*h, (i < 10_000).then_some(ContentHash([i as u8; 16])), "key {i}");
    }
}

#[tokio::test]
async fn a_schema_from_a_newer_dovetail_is_refused() {
    let Some(db) = pg::database("newer_schema") else { return };
    store(&db).ready().await.unwrap();
    let (client, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.batch_execute("INSERT INTO dovetail.schema_version VALUES (99, 'later')").await.unwrap();
    let err = store(&db).ready().await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Config, "{err}");
    assert!(err.message().contains("schema version 99"), "{err}");
    assert!(!err.message().contains(db.password()), "{err}");
}

/// Terminates the backends of `db` whose `application_name` is like `app`; how many.
async fn terminate(db: &pg::TestDb, app: &str) -> u64 {
    let (client, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name LIKE $1",
            &[&app],
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_lock_was_taken_over_while_its_connection_was_down_stops_committing() {
    let Some(db) = pg::database("lock_taken_over") else { return };
    let st = store(&db);
    let lock = st.lock("p").await.unwrap();
    st.commit(rows("s", 0, 10)).await.unwrap();
    assert_eq!(terminate(&db, "dovetail pid %").await, 1, "the lock's own connection");
    // Another host's run takes the lock as soon as it is free.
    let other = store(&db);
    let theirs = other.lock("p").await.expect("the dropped lock is free");
    let err = st.commit(rows("s", 10, 10)).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("another run took the lock meanwhile"), "{err}");
    assert!(err.message().contains(&format!("held by dovetail pid {}", std::process::id())), "{err}");
    // Still refused once that run is done: it may have committed.
    drop(theirs);
    let err = loop {
        match st.commit(rows("s", 10, 10)).await {
            Err(e) if e.message().contains("already running") || e.message().contains("(held by dovetail pid") => {}
            Err(e) => break e,
            Ok(()) => panic!("a commit went through after another run held the lock"),
        }
    };
    assert!(err.message().contains("another run took the lock meanwhile"), "{err}");
    let found = st.ledger_lookup("p", "s", &[Key::from_canonical("15")]).await.unwrap();
    assert_eq!(found, vec![None], "nothing of the refused commits landed");
    drop(lock);
    let _again = st.lock("p").await.expect("the lock is free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_dropped_the_store_reconnects_and_takes_its_lock_again() {
    let Some(db) = pg::database("all_dropped") else { return };
    let st = store(&db);
    let _lock = st.lock("p").await.unwrap();
    st.commit(rows("s", 0, 10)).await.unwrap();
    assert!(terminate(&db, "dovetail%").await >= 2, "the pool's and the lock's connections");
    let (client, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let locks = async || -> i64 {
        let sql = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
        client.query_one(sql, &[]).await.unwrap().get(0)
    };
    // Commits go on (one may be on a dead connection: tried again on a new one); the first
    // after the store noticed the lock's connection ended takes the lock again. One before
    // that is fenced by the holder token, which is still this run's.
    let mut next = 10;
    while locks().await == 0 {
        assert!(next < 1000, "the run lock was never taken again");
        st.commit(rows("s", next, 10)).await.unwrap();
        next += 10;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(locks().await, 1, "the run lock is held again");
    let keys: Vec<Key> = (0..next).map(|i: u32| Key::from_canonical(i.to_string())).collect();
    assert!(st.ledger_lookup("p", "s", &keys).await.unwrap().iter().all(Option::is_some));
    let repeated: i64 =
        client.query_one("SELECT count(*) FROM dovetail.ledger WHERE repeated", &[]).await.unwrap().get(0);
    assert_eq!(repeated, 0, "no batch was applied twice");
}

#[tokio::test]
async fn tokens_are_stored_sealed_and_need_their_key() {
    use dovetail_core::Secret;
    use dovetail_core::remote::TokenStore;
    use dovetail_state::SecretKey;
    use dovetail_state_pg::PgTokenStore;
    let Some(db) = pg::database("tokens_sealed") else { return };
    let key = SecretKey::parse(&"ab".repeat(32)).unwrap();
    let tokens = PgTokenStore::new(store(&db), key);
    assert!(tokens.load("oauth:a").await.unwrap().is_none());
    tokens.save("oauth:a", &Secret::new("refresh-TOKEN-123")).await.unwrap();
    assert_eq!(tokens.load("oauth:a").await.unwrap().unwrap().expose(), "refresh-TOKEN-123");
    let (client, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let sealed: Vec<u8> = client.query_one("SELECT sealed FROM dovetail.tokens", &[]).await.unwrap().get(0);
    assert!(!String::from_utf8_lossy(&sealed).contains("refresh-TOKEN"), "never plaintext in the database");
    let wrong = PgTokenStore::new(store(&db), SecretKey::parse(&"cd".repeat(32)).unwrap());
    let err = wrong.load("oauth:a").await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Config, "{err}");
    assert!(err.message().contains("DOVETAIL_SECRET_KEY is not the key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_connection_drops_midway_leaves_nothing_and_its_retry_lands_once() {
    use dovetail_core::state::{Checkpoint, OutboxEntry};
    let Some(db) = pg::database("commit_dropped") else { return };
    let st = store(&db);
    st.ready().await.unwrap();
    let (client, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    // The checkpoint is a commit's last statement: the first time, it waits there (every
    // other part written, nothing committed) until the test ends its session.
    client
        .batch_execute(
            "CREATE SEQUENCE dovetail.stalled;
             CREATE FUNCTION dovetail.stall() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               -- A sequence, not a table: its count survives the dropped attempt's rollback.
               IF nextval('dovetail.stalled') = 1 THEN PERFORM pg_sleep(60); END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER stall BEFORE INSERT OR UPDATE ON dovetail.checkpoints
               FOR EACH ROW EXECUTE FUNCTION dovetail.stall();",
        )
        .await
        .unwrap();
    let mut commit = rows("s", 0, 10);
    commit.checkpoint = Some(Checkpoint { position: Some(serde_json::json!(10)), pass: 1, ..Checkpoint::default() });
    commit.outbox_add = (0..3)
        .map(|i| OutboxEntry {
            id: 0,
            key: Key::from_canonical(format!("o{i}")),
            hash: ContentHash([9; 16]),
            data: serde_json::json!({ "i": i }),
            location: None,
        })
        .collect();
    let committing = tokio::spawn({
        let st = st.clone();
        async move { st.commit(commit).await }
    });
    let started = std::time::Instant::now();
    loop {
        let n = client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event = 'PgSleep'",
                &[],
            )
            .await
            .unwrap();
        if n == 1 {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "the commit never reached its checkpoint");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    committing.await.unwrap().expect("the commit is tried again on a new connection");
    let one = |sql: &'static str| {
        let client = &client;
        async move { client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(one("SELECT last_value FROM dovetail.stalled").await, 2, "two attempts reached the checkpoint");
    assert_eq!(one("SELECT count(*) FROM dovetail.ledger").await, 10);
    assert_eq!(one("SELECT count(*) FROM dovetail.ledger WHERE repeated").await, 0, "the dropped attempt left no rows");
    assert_eq!(one("SELECT count(*) FROM dovetail.outbox").await, 3, "queued once");
    assert_eq!(one("SELECT count(*) FROM dovetail.checkpoints").await, 1);
}

#[tokio::test]
async fn a_ledger_lookup_of_ten_thousand_keys_is_one_statement() {
    // pg_stat_statements counts what the server ran; it must be preloaded, so a cluster of
    // this test's own.
    let options = pg::ClusterOptions {
        settings: vec!["shared_preload_libraries=pg_stat_statements".into(), "pg_stat_statements.track=all".into()],
        ..pg::ClusterOptions::default()
    };
    let Some(cluster) = pg::Cluster::start("one_statement", &options) else { return };
    let db = cluster.database("one_statement");
    let st = store(&db);
    st.commit(rows("s", 0, 10_000)).await.unwrap();
    let keys: Vec<Key> = (0..10_000).map(|i: u32| Key::from_canonical(i.to_string())).collect();
    // Once first: a connection prepares the statement on its first use.
    assert!(st.ledger_lookup("p", "s", &keys).await.unwrap().iter().all(Option::is_some));
    let (client, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.batch_execute("CREATE EXTENSION pg_stat_statements; SELECT pg_stat_statements_reset()").await.unwrap();
    assert!(st.ledger_lookup("p", "s", &keys).await.unwrap().iter().all(Option::is_some));
    let rows = client
        .query(
            "SELECT query, calls FROM pg_stat_statements
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND query NOT LIKE '%pg_stat_statements%'",
            &[],
        )
        .await
        .unwrap();
    let ran: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(ran.iter().map(|r| r.1).sum::<i64>(), 1, "one statement for 10,000 keys: {ran:?}");
    assert!(ran[0].0.contains("key = ANY($2)"), "{ran:?}");
}
