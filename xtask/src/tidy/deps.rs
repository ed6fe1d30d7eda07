//! Dependency direction (design.md "Workspace", STYLE.md "Dependency direction").
//!
//! Each workspace member gets a role from its package name (or, for connectors, its folder),
//! and each role may name only some of our crates. Rules apply to `[dependencies]`,
//! `[dev-dependencies]` and `[build-dependencies]`, target-specific tables included.

use toml::{Table, Value};

use super::Finding;

/// Which table a dependency sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepKind {
    /// `[dependencies]`
    Normal,
    /// `[dev-dependencies]`
    Dev,
    /// `[build-dependencies]`
    Build,
}

impl DepKind {
    fn table(self) -> &'static str {
        match self {
            DepKind::Normal => "dependencies",
            DepKind::Dev => "dev-dependencies",
            DepKind::Build => "build-dependencies",
        }
    }
}

/// One dependency of a member.
#[derive(Debug, Clone)]
pub struct Dep {
    /// The package it resolves to (after `package = "..."` renames and workspace inheritance).
    pub package: String,
    /// The key it is written under.
    pub key: String,
    /// The table it sits in.
    pub kind: DepKind,
    /// 1-based line in the manifest, when found.
    pub line: Option<usize>,
}

/// A member's place in the dependency graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// dovetail-core
    Core,
    /// dovetail-http, dovetail-state or dovetail-pg
    HttpOrState,
    /// dovetail-fake-vendor
    FakeVendor,
    /// dovetail-testkit
    Testkit,
    /// any member under connectors/
    Connector,
    /// xtask
    Xtask,
    /// runner, the end-to-end tests: may depend on anything (testkit as a dev-dep only)
    Other,
}

impl Role {
    /// The role of the member with this package name, living under `dir` (relative path).
    pub fn of(package: &str, dir: &str) -> Role {
        if dir.starts_with("connectors/") {
            return Role::Connector;
        }
        match package {
            CORE => Role::Core,
            HTTP | STATE | PG => Role::HttpOrState,
            FAKE_VENDOR => Role::FakeVendor,
            TESTKIT => Role::Testkit,
            "xtask" => Role::Xtask,
            _ => Role::Other,
        }
    }
}

const CORE: &str = "dovetail-core";
const HTTP: &str = "dovetail-http";
const STATE: &str = "dovetail-state";
/// PostgreSQL connection setup (URL, TLS), shared by the PostgreSQL state and connector.
const PG: &str = "dovetail-pg";
const FAKE_VENDOR: &str = "dovetail-fake-vendor";
const TESTKIT: &str = "dovetail-testkit";
const RUNNER: &str = "dovetail-runner";
/// IO stacks core must not pull in (its dev-dependencies may, for tests).
const CORE_FORBIDDEN_IO: &[&str] = &["reqwest", "sqlx", "rusqlite"];
/// Test tooling the fake vendor must not ship with (STYLE.md: "a plain server").
const FAKE_VENDOR_FORBIDDEN: &[&str] = &["wiremock", "insta"];

fn is_ours(package: &str) -> bool {
    package.starts_with("dovetail-")
}

/// Reads every dependency table of a manifest. `workspace_deps` is the root
/// `[workspace.dependencies]` table, used to resolve `foo.workspace = true` renames.
pub fn parse_deps(text: &str, manifest: &Table, workspace_deps: Option<&Table>) -> Vec<Dep> {
    let mut deps = Vec::new();
    let mut tables: Vec<(&Table, DepKind)> = Vec::new();
    collect_tables(manifest, &mut tables);
    if let Some(targets) = manifest.get("target").and_then(Value::as_table) {
        for target in targets.values().filter_map(Value::as_table) {
            collect_tables(target, &mut tables);
        }
    }
    for (table, kind) in tables {
        for (key, value) in table {
            let package = resolve_package(key, value, workspace_deps);
            let line = find_line(text, kind, key);
            deps.push(Dep { package, key: key.clone(), kind, line });
        }
    }
    deps
}

