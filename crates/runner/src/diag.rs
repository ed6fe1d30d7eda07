//! Config diagnostics: turning spans into `file:line`, locating the table a span belongs
//! to, and rewriting serde's messages with the nearest valid key.

use std::path::PathBuf;

use dovetail_core::Error;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The config document being loaded: its label for messages, its text and its folder.
#[derive(Debug, Clone)]
pub struct Doc {
    /// How the file is named in messages (the path as given).
    pub label: String,
    /// The raw text.
    pub text: String,
    /// Folder relative paths are resolved against.
    pub base_dir: PathBuf,
}

impl Doc {
    /// 1-based line of a byte offset.
    pub fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|b| **b == b'\n').count() + 1
    }

    /// `file:line` of a byte offset.
    pub fn at(&self, offset: usize) -> String {
        format!("{}:{}", self.label, self.line(offset))
    }

    /// A Config error at a byte offset.
    pub fn error(&self, offset: usize, message: impl std::fmt::Display) -> Error {
        Error::config(format!("{}: {message}", self.at(offset)))
    }

    /// A Config error about the document as a whole (no line).
    pub fn error_nowhere(&self, message: impl std::fmt::Display) -> Error {
        Error::config(format!("{}: {message}", self.label))
    }
}

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// Render a path as `[a.b.c]` (`[a.streams[0]]` inside arrays); `the top level` when empty.
pub fn show_path(path: &[Seg]) -> String {
    if path.is_empty() {
        return "the top level".to_owned();
    }
    let mut out = String::from("[");
    for (i, s) in path.iter().enumerate() {
        match s {
            Seg::Key(k) => {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(&quote_key(k));
            }
            Seg::Index(n) => out.push_str(&format!("[{n}]")),
        }
    }
    out.push(']');
    out
}

fn quote_key(k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        k.to_owned()
    } else {
        format!("{k:?}")
    }
}

/// What a span matched in the document.
#[derive(Debug)]
enum Hit {
    /// A key: path of its table, and the key.
    Key(Vec<Seg>, String),
    /// A value: its full path.
    Value(Vec<Seg>),
}

/// Find the deepest key or value whose span is exactly `span`.
fn find(table: &DeTable<'_>, span: &std::ops::Range<usize>, path: &mut Vec<Seg>, best: &mut Option<(usize, Hit)>) {
    for (k, v) in table.iter() {
        if k.span() == *span {
            consider(best, path.len() + 1, Hit::Key(path.clone(), k.get_ref().to_string()));
        }
        path.push(Seg::Key(k.get_ref().to_string()));
        find_value(v.get_ref(), v.span(), span, path, best);
        path.pop();
    }
}

fn find_value(
    v: &DeValue<'_>,
    vspan: std::ops::Range<usize>,
    span: &std::ops::Range<usize>,
    path: &mut Vec<Seg>,
    best: &mut Option<(usize, Hit)>,
) {
    if vspan == *span {
        consider(best, path.len(), Hit::Value(path.clone()));
    }
    match v {
        DeValue::Table(t) => find(t, span, path, best),
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                path.push(Seg::Index(i));
                find_value(item.get_ref(), item.span(), span, path, best);
                path.pop();
            }
        }
        _ => {}
    }
}

fn consider(best: &mut Option<(usize, Hit)>, depth: usize, hit: Hit) {
    if best.as_ref().is_none_or(|(d, _)| depth >= *d) {
        *best = Some((depth, hit));
    }
}

