//! docs/deploy.md's systemd unit is what this checks: its fenced `ini` block, parsed here
//! (sections, keys, the worker command line, restart and stop settings), then handed to
//! `systemd-analyze verify` when the machine has it — which says so loudly when it does not.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use dovetail_e2e::dovetail_bin;

/// The doc's unit: the fenced `ini` block holding `[Service]`.
fn unit_from_doc() -> String {
    let doc = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/deploy.md");
    let text = std::fs::read_to_string(&doc).unwrap_or_else(|e| panic!("{}: {e}", doc.display()));
    let mut blocks = text.split("```ini\n").skip(1).filter_map(|b| b.split_once("\n```").map(|(unit, _)| unit));
    let unit = blocks.find(|b| b.contains("[Service]")).expect("docs/deploy.md has a ```ini block with [Service]");
    format!("{unit}\n")
}

/// section → key → values, in order; panics naming the line on what is not a unit file.
fn parse(unit: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section: Option<String> = None;
    for (n, line) in unit.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            assert!(!out.contains_key(name), "line {}: section [{name}] twice", n + 1);
            out.insert(name.to_owned(), BTreeMap::new());
            section = Some(name.to_owned());
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("line {}: not `Key=value`: {line}", n + 1));
        let key = key.trim();
        assert!(!key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric()), "line {}: bad key `{key}`", n + 1);
        let section = section.as_ref().unwrap_or_else(|| panic!("line {}: `{key}` outside a section", n + 1));
        out.get_mut(section).unwrap().entry(key.to_owned()).or_default().push(value.trim().to_owned());
    }
    out
}

#[test]
fn the_worker_unit_in_the_deploy_doc_is_a_valid_systemd_unit() {
    let unit = unit_from_doc();
    let parsed = parse(&unit);
    assert_eq!(parsed.keys().collect::<Vec<_>>(), ["Install", "Service", "Unit"], "{unit}");
    let one = |section: &str, key: &str| -> String {
        let values = parsed[section].get(key).unwrap_or_else(|| panic!("no {key}= in [{section}]:\n{unit}"));
        assert_eq!(values.len(), 1, "{key}= more than once in [{section}]");
        values[0].clone()
    };
    let exec = one("Service", "ExecStart");
    assert!(
        exec.starts_with("/usr/local/bin/dovetail worker --config /etc/dovetail/dovetail.toml --id %H"),
        "ExecStart: {exec}"
    );
    assert_eq!(one("Service", "Restart"), "on-failure");
    assert_eq!(one("Service", "KillSignal"), "SIGTERM");
    assert!(one("Service", "TimeoutStopSec").ends_with('s'));
    assert!(one("Service", "EnvironmentFile").starts_with("/etc/dovetail/"));
    assert_eq!(one("Service", "NoNewPrivileges"), "yes");
    assert_eq!(one("Service", "ProtectSystem"), "strict");
    assert_eq!(one("Install", "WantedBy"), "multi-user.target");

    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!(
            "\n\n*** systemd-analyze is not installed: docs/deploy.md's unit was checked by the parser only, NOT by \
             `systemd-analyze verify` ***\n\n"
        );
        return;
    };
    assert!(version.status.success(), "systemd-analyze --version failed");
    // The unit as the doc writes it, with the binary this test built in place of the
    // installed path (verify checks that the program exists and is executable).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dovetail-worker.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/dovetail", &dovetail_bin().display().to_string())).unwrap();
    let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&path).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // verify exits 0 on what it ignores (an unknown key, a bad value): any word about the unit fails.
    let about_unit: Vec<&str> = said.lines().filter(|l| l.contains("dovetail-worker.service")).collect();
    assert!(out.status.success() && about_unit.is_empty(), "systemd-analyze verify:\n{said}");
}