fn collect_tables<'a>(table: &'a Table, out: &mut Vec<(&'a Table, DepKind)>) {
    for (names, kind) in [
        (&["dependencies"][..], DepKind::Normal),
        (&["dev-dependencies", "dev_dependencies"][..], DepKind::Dev),
        (&["build-dependencies", "build_dependencies"][..], DepKind::Build),
    ] {
        for name in names {
            if let Some(t) = table.get(*name).and_then(Value::as_table) {
                out.push((t, kind));
            }
        }
    }
}

fn resolve_package(key: &str, value: &Value, workspace_deps: Option<&Table>) -> String {
    let Some(spec) = value.as_table() else {
        return key.to_owned();
    };
    if let Some(package) = spec.get("package").and_then(Value::as_str) {
        return package.to_owned();
    }
    if spec.get("workspace").and_then(Value::as_bool) == Some(true) {
        let inherited = workspace_deps
            .and_then(|w| w.get(key))
            .and_then(Value::as_table)
            .and_then(|t| t.get("package"))
            .and_then(Value::as_str);
        if let Some(package) = inherited {
            return package.to_owned();
        }
    }
    key.to_owned()
}

/// The line a dependency is declared on: `key = ...` / `key.workspace = true` under the
/// right table header, or a `[dependencies.key]` header.
fn find_line(text: &str, kind: DepKind, key: &str) -> Option<usize> {
    let table = kind.table();
    let mut section = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            section = header.trim().to_owned();
            let dotted = format!("{table}.{key}");
            if section == dotted || section.ends_with(&format!(".{dotted}")) {
                return Some(i + 1);
            }
            continue;
        }
        let in_table = section == table || section.ends_with(&format!(".{table}"));
        if in_table {
            let rest = line.strip_prefix(key).or_else(|| line.strip_prefix(&format!("\"{key}\"")));
            if rest.is_some_and(|r| r.starts_with([' ', '\t', '=', '.'])) {
                return Some(i + 1);
            }
        }
    }
    None
}

/// Checks one member's dependencies against its role.
pub fn check(manifest_path: &str, package: &str, role: Role, deps: &[Dep]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for dep in deps {
        let before = findings.len();
        check_role(manifest_path, package, role, dep, &mut findings);
        // testkit is dev-only everywhere; one message per edge is enough.
        if findings.len() == before && dep.package == TESTKIT && dep.kind != DepKind::Dev {
            findings.push(finding(
                manifest_path,
                dep,
                format!("{package} has {TESTKIT} in [{}]: testkit is only ever a dev-dependency", dep.kind.table()),
                format!("move `{}` to [dev-dependencies]", dep.key),
            ));
        }
    }
    findings
}

