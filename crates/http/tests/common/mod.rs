//! Shared test helpers: a client on a fake clock, a static test credential, a log capture
//! and an in-memory token store.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dovetail_core::remote::TokenStore;
use dovetail_core::{Error, Secret};
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

/// A log writer keeping everything written, for `tracing_subscriber`'s `with_writer`
/// (`move || capture.clone()`).
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    /// Capture every event at TRACE (plain text, no colours) on this thread until the guard drops.
    pub fn trace_on_this_thread() -> (Capture, tracing::subscriber::DefaultGuard) {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (capture, tracing::subscriber::set_default(subscriber))
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// A token store in memory that survives "restarts" (shared between provider instances):
/// tokens by key, every saved token in order, and a switch that makes saving fail.
#[derive(Default)]
pub struct MemoryTokenStore {
    pub tokens: Mutex<HashMap<String, String>>,
    pub saves: Mutex<Vec<String>>,
    pub fail: bool,
}

#[async_trait]
impl TokenStore for MemoryTokenStore {
    async fn load(&self, key: &str) -> Result<Option<Secret>, Error> {
        Ok(self.tokens.lock().unwrap().get(key).map(Secret::new))
    }
    async fn save(&self, key: &str, token: &Secret) -> Result<(), Error> {
        if self.fail {
            return Err(Error::permanent("disk full"));
        }
        self.saves.lock().unwrap().push(token.expose().to_owned());
        self.tokens.lock().unwrap().insert(key.to_owned(), token.expose().to_owned());
        Ok(())
    }
}
