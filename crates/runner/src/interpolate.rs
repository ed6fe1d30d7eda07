//! `${ENV_VAR}` and `${file:path}` interpolation in every string value of the parsed
//! config, before typed deserialization (spans stay valid), and detection of secrets given
//! as literals.
//!
//! `$${` is a literal `${`. File paths are relative to the config file; the file's trailing
//! newline is trimmed. A value that contains a secret is never printed.

use std::borrow::Cow;

use dovetail_core::Error;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diag::Doc;

/// A secret-looking key whose value was written literally in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiteralSecret {
    /// 1-based line of the value.
    pub line: usize,
    /// The key (`api_key`).
    pub key: String,
}

impl LiteralSecret {
    /// The warning `dovetail check` prints (never the value).
    pub fn warning(&self, doc: &Doc) -> String {
        format!("{}:{}: `{}` is a literal secret; use ${{ENV_VAR}} or ${{file:...}}", doc.label, self.line, self.key)
    }
}

/// Where values come from; swapped in tests.
pub trait Lookup {
    /// An environment variable.
    fn env(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessEnv;

impl Lookup for ProcessEnv {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// Whether a key names a secret: its last word (snake, kebab or camel case) is `token`,
/// `secret`, `password`, `key`, `credential(s)` or `webhook`. Only the last word counts, so
/// `token_url`, `token_lifetime` or `secret_header` (what a secret is *about*) are not
/// flagged while `refresh_token`, `client_secret` and `apiKey` are.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    const NOT_SECRET: &[&str] = &["primary_key", "primary_keys", "key_columns", "key_column", "key_field", "keys"];
    if NOT_SECRET.contains(&k.as_str()) {
        return false;
    }
    let Some(last) = words(key).pop() else { return false };
    // `webhook`: alert webhook URLs carry their token in the path or query.
    const SECRET_WORDS: &[&str] =
        &["token", "secret", "password", "passwd", "key", "apikey", "credential", "credentials", "webhook"];
    SECRET_WORDS.contains(&last.as_str())
}

/// The lowercase words of a key: split at `_`, `-`, `.` and lower-to-upper case changes.
fn words(key: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut prev_lower = false;
    for c in key.chars() {
        if !c.is_ascii_alphanumeric() {
            prev_lower = false;
            out.push(String::new());
            continue;
        }
        if out.is_empty() || (c.is_ascii_uppercase() && prev_lower) {
            out.push(String::new());
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        if let Some(w) = out.last_mut() {
            w.push(c.to_ascii_lowercase());
        }
    }
    out.retain(|w| !w.is_empty());
    out
}

/// Interpolate every string value of `table` in place; return the literal secrets found.
pub fn interpolate(doc: &Doc, table: &mut DeTable<'_>, env: &dyn Lookup) -> Result<Vec<LiteralSecret>, Error> {
    let mut secrets = Vec::new();
    walk_table(doc, table, false, env, &mut secrets)?;
    Ok(secrets)
}

fn walk_table(
    doc: &Doc,
    table: &mut DeTable<'_>,
    in_mapping: bool,
    env: &dyn Lookup,
    out: &mut Vec<LiteralSecret>,
) -> Result<(), Error> {
    for (k, v) in table.iter_mut() {
        let key = k.get_ref().to_string();
        // Mapping tables hold the user's field names, not settings: never flag those as secrets.
        let nested_mapping = in_mapping || key == "mapping";
        walk_value(doc, &key, v, nested_mapping, env, out)?;
    }
    Ok(())
}

fn walk_value(
    doc: &Doc,
    key: &str,
    v: &mut Spanned<DeValue<'_>>,
    in_mapping: bool,
    env: &dyn Lookup,
    out: &mut Vec<LiteralSecret>,
) -> Result<(), Error> {
    let offset = v.span().start;
    match v.get_mut() {
        DeValue::String(s) => {
            let (text, interpolated) =
                expand(s, env, doc).map_err(|m| doc.error(offset, format!("{m} (in the value of `{key}`)")))?;
            if !in_mapping && !interpolated && !text.is_empty() && is_secret_key(key) {
                out.push(LiteralSecret { line: doc.line(offset), key: key.to_owned() });
            }
            if text != **s {
                *s = Cow::Owned(text);
            }
        }
        DeValue::Array(items) => {
            for item in items.iter_mut() {
                walk_value(doc, key, item, in_mapping, env, out)?;
            }
        }
        DeValue::Table(t) => walk_table(doc, t, in_mapping, env, out)?,
        _ => {}
    }
    Ok(())
}

/// Expand one string. Returns the text and whether any `${...}` was substituted.
pub fn expand(s: &str, env: &dyn Lookup, doc: &Doc) -> Result<(String, bool), String> {
    if !s.contains("${") {
        return Ok((s.to_owned(), false));
    }
    let mut out = String::with_capacity(s.len());
    let mut substituted = false;
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        if rest[..i].ends_with('$') {
            // `$${` → a literal `${`.
            out.push_str(&rest[..i - 1]);
            out.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        out.push_str(&rest[..i]);
        let body = &rest[i + 2..];
        let end = body.find('}').ok_or_else(|| "unterminated `${` (write `$${` for a literal `${`)".to_owned())?;
        let name = body[..end].trim();
        out.push_str(&resolve(name, env, doc)?);
        substituted = true;
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok((out, substituted))
}

fn resolve(name: &str, env: &dyn Lookup, doc: &Doc) -> Result<String, String> {
    if let Some(path) = name.strip_prefix("file:") {
        let path = path.trim();
        if path.is_empty() {
            return Err("`${file:}` needs a path".to_owned());
        }
        let text = read_capped(path, &doc.base_dir.join(path))?;
        let trimmed = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
        return Ok(trimmed.to_owned());
    }
    let var = name.strip_prefix("env:").unwrap_or(name);
    if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("`${{{name}}}` is not a valid reference; use ${{ENV_VAR}} or ${{file:path}}"));
    }
    env.env(var).ok_or_else(|| format!("environment variable `{var}` is not set"))
}

/// The most a `${file:...}` may hold: secrets and URLs, not data.
pub const FILE_MAX_BYTES: u64 = 1024 * 1024;

/// The text of `full` (`path` as the config wrote it), refused unless it is a regular file
/// (symlinks followed) of at most [`FILE_MAX_BYTES`]: `/dev/zero` or a FIFO would hang
/// `check` and `run`, and a huge file would fill memory. The read is capped too, for files
/// that grow or report no size (`/proc`).
fn read_capped(path: &str, full: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let what = || format!("file `{path}` ({}) for `${{file:{path}}}`", full.display());
    let meta = std::fs::metadata(full).map_err(|e| format!("cannot read {}: {e}", what()))?;
    if !meta.is_file() {
        return Err(format!("{} is {}, not a regular file", what(), file_kind(&meta.file_type())));
    }
    let too_big = || format!("{} is larger than {} KiB", what(), FILE_MAX_BYTES / 1024);
    if meta.len() > FILE_MAX_BYTES {
        return Err(too_big());
    }
    let file = std::fs::File::open(full).map_err(|e| format!("cannot read {}: {e}", what()))?;
    let mut text = String::new();
    file.take(FILE_MAX_BYTES + 1).read_to_string(&mut text).map_err(|e| format!("cannot read {}: {e}", what()))?;
    if text.len() as u64 > FILE_MAX_BYTES {
        return Err(too_big());
    }
    Ok(text)
}

/// What a file that is not a regular file is, for the error.
fn file_kind(ft: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO";
        }
        if ft.is_char_device() || ft.is_block_device() {
            return "a device";
        }
        if ft.is_socket() {
            return "a socket";
        }
    }
    if ft.is_dir() { "a directory" } else { "something else" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Vars(HashMap<&'static str, &'static str>);
    impl Lookup for Vars {
        fn env(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|s| s.to_string())
        }
    }