fn check_role(path: &str, package: &str, role: Role, dep: &Dep, out: &mut Vec<Finding>) {
    let p = dep.package.as_str();
    let table = dep.kind.table();
    let dev = dep.kind == DepKind::Dev;
    match role {
        Role::Core => {
            if is_ours(p) {
                out.push(finding(
                    path,
                    dep,
                    format!("{CORE} depends on {p} ([{table}]): core depends on nothing of ours"),
                    format!("remove `{}`; define the trait or type in core and let {p} implement it", dep.key),
                ));
            } else if !dev && CORE_FORBIDDEN_IO.contains(&p) {
                out.push(finding(
                    path,
                    dep,
                    format!("{CORE} depends on {p} ([{table}]): core stays free of IO stacks"),
                    format!(
                        "remove `{}`; put that code in dovetail-http or dovetail-state behind a core trait",
                        dep.key
                    ),
                ));
            }
        }
        Role::HttpOrState => {
            let dev_ok = dev && (p == TESTKIT || p == FAKE_VENDOR);
            if is_ours(p) && p != CORE && !dev_ok {
                out.push(finding(
                    path,
                    dep,
                    format!("{package} depends on {p} ([{table}]): it may depend only on {CORE} among ours"),
                    format!("remove `{}`; shared contracts live in {CORE}", dep.key),
                ));
            }
        }
        Role::Connector => {
            let allowed = p == CORE || p == HTTP || p == PG || (dev && (p == TESTKIT || p == FAKE_VENDOR));
            if is_ours(p) && !allowed {
                let why = match p {
                    STATE => format!(
                        "connectors never depend on {STATE}; use the StateStore / token-store traits from {CORE} (the runner hands in the implementation)"
                    ),
                    RUNNER => format!("connectors never depend on {RUNNER}; the runner depends on connectors, not the reverse"),
                    TESTKIT => format!("{TESTKIT} is a dev-dependency only"),
                    _ => "connectors never depend on each other (or on other dovetail crates than core, http and pg); move shared code into dovetail-http or dovetail-core".to_owned(),
                };
                out.push(finding(
                    path,
                    dep,
                    format!("connector {package} depends on {p} ([{table}])"),
                    format!("{why}; remove `{}`", dep.key),
                ));
            }
        }
        Role::FakeVendor => {
            if is_ours(p) && p != CORE {
                out.push(finding(
                    path,
                    dep,
                    format!("{FAKE_VENDOR} depends on {p} ([{table}]): it depends on {CORE} at most"),
                    format!("remove `{}`", dep.key),
                ));
            } else if dep.kind == DepKind::Normal && FAKE_VENDOR_FORBIDDEN.contains(&p) {
                out.push(finding(
                    path,
                    dep,
                    format!("{FAKE_VENDOR} depends on {p}: the fake vendor is a plain server"),
                    format!("remove `{}` (or move it to [dev-dependencies])", dep.key),
                ));
            }
        }
        Role::Xtask => {
            if is_ours(p) {
                out.push(finding(
                    path,
                    dep,
                    format!("xtask depends on {p} ([{table}]): xtask depends on no dovetail crate"),
                    format!(
                        "remove `{}`; read manifests with `toml` and drive the `dovetail` binary as a child process",
                        dep.key
                    ),
                ));
            }
        }
        Role::Testkit | Role::Other => {}
    }
}