/// The nearest candidate to `word`, if one is close enough to be a likely typo.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `; did you mean `x`?` or `; expected one of ...`, for an unknown `word` among `candidates`.
pub fn suggestion(word: &str, candidates: &[String]) -> String {
    match nearest(word, candidates.iter().map(String::as_str)) {
        Some(c) => format!("; did you mean `{c}`?"),
        None if candidates.is_empty() => String::new(),
        None => {
            format!("; expected one of {}", candidates.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "))
        }
    }
}

/// Backticked words of a message, in order.
fn backticked(s: &str) -> Vec<String> {
    s.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// Turn a toml deserialization error into a Config error naming file, line, table and, for
/// unknown keys and variants, the nearest valid one. `root` is the whole document.
pub fn toml_error(doc: &Doc, root: &DeTable<'_>, err: &toml::de::Error) -> Error {
    let message = err.message().trim_end().to_owned();
    let Some(span) = err.span() else {
        return doc.error_nowhere(message);
    };
    let mut best = None;
    find(root, &span, &mut Vec::new(), &mut best);
    let hit = best.map(|(_, h)| h);
    for prefix in ["unknown field", "unknown variant"] {
        if message.starts_with(prefix) {
            let words = backticked(&message);
            let (word, expected) = match words.split_first() {
                Some((w, rest)) => (w.clone(), rest.to_vec()),
                None => break,
            };
            let place = match &hit {
                Some(Hit::Key(table, _)) => format!(" in {}", show_path(table)),
                Some(Hit::Value(path)) => format!(" for {}", show_key(path)),
                None => String::new(),
            };
            return doc.error(span.start, format!("{prefix} `{word}`{place}{}", suggestion(&word, &expected)));
        }
    }
    if let Some(Hit::Value(path)) = &hit
        && let Some((at, inner)) = refine(root, path, &message)
    {
        return doc.error(at, format!("{message} for {}", show_key(&inner)));
    }
    let place = match &hit {
        Some(Hit::Value(path)) if message.starts_with("missing field") => format!(" in {}", show_path(path)),
        Some(Hit::Value(path)) => format!(" for {}", show_key(path)),
        Some(Hit::Key(table, key)) => format!(" for `{key}` in {}", show_path(table)),
        None => String::new(),
    };
    doc.error(span.start, format!("{message}{place}"))
}

/// serde buffers an internally tagged enum (`auth`, `pagination`), so an error raised by one
/// of its fields spans the whole table. For a range or URL error, find the one key inside
/// that table holding the refused value, so the message names it and its line.
fn refine(root: &DeTable<'_>, path: &[Seg], message: &str) -> Option<(usize, Vec<Seg>)> {
    let mut v: &DeValue<'_> = root.get(key_of(path.first()?)?)?.get_ref();
    for seg in &path[1..] {
        v = match (v, seg) {
            (DeValue::Table(t), Seg::Key(k)) => t.get(k.as_str())?.get_ref(),
            (DeValue::Array(a), Seg::Index(i)) => a.get(*i)?.get_ref(),
            _ => return None,
        };
    }
    let DeValue::Table(table) = v else { return None };
    let found: Option<i64> = message.rsplit_once("found ").and_then(|(_, n)| n.parse().ok());
    let is_url_error = message.ends_with("use http:// or https://") || message == "the URL names no host";
    let refused = |key: &str, v: &DeValue<'_>| match v {
        DeValue::Integer(i) => {
            found.is_some() && i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok() == found
        }
        DeValue::String(s) => is_url_error && key.ends_with("url") && dovetail_http::check_http_url(s).is_err(),
        _ => false,
    };
    let mut hits = Vec::new();
    for (k, item) in table.iter() {
        if refused(k.get_ref(), item.get_ref()) {
            let mut p = path.to_vec();
            p.push(Seg::Key(k.get_ref().to_string()));
            hits.push((k.span().start, p));
        }
    }
    if hits.len() == 1 { hits.pop() } else { None }
}

fn key_of(seg: &Seg) -> Option<&str> {
    match seg {
        Seg::Key(k) => Some(k),
        Seg::Index(_) => None,
    }
}

/// `key` in [table] for a value path.
fn show_key(path: &[Seg]) -> String {
    match path.split_last() {
        Some((Seg::Key(k), table)) => format!("`{k}` in {}", show_path(table)),
        _ => show_path(path),
    }
}

/// The key span and value of a path of keys in the document.
pub fn lookup<'a, 'i>(root: &'a DeTable<'i>, path: &[&str]) -> Option<(Range<usize>, &'a Spanned<DeValue<'i>>)> {
    let (last, parents) = path.split_last()?;
    let mut table = root;
    for p in parents {
        table = table.get(*p)?.get_ref().as_table()?;
    }
    let (k, v) = table.get_key_value(*last)?;
    Some((k.span(), v))
}

/// Byte offset of a key path's key (0 when absent).
pub fn offset_of(root: &DeTable<'_>, path: &[&str]) -> usize {
    lookup(root, path).map(|(k, _)| k.start).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_key() {
        let c = vec!["batch_size".to_owned(), "source".to_owned(), "sink".to_owned()];
        assert_eq!(suggestion("batchsize", &c), "; did you mean `batch_size`?");
        assert_eq!(suggestion("zzz", &c), "; expected one of `batch_size`, `source`, `sink`");
    }

    #[test]
    fn paths_render_like_toml_headers() {
        let p =
            vec![Seg::Key("pipelines".into()), Seg::Key("orders".into()), Seg::Key("streams".into()), Seg::Index(0)];
        assert_eq!(show_path(&p), "[pipelines.orders.streams[0]]");
        assert_eq!(show_path(&[Seg::Key("a b".into())]), "[\"a b\"]");
    }

    #[test]
    fn lines_are_one_based() {
        let d = Doc { label: "x.toml".into(), text: "a = 1\nb = 2\n".into(), base_dir: ".".into() };
        assert_eq!(d.line(0), 1);
        assert_eq!(d.line(6), 2);
        assert_eq!(d.at(100), "x.toml:3");
    }
}
