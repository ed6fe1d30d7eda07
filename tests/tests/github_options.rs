//! The GitHub source's per-stream settings (`stream_options`) and server-side lower bounds,
//! through `dovetail run` into SQLite, against GitHub-shaped exchanges built here (the
//! testkit's replay server matches method, path and query strictly).

use std::path::PathBuf;

use dovetail_e2e::vendor::count;
use dovetail_e2e::{Scratch, show};
use dovetail_testkit::{Fixture, FixtureServer};
use serde_json::{Value, json};

const TOKEN: &str = "ghp_e2e_fixture_token_not_real";

/// One object of a recorded fixture (`connectors/github/fixtures/NAME.json`), as a template.
fn template(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../connectors/github/fixtures/{name}.json"));
    let f: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f["exchanges"][0]["response"]["body"][0].clone()
}

/// An issue (or pull request) `id` updated at `updated_at`.
fn item(template: &Value, id: u64, updated_at: &str) -> Value {
    let mut v = template.clone();
    v["id"] = json!(id);
    v["number"] = json!(id);
    v["node_id"] = json!(format!("N_{id}"));
    v["updated_at"] = json!(updated_at);
    v
}

/// A `GET path?query` answered with `body`, and a Link header to `next` (a query) if given.
fn get(path: &str, query: &[(&str, &str)], body: Value, next: Option<&[(&str, &str)]>) -> Value {
    let qs = |q: &[(&str, &str)]| q.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let mut headers = json!({"content-type": "application/json; charset=utf-8"});
    if let Some(n) = next {
        headers["link"] = json!(format!("<{{{{base_url}}}}{path}?{}>; rel=\"next\"", qs(n)));
    }
    json!({
        "request": {"method": "GET", "path": path, "query": query, "headers": {"authorization": "[redacted]"}},
        "response": {"status": 200, "headers": headers, "body": body},
    })
}

async fn serve(exchanges: Vec<Value>) -> FixtureServer {
    let f: Fixture = serde_json::from_value(json!({"version": 1, "exchanges": exchanges})).unwrap();
    FixtureServer::start(f).await.unwrap()
}

/// A pipeline `gh` reading `stream` of `octo/hello` into `out.db`; `extra` goes into the
/// source block, `streams` is the engine's per-stream block.
fn config(base_url: &str, stream: &str, extra: &str, streams: &str) -> String {
    format!(
        r#"[pipelines.gh.source]
kind = "github"
token = "${{GH_TOKEN}}"
base_url = "{base_url}"
owner = "octo"
owner_type = "org"
repositories = ["hello"]
streams = ["{stream}"]
http = {{ retry = {{ max_attempts = 2, base_delay_ms = 1, max_delay_ms = 2 }} }}
{extra}

[pipelines.gh.sink]
kind = "sqlite"
path = "out.db"
{streams}
"#
    )
}

async fn run(s: &Scratch) -> (std::process::Output, Value) {
    let mut cmd = s.cmd(&["run", "--json"]);
    cmd.env("GH_TOKEN", TOKEN);
    let out = dovetail_e2e::vendor::output_async(cmd).await;
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    (out, report)
}

fn rows(s: &Scratch, table: &str) -> i64 {
    s.db("out.db").query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| r.get(0)).unwrap()
}

const ISSUES_Q: [(&str, &str); 5] =
    [("state", "open"), ("sort", "updated"), ("direction", "asc"), ("per_page", "2"), ("labels", "bug")];

/// `state`, `per_page` and `query` go out on the listing (the replay server refuses any
/// other query); a query parameter the source sets itself is a config error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_per_page_and_query_shape_the_listing() {
    let t = template("issues");
    let page2: Vec<(&str, &str)> = ISSUES_Q.iter().copied().chain([("page", "2")]).collect();
    let server = serve(vec![
        get(
            "/repos/octo/hello/issues",
            &ISSUES_Q,
            json!([item(&t, 1, "2024-01-01T00:00:00Z"), item(&t, 2, "2024-01-02T00:00:00Z")]),
            Some(&page2),
        ),
        get("/repos/octo/hello/issues", &page2, json!([item(&t, 3, "2024-01-03T00:00:00Z")]), None),
    ])
    .await;
    let s = Scratch::new();
    let opts =
        "[pipelines.gh.source.stream_options.issues]\nstate = \"open\"\nper_page = 2\nquery = { labels = \"bug\" }";
    s.write("dovetail.toml", &config(&server.base_url(), "issues", opts, ""));
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "issues", "written"), 3, "{report:#}");
    assert!(server.unmatched().is_empty(), "{:?}", server.unmatched());

    for (bad, names) in [
        ("query = { direction = \"desc\" }", "`stream_options.issues.query.direction`"),
        ("per_page = 500", "`per_page` in [pipelines.gh.source.stream_options.issues]"),
        ("max_pages = 0", "`max_pages` in [pipelines.gh.source.stream_options.issues]"),
    ] {
        s.write(
            "dovetail.toml",
            &config(&server.base_url(), "issues", &format!("{}\n{bad}", opts.lines().next().unwrap()), ""),
        );
        let out = s.cmd(&["check"]).env("GH_TOKEN", TOKEN).output().unwrap();
        assert_eq!(out.status.code(), Some(3), "{bad}: {}", show(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains(names), "{bad}: {}", show(&out));
    }
}

/// `max_pages` ends the run after that many pages without completing the pass: a full
/// refresh with `delete = "delete"` deletes nothing, and the next run continues the pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_pages_previews_without_completing_the_pass() {
    let t = template("issues");
    let q = |page: Option<&'static str>| {
        let mut q = vec![("state", "all"), ("sort", "updated"), ("direction", "asc"), ("per_page", "1")];
        q.extend(page.map(|p| ("page", p)));
        q
    };
    let server = serve(vec![
        get("/repos/octo/hello/issues", &q(None), json!([item(&t, 1, "2024-01-01T00:00:00Z")]), Some(&q(Some("2")))),
        get(
            "/repos/octo/hello/issues",
            &q(Some("2")),
            json!([item(&t, 2, "2024-01-02T00:00:00Z")]),
            Some(&q(Some("3"))),
        ),
        get("/repos/octo/hello/issues", &q(Some("3")), json!([item(&t, 3, "2024-01-03T00:00:00Z")]), None),
    ])
    .await;
    let s = Scratch::new();
    let full = "[pipelines.gh.streams.issues]\nsync_mode = \"full_refresh\"\ndelete = \"delete\"";
    let cfg = |max: &str| {
        let opts = format!("[pipelines.gh.source.stream_options.issues]\nper_page = 1\n{max}");
        config(&server.base_url(), "issues", &opts, full)
    };
    s.write("dovetail.toml", &cfg(""));
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "issues", "written"), 3, "{report:#}");

    // A preview of one page: succeeds, reads one page, deletes nothing.
    s.write("dovetail.toml", &cfg("max_pages = 1"));
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "issues", "read"), 1, "{report:#}");
    assert_eq!(count(&report, "issues", "deleted"), 0, "{report:#}");
    assert_eq!(rows(&s, "issues"), 3);
    assert_eq!(server.served(), [2, 1, 1]);
    // The next run continues the pass at page 2, two pages on: the end of the pass.
    s.write("dovetail.toml", &cfg("max_pages = 2"));
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "issues", "read"), 2, "{report:#}");
    assert_eq!(server.served(), [2, 2, 2]);
    assert_eq!(rows(&s, "issues"), 3);
    assert!(server.unmatched().is_empty(), "{:?}", server.unmatched());
}
