//! The shared rate budget's bucket (`rate_budgets`): a take grants at most what the bucket
//! holds, refills at the rate up to the capacity, is shared by stores on one schema (as
//! processes would be), and grants nothing while a wait the vendor asked for lasts.

use std::time::{Duration, SystemTime};

use dovetail_core::remote::SharedBudget;
use dovetail_state_pg::{PgBudget, PgState, PgTarget};
use dovetail_testkit::pg;

fn budget(db: &pg::TestDb) -> PgBudget {
    PgBudget::new(PgState::new(PgTarget::parse(db.url(), None).unwrap()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takes_are_bounded_refilled_shared_and_blocked() {
    let Some(db) = pg::database("budget_bucket") else { return };
    let (a, b) = (budget(&db), budget(&db));
    // Connected and migrated first, so the takes below are quick.
    a.take("warm", 1, 1.0, 1.0, None).await.unwrap();
    b.take("warm", 1, 1.0, 1.0, None).await.unwrap();
    // One per 100 s, a bucket of 4: the first take finds it full; it hardly refills here.
    let g = a.take("h slow", 3, 0.01, 4.0, None).await.unwrap();
    assert_eq!(g.granted, 3);
    let g = b.take("h slow", 3, 0.01, 4.0, None).await.unwrap();
    assert_eq!(g.granted, 1, "the other store shares the bucket: {g:?}");
    let g = a.take("h slow", 3, 0.01, 4.0, None).await.unwrap();
    assert_eq!(g.granted, 0);
    assert!(g.wait > Duration::from_secs(90) && g.wait <= Duration::from_secs(100), "{g:?}");
    assert_eq!(g.blocked, None);
    // Another key is another bucket; refilled at 10/s, never past the capacity.
    assert_eq!(a.take("h c", 4, 10.0, 4.0, None).await.unwrap().granted, 4);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(b.take("h c", 10, 10.0, 4.0, None).await.unwrap().granted, 4);
    // A wait the vendor asked for: nothing for anyone until it ends.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let until = SystemTime::now() + Duration::from_millis(600);
    let g = a.take("h c", 1, 10.0, 4.0, Some(until)).await.unwrap();
    assert_eq!(g.granted, 0, "{g:?}");
    let g = b.take("h c", 1, 10.0, 4.0, None).await.unwrap();
    assert_eq!(g.granted, 0, "{g:?}");
    let blocked = g.blocked.expect("blocked");
    assert!(blocked > Duration::from_millis(300) && blocked <= Duration::from_millis(600), "{g:?}");
    assert!(g.wait >= blocked, "{g:?}");
    tokio::time::sleep(blocked + Duration::from_millis(50)).await;
    assert_eq!(b.take("h c", 1, 10.0, 4.0, None).await.unwrap().granted, 1);
}
