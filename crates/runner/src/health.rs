//! `/healthz` and `/readyz` on the metrics address (`--metrics-addr`), for supervisors and
//! load balancers (docs/operations.md).
//!
//! `/healthz` answers 200 while the process serves at all. `/readyz` runs every check a
//! command registered with the process's [`Readiness`] — `run` registers the state store (a
//! cheap query); a long-running loop (a worker's lease loop) registers a [`Heartbeat`] it
//! beats — and answers 200 when all pass, else 503; both with a JSON body naming each check
//! and, for a failed one, why. A check that does not answer within [`CHECK_TIMEOUT`] fails:
//! a store that is reconnecting must not hold the probe.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long one readiness check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A readiness check: `Ok` when ready, else the reason.
pub type Check = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The named checks behind `/readyz`; one per process ([`readiness`]).
#[derive(Default)]
pub struct Readiness {
    checks: Mutex<Vec<(String, Check)>>,
}

/// The process's readiness checks.
pub fn readiness() -> &'static Readiness {
    static READY: OnceLock<Readiness> = OnceLock::new();
    READY.get_or_init(Readiness::default)
}

impl Readiness {
    /// Add (or replace) the check called `name`.
    pub fn register(&self, name: &str, check: Check) {
        let mut checks = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        checks.retain(|(n, _)| n != name);
        checks.push((name.to_owned(), check));
    }

    /// A check called `name` that passes while the returned [`Heartbeat`] was beaten within
    /// `max_age` (a loop that stopped or hangs makes the process unready).
    pub fn heartbeat(&self, name: &str, max_age: Duration) -> Heartbeat {
        let beat = Heartbeat(Arc::new(Mutex::new(Instant::now())));
        let seen = beat.clone();
        self.register(
            name,
            Arc::new(move || {
                let age = seen.age();
                Box::pin(async move {
                    if age <= max_age {
                        Ok(())
                    } else {
                        Err(format!(
                            "no heartbeat for {:.1} s (at most {:.1} s)",
                            age.as_secs_f64(),
                            max_age.as_secs_f64()
                        ))
                    }
                })
            }),
        );
        beat
    }

    /// Runs every check (in order, each within [`CHECK_TIMEOUT`]): whether all passed, and
    /// the JSON body of `/readyz`.
    pub async fn evaluate(&self) -> (bool, Value) {
        let checks: Vec<(String, Check)> = self.checks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut ready = true;
        let mut out = serde_json::Map::new();
        for (name, check) in checks {
            let result = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
                Ok(r) => r,
                Err(_) => Err(format!("did not answer within {} s", CHECK_TIMEOUT.as_secs())),
            };
            let v = match result {
                Ok(()) => json!({"ok": true}),
                Err(reason) => {
                    ready = false;
                    json!({"ok": false, "reason": reason})
                }
            };
            out.insert(name, v);
        }
        (ready, json!({"ready": ready, "checks": out}))
    }
}

/// What a loop beats to stay ready (see [`Readiness::heartbeat`]).
#[derive(Clone, Debug)]
pub struct Heartbeat(Arc<Mutex<Instant>>);

impl Heartbeat {
    /// The loop is alive and working.
    pub fn beat(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn age(&self) -> Duration {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).elapsed()
    }
}

/// The answer to `GET path` if it is a health path: status and JSON body.
pub async fn respond(path: &str) -> Option<(u16, Value)> {
    match path {
        "/healthz" => Some((200, json!({"alive": true}))),
        "/readyz" => {
            let (ready, body) = readiness().evaluate().await;
            Some((if ready { 200 } else { 503 }, body))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_heartbeat_not_beaten_in_time_makes_the_process_unready() {
        let r = Readiness::default();
        let beat = r.heartbeat("lease_loop", Duration::from_millis(50));
        assert!(r.evaluate().await.0);
        tokio::time::sleep(Duration::from_millis(80)).await;
        let (ready, body) = r.evaluate().await;
        assert!(!ready, "{body}");
        let reason = body["checks"]["lease_loop"]["reason"].as_str().unwrap_or_default();
        assert!(reason.starts_with("no heartbeat for"), "{body}");
        beat.beat();
        assert!(r.evaluate().await.0);
    }
}
