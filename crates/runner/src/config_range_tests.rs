//! Issue 16: every numeric config key has a range, the same in `config-schema` and at load,
//! where a value outside it is refused naming the file, the line and the key; URLs must be
//! http or https. One table over every key, driven through the real loader.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

/// A config touching every table that has a numeric key: REST source (with auth, paging,
/// incremental) and REST sink, state, retention and alerts, the GitHub and PostgreSQL sources.
const BASE: &str = r#"
[state]
[state.retention]
[pipelines.p]
[pipelines.p.alerts]
command = ["true"]
[pipelines.p.source]
kind = "rest"
base_url = "https://api.example.com"
auth = { type = "oauth2_client_credentials", token_url = "https://api.example.com/token", client_id = "c", client_secret = "s" }
[pipelines.p.source.http]
[pipelines.p.source.http.retry]
[pipelines.p.source.http.circuit]
[[pipelines.p.source.streams]]
name = "items"
path = "/v1/items"
primary_key = ["id"]
incremental = { cursor_field = "updated_at" }
pagination = { type = "page_number", param = "page" }
[[pipelines.p.source.streams]]
name = "more"
path = "/v1/more"
primary_key = ["id"]
pagination = { type = "offset", param = "offset" }
[pipelines.p.sink]
kind = "rest"
base_url = "https://crm.example.com"
[pipelines.p.sink.streams.items]
mode = "upsert"
path = "/v1/items/{id}"
[pipelines.g.source]
kind = "github"
owner = "octo"
repositories = ["hello"]
[pipelines.g.source.app]
app_id = 1
installation_id = 1
private_key = "-----BEGIN RSA PRIVATE KEY-----\nMAMCAQA=\n-----END RSA PRIVATE KEY-----"
[pipelines.g.source.stream_options.issues]
[pipelines.g.sink]
kind = "jsonl"
dir = "out"
[pipelines.pg.source]
kind = "postgres"
url = "postgres://reader@127.0.0.1:1/warehouse"
table = "customers"
[pipelines.pg.sink]
kind = "jsonl"
dir = "out"
[pipelines.s.source]
kind = "postgres"
url = "postgres://reader@127.0.0.1:1/warehouse"
table = "customers"
[pipelines.s.sink]
kind = "stripe"
api_key = "sk_test_range_tests_not_a_key"
[pipelines.h.source]
kind = "hubspot"
token = "pat-na1-range-tests-not-a-token"
objects = ["contacts"]
[pipelines.h.sink]
kind = "hubspot"
token = "pat-na1-range-tests-not-a-token"
object = "companies"
id_property = "domain"
associate = { to = "contacts", id_field = "contact_id", type_id = 2 }
"#;

