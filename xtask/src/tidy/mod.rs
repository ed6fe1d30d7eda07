//! `cargo xtask tidy`: workspace rules that the compiler does not check.
//!
//! - dependency direction between our crates ([`deps`]);
//! - secrets never typed as plain `String` ([`secrets`]);
//! - every connector has a README.md;
//! - ARCHITECTURE.md names only paths that exist ([`codemap`]);
//! - functions in the engine and the HTTP request loop stay under 100 lines ([`fn_len`]);
//! - connectors and the scaffold templates call the shared helpers instead of copies ([`shared`]);
//! - source files stay small: over [`WARN_LINES`] is a warning, over [`MAX_LINES`] a violation.
//!
//! Also run as a `#[test]`, so `cargo test` enforces it.

pub mod codemap;
pub mod deps;
pub mod fn_len;
pub mod secrets;
pub mod shared;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use toml::{Table, Value};

use crate::util::rel;

/// Files longer than this are listed as a warning.
pub const WARN_LINES: usize = 600;
/// Files longer than this are a violation.
pub const MAX_LINES: usize = 800;

/// One problem, with where it is and how to fix it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Path relative to the workspace root.
    pub file: String,
    /// 1-based line, when it points at one.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message)?,
            None => write!(f, "{}: {}", self.file, self.message)?,
        }
        write!(f, "\n    fix: {}", self.hint)
    }
}

/// What tidy found.
#[derive(Debug, Default)]
pub struct Report {
    /// Rule breaks: tidy fails if there is any.
    pub violations: Vec<Finding>,
    /// Worth a look, not a failure.
    pub warnings: Vec<Finding>,
}

/// A workspace member.
#[derive(Debug)]
pub struct Member {
    /// Directory relative to the root (`crates/core`).
    pub dir: String,
    /// Package name.
    pub package: String,
    /// Manifest text.
    pub manifest_text: String,
    /// Parsed manifest.
    pub manifest: Table,
}

/// Runs tidy, prints every finding, and returns whether the workspace is clean.
pub fn main(root: &Path) -> Result<bool> {
    let report = check_workspace(root)?;
    for w in &report.warnings {
        println!("tidy: warning: {w}");
    }
    for v in &report.violations {
        println!("tidy: error: {v}");
    }
    if report.violations.is_empty() {
        println!("tidy: ok ({} warning{})", report.warnings.len(), if report.warnings.len() == 1 { "" } else { "s" });
        Ok(true)
    } else {
        println!("tidy: {} violation(s)", report.violations.len());
        Ok(false)
    }
}

/// Runs every check over the workspace at `root`.
pub fn check_workspace(root: &Path) -> Result<Report> {
    let mut report = Report::default();
    let root_text = fs::read_to_string(root.join("Cargo.toml")).context("reading Cargo.toml")?;
    let root_manifest: Table = root_text.parse().context("parsing Cargo.toml")?;
    let workspace =
        root_manifest.get("workspace").and_then(Value::as_table).context("Cargo.toml has no [workspace]")?;
    let workspace_deps = workspace.get("dependencies").and_then(Value::as_table);
    let members = members(root, workspace)?;

    for m in &members {
        let path = format!("{}/Cargo.toml", m.dir);
        let role = deps::Role::of(&m.package, &m.dir);
        let found = deps::parse_deps(&m.manifest_text, &m.manifest, workspace_deps);
        report.violations.extend(deps::check(&path, &m.package, role, &found));
    }

    let connectors = members
        .iter()
        .filter(|m| m.dir.starts_with("connectors/"))
        .map(|m| (m.dir.as_str(), root.join(&m.dir).join("README.md").is_file()));
    report.violations.extend(check_connector_readmes(connectors));
    report.violations.extend(shared::check_tree(root)?);

    let map = fs::read_to_string(root.join("ARCHITECTURE.md")).context("reading ARCHITECTURE.md")?;
    report.violations.extend(codemap::check(root, "ARCHITECTURE.md", &map));

    let mut files = Vec::new();
    for dir in ["crates", "connectors", "xtask", "tests"] {
        rust_files(&root.join(dir), &mut files)?;
    }
    files.sort();
    for file in files {
        let path = rel(root, &file);
        let src = fs::read_to_string(&file).with_context(|| format!("reading {path}"))?;
        let scan_secrets =
            (path.starts_with("crates/") || path.starts_with("connectors/")) && !path.split('/').any(|c| c == "tests");
        if scan_secrets {
            report.violations.extend(secrets::check(&path, &src));
        }
        report.violations.extend(fn_len::check(&path, &src));
        match check_size(&path, src.lines().count()) {
            Some(Size::Warn(f)) => report.warnings.push(f),
            Some(Size::Violation(f)) => report.violations.push(f),
            None => {}
        }
    }
    Ok(report)
}

