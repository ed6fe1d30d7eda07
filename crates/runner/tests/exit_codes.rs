//! Issue 16, "the right kind, the right exit code, the right next step", through the binary:
//! a missing source file and an empty config are config errors (3) in `run` and `check`; a
//! full disk is Unavailable (7) naming the file system; a read-only sink or state file is
//! Permanent (8) naming the path and the permission; a held run lock is Busy (11) naming the
//! holder, and two first runs on a fresh state end each with 0 or 11.

use std::path::Path;
use std::process::{Command, Output};

mod common;

use common::{dovetail, text};

fn config(sink: &str) -> String {
    format!(
        "[pipelines.orders.source]\nkind = \"files\"\n\n[[pipelines.orders.source.streams]]\nname = \
         \"orders\"\npath = \"orders.jsonl\"\nprimary_key = [\"id\"]\n\n[pipelines.orders.sink]\n{sink}\n"
    )
}

const SQLITE_SINK: &str = "kind = \"sqlite\"\npath = \"out/warehouse.db\"";
const JSONL_SINK: &str = "kind = \"jsonl\"\ndir = \"out\"";

fn project(sink: &str, records: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dovetail.toml"), config(sink)).unwrap();
    let lines: String = (1..=records).map(|i| format!("{{\"id\": {i}}}\n")).collect();
    std::fs::write(dir.path().join("orders.jsonl"), lines).unwrap();
    dir
}

fn both(out: &Output) -> String {
    format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn a_missing_source_file_is_a_config_error_in_run_and_in_check() {
    let dir = project(SQLITE_SINK, 1);
    std::fs::remove_file(dir.path().join("orders.jsonl")).unwrap();
    for verb in ["run", "check"] {
        let out = dovetail(dir.path(), &[verb]);
        assert_eq!(out.status.code(), Some(3), "{verb}: {}", both(&out));
        assert!(both(&out).contains("orders.jsonl"), "{verb} names the file: {}", both(&out));
    }
}

#[test]
fn a_config_without_pipelines_is_refused_by_run_and_by_check() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dovetail.toml"), "# nothing yet\n").unwrap();
    for verb in ["run", "check"] {
        let out = dovetail(dir.path(), &[verb]);
        assert_eq!(out.status.code(), Some(3), "{verb}: {}", both(&out));
        assert!(text(&out.stderr).contains("no pipelines are defined"), "{verb}: {}", both(&out));
    }
}