/// One numeric key: where it lives (dotted, array items by index), its schema definition,
/// its documented range, and a key that must accompany it in the same table.
struct Row {
    table: &'static str,
    key: &'static str,
    def: &'static str,
    min: i64,
    max: i64,
    with: Option<(&'static str, i64)>,
}

const fn row(table: &'static str, key: &'static str, def: &'static str, min: i64, max: i64) -> Row {
    Row { table, key, def, min, max, with: None }
}

const HTTP: &str = "pipelines.p.source.http";
const SOURCE: &str = "pipelines.p.source";

fn rows() -> Vec<Row> {
    vec![
        row("state", "http_cache_entries", "StateConfig", 1, 10_000_000),
        row("state.retention", "runs", "RetentionConfig", 1, 1_000_000),
        row("pipelines.p", "batch_size", "PipelineConfig", 1, 100_000),
        row("pipelines.p", "max_dead_letters", "PipelineConfig", 0, 1_000_000_000),
        row("pipelines.p", "outbox_max", "PipelineConfig", 1, 100_000_000),
        row("pipelines.p.alerts", "dead_letter_threshold", "AlertsConfig", 1, 1_000_000_000),
        row("pipelines.p.alerts", "sunset_within_days", "AlertsConfig", 0, 3650),
        row(HTTP, "connect_timeout_ms", "HttpConfig", 1, 600_000),
        row(HTTP, "timeout_ms", "HttpConfig", 1, 3_600_000),
        row(HTTP, "max_concurrency", "HttpConfig", 1, 1024),
        row("pipelines.p.source.http.retry", "max_attempts", "RetryConfig", 1, 100),
        row("pipelines.p.source.http.retry", "base_delay_ms", "RetryConfig", 1, 600_000),
        row("pipelines.p.source.http.retry", "max_delay_ms", "RetryConfig", 1, 3_600_000),
        row("pipelines.p.source.http.retry", "max_elapsed_ms", "RetryConfig", 1, 86_400_000),
        row("pipelines.p.source.http.retry", "max_rate_limit_wait_ms", "RetryConfig", 0, 86_400_000),
        row("pipelines.p.source.http.rate_limit", "per_second", "RateLimitConfig", 1, 100_000),
        row("pipelines.p.source.http.rate_limit", "per_minute", "RateLimitConfig", 1, 6_000_000),
        Row {
            with: Some(("per_second", 10)),
            ..row("pipelines.p.source.http.rate_limit", "burst", "RateLimitConfig", 1, 100_000)
        },
        row("pipelines.p.source.http.circuit", "failure_threshold", "CircuitConfig", 1, 1000),
        row("pipelines.p.source.http.circuit", "cool_down_ms", "CircuitConfig", 1, 86_400_000),
        row("pipelines.p.source.auth", "refresh_skew_secs", "AuthConfig", 0, 86_400),
        row("pipelines.p.source.streams.0.incremental", "lookback_secs", "Incremental", 0, 31_536_000),
        row("pipelines.p.source.streams.0.pagination", "first", "Pagination", 0, 1_000_000),
        row("pipelines.p.source.streams.0.pagination", "page_size", "Pagination", 1, 100_000),
        row("pipelines.p.source.streams.1.pagination", "page_size", "Pagination", 1, 100_000),
        row("pipelines.p.sink.streams.items", "batch", "RestSinkStream", 1, 10_000),
        row("pipelines.p.sink.streams.items", "concurrency", "RestSinkStream", 1, 256),
        row("pipelines.g.source.stream_options.issues", "per_page", "StreamSettings", 1, 100),
        row("pipelines.g.source.stream_options.issues", "max_pages", "StreamSettings", 1, 1_000_000),
        row("pipelines.g.source.app", "app_id", "AppConfig", 1, 9_007_199_254_740_991),
        row("pipelines.g.source.app", "installation_id", "AppConfig", 1, 9_007_199_254_740_991),
        row("pipelines.pg.source", "page_size", "Source", 1, 100_000),
        row("pipelines.pg.source", "lookback_secs", "Source", 0, 31_536_000),
        row("pipelines.s.sink", "key_life_secs", "Sink", 0, 86_400),
        row("pipelines.h.source", "search_rate", "Source", 1, 100),
        row("pipelines.h.sink.associate", "type_id", "Associate", 1, 1_000_000),
    ]
}

/// The table at a dotted path (`streams.0` is an array item).
fn table_at<'a>(root: &'a mut toml::Table, path: &str) -> &'a mut toml::Table {
    let mut t = root;
    let mut segs = path.split('.').peekable();
    while let Some(seg) = segs.next() {
        let v = t.entry(seg).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let v = match segs.peek().and_then(|s| s.parse::<usize>().ok()) {
            Some(i) => {
                segs.next();
                &mut v.as_array_mut().unwrap()[i]
            }
            None => v,
        };
        t = v.as_table_mut().unwrap_or_else(|| panic!("`{seg}` in {path} is not a table"));
    }
    t
}

/// The config text with `values` set in `table`.
fn with_values(table: &str, values: &[(&str, toml::Value)]) -> String {
    let mut root: toml::Table = BASE.parse().unwrap();
    let t = table_at(&mut root, table);
    for (k, v) in values {
        t.insert((*k).to_owned(), v.clone());
    }
    toml::to_string(&root).unwrap()
}

