//! The checks of the contract suite, in the order they run. Each returns an [`Outcome`];
//! a check never panics on the connector's behalf (errors become `Fail` reasons).

use dovetail_core::state::Commit;
use dovetail_core::testing::{MemorySink, MemoryState};
use dovetail_core::{Checkpoint, DeliveryStore, ErrorKind, HistoryStore, Pipeline, RunOptions, RunOutcome, RunReport};
use serde_json::json;

use super::{BuildSource, Outcome, SourceContract, StreamCase};
use crate::format::{Body, Exchange, Fixture, REDACTED, RecordedResponse};
use crate::replay::FixtureServer;

/// The pipeline name every contract run uses.
pub(super) const PIPELINE: &str = "contract";

type Check = (&'static str, Outcome);

/// Every check of the source suite, in the order they run (the secret scan last: it reads
/// what the others produced). [`SourceContract::skip`](super::SourceContract::skip) takes
/// these names.
pub const CHECKS: &[&str] = &[
    "syncs_each_stream_to_the_last_page",
    "stops_at_the_last_page",
    "fresh_start_reads_everything",
    "schemas_match_snapshots",
    "mappings_match_snapshots",
    "rerun_writes_nothing",
    "resumes_from_a_checkpoint",
    "corrupt_checkpoint_is_reported",
    "sends_the_pinned_version_header",
    "unauthorized_fails_clearly",
    "retries_a_server_error",
    "waits_out_a_rate_limit",
    "refreshes_on_401",
    "malformed_page_fails_clearly",
    "drift_on_changed_field_type",
    "bad_record_dead_lettered_rest_continue",
    "config_rejects_an_unknown_key",
    "no_fixture_secret_in_output",
];

/// Every check in [`CHECKS`] order.
pub(crate) async fn run_all(c: &SourceContract) -> Vec<Check> {
    let mut out = Vec::with_capacity(CHECKS.len());
    for &check in CHECKS {
        out.push((check, run_one(c, check).await));
    }
    out
}

async fn run_one(c: &SourceContract, check: &str) -> Outcome {
    match check {
        "syncs_each_stream_to_the_last_page" => syncs_each_stream(c).await,
        "stops_at_the_last_page" => super::records::stops_at_the_last_page(c).await,
        "fresh_start_reads_everything" => super::records::fresh_start_reads_everything(c).await,
        "schemas_match_snapshots" => super::snapshots::schemas_match_snapshots(c).await,
        "mappings_match_snapshots" => super::snapshots::mappings_match_snapshots(c).await,
        "rerun_writes_nothing" => rerun_writes_nothing(c).await,
        "resumes_from_a_checkpoint" => resumes_from_a_checkpoint(c).await,
        "corrupt_checkpoint_is_reported" => corrupt_checkpoint_is_reported(c).await,
        "sends_the_pinned_version_header" => sends_the_pinned_version_header(c).await,
        "unauthorized_fails_clearly" => unauthorized_fails_clearly(c).await,
        "retries_a_server_error" => retries_scenario(c, "server_error_then_ok").await,
        "waits_out_a_rate_limit" => retries_scenario(c, "rate_limited_then_ok").await,
        "refreshes_on_401" => refreshes_on_401(c).await,
        "malformed_page_fails_clearly" => super::records::malformed_page_fails_clearly(c).await,
        "drift_on_changed_field_type" => super::records::drift_on_changed_field_type(c).await,
        "bad_record_dead_lettered_rest_continue" => super::records::bad_record_dead_lettered(c).await,
        "config_rejects_an_unknown_key" => config_rejects_an_unknown_key(c),
        "no_fixture_secret_in_output" => no_fixture_secret_in_output(c).await,
        other => Outcome::Fail(format!("no check named `{other}`")),
    }
}

/// What a check lacking its input says: give it, or skip the check stating why.
pub(super) fn missing(check: &str, what: &str) -> Outcome {
    Outcome::Fail(format!("{what}: give it, or state why not with `.skip(\"{check}\", reason)`"))
}

/// One run of one stream against an optional replay server.
pub(super) struct Run {
    pub(super) report: RunReport,
    pub(super) sink: MemorySink,
    pub(super) state: MemoryState,
}

pub(super) fn builder<'a>(c: &'a SourceContract, case: &'a StreamCase) -> &'a BuildSource {
    case.build.as_ref().unwrap_or(&c.build)
}

/// Run `stream` once on `state`, noting everything user-visible in the transcript.
pub(super) async fn run_once(
    c: &SourceContract,
    build: &BuildSource,
    base_url: &str,
    stream: &str,
    state: &MemoryState,
) -> Result<Run, String> {
    let src = build(base_url).map_err(|e| format!("building the source failed: {}", e.report()))?;
    let sink = MemorySink::default();
    let p = Pipeline::builder(PIPELINE)
        .source_arc(src)
        .sink(sink.clone())
        .state(state.clone())
        .build()
        .map_err(|e| format!("building the pipeline failed: {}", e.report()))?;
    let opts = RunOptions { streams: vec![stream.to_owned()], ..RunOptions::default() };
    let report = p.run(opts).await.map_err(|e| {
        c.note(e.report());
        format!("the run itself failed: {}", e.report())
    })?;
    c.note(serde_json::to_string(&report).unwrap_or_default());
    if let Ok(dl) = state.dead_letters(None, None, 10_000).await {
        c.note(format!("{dl:?}"));
    }
    Ok(Run { report, sink, state: state.clone() })
}

/// Start a replay server for a fixture (HTTP sources), with the contract's setup
/// exchanges, or none.
pub(super) async fn serve(c: &SourceContract, fixture: Option<&Fixture>) -> Result<Option<FixtureServer>, String> {
    let setup = c.setup.as_ref().map_or_else(|| Fixture::new(Vec::new()), |(_, f)| f.clone());
    match fixture {
        Some(f) => FixtureServer::start_with_setup(f.clone(), setup).await.map(Some).map_err(|e| e.to_string()),
        None => Ok(None),
    }
}

pub(super) fn base_url(server: Option<&FixtureServer>) -> String {
    server.map(FixtureServer::base_url).unwrap_or_default()
}

/// Unmatched requests as a failure reason, if any.
pub(super) fn unmatched(server: Option<&FixtureServer>) -> Result<(), String> {
    let Some(s) = server else { return Ok(()) };
    let u = s.unmatched();
    match u.first() {
        None => Ok(()),
        Some(first) => Err(format!("{} request(s) matched no recorded exchange, first: {first}", u.len())),
    }
}

pub(super) fn succeeded(stream: &str, r: &RunReport) -> Result<(), String> {
    if r.outcome == RunOutcome::Succeeded {
        Ok(())
    } else {
        Err(format!("{stream}: run {}: {}", r.outcome, r.error.as_deref().unwrap_or("(no error)")))
    }
}

/// The stream cases, or a failure when there are none or one lacks its fixture.
pub(super) fn cases(c: &SourceContract) -> Result<&[StreamCase], String> {
    if c.streams.is_empty() {
        return Err("no streams given to the contract".into());
    }
    if c.http
        && let Some(s) = c.streams.iter().find(|s| s.fixture.is_none())
    {
        return Err(format!("stream `{}` has no fixture (an HTTP source replays one per stream)", s.name));
    }
    Ok(&c.streams)
}

/// Collect per-stream results into one outcome.
/// `check` run on every stream case, each result named by its stream; the failed outcome
/// when the contract has no stream.
pub(super) async fn per_case<'a, T>(
    c: &'a SourceContract,
    check: impl AsyncFn(&'a StreamCase) -> T,
) -> Result<Vec<(String, T)>, Outcome> {
    let cases = cases(c).map_err(Outcome::Fail)?;
    let mut results = Vec::with_capacity(cases.len());
    for case in cases {
        results.push((case.name.clone(), check(case).await));
    }
    Ok(results)
}

/// `check` run on every stream case, combined (a pass lists them, a failure names its stream).
pub(super) async fn each_case<'a>(
    c: &'a SourceContract,
    check: impl AsyncFn(&'a StreamCase) -> Result<Option<String>, String>,
) -> Outcome {
    per_case(c, check).await.map_or_else(|o| o, combine)
}

pub(super) fn combine(results: Vec<(String, Result<Option<String>, String>)>) -> Outcome {
    let fails: Vec<String> =
        results.iter().filter_map(|(s, r)| r.as_ref().err().map(|e| format!("{s}: {e}"))).collect();
    if !fails.is_empty() {
        return Outcome::Fail(fails.join("; "));
    }
    let passed: Vec<&str> = results.iter().filter(|(_, r)| matches!(r, Ok(None))).map(|(s, _)| s.as_str()).collect();
    let na: Vec<String> =
        results.iter().filter_map(|(s, r)| r.as_ref().ok()?.as_ref().map(|w| format!("{s} ({w})"))).collect();
    match (passed.is_empty(), na.is_empty()) {
        (true, _) => Outcome::Fail(format!("no stream could be checked: {}", na.join("; "))),
        (false, true) => Outcome::Pass(format!("streams: {}", passed.join(", "))),
        (false, false) => Outcome::Pass(format!("streams: {}; n/a: {}", passed.join(", "), na.join("; "))),
    }
}

async fn syncs_each_stream(c: &SourceContract) -> Outcome {
    let cases = match cases(c) {
        Ok(cs) => cs,
        Err(e) => return Outcome::Fail(e),
    };
    let mut results = Vec::new();
    let mut declared: Vec<String> = Vec::new();
    for case in cases {
        let r = async {
            let server = serve(c, case.fixture.as_ref().map(|f| &f.1)).await?;
            let state = MemoryState::default();
            let run = run_once(c, builder(c, case), &base_url(server.as_ref()), &case.name, &state).await?;
            if declared.is_empty()
                && let Ok(src) = builder(c, case)(&base_url(server.as_ref()))
            {
                declared = src.streams().into_iter().map(|s| s.name).collect();
            }
            succeeded(&case.name, &run.report)?;
            unmatched(server.as_ref())?;
            let written = run.report.streams.get(&case.name).map_or(0, |s| s.written);
            if written == 0 || run.sink.rows(&case.name).is_empty() {
                return Err("wrote no rows: the fixture proves nothing".to_owned());
            }
            match run.state.checkpoint(PIPELINE, &case.name).await {
                Ok(Some(cp)) if cp.pass_complete => Ok(None),
                Ok(cp) => Err(format!("the pass is not complete after the last page: checkpoint {cp:?}")),
                Err(e) => Err(e.report()),
            }
        }
        .await;
        results.push((case.name.clone(), r));
    }
    let missing: Vec<&String> = declared.iter().filter(|d| !cases.iter().any(|c| &c.name == *d)).collect();
    if !missing.is_empty() {
        results.push(("(declared streams)".into(), Err(format!("no contract case for {missing:?}"))));
    }
    combine(results)
}

async fn rerun_writes_nothing(c: &SourceContract) -> Outcome {
    each_case(c, async |case| {
        let server = serve(c, case.fixture.as_ref().map(|f| &f.1)).await?;
        let (url, state) = (base_url(server.as_ref()), MemoryState::default());
        let first = run_once(c, builder(c, case), &url, &case.name, &state).await?;
        succeeded(&case.name, &first.report)?;
        unmatched(server.as_ref())?;
        let rerun_server = match &case.rerun {
            Some((_, f)) => serve(c, Some(f)).await?,
            None => None,
        };
        let (server, url) = match &rerun_server {
            Some(s) => (Some(s), s.base_url()),
            None => (server.as_ref(), url),
        };
        let second = run_once(c, builder(c, case), &url, &case.name, &state).await?;
        succeeded(&case.name, &second.report).map_err(|e| format!("the rerun failed: {e}"))?;
        unmatched(server)?;
        match second.report.streams.get(&case.name).map_or(0, |s| s.written) {
            0 => Ok(None),
            n => Err(format!("the rerun wrote {n} record(s)")),
        }
    })
    .await
}

/// A copy of exchange `at` answering 400 once, inserted before it.
fn fail_once_at(f: &Fixture, at: usize) -> Fixture {
    let mut exchanges = f.exchanges.clone();
    let mut failing: Exchange = exchanges[at].clone();
    let mut resp = RecordedResponse::new(400);
    resp.headers.insert("content-type".into(), "application/json".into());
    resp.body = Body::json(json!({ "message": "contract: injected failure of this page" }));
    failing.response = resp;
    exchanges.insert(at, failing);
    Fixture::new(exchanges)
}

async fn resumes_from_a_checkpoint(c: &SourceContract) -> Outcome {
    if !c.http {
        return Outcome::NotApplicable("not an HTTP source: no recorded page to fail".into());
    }
    let cases = match cases(c) {
        Ok(cs) => cs,
        Err(e) => return Outcome::Fail(e),
    };
    let mut results = Vec::new();
    for case in cases {
        let Some((_, fixture)) = &case.fixture else { continue };
        let r = async {
            // The happy run tells which exchanges a first sync uses; fail the last one of them.
            let server = serve(c, Some(fixture)).await?.ok_or("no server")?;
            let happy = run_once(c, builder(c, case), &server.base_url(), &case.name, &MemoryState::default()).await?;
            succeeded(&case.name, &happy.report)?;
            let total = happy.report.streams.get(&case.name).map_or(0, |s| s.written);
            let served = server.served();
            let Some(last) = served.iter().rposition(|n| *n > 0) else { return Err("no request was served".into()) };
            if last == 0 {
                return Ok(Some("a single page: nothing to resume".to_owned()));
            }
            let server = serve(c, Some(&fail_once_at(fixture, last))).await?.ok_or("no server")?;
            let state = MemoryState::default();
            let first = run_once(c, builder(c, case), &server.base_url(), &case.name, &state).await?;
            if first.report.outcome == RunOutcome::Succeeded {
                return Err("the run succeeded although its last page failed with a 400".into());
            }
            let cp = state.checkpoint(PIPELINE, &case.name).await.map_err(|e| e.report())?;
            if cp.as_ref().and_then(|cp| cp.position.as_ref()).is_none() {
                return Err(format!("no checkpoint position after the delivered pages: {cp:?}"));
            }
            let before = server.served();
            let second = run_once(c, builder(c, case), &server.base_url(), &case.name, &state).await?;
            succeeded(&case.name, &second.report).map_err(|e| format!("the resumed run: {e}"))?;
            unmatched(Some(&server))?;
            let after = server.served();
            let refetched: Vec<usize> = (0..last)
                .filter(|&i| (200..300).contains(&fixture.exchanges[i].response.status) && after[i] > before[i])
                .collect();
            if case.restarts && after[0] == before[0] {
                return Err("the resumed run did not restart at the newest page".into());
            }
            if !case.restarts && !refetched.is_empty() {
                return Err(format!("the resumed run fetched delivered exchange(s) {refetched:?} again"));
            }
            let written = |r: &RunReport| r.streams.get(&case.name).map_or(0, |s| s.written);
            let (w1, w2) = (written(&first.report), written(&second.report));
            if w1 == 0 || w1 + w2 != total {
                return Err(format!("wrote {w1} then {w2} record(s); a clean sync writes {total}"));
            }
            Ok(None)
        }
        .await;
        results.push((case.name.clone(), r));
    }
    combine(results)
}

async fn corrupt_checkpoint_is_reported(c: &SourceContract) -> Outcome {
    each_case(c, async |case| {
        let server = serve(c, case.fixture.as_ref().map(|f| &f.1)).await?;
        let state = MemoryState::default();
        let nonsense = json!({ "dovetail_contract": "not a position", "page": [1, 2, 3] });
        let cp = Checkpoint { position: Some(nonsense), pass: 1, floor: None, max: None, pass_complete: false };
        let commit = Commit {
            pipeline: PIPELINE.into(),
            stream: case.name.clone(),
            pass: 1,
            checkpoint: Some(cp),
            ..Commit::default()
        };
        state.commit(commit).await.map_err(|e| e.report())?;
        let run = run_once(c, builder(c, case), &base_url(server.as_ref()), &case.name, &state).await?;
        let error = run.report.error.clone().unwrap_or_default();
        if run.report.outcome == RunOutcome::Succeeded {
            return Err("a nonsense checkpoint position was accepted".into());
        }
        if run.report.exit_code != ErrorKind::Permanent.exit_code() {
            return Err(format!("expected a permanent error, got exit code {}: {error}", run.report.exit_code));
        }
        let lower = error.to_ascii_lowercase();
        if !["checkpoint", "position", "reset"].iter().any(|w| lower.contains(w)) {
            return Err(format!("the error does not mention the checkpoint: {error}"));
        }
        if let Some(s) = &server
            && s.served().iter().sum::<usize>() + s.unmatched().len() > 0
        {
            return Err(format!(
                "{} request(s) sent before the position was refused",
                s.served().iter().sum::<usize>()
            ));
        }
        Ok(None)
    })
    .await
}

async fn sends_the_pinned_version_header(c: &SourceContract) -> Outcome {
    if !c.http {
        return Outcome::NotApplicable("not an HTTP source".into());
    }
    let Some(header) = &c.version_header else {
        return missing("sends_the_pinned_version_header", "no pinned version header declared (`.version_header`)");
    };
    let cases = match cases(c) {
        Ok(cs) => cs,
        Err(e) => return Outcome::Fail(e),
    };
    // Every recorded request requires the header (the server matches recorded headers), and
    // every request sent matched one: so every request carried it.
    let fixtures = cases
        .iter()
        .flat_map(|s| s.fixture.iter().chain(s.rerun.iter()).cloned())
        .chain(c.scenarios.values().map(|s| (s.file.clone(), s.fixture.clone())))
        .chain(c.setup.iter().cloned());
    let mut value: Option<String> = None;
    for (file, f) in fixtures {
        for (i, x) in f.exchanges.iter().enumerate() {
            match x.request.headers.get(header) {
                None => return Outcome::Fail(format!("{file} exchange {i} does not record `{header}`")),
                Some(v) if v.is_empty() || v == REDACTED => {
                    return Outcome::Fail(format!("{file} exchange {i} records `{header}` without a value"));
                }
                Some(v) if value.as_ref().is_some_and(|w| w != v) => {
                    return Outcome::Fail(format!("{file} exchange {i}: `{header}: {v}`, elsewhere {value:?}"));
                }
                Some(v) => value = Some(v.clone()),
            }
        }
    }
    let mut results = Vec::new();
    for case in cases {
        let Some((_, fixture)) = &case.fixture else { continue };
        let r = async {
            let server = serve(c, Some(fixture)).await?.ok_or("no server")?;
            run_once(c, builder(c, case), &server.base_url(), &case.name, &MemoryState::default()).await?;
            unmatched(Some(&server))?;
            Ok(None)
        }
        .await;
        results.push((case.name.clone(), r));
    }
    match combine(results) {
        Outcome::Pass(_) => Outcome::Pass(format!("`{header}: {}` on every request", value.unwrap_or_default())),
        other => other,
    }
}

/// The scenario's stream case (its builder), or the default builder.
fn scenario_builder<'a>(c: &'a SourceContract, stream: &str) -> &'a BuildSource {
    c.streams.iter().find(|s| s.name == stream).and_then(|s| s.build.as_ref()).unwrap_or(&c.build)
}

