//! The stable, CI part of fuzzing (issue 19): every committed seed in `fuzz/corpus/<target>/`
//! and every crash kept as a regression input in `fuzz/artifacts/<target>/` goes through the
//! target's body — the same `fuzz_entry` function the cargo-fuzz target calls
//! (`fuzz/fuzz_targets/<target>.rs`, run by `cargo xtask fuzz` on nightly). An input that
//! panics fails here, naming its file.

use std::path::{Path, PathBuf};

type Entry = fn(&[u8]);

/// Each fuzz target and its body.
const TARGETS: &[(&str, Entry)] = &[
    ("jsonl", dovetail_files::fuzz_entry::jsonl),
    ("csv", dovetail_files::fuzz_entry::csv),
    ("files_position", dovetail_files::fuzz_entry::position),
    ("field_path", dovetail_core::fuzz_entry::field_path),
    ("mapping", dovetail_core::fuzz_entry::mapping),
    ("cursors", dovetail_core::fuzz_entry::cursors),
    ("link_header", dovetail_http::fuzz_entry::link_header),
    ("rate_limit_headers", dovetail_http::fuzz_entry::rate_limit_headers),
    ("rest_position", dovetail_rest::fuzz_entry::position),
    ("rest_page", dovetail_rest::fuzz_entry::page),
    ("github_position", dovetail_github::fuzz_entry::position),
    ("github_page", dovetail_github::fuzz_entry::page),
    ("config", dovetail_runner::fuzz_entry::config),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `dir` (none when it does not exist), sorted; dotfiles are not inputs.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect()).unwrap_or_default();
    files.retain(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')));
    files.sort();
    files
}

#[test]
fn every_target_has_its_body_and_a_seed_corpus() {
    let mut on_disk: Vec<String> = inputs(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = TARGETS.iter().map(|(t, _)| (*t).to_owned()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "fuzz/fuzz_targets/*.rs and the TARGETS of this replay differ");
    for (target, _) in TARGETS {
        let seeds = inputs(&fuzz_dir().join("corpus").join(target));
        assert!(!seeds.is_empty(), "fuzz/corpus/{target} holds no seed");
        let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
        assert!(manifest.contains(&format!("path = \"fuzz_targets/{target}.rs\"")), "fuzz/Cargo.toml lacks {target}");
    }
}

#[test]
fn every_corpus_and_crash_file_replays_without_a_panic() {
    let mut failed = Vec::new();
    let mut count = 0;
    for (target, entry) in TARGETS {
        for kind in ["corpus", "artifacts"] {
            for file in inputs(&fuzz_dir().join(kind).join(target)) {
                // A running fuzzer may drop a corpus file it reduced: it is no input then.
                let Ok(data) = std::fs::read(&file) else { continue };
                count += 1;
                if std::panic::catch_unwind(|| entry(&data)).is_err() {
                    failed.push(format!("{target}: {}", file.display()));
                }
            }
        }
    }
    assert!(failed.is_empty(), "{} of {count} input(s) panicked:\n{}", failed.len(), failed.join("\n"));
    assert!(count >= TARGETS.len(), "{count} inputs replayed");
}
