//! The GitHub connector through `dovetail run` into SQLite, on its recorded fixtures
//! (connectors/github/fixtures, replayed by the testkit's server over loopback).

use dovetail_e2e::github::{self, TOKEN, fixture, run};
use dovetail_e2e::vendor::count;
use dovetail_e2e::{Scratch, show};
use dovetail_testkit::FixtureServer;

fn config(base_url: &str, stream: &str) -> String {
    github::config(
        base_url,
        stream,
        "max_attempts = 3, base_delay_ms = 1, max_delay_ms = 2",
        "start_date = \"2011-01-01T00:00:00Z\"",
        "",
    )
}

/// The config lines that say whose repositories are read, in `config`'s output.
const ONE_ORG_REPO: &str = "owner_type = \"org\"\nrepositories = [\"hello\"]";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_stream_syncs_from_its_fixtures_into_sqlite() {
    // (stream, whose repositories, rows written)
    let cases = [
        ("pull_requests", ONE_ORG_REPO, 3),
        ("issue_comments", ONE_ORG_REPO, 3),
        ("commits", ONE_ORG_REPO, 3),
        ("releases", ONE_ORG_REPO, 2),
        ("workflow_runs", ONE_ORG_REPO, 3),
        ("issues", "owner_type = \"org\"\nrepositories = [\"hello\", \"octo/world\"]", 4),
        // `octo` is no org (404): repositories come from the user listing.
        ("repositories", "owner_type = \"auto\"\nrepositories = []", 3),
    ];
    for (stream, owner, rows) in cases {
        let server = FixtureServer::from_file(fixture(stream)).await.unwrap();
        let s = Scratch::new();
        let cfg = config(&server.base_url(), stream).replace(ONE_ORG_REPO, owner);
        assert!(cfg.contains(owner), "the base config changed shape");
        s.write("dovetail.toml", &cfg);
        let (out, report) = run(&s).await;
        assert!(out.status.success(), "{stream}: {}", show(&out));
        assert_eq!(count(&report, stream, "written"), rows, "{stream}: {report:#}");
        let in_table: i64 =
            s.db("out.db").query_row(&format!("SELECT count(*) FROM \"{stream}\""), [], |r| r.get(0)).unwrap();
        assert_eq!(in_table, rows as i64, "{stream}");
        assert!(server.unmatched().is_empty(), "{stream}: {:?}", server.unmatched());
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!text.contains(TOKEN), "{stream}: the token leaked into the output");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_sends_a_conditional_request_and_writes_nothing() {
    let server = FixtureServer::from_file(fixture("releases_conditional")).await.unwrap();
    let s = Scratch::new();
    s.write("dovetail.toml", &config(&server.base_url(), "releases"));
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "releases", "written"), 2);
    // A new process: the ETag comes from the state database.
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "releases", "written"), 0, "{report:#}");
    assert_eq!(report["http"]["source"]["not_modified"], 1, "{report:#}");
    // The second exchange of the fixture requires If-None-Match.
    assert_eq!(server.served(), [1, 1]);
    assert!(server.unmatched().is_empty(), "{:?}", server.unmatched());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_ends_the_run_with_an_auth_error_and_no_retries() {
    let server = FixtureServer::from_file(fixture("bad_token")).await.unwrap();
    let s = Scratch::new();
    s.write("dovetail.toml", &config(&server.base_url(), "releases"));
    let (out, report) = run(&s).await;
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    assert_eq!(report["http"]["source"]["attempts"], 1, "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_rate_limit_is_waited_out_and_the_run_continues() {
    // A 403 whose body names the secondary rate limit, with `Retry-After: 1`, then the page.
    let server = FixtureServer::from_file(fixture("secondary_rate_limit")).await.unwrap();
    let s = Scratch::new();
    s.write("dovetail.toml", &config(&server.base_url(), "releases"));
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "releases", "written"), 2, "{report:#}");
    let http = &report["http"]["source"];
    assert_eq!((http["requests"].as_u64(), http["attempts"].as_u64()), (Some(1), Some(2)), "{report:#}");
    assert_eq!(http["by_status"]["403"], 1, "{report:#}");
    let waited = http["retry_wait_ms"].as_u64().unwrap_or(0) + http["rate_limit_wait_ms"].as_u64().unwrap_or(0);
    assert!(waited >= 1000, "Retry-After: 1 was not honoured in full: {report:#}");
    assert_eq!(server.served(), [1, 1]);
    assert!(server.unmatched().is_empty(), "{:?}", server.unmatched());
}
