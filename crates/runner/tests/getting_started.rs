//! The first hour through the binary: `init` in an empty folder, then `check`, `preview`,
//! `run --limit` and `run`; what `run` and `check` say with no config; config errors in
//! words a person understands; completions and the man page.

use std::path::Path;

mod common;

use common::{dovetail, text};

fn json_report(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{}", text(&out.stdout), text(&out.stderr)))
}

#[test]
fn init_writes_a_config_that_checks_previews_and_runs_offline() {
    let dir = tempfile::tempdir().unwrap();
    let out = dovetail(dir.path(), &["init"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("dovetail preview example items"), "{}", text(&out.stdout));
    let config = std::fs::read_to_string(dir.path().join("dovetail.toml")).unwrap();
    insta::assert_snapshot!("init_files_sqlite", config);

    // The `#:schema` line points at the schema `config-schema` prints.
    let first = config.lines().next().unwrap();
    let schema_path = dir.path().join(first.strip_prefix("#:schema ").unwrap());
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(schema_path).unwrap()).unwrap();
    let printed: serde_json::Value =
        serde_json::from_slice(&dovetail(Path::new("/"), &["config-schema"]).stdout).unwrap();
    assert_eq!(written, printed);

    let out = dovetail(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("pipeline `example`: OK"), "{}", text(&out.stdout));
    assert!(!text(&out.stderr).contains("migration"), "no migration noise: {}", text(&out.stderr));

    let out = dovetail(dir.path(), &["-q", "run", "--limit", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("stopped at --limit 1: `items` not read to the end (no cursor moved, nothing deleted); `dovetail run example` completes the pass without writing those records again"),
        "{said}"
    );
    let out = dovetail(dir.path(), &["-q", "run", "--json", "--limit", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let items = &json_report(&out)["streams"]["items"];
    let counts = (items["read"].as_u64(), items["written"].as_u64(), items["skipped_unchanged"].as_u64());
    assert_eq!(counts, (Some(2), Some(1), Some(1)), "{items}");
    assert_eq!(items["limited"], true, "{items}");
    let out = dovetail(dir.path(), &["-q", "run", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let items = &json_report(&out)["streams"]["items"];
    assert_eq!(items["written"].as_u64(), Some(1), "the rest of the pass: {items}");
    assert!(items.get("limited").is_none(), "{items}");
    let rows = rusqlite::Connection::open(dir.path().join("out/example.db"))
        .unwrap()
        .query_row("SELECT count(*), min(source_system) FROM items", [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .unwrap();
    assert_eq!(rows, (3, "example".to_owned()));
}

#[test]
fn init_never_overwrites_a_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dovetail.toml"), "# mine\n").unwrap();
    let out = dovetail(dir.path(), &["init", "--source", "rest"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("`dovetail.toml` already exists"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(dir.path().join("dovetail.toml")).unwrap(), "# mine\n");
    assert!(!dir.path().join(".dovetail").exists());
}

/// Every starter loads: the unknown stream is the only complaint (nothing is contacted).
#[test]
fn every_starter_config_loads() {
    for (source, sink, stream) in
        [("rest", "sqlite", "items"), ("github", "jsonl", "issues"), ("files", "jsonl", "items")]
    {
        let dir = tempfile::tempdir().unwrap();
        let out = dovetail(dir.path(), &["init", "--source", source, "--sink", sink, "--config", "sub/d.toml"]);
        assert_eq!(out.status.code(), Some(0), "{source}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains(&format!("preview --config sub/d.toml example {stream}")));
        assert!(dir.path().join("sub/.dovetail/config.schema.json").exists());
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dovetail"))
            .current_dir(dir.path())
            .args(["-c", "sub/d.toml", "run", "--stream", "nope"])
            .env("GITHUB_TOKEN", "t")
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("no stream `nope` in the selected pipelines; (streams: `{stream}`)")),
            "{source}: {err}"
        );
        // The commented-out lines are valid too once uncommented.
        let path = dir.path().join("sub/d.toml");
        let mut config = std::fs::read_to_string(&path).unwrap();
        for key in [
            "auth",
            "incremental",
            "batch_size",
            "max_dead",
            "sync_mode",
            "delete",
            "columns",
            "rename",
            "cast",
            "url",
            "start_date",
        ] {
            config = config.replace(&format!("\n# {key}"), &format!("\n{key}"));
        }
        std::fs::write(&path, config).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dovetail"))
            .current_dir(dir.path())
            .args(["-c", "sub/d.toml", "run", "--stream", "nope"])
            .env("GITHUB_TOKEN", "t")
            .env("API_TOKEN", "t")
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert!(err.contains("no stream `nope` in the selected pipelines"), "{source} uncommented: {err}");
    }
}

#[test]
fn without_a_config_run_and_check_point_at_init() {
    let dir = tempfile::tempdir().unwrap();
    for verb in ["run", "check"] {
        let out = dovetail(dir.path(), &[verb]);
        assert_eq!(out.status.code(), Some(3));
        let err = text(&out.stderr);
        assert!(err.contains("cannot read config file `dovetail.toml`"), "{err}");
        assert!(err.contains("what to do: `dovetail init` writes a commented starter config there"), "{err}");
    }
    let out = dovetail(dir.path(), &["check", "-c", "x.toml"]);
    assert!(text(&out.stderr).contains("what to do: `dovetail init --config x.toml` writes"), "{}", text(&out.stderr));
}

#[test]
fn preview_prints_raw_mapped_and_schema_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    assert!(dovetail(dir.path(), &["init"]).status.success());
    let out = dovetail(dir.path(), &["preview", "example", "items", "--limit", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    insta::assert_snapshot!("preview_items", text(&out.stdout));
    assert!(!dir.path().join(".dovetail/state.db").exists(), "no state database");
    assert!(!dir.path().join("out").exists(), "no sink");
    assert_eq!(text(&out.stderr), "", "no migration or other log noise");

    let out = dovetail(dir.path(), &["preview", "example", "itemz"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("no stream `itemz` in pipeline `example`; did you mean `items`?"));
}

const REST: &str = r#"[pipelines.api.source]
kind = "rest"
base_url = "BASE"

[[pipelines.api.source.streams]]
name = "items"
path = "/items"
primary_key = ["id"]
PAGINATION
query = { per_page = 100, archived = false, q = "x" }

[pipelines.api.sink]
kind = "jsonl"
dir = "out"
"#;

#[test]
fn a_bare_pagination_string_says_which_table_to_write() {
    let dir = tempfile::tempdir().unwrap();
    let config = REST.replace("BASE", "http://127.0.0.1:9").replace("PAGINATION", r#"pagination = "link_header""#);
    std::fs::write(dir.path().join("dovetail.toml"), config).unwrap();
    let out = dovetail(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(
        err.contains(r#"dovetail.toml:9: `pagination` is a table: write `pagination = { type = "link_header" }`"#),
        "{err}"
    );
    assert!(!err.contains("internally tagged"), "{err}");
}

/// `query = { per_page = 100 }` is sent as `per_page=100`; preview fetches one page of a REST
/// stream and creates no state.
#[tokio::test]
async fn query_numbers_and_booleans_are_sent_as_written() {
    use wiremock::matchers::{method, path, query_param};
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(method("GET"))
        .and(path("/items"))
        .and(query_param("per_page", "100"))
        .and(query_param("archived", "false"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!([{"id": 1}, {"id": 2}])))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = REST.replace("BASE", &server.uri()).replace("PAGINATION", "");
    std::fs::write(dir.path().join("dovetail.toml"), config).unwrap();
    let d = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || dovetail(&d, &["preview", "api", "items"])).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("preview of `api` / `items`: 2 records. Nothing was written."));
    assert!(!dir.path().join(".dovetail").exists() && !dir.path().join("out").exists());
}

#[test]
fn check_reports_the_errors_of_every_pipeline_in_one_go() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"[pipelines.a.source]
kind = "files"
streams = [{ name = "s", path = "a.jsonl", primary_key = ["id"], folow = true }]
[pipelines.a.sink]
kind = "jsonl"
dir = "out"

[pipelines.b.source]
kind = "files"
streams = [{ name = "s", path = "b.jsonl", primary_key = ["id"] }]
[pipelines.b.sink]
kind = "sqlit"
path = "out/b.db"

[pipelines.c.source]
kind = "files"
streams = [{ name = "s", path = "c.jsonl", primary_key = ["id"] }]
[pipelines.c.sink]
kind = "jsonl"
dir = "out"
"#;
    std::fs::write(dir.path().join("dovetail.toml"), config).unwrap();
    std::fs::write(dir.path().join("c.jsonl"), "{\"id\": 1}\n").unwrap();
    let out = dovetail(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(3));
    let (err, said) = (text(&out.stderr), text(&out.stdout));
    assert!(err.contains("dovetail.toml:3: unknown field `folow`"), "{err}");
    assert!(err.contains("dovetail.toml:12:") && err.contains("`sqlit`"), "{err}");
    assert!(said.contains("config errors in 2 of 3 pipelines"), "{said}");
    assert!(said.contains("pipeline `a`: FAILED") && said.contains("pipeline `b`: FAILED"), "{said}");
    assert!(said.contains("pipeline `c`: OK"), "the good pipeline is still probed: {said}");
}

#[test]
fn completions_and_the_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let out = dovetail(Path::new("/"), &["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = text(&out.stdout);
        assert!(script.contains("dovetail") && script.contains("preview"), "{shell}: {script}");
    }
    let out = dovetail(Path::new("/"), &["man"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with(".ie"), "{}", &text(&out.stdout)[..80]);
}

/// `check --offline` validates every pipeline and contacts nothing: a missing data file and an
/// API nobody listens on pass, no sink file or folder appears; `check` probes them.
#[test]
fn check_offline_validates_without_contacting_anything() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[pipelines.files.source]\nkind = \"files\"\nstreams = [{{ name = \"s\", path = \"gone.jsonl\", primary_key = [\"id\"] }}]\n[pipelines.files.sink]\nkind = \"sqlite\"\npath = \"db/x.db\"\n",
        REST.replace("BASE", "http://127.0.0.1:9").replace("PAGINATION", "")
    );
    std::fs::write(dir.path().join("dovetail.toml"), config).unwrap();
    let out = dovetail(dir.path(), &["check", "--offline"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains("config OK (2 pipelines"), "{said}");
    assert!(said.contains("pipeline `api`: config OK (not probed: --offline)"), "{said}");
    assert!(said.contains("pipeline `files`: config OK (not probed: --offline)"), "{said}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["dovetail.toml"], "nothing created");
    let out = dovetail(dir.path(), &["check"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("pipeline `files`: FAILED"), "{}", text(&out.stdout));
}
