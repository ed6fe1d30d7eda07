//! What every connector would copy lives once: no connector (`connectors/*/src`) and no
//! scaffold template (`xtask/templates/`) re-defines a helper that dovetail-core or
//! dovetail-http already has.
//!
//! | re-defined | use instead |
//! | --- | --- |
//! | path-segment percent-encoding | `dovetail_http::encode_segment` |
//! | provenance built from a response | `dovetail_http::Response::provenance` |
//! | position encode/decode, "not one this connector wrote" | `dovetail_core::position::{encode, decode, not_ours}` |
//! | a JSON value's type name (`Value::Bool(_) => "boolean"`) | `dovetail_core::{json_type_name, json_type_phrase}` |
//!
//! The check is textual, on purpose small: each rule names fragments that only a copy of the
//! helper contains (compared with whitespace removed), and a `Provenance { .. }` literal is a
//! copy when it reads a response (`redact_url`, `REQUEST_ID_HEADERS`, `.status.as_u16()`);
//! the files connector's literal for a local file is not. Comment lines and everything from
//! the first `#[cfg(test)]` of a file on are skipped (tests may quote the messages), and so
//! are `tests/` directories.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::Finding;
use crate::util::rel;

/// One shared helper and the fragments that give a copy of it away.
#[derive(Debug)]
pub struct Rule {
    /// What the copy does, for the message.
    pub what: &'static str,
    /// Fragments only a copy contains (matched with whitespace removed from both sides).
    pub needles: &'static [&'static str],
    /// The shared helper to call instead.
    pub helper: &'static str,
}

/// The helpers connectors share, and how a copy of each looks.
pub const RULES: &[Rule] = &[
    Rule {
        what: "path-segment percent-encoding",
        needles: &[
            "fn encode_segment",
            "fn segment(",
            "fn percent_encode",
            "b'-' | b'.' | b'_' | b'~'",
            "percent_encoding::",
            "utf8_percent_encode",
            "AsciiSet",
        ],
        helper: "dovetail_http::encode_segment",
    },
    Rule {
        what: "provenance from a response",
        needles: &["fn provenance("],
        helper: "dovetail_http::Response::provenance",
    },
    Rule {
        what: "position encoding and its corrupt-checkpoint error",
        needles: &["not one this connector wrote", "\"cannot encode a position\""],
        helper: "dovetail_core::position::{encode, decode, not_ours}",
    },
    Rule {
        what: "JSON type names",
        needles: &["Value::Bool(_) => \"", "Value::Null => \"null\"", "fn json_type"],
        helper: "dovetail_core::{json_type_name, json_type_phrase} (or dovetail_core::JsonType)",
    },
];

/// The index in [`RULES`] of the provenance rule, which also looks at literals.
const PROVENANCE: usize = 1;

/// What a `Provenance { .. }` literal reads when it is built from a response.
const FROM_RESPONSE: &[&str] = &["redact_url", "REQUEST_ID_HEADERS", ".status.as_u16()"];

/// Whether `path` (relative to the root) is held to the rule: connector sources and
/// scaffold templates, not tests.
pub fn applies_to(path: &str) -> bool {
    let in_scope = (path.starts_with("connectors/") && path.split('/').nth(2) == Some("src") && path.ends_with(".rs"))
        || (path.starts_with("xtask/templates/") && path.ends_with(".rs.tmpl"));
    in_scope && !path.split('/').any(|c| c == "tests")
}

/// Every violation under `connectors/` and `xtask/templates/` of the workspace at `root`.
pub fn check_tree(root: &Path) -> Result<Vec<Finding>> {
    let mut files = Vec::new();
    for dir in ["connectors", "xtask/templates"] {
        walk(&root.join(dir), &mut files)?;
    }
    files.sort();
    let mut findings = Vec::new();
    for file in files {
        let path = rel(root, &file);
        if applies_to(&path) {
            let src = fs::read_to_string(&file).with_context(|| format!("reading {path}"))?;
            findings.extend(check(&path, &src));
        }
    }
    Ok(findings)
}

/// The re-definitions in one file; `path` is used in the findings.
pub fn check(path: &str, src: &str) -> Vec<Finding> {
    let lines: Vec<&str> = src.lines().take_while(|l| l.trim() != "#[cfg(test)]").collect();
    let squeezed: Vec<String> = lines.iter().map(|l| squeeze(l)).collect();
    let mut findings = Vec::new();
    for (i, line) in squeezed.iter().enumerate() {
        if line.starts_with("//") {
            continue;
        }
        for (r, rule) in RULES.iter().enumerate() {
            let mut seen = rule.needles.iter().find(|n| line.contains(&squeeze(n))).map(|n| format!("`{n}`"));
            if seen.is_none() && r == PROVENANCE && line.contains("Provenance{") && !line.contains("structProvenance") {
                let block = literal_block(&squeezed[i..]);
                seen = FROM_RESPONSE
                    .iter()
                    .find(|s| block.contains(*s))
                    .map(|s| format!("a `Provenance {{ .. }}` reading `{s}`"));
            }
            if let Some(seen) = seen {
                findings.push(Finding {
                    file: path.to_owned(),
                    line: Some(i + 1),
                    message: format!("re-defines {} ({seen}), which connectors share", rule.what),
                    hint: format!(
                        "call {} instead of a copy (docs/connector-guide.md, \"Shared helpers\")",
                        rule.helper
                    ),
                });
            }
        }
    }
    findings
}

