//! Listings that point back at a page they already read stop with a Data error (exit 9)
//! naming the URL or cursor, read each record once, and remember their pages across runs:
//! GitHub `Link` headers on recorded fixtures (connectors/github/fixtures, replayed by the
//! testkit's server), REST cursors and page numbers on wiremock, all through `dovetail run`.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use dovetail_e2e::github::{self, TOKEN, fixture};
use dovetail_e2e::vendor::{RestPipeline, RestStream, count};
use dovetail_e2e::{Scratch, show};
use dovetail_testkit::FixtureServer;
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

const DATA_EXIT: i32 = 9;

fn github_config(base_url: &str) -> String {
    github::config(base_url, "releases", "max_attempts = 3, base_delay_ms = 1, max_delay_ms = 2", "", "")
}

/// `dovetail run --json`, killed after a minute: before listings remembered their pages,
/// these runs fetched the same pages until someone stopped them.
async fn run(s: &Scratch) -> (Output, Value) {
    let mut cmd = s.cmd(&["run", "--json"]);
    cmd.env("GH_TOKEN", TOKEN);
    let out = tokio::task::spawn_blocking(move || bounded(cmd, Duration::from_secs(60))).await.unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    (out, report)
}

fn bounded(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn dovetail");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let stdout = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let stderr = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for dovetail") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let tail = String::from_utf8_lossy(&stderr.join().unwrap_or_default())
                .chars()
                .rev()
                .take(2000)
                .collect::<String>();
            panic!(
                "the run did not end within {limit:?} (a pagination loop?); stderr ends:\n{}",
                tail.chars().rev().collect::<String>()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: stdout.join().unwrap_or_default(), stderr: stderr.join().unwrap_or_default() }
}

fn rows(s: &Scratch, table: &str) -> i64 {
    s.db("out.db").query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| r.get(0)).unwrap()
}

