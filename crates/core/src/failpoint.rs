//! Named crash points for durability tests: `DOVETAIL_FAILPOINT=name[:n]` aborts the
//! process the n-th time (default first) execution reaches `name`.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);
static BEFORE_ABORT: OnceLock<fn()> = OnceLock::new();

/// Have `f` run just before a failpoint aborts the process; the first call wins. The binary
/// flushes its buffered log here: a failpoint crashes the data path at a chosen point, and
/// the test that reads the log must see every line written before it, not lose the last
/// flush interval's lines as a SIGKILL would.
pub fn before_abort(f: fn()) {
    let _ = BEFORE_ABORT.set(f);
}

fn spec() -> &'static Option<(String, u64)> {
    SPEC.get_or_init(|| {
        let raw = std::env::var("DOVETAIL_FAILPOINT").ok()?;
        let (name, n) = match raw.split_once(':') {
            Some((name, n)) => (name.to_owned(), n.parse().unwrap_or(1)),
            None => (raw, 1),
        };
        Some((name, n.max(1)))
    })
}

/// Abort the process here if the failpoint `name` is armed and due. Costs one branch otherwise.
pub fn hit(name: &str) {
    if let Some((armed, n)) = spec()
        && armed == name
        && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n
    {
        if let Some(f) = BEFORE_ABORT.get() {
            f();
        }
        eprintln!("dovetail: failpoint `{name}` reached, aborting");
        std::process::abort();
    }
}

/// Names of every failpoint in the engine.
pub const ALL: &[&str] = &["mid_batch", "after_sink_commit", "after_checkpoint"];
