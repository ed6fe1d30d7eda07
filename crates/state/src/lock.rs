//! The per-pipeline run lock.
//!
//! A run lock is an OS advisory lock (`flock(2)`, via [`File::try_lock`]) on
//! `<db file>.locks/<pipeline>.lock`. The kernel drops it when the holder's file descriptor
//! closes, which includes the process dying by `SIGKILL`, so a crashed run never delays the
//! next one and there is no lease to expire. After locking, the holder writes its pid, host
//! and start time into the file, so a refused run can name who is in the way.
//!
//! `flock` locks belong to open file descriptions: two opens of the same file conflict even
//! inside one process, so the same process cannot run one pipeline twice either.

use std::collections::HashSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use dovetail_core::state::RunLock;
use dovetail_core::{Error, ErrorKind, now_rfc3339};

/// Proof that this process runs a pipeline. Dropping it releases the lock.
#[derive(Debug)]
pub struct SqliteRunLock {
    pipeline: String,
    held: Held,
}

#[derive(Debug)]
enum Held {
    File { file: File, path: PathBuf },
    Memory(Arc<Mutex<HashSet<String>>>),
}

impl SqliteRunLock {
    /// The locked pipeline.
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// The lock file, or `None` for an in-memory store's lock.
    pub fn path(&self) -> Option<&Path> {
        match &self.held {
            Held::File { path, .. } => Some(path),
            Held::Memory(_) => None,
        }
    }
}

impl RunLock for SqliteRunLock {}

impl Drop for SqliteRunLock {
    fn drop(&mut self) {
        match &mut self.held {
            Held::File { file, .. } => {
                // Clear the holder details while still holding the lock, then release it.
                // Closing the file would release it anyway; errors here change nothing.
                let _ = file.set_len(0);
                let _ = file.unlock();
            }
            Held::Memory(set) => {
                set.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.pipeline);
            }
        }
    }
}

/// The lock-file name of a pipeline: the name itself when it is a safe file name, otherwise
/// a sanitized form plus a hash of the original so distinct names never share a file.
pub(crate) fn file_name(pipeline: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let plain =
        !pipeline.is_empty() && pipeline.len() <= 100 && !pipeline.starts_with('.') && pipeline.chars().all(safe);
    if plain {
        return format!("{pipeline}.lock");
    }
    let cleaned: String = pipeline
        .chars()
        .map(|c| if safe(c) { c } else { '_' })
        .take(60)
        .collect::<String>()
        .trim_start_matches('.')
        .to_owned();
    format!("{cleaned}-{:016x}.lock", fnv1a(pipeline.as_bytes()))
}

/// FNV-1a: stable across Rust versions and platforms, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

/// Take the file lock of `pipeline` in `dir` (blocking I/O; run off the async runtime).
pub(crate) fn lock_file(dir: &Path, pipeline: &str) -> Result<SqliteRunLock, Error> {
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::permanent(format!("cannot create the run-lock directory `{}`", dir.display())).with_source(e)
    })?;
    let path = dir.join(file_name(pipeline));
    let io_err = |what: &str, e: std::io::Error| {
        Error::permanent(format!("cannot {what} the run-lock file `{}`", path.display())).with_source(e)
    };
    // No truncate on open: the file may belong to a live holder whose details we must keep.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_err("open", e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            // The holder writes its details right after locking: give it a moment, so the
            // refusal can name it (best effort; a refusal without them still explains).
            let mut text = String::new();
            for _ in 0..50 {
                text.clear();
                let read = file.seek(SeekFrom::Start(0)).and_then(|_| file.read_to_string(&mut text));
                if read.is_ok() && text.ends_with('\n') {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            return Err(held_error(pipeline, &path, &text));
        }
        Err(TryLockError::Error(e)) => return Err(io_err("lock", e)),
    }
    let holder = serde_json::json!({
        "pid": std::process::id(),
        "host": hostname(),
        "started_at": now_rfc3339(),
        "pipeline": pipeline,
    });
    let write = |file: &mut File| -> std::io::Result<()> {
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(format!("{holder}\n").as_bytes())?;
        file.flush()
    };
    write(&mut file).map_err(|e| io_err("write", e))?;
    Ok(SqliteRunLock { pipeline: pipeline.to_owned(), held: Held::File { file, path } })
}

/// Take the process-local lock of an in-memory store.
pub(crate) fn lock_memory(set: &Arc<Mutex<HashSet<String>>>, pipeline: &str) -> Result<SqliteRunLock, Error> {
    let mut held = set.lock().unwrap_or_else(|p| p.into_inner());
    if !held.insert(pipeline.to_owned()) {
        return Err(Error::new(
            ErrorKind::Busy,
            format!(
                "pipeline `{pipeline}` is already running in this process (process {}); wait \
                 for it to finish",
                std::process::id()
            ),
        ));
    }
    Ok(SqliteRunLock { pipeline: pipeline.to_owned(), held: Held::Memory(Arc::clone(set)) })
}

/// The refusal naming the holder recorded in the lock file.
fn held_error(pipeline: &str, path: &Path, text: &str) -> Error {
    let info: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_default();
    let pid = info.get("pid").and_then(|v| v.as_u64());
    let host = info.get("host").and_then(|v| v.as_str()).unwrap_or("an unknown host");
    let since = info.get("started_at").and_then(|v| v.as_str()).unwrap_or("an unknown time");
    let msg = match pid {
        Some(pid) => format!(
            "pipeline `{pipeline}` is already running in process {pid} on host {host} since \
             {since}; wait for it to finish or stop that process"
        ),
        None => format!(
            "pipeline `{pipeline}` is already running in another process (its lock file `{}` \
             does not say which yet); wait for it to finish or stop that process",
            path.display()
        ),
    };
    let hint = match pid {
        Some(pid) => format!(
            "wait for process {pid} on host {host} (running `{pipeline}` since {since}) to finish, or stop it \
             (`kill {pid}` on {host}); then run `dovetail run {pipeline}` again"
        ),
        None => format!("wait for the other run of `{pipeline}` to finish, or stop it; then run it again"),
    };
    Error::new(ErrorKind::Busy, msg).with_hint(hint)
}

/// This machine's name, best effort: `/etc/hostname`, then `$HOSTNAME`, then `unknown`.
fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_file_names_are_safe_and_distinct() {
        assert_eq!(file_name("crm-to_wh.v2"), "crm-to_wh.v2.lock");
        let a = file_name("a/b");
        let b = file_name("a_b");
        let c = file_name("a b");
        assert!(a.starts_with("a_b-") && a.ends_with(".lock"), "{a}");
        assert_ne!(a, b);
        assert_ne!(a, c);
        for odd in ["../../etc/passwd", "", ".hidden", "ü", &"x".repeat(500)] {
            let n = file_name(odd);
            assert!(!n.starts_with('.') && !n.contains('/') && n.len() < 100, "{odd:?} -> {n}");
        }
    }

    #[test]
    fn refusal_without_holder_details_still_explains() {
        let e = held_error("p", Path::new("/x/p.lock"), "");
        assert_eq!(e.kind(), &ErrorKind::Busy);
        assert!(e.message().contains("pipeline `p` is already running in another process"));
        let e = held_error("p", Path::new("/x/p.lock"), r#"{"pid":42,"host":"h","started_at":"T"}"#);
        assert_eq!(
            e.message(),
            "pipeline `p` is already running in process 42 on host h since T; wait for it to \
             finish or stop that process"
        );
    }
}
