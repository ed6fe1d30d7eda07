//! The `dovetail` binary's verbs that need no data: help, config-schema, check, reset,
//! usage and config errors with their exit codes.

use std::path::Path;
use std::process::Command;

mod common;

use common::{dovetail, text};

const CONFIG: &str = r#"[pipelines.orders.source]
kind = "files"

[[pipelines.orders.source.streams]]
name = "orders"
path = "orders.jsonl"
primary_key = ["id"]

[pipelines.orders.sink]
kind = "sqlite"
path = "out/warehouse.db"
"#;

fn project(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dovetail.toml"), config).unwrap();
    std::fs::write(dir.path().join("orders.jsonl"), "{\"id\": 1}\n").unwrap();
    dir
}

#[test]
fn help_lists_the_verbs() {
    let out = dovetail(Path::new("."), &["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for verb in ["run", "check", "status", "dead-letters", "reset", "resume", "config-schema"] {
        assert!(help.contains(&format!("\n  {verb} ")), "`{verb}` missing from:\n{help}");
    }
    let out = dovetail(Path::new("."), &["dead-letters", "--help"]);
    for verb in ["list", "show", "replay"] {
        assert!(text(&out.stdout).contains(verb));
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = dovetail(Path::new("."), &["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = dovetail(Path::new("."), &["status", "--limit", "many"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn config_schema_is_json_listing_the_connectors() {
    let out = dovetail(Path::new("/"), &["config-schema"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let all = schema.to_string();
    for kind in ["files", "sqlite", "jsonl"] {
        assert!(all.contains(&format!("\"const\":\"{kind}\"")), "kind `{kind}` missing");
    }
    assert!(schema["properties"]["pipelines"].is_object());
}

#[test]
fn check_accepts_a_good_config() {
    let dir = project(CONFIG);
    let out = dovetail(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("pipeline `orders`: OK"));
    // check probes without creating the state database
    assert!(!dir.path().join(".dovetail").exists());
}

#[test]
fn check_on_a_bad_config_exits_3_naming_the_line() {
    let dir =
        project(&CONFIG.replace("path = \"out/warehouse.db\"", "path = \"out/warehouse.db\"\ntable_prefx = \"x_\""));
    let out = dovetail(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(
        err.contains("what to do: fix the config file where the message points, then run `dovetail check`"),
        "{err}"
    );
    assert!(
        err.contains(
            "dovetail.toml:12: unknown field `table_prefx` in [pipelines.orders.sink]; did you mean `table_prefix`?"
        ),
        "{err}"
    );
}

#[test]
fn check_fails_when_a_probe_fails() {
    let dir = project(CONFIG);
    std::fs::remove_file(dir.path().join("orders.jsonl")).unwrap();
    let out = dovetail(dir.path(), &["check"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("pipeline `orders`: FAILED"), "{}", text(&out.stdout));
}

#[test]
fn interpolation_at_the_command_line() {
    let config = CONFIG.replace("\"orders.jsonl\"", "\"${DATA_FILE}\"");
    let dir = project(&config);
    let out = dovetail(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("dovetail.toml:6: environment variable `DATA_FILE` is not set"),
        "{}",
        text(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_dovetail"))
        .current_dir(dir.path())
        .arg("check")
        .env("DATA_FILE", "orders.jsonl")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// `dovetail ARGS` in `dir`, killed after 30 s: a run that would hang fails the test instead.
fn dovetail_bounded(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dovetail"))
        .current_dir(dir)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("dovetail {args:?} still running after 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// A `${file:...}` naming a FIFO or a device would block or read forever: refused, naming
/// the config line and the file, by `check` and `run` alike.
#[test]
fn a_file_reference_to_a_fifo_or_a_device_is_refused_naming_line_and_file() {
    let dir = project(&CONFIG.replace("\"orders.jsonl\"", "\"${file:pipe}\""));
    let made = Command::new("mkfifo").arg(dir.path().join("pipe")).status().unwrap();
    assert!(made.success(), "mkfifo");
    for verb in ["check", "run"] {
        let out = dovetail_bounded(dir.path(), &[verb]);
        assert_eq!(out.status.code(), Some(3), "{verb}: {}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(err.contains("dovetail.toml:6: file `pipe`") && err.contains("is a FIFO, not a regular file"), "{err}");
    }
    std::fs::write(dir.path().join("dovetail.toml"), CONFIG.replace("\"orders.jsonl\"", "\"${file:/dev/zero}\""))
        .unwrap();
    let out = dovetail_bounded(dir.path(), &["run"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("dovetail.toml:6: file `/dev/zero`"), "{}", text(&out.stderr));
}

#[test]
fn config_flag_and_missing_file() {
    let dir = project(CONFIG);
    std::fs::rename(dir.path().join("dovetail.toml"), dir.path().join("other.toml")).unwrap();
    let out = dovetail(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("cannot read config file `dovetail.toml`"));
    let out = dovetail(Path::new("/"), &["check", "--config", dir.path().join("other.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn reset_on_a_fresh_state_forgets_nothing() {
    let dir = project(CONFIG);
    let out = dovetail(dir.path(), &["reset", "orders"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains("Forgot 0 checkpoints of pipeline `orders`"), "{said}");
    assert!(said.contains("ledger is kept"));
    let out = dovetail(dir.path(), &["reset", "ordres"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("did you mean `orders`?"));
}

#[test]
fn status_and_dead_letters_on_a_fresh_state() {
    let dir = project(CONFIG);
    let out = dovetail(dir.path(), &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("no runs yet"));
    let out = dovetail(dir.path(), &["dead-letters", "list", "--json"]);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(), serde_json::json!([]));
    let out = dovetail(dir.path(), &["dead-letters", "show", "42"]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn run_refuses_unknown_pipelines_and_streams() {
    let dir = project(CONFIG);
    let out = dovetail(dir.path(), &["run", "order"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("no pipeline `order`; did you mean `orders`?"));
    let out = dovetail(dir.path(), &["run", "--stream", "ordrs"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("no stream `ordrs`"));
}

#[test]
fn a_bad_postgres_state_url_is_a_config_error_at_its_line() {
    let dir = project(&format!("[state]\nurl = \"postgresql://localhost/dovetail?sslmode=sometimes\"\n\n{CONFIG}"));
    let out = dovetail(dir.path(), &["status"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("dovetail.toml:2: unknown sslmode `sometimes`"), "{}", text(&out.stderr));
}

#[test]
fn resume_lifts_pauses_one_stream_or_all_and_says_what_it_lifted() {
    use dovetail_core::DeliveryStore;
    use dovetail_core::state::{PauseKind, PausedStream};
    let dir = project(CONFIG);
    let state = dovetail_state::SqliteState::open(dir.path().join(".dovetail/state.db")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let pause = |stream: &str, kind| PausedStream {
        pipeline: "orders".into(),
        stream: stream.into(),
        kind,
        reason: format!("{stream} went away"),
        since: "2026-11-28T00:00:00Z".into(),
        until: None,
        location: None,
    };
    rt.block_on(async {
        state.pause(&pause("orders", PauseKind::Unavailable)).await.unwrap();
        state.pause(&pause("refunds", PauseKind::Drift)).await.unwrap();
    });
    let paused =
        || rt.block_on(state.paused(Some("orders"))).unwrap().into_iter().map(|p| p.stream).collect::<Vec<_>>();

    let out = dovetail(dir.path(), &["resume", "orders", "orders"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains("Resumed stream `orders` of pipeline `orders`"), "{said}");
    assert!(said.contains("unavailable: orders went away"), "{said}");
    assert_eq!(paused(), ["refunds"]);

    let out = dovetail(dir.path(), &["resume", "orders"]);
    assert!(text(&out.stdout).contains("Resumed stream `refunds`"), "{}", text(&out.stdout));
    assert!(paused().is_empty());
    let out = dovetail(dir.path(), &["resume", "orders"]);
    assert!(text(&out.stdout).contains("No stream of pipeline `orders` is paused"), "{}", text(&out.stdout));
    let out = dovetail(dir.path(), &["resume", "ordres"]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn drift_is_kept_once_per_shape_listed_and_accepted_into_the_baseline() {
    use dovetail_core::DeliveryStore;
    let dir = project(CONFIG);
    let write = |rows: &[&str]| std::fs::write(dir.path().join("orders.jsonl"), rows.join("\n") + "\n").unwrap();
    let run = || {
        let out = dovetail(dir.path(), &["run"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    };
    write(&[r#"{"id": 1, "price": 1.5}"#, r#"{"id": 2, "price": 2.5}"#]);
    run();
    let out = dovetail(dir.path(), &["drift"]);
    assert!(text(&out.stdout).contains("no drift recorded"), "{}", text(&out.stdout));

    write(&[r#"{"id": 1, "price": "1.50"}"#, r#"{"id": 2, "price": "2.50"}"#, r#"{"id": 3, "price": 3}"#]);
    run();
    run();
    let out = dovetail(dir.path(), &["drift", "--json"]);
    let mut events: Vec<dovetail_core::StoredDrift> = serde_json::from_slice(&out.stdout).unwrap();
    events.sort_by_key(|e| std::cmp::Reverse(e.change));
    assert_eq!(events.len(), 2, "one row per shape, not per run or record: {events:?}");
    let e = &events[0];
    assert_eq!((e.path.as_str(), e.change.as_str(), e.observed.as_str()), ("/price", "type_changed", "string"));
    assert_eq!((e.count, e.accepted_at.as_deref()), (4, None), "two records in each of two runs");
    // The SQLite column made for numbers got strings (written: the policy is warn); the
    // second run wrote nothing (unchanged), so the sink saw them once.
    let e = &events[1];
    assert_eq!((e.path.as_str(), e.change.as_str(), e.count), ("/price", "column_type", 2));
    let listed = text(&dovetail(dir.path(), &["drift", "--pipeline", "orders"]).stdout);
    assert!(listed.contains("/price") && listed.contains("open") && listed.contains("drift accept"), "{listed}");

    let out = dovetail(dir.path(), &["drift", "accept", "orders", "orders"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("1 change(s) taken in"), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("1 sink column change(s)"), "{}", text(&out.stdout));
    run();
    let events: Vec<dovetail_core::StoredDrift> =
        serde_json::from_slice(&dovetail(dir.path(), &["drift", "--json"]).stdout).unwrap();
    assert!(events.iter().all(|e| e.accepted_at.is_some()), "the accepted shape drifted again: {events:?}");
    assert_eq!(events.iter().map(|e| e.count).sum::<u64>(), 6, "{events:?}");
    let state = dovetail_state::SqliteState::open(dir.path().join(".dovetail/state.db")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let baseline = rt.block_on(state.baseline("orders", "orders")).unwrap().unwrap();
    let types = baseline.pointer("/properties/price/type").unwrap().to_string();
    assert!(types.contains("number") && types.contains("string"), "{baseline}");
    let out = dovetail(dir.path(), &["drift", "accept", "orders", "nosuch"]);
    assert!(text(&out.stdout).contains("No open drift"), "{}", text(&out.stdout));
    assert_eq!(dovetail(dir.path(), &["drift", "accept", "ordres", "orders"]).status.code(), Some(3));
}

/// A project whose one pipeline reads `orders.jsonl` into `sink` (the lines of its table),
/// with `state` (a `[state]` table, or nothing for the default) first.
fn sink_project(state: &str, sink: &str) -> (tempfile::TempDir, String) {
    let config = format!(
        "{state}[pipelines.orders.source]\nkind = \"files\"\n\n[[pipelines.orders.source.streams]]\n\
         name = \"orders\"\npath = \"orders.jsonl\"\nprimary_key = [\"id\"]\n\n[pipelines.orders.sink]\n{sink}\n"
    );
    (project(&config), config)
}

/// `check` and `run` both refuse the config (exit 3) at the line of `sink_line`, naming
/// `state.url`, the sink's `key` and the state file `file`; the run wrote nothing into `state`.
fn assert_refused(dir: &Path, config: &str, sink_line: &str, key: &str, file: &Path, state: &Path) {
    let line = config.lines().position(|l| l == sink_line).unwrap() + 1;
    let file = file.display().to_string();
    for verb in ["check", "run"] {
        let out = dovetail(dir, &[verb]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "`{verb}`: {err}");
        for want in
            [&format!("dovetail.toml:{line}: "), "`state.url`", &format!("`pipelines.orders.sink.{key}`"), &file]
        {
            assert!(err.contains(want), "`{verb}` does not name {want}: {err}");
        }
        assert!(err.contains("a sink may not write into dovetail's own"), "{err}");
    }
    if state.exists() {
        let db = rusqlite::Connection::open_with_flags(state, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let tables: i64 = db
            .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'orders'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tables, 0, "the run wrote the stream's table into the state database");
    }
}

#[test]
fn a_sqlite_sink_at_the_default_state_database_is_refused() {
    let line = "path = \".dovetail/state.db\"";
    let (dir, config) = sink_project("", &format!("kind = \"sqlite\"\n{line}"));
    let state = dir.path().canonicalize().unwrap().join(".dovetail/state.db");
    assert_refused(dir.path(), &config, line, "path", &state, &state);
    let err = text(&dovetail(dir.path(), &["check"]).stderr);
    assert!(err.contains("is the state database (`state.url`, default `.dovetail/state.db`)"), "{err}");
}

#[test]
fn a_sqlite_sink_reaching_an_explicit_state_url_through_dots_is_refused() {
    let line = "path = \"x/../x/state.db\"";
    let (dir, config) =
        sink_project("[state]\nurl = \"sqlite://x/state.db\"\n\n", &format!("kind = \"sqlite\"\n{line}"));
    let state = dir.path().canonicalize().unwrap().join("x/state.db");
    assert_refused(dir.path(), &config, line, "path", &state, &state);
}

#[cfg(unix)]
#[test]
fn a_sqlite_sink_through_a_symlink_to_the_state_database_is_refused() {
    let line = "path = \"link.db\"";
    let (dir, config) = sink_project("", &format!("kind = \"sqlite\"\n{line}"));
    let state = dir.path().canonicalize().unwrap().join(".dovetail/state.db");
    // Before the first run the link points at nothing yet; afterwards at the real file.
    std::os::unix::fs::symlink(".dovetail/state.db", dir.path().join("link.db")).unwrap();
    assert_refused(dir.path(), &config, line, "path", &state, &state);
    drop(dovetail_state::SqliteState::open(&state).unwrap());
    assert_refused(dir.path(), &config, line, "path", &state, &state);
}

#[test]
fn a_jsonl_sink_writing_a_stream_file_onto_the_state_database_is_refused() {
    // The jsonl sink writes `<dir>/<stream>.jsonl`; here that is the state file.
    let line = "dir = \"out\"";
    let (dir, config) =
        sink_project("[state]\nurl = \"sqlite://out/orders.jsonl\"\n\n", &format!("kind = \"jsonl\"\n{line}"));
    let state = dir.path().canonicalize().unwrap().join("out/orders.jsonl");
    assert_refused(dir.path(), &config, line, "dir", &state, &state);
}

#[test]
fn a_sink_in_another_file_next_to_the_state_database_is_accepted() {
    let (dir, _) = sink_project("", "kind = \"sqlite\"\npath = \".dovetail/warehouse.db\"");
    let out = dovetail(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = dovetail(dir.path(), &["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let count = |db: &str, table: &str| -> i64 {
        let c = rusqlite::Connection::open(dir.path().join(".dovetail").join(db)).unwrap();
        c.query_row("SELECT count(*) FROM sqlite_master WHERE name = ?1", [table], |r| r.get(0)).unwrap()
    };
    assert_eq!((count("warehouse.db", "orders"), count("state.db", "orders")), (1, 0));
}

#[test]
fn postgres_state_without_a_key_refuses_a_refresh_token_pipeline_before_connecting() {
    // Nothing listens on port 1: had the run got as far as the state store, it would exit 7.
    let config = r#"[state]
url = "postgres://u@127.0.0.1:1/dovetail"

[pipelines.crm.source]
kind = "rest"
base_url = "https://api.example.com"
auth = { type = "oauth2_refresh_token", token_url = "https://api.example.com/oauth/token", client_id = "d", refresh_token = "${CRM_REFRESH}" }
[[pipelines.crm.source.streams]]
name = "items"
path = "/v1/items"
primary_key = ["id"]

[pipelines.crm.sink]
kind = "sqlite"
path = "out.db"
"#;
    let dir = project(config);
    for verb in ["run", "check"] {
        let out = Command::new(env!("CARGO_BIN_EXE_dovetail"))
            .current_dir(dir.path())
            .arg(verb)
            .env_remove("RUST_LOG")
            .env_remove("DOVETAIL_CONFIG")
            .env_remove("DOVETAIL_SECRET_KEY")
            .env("CRM_REFRESH", "r-1")
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{verb}: {err}");
        assert!(err.contains("dovetail.toml:7: pipeline `crm`'s source uses `oauth2_refresh_token`"), "{verb}: {err}");
        assert!(err.contains("set DOVETAIL_SECRET_KEY or `[state] secret_key`"), "{verb}: {err}");
        assert!(!err.contains("r-1"), "{verb}: the refresh token leaked: {err}");
    }
}