/// Members from the root `[workspace] members` (globs: a trailing `*` component), minus
/// `exclude`.
pub fn members(root: &Path, workspace: &Table) -> Result<Vec<Member>> {
    let patterns: Vec<&str> = workspace
        .get("members")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let exclude: Vec<&str> = workspace
        .get("exclude")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut dirs: Vec<String> = Vec::new();
    for pattern in patterns {
        for dir in expand_member(root, pattern)? {
            if !exclude.contains(&dir.as_str()) && !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
    }
    let mut out = Vec::new();
    for dir in dirs {
        let path = root.join(&dir).join("Cargo.toml");
        let text = fs::read_to_string(&path).with_context(|| format!("reading {dir}/Cargo.toml"))?;
        let manifest: Table = text.parse().with_context(|| format!("parsing {dir}/Cargo.toml"))?;
        let package = manifest
            .get("package")
            .and_then(Value::as_table)
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .with_context(|| format!("{dir}/Cargo.toml has no [package] name"))?
            .to_owned();
        out.push(Member { dir, package, manifest_text: text, manifest });
    }
    Ok(out)
}

fn expand_member(root: &Path, pattern: &str) -> Result<Vec<String>> {
    let pattern = pattern.trim_end_matches('/');
    let Some(parent) = pattern.strip_suffix("/*") else {
        if pattern.contains(['*', '?', '[']) {
            bail!("workspace member pattern `{pattern}`: only a trailing `/*` is supported");
        }
        return Ok(vec![pattern.to_owned()]);
    };
    let mut dirs = Vec::new();
    let base = root.join(parent);
    if !base.is_dir() {
        return Ok(dirs);
    }
    for entry in fs::read_dir(&base).with_context(|| format!("reading {parent}"))? {
        let entry = entry?;
        if entry.path().join("Cargo.toml").is_file() {
            dirs.push(format!("{parent}/{}", entry.file_name().to_string_lossy()));
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Every connector directory needs a README.md: `(dir, has_readme)` pairs in.
pub fn check_connector_readmes<'a>(connectors: impl IntoIterator<Item = (&'a str, bool)>) -> Vec<Finding> {
    connectors
        .into_iter()
        .filter(|(_, has)| !has)
        .map(|(dir, _)| Finding {
            file: format!("{dir}/README.md"),
            line: None,
            message: "connector has no README.md".to_owned(),
            hint: "add one covering auth, streams, rate limits, idempotency and the pinned API version (STYLE.md \"Docs\")".to_owned(),
        })
        .collect()
}

/// Outcome of the size rule for one file.
#[derive(Debug, PartialEq)]
pub enum Size {
    /// Over [`WARN_LINES`].
    Warn(Finding),
    /// Over [`MAX_LINES`].
    Violation(Finding),
}

/// The size rule for a file of `lines` lines.
pub fn check_size(path: &str, lines: usize) -> Option<Size> {
    let finding = |limit: usize| Finding {
        file: path.to_owned(),
        line: None,
        message: format!("{lines} lines (over {limit})"),
        hint: "split it into modules by concern; tests can move to a sibling `tests.rs`".to_owned(),
    };
    if lines > MAX_LINES {
        Some(Size::Violation(finding(MAX_LINES)))
    } else if lines > WARN_LINES {
        Some(Size::Warn(finding(WARN_LINES)))
    } else {
        None
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if entry.file_type()?.is_dir() {
            if name == "target" || name.starts_with('.') {
                continue;
            }
            rust_files(&path, out)?;
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::workspace_root;

    /// The real workspace is tidy. (`cargo test` runs this, so CI enforces tidy twice over.)
    #[test]
    fn workspace_is_tidy() {
        let report = check_workspace(&workspace_root()).unwrap();
        let listed: Vec<String> = report.violations.iter().map(ToString::to_string).collect();
        assert!(report.violations.is_empty(), "tidy found {} violation(s):\n{}", listed.len(), listed.join("\n"));
    }

    #[test]
    fn connector_without_readme_fails() {
        let f = check_connector_readmes([("connectors/files", true), ("connectors/github", false)]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].file, "connectors/github/README.md");
        assert!(check_connector_readmes([("connectors/files", true)]).is_empty());
    }

    #[test]
    fn file_size_thresholds() {
        assert_eq!(check_size("a.rs", 600), None);
        assert!(matches!(check_size("a.rs", 601), Some(Size::Warn(_))));
        assert!(matches!(check_size("a.rs", 800), Some(Size::Warn(_))));
        assert!(matches!(check_size("a.rs", 801), Some(Size::Violation(_))));
    }

    #[test]
    fn member_globs_expand_to_directories_with_a_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (d, name) in [("crates/core", "dovetail-core"), ("connectors/files", "dovetail-files")] {
            fs::create_dir_all(root.join(d)).unwrap();
            fs::write(root.join(d).join("Cargo.toml"), format!("[package]\nname = \"{name}\"\n")).unwrap();
        }
        fs::create_dir_all(root.join("connectors/not-a-crate")).unwrap();
        fs::create_dir_all(root.join("xtask")).unwrap();
        fs::write(root.join("xtask/Cargo.toml"), "[package]\nname = \"xtask\"\n").unwrap();
        let ws: Table =
            "members = [\"crates/*\", \"connectors/*\", \"xtask\"]\nexclude = [\"crates/core\"]".parse().unwrap();
        let found: Vec<_> = members(root, &ws).unwrap().into_iter().map(|m| (m.dir, m.package)).collect();
        assert_eq!(
            found,
            vec![
                ("connectors/files".to_owned(), "dovetail-files".to_owned()),
                ("xtask".to_owned(), "xtask".to_owned()),
            ]
        );
    }

    #[test]
    fn findings_print_file_line_and_fix() {
        let f = Finding {
            file: "crates/core/Cargo.toml".into(),
            line: Some(3),
            message: "bad".into(),
            hint: "do this".into(),
        };
        assert_eq!(f.to_string(), "crates/core/Cargo.toml:3: bad\n    fix: do this");
    }
}