fn try_load(text: &str) -> Result<Project, Error> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dovetail.toml");
    std::fs::write(&path, text).unwrap();
    load_with(&path, &ProcessEnv).map_err(|e| {
        let label = path.display().to_string();
        let msg = e.message().strip_prefix(&label).map(str::to_owned).unwrap_or_else(|| e.message().to_owned());
        Error::new(e.kind().clone(), msg)
    })
}

/// The 1-based line of `key = ` in `text`, within the table `table` (its header or inline).
fn line_of(text: &str, key: &str) -> usize {
    let needle = format!("{key} = ");
    let hits: Vec<usize> = text.lines().enumerate().filter(|(_, l)| l.contains(&needle)).map(|(i, _)| i + 1).collect();
    assert!(!hits.is_empty(), "`{key}` not in\n{text}");
    hits[0]
}

fn check_rejected(r: &Row, value: toml::Value, shown: &str) {
    let mut values = vec![(r.key, value)];
    values.extend(r.with.map(|(k, v)| (k, toml::Value::Integer(v))));
    let text = with_values(r.table, &values);
    let e = match try_load(&text) {
        Ok(_) => panic!("`{}` in [{}] = {shown} was accepted:\n{text}", r.key, r.table),
        Err(e) => e,
    };
    assert_eq!(*e.kind(), dovetail_core::ErrorKind::Config, "{}", e.message());
    let msg = e.message();
    let line = line_of(&text, r.key);
    let want_range = format!("between {} and {}", r.min, r.max);
    assert!(msg.starts_with(&format!(":{line}:")), "`{}` = {shown}: no line {line} in `{msg}`\n{text}", r.key);
    assert!(msg.contains(&format!("`{}`", r.key)), "`{}` = {shown}: key not named in `{msg}`", r.key);
    assert!(msg.contains(&want_range) && msg.contains(shown), "`{}` = {shown}: no range in `{msg}`", r.key);
}

#[test]
fn every_numeric_key_is_range_checked_at_load() {
    for r in rows() {
        check_rejected(&r, toml::Value::Integer(r.min - 1), &(r.min - 1).to_string());
        check_rejected(&r, toml::Value::Integer(r.max + 1), &(r.max + 1).to_string());
        for ok in [r.min, r.max] {
            let mut values = vec![(r.key, toml::Value::Integer(ok))];
            values.extend(r.with.map(|(k, v)| (k, toml::Value::Integer(v))));
            let text = with_values(r.table, &values);
            if let Err(e) = try_load(&text) {
                panic!("`{}` = {ok} in [{}] refused: {}", r.key, r.table, e.message());
            }
        }
    }
}

#[test]
fn the_dead_letter_ratio_is_a_share() {
    for bad in [-0.1, 1.5] {
        let text = with_values("pipelines.p", &[("max_dead_letter_ratio", toml::Value::Float(bad))]);
        let msg = try_load(&text).err().expect("ratio accepted").message().to_owned();
        assert!(msg.contains("`max_dead_letter_ratio`") && msg.contains("between 0.0 and 1.0"), "{msg}");
    }
    let text = with_values("pipelines.p", &[("max_dead_letter_ratio", toml::Value::Float(1.0))]);
    assert!(try_load(&text).is_ok());
}

/// Published (minimum, maximum) by (schema definition, property).
type Ranges = BTreeMap<(String, String), (Option<f64>, Option<f64>)>;

/// Every integer or number property of the config schema, with its published bounds.
fn schema_ranges() -> Ranges {
    fn walk(def: &str, node: &serde_json::Value, out: &mut Ranges) {
        match node {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::Object(props)) = m.get("properties") {
                    for (name, p) in props {
                        let ty = p.get("type").map(|t| t.to_string()).unwrap_or_default();
                        if ty.contains("integer") || ty.contains("number") {
                            let bound = |k: &str| p.get(k).and_then(serde_json::Value::as_f64);
                            out.insert((def.to_owned(), name.clone()), (bound("minimum"), bound("maximum")));
                        }
                    }
                }
                for (k, v) in m {
                    if k != "$defs" {
                        walk(def, v, out);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(def, v, out)),
            _ => {}
        }
    }
    let schema = schema();
    let mut out = BTreeMap::new();
    for (name, def) in schema["$defs"].as_object().unwrap() {
        walk(name, def, &mut out);
    }
    walk("Config", &schema, &mut out);
    out
}

