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