fn squeeze(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The text from a `Provenance {` to its closing brace (lines already without whitespace).
fn literal_block(lines: &[String]) -> String {
    let mut out = String::new();
    let mut depth = 0i32;
    for (n, line) in lines.iter().enumerate() {
        let text = if n == 0 { &line[line.find("Provenance{").unwrap_or(0)..] } else { line.as_str() };
        for c in text.chars() {
            out.push(c);
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return out;
                    }
                }
                _ => {}
            }
        }
    }
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if entry.file_type()?.is_dir() {
            if name != "target" && !name.to_string_lossy().starts_with('.') {
                walk(&entry.path(), out)?;
            }
        } else {
            out.push(entry.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::workspace_root;

    /// The copies connectors carried before the helpers moved, one per rule.
    const OLD_COPIES: &[(&str, &str)] = &[
        (
            "encode_segment",
            "pub fn segment(s: &str) -> String {\n    let mut out = String::new();\n    for b in s.bytes() {\n        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {\n",
        ),
        (
            "Response::provenance",
            "    fn provenance(&self, resp: &Response) -> Provenance {\n        Provenance {\n            endpoint: redact_url(&resp.url, &[]),\n",
        ),
        (
            "Response::provenance",
            "        let prov = Arc::new(Provenance {\n            connector: crate::KIND.to_owned(),\n            endpoint: redact_url(&page.response.url, &[]),\n            status: Some(page.response.status.as_u16()),\n        });\n",
        ),
        (
            "dovetail_core::position",
            "    Error::permanent(format!(\n        \"stream `{stream}`: the checkpoint position {v} is not one this connector wrote ({e}); run `dovetail reset`\"\n    ))\n",
        ),
        (
            "dovetail_core::position",
            "    serde_json::to_value(p).map(Next::More).map_err(|e| Error::internal(\"cannot encode a position\").with_source(e))\n",
        ),
        (
            "json_type_name",
            "fn type_name(v: &Value) -> &'static str {\n    match v {\n        Value::Null => \"null\",\n        Value::Bool(_) => \"a boolean\",\n",
        ),
    ];

    #[test]
    fn each_old_copy_is_flagged_with_file_line_and_the_helper() {
        for (helper, src) in OLD_COPIES {
            let path = "connectors/acme/src/source.rs";
            let found = check(path, src);
            assert!(!found.is_empty(), "not flagged:\n{src}");
            assert!(found.iter().all(|f| f.file == path && f.line.is_some()), "{found:?}");
            assert!(found.iter().any(|f| f.hint.contains(helper)), "{helper}: {found:?}");
        }
        let found = check("connectors/acme/src/x.rs", "use std::fmt;\n\nfn provenance(r: &Response) -> Provenance {\n");
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].to_string(),
            "connectors/acme/src/x.rs:3: re-defines provenance from a response (`fn provenance(`), which connectors share\n    \
             fix: call dovetail_http::Response::provenance instead of a copy (docs/connector-guide.md, \"Shared helpers\")"
        );
    }

    #[test]
    fn calls_comments_tests_and_local_provenance_pass() {
        let src = "use dovetail_http::encode_segment;\n\
                   // the old `fn encode_segment` lived here\n\
                   let p = format!(\"/v1/items/{}\", encode_segment(id));\n\
                   let prov = Arc::new(page.response.provenance(crate::KIND, None));\n\
                   let file = Arc::new(Provenance {\n    connector: KIND.to_owned(),\n    endpoint: plan.display.clone(),\n    status: None,\n});\n\
                   let later = redact_url(&url, &[]);\n\
                   #[cfg(test)]\nmod tests {\n    fn type_name() { assert!(e.contains(\"not one this connector wrote\")); }\n}\n";
        assert_eq!(check("connectors/acme/src/source.rs", src), vec![]);
    }

    #[test]
    fn connector_sources_and_templates_are_in_scope_tests_are_not() {
        assert!(applies_to("connectors/rest/src/source.rs"));
        assert!(applies_to("connectors/github/src/deep/mod.rs"));
        assert!(applies_to("xtask/templates/connector/src/source.rs.tmpl"));
        assert!(!applies_to("connectors/rest/tests/source.rs"));
        assert!(!applies_to("xtask/templates/connector/tests/contract.rs.tmpl"));
        assert!(!applies_to("connectors/files/examples/files_throughput.rs"));
        assert!(!applies_to("crates/http/src/segment.rs"));
    }

    #[test]
    fn the_connectors_and_the_templates_use_the_shared_helpers() {
        let found = check_tree(&workspace_root()).unwrap();
        let listed: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert!(found.is_empty(), "{}", listed.join("\n"));
    }

    #[test]
    fn a_copy_in_a_scaffolded_tree_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("connectors/acme/src");
        fs::create_dir_all(&src).unwrap();
        fs::write(
            src.join("lib.rs"),
            "fn json_type(v: &Value) -> &'static str {\n    match v {\n        Value::Bool(_) => \"boolean\",\n",
        )
        .unwrap();
        fs::create_dir_all(dir.path().join("connectors/acme/tests")).unwrap();
        fs::write(dir.path().join("connectors/acme/tests/t.rs"), "fn encode_segment() {}\n").unwrap();
        let found = check_tree(dir.path()).unwrap();
        let at: Vec<(String, Option<usize>)> = found.iter().map(|f| (f.file.clone(), f.line)).collect();
        assert_eq!(
            at,
            vec![
                ("connectors/acme/src/lib.rs".to_owned(), Some(1)),
                ("connectors/acme/src/lib.rs".to_owned(), Some(3))
            ]
        );
    }
}
