//! The GitHub source's per-stream settings (`stream_options`) and server-side lower bounds,
//! through `dovetail run` into SQLite, against GitHub-shaped exchanges built here (the
//! testkit's replay server matches method, path and query strictly).

use std::path::PathBuf;

use dovetail_e2e::github::{self, TOKEN, run};
use dovetail_e2e::vendor::count;
use dovetail_e2e::{Scratch, show};
use dovetail_testkit::{Fixture, FixtureServer};
use serde_json::{Value, json};

/// One object of a recorded fixture (`connectors/github/fixtures/NAME.json`), as a template.
fn template(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../connectors/github/fixtures/{name}.json"));
    let f: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let body = &f["exchanges"][0]["response"]["body"];
    body.get("workflow_runs").unwrap_or(body)[0].clone()
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

/// A pipeline `gh` reading `stream` of `octo/hello` into `out.db`; `extra` goes into the
/// source block, `streams` is the engine's per-stream block.
fn config(base_url: &str, stream: &str, extra: &str, streams: &str) -> String {
    github::config(base_url, stream, "max_attempts = 2, base_delay_ms = 1, max_delay_ms = 2", extra, streams)
}

async fn serve(exchanges: Vec<Value>) -> FixtureServer {
    let f: Fixture = serde_json::from_value(json!({"version": 1, "exchanges": exchanges})).unwrap();
    FixtureServer::start(f).await.unwrap()
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

const PULLS: &str = "/repos/octo/hello/pulls";

/// The pulls listing's query, newest first: `per_page`, then `page` when given.
fn pulls_q(per_page: &'static str, page: Option<&'static str>) -> Vec<(&'static str, &'static str)> {
    let mut q = vec![("state", "all"), ("sort", "updated"), ("direction", "desc"), ("per_page", per_page)];
    q.extend(page.map(|p| ("page", p)));
    q
}

/// `2024-01-01T00:00:00Z` plus `minutes`.
fn at(minutes: u64) -> String {
    let (d, h, m) = (1 + minutes / 1440, (minutes % 1440) / 60, minutes % 60);
    format!("2024-01-{d:02}T{h:02}:{m:02}:00Z")
}

/// The issue's measure: a rerun over a repository with 5,000 closed pull requests and 3
/// new ones asks for one page (≤ 2 requests), and writes the 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_over_5000_pull_requests_reads_only_the_newest_page() {
    let mut t = template("pull_requests");
    t["state"] = json!("closed");
    // Newest first: PR n was updated n minutes into 2024.
    let old: Vec<Value> = (1..=5000u64).rev().map(|n| item(&t, n, &at(n))).collect();
    let pages: Vec<String> = (1..=50).map(|p| p.to_string()).collect();
    let page_q = |p: usize| {
        let mut q = pulls_q("100", None);
        if p > 1 {
            q.push(("page", pages[p - 1].as_str()));
        }
        q
    };
    let mut exchanges: Vec<Value> = (1..=50)
        .map(|p| {
            let next = (p < 50).then(|| page_q(p + 1));
            get(PULLS, &page_q(p), json!(old[(p - 1) * 100..p * 100]), next.as_deref())
        })
        .collect();
    // The second run's first page: three new pull requests on top.
    let new: Vec<Value> = (5001..=5003u64).rev().map(|n| item(&template("pull_requests"), n, &at(n))).collect();
    let first: Vec<Value> = new.into_iter().chain(old[..97].iter().cloned()).collect();
    exchanges.push(get(PULLS, &page_q(1), json!(first), Some(&page_q(2))));
    let server = serve(exchanges).await;
    let s = Scratch::new();
    s.write("dovetail.toml", &config(&server.base_url(), "pull_requests", "", ""));
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "pull_requests", "written"), 5000);
    assert_eq!(report["http"]["source"]["requests"], 50, "{report:#}");

    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "pull_requests", "written"), 3, "{report:#}");
    let requests = report["http"]["source"]["requests"].as_u64().unwrap();
    assert!(requests <= 2, "{requests} requests for pulls on a rerun: {report:#}");
    assert_eq!(requests, 1, "{report:#}");
    assert_eq!(rows(&s, "pull_requests"), 5003);
    assert!(server.unmatched().is_empty(), "{:?}", server.unmatched());
}

