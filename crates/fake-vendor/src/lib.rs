#![warn(missing_docs)]
#![doc = include_str!("../README.md")]

mod api;
mod auth;
mod config;
mod conn;
mod control;
mod data;
mod ratelimit;
mod recorder;
mod redirect;
mod server;
mod stats;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use crate::config::{AuthMode, DriftKind, Faults, RateLimit, VendorConfig};
pub use crate::recorder::{RecordedRequest, Recorder};
use crate::server::Shared;
pub use crate::stats::Stats;

/// Entry point: starts a fake vendor server.
#[derive(Debug, Clone, Copy)]
pub struct FakeVendor;

impl FakeVendor {
    /// Binds `127.0.0.1:<config.port>` and serves in a background task of the current tokio runtime; invalid faults are `InvalidInput`.
    pub async fn start(config: VendorConfig) -> std::io::Result<VendorHandle> {
        config.faults.validate().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, config.port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(&config, format!("http://{addr}")));
        let task = tokio::spawn(server::serve(listener, shared.clone()));
        tracing::debug!(%addr, records = config.records, "fake vendor listening");
        Ok(VendorHandle { shared, addr, task: Some(task) })
    }
}

/// A running server; dropping it shuts the server down.
pub struct VendorHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for VendorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VendorHandle").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl VendorHandle {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Records the vendor holds now (its dataset, grown by [`VendorHandle::add_records`]).
    pub fn records_held(&self) -> u64 {
        self.shared.records_held()
    }

    /// Zeroes every counter.
    pub fn reset_stats(&self) {
        self.shared.reset_stats();
    }

    /// Replaces the active faults, unchecked: a redirect with an invalid status or origin answers 500 `invalid_fault`.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.set_faults(faults);
    }

    /// The active faults.
    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// While down, every API and token request gets 503 `{"error":"unavailable"}` without `Retry-After`.
    pub fn set_down(&self, down: bool) {
        self.shared.set_down(down);
    }

    /// Invalidates every refresh token and every access token issued so far.
    pub fn revoke_refresh_tokens(&self) {
        self.shared.revoke_refresh_tokens();
    }

    /// Changes these records and moves their `updated_at` past every other record's; unknown ids are ignored.
    pub fn touch(&self, ids: &[u64]) {
        self.shared.touch(ids);
    }

    /// Appends `n` records with the next ids and the newest `updated_at`s.
    pub fn add_records(&self, n: u64) {
        self.shared.add_records(n);
    }

    /// Objects created through the write endpoints, in creation order, as currently stored.
    pub fn created(&self) -> Vec<serde_json::Value> {
        self.shared.created()
    }

    /// Resolves once the server was told to stop (`POST /_control/shutdown`, [`VendorHandle::shutdown`]).
    pub async fn stopped(&self) {
        self.shared.shutdown.cancelled().await;
    }

    /// Stops accepting, lets in-flight requests finish (up to a second) and waits for the accept loop.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for VendorHandle {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}
