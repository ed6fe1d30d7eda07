//! `dovetail check` for the SQLite sink without side effects: no database, folder, WAL file
//! or journal-mode change is created by asking whether a run could write.

use std::io::Read;
use std::path::{Path, PathBuf};

use dovetail_core::Error;
use rustix::fs::Access;

/// The first 16 bytes of every SQLite database file.
const HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Whether `path` names a file (not SQLite's in-memory database).
pub(crate) fn is_file_path(path: &Path) -> bool {
    path.as_os_str() != ":memory:" && !path.as_os_str().is_empty()
}

/// Could a run open `path` and write to it? An existing file must be a SQLite database (or
/// empty), writable, in a writable folder (for its WAL files); a missing one needs the
/// nearest existing folder on its way to be writable.
pub(crate) fn check(path: &Path) -> Result<(), Error> {
    if !is_file_path(path) {
        return Ok(());
    }
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {
            let mut head = Vec::with_capacity(16);
            std::fs::File::open(path)
                .and_then(|f| f.take(16).read_to_end(&mut head))
                .map_err(|e| Error::io(e, format!("cannot read sqlite database {shown}"), path))?;
            if !head.is_empty() && head.as_slice() != HEADER {
                return Err(Error::config(format!("`{shown}` is not a SQLite database (sink `path`)")));
            }
            writable(path, path)?;
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            writable(dir, path)
        }
        Ok(_) => Err(Error::config(format!("`{shown}` is not a file (sink `path` names a folder or device)"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let at = nearest_existing(path)
                .map_err(|(e, at)| Error::io(e, format!("cannot read `{}`", at.display()), &at))?;
            if !at.is_dir() {
                return Err(Error::config(format!("`{}` is not a folder (on the way to `{shown}`)", at.display())));
            }
            writable(&at, path)
        }
        Err(e) => Err(Error::io(e, format!("cannot read sqlite database {shown}"), path)),
    }
}

/// `at` may be written (and, for a folder, entered) by this user; `for_path` is what the
/// message names.
fn writable(at: &Path, for_path: &Path) -> Result<(), Error> {
    let mode = if at.is_dir() { Access::WRITE_OK | Access::EXEC_OK } else { Access::WRITE_OK };
    rustix::fs::access(at, mode).map_err(|e| {
        Error::io(std::io::Error::from(e), format!("cannot write sqlite database {}", for_path.display()), at)
    })
}

/// The nearest ancestor of `path` that exists (`.` when none of a relative path does).
fn nearest_existing(path: &Path) -> Result<PathBuf, (std::io::Error, PathBuf)> {
    let mut at = path;
    loop {
        match std::fs::symlink_metadata(at) {
            Ok(_) => return Ok(at.to_path_buf()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match at.parent() {
                Some(p) if !p.as_os_str().is_empty() => at = p,
                _ => return Ok(PathBuf::from(".")),
            },
            Err(e) => return Err((e, at.to_path_buf())),
        }
    }
}
