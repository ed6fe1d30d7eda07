//! Path resolution and the own-file lookup, on real folders: nothing here exists until a
//! test makes it, as on a first run.

use std::path::{Path, PathBuf};

use super::*;

/// A temp dir and its canonical path (the temp dir itself may sit behind a symlink).
fn tmp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().canonicalize().unwrap();
    (dir, real)
}

fn own_at(db: &Path) -> OwnFiles {
    OwnFiles::new(&StateStorage::Sqlite(db.to_path_buf()), false)
}

fn role(own: &OwnFiles, target: &Path) -> Option<Role> {
    own.find(target).map(|(o, _)| o.role)
}

#[cfg(unix)]
fn symlink(target: impl AsRef<Path>, link: impl AsRef<Path>) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

#[test]
fn resolve_keeps_what_does_not_exist_and_applies_dots() {
    let (_d, root) = tmp();
    assert_eq!(resolve(&root.join("x/../x/./state.db")), root.join("x/state.db"));
    assert_eq!(resolve(&root.join("a/b/../../c/d.db")), root.join("c/d.db"));
    assert_eq!(resolve(&root.join("..").join(root.file_name().unwrap()).join("s.db")), root.join("s.db"));
    assert_eq!(resolve(Path::new("/../..")), Path::new("/"));
    std::fs::create_dir(root.join("x")).unwrap();
    assert_eq!(resolve(&root.join("x/../x/state.db")), root.join("x/state.db"));
}

#[cfg(unix)]
#[test]
fn resolve_follows_symlinks_even_to_files_not_made_yet() {
    let (_d, root) = tmp();
    std::fs::create_dir(root.join("real")).unwrap();
    symlink(root.join("real"), root.join("dir-link"));
    assert_eq!(resolve(&root.join("dir-link/new/state.db")), root.join("real/new/state.db"));
    // `..` after a symlinked folder is the parent of its target, as the OS sees it.
    std::fs::create_dir_all(root.join("deep/er")).unwrap();
    symlink(root.join("deep/er"), root.join("er-link"));
    assert_eq!(resolve(&root.join("er-link/../x.db")), root.join("deep/x.db"));
    // A dangling link (the state file before the first run), relative, through a chain.
    symlink("real/state.db", root.join("db-link"));
    symlink("db-link", root.join("chain"));
    assert_eq!(resolve(&root.join("chain")), root.join("real/state.db"));
    // A loop ends instead of spinning.
    symlink("loop-b", root.join("loop-a"));
    symlink("loop-a", root.join("loop-b"));
    let _ = resolve(&root.join("loop-a/x"));
}

#[test]
fn the_state_file_its_companions_locks_and_tokens_are_own() {
    let (_d, root) = tmp();
    let db = root.join(".dovetail/state.db");
    let own = own_at(&db);
    let at = |p: &str| role(&own, &root.join(p));
    assert_eq!(at(".dovetail/state.db"), Some(Role::Database));
    assert_eq!(at(".dovetail/x/../state.db"), Some(Role::Database));
    assert_eq!(at(".dovetail/state.db-wal"), Some(Role::Companion("-wal")));
    assert_eq!(at(".dovetail/state.db-shm"), Some(Role::Companion("-shm")));
    assert_eq!(at(".dovetail/state.db-journal"), Some(Role::Companion("-journal")));
    assert_eq!(at(".dovetail/state.db.locks"), Some(Role::LockFolder));
    assert_eq!(at(".dovetail/state.db.locks/orders.lock"), Some(Role::LockFolder));
    assert_eq!(at(".dovetail/tokens.json"), Some(Role::Tokens));
    // Other files of the same folder, and look-alikes elsewhere, are the sink's to use.
    for other in [".dovetail/out.db", ".dovetail/state.db2", ".dovetail/state.db.locks2", "state.db", "tokens.json"] {
        assert_eq!(at(other), None, "{other}");
    }
}

#[cfg(unix)]
#[test]
fn links_to_own_files_are_own_before_and_after_they_exist() {
    let (_d, root) = tmp();
    let db = root.join("var/state.db");
    symlink("var/state.db", root.join("link.db"));
    symlink("var", root.join("var-link"));
    let own = own_at(&db);
    assert_eq!(role(&own, &root.join("link.db")), Some(Role::Database));
    assert_eq!(role(&own, &root.join("var-link/state.db-wal")), Some(Role::Companion("-wal")));

    std::fs::create_dir(root.join("var")).unwrap();
    std::fs::write(&db, "").unwrap();
    let own = own_at(&db);
    assert_eq!(role(&own, &root.join("link.db")), Some(Role::Database));
    // A hard link is the same file under another name.
    std::fs::hard_link(&db, root.join("hard.db")).unwrap();
    assert!(matches!(own.find(&root.join("hard.db")), Some((o, How::HardLink)) if o.role == Role::Database));
    std::fs::write(root.join("var/other.db"), "").unwrap();
    assert_eq!(role(&own, &root.join("var/other.db")), None);
}

#[cfg(unix)]
#[test]
fn a_symlinked_state_file_owns_its_target_and_the_names_dovetail_gives() {
    let (_d, root) = tmp();
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::create_dir_all(root.join(".dovetail")).unwrap();
    symlink(root.join("data/real.db"), root.join(".dovetail/state.db"));
    let own = own_at(&root.join(".dovetail/state.db"));
    assert_eq!(role(&own, &root.join("data/real.db")), Some(Role::Database));
    assert_eq!(role(&own, &root.join("data/real.db-wal")), Some(Role::Companion("-wal")));
    assert_eq!(role(&own, &root.join(".dovetail/state.db-wal")), Some(Role::Companion("-wal")));
    assert_eq!(role(&own, &root.join(".dovetail/state.db.locks/p.lock")), Some(Role::LockFolder));
    assert_eq!(role(&own, &root.join(".dovetail/tokens.json")), Some(Role::Tokens));
    assert_eq!(role(&own, &root.join("data/tokens.json")), None);
}
