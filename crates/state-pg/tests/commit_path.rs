//! How a commit reaches the server (docs/performance.md, issue 21): new ledger rows go in by
//! a plain INSERT, a row already there sends the commit again with the upsert, and a commit
//! dropped midway lands whole or not at all and leaves no transaction open on a pooled
//! connection.

use std::time::Duration;

use dovetail_core::state::{Checkpoint, Commit, LedgerEntry};
use dovetail_core::{ContentHash, DeliveryStore, Key};
use dovetail_state_pg::{PgState, PgTarget};
use dovetail_testkit::pg;

fn store(db: &pg::TestDb) -> PgState {
    PgState::new(PgTarget::parse(db.url(), None).unwrap()).unwrap()
}

fn rows(pass: u64, from: u32, n: u32, hash: u8) -> Commit {
    Commit {
        pipeline: "p".into(),
        stream: "s".into(),
        pass,
        ledger: (from..from + n)
            .map(|i| LedgerEntry {
                key: Key::from_canonical(i.to_string()),
                hash: ContentHash([hash; 16]),
                dest_id: None,
            })
            .collect(),
        checkpoint: Some(Checkpoint { position: Some(serde_json::json!(from + n)), pass, ..Checkpoint::default() }),
        ..Commit::default()
    }
}

async fn client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_ledger_rows_go_in_without_on_conflict_and_a_row_already_there_falls_back_to_the_upsert() {
    // pg_stat_statements counts the statements that ran to completion; it must be preloaded,
    // so a cluster of this test's own.
    let options = pg::ClusterOptions {
        settings: vec!["shared_preload_libraries=pg_stat_statements".into(), "pg_stat_statements.track=all".into()],
        ..pg::ClusterOptions::default()
    };
    let Some(cluster) = pg::Cluster::start("plain_insert", &options) else { return };
    let db = cluster.database("plain_insert");
    let first = store(&db);
    first.ready().await.unwrap();
    let client = client(db.url()).await;
    client.batch_execute("CREATE EXTENSION pg_stat_statements; SELECT pg_stat_statements_reset()").await.unwrap();
    first.commit(rows(1, 0, 100, 1)).await.unwrap();
    first.commit(rows(1, 100, 100, 1)).await.unwrap();
    // Another process, on rows the first wrote: its plain INSERT conflicts, and the commit
    // lands once by the upsert; its later commits take the upsert at once.
    let second = store(&db);
    second.commit(rows(2, 150, 100, 2)).await.unwrap();
    second.commit(rows(2, 250, 50, 2)).await.unwrap();
    let ledger_calls = |on_conflict: bool| {
        let client = &client;
        async move {
            let sql = format!(
                "SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_statements
                 WHERE query LIKE 'INSERT INTO ledger%' AND query {} LIKE '%ON CONFLICT%'",
                if on_conflict { "" } else { "NOT" }
            );
            count(client, &sql).await
        }
    };
    assert_eq!(ledger_calls(false).await, 2, "the first process's two commits, plainly inserted");
    assert_eq!(ledger_calls(true).await, 2, "the conflicting commit again, and the one after it");
    assert_eq!(count(&client, "SELECT count(*) FROM dovetail.ledger").await, 300);
    let by_hash =
        "SELECT count(*) FROM dovetail.ledger WHERE hash = '\\x02020202020202020202020202020202' AND pass = 2";
    assert_eq!(count(&client, by_hash).await, 150, "the second process's rows won");
    assert_eq!(count(&client, "SELECT count(*) FROM dovetail.ledger WHERE repeated").await, 0);
    let cp = client.query_one("SELECT checkpoint FROM dovetail.checkpoints", &[]).await.unwrap();
    assert!(cp.get::<_, &str>(0).contains("300"), "{}", cp.get::<_, &str>(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_dropped_midway_leaves_nothing_and_no_open_transaction_behind() {
    let Some(db) = pg::database("commit_cancelled") else { return };
    let st = store(&db);
    st.ready().await.unwrap();
    st.commit(rows(1, 0, 10, 1)).await.unwrap();
    let client = client(db.url()).await;
    // The checkpoint is a commit's last statement: the first time, it waits there.
    client
        .batch_execute(
            "CREATE SEQUENCE dovetail.stalled;
             CREATE FUNCTION dovetail.stall() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF nextval('dovetail.stalled') = 1 THEN PERFORM pg_sleep(1); END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER stall BEFORE INSERT OR UPDATE ON dovetail.checkpoints
               FOR EACH ROW EXECUTE FUNCTION dovetail.stall();",
        )
        .await
        .unwrap();
    let dropped = tokio::time::timeout(Duration::from_millis(300), st.commit(rows(1, 10, 10, 1))).await;
    assert!(dropped.is_err(), "the commit was still waiting on its checkpoint");
    let sleeping =
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'PgSleep'";
    let started = std::time::Instant::now();
    while count(&client, sleeping).await > 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "the stalled checkpoint never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every pooled connection in turn, the dropped commit's too: each commit must land for
    // another session to see.
    for i in 0..12 {
        st.commit(rows(1, 100 + i * 10, 10, 1)).await.unwrap();
    }
    let dropped_rows = count(&client, "SELECT count(*) FROM dovetail.ledger WHERE key::int8 BETWEEN 10 AND 19").await;
    assert!(dropped_rows == 0 || dropped_rows == 10, "the dropped commit landed in part: {dropped_rows} rows");
    assert_eq!(count(&client, "SELECT count(*) FROM dovetail.ledger").await, 130 + dropped_rows);
    let open = "SELECT count(*) FROM pg_stat_activity
                WHERE datname = current_database() AND state LIKE 'idle in transaction%'";
    assert_eq!(count(&client, open).await, 0, "a pooled connection was left inside a transaction");
}