#[test]
fn a_full_disk_under_a_jsonl_sink_exits_7_naming_the_file_system() {
    // Every write to /dev/full fails with ENOSPC: the stream's file is a link to it.
    let dir = project(JSONL_SINK, 3);
    std::fs::create_dir(dir.path().join("out")).unwrap();
    std::os::unix::fs::symlink("/dev/full", dir.path().join("out/orders.jsonl")).unwrap();
    let out = dovetail(dir.path(), &["run"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{}", both(&out));
    let fs = dir.path().join("out");
    assert!(err.contains(&format!("the file system holding `{}` is full", fs.display())), "{err}");
    assert!(!err.contains("a bug in dovetail") && !err.contains("the remote is down"), "{err}");
}

/// `dovetail` as a user whom file permissions bind: root ignores them, so as root the binary
/// runs without `CAP_DAC_OVERRIDE` (through `setpriv`, which must then be installed: the test
/// fails rather than pass without checking anything).
fn unprivileged(dir: &Path, args: &[&str]) -> Output {
    let uid = Command::new("id").arg("-u").output().expect("`id -u`");
    let root = text(&uid.stdout).trim() == "0";
    let mut cmd = if root {
        let caps = "-dac_override,-dac_read_search";
        let mut c = Command::new("setpriv");
        c.args(["--bounding-set", caps, "--inh-caps", caps, env!("CARGO_BIN_EXE_dovetail")]);
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_dovetail"))
    };
    cmd.current_dir(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("DOVETAIL_CONFIG")
        .output()
        .expect("running dovetail (as root this needs `setpriv` from util-linux)")
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn assert_permission_refused(out: &Output, path: &Path) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{}", both(out));
    assert!(err.contains("permission denied"), "names the permission: {err}");
    assert!(err.contains(&format!("`{}`", path.display())), "names `{}`: {err}", path.display());
    assert!(!err.contains("fix the config file"), "{err}");
}

#[test]
fn a_read_only_sqlite_sink_exits_8_naming_the_file_and_the_permission() {
    let dir = project(SQLITE_SINK, 2);
    let first = dovetail(dir.path(), &["run"]);
    assert_eq!(first.status.code(), Some(0), "{}", both(&first));
    let db = dir.path().join("out/warehouse.db");
    chmod(&db, 0o444);
    std::fs::write(dir.path().join("orders.jsonl"), "{\"id\": 1}\n{\"id\": 2}\n{\"id\": 3}\n").unwrap();
    let out = unprivileged(dir.path(), &["run"]);
    chmod(&db, 0o644);
    assert_permission_refused(&out, &db);
}

#[test]
fn a_read_only_jsonl_sink_folder_exits_8_naming_the_file_and_the_permission() {
    let dir = project(JSONL_SINK, 2);
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    chmod(&out_dir, 0o555);
    let out = unprivileged(dir.path(), &["run"]);
    chmod(&out_dir, 0o755);
    assert_permission_refused(&out, &out_dir.join("orders.jsonl"));
}

#[test]
fn a_read_only_state_database_exits_8_naming_the_file_and_the_permission() {
    let dir = project(SQLITE_SINK, 2);
    let first = dovetail(dir.path(), &["run"]);
    assert_eq!(first.status.code(), Some(0), "{}", both(&first));
    let state = dir.path().join(".dovetail/state.db");
    chmod(&state, 0o444);
    let out = unprivileged(dir.path(), &["run"]);
    chmod(&state, 0o644);
    assert_permission_refused(&out, &state);
}

#[test]
fn two_first_runs_on_a_fresh_state_both_finish_or_the_loser_is_busy() {
    for round in 0..6 {
        let dir = project(SQLITE_SINK, 2000);
        let spawn = || {
            Command::new(env!("CARGO_BIN_EXE_dovetail"))
                .current_dir(dir.path())
                .arg("run")
                .env_remove("RUST_LOG")
                .env_remove("DOVETAIL_CONFIG")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
        for out in &outs {
            let code = out.status.code();
            assert!(matches!(code, Some(0) | Some(11)), "round {round}: {}", both(out));
            if code == Some(11) {
                let err = text(&out.stderr);
                assert!(err.contains("busy error") && err.contains("already running in process"), "{err}");
                assert!(err.contains("what to do: wait for process") && err.contains("or stop it"), "{err}");
            }
        }
        assert!(outs.iter().any(|o| o.status.success()), "round {round}: one of them ran");
    }
}

#[test]
fn a_state_database_locked_past_the_busy_timeout_exits_11_naming_it() {
    let dir = project(SQLITE_SINK, 2);
    let first = dovetail(dir.path(), &["run"]);
    assert_eq!(first.status.code(), Some(0), "{}", both(&first));
    let state = dir.path().join(".dovetail/state.db");
    // Another process holds the database's write lock for longer than the 5 s busy timeout.
    let hold = "import sqlite3, sys, time\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\nc.execute('BEGIN \
                IMMEDIATE')\nprint('held', flush=True)\ntime.sleep(30)\n";
    let mut holder = Command::new("python3")
        .args(["-c", hold, state.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 holds the state database's write lock");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "held");
    let out = dovetail(dir.path(), &["run"]);
    let _ = holder.kill();
    let _ = holder.wait();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(11), "{}", both(&out));
    assert!(err.contains("the state database is busy"), "{err}");
    assert!(err.contains(&format!("state database {}", state.display())), "names the file: {err}");
    assert!(err.contains("what to do: another process is writing the state database"), "{err}");
}
