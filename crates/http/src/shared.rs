//! What the process shares between clients: one rate limiter per (host, credential), one
//! OAuth2 token provider per (token endpoint, client, credential) — and, when the runner
//! sets one ([`share_budgets`]), the [`SharedBudget`] through which limiters share their
//! configured budgets with the other processes on the same state.
//!
//! A vendor's budget and a rotating refresh token belong to the credential, not to the
//! connector that happens to use it: a REST source and sink on one OAuth client, or three
//! pipelines run by `--every`, must not each keep their own copy of the refresh token (the
//! first rotation voids the others' copies: `invalid_grant`) nor each spend the whole rate
//! budget. So clients look both up here by identity. Entries are weak: what no live client
//! uses is dropped (a rotated refresh token is already in the token store by then).
//!
//! Time is part of the identity: limiters and token expiries are measured on a [`Clock`],
//! and clients on different clocks (a test's `FakeClock`) cannot share readings. Clients
//! built without a clock share [`default_clock`], so in production all of them share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use dovetail_core::Error;
use dovetail_core::remote::SharedBudget;

use crate::auth::Auth;
use crate::clock::{Clock, TokioClock};
use crate::limit::Limiter;

/// The clock of every client built without one: one per process, so they can share.
pub(crate) fn default_clock() -> Arc<dyn Clock> {
    static CLOCK: OnceLock<Arc<dyn Clock>> = OnceLock::new();
    CLOCK.get_or_init(|| Arc::new(TokioClock::default())).clone()
}

/// The identity of a shared object (its address; stable while anyone holds it).
pub(crate) fn identity<T: ?Sized>(a: &Arc<T>) -> usize {
    Arc::as_ptr(a).cast::<()>() as usize
}

type LimiterKey = (String, String, usize);

fn budgets_slot() -> &'static Mutex<Option<Arc<dyn SharedBudget>>> {
    static BUDGETS: OnceLock<Mutex<Option<Arc<dyn SharedBudget>>>> = OnceLock::new();
    BUDGETS.get_or_init(Default::default)
}

/// From now on every limiter with a configured budget (`http.rate_limit`) takes its permits
/// from `budgets`, shared with the other processes using it (PostgreSQL state); without it
/// each process keeps its budget to itself.
pub fn share_budgets(budgets: Arc<dyn SharedBudget>) {
    *budgets_slot().lock().unwrap_or_else(|p| p.into_inner()) = Some(budgets);
}

/// The budgets shared across processes, if the runner set them.
pub(crate) fn budgets() -> Option<Arc<dyn SharedBudget>> {
    budgets_slot().lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The limiter of (host, credential) on `clock`, created on first use.
pub(crate) fn limiter(host: &str, credential: &str, clock: &Arc<dyn Clock>) -> Arc<Limiter> {
    static LIMITERS: OnceLock<Mutex<HashMap<LimiterKey, Weak<Limiter>>>> = OnceLock::new();
    let mut map = LIMITERS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    let key = (host.to_owned(), credential.to_owned(), identity(clock));
    if let Some(l) = map.get(&key).and_then(Weak::upgrade) {
        return l;
    }
    map.retain(|_, w| w.strong_count() > 0);
    let l = Arc::new(Limiter::new(host, credential));
    map.insert(key, Arc::downgrade(&l));
    l
}

/// The token provider known by `key` (a hash of the token endpoint, client, credential and
/// the stores it depends on), built by `build` when no live client holds one.
pub(crate) fn provider(
    key: String,
    build: impl FnOnce() -> Result<Arc<dyn Auth>, Error>,
) -> Result<Arc<dyn Auth>, Error> {
    static PROVIDERS: OnceLock<Mutex<HashMap<String, Weak<dyn Auth>>>> = OnceLock::new();
    let mut map = PROVIDERS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = map.get(&key).and_then(Weak::upgrade) {
        tracing::debug!(target: "dovetail_http::auth", provider = ?p,
            "sharing the OAuth2 token provider of this client and credential with another connector");
        return Ok(p);
    }
    map.retain(|_, w| w.strong_count() > 0);
    let p = build()?;
    map.insert(key, Arc::downgrade(&p));
    Ok(p)
}
