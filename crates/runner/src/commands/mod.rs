//! One module per verb. Each returns the process exit code, or an error whose kind picks it.

pub mod check;
pub mod completions;
pub mod dead_letters;
pub mod demo;
pub mod drift;
pub mod explain;
pub mod init;
pub mod preview;
pub mod reset;
pub mod resume;
pub mod run;
pub mod schema;
pub mod state;
pub mod status;
pub mod worker;

use std::path::Path;
use std::sync::Arc;

use dovetail_core::{Error, StateStore};
use tokio_util::sync::CancellationToken;

/// Open the state store at `path` (a SQLite file, or a PostgreSQL target's label).
pub fn open_state(path: &Path) -> Result<Arc<dyn StateStore>, Error> {
    if let Some(pg) = crate::stores::postgres_at(path) {
        return Ok(Arc::new(pg));
    }
    Ok(Arc::new(crate::stores::state_at(path)?))
}

/// The state at `path` for a command that changes `streams` of `pipeline` (empty: every
/// stream): with PostgreSQL state, only a worker's lease on one of those streams refuses its
/// run lock, so one stream can be reset while workers run the pipeline's others.
pub fn open_state_for(path: &Path, pipeline: &str, streams: &[String]) -> Result<Arc<dyn StateStore>, Error> {
    if let Some(pg) = crate::stores::postgres_at(path) {
        return Ok(Arc::new(pg.scoped_to_streams(pipeline, streams)));
    }
    open_state(path)
}

/// A token cancelled by the first SIGINT or SIGTERM; a second one exits at once with 130.
pub fn cancel_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        signal().await;
        tracing::warn!("stopping: finishing the batches in flight and committing (signal again to abort)");
        t.cancel();
        signal().await;
        crate::progress::flush_logs();
        eprintln!("dovetail: aborted");
        std::process::exit(dovetail_core::ErrorKind::Interrupted.exit_code());
    });
    token
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
