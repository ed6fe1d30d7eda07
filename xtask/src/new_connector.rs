//! `cargo xtask new-connector NAME`: scaffold `connectors/NAME` (a source over HTTP with a
//! typed model, `Link` pagination, recorded fixtures and a test through the engine; a sink
//! that upserts each record by key, with a fixture test and the sink contract) from
//! `xtask/templates/connector/`, and wire it in the way the other connectors are: one
//! `[workspace.dependencies]` line in the root `Cargo.toml`, one `dovetail-NAME.workspace =
//! true` line in `crates/runner/Cargo.toml`, and one line each in `sources()` and `sinks()`
//! of `crates/runner/src/registry.rs`. Nothing else in the workspace changes (the
//! `connectors/*` member glob picks it up).
//!
//! The templates use the helpers every connector shares instead of copies of them
//! (dovetail-core's `position` and `json_type_*`, dovetail-http's `encode_segment` and
//! `Response::provenance`); `cargo xtask tidy` holds them to that (`tidy/shared.rs`).

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Template files: path in the new crate, contents.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../templates/connector/Cargo.toml.tmpl")),
    ("README.md", include_str!("../templates/connector/README.md.tmpl")),
    ("src/lib.rs", include_str!("../templates/connector/src/lib.rs.tmpl")),
    ("src/client.rs", include_str!("../templates/connector/src/client.rs.tmpl")),
    ("src/config.rs", include_str!("../templates/connector/src/config.rs.tmpl")),
    ("src/source.rs", include_str!("../templates/connector/src/source.rs.tmpl")),
    ("src/sink.rs", include_str!("../templates/connector/src/sink.rs.tmpl")),
    ("fixtures/items.json", include_str!("../templates/connector/fixtures/items.json.tmpl")),
    ("fixtures/items_rerun.json", include_str!("../templates/connector/fixtures/items_rerun.json.tmpl")),
    ("fixtures/items_unauthorized.json", include_str!("../templates/connector/fixtures/items_unauthorized.json.tmpl")),
    ("fixtures/items_server_error.json", include_str!("../templates/connector/fixtures/items_server_error.json.tmpl")),
    ("fixtures/items_rate_limited.json", include_str!("../templates/connector/fixtures/items_rate_limited.json.tmpl")),
    ("fixtures/sink_items.json", include_str!("../templates/connector/fixtures/sink_items.json.tmpl")),
    ("tests/source.rs", include_str!("../templates/connector/tests/source.rs.tmpl")),
    ("tests/sink.rs", include_str!("../templates/connector/tests/sink.rs.tmpl")),
    ("tests/contract.rs", include_str!("../templates/connector/tests/contract.rs.tmpl")),
    (
        "tests/snapshots/contract_schema_items.snap",
        include_str!("../templates/connector/tests/snapshots/contract_schema_items.snap.tmpl"),
    ),
    (
        "tests/snapshots/contract_rows_items.snap",
        include_str!("../templates/connector/tests/snapshots/contract_rows_items.snap.tmpl"),
    ),
];

/// The names a template needs, from the connector name (`acme_crm`).
#[derive(Debug, PartialEq)]
pub struct Names {
    /// `acme_crm` (kind, directory, package suffix).
    pub name: String,
    /// `AcmeCrm` (type prefix).
    pub camel: String,
    /// `ACME_CRM` (environment variables).
    pub upper: String,
    /// `dovetail_acme_crm` (crate path).
    pub krate: String,
}

/// Validates `name` (`[a-z][a-z0-9_]*`) and derives the template names.
pub fn names(name: &str) -> Result<Names> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        bail!(
            "new-connector: `{name}` is not a connector name: use lowercase letters, digits and `_`, starting with a letter"
        );
    }
    let camel = name
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect();
    Ok(Names { name: name.to_owned(), camel, upper: name.to_ascii_uppercase(), krate: format!("dovetail_{name}") })
}

/// A template with the names filled in.
pub fn render(template: &str, n: &Names) -> String {
    template
        .replace("__crate__", &n.krate)
        .replace("__NAME__", &n.upper)
        .replace("__Name__", &n.camel)
        .replace("__name__", &n.name)
}