fn finding(path: &str, dep: &Dep, message: String, hint: String) -> Finding {
    Finding { file: path.to_owned(), line: dep.line, message, hint }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKSPACE: &str = r#"
[workspace.dependencies]
dovetail-core = { path = "crates/core" }
dovetail-state = { path = "crates/state" }
store = { path = "crates/state", package = "dovetail-state" }
"#;

    fn run(package: &str, dir: &str, manifest: &str) -> Vec<Finding> {
        let root: Table = WORKSPACE.parse().unwrap();
        let ws = root
            .get("workspace")
            .and_then(Value::as_table)
            .and_then(|w| w.get("dependencies"))
            .and_then(Value::as_table);
        let table: Table = manifest.parse().unwrap();
        let deps = parse_deps(manifest, &table, ws);
        check(&format!("{dir}/Cargo.toml"), package, Role::of(package, dir), &deps)
    }

    #[test]
    fn core_with_no_deps_of_ours_passes() {
        let m = "[dependencies]\nserde = \"1\"\n[dev-dependencies]\nrusqlite = \"0.37\"\n";
        assert!(run(CORE, "crates/core", m).is_empty());
    }

    #[test]
    fn core_depending_on_state_fails_with_line() {
        let m =
            "[package]\nname = \"dovetail-core\"\n\n[dependencies]\nserde = \"1\"\ndovetail-state.workspace = true\n";
        let f = run(CORE, "crates/core", m);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].line, Some(6));
        assert!(f[0].message.contains("dovetail-state"));
    }

    #[test]
    fn core_depending_on_reqwest_fails() {
        let m = "[dependencies]\nreqwest = { version = \"0.13\" }\n";
        let f = run(CORE, "crates/core", m);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("reqwest"));
    }

    #[test]
    fn state_may_depend_on_core_only() {
        let ok = "[dependencies]\ndovetail-core.workspace = true\nrusqlite = \"0.37\"\n";
        assert!(run(STATE, "crates/state", ok).is_empty());
        let bad = "[dependencies]\ndovetail-core.workspace = true\ndovetail-http = { path = \"../http\" }\n";
        let f = run(STATE, "crates/state", bad);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].line, Some(3));
    }

    #[test]
    fn connector_on_core_http_and_testkit_dev_passes() {
        let m = "[dependencies]\ndovetail-core.workspace = true\ndovetail-http = { path = \"../../crates/http\" }\n[dev-dependencies]\ndovetail-testkit = { path = \"../../crates/testkit\" }\n";
        assert!(run("dovetail-github", "connectors/github", m).is_empty());
    }

    #[test]
    fn connector_on_state_runner_or_another_connector_fails() {
        let m = "[dependencies]\ndovetail-core.workspace = true\ndovetail-state.workspace = true\ndovetail-runner = { path = \"../../crates/runner\" }\n[dev-dependencies]\ndovetail-stripe = { path = \"../stripe\" }\n";
        let f = run("dovetail-github", "connectors/github", m);
        assert_eq!(f.len(), 3, "{f:?}");
        assert!(f.iter().any(|f| f.message.contains("dovetail-state")));
        assert!(f.iter().any(|f| f.message.contains("dovetail-runner")));
        assert!(f.iter().any(|f| f.message.contains("dovetail-stripe") && f.line == Some(6)));
    }

    #[test]
    fn renamed_dependency_is_resolved() {
        // `store.workspace = true` is dovetail-state under another name.
        let m = "[dependencies]\nstore.workspace = true\n";
        let f = run("dovetail-github", "connectors/github", m);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("dovetail-state"));
        let m = "[dependencies]\nrt = { path = \"../../crates/runner\", package = \"dovetail-runner\" }\n";
        assert_eq!(run("dovetail-github", "connectors/github", m).len(), 1);
    }

    #[test]
    fn target_specific_tables_are_checked() {
        let m = "[target.'cfg(unix)'.dependencies]\ndovetail-state.workspace = true\n";
        let f = run("dovetail-github", "connectors/github", m);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].line, Some(2));
    }

    #[test]
    fn testkit_outside_dev_dependencies_fails() {
        let ok = "[dev-dependencies]\ndovetail-testkit = { path = \"../testkit\" }\n";
        assert!(run(RUNNER, "crates/runner", ok).is_empty());
        let bad = "[dependencies]\ndovetail-testkit = { path = \"../testkit\" }\n";
        let f = run(RUNNER, "crates/runner", bad);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].hint.contains("dev-dependencies"));
        // A connector gets one message for the same edge, not two.
        assert_eq!(run("dovetail-github", "connectors/github", bad).len(), 1);
    }

    #[test]
    fn fake_vendor_depends_on_core_at_most() {
        let ok = "[dependencies]\ndovetail-core.workspace = true\ntokio = \"1\"\n";
        assert!(run(FAKE_VENDOR, "crates/fake-vendor", ok).is_empty());
        let bad = "[dependencies]\ndovetail-http = { path = \"../http\" }\nwiremock = \"0.6\"\n";
        assert_eq!(run(FAKE_VENDOR, "crates/fake-vendor", bad).len(), 2);
    }

    #[test]
    fn xtask_depends_on_no_dovetail_crate() {
        let ok = "[dependencies]\nanyhow = \"1\"\ntoml = \"1\"\n";
        assert!(run("xtask", "xtask", ok).is_empty());
        let bad = "[build-dependencies]\ndovetail-core.workspace = true\n";
        let f = run("xtask", "xtask", bad);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].line, Some(2));
    }

    #[test]
    fn dotted_table_header_gives_the_line() {
        let m = "[dependencies]\nserde = \"1\"\n\n[dependencies.dovetail-state]\npath = \"../state\"\n";
        let f = run(CORE, "crates/core", m);
        assert_eq!(f[0].line, Some(4));
    }
}
