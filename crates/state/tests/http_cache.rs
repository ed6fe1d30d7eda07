//! `SqliteResponseCache`: round trip, replacement and the eviction bound.

use dovetail_core::remote::{CachedResponse, ResponseCache};
use dovetail_state::{SqliteResponseCache, SqliteState};

fn response(body: &str) -> CachedResponse {
    CachedResponse {
        status: 200,
        etag: Some("\"v1\"".into()),
        last_modified: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
        headers: vec![("content-type".into(), "application/json".into()), ("link".into(), "<x>; rel=\"next\"".into())],
        body: body.as_bytes().to_vec(),
        stored_at: "2026-01-01T00:00:00Z".into(),
    }
}

#[tokio::test]
async fn round_trip_survives_reopen_and_put_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let cache = SqliteResponseCache::new(SqliteState::open(&path).unwrap(), 10);
    assert_eq!(cache.get("GET https://x/a").await.unwrap(), None);
    cache.put("GET https://x/a", &response("[1]")).await.unwrap();
    let mut newer = response("[2]");
    newer.etag = None;
    cache.put("GET https://x/a", &newer).await.unwrap();
    drop(cache);
    let cache = SqliteResponseCache::new(SqliteState::open(&path).unwrap(), 10);
    assert_eq!(cache.get("GET https://x/a").await.unwrap(), Some(newer));
    assert_eq!(cache.len().await.unwrap(), 1);
}

#[tokio::test]
async fn the_table_stays_within_its_bound_evicting_the_oldest() {
    let cache = SqliteResponseCache::new(SqliteState::open_in_memory().unwrap(), 3);
    for i in 0..5 {
        cache.put(&format!("k{i}"), &response(&i.to_string())).await.unwrap();
    }
    assert_eq!(cache.len().await.unwrap(), 3);
    assert_eq!(cache.get("k0").await.unwrap(), None);
    assert_eq!(cache.get("k1").await.unwrap(), None);
    // Re-storing k2 makes it the newest, so k3 is evicted next.
    cache.put("k2", &response("again")).await.unwrap();
    cache.put("k5", &response("5")).await.unwrap();
    assert_eq!(cache.get("k3").await.unwrap(), None);
    for k in ["k2", "k4", "k5"] {
        assert!(cache.get(k).await.unwrap().is_some(), "{k} evicted");
    }
}
