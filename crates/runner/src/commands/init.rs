//! `dovetail init`: a commented starter config, the JSON Schema editors validate it with
//! (`#:schema` line, Taplo and Tombi read it), and for a files source a small sample file, so
//! `dovetail check`, `preview` and `run` work at once, offline.

use std::io::Write;
use std::path::Path;

use dovetail_core::Error;

use crate::cli::{InitArgs, InitSink, InitSource};
use crate::output;

/// Where the schema goes, relative to the config's folder (beside the default state file).
pub const SCHEMA_FILE: &str = ".dovetail/config.schema.json";
/// The sample data a files source reads, relative to the config's folder.
const SAMPLE_FILE: &str = "data/items.jsonl";
const SAMPLE: &str = r#"{"id": 1, "name": "Ada", "city": "London", "updated_at": "2026-01-05T09:00:00Z"}
{"id": 2, "name": "Grace", "city": "New York", "updated_at": "2026-01-06T10:30:00Z"}
{"id": 3, "name": "Edsger", "city": "Eindhoven", "updated_at": "2026-01-07T08:15:00Z"}
"#;

/// Write the starter config at `config_path` (refused when it exists), its schema and sample data.
pub fn run(config_path: &Path, args: &InitArgs) -> anyhow::Result<i32> {
    let dir = config_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let text = starter(args.source, args.sink);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(e, format!("cannot create `{}`", dir.display()), dir))?;
    // `create_new`: a config that exists is never overwritten, even by a race.
    let mut file = match std::fs::OpenOptions::new().write(true).create_new(true).open(config_path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::config(format!(
                "`{}` already exists; `dovetail init` does not overwrite it",
                config_path.display()
            ))
            .with_hint("edit it, or pass `--config OTHER.toml` to write a new one elsewhere")
            .into());
        }
        Err(e) => return Err(Error::io(e, format!("cannot create `{}`", config_path.display()), config_path).into()),
    };
    file.write_all(text.as_bytes())
        .map_err(|e| Error::io(e, format!("cannot write `{}`", config_path.display()), config_path))?;
    let schema = serde_json::to_string_pretty(&crate::config::schema())?;
    write(&dir.join(SCHEMA_FILE), &format!("{schema}\n"), true)?;
    // `./x` reads as `x`.
    let shown = |p: &Path| p.strip_prefix(".").unwrap_or(p).display().to_string();
    let mut wrote = vec![shown(config_path), shown(&dir.join(SCHEMA_FILE))];
    if args.source == InitSource::Files && write(&dir.join(SAMPLE_FILE), SAMPLE, false)? {
        wrote.push(shown(&dir.join(SAMPLE_FILE)));
    }
    let config = config_path.display();
    let flag = if config_path == Path::new("dovetail.toml") { String::new() } else { format!(" --config {config}") };
    let first = match args.source {
        InitSource::Files => String::new(),
        InitSource::Rest => format!("  edit `base_url` and the stream in {config}, then\n"),
        InitSource::Github => format!("  set GITHUB_TOKEN and `owner` in {config}, then\n"),
    };
    output::out(&format!(
        "wrote {}\nnext:\n{first}  dovetail check{flag}\n  dovetail preview{flag} example {}\n  dovetail run{flag}\n",
        wrote.join(", "),
        stream_of(args.source)
    ))?;
    Ok(0)
}

/// Write `text` at `path` (folders created); an existing file is kept unless `replace`.
/// True when the file was written.
fn write(path: &Path, text: &str, replace: bool) -> Result<bool, Error> {
    if !replace && path.exists() {
        return Ok(false);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(e, format!("cannot create `{}`", parent.display()), parent))?;
    }
    std::fs::write(path, text).map_err(|e| Error::io(e, format!("cannot write `{}`", path.display()), path))?;
    Ok(true)
}

/// The stream the starter config names.
fn stream_of(source: InitSource) -> &'static str {
    match source {
        InitSource::Github => "issues",
        InitSource::Files | InitSource::Rest => "items",
    }
}

/// The starter config for a source and a sink.
pub fn starter(source_kind: InitSource, sink: InitSink) -> String {
    let source = match source_kind {
        InitSource::Files => FILES_SOURCE,
        InitSource::Rest => REST_SOURCE,
        InitSource::Github => GITHUB_SOURCE,
    };
    let sink = match sink {
        InitSink::Sqlite => SQLITE_SINK,
        InitSink::Jsonl => JSONL_SINK,
    };
    let stream = stream_of(source_kind);
    format!("{HEADER}{source}{sink}{STREAMS}").replace("{stream}", stream)
}

const HEADER: &str = r#"#:schema ./.dovetail/config.schema.json
# dovetail config, written by `dovetail init`. Every key is in docs/config.md; editors that
# read the `#:schema` line above (Taplo, Tombi) complete and check keys as you type.
#
#   dovetail check                    validate this file and probe the source and sink
#   dovetail preview example {stream}    one page: raw records, mapped records, inferred schema
#   dovetail run --limit 10           deliver the first 10 records (the pass is not completed)
#   dovetail run                      deliver everything; a rerun writes only what changed
#   dovetail status                   what the runs did
#
# Relative paths are relative to this file's folder.

[state]
# Checkpoints, the idempotency ledger, dead letters and run history (this is the default).
# url = ".dovetail/state.db"

[pipelines.example]
# Records per page and per sink transaction.
# batch_size = 1000
# Fail the run when more than this share of the records read is dead-lettered.
# max_dead_letter_ratio = 0.2

"#;

const FILES_SOURCE: &str = r#"[pipelines.example.source]
kind = "files"

[[pipelines.example.source.streams]]
name = "items"
path = "data/items.jsonl"        # a sample written by `dovetail init`; CSV works too
primary_key = ["id"]
cursor_field = "updated_at"      # incremental: the next run reads only what is newer

"#;

const REST_SOURCE: &str = r#"[pipelines.example.source]
kind = "rest"
base_url = "https://api.example.com"
# Secrets come from the environment or a file, never the config itself:
# auth = { type = "bearer", token = "${API_TOKEN}" }

[[pipelines.example.source.streams]]
name = "items"
path = "/v1/items"
records = "/data"                # JSON pointer to the array of records in each response
primary_key = ["id"]
query = { per_page = 100 }
pagination = { type = "link_header" }   # or cursor, next_url, page_number, offset
# incremental = { cursor_field = "updated_at", param = "updated_since" }

"#;

const GITHUB_SOURCE: &str = r#"[pipelines.example.source]
kind = "github"
token = "${GITHUB_TOKEN}"        # read from the environment when the config loads
owner = "octocat"
repositories = ["hello-world"]
streams = ["issues"]
# start_date = "2026-01-01T00:00:00Z"

"#;

const SQLITE_SINK: &str = r#"[pipelines.example.sink]
kind = "sqlite"
path = "out/example.db"          # one table per stream, created from the records

"#;

const JSONL_SINK: &str = r#"[pipelines.example.sink]
kind = "jsonl"
dir = "out"                      # one `<stream>.jsonl` per stream, appended to

"#;

const STREAMS: &str = r#"# Per-stream settings: sync mode, deletes, mapping.
[pipelines.example.streams.{stream}]
# sync_mode = "full_refresh"     # with delete = "delete", rows gone from the source go
# delete = "delete"

[pipelines.example.streams.{stream}.mapping]
# columns = { city = "address.city" }   # nested path → column
# rename = { name = "full_name" }
# cast = { id = "integer" }
constant = { source_system = "example" }
"#;