/// Pull requests sharing the cursor's timestamp: a new one at exactly the stored cursor is
/// written (not lost), the ones already delivered at it are not read again as new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_requests_at_the_boundary_timestamp_are_neither_lost_nor_repeated() {
    let t = template("pull_requests");
    let (t1, t2) = (at(1), at(2));
    let server = serve(vec![
        get(PULLS, &pulls_q("100", None), json!([item(&t, 3, &t2), item(&t, 2, &t2), item(&t, 1, &t1)]), None),
        get(
            PULLS,
            &pulls_q("100", None),
            json!([item(&t, 4, &t2), item(&t, 3, &t2), item(&t, 2, &t2), item(&t, 1, &t1)]),
            None,
        ),
    ])
    .await;
    let s = Scratch::new();
    s.write("dovetail.toml", &config(&server.base_url(), "pull_requests", "", ""));
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "pull_requests", "written"), 3);
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "pull_requests", "written"), 1, "{report:#}");
    assert_eq!(count(&report, "pull_requests", "skipped_unchanged"), 0, "{report:#}");
    assert_eq!(rows(&s, "pull_requests"), 4);
    assert!(server.unmatched().is_empty(), "{:?}", server.unmatched());
}

/// A descent that stopped midway (here a page that keeps failing) starts over at the
/// newest page on the next run, which picks up what changed meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_descent_cut_short_restarts_at_the_newest_page() {
    let t = template("pull_requests");
    let page2 = pulls_q("2", Some("2"));
    let failing = |mut x: Value| {
        x["response"] = json!({"status": 500, "headers": {"content-type": "application/json"}, "body": {"message": "Server Error"}});
        x
    };
    let server = serve(vec![
        get(PULLS, &pulls_q("2", None), json!([item(&t, 3, &at(3)), item(&t, 2, &at(2))]), Some(&page2)),
        get(PULLS, &pulls_q("2", None), json!([item(&t, 4, &at(4)), item(&t, 3, &at(3))]), Some(&page2)),
        failing(get(PULLS, &page2, json!([]), None)),
        failing(get(PULLS, &page2, json!([]), None)),
        get(PULLS, &page2, json!([item(&t, 2, &at(2)), item(&t, 1, &at(1))]), None),
    ])
    .await;
    let s = Scratch::new();
    let opts = "[pipelines.gh.source.stream_options.pull_requests]\nper_page = 2";
    s.write("dovetail.toml", &config(&server.base_url(), "pull_requests", opts, ""));
    let (out, report) = run(&s).await;
    assert!(!out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "pull_requests", "written"), 2, "{report:#}");
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    // The newest page again (with PR 4 on top), then page 2.
    assert_eq!(server.served(), [1, 1, 1, 1, 1]);
    assert_eq!(count(&report, "pull_requests", "written"), 2, "{report:#}");
    assert_eq!(rows(&s, "pull_requests"), 4);
    assert!(server.unmatched().is_empty(), "{:?}", server.unmatched());
}

/// Workflow runs are bounded on the server by `created>=` the cursor less 30 days (runs can
/// be re-run for 30 days): `start_date` on the first run, the stored cursor after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_runs_are_bounded_by_created_30_days_before_the_cursor() {
    let t = template("workflow_runs");
    let runs = |ids: &[u64]| {
        let items: Vec<Value> = ids.iter().map(|id| item(&t, *id, "2024-02-10T00:00:00Z")).collect();
        json!({"total_count": items.len(), "workflow_runs": items})
    };
    let path = "/repos/octo/hello/actions/runs";
    let server = serve(vec![
        get(path, &[("per_page", "100"), ("created", ">=2024-01-02T00:00:00Z")], runs(&[7, 8]), None),
        get(path, &[("per_page", "100"), ("created", ">=2024-01-11T00:00:00Z")], runs(&[7, 8]), None),
    ])
    .await;
    let s = Scratch::new();
    s.write("dovetail.toml", &config(&server.base_url(), "workflow_runs", "start_date = \"2024-02-01T00:00:00Z\"", ""));
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "workflow_runs", "written"), 2, "{report:#}");
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "workflow_runs", "written"), 0, "{report:#}");
    assert_eq!(server.served(), [1, 1]);
    assert!(server.unmatched().is_empty(), "{:?}", server.unmatched());
}

/// What the source reads below `start_date` or the cursor is counted `filtered`, not
/// silently dropped: the pull requests the descent reads past its end, on the first run
/// (below `start_date`) and on a rerun (at and below the stored cursor).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_below_start_date_or_the_cursor_are_counted_filtered() {
    let t = template("pull_requests");
    let listing = json!([item(&t, 3, &at(3)), item(&t, 2, &at(2)), item(&t, 1, &at(1))]);
    let server = serve(vec![get(PULLS, &pulls_q("100", None), listing, None)]).await;
    let s = Scratch::new();
    let start = format!("start_date = \"{}\"", at(2));
    s.write("dovetail.toml", &config(&server.base_url(), "pull_requests", &start, ""));
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    let counts = |r: &Value| ["read", "written", "filtered"].map(|f| count(r, "pull_requests", f));
    assert_eq!(counts(&report), [3, 2, 1], "{report:#}");
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(counts(&report), [3, 0, 3], "{report:#}");
    assert!(server.unmatched().is_empty(), "{:?}", server.unmatched());
}