    fn doc(dir: &std::path::Path) -> Doc {
        Doc { label: "dovetail.toml".into(), text: String::new(), base_dir: dir.to_path_buf() }
    }

    #[test]
    fn expands_env_files_and_escapes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "s3cret\n").unwrap();
        let env = Vars(HashMap::from([("HOST", "example.com")]));
        let d = doc(dir.path());
        assert_eq!(expand("https://${HOST}/x", &env, &d).unwrap(), ("https://example.com/x".into(), true));
        assert_eq!(expand("${file:tok}", &env, &d).unwrap(), ("s3cret".into(), true));
        assert_eq!(expand("$${HOST} costs $5", &env, &d).unwrap(), ("${HOST} costs $5".into(), false));
        assert_eq!(expand("plain", &env, &d).unwrap(), ("plain".into(), false));
        assert!(expand("${MISSING}", &env, &d).unwrap_err().contains("`MISSING` is not set"));
        assert!(expand("${HOST", &env, &d).unwrap_err().contains("unterminated"));
        assert!(expand("${file:nope}", &env, &d).unwrap_err().contains("cannot read file `nope`"));
    }

    #[test]
    fn file_references_are_regular_files_of_at_most_a_mebibyte() {
        let dir = tempfile::tempdir().unwrap();
        let (env, d) = (Vars(HashMap::new()), doc(dir.path()));
        let limit = usize::try_from(FILE_MAX_BYTES).unwrap();
        std::fs::write(dir.path().join("max"), "x".repeat(limit)).unwrap();
        assert_eq!(expand("${file:max}", &env, &d).unwrap().0.len(), limit);
        std::fs::write(dir.path().join("big"), "x".repeat(limit + 1)).unwrap();
        let e = expand("${file:big}", &env, &d).unwrap_err();
        assert!(e.contains("file `big`") && e.contains("larger than 1024 KiB"), "{e}");
        let e = expand("${file:/dev/zero}", &env, &d).unwrap_err();
        assert!(e.contains("`/dev/zero`") && e.contains("is a device, not a regular file"), "{e}");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert!(expand("${file:sub}", &env, &d).unwrap_err().contains("is a directory, not a regular file"));
    }

    #[test]
    fn secret_keys() {
        for k in [
            "api_key",
            "token",
            "client_secret",
            "password",
            "credentials",
            "apiKey",
            "webhook",
            "refresh_token",
            "secret_key",
            "key",
            "ACCESS_TOKEN",
            "x-api-key",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        // Keys that merely mention a secret word describe something else (issue 16).
        for k in [
            "primary_key",
            "key_columns",
            "path",
            "name",
            "kind",
            "token_url",
            "token_lifetime",
            "tokenUrl",
            "refresh_skew_secs",
            "secret_header",
            "idempotency_header",
            "webhook_timeout_ms",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn literal_secrets_are_found_and_never_printed() {
        let text = "[source]\nurl = \"https://x\"\napi_key = \"hunter2\"\ntoken = \"Bearer ${TOK}\"\nprimary_key = [\"id\"]\n[source.mapping]\nconstant = { password = \"not-a-setting\" }\n";
        let d = Doc { label: "dovetail.toml".into(), text: text.into(), base_dir: ".".into() };
        let mut root = DeTable::parse(text).unwrap();
        let env = Vars(HashMap::from([("TOK", "abc")]));
        let found = interpolate(&d, root.get_mut(), &env).unwrap();
        assert_eq!(found, [LiteralSecret { line: 3, key: "api_key".into() }]);
        let w = found[0].warning(&d);
        assert_eq!(w, "dovetail.toml:3: `api_key` is a literal secret; use ${ENV_VAR} or ${file:...}");
        assert!(!w.contains("hunter2"));
        let source = root.get_ref().get("source").unwrap().get_ref().as_table().unwrap();
        assert_eq!(source.get("token").unwrap().get_ref().as_str(), Some("Bearer abc"));
    }
}
