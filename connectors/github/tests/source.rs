//! The GitHub source replaying recorded fixtures (connectors/github/fixtures/) over loopback,
//! driven by the real engine. The fixtures record `x-github-api-version`, `accept` and a
//! redacted `authorization` on every request, so a request without them matches nothing
//! (status 599) and `unmatched()` lists it: each test's empty `unmatched()` proves the
//! version header went out on every request.

use std::path::PathBuf;
use std::time::Duration;

use dovetail_core::testing::{MemorySink, MemoryState};
use dovetail_core::{
    BuildCx, Cx, DeliveryStore, DriftClass, ErrorKind, HistoryStore, Next, Pipeline, ReadRequest, RunOptions,
    RunOutcome, Source, SourceConnector,
};
use dovetail_github::{GithubConfig, GithubSource};
use dovetail_http::FakeClock;
use dovetail_testkit::FixtureServer;
use serde_json::{Value, json};

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(format!("{name}.json"))
}

async fn server(name: &str) -> FixtureServer {
    FixtureServer::from_file(fixture_path(name)).await.unwrap()
}

fn config(server: &FixtureServer, overrides: Value) -> GithubConfig {
    let mut cfg = json!({
        "token": "ghp_fixture_token_not_real",
        "base_url": server.base_url(),
        "owner": "octo",
        "owner_type": "org",
        "repositories": ["hello"],
        "start_date": "2011-01-01T00:00:00Z",
        "http": { "retry": { "max_attempts": 3, "base_delay_ms": 1, "max_delay_ms": 2 } },
    });
    for (k, v) in overrides.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    serde_json::from_value(cfg).unwrap()
}

fn source(server: &FixtureServer, overrides: Value) -> GithubSource {
    GithubSource::build(config(server, overrides), &BuildCx::default()).unwrap()
}

fn pipeline(src: GithubSource, sink: &MemorySink, state: &MemoryState) -> Pipeline {
    Pipeline::builder("gh").source(src).sink(sink.clone()).state(state.clone()).batch_size(50).build().unwrap()
}

fn assert_replayed_exactly(server: &FixtureServer) {
    assert!(server.unmatched().is_empty(), "unmatched: {:?}", server.unmatched());
    assert!(server.unused().is_empty(), "unused exchanges: {:?}", server.unused());
}

#[tokio::test]
async fn each_stream_syncs_its_fixture_pages_to_the_last_one() {
    for (stream, rows) in
        [("pull_requests", 3), ("issue_comments", 3), ("commits", 3), ("releases", 2), ("workflow_runs", 3)]
    {
        let srv = server(stream).await;
        let (sink, state) = (MemorySink::default(), MemoryState::default());
        let src = source(&srv, json!({ "streams": [stream] }));
        let r = pipeline(src, &sink, &state).run(RunOptions::default()).await.unwrap();
        assert_eq!(r.outcome, RunOutcome::Succeeded, "{stream}: {:?}", r.error);
        assert_eq!(r.streams[stream].written, rows, "{stream}");
        // The rows match the declared schema (the stored baseline): no drift, no dead letters —
        // except the coercions the fixtures really hold (a pull request whose `assignees` and
        // `requested_reviewers` are null, read as `[]`), which are recorded, not silent.
        let drift: Vec<(&str, DriftClass)> =
            r.streams[stream].drift.iter().map(|e| (e.path.as_str(), e.change)).collect();
        let coerced: &[(&str, DriftClass)] = match stream {
            "pull_requests" => {
                &[("/assignees", DriftClass::NullValue), ("/requested_reviewers", DriftClass::NullValue)]
            }
            _ => &[],
        };
        assert_eq!(drift, coerced, "{stream}");
        assert_eq!(r.streams[stream].dead_lettered, 0, "{stream}");
        assert_eq!(sink.rows(stream).len(), rows as usize, "{stream}");
        assert!(sink.rows(stream).iter().all(|row| row.get("repository").is_some_and(|v| v == "octo/hello")));
        assert_replayed_exactly(&srv);
        assert!(state.checkpoint("gh", stream).await.unwrap().unwrap().pass_complete, "{stream}");
    }
}

#[tokio::test]
async fn issues_visit_each_repository_and_the_next_run_sends_since_from_the_checkpoint() {
    let srv = server("issues").await;
    let (sink, state) = (MemorySink::default(), MemoryState::default());
    let overrides = json!({ "streams": ["issues"], "repositories": ["hello", "octo/world"] });
    let r = pipeline(source(&srv, overrides.clone()), &sink, &state).run(RunOptions::default()).await.unwrap();
    assert_eq!((r.outcome, r.streams["issues"].written), (RunOutcome::Succeeded, 4), "{:?}", r.error);
    let rows = sink.rows("issues");
    let prs: Vec<bool> = rows.iter().map(|r| r["is_pull_request"].as_bool().unwrap()).collect();
    assert_eq!(prs.iter().filter(|p| **p).count(), 1, "{prs:?}");
    let repos: Vec<&str> = rows.iter().map(|r| r["repository"].as_str().unwrap()).collect();
    assert!(repos.contains(&"octo/hello") && repos.contains(&"octo/world"), "{repos:?}");
    // The first run sent `start_date`; the second sends the checkpoint's cursor (inclusive)
    // and writes nothing: issue 7 sits on the cursor and was delivered already.
    assert_eq!(srv.served()[..4], [1, 1, 1, 0]);
    let r = pipeline(source(&srv, overrides), &sink, &state).run(RunOptions::default()).await.unwrap();
    assert_eq!((r.outcome, r.streams["issues"].written), (RunOutcome::Succeeded, 0), "{:?}", r.error);
    assert_replayed_exactly(&srv);
}

