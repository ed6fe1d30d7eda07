//! [`MintedBearer`]: `Authorization: Bearer` with a short-lived token that a connector's
//! [`Minter`] makes (a GitHub App's installation token, minted with a signed JWT), kept the
//! way the OAuth2 providers keep theirs: refreshed before it expires (the expiry measured
//! from when the mint started, less a skew capped at half the lifetime), single-flight (one
//! mint for every caller that finds the token stale, and its failure handed to the callers
//! that waited for it), dropped on a 401 when still current, with one retry. The token
//! lives only in memory.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use dovetail_core::{Error, ErrorKind, Secret};
use reqwest::header::AUTHORIZATION;

use super::{Auth, sensitive_header, short_hash};
use crate::clock::{Clock, TokioClock};

/// Makes a fresh token: the vendor knowledge behind a [`MintedBearer`].
#[async_trait]
pub trait Minter: Send + Sync + std::fmt::Debug {
    /// A new token and how long it stays valid (`None`: until the server refuses it).
    /// Errors carry their kind and next step; they must not quote the token or a key.
    async fn mint(&self) -> Result<(Secret, Option<Duration>), Error>;
    /// A stable, non-secret identity of what is minted for (an app and installation).
    fn identity(&self) -> String;
}

struct Token {
    access: Secret,
    /// [`Clock::monotonic`] reading from which the token is due for refresh.
    refresh_at: Option<Duration>,
}

/// Bearer auth with tokens from a [`Minter`] (see the module docs).
pub struct MintedBearer {
    minter: Arc<dyn Minter>,
    clock: Arc<dyn Clock>,
    skew: Duration,
    current: Mutex<Option<Token>>,
    /// Held while minting; holds the last mint's failure for the callers that waited.
    gate: tokio::sync::Mutex<Option<(ErrorKind, String, Option<String>)>>,
    /// Mints that ended (counted under the gate).
    mints: AtomicU64,
}

impl std::fmt::Debug for MintedBearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedBearer").field("minter", &self.minter).finish_non_exhaustive()
    }
}

impl MintedBearer {
    /// A provider over `minter`, refreshing `skew` (capped at half the lifetime) early.
    pub fn new(minter: Arc<dyn Minter>, skew: Duration) -> Self {
        MintedBearer {
            minter,
            clock: Arc::new(TokioClock::default()),
            skew,
            current: Mutex::new(None),
            gate: tokio::sync::Mutex::new(None),
            mints: AtomicU64::new(0),
        }
    }

    /// Measure expiry on `clock` (tests pass a [`crate::FakeClock`]).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn fresh(&self) -> Option<Secret> {
        let now = self.clock.monotonic();
        let cur = self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cur.as_ref().filter(|t| t.refresh_at.is_none_or(|at| now < at)).map(|t| t.access.clone())
    }

    async fn token(&self) -> Result<Secret, Error> {
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        let seen = self.mints.load(Ordering::Acquire);
        let mut gate = self.gate.lock().await;
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        if self.mints.load(Ordering::Acquire) != seen
            && let Some((kind, msg, hint)) = gate.as_ref()
        {
            // The mint this caller waited for failed: its error, not another mint.
            let e = Error::new(kind.clone(), msg.clone());
            return Err(match hint {
                Some(h) => e.with_hint(h.clone()),
                None => e,
            });
        }
        let started = self.clock.monotonic();
        let result = self.minter.mint().await;
        self.mints.fetch_add(1, Ordering::Release);
        match result {
            Ok((access, ttl)) => {
                *gate = None;
                let refresh_at = ttl.map(|ttl| started + ttl.saturating_sub(self.skew.min(ttl / 2)));
                *self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some(Token { access: access.clone(), refresh_at });
                Ok(access)
            }
            Err(e) => {
                *gate = Some((e.kind().clone(), e.message().to_owned(), e.hint().map(str::to_owned)));
                Err(e)
            }
        }
    }
}

#[async_trait]
impl Auth for MintedBearer {
    async fn apply(&self, req: &mut reqwest::Request) -> Result<(), Error> {
        let token = self.token().await?;
        req.headers_mut().insert(AUTHORIZATION, sensitive_header(&format!("Bearer {}", token.expose()))?);
        Ok(())
    }

    async fn on_unauthorized(&self, rejected: &reqwest::header::HeaderMap) -> Result<bool, Error> {
        let sent = rejected.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        let mut cur = self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let is_current =
            cur.as_ref().is_some_and(|t| sent.is_none_or(|s| s.strip_prefix("Bearer ") == Some(t.access.expose())));
        if is_current {
            *cur = None;
        }
        Ok(true)
    }

    fn credential_id(&self) -> String {
        short_hash(&["minted", &self.minter.identity()])
    }

    fn token_requests(&self) -> u64 {
        self.mints.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;
    use crate::FakeClock;

    #[derive(Debug, Default)]
    struct Counting {
        calls: AtomicU64,
        fail: bool,
    }

    #[async_trait]
    impl Minter for Counting {
        async fn mint(&self) -> Result<(Secret, Option<Duration>), Error> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
            if self.fail {
                return Err(Error::new(ErrorKind::Auth, "suspended").with_hint("unsuspend it"));
            }
            Ok((Secret::new(format!("t{n}")), Some(Duration::from_secs(3600))))
        }
        fn identity(&self) -> String {
            "counting".into()
        }
    }

    fn request() -> reqwest::Request {
        reqwest::Request::new(reqwest::Method::GET, "http://127.0.0.1/".parse().unwrap())
    }

    /// Concurrent callers share one mint (and one failure); the token is refreshed `skew`
    /// before its expiry and dropped on a 401.
    #[tokio::test]
    async fn one_mint_serves_concurrent_callers_until_the_skew() {
        let clock = FakeClock::new();
        let minter = Arc::new(Counting::default());
        let auth = Arc::new(MintedBearer::new(minter.clone(), Duration::from_secs(300)).with_clock(clock.clone()));
        let calls = (0..8).map(|_| {
            let a = auth.clone();
            tokio::spawn(async move { a.apply(&mut request()).await })
        });
        for c in calls {
            c.await.unwrap().unwrap();
        }
        assert_eq!(minter.calls.load(Ordering::SeqCst), 1);
        clock.advance(Duration::from_secs(3600 - 301));
        auth.apply(&mut request()).await.unwrap();
        assert_eq!(minter.calls.load(Ordering::SeqCst), 1);
        clock.advance(Duration::from_secs(2));
        let mut r = request();
        auth.apply(&mut r).await.unwrap();
        assert_eq!(r.headers()[AUTHORIZATION], "Bearer t2");
        assert!(auth.on_unauthorized(r.headers()).await.unwrap());
        auth.apply(&mut request()).await.unwrap();
        assert_eq!(auth.token_requests(), 3);

        let failing = Arc::new(Counting { fail: true, ..Counting::default() });
        let auth = Arc::new(MintedBearer::new(failing.clone(), Duration::from_secs(300)));
        let calls: Vec<_> = (0..4)
            .map(|_| {
                let a = auth.clone();
                tokio::spawn(async move { a.apply(&mut request()).await })
            })
            .collect();
        for c in calls {
            let e = c.await.unwrap().unwrap_err();
            assert_eq!((e.kind(), e.hint()), (&ErrorKind::Auth, Some("unsuspend it")));
        }
        assert_eq!(failing.calls.load(Ordering::SeqCst), 1);
    }
}
