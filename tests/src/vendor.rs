//! Pipelines against the fake vendor (`dovetail-fake-vendor`): a config builder for a
//! REST → SQLite pipeline, runs of the binary that keep the test's runtime free (so an
//! in-process vendor keeps serving), and readers of what the vendor and the sink hold.

use std::process::{Command, Output};

use serde_json::Value;

use crate::Scratch;

/// HTTP settings for tests: small backoffs and a short retry budget, five attempts.
pub const FAST_HTTP: &str = "{ retry = { base_delay_ms = 5, max_delay_ms = 50, max_elapsed_ms = 5000 } }";

/// One `[[pipelines.P.source.streams]]` entry of the REST source.
#[derive(Debug, Clone)]
pub struct RestStream {
    /// Stream name (= the SQLite table).
    pub name: String,
    lines: Vec<String>,
}

impl RestStream {
    /// A stream `name` at `path` with primary key `id` and nothing else.
    pub fn new(name: &str, path: &str) -> Self {
        RestStream {
            name: name.to_owned(),
            lines: vec![format!("name = {name:?}"), format!("path = {path:?}"), "primary_key = [\"id\"]".into()],
        }
    }

    /// `items`: the vendor's cursor listing `/v1/items?limit=N`, records at `/data`.
    pub fn items_cursor(limit: u32) -> Self {
        RestStream::new("items", "/v1/items")
            .line(&format!("query = {{ limit = \"{limit}\" }}"))
            .line("records = \"/data\"")
            .line("pagination = { type = \"cursor\", pointer = \"/meta/next_cursor\", param = \"cursor\" }")
    }

    /// `items`: the vendor's page-number listing `/v1/items/paged?per_page=N&page=1..`.
    pub fn items_paged(per_page: u32) -> Self {
        RestStream::new("items", "/v1/items/paged")
            .line(&format!("query = {{ per_page = \"{per_page}\" }}"))
            .line("records = \"/data\"")
            .line(&format!("pagination = {{ type = \"page_number\", param = \"page\", page_size = {per_page} }}"))
    }

    /// `comments`: a child of `items`, `/v1/items/{parent.id}/comments?limit=N`, with `item_id` copied.
    pub fn comments(limit: u32) -> Self {
        RestStream::new("comments", "/v1/items/{parent.id}/comments")
            .line(&format!("query = {{ limit = \"{limit}\" }}"))
            .line("records = \"/data\"")
            .line("pagination = { type = \"cursor\", pointer = \"/meta/next_cursor\", param = \"cursor\" }")
            .line("parent = { stream = \"items\", fields = { item_id = \"id\" } }")
    }

    /// Incremental by `updated_at`, sent as `updated_since` (inclusive), from 2000-01-01.
    pub fn incremental(self) -> Self {
        self.line(
            "incremental = { cursor_field = \"updated_at\", param = \"updated_since\", initial = \"2000-01-01T00:00:00Z\" }",
        )
    }

    /// Adds one raw `key = value` line.
    pub fn line(mut self, raw: &str) -> Self {
        self.lines.push(raw.to_owned());
        self
    }
}

/// A REST-source → SQLite-sink pipeline (`out.db`, one table per stream) against `base_url`.
#[derive(Debug, Clone)]
pub struct RestPipeline {
    /// Pipeline name.
    pub name: String,
    base_url: String,
    auth: Option<String>,
    http: String,
    streams: Vec<RestStream>,
    options: Vec<(String, String)>,
    pipeline_lines: Vec<String>,
}

impl RestPipeline {
    /// Pipeline `vendor` on `base_url`, with [`FAST_HTTP`] and no streams yet.
    pub fn new(base_url: &str) -> Self {
        RestPipeline {
            name: "vendor".into(),
            base_url: base_url.to_owned(),
            auth: None,
            http: FAST_HTTP.into(),
            streams: Vec::new(),
            options: Vec::new(),
            pipeline_lines: Vec::new(),
        }
    }

    /// The source's `auth`, as an inline TOML table.
    pub fn auth(mut self, inline: &str) -> Self {
        self.auth = Some(inline.to_owned());
        self
    }

    /// The source's `http`, as an inline TOML table (replaces [`FAST_HTTP`]).
    pub fn http(mut self, inline: &str) -> Self {
        self.http = inline.to_owned();
        self
    }

    /// Adds a source stream.
    pub fn stream(mut self, s: RestStream) -> Self {
        self.streams.push(s);
        self
    }

    /// Adds a raw line to `[pipelines.P.streams.STREAM]` (engine options such as `on_unavailable`).
    pub fn option(mut self, stream: &str, raw: &str) -> Self {
        self.options.push((stream.to_owned(), raw.to_owned()));
        self
    }

