//! `cargo xtask new-connector NAME`: scaffold `connectors/NAME` (a source over HTTP with a
//! typed model, `Link` pagination, recorded fixtures and a test through the engine) from
//! `xtask/templates/connector/`, and wire it into the runner: one dependency line in
//! `crates/runner/Cargo.toml` and one registry line in `crates/runner/src/registry.rs`.
//! Nothing else in the workspace changes (the `connectors/*` member glob picks it up).

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Template files: path in the new crate, contents.
const TEMPLATES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../templates/connector/Cargo.toml.tmpl")),
    ("README.md", include_str!("../templates/connector/README.md.tmpl")),
    ("src/lib.rs", include_str!("../templates/connector/src/lib.rs.tmpl")),
    ("src/config.rs", include_str!("../templates/connector/src/config.rs.tmpl")),
    ("src/source.rs", include_str!("../templates/connector/src/source.rs.tmpl")),
    ("fixtures/items.json", include_str!("../templates/connector/fixtures/items.json.tmpl")),
    ("fixtures/items_rerun.json", include_str!("../templates/connector/fixtures/items_rerun.json.tmpl")),
    ("tests/source.rs", include_str!("../templates/connector/tests/source.rs.tmpl")),
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
    let runner_toml = root.join("crates/runner/Cargo.toml");
    let registry = root.join("crates/runner/src/registry.rs");
    let toml_text = fs::read_to_string(&runner_toml).context("reading crates/runner/Cargo.toml")?;
    let registry_text = fs::read_to_string(&registry).context("reading crates/runner/src/registry.rs")?;
    let toml_text = add_dependency(&toml_text, &n)?;
    let registry_text = add_registry_line(&registry_text, &n)?;
    for (rel, template) in TEMPLATES {
        let path = dir.join(rel);
        fs::create_dir_all(path.parent().unwrap_or(&dir))?;
        fs::write(&path, render(template, &n)).with_context(|| format!("writing {}", path.display()))?;
    }
    fs::write(&runner_toml, toml_text)?;
    fs::write(&registry, registry_text)?;
    // Import order depends on the name: let rustfmt settle it (the repo's rustfmt.toml applies).
    let sources: Vec<_> =
        TEMPLATES.iter().filter(|(rel, _)| rel.ends_with(".rs")).map(|(rel, _)| dir.join(rel)).collect();
    match std::process::Command::new("rustfmt").arg("--edition").arg("2024").args(&sources).status() {
        Ok(s) if s.success() => {}
        _ => println!("new-connector: note: rustfmt did not run; run `cargo fmt` before committing"),
    }
    println!("new-connector: created connectors/{} (kind `{}`), wired into the runner", n.name, n.name);
    println!("next: cargo test -p dovetail-{}; then follow docs/connector-guide.md", n.name);
    Ok(())
}

/// The runner's manifest with `dovetail-NAME` added to `[dependencies]`.
pub fn add_dependency(toml_text: &str, n: &Names) -> Result<String> {
    let line = format!("dovetail-{} = {{ path = \"../../connectors/{}\" }}\n", n.name, n.name);
    let Some(at) = toml_text.find("[dependencies]\n") else {
        bail!("crates/runner/Cargo.toml has no [dependencies] table")
    };
    let at = at + "[dependencies]\n".len();
    Ok(format!("{}{line}{}", &toml_text[..at], &toml_text[at..]))
}

/// The registry with the new source as the last line of `sources()`.
pub fn add_registry_line(text: &str, n: &Names) -> Result<String> {
    let Some(start) = text.find("pub fn sources()") else { bail!("registry.rs has no `pub fn sources()`") };
    let Some(close) = text[start..].find("\n    ]") else { bail!("registry.rs: `sources()` has no closing `]`") };
    let at = start + close + 1;
    let line = format!("        source::<{}::{}Source>(),\n", n.krate, n.camel);
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
    fn one_dependency_line_and_one_registry_line() {
        let n = names("acme").unwrap();
        let toml = "[package]\nname = \"x\"\n\n[dependencies]\nanyhow.workspace = true\n";
        let out = add_dependency(toml, &n).unwrap();
        assert_eq!(out.lines().count(), toml.lines().count() + 1);
        assert!(out.contains("[dependencies]\ndovetail-acme = { path = \"../../connectors/acme\" }\nanyhow"));
        let reg = "pub fn sources() -> Vec<SourceEntry> {\n    vec![\n        source::<a::A>(),\n    ]\n}\n\npub fn sinks() -> Vec<SinkEntry> {\n    vec![\n    ]\n}\n";
        let out = add_registry_line(reg, &n).unwrap();
        assert!(
            out.contains(
                "        source::<a::A>(),\n        source::<dovetail_acme::AcmeSource>(),\n    ]\n}\n\npub fn sinks"
            ),
            "{out}"
        );
    }
}