#[tokio::test]
async fn a_repository_with_issues_disabled_answers_410_and_is_skipped() {
    let srv = server("issues_disabled").await;
    let (sink, state) = (MemorySink::default(), MemoryState::default());
    let overrides = json!({ "streams": ["issues"], "repositories": ["hello", "octo/world"] });
    let r = pipeline(source(&srv, overrides), &sink, &state).run(RunOptions::default()).await.unwrap();
    assert_eq!(r.outcome, dovetail_core::RunOutcome::Succeeded, "{:?}", r.error);
    let rows = sink.rows("issues");
    let repos: Vec<&str> = rows.iter().map(|r| r["repository"].as_str().unwrap()).collect();
    assert!(!repos.is_empty() && repos.iter().all(|r| *r == "octo/world"), "{repos:?}");
    assert_eq!(srv.served(), [1, 1], "the 410 was not retried");
    assert_replayed_exactly(&srv);
}

#[tokio::test]
async fn repositories_fall_back_to_the_user_listing_when_the_owner_is_no_org() {
    let srv = server("repositories").await;
    let (sink, state) = (MemorySink::default(), MemoryState::default());
    let src = source(&srv, json!({ "streams": ["repositories"], "owner_type": "auto", "repositories": [] }));
    let r = pipeline(src, &sink, &state).run(RunOptions::default()).await.unwrap();
    assert_eq!((r.outcome, r.streams["repositories"].written), (RunOutcome::Succeeded, 3), "{:?}", r.error);
    assert_replayed_exactly(&srv);
}

#[tokio::test]
async fn a_secondary_rate_limit_is_waited_out_and_the_stream_continues() {
    let srv = server("secondary_rate_limit").await;
    let clock = FakeClock::new();
    let c = clock.clone();
    let src =
        GithubSource::build_with(config(&srv, json!({ "streams": ["releases"] })), &BuildCx::default(), move |b| {
            b.clock(c)
        })
        .unwrap();
    let (sink, state) = (MemorySink::default(), MemoryState::default());
    let r = pipeline(src, &sink, &state).run(RunOptions::default()).await.unwrap();
    assert_eq!((r.outcome, r.streams["releases"].written), (RunOutcome::Succeeded, 2), "{:?}", r.error);
    assert_eq!(srv.served(), [1, 1]);
    assert!(clock.sleeps().contains(&Duration::from_secs(1)), "{:?}", clock.sleeps());
    assert_replayed_exactly(&srv);
}

#[tokio::test]
async fn a_bad_token_fails_with_an_auth_error_after_exactly_one_request() {
    let srv = server("bad_token").await;
    let src = source(&srv, json!({ "streams": ["releases"] }));
    let req = ReadRequest { stream: "releases".into(), position: None, since: None, batch_size: 10, use_cache: false };
    let err = src.read(&req, &Cx::default()).await.unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Auth, "{}", err.report());
    assert_eq!(srv.served(), [1, 0]);

    let (sink, state) = (MemorySink::default(), MemoryState::default());
    let r = pipeline(source(&srv, json!({ "streams": ["releases"] })), &sink, &state)
        .run(RunOptions::default())
        .await
        .unwrap();
    assert_eq!((r.outcome, r.exit_code), (RunOutcome::Failed, ErrorKind::Auth.exit_code()));
    assert_eq!(srv.served(), [2, 0], "one request per run, no retries");
    assert!(!format!("{:?}", r.error).contains("ghp_fixture_token_not_real"));

    // `dovetail check` says the same, with one request.
    let err = source(&srv, json!({})).check(&Cx::default()).await.unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Auth, "{}", err.report());
    assert!(err.report().contains("Bad credentials"), "{}", err.report());
    assert_eq!(srv.served(), [2, 1]);
}

#[tokio::test]
async fn positions_name_the_repository_and_a_foreign_one_is_permanent() {
    let srv = server("pull_requests").await;
    let src = source(&srv, json!({ "streams": ["pull_requests"] }));
    let mut req =
        ReadRequest { stream: "pull_requests".into(), position: None, since: None, batch_size: 10, use_cache: false };
    let page = src.read(&req, &Cx::default()).await.unwrap();
    let Next::More(pos) = page.next else { panic!("the fixture has two pages") };
    assert_eq!(pos["repo"], "octo/hello");
    assert!(pos["page"]["url"].as_str().unwrap().ends_with("page=2"), "{pos}");
    // Resuming at that position reads the second page only.
    req.position = Some(pos);
    let page = src.read(&req, &Cx::default()).await.unwrap();
    assert_eq!((page.records.len(), page.next), (1, Next::Done { resume: None }));
    assert_eq!(srv.served(), [1, 1]);

    for bad in [json!({ "cursor": 3 }), json!({ "repo": "octo/gone", "page": {} }), json!({ "page": {} })] {
        req.position = Some(bad.clone());
        let err = src.read(&req, &Cx::default()).await.unwrap_err();
        assert_eq!(*err.kind(), ErrorKind::Permanent, "{bad}: {}", err.report());
        assert!(err.report().contains("dovetail reset"), "{}", err.report());
    }
}