/// Runs `new-connector NAME` in the workspace at `root`.
pub fn main(root: &Path, args: &[String]) -> Result<()> {
    let [name] = args else { bail!("usage: cargo xtask new-connector NAME") };
    let n = names(name)?;
    let dir = root.join("connectors").join(&n.name);
    if dir.exists() {
        bail!("new-connector: {} already exists", dir.display());
    }
    let root_toml = root.join("Cargo.toml");
    let runner_toml = root.join("crates/runner/Cargo.toml");
    let registry = root.join("crates/runner/src/registry.rs");
    let root_text = fs::read_to_string(&root_toml).context("reading Cargo.toml")?;
    let toml_text = fs::read_to_string(&runner_toml).context("reading crates/runner/Cargo.toml")?;
    let registry_text = fs::read_to_string(&registry).context("reading crates/runner/src/registry.rs")?;
    let root_text = add_workspace_dependency(&root_text, &n)?;
    let toml_text = add_dependency(&toml_text, &connector_packages(&root_text), &n)?;
    let registry_text = add_registry_lines(&registry_text, &n)?;
    for (rel, template) in TEMPLATES {
        let path = dir.join(rel);
        fs::create_dir_all(path.parent().unwrap_or(&dir))?;
        fs::write(&path, render(template, &n)).with_context(|| format!("writing {}", path.display()))?;
    }
    fs::write(&root_toml, root_text)?;
    fs::write(&runner_toml, toml_text)?;
    fs::write(&registry, registry_text)?;
    // Import order depends on the name: let rustfmt settle it (the repo's rustfmt.toml applies).
    let sources: Vec<_> =
        TEMPLATES.iter().filter(|(rel, _)| rel.ends_with(".rs")).map(|(rel, _)| dir.join(rel)).collect();
    match std::process::Command::new("rustfmt").arg("--edition").arg("2024").args(&sources).status() {
        Ok(s) if s.success() => {}
        _ => println!("new-connector: note: rustfmt did not run; run `cargo fmt` before committing"),
    }
    println!(
        "new-connector: created connectors/{} (kind `{}`: a source and a sink), wired into the runner",
        n.name, n.name
    );
    println!("next: cargo test -p dovetail-{}; then follow docs/connector-guide.md", n.name);
    Ok(())
}

/// The root manifest with `dovetail-NAME = { path = "connectors/NAME" }` in
/// `[workspace.dependencies]`, after the last connector there (how the others are declared).
pub fn add_workspace_dependency(toml_text: &str, n: &Names) -> Result<String> {
    let line = format!("dovetail-{} = {{ path = \"connectors/{}\" }}\n", n.name, n.name);
    insert_after_last(toml_text, "[workspace.dependencies]\n", "Cargo.toml", is_connector_dependency, &line)
}

/// `toml_text` with `line` inserted in `table` after the last line `matches` accepts (at the
/// table's start when none does); `file` names the manifest in the error.
fn insert_after_last(
    toml_text: &str,
    table: &str,
    file: &str,
    matches: impl Fn(&str) -> bool,
    line: &str,
) -> Result<String> {
    let Some(start) = toml_text.find(table) else { bail!("{file} has no {} table", table.trim_end()) };
    let body_start = start + table.len();
    let body_end = toml_text[body_start..].find("\n[").map_or(toml_text.len(), |i| body_start + i + 1);
    let mut at = body_start;
    let mut offset = body_start;
    for l in toml_text[body_start..body_end].split_inclusive('\n') {
        offset += l.len();
        if matches(l) {
            at = offset;
        }
    }
    Ok(format!("{}{line}{}", &toml_text[..at], &toml_text[at..]))
}

/// Whether a `[workspace.dependencies]` line declares a connector: `dovetail-x = { path =
/// "connectors/x" }` (or an absolute path ending in `connectors/x`).
fn is_connector_dependency(line: &str) -> bool {
    let Some((_, rest)) = line.split_once("path = \"") else { return false };
    let path = Path::new(rest.split('"').next().unwrap_or(""));
    line.starts_with("dovetail-") && path.parent().and_then(Path::file_name).is_some_and(|d| d == "connectors")
}

/// The connector packages the root manifest declares (`dovetail-files`, ...).
pub fn connector_packages(root_toml: &str) -> Vec<String> {
    root_toml
        .lines()
        .filter(|l| is_connector_dependency(l))
        .filter_map(|l| l.split_once('=').map(|(name, _)| name.trim().to_owned()))
        .collect()
}

/// The runner's manifest with `dovetail-NAME.workspace = true` in `[dependencies]`, after the
/// last connector there (`connectors`: the connector packages of the workspace).
pub fn add_dependency(toml_text: &str, connectors: &[String], n: &Names) -> Result<String> {
    let is_connector = |l: &str| {
        let name = l.split(['.', ' ', '=']).next().unwrap_or("");
        connectors.iter().any(|c| c == name)
    };
    let line = format!("dovetail-{}.workspace = true\n", n.name);
    insert_after_last(toml_text, "[dependencies]\n", "crates/runner/Cargo.toml", is_connector, &line)
}