#[test]
fn the_schema_publishes_every_range_and_the_table_covers_every_key() {
    let published = schema_ranges();
    let mut covered = BTreeSet::new();
    for r in rows() {
        let k = (r.def.to_owned(), r.key.to_owned());
        let got = published.get(&k).unwrap_or_else(|| panic!("{k:?} not in the schema"));
        assert_eq!(*got, (Some(r.min as f64), Some(r.max as f64)), "{k:?}");
        covered.insert(k);
    }
    covered.insert(("PipelineConfig".into(), "max_dead_letter_ratio".into()));
    assert_eq!(published[&("PipelineConfig".into(), "max_dead_letter_ratio".into())], (Some(0.0), Some(1.0)));
    let missing: Vec<_> = published.keys().filter(|k| !covered.contains(*k)).collect();
    assert!(missing.is_empty(), "numeric keys without a row (and so maybe without a range): {missing:?}");
}

#[test]
fn urls_must_be_http_or_https() {
    let cases = [
        ("pipelines.p.source", "base_url", "ftp://api.example.com"),
        ("pipelines.p.sink", "base_url", "file:///etc"),
        ("pipelines.p.source.http", "base_url", "ftp://api.example.com"),
        ("pipelines.p.sink", "check_path", "ftp://crm.example.com/health"),
    ];
    for (table, key, url) in cases {
        let text = with_values(table, &[(key, toml::Value::String(url.into()))]);
        let msg = try_load(&text).err().unwrap_or_else(|| panic!("{key} = {url} accepted")).message().to_owned();
        assert!(msg.contains(&format!("`{key}`")), "{msg}");
        assert!(msg.contains("use http:// or https://") || msg.contains("only to https://crm.example.com"), "{msg}");
    }
    let mut root: toml::Table = BASE.parse().unwrap();
    let auth = table_at(&mut root, SOURCE).get_mut("auth").unwrap().as_table_mut().unwrap();
    auth.insert("token_url".into(), toml::Value::String("ftp://api.example.com/token".into()));
    let msg = try_load(&toml::to_string(&root).unwrap()).err().expect("ftp token_url accepted").message().to_owned();
    assert!(msg.contains("scheme `ftp` is not allowed") && msg.contains("`token_url`"), "{msg}");
    assert!(msg.starts_with(&format!(":{}:", line_of(&toml::to_string(&root).unwrap(), "token_url"))), "{msg}");
    // A check path on the sink's origin, relative or absolute, is fine.
    for ok in ["/health", "https://crm.example.com/health"] {
        let text = with_values("pipelines.p.sink", &[("check_path", toml::Value::String(ok.into()))]);
        assert!(try_load(&text).is_ok(), "{ok}");
    }
}

fn doc(rel: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_docs_give_every_range() {
    let docs = [
        "config.md",
        "http.md",
        "alerts.md",
        "connectors/rest.md",
        "connectors/github.md",
        "connectors/stripe.md",
        "connectors/hubspot.md",
    ]
    .map(doc)
    .join("\n");
    for r in rows() {
        let range = format!("{}–{}", r.min, r.max);
        let named = |l: &&str| l.contains(&format!("`{}`", r.key)) || l.contains(&format!("`streams.NAME.{}`", r.key));
        assert!(
            docs.lines().filter(named).any(|l| l.contains(&range)),
            "no docs table row names `{}` with its range {range}",
            r.key
        );
    }
}

#[test]
fn the_docs_give_the_explain_default_the_code_uses() {
    let default = serde_json::to_value(dovetail_core::explain::ExplainCapture::default()).unwrap();
    let row =
        doc("config.md").lines().find(|l| l.starts_with("| `explain` |")).map(str::to_owned).expect("explain row");
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    assert_eq!(cells[3], format!("`{default}`"), "{row}");
}