async fn unauthorized_fails_clearly(c: &SourceContract) -> Outcome {
    if !c.http {
        return Outcome::NotApplicable("not an HTTP source".into());
    }
    let Some(sc) = c.scenarios.get("unauthorized") else {
        return missing("unauthorized_fails_clearly", "no `unauthorized` scenario fixture given");
    };
    let r: Result<String, String> = async {
        let server = serve(c, Some(&sc.fixture)).await?.ok_or("no server")?;
        let state = MemoryState::default();
        let run = run_once(c, scenario_builder(c, &sc.stream), &server.base_url(), &sc.stream, &state).await?;
        unmatched(Some(&server))?;
        let error = run.report.error.clone().unwrap_or_default();
        if run.report.exit_code != ErrorKind::Auth.exit_code() {
            return Err(format!(
                "expected an auth error, got {} (exit {}): {error}",
                run.report.outcome, run.report.exit_code
            ));
        }
        match server.served().iter().sum::<usize>() {
            1 => Ok(format!("{}: auth error after 1 request", sc.stream)),
            n => Err(format!("{n} requests: an auth error must not be retried")),
        }
    }
    .await;
    r.map_or_else(Outcome::Fail, Outcome::Pass)
}

async fn retries_scenario(c: &SourceContract, scenario: &str) -> Outcome {
    if !c.http {
        return Outcome::NotApplicable("not an HTTP source".into());
    }
    let Some(sc) = c.scenarios.get(scenario) else {
        let check =
            if scenario == "server_error_then_ok" { "retries_a_server_error" } else { "waits_out_a_rate_limit" };
        return missing(check, &format!("no `{scenario}` scenario fixture given"));
    };
    let r: Result<String, String> = async {
        let server = serve(c, Some(&sc.fixture)).await?.ok_or("no server")?;
        let run = run_once(c, scenario_builder(c, &sc.stream), &server.base_url(), &sc.stream, &MemoryState::default())
            .await?;
        succeeded(&sc.stream, &run.report)?;
        unmatched(Some(&server))?;
        if !server.unused().is_empty() {
            return Err(format!("exchange(s) {:?} of {} never requested", server.unused(), sc.file));
        }
        let retries = run.report.http.get("source").map_or(0, |h| h.retries);
        if retries == 0 {
            return Err("the source's HTTP report counts no retry".into());
        }
        Ok(format!("{}: {} retr{} then the page", sc.stream, retries, if retries == 1 { "y" } else { "ies" }))
    }
    .await;
    r.map_or_else(Outcome::Fail, Outcome::Pass)
}

