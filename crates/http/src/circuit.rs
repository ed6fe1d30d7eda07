//! Circuit breaker per host: after N consecutive logical requests that spent their retry
//! budget, the host is open (calls fail fast with `Unavailable`) for a cool-down, then
//! half-open: one probe goes through, and its outcome closes or re-opens the circuit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use dovetail_core::{Error, ErrorKind};

use crate::clock::Clock;
use crate::config::CircuitPolicy;

#[derive(Debug, Default)]
struct HostState {
    consecutive: u32,
    /// Open since (wall time for the message, monotonic for the cool-down).
    open: Option<(SystemTime, Duration)>,
    probing: bool,
    last_cause: String,
}

/// Admission for one logical request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Closed: go ahead.
    Go,
    /// Half-open: this request is the one probe.
    Probe,
}

/// The breakers of every host a client talks to, shared by its clones.
#[derive(Debug)]
pub(crate) struct Circuits {
    policy: CircuitPolicy,
    clock: Arc<dyn Clock>,
    hosts: Mutex<HashMap<String, HostState>>,
}

impl Circuits {
    pub(crate) fn new(policy: CircuitPolicy, clock: Arc<dyn Clock>) -> Self {
        Circuits { policy, clock, hosts: Mutex::default() }
    }

    /// May a request go to `host` now? `Err` is an `Unavailable` error.
    pub(crate) fn admit(&self, host: &str) -> Result<Admit, Error> {
        let mut map = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        // A host never seen is closed: no entry (and no key allocation) until it fails.
        let Some(s) = map.get_mut(host) else { return Ok(Admit::Go) };
        let Some((since, opened_at)) = s.open else { return Ok(Admit::Go) };
        if !s.probing && self.clock.monotonic() >= opened_at + self.policy.cool_down {
            s.probing = true;
            tracing::info!(target: "dovetail_http::circuit", host, "circuit half-open: sending one probe");
            return Ok(Admit::Probe);
        }
        let since = jiff::Timestamp::try_from(since).map(|t| t.to_string()).unwrap_or_else(|_| "?".into());
        Err(Error::new(
            ErrorKind::Unavailable,
            format!("{host} unavailable since {since} (circuit open); last cause: {}", s.last_cause),
        ))
    }

    /// The host answered in a way that proves it is up.
    pub(crate) fn success(&self, host: &str) {
        let mut map = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get_mut(host) {
            if s.open.is_some() {
                tracing::info!(target: "dovetail_http::circuit", host, "circuit closed: host is back");
            }
            *s = HostState::default();
        }
    }

    /// A logical request to `host` spent its retry budget (or a probe failed).
    pub(crate) fn failure(&self, host: &str, cause: &str) {
        let mut map = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let s = map.entry(host.to_owned()).or_default();
        s.consecutive += 1;
        s.last_cause = cause.to_owned();
        if s.probing || (s.open.is_none() && s.consecutive >= self.policy.failure_threshold) {
            s.open = Some((self.clock.now(), self.clock.monotonic()));
            s.probing = false;
            tracing::error!(target: "dovetail_http::circuit", host, cause, "circuit open: host marked unavailable");
            metrics::counter!("dovetail_http_circuit_open_total", "host" => host.to_owned()).increment(1);
        }
    }

    /// A probe ended without a verdict (e.g. a 4xx): let another probe through.
    pub(crate) fn release_probe(&self, host: &str) {
        if let Some(s) = self.hosts.lock().unwrap_or_else(|p| p.into_inner()).get_mut(host) {
            s.probing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;

    #[test]
    fn opens_then_half_opens_with_one_probe() {
        let clock = FakeClock::new();
        let c =
            Circuits::new(CircuitPolicy { failure_threshold: 2, cool_down: Duration::from_secs(10) }, clock.clone());
        c.failure("h", "503");
        assert_eq!(c.admit("h").unwrap(), Admit::Go);
        c.failure("h", "503 again");
        let e = c.admit("h").unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::Unavailable);
        assert!(e.message().contains("since 2023-11-14T22:13:20Z") && e.message().contains("503 again"));
        clock.advance(Duration::from_secs(10));
        assert_eq!(c.admit("h").unwrap(), Admit::Probe);
        assert!(c.admit("h").is_err(), "only one probe at a time");
        c.failure("h", "still down");
        assert!(c.admit("h").is_err());
        clock.advance(Duration::from_secs(10));
        assert_eq!(c.admit("h").unwrap(), Admit::Probe);
        c.success("h");
        assert_eq!(c.admit("h").unwrap(), Admit::Go);
    }
}