/// The registry with the new source as the last line of `sources()` and the new sink as the
/// last line of `sinks()`.
pub fn add_registry_lines(text: &str, n: &Names) -> Result<String> {
    let text = add_line_to(text, "sources", &format!("        source::<{}::{}Source>(),\n", n.krate, n.camel))?;
    add_line_to(&text, "sinks", &format!("        sink::<{}::{}Sink>(),\n", n.krate, n.camel))
}

fn add_line_to(text: &str, function: &str, line: &str) -> Result<String> {
    let Some(start) = text.find(&format!("pub fn {function}()")) else {
        bail!("registry.rs has no `pub fn {function}()`")
    };
    let Some(close) = text[start..].find("\n    ]") else { bail!("registry.rs: `{function}()` has no closing `]`") };
    let at = start + close + 1;
    Ok(format!("{}{line}{}", &text[..at], &text[at..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_derived_and_bad_ones_refused() {
        let n = names("acme_crm").unwrap();
        assert_eq!(
            (n.camel.as_str(), n.upper.as_str(), n.krate.as_str()),
            ("AcmeCrm", "ACME_CRM", "dovetail_acme_crm")
        );
        assert!(names("Acme").is_err() && names("1x").is_err() && names("a-b").is_err() && names("").is_err());
        assert_eq!(
            render("__crate__::__Name__Source kind __name__ env __NAME___TOKEN", &n),
            "dovetail_acme_crm::AcmeCrmSource kind acme_crm env ACME_CRM_TOKEN"
        );
    }

    #[test]
    fn wired_like_the_other_connectors() {
        let n = names("acme").unwrap();
        let root = "[workspace]\nmembers = []\n\n[workspace.dependencies]\nitoa = \"1\"\ndovetail-core = { path = \"crates/core\" }\ndovetail-files = { path = \"connectors/files\" }\ndovetail-rest = { path = \"/abs/connectors/rest\" }\ndovetail-testkit = { path = \"crates/testkit\" }\n\nanyhow = \"1\"\n\n[workspace.lints.rust]\nunsafe_code = \"deny\"\n";
        let out = add_workspace_dependency(root, &n).unwrap();
        assert_eq!(out.lines().count(), root.lines().count() + 1);
        assert!(
            out.contains("dovetail-rest = { path = \"/abs/connectors/rest\" }\ndovetail-acme = { path = \"connectors/acme\" }\ndovetail-testkit"),
            "{out}"
        );
        let connectors = connector_packages(&out);
        assert_eq!(connectors, ["dovetail-files", "dovetail-rest", "dovetail-acme"]);
        // No connector yet: right after the table header.
        let bare = "[workspace.dependencies]\nanyhow = \"1\"\n";
        assert_eq!(
            add_workspace_dependency(bare, &n).unwrap(),
            "[workspace.dependencies]\ndovetail-acme = { path = \"connectors/acme\" }\nanyhow = \"1\"\n"
        );

        let toml = "[package]\nname = \"x\"\n\n[dependencies]\nanyhow.workspace = true\ndovetail-core.workspace = true\ndovetail-files.workspace = true\ndovetail-rest.workspace = true\nschemars.workspace = true\n\n[dev-dependencies]\ndovetail-files.workspace = true\n";
        let out = add_dependency(toml, &connectors, &n).unwrap();
        assert_eq!(out.lines().count(), toml.lines().count() + 1);
        assert!(out.contains("dovetail-rest.workspace = true\ndovetail-acme.workspace = true\nschemars"), "{out}");
        assert!(out.ends_with("[dev-dependencies]\ndovetail-files.workspace = true\n"), "{out}");

        let reg = "pub fn sources() -> Vec<SourceEntry> {\n    vec![\n        source::<a::A>(),\n    ]\n}\n\npub fn sinks() -> Vec<SinkEntry> {\n    vec![\n        sink::<b::B>(),\n    ]\n}\n";
        let out = add_registry_lines(reg, &n).unwrap();
        assert_eq!(out.lines().count(), reg.lines().count() + 2);
        assert!(
            out.contains(
                "        source::<a::A>(),\n        source::<dovetail_acme::AcmeSource>(),\n    ]\n}\n\npub fn sinks"
            ),
            "{out}"
        );
        assert!(
            out.ends_with("        sink::<b::B>(),\n        sink::<dovetail_acme::AcmeSink>(),\n    ]\n}\n"),
            "{out}"
        );
        assert!(add_registry_lines("pub fn sources() -> X {\n    vec![\n    ]\n}\n", &n).is_err(), "no sinks()");
    }
}
