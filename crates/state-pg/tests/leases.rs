//! Worker leases on PostgreSQL state: one holder at a time, expiry and takeover, fenced
//! commits, and `dovetail run` refused while a worker holds a stream. Two `PgState`s stand
//! for two worker processes (each remembers only its own leases).

use std::time::Duration;

use dovetail_core::lease::{LeaseStore, WorkerInfo};
use dovetail_core::state::{Checkpoint, Commit};
use dovetail_core::{DeliveryStore, ErrorKind};
use dovetail_state_pg::{PgState, PgTarget};
use dovetail_testkit::pg;

async fn stores(name: &str) -> Option<(PgState, PgState, String)> {
    let db = pg::database(name)?;
    let a = PgState::new(PgTarget::parse(db.url(), None).unwrap()).unwrap();
    let b = PgState::new(PgTarget::parse(db.url(), None).unwrap()).unwrap();
    a.ready().await.unwrap();
    for (s, id) in [(&a, "w1"), (&b, "w2")] {
        s.register_worker(&WorkerInfo { id: id.into(), host: "h".into(), pid: 1 }).await.unwrap();
    }
    Some((a, b, db.url().to_owned()))
}

fn commit(stream: &str, pos: i64) -> Commit {
    Commit {
        pipeline: "p".into(),
        stream: stream.into(),
        checkpoint: Some(Checkpoint { position: Some(serde_json::json!(pos)), ..Default::default() }),
        ..Default::default()
    }
}

async fn history(url: &str) -> Vec<(String, String, i64, Option<String>)> {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    c.query(
        "SELECT event, holder, epoch, previous_holder FROM dovetail.lease_history WHERE event <> 'renew' ORDER BY id",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

#[tokio::test]
async fn one_holder_then_takeover_after_expiry_and_the_stalled_commit_is_fenced() {
    let Some((a, b, url)) = stores("leases_takeover").await else { return };
    let streams = vec!["s".to_owned()];
    let ttl = Duration::from_millis(600);
    let la = a.claim("w1", "p", "s", &streams, ttl, None).await.unwrap().expect("w1 claims a free unit");
    assert!(b.claim("w2", "p", "s", &streams, ttl, None).await.unwrap().is_none(), "a live lease is not claimed");
    a.commit(commit("s", 1)).await.unwrap();
    // w1 stalls past expiry: w2 takes the unit over with a higher epoch.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let lb = b.claim("w2", "p", "s", &streams, ttl, None).await.unwrap().expect("an expired lease is taken over");
    assert_eq!((lb.epoch, lb.took_over_from.as_deref()), (la.epoch + 1, Some("w1")));
    b.commit(commit("s", 2)).await.unwrap();
    // w1 wakes up: its commit is refused in its own transaction, and the checkpoint is w2's.
    let err = a.commit(commit("s", 3)).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Busy, "{err}");
    assert!(err.message().contains("fenced") && err.message().contains("w2"), "{err}");
    let cp = b.checkpoint("p", "s").await.unwrap().unwrap();
    assert_eq!(cp.position, Some(serde_json::json!(2)));
    // Renewing finds the lease lost.
    let lost = a.renew("w1", std::slice::from_ref(&la), ttl).await.unwrap();
    assert_eq!(lost.len(), 1);
    // `dovetail run` is refused while w2 holds the stream, naming it.
    let err = b.lock("p").await.unwrap_err();
    assert!(err.message().contains("worker `w2`"), "{err}");
    b.release(&lb, Some(10)).await.unwrap();
    assert!(a.claim("w1", "p", "s", &streams, ttl, Some(10)).await.unwrap().is_none(), "the tick already ran");
    let events: Vec<_> = history(&url).await.into_iter().map(|(e, h, n, p)| format!("{e} {h} {n} {p:?}")).collect();
    assert_eq!(
        events,
        ["claim w1 1 None", "takeover w2 2 Some(\"w1\")", "fenced w1 1 None", "release w2 2 None"],
        "{events:?}"
    );
}

#[tokio::test]
async fn two_workers_commit_different_streams_of_one_pipeline_at_once() {
    let Some((a, b, _)) = stores("leases_two_streams").await else { return };
    let ttl = Duration::from_secs(5);
    a.claim("w1", "p", "s1", &["s1".to_owned()], ttl, None).await.unwrap().unwrap();
    b.claim("w2", "p", "s2", &["s2".to_owned(), "s2_child".to_owned()], ttl, None).await.unwrap().unwrap();
    let (x, y, z) = tokio::join!(a.commit(commit("s1", 1)), b.commit(commit("s2", 1)), b.commit(commit("s2_child", 1)));
    x.unwrap();
    y.unwrap();
    z.unwrap();
    assert_eq!(a.leased_by("p", &["s2_child".to_owned()]).await.unwrap().as_deref(), Some("w2"));
    let units = ["s1".to_owned(), "s2".to_owned(), "s3".to_owned()];
    assert_eq!(a.due("p", &units, 100).await.unwrap(), ["s3"], "held units are not due");
    assert!(a.note_tick("w1", "p", 100).await.unwrap());
    assert!(!b.note_tick("w2", "p", 100).await.unwrap(), "a tick is seen first once across the fleet");
}