async fn refreshes_on_401(c: &SourceContract) -> Outcome {
    if !c.http {
        return Outcome::NotApplicable("not an HTTP source: no credential to refresh".into());
    }
    let Some((sc, build)) = &c.refresh else {
        return missing("refreshes_on_401", "no OAuth2 refresh fixture given (`.refreshes_on_401`)");
    };
    let r: Result<String, String> = async {
        let server = serve(c, Some(&sc.fixture)).await?.ok_or("no server")?;
        let run = run_once(c, build, &server.base_url(), &sc.stream, &MemoryState::default()).await?;
        succeeded(&sc.stream, &run.report).map_err(|e| format!("the 401 was not survived: {e}"))?;
        unmatched(Some(&server))?;
        if !server.unused().is_empty() {
            return Err(format!("exchange(s) {:?} of {} never requested", server.unused(), sc.file));
        }
        let http = run.report.http.get("source").cloned().unwrap_or_default();
        let rejected = http.by_status.get("401").copied().unwrap_or(0);
        // With setup exchanges the first token goes out with them, before the run counts.
        let tokens_wanted = if c.setup.is_some() { 1 } else { 2 };
        if http.token_requests < tokens_wanted || rejected != 1 {
            return Err(format!(
                "expected one 401 followed by a token refresh: {} token request(s), {rejected} 401(s)",
                http.token_requests
            ));
        }
        match run.report.streams.get(&sc.stream).map_or(0, |s| s.written) {
            0 => Err("the retried request wrote no rows".into()),
            n => Ok(format!("{}: 401, {} token requests, then {n} record(s)", sc.stream, http.token_requests)),
        }
    }
    .await;
    r.map_or_else(Outcome::Fail, Outcome::Pass)
}

