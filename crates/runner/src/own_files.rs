//! dovetail's own files, and the check that keeps every sink out of them.
//!
//! A SQLite sink aimed at the state database writes into dovetail's own tables: a stream
//! named `runs` once forged a run that `dovetail status` showed. A sink aimed at the
//! database's journal, its run locks or the token store would corrupt them. So `load`
//! refuses such a sink before anything runs. Paths are compared with symlinks resolved,
//! and, where both files exist, by identity (a hard link is the same file).

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use dovetail_core::{Error, Sink, SinkTarget};
use toml::de::DeTable;

use crate::diag::{Doc, lookup};

/// Where dovetail keeps its state; what sinks must stay out of depends on the backend.
#[derive(Debug, Clone)]
pub enum StateStorage {
    /// A SQLite file, as configured (absolute): the file, its companions, the run-lock
    /// folder and the token store next to it are dovetail's own.
    Sqlite(PathBuf),
    /// PostgreSQL state: its schema is dovetail's own (tokens live in it too); no local file
    /// is. Another schema of the same database is the sink's to use.
    Postgres {
        /// `host:port/database` of the state.
        database: String,
        /// The state's schema.
        schema: String,
    },
}

/// What one of dovetail's own paths is, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Database,
    Companion(&'static str),
    LockFolder,
    Tokens,
}

/// One of dovetail's own paths, resolved.
#[derive(Debug)]
struct Own {
    path: PathBuf,
    role: Role,
}

/// dovetail's own files of one config, resolved once.
#[derive(Debug)]
pub struct OwnFiles {
    own: Vec<Own>,
    /// The state's PostgreSQL schema (`host:port/database`, schema), when the state is there.
    schema: Option<(String, String)>,
    /// `state.url` is absent and the state is at its default place.
    default_url: bool,
}

/// Symlinks followed in one path before giving up (Linux's own limit): a loop ends there.
const MAX_LINKS: usize = 40;

impl OwnFiles {
    /// The own files of `state`; `default_url` when `[state] url` was not given.
    pub fn new(state: &StateStorage, default_url: bool) -> Self {
        let db = match state {
            StateStorage::Sqlite(db) => db,
            StateStorage::Postgres { database, schema } => {
                let schema = Some((database.clone(), schema.clone()));
                return OwnFiles { own: Vec::new(), schema, default_url };
            }
        };
        let mut own = Vec::new();
        // SQLite names its companions after the path it opened, and may follow a symlinked
        // database file first: take both names. Locks and tokens are named by dovetail.
        for base in [db.clone(), resolve(db)] {
            own.push(Own { path: resolve(&base), role: Role::Database });
            for suffix in ["-wal", "-shm", "-journal"] {
                own.push(Own { path: resolve(&with_suffix(&base, suffix)), role: Role::Companion(suffix) });
            }
        }
        // The run locks: `<db>.locks/<pipeline>.lock` (dovetail-state's lock.rs).
        own.push(Own { path: resolve(&with_suffix(db, ".locks")), role: Role::LockFolder });
        let dir = db.parent().unwrap_or(Path::new(""));
        own.push(Own { path: resolve(&dir.join("tokens.json")), role: Role::Tokens });
        OwnFiles { own, schema: None, default_url }
    }

    /// Refuse `sink` of pipeline `pipeline` when it would write one of `streams` among
    /// dovetail's own files: a Config error at the line of the sink's key.
    pub fn check_sink(
        &self,
        doc: &Doc,
        root: &DeTable<'_>,
        pipeline: &str,
        sink: &dyn Sink,
        streams: &[String],
    ) -> Result<(), Error> {
        let at = |key: &str| {
            let mut keys = vec!["pipelines", pipeline, "sink"];
            let at = lookup(root, &keys).map(|(k, _)| k.start).unwrap_or(0);
            keys.extend(key.split('.'));
            lookup(root, &keys).map(|(k, _)| k.start).unwrap_or(at)
        };
        for target in sink.targets(streams) {
            match target {
                SinkTarget::File { key, path } => {
                    let Some((own, how)) = self.find(&path) else { continue };
                    return Err(doc.error(at(key), self.refusal(pipeline, key, &path, own, &how)));
                }
                SinkTarget::Schema { key, database, schema } => {
                    if self.schema.as_ref() != Some(&(database.clone(), schema.clone())) {
                        continue;
                    }
                    return Err(doc.error(
                        at(key),
                        format!(
                            "`pipelines.{pipeline}.sink.{key}` (`{schema}` in {database}) is the state's schema \
                             (`state.schema`): a sink may not write into dovetail's own tables; give the sink \
                             another schema (another schema of the same database is fine)"
                        ),
                    ));
                }
                _ => continue,
            }
        }
        Ok(())
    }