/// Pull requests come newest-first; the descent ends at the first one below the lower
/// bound (the bound itself is inclusive), without reading further pages.
#[tokio::test]
async fn pull_requests_are_read_newest_first_down_to_the_lower_bound() {
    let srv = server("pull_requests").await;
    let src = source(&srv, json!({ "streams": ["pull_requests"], "start_date": "2011-02-01T00:00:00Z" }));
    let mut req =
        ReadRequest { stream: "pull_requests".into(), position: None, since: None, batch_size: 10, use_cache: false };
    let page = src.read(&req, &Cx::default()).await.unwrap();
    let updated: Vec<&str> = page.records.iter().map(|r| r.data["updated_at"].as_str().unwrap()).collect();
    assert_eq!(updated, ["2011-03-01T00:00:00Z", "2011-02-01T00:00:00Z"], "inclusive bound");
    assert_eq!(page.records[0].provenance.api_version.as_deref(), Some("2022-11-28"));
    assert!(page.records[0].provenance.request_id.is_some());
    let Next::More(pos) = page.next else { panic!("nothing below the bound yet: the descent goes on") };
    req.position = Some(pos);
    let page = src.read(&req, &Cx::default()).await.unwrap();
    assert_eq!((page.records.len(), page.next), (0, Next::Done { resume: None }));
    // With the bound on the first page, the descent ends there.
    let srv = server("pull_requests").await;
    let src = source(&srv, json!({ "streams": ["pull_requests"], "start_date": "2011-02-15T00:00:00Z" }));
    req.position = None;
    let page = src.read(&req, &Cx::default()).await.unwrap();
    assert_eq!((page.records.len(), page.next), (1, Next::Done { resume: None }));
    assert_eq!(srv.served(), [1, 0]);
}

#[tokio::test]
async fn a_rerun_revalidates_with_the_etag_and_a_304_writes_nothing() {
    let srv = server("releases_conditional").await;
    let cache = std::sync::Arc::new(dovetail_http::MemoryResponseCache::new(100));
    let cx = BuildCx { response_cache: Some(cache), ..BuildCx::default() };
    let (sink, state) = (MemorySink::default(), MemoryState::default());
    for (run, written) in [(1, 2), (2, 0)] {
        let src = GithubSource::build(config(&srv, json!({ "streams": ["releases"] })), &cx).unwrap();
        let r = pipeline(src, &sink, &state).run(RunOptions::default()).await.unwrap();
        assert_eq!((r.outcome, r.streams["releases"].written), (RunOutcome::Succeeded, written), "run {run}");
    }
    // The second request carried If-None-Match (the fixture's second exchange requires it).
    assert_eq!(srv.served(), [1, 1]);
    assert_replayed_exactly(&srv);
}

#[tokio::test]
async fn an_object_that_no_longer_decodes_is_dead_lettered_and_the_rest_go_on() {
    let mut fixture: Value = serde_json::from_str(&std::fs::read_to_string(fixture_path("releases")).unwrap()).unwrap();
    fixture["exchanges"][0]["response"]["body"][1]["tag_name"] = json!(42);
    let fixture = dovetail_testkit::Fixture::from_json(&fixture.to_string()).unwrap();
    let srv = FixtureServer::start(fixture).await.unwrap();
    let (sink, state) = (MemorySink::default(), MemoryState::default());
    let r = pipeline(source(&srv, json!({ "streams": ["releases"] })), &sink, &state)
        .run(RunOptions::default())
        .await
        .unwrap();
    assert_eq!((r.streams["releases"].written, r.streams["releases"].dead_lettered), (1, 1), "{:?}", r.error);
    let dl = state.dead_letters(Some("gh"), Some("releases"), 10).await.unwrap();
    assert_eq!(dl[0].path.as_deref(), Some("tag_name"), "{:?}", dl[0]);
    assert!(dl[0].raw.contains("\"github_repository\":\"octo/hello\""), "{}", dl[0].raw);
}

#[tokio::test]
async fn without_configured_repositories_the_owners_are_discovered_and_read_by_name() {
    let srv = server("discovery").await;
    let (sink, state) = (MemorySink::default(), MemoryState::default());
    let src = source(&srv, json!({ "streams": ["releases"], "repositories": [] }));
    let r = pipeline(src, &sink, &state).run(RunOptions::default()).await.unwrap();
    assert_eq!((r.outcome, r.streams["releases"].written), (RunOutcome::Succeeded, 2), "{:?}", r.error);
    assert_replayed_exactly(&srv);
}