fn config_rejects_an_unknown_key(c: &SourceContract) -> Outcome {
    example_config_check(c.example_config.as_ref())
}

/// The example parses, and the same with `not_a_key` added is refused, naming it.
pub(crate) fn example_config_check(example: Option<&(serde_json::Value, super::ParseConfig)>) -> Outcome {
    let Some((example, parse)) = example else {
        return Outcome::Fail("no example config given (`.example_config::<Config>(..)`)".into());
    };
    if let Err(e) = parse(example.clone()) {
        return Outcome::Fail(format!("the example config does not deserialize: {e}"));
    }
    let mut bad = example.clone();
    let Some(obj) = bad.as_object_mut() else { return Outcome::Fail("the example config is not an object".into()) };
    obj.insert("not_a_key".into(), json!(1));
    match parse(bad) {
        Ok(()) => Outcome::Fail("`not_a_key` was accepted".into()),
        Err(e) if e.contains("not_a_key") => Outcome::Pass("the example parses; `not_a_key` is refused by name".into()),
        Err(e) => Outcome::Fail(format!("refused without naming `not_a_key`: {e}")),
    }
}

async fn no_fixture_secret_in_output(c: &SourceContract) -> Outcome {
    if c.secrets.is_empty() {
        return missing("no_fixture_secret_in_output", "no test secret given (`.secret`)");
    }
    let mut texts: Vec<(String, String)> = c
        .transcript
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(|t| ("run output".to_owned(), t.clone()))
        .collect();
    for case in &c.streams {
        for (file, f) in case.fixture.iter().chain(case.rerun.iter()) {
            texts.push((file.clone(), f.to_json()));
        }
    }
    for sc in c.scenarios.values().chain(c.refresh.iter().map(|(sc, _)| sc)) {
        texts.push((sc.file.clone(), sc.fixture.to_json()));
    }
    if let Some((file, f)) = &c.setup {
        texts.push((file.clone(), f.to_json()));
    }
    // `check` errors too (an auth failure is where a token most often leaks).
    if let Some(sc) = c.scenarios.get("unauthorized")
        && let Ok(Some(server)) = serve(c, Some(&sc.fixture)).await
        && let Ok(src) = scenario_builder(c, &sc.stream)(&server.base_url())
        && let Err(e) = src.check(&dovetail_core::Cx::default()).await
    {
        texts.push(("check error".into(), e.report()));
    }
    for secret in &c.secrets {
        if let Some((what, _)) = texts.iter().find(|(_, t)| t.contains(secret.as_str())) {
            return Outcome::Fail(format!("a test secret appears in {what}"));
        }
    }
    Outcome::Pass(format!("{} output(s) and fixture(s) scanned", texts.len()))
}
