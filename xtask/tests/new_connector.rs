//! `cargo xtask new-connector acme` in a throwaway workspace, then the scaffold's own tests
//! (source and sink) and `cargo xtask contract acme` there: it builds and passes at once,
//! every contract check (the sink's included) is pass or n/a with a reason, it is wired like
//! the other connectors, and the real tree is untouched.
//!
//! Slow-ish: it compiles the new crate and its tests (about 10–30 s on a warm target dir;
//! a cold one builds the workspace's dependencies first).
//!
//! The throwaway workspace names the real crates by absolute path, so their builds in the
//! shared target directory are reused; only the new crate (and any dependency whose
//! features differ in the smaller graph) is compiled.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// The root manifest with only `connectors/*` as members and every path dependency absolute.
fn throwaway_manifest(root: &Path) -> String {
    let text = fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("members = ") {
            out.push_str("members = [\"connectors/*\"]\n");
        } else if let Some((head, rest)) = line.split_once("{ path = \"") {
            out.push_str(&format!("{head}{{ path = \"{}/{rest}\n", root.display()));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn a_scaffolded_connector_builds_and_passes_its_tests_and_the_real_tree_is_untouched() {
    let root = root();
    // Each with the lines the scaffold adds to it.
    let wired: [(&str, usize); 3] =
        [("Cargo.toml", 1), ("crates/runner/Cargo.toml", 1), ("crates/runner/src/registry.rs", 2)];
    let runner_files = ["crates/runner/Cargo.toml", "crates/runner/src/registry.rs"];
    let before: Vec<String> = wired.iter().map(|(f, _)| fs::read_to_string(root.join(f)).unwrap()).collect();

    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path();
    fs::write(ws.join("Cargo.toml"), throwaway_manifest(&root)).unwrap();
    for f in ["Cargo.lock", "rustfmt.toml"] {
        fs::copy(root.join(f), ws.join(f)).unwrap();
    }
    for f in runner_files {
        fs::create_dir_all(ws.join(f).parent().unwrap()).unwrap();
        fs::copy(root.join(f), ws.join(f)).unwrap();
    }
    fs::create_dir_all(ws.join("connectors")).unwrap();

    let xtask = env!("CARGO_BIN_EXE_xtask");
    let out = Command::new(xtask).args(["new-connector", "acme"]).env("XTASK_ROOT", ws).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Wiring, as the other connectors are: a workspace dependency, the runner's
    // `.workspace = true` line, a source and a sink in the registry.
    let manifest = throwaway_manifest(&root);
    for ((f, added), old) in wired.iter().zip(&before) {
        let old = if *f == "Cargo.toml" { &manifest } else { old };
        let new = fs::read_to_string(ws.join(f)).unwrap();
        assert_eq!(new.lines().count(), old.lines().count() + added, "{f}");
    }
    let text = |f: &str| fs::read_to_string(ws.join(f)).unwrap();
    assert!(text("Cargo.toml").contains("\ndovetail-acme = { path = \"connectors/acme\" }\n"));
    assert!(text("crates/runner/Cargo.toml").contains("\ndovetail-acme.workspace = true\n"));
    let registry = text("crates/runner/src/registry.rs");
    assert!(
        registry.contains("source::<dovetail_acme::AcmeSource>()")
            && registry.contains("sink::<dovetail_acme::AcmeSink>()")
    );

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let test = Command::new(cargo)
        .args(["test", "-q", "-p", "dovetail-acme"])
        .current_dir(ws)
        .env("CARGO_TARGET_DIR", target_dir(&root))
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "the scaffold's tests failed:\n{}\n{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    let stdout = String::from_utf8_lossy(&test.stdout);
    // tests/source.rs 2, tests/sink.rs 2, tests/contract.rs 2 (source and sink), the doctest 1.
    let passed: usize = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. ")?.split(' ').next()?.parse::<usize>().ok())
        .sum();
    assert_eq!(passed, 7, "{stdout}");

    // The contract table, as a contributor would run it in the new workspace.
    let contract = Command::new(xtask)
        .args(["contract", "acme"])
        .env("XTASK_ROOT", ws)
        .env("CARGO_TARGET_DIR", target_dir(&root))
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&contract.stdout);
    assert!(
        contract.status.success(),
        "`xtask contract acme` failed:\n{table}\n{}",
        String::from_utf8_lossy(&contract.stderr)
    );
    let row = |check: &str| table.lines().find(|l| l.split_whitespace().next() == Some(check)).map(str::to_owned);
    for check in [
        "syncs_each_stream_to_the_last_page",
        "rerun_writes_nothing",
        "schemas_match_snapshots",
        "mappings_match_snapshots",
        "drift_on_changed_field_type",
        "sink_replay_is_idempotent",
        "sink_config_rejects_an_unknown_key",
    ] {
        let line = row(check).unwrap_or_else(|| panic!("no `{check}` row:\n{table}"));
        assert!(line.ends_with("pass"), "{line}\n{table}");
    }
    assert!(!table.contains("FAIL"), "{table}");
    // Every n/a says why.
    for l in table.lines().filter(|l| l.starts_with("acme ") && l.contains(" n/a:")) {
        assert!(l.split(" n/a:").nth(1).is_some_and(|why| !why.trim().is_empty()), "{l}");
    }

    // The real tree is untouched.
    assert!(!root.join("connectors/acme").exists());
    let after: Vec<String> = wired.iter().map(|(f, _)| fs::read_to_string(root.join(f)).unwrap()).collect();
    assert_eq!(before, after);
}
