//! Shared test helpers: a client on a fake clock, a static test credential.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use dovetail_core::Error;
use dovetail_http::auth::Auth;
use dovetail_http::{FakeClock, HttpClientBuilder, RetryPolicy};

/// A builder on `clock`, against `base`, with fast deterministic retries.
pub fn builder(base: &str, clock: &Arc<FakeClock>) -> HttpClientBuilder {
    dovetail_http::HttpClient::builder("test").base_url(base).clock(clock.clone()).retry(RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(2),
        max_elapsed: Duration::from_secs(120),
        jitter_seed: Some(42),
        ..RetryPolicy::default()
    })
}

/// Bearer header plus an `api_key` query parameter; counts 401 callbacks.
#[derive(Debug, Default)]
pub struct TestAuth {
    pub token: String,
    pub query_key: Option<String>,
    pub refreshable: bool,
    pub unauthorized: AtomicU32,
}

impl TestAuth {
    pub fn bearer(token: &str) -> Arc<Self> {
        Arc::new(TestAuth { token: token.into(), ..TestAuth::default() })
    }
    pub fn unauthorized_calls(&self) -> u32 {
        self.unauthorized.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Auth for TestAuth {
    async fn apply(&self, req: &mut reqwest::Request) -> Result<(), Error> {
        let n = self.unauthorized.load(Ordering::SeqCst);
        let v = format!("Bearer {}{}", self.token, if n > 0 { "-fresh" } else { "" });
        req.headers_mut().insert("authorization", v.parse().unwrap());
        if let Some(k) = &self.query_key {
            req.url_mut().query_pairs_mut().append_pair("api_key", k);
        }
        Ok(())
    }
    async fn on_unauthorized(&self, _rejected: &reqwest::header::HeaderMap) -> Result<bool, Error> {
        self.unauthorized.fetch_add(1, Ordering::SeqCst);
        Ok(self.refreshable)
    }
    fn credential_id(&self) -> String {
        "test-cred".into()
    }
    fn secret_query_params(&self) -> Vec<String> {
        vec!["api_key".into()]
    }
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