/// The run stopped on a pagination loop: exit 9, the stream's error naming `needle`, the
/// next step saying what to do, and no token anywhere.
fn assert_loop(out: &Output, report: &Value, stream: &str, needle: &str) {
    assert_eq!(out.status.code(), Some(DATA_EXIT), "{}", show(out));
    let error = report["streams"][stream]["error"].as_str().unwrap_or_default();
    assert!(error.contains("pagination loop") && error.contains(needle), "{error}\n{report:#}");
    let next = report["next_step"].as_str().unwrap_or_default();
    assert!(next.contains("dovetail reset gh releases") || next.contains("dovetail reset vendor"), "{next}");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains(TOKEN), "the token leaked into the output");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_next_link_to_the_same_page_stops_the_stream_after_reading_each_release_once() {
    let server = FixtureServer::from_file(fixture("releases_link_loop_same_page")).await.unwrap();
    let s = Scratch::new();
    s.write("dovetail.toml", &github_config(&server.base_url()));
    let (out, report) = run(&s).await;
    let page2 = format!("{}/repos/octo/hello/releases?per_page=100&page=2, the page that sent it", server.base_url());
    assert_loop(&out, &report, "releases", &page2);
    assert!(report["streams"]["releases"]["error"].as_str().unwrap().contains("Link-header pagination"));
    assert_eq!((count(&report, "releases", "read"), count(&report, "releases", "written")), (3, 3), "{report:#}");
    assert_eq!(rows(&s, "releases"), 3);
    // Each page was fetched once: the repeat was refused before it was sent.
    assert_eq!(server.served(), [1, 1]);
    assert!(server.unmatched().is_empty(), "{:?}", server.unmatched());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_link_back_to_the_first_page_is_a_loop() {
    let server = FixtureServer::from_file(fixture("releases_link_loop_back")).await.unwrap();
    let s = Scratch::new();
    s.write("dovetail.toml", &github_config(&server.base_url()));
    let (out, report) = run(&s).await;
    let first =
        format!("{}/repos/octo/hello/releases?per_page=100, which this listing already fetched", server.base_url());
    assert_loop(&out, &report, "releases", &first);
    assert_eq!((count(&report, "releases", "read"), count(&report, "releases", "written")), (3, 3), "{report:#}");
    assert_eq!(server.served(), [1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_github_listing_still_sees_a_link_back_to_a_page_read_before_the_failure() {
    // Run 1 reads page 1, then GitHub refuses page 2 (422): the checkpoint is at page 2.
    let server = FixtureServer::from_file(fixture("releases_link_loop_after_restart")).await.unwrap();
    let s = Scratch::new();
    s.write("dovetail.toml", &github_config(&server.base_url()));
    let (out, report) = run(&s).await;
    assert!(!out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "releases", "read"), 2, "{report:#}");
    // Run 2, a new process, resumes at page 2, whose next link is page 1 of run 1.
    let (out, report) = run(&s).await;
    assert!(report["streams"]["releases"]["resumed"].as_bool().unwrap_or(false), "{report:#}");
    let first =
        format!("{}/repos/octo/hello/releases?per_page=100, which this listing already fetched", server.base_url());
    assert_loop(&out, &report, "releases", &first);
    assert_eq!(count(&report, "releases", "read"), 1, "{report:#}");
    assert_eq!(rows(&s, "releases"), 3);
    assert_eq!(server.served(), [1, 1, 1]);
}

async fn rest_run(server: &MockServer, stream: RestStream) -> (Scratch, Output, Value) {
    let s = Scratch::new();
    RestPipeline::new(&server.uri()).stream(stream).write_to(&s);
    let (out, report) = run(&s).await;
    (s, out, report)
}

fn item(id: u64) -> Value {
    json!({ "id": id, "name": format!("item {id}") })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_cursor_that_does_not_change_stops_the_stream() {
    let server = MockServer::start().await;
    let body = |ids: &[u64], next: &str| {
        ResponseTemplate::new(200).set_body_json(
            json!({ "data": ids.iter().map(|i| item(*i)).collect::<Vec<_>>(), "meta": { "next_cursor": next } }),
        )
    };
    let m = || Mock::given(method("GET")).and(path("/v1/items"));
    m().and(query_param_is_missing("cursor")).respond_with(body(&[1, 2], "c2")).mount(&server).await;
    m().and(query_param("cursor", "c2")).respond_with(body(&[3], "c2")).mount(&server).await;
    let (s, out, report) = rest_run(&server, RestStream::items_cursor(2)).await;
    assert_loop(&out, &report, "items", "the cursor at `/meta/next_cursor` is `c2` again");
    assert!(report["streams"]["items"]["error"].as_str().unwrap().contains("cursor pagination"));
    assert_eq!((count(&report, "items", "read"), count(&report, "items", "written")), (3, 3), "{report:#}");
    assert_eq!(rows(&s, "items"), 3);
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_page_number_listing_whose_pages_repeat_stops_the_stream() {
    let server = MockServer::start().await;
    // Pages 1 and 2, then page 3 is page 1 again (another request id: the records repeat).
    let page = |n: &str, ids: &[u64], rid: &str| {
        let body = json!({ "request_id": rid, "data": ids.iter().map(|i| item(*i)).collect::<Vec<_>>() });
        Mock::given(method("GET"))
            .and(path("/v1/items/paged"))
            .and(query_param("page", n))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
    };
    page("1", &[1, 2], "r1").mount(&server).await;
    page("2", &[3, 4], "r2").mount(&server).await;
    page("3", &[1, 2], "r3").mount(&server).await;
    page("4", &[3, 4], "r4").mount(&server).await;
    let (s, out, report) = rest_run(&server, RestStream::items_paged(2)).await;
    assert_loop(&out, &report, "items", "page 3 (");
    let error = report["streams"]["items"]["error"].as_str().unwrap();
    assert!(error.contains("holds the same records as page 1"), "{error}");
    assert!(report["next_step"].as_str().unwrap().contains("`page` is the API's page parameter"), "{report:#}");
    assert_eq!((count(&report, "items", "read"), count(&report, "items", "dead_lettered")), (4, 0), "{report:#}");
    assert_eq!(rows(&s, "items"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_killed_after_a_checkpoint_still_sees_a_loop_back_to_a_page_read_before_the_kill() {
    let server = MockServer::start().await;
    let body = |ids: &[u64], next: &str| {
        let data: Vec<Value> = ids.iter().map(|i| item(*i)).collect();
        ResponseTemplate::new(200).set_body_json(json!({ "data": data, "meta": { "next_cursor": next } }))
    };
    let m = || Mock::given(method("GET")).and(path("/v1/items"));
    m().and(query_param_is_missing("cursor")).respond_with(body(&[1, 2], "c1")).mount(&server).await;
    m().and(query_param("cursor", "c1")).respond_with(body(&[3, 4], "c2")).mount(&server).await;
    // The third page's cursor leads back to the second.
    m().and(query_param("cursor", "c2")).respond_with(body(&[5, 6], "c1")).mount(&server).await;
    let s = Scratch::new();
    RestPipeline::new(&server.uri()).pipeline_line("batch_size = 2").stream(RestStream::items_cursor(2)).write_to(&s);
    // Killed right after the second page's checkpoint: the position is `c2`.
    let mut cmd = s.cmd(&["run"]);
    cmd.env("DOVETAIL_FAILPOINT", "after_checkpoint:2");
    let out = tokio::task::spawn_blocking(move || bounded(cmd, Duration::from_secs(60))).await.unwrap();
    assert!(!out.status.success(), "the failpoint did not fire: {}", show(&out));
    // A new process resumes at `c2` (it reads 2 records); `c1` was fetched by the killed one.
    let (out, report) = run(&s).await;
    assert!(report["streams"]["items"]["resumed"].as_bool().unwrap_or(false), "{report:#}");
    assert_loop(&out, &report, "items", "the cursor at `/meta/next_cursor` is `c1`, which this listing already sent");
    assert_eq!(count(&report, "items", "read"), 2, "{report:#}");
    assert_eq!(rows(&s, "items"), 6);
}