    /// Adds a raw line to `[pipelines.P]` (e.g. `batch_size = 100`).
    pub fn pipeline_line(mut self, raw: &str) -> Self {
        self.pipeline_lines.push(raw.to_owned());
        self
    }

    /// The whole `dovetail.toml`.
    pub fn toml(&self) -> String {
        let p = &self.name;
        let mut t = format!("[pipelines.{p}]\n");
        for l in &self.pipeline_lines {
            t.push_str(&format!("{l}\n"));
        }
        t.push_str(&format!("\n[pipelines.{p}.source]\nkind = \"rest\"\nbase_url = {:?}\n", self.base_url));
        if let Some(a) = &self.auth {
            t.push_str(&format!("auth = {a}\n"));
        }
        t.push_str(&format!("http = {}\n", self.http));
        for s in &self.streams {
            t.push_str(&format!("\n[[pipelines.{p}.source.streams]]\n"));
            for l in &s.lines {
                t.push_str(&format!("{l}\n"));
            }
        }
        t.push_str(&format!("\n[pipelines.{p}.sink]\nkind = \"sqlite\"\npath = \"out.db\"\n"));
        let mut names: Vec<&str> = self.options.iter().map(|(s, _)| s.as_str()).collect();
        names.dedup();
        for name in names {
            t.push_str(&format!("\n[pipelines.{p}.streams.{name}]\n"));
            for (_, l) in self.options.iter().filter(|(s, _)| s == name) {
                t.push_str(&format!("{l}\n"));
            }
        }
        t
    }

    /// Writes the config as `dovetail.toml` into `scratch`.
    pub fn write_to(&self, scratch: &Scratch) {
        scratch.write("dovetail.toml", &self.toml());
    }
}

/// Runs a command to completion on a blocking thread, so the calling runtime keeps serving.
pub async fn output_async(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("run dovetail")).await.expect("join the dovetail run")
}

impl Scratch {
    /// [`Scratch::run`] on a blocking thread.
    pub async fn run_async(&self, args: &[&str]) -> Output {
        output_async(self.cmd(args)).await
    }

    /// [`Scratch::run_json`] on a blocking thread: `dovetail run --json EXTRA...` and its report.
    pub async fn run_json_async(&self, extra: &[&str]) -> (Output, Value) {
        let mut args = vec!["run", "--json"];
        args.extend_from_slice(extra);
        let out = self.run_async(&args).await;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let report = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!("stdout is not a JSON report ({e}):\n{text}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr))
        });
        (out, report)
    }
}

/// A counter of one stream in a run report (`report.streams.STREAM.FIELD`), 0 when absent.
pub fn count(report: &Value, stream: &str, field: &str) -> u64 {
    report["streams"][stream][field].as_u64().unwrap_or(0)
}

/// Every record of a fault-free vendor's cursor listing at `base_url` (1000 per page), in listing order.
pub async fn fetch_all_items(base_url: &str) -> Vec<Value> {
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut req = client.get(format!("{base_url}/v1/items")).query(&[("limit", "1000")]);
        if let Some(c) = &cursor {
            req = req.query(&[("cursor", c.as_str())]);
        }
        let page: Value =
            req.send().await.expect("GET /v1/items").error_for_status().expect("200").json().await.unwrap();
        out.extend(page["data"].as_array().expect("data array").iter().cloned());
        match page["meta"]["next_cursor"].as_str() {
            Some(c) if !c.is_empty() => cursor = Some(c.to_owned()),
            _ => return out,
        }
    }
}

/// `(id, name, big)` of every row of `table` in `out.db`, by id; `big` as its exact digits.
pub fn sink_items(scratch: &Scratch, table: &str) -> Vec<(u64, String, String)> {
    let db = scratch.db("out.db");
    let mut stmt = db
        .prepare(&format!("SELECT id, name, CAST(big AS TEXT) FROM \"{table}\" ORDER BY id"))
        .expect("query the sink table");
    stmt.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
        .expect("rows")
        .map(|r| r.expect("row"))
        .collect()
}

/// `(id, name, big)` of vendor records, by id, in the form [`sink_items`] returns.
pub fn expected_items(records: &[Value]) -> Vec<(u64, String, String)> {
    let mut v: Vec<(u64, String, String)> = records
        .iter()
        .map(|r| (r["id"].as_u64().unwrap(), r["name"].as_str().unwrap().to_owned(), r["big"].to_string()))
        .collect();
    v.sort();
    v
}

/// Rows of `table` in `out.db`.
pub fn row_count(scratch: &Scratch, table: &str) -> u64 {
    scratch.db("out.db").query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| r.get::<_, i64>(0)).unwrap()
        as u64
}
