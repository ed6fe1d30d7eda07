//! `cargo xtask fuzz [--secs N] [TARGET ...]`: run the cargo-fuzz targets of `fuzz/` (every
//! one, or those named) for N seconds each (default 60) on nightly. A crash is left in
//! `fuzz/artifacts/<target>/`: commit it with its fix, and tests/tests/fuzz_replay.rs
//! replays it on stable from then on (the CI part; this command is not run by CI).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: cargo xtask fuzz [--secs N] [TARGET ...]";

/// The targets: the stems of `fuzz/fuzz_targets/*.rs`, sorted.
fn targets(root: &Path) -> Result<Vec<String>> {
    let dir = root.join("fuzz/fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok()?.path().file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    Ok(names)
}

/// Why real fuzzing cannot run here, if it cannot: no nightly, or no cargo-fuzz.
fn missing_tools() -> Option<String> {
    let works = |args: &[&str]| Command::new("cargo").args(args).output().is_ok_and(|o| o.status.success());
    if !works(&["+nightly", "--version"]) {
        return Some("no nightly toolchain (`rustup toolchain install nightly`)".into());
    }
    if !works(&["+nightly", "fuzz", "--version"]) {
        return Some("cargo-fuzz is not installed (`cargo install cargo-fuzz`)".into());
    }
    None
}

/// Runs `fuzz` in the workspace at `root`; `Ok(false)` when a target crashed.
pub fn main(root: &Path, args: &[String]) -> Result<bool> {
    let (mut secs, mut chosen) = (60u64, Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.split_once('=') {
            Some(("--secs", v)) => secs = v.parse().with_context(|| format!("--secs {v}: not a number ({USAGE})"))?,
            _ if a == "--secs" => {
                let v = it.next().with_context(|| format!("--secs needs a value ({USAGE})"))?;
                secs = v.parse().with_context(|| format!("--secs {v}: not a number ({USAGE})"))?;
            }
            _ if a.starts_with('-') => bail!("unknown argument `{a}` ({USAGE})"),
            _ => chosen.push(a.clone()),
        }
    }
    let all = targets(root)?;
    if let Some(unknown) = chosen.iter().find(|t| !all.contains(t)) {
        bail!("no fuzz target `{unknown}`; targets: {}", all.join(", "));
    }
    let run = if chosen.is_empty() { all } else { chosen };
    if let Some(why) = missing_tools() {
        bail!(
            "fuzz: cannot run real fuzzing: {why}. The committed corpora and crashes still replay on stable: \
             `cargo test -p dovetail-e2e --test fuzz_replay`"
        );
    }
    let mut crashed = Vec::new();
    for target in &run {
        println!("fuzz: {target} for {secs}s");
        // `CARGO_TARGET_DIR` is kept: the instrumented build lands in its own profile dir.
        let status = Command::new("cargo")
            .args(["+nightly", "fuzz", "run", target, "--", &format!("-max_total_time={secs}")])
            .current_dir(root.join("fuzz"))
            .status()
            .with_context(|| format!("running cargo fuzz run {target}"))?;
        if !status.success() {
            crashed.push(target.clone());
        }
    }
    if crashed.is_empty() {
        println!("fuzz: {} target(s), {secs}s each, no crash", run.len());
        return Ok(true);
    }
    println!(
        "fuzz: crashed: {} — the inputs are in fuzz/artifacts/<target>/; fix, keep them there, and \
         `cargo test -p dovetail-e2e --test fuzz_replay` replays them",
        crashed.join(", ")
    );
    Ok(false)
}