    /// Why the sink's `key` naming `path` is refused, naming both keys and the file.
    fn refusal(&self, pipeline: &str, key: &str, path: &Path, own: &Own, how: &How) -> String {
        let shown = match how {
            How::Same(resolved) if resolved == path => path.display().to_string(),
            How::Same(resolved) => format!("{}, which resolves to {}", path.display(), resolved.display()),
            How::HardLink => format!("{}, the same file as {}", path.display(), own.path.display()),
        };
        let (what, ours) = match own.role {
            Role::Database => ("the state database".to_owned(), "tables"),
            Role::Companion(suffix) => (format!("the state database's `{suffix}` file"), "files"),
            Role::LockFolder if matches!(how, How::Same(r) if *r == own.path) => {
                ("the state database's run-lock folder".to_owned(), "files")
            }
            Role::LockFolder => (format!("in the state database's run-lock folder {}", own.path.display()), "files"),
            Role::Tokens => ("the token store next to the state database".to_owned(), "files"),
        };
        let url = if self.default_url { "`state.url`, default `.dovetail/state.db`" } else { "`state.url`" };
        format!(
            "`pipelines.{pipeline}.sink.{key}` ({shown}) is {what} ({url}): a sink may not write into dovetail's \
             own {ours}; point the sink at another file"
        )
    }

    /// The own path `target` is (or lies in, for the lock folder), and how it matched.
    fn find(&self, target: &Path) -> Option<(&Own, How)> {
        let resolved = resolve(target);
        let hit = self.own.iter().find(|o| match o.role {
            Role::LockFolder => resolved.starts_with(&o.path),
            _ => resolved == o.path,
        });
        if let Some(o) = hit {
            return Some((o, How::Same(resolved)));
        }
        let folder = |o: &&Own| o.role == Role::LockFolder;
        self.own.iter().filter(|o| !folder(o)).find(|o| same_file(&resolved, &o.path)).map(|o| (o, How::HardLink))
    }
}

/// How a sink's path matched an own file.
enum How {
    /// Its resolved path (given) is the own path or in the own folder.
    Same(PathBuf),
    /// Another name of the same existing file (a hard link).
    HardLink,
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(unix)]
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &Path, _: &Path) -> bool {
    false
}

/// One step of a path still to resolve.
enum Step {
    Root(OsString),
    Up,
    Name(OsString),
}

fn queue(todo: &mut Vec<Step>, path: &Path) {
    for c in path.components().rev() {
        match c {
            Component::Prefix(_) | Component::RootDir => todo.push(Step::Root(c.as_os_str().to_owned())),
            Component::CurDir => {}
            Component::ParentDir => todo.push(Step::Up),
            Component::Normal(n) => todo.push(Step::Name(n.to_owned())),
        }
    }
}

/// `path` made absolute with every symlink followed and `.`/`..` applied, like
/// `canonicalize`, except that the part that does not exist yet is kept as written: the
/// first run creates the sink's file and the state database, after the config is checked.
/// A symlink whose target does not exist yet is followed too, so it cannot hide the state file.
pub fn resolve(path: &Path) -> PathBuf {
    let mut todo = Vec::new();
    queue(&mut todo, &std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()));
    let mut out = PathBuf::new();
    let mut links = 0;
    while let Some(step) = todo.pop() {
        match step {
            Step::Root(r) => out.push(r),
            // What is left of `out` holds no symlink, so `..` is its parent; a name that does
            // not exist yet will be created as a folder, not a link.
            Step::Up => {
                out.pop();
            }
            Step::Name(n) => {
                let next = out.join(&n);
                match std::fs::read_link(&next) {
                    Ok(target) if links < MAX_LINKS => {
                        links += 1;
                        queue(&mut todo, &target);
                    }
                    _ => out = next,
                }
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "own_files_tests.rs"]
mod tests;
