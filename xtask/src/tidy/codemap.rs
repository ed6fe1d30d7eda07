//! ARCHITECTURE.md names only paths that exist: a codemap that points at a moved or deleted
//! file is worse than none, because readers trust it.
//!
//! A path is a backticked token that ends in `.rs`, `.md` or `.toml`, or that contains a `/`
//! and is made of path characters only (`crates/core`, `pipeline/stream/`). It is looked up
//! from the repository root, from the directory of the section it appears in (a heading that
//! names one, such as ``### `crates/core` (dovetail-core)``) and that directory's `src/`, and
//! under `crates/` and `connectors/` (for `runner/src/alloc.rs`-style short forms).

use std::path::Path;

use super::Finding;

/// Every path `text` (the contents of `file`) names that exists nowhere under `root`.
pub fn check(root: &Path, file: &str, text: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut section: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            section = backticked(line).find(|t| root.join(t).is_dir()).map(str::to_owned);
        }
        for token in backticked(line).filter(|t| is_path(t)) {
            if !resolves(root, section.as_deref(), token) {
                findings.push(Finding {
                    file: file.to_owned(),
                    line: Some(i + 1),
                    message: format!("names `{token}`, which does not exist"),
                    hint: "point it at the file's current path, or drop it from the map".into(),
                });
            }
        }
    }
    findings
}

/// The backticked tokens of one line.
fn backticked(line: &str) -> impl Iterator<Item = &str> {
    line.split('`').skip(1).step_by(2)
}

fn is_path(token: &str) -> bool {
    let chars_ok = !token.is_empty() && token.chars().all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c));
    let file_like = [".rs", ".md", ".toml"].iter().any(|ext| token.ends_with(ext));
    chars_ok && !token.starts_with('/') && !token.starts_with("..") && (file_like || token.contains('/'))
}

fn resolves(root: &Path, section: Option<&str>, token: &str) -> bool {
    let token = token.trim_end_matches('/');
    let mut bases = vec![root.to_path_buf(), root.join("crates"), root.join("connectors")];
    if let Some(dir) = section {
        bases.push(root.join(dir));
        bases.push(root.join(dir).join("src"));
    }
    bases.iter().any(|b| b.join(token).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in ["crates/core/src/pipeline/outage.rs", "crates/runner/src/alloc.rs", "docs/http.md"] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        dir
    }

    #[test]
    fn paths_resolve_from_the_root_the_section_and_short_forms() {
        let dir = tree();
        let text = "# Map\n### `crates/core` (dovetail-core)\n- `pipeline/outage.rs` and `pipeline/`\n\
                    - see `docs/http.md`, `runner/src/alloc.rs`, `crates/core`\n\
                    - not paths: `a.b[0].c`, `tokens.json`, `<file>.locks/`, `/moved/*`, `Sink::write`\n";
        assert_eq!(check(dir.path(), "ARCHITECTURE.md", text), Vec::new());
    }

    #[test]
    fn a_missing_path_is_named_with_its_line() {
        let dir = tree();
        let text = "### `crates/core`\n- `pipeline/stream.rs` owns it\n### `crates/runner`\n- `pipeline/outage.rs`\n";
        let found = check(dir.path(), "ARCHITECTURE.md", text);
        let lines: Vec<_> = found.iter().map(|f| (f.line, f.message.clone())).collect();
        assert_eq!(
            lines,
            vec![
                (Some(2), "names `pipeline/stream.rs`, which does not exist".to_owned()),
                (Some(4), "names `pipeline/outage.rs`, which does not exist".to_owned()),
            ],
            "a section's relative path resolves only within that section"
        );
    }
}
