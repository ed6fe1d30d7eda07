//! Checks about the records a stream yields: the listing ends at the last recorded page, a
//! fresh start reads everything, a changed field type is drift, a bad record is
//! dead-lettered while the rest are written, a page of truncated JSON fails the run clearly.
//! The changed inputs are derived in code from the recorded ones ([`super::data`]).

use std::time::Duration;

use dovetail_core::testing::MemoryState;
use dovetail_core::{
    Cx, DeliveryStore, DriftClass, HistoryStore, Next, ReadRequest, RunOutcome, RunReport, StreamSpec,
};
use serde_json::Value;

use super::checks::{PIPELINE, Run, builder, cases, per_case, run_once, serve, succeeded, unmatched};
use super::data::{self, Data, Live};
use super::{Outcome, SourceContract, StreamCase};
use crate::format::{Body, Fixture};

/// A run that has not ended after this long is a listing that never stops.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// Pages a direct read follows before calling the listing endless.
const MAX_PAGES: usize = 10_000;

/// Per stream: `Ok(Ok(detail))` passed, `Ok(Err(why))` does not apply, `Err(why)` failed.
type StreamResult = Result<Result<String, String>, String>;

/// Collect per-stream results into one outcome, keeping each stream's detail.
fn summarize(results: Vec<(String, StreamResult)>) -> Outcome {
    let fails: Vec<String> =
        results.iter().filter_map(|(s, r)| r.as_ref().err().map(|e| format!("{s}: {e}"))).collect();
    if !fails.is_empty() {
        return Outcome::Fail(fails.join("; "));
    }
    let pass: Vec<String> =
        results.iter().filter_map(|(s, r)| r.as_ref().ok()?.as_ref().ok().map(|d| format!("{s} ({d})"))).collect();
    let na: Vec<String> =
        results.iter().filter_map(|(s, r)| r.as_ref().ok()?.as_ref().err().map(|d| format!("{s} ({d})"))).collect();
    match (pass.is_empty(), na.is_empty()) {
        (true, true) => Outcome::Fail("no stream to check".into()),
        (true, false) => Outcome::Fail(format!("no stream could be checked: {}", na.join("; "))),
        (false, true) => Outcome::Pass(pass.join("; ")),
        (false, false) => Outcome::Pass(format!("{}; n/a: {}", pass.join("; "), na.join("; "))),
    }
}

/// Run `case` over `data` on `state`, within [`RUN_LIMIT`].
async fn run_over(
    c: &SourceContract,
    case: &StreamCase,
    data: Option<&Data>,
    state: &MemoryState,
) -> Result<(Run, Live), String> {
    let live = data::live(c, case, data).await?;
    let run = tokio::time::timeout(RUN_LIMIT, run_once(c, &live.build, &live.url, &case.name, state))
        .await
        .map_err(|_| format!("the run did not end within {}s", RUN_LIMIT.as_secs()))??;
    Ok((run, live))
}

fn written(r: &RunReport, stream: &str) -> u64 {
    r.streams.get(stream).map_or(0, |s| s.written)
}

/// The stream's spec as the case's source declares it, after its discovery (as a run sees it).
async fn spec(live: &Live, stream: &str) -> Result<StreamSpec, String> {
    let src = (live.build)(&live.url).map_err(|e| format!("building the source failed: {}", e.report()))?;
    src.discover(&Cx::default()).await.map_err(|e| format!("the source's discovery failed: {}", e.report()))?;
    src.streams().into_iter().find(|s| s.name == stream).ok_or_else(|| format!("the source declares no `{stream}`"))
}

/// The run over the recorded fixture asks for nothing beyond it, uses every recorded page
/// and ends.
pub(super) async fn stops_at_the_last_page(c: &SourceContract) -> Outcome {
    if !c.http {
        return Outcome::NotApplicable(
            "not an HTTP source: it reads local data to its end, there are no pages to follow".into(),
        );
    }
    let results = per_case(c, async |case| {
        let data = data::of(case);
        let (run, live) = run_over(c, case, data.as_ref(), &MemoryState::default()).await?;
        succeeded(&case.name, &run.report)?;
        let server = live.server.as_ref().ok_or("no replay server")?;
        unmatched(Some(server))?;
        // Unused exchanges are no failure: a fixture may also hold a later run's requests
        // (an incremental `since`); `syncs_each_stream` checks the pass completed.
        let sent: usize = server.served().iter().sum();
        Ok(Ok(format!("{sent} request(s), none beyond the recording, the run ended")))
    })
    .await;
    results.map_or_else(|o| o, summarize)
}

/// Every record a direct read of the data yields (records and rejects).
async fn direct_read(live: &Live, stream: &str) -> Result<u64, String> {
    let src = (live.build)(&live.url).map_err(|e| format!("building the source failed: {}", e.report()))?;
    let (mut position, mut total) = (None, 0u64);
    for _ in 0..MAX_PAGES {
        let req = ReadRequest { stream: stream.to_owned(), position, since: None, batch_size: 100, use_cache: false };
        let page = src.read(&req, &Cx::default()).await.map_err(|e| format!("a direct read failed: {}", e.report()))?;
        total += (page.records.len() + page.rejects.len()) as u64;
        match page.next {
            Next::More(p) | Next::Later(p) => position = Some(p),
            Next::Done { .. } => return Ok(total),
        }
    }
    Err(format!("a direct read did not end within {MAX_PAGES} pages"))
}

/// With an empty state every record of the data arrives: as many as a direct read of the
/// source yields, written or dead-lettered, none filtered away.
pub(super) async fn fresh_start_reads_everything(c: &SourceContract) -> Outcome {
    let results = per_case(c, async |case| {
        let data = data::of(case);
        let direct = direct_read(&data::live(c, case, data.as_ref()).await?, &case.name).await?;
        let (run, _live) = run_over(c, case, data.as_ref(), &MemoryState::default()).await?;
        succeeded(&case.name, &run.report)?;
        let s = run.report.streams.get(&case.name).cloned().unwrap_or_default();
        if direct == 0 {
            return Err("the data holds no record: the check proves nothing".into());
        }
        // Local records are counted as given: a source losing some is caught here.
        if let Some(given) = &case.records
            && given.len() as u64 != direct
        {
            return Err(format!("{} record(s) given, a direct read of the source yields {direct}", given.len()));
        }
        if s.read != direct || s.written + s.dead_lettered != direct || s.filtered > 0 {
            return Err(format!(
                "a direct read yields {direct} record(s); the run read {}, wrote {}, dead-lettered {}, filtered {}",
                s.read, s.written, s.dead_lettered, s.filtered
            ));
        }
        Ok(Ok(format!("{direct} of {direct}")))
    })
    .await;
    results.map_or_else(|o| o, summarize)
}

/// Fields of `record` whose type the check may change: strings and numbers that are
/// neither a primary key nor the cursor (changing those tests other promises).
fn candidates(record: &Value, spec: &StreamSpec) -> Vec<String> {
    let reserved: Vec<String> =
        spec.primary_key.iter().chain(spec.cursor_field.iter()).map(ToString::to_string).collect();
    record
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, v)| (v.is_string() || v.is_number()) && !reserved.contains(k))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Fields tried before giving up: a typed connector may refuse a changed field (a dead
/// letter, also recorded) where another field of the same record is passed through.
const DRIFT_TRIES: usize = 8;

/// A copy of a stream's data with one field's JSON type changed yields a `type_changed`
/// drift event, measured against the baseline the unchanged data established.
pub(super) async fn drift_on_changed_field_type(c: &SourceContract) -> Outcome {
    let results = per_case(c, async |case| {
        let Some(data) = data::of(case) else {
            return Ok(Err("a local stream without records given to the contract: nothing to change".into()));
        };
        let Some(first) = data::first_record(&data) else {
            return Err("no record found in the data (no array of objects in a successful response)".into());
        };
        // The unchanged data sets the baseline (declared, or inferred from the first page).
        let state = MemoryState::default();
        let (run, live) = run_over(c, case, Some(&data), &state).await?;
        succeeded(&case.name, &run.report)?;
        let spec = spec(&live, &case.name).await?;
        let baseline = state
            .baseline(PIPELINE, &case.name)
            .await
            .map_err(|e| e.report())?
            .ok_or("the run stored no schema baseline")?;
        let mut refused = Vec::new();
        for field in candidates(&first, &spec).into_iter().take(DRIFT_TRIES) {
            let Some((changed, what)) = data::with_type_changed(&data, &field) else { continue };
            let state = MemoryState::default();
            state.save_baseline(PIPELINE, &case.name, &baseline).await.map_err(|e| e.report())?;
            let (run, _live) = run_over(c, case, Some(&changed), &state).await?;
            let s = run.report.streams.get(&case.name).cloned().unwrap_or_default();
            if let Some(e) = s.drift.iter().find(|e| e.change == DriftClass::TypeChanged) {
                return Ok(Ok(format!(
                    "`{field}` {what}: {} at {} ({} → {})",
                    e.change, e.path, e.expected, e.observed
                )));
            }
            refused.push(format!("`{field}`: {} dead-lettered, outcome {}", s.dead_lettered, run.report.outcome));
        }
        if refused.is_empty() {
            return Err(format!("the first record has no string or number field to change: {first}"));
        }
        Err(format!("no type_changed drift event for any changed field: {}", refused.join(", ")))
    })
    .await;
    results.map_or_else(|o| o, summarize)
}

/// A copy of a stream's data with its first record made permanently bad: that record is
/// dead-lettered with a reason, every other record is written.
pub(super) async fn bad_record_dead_lettered(c: &SourceContract) -> Outcome {
    let results = per_case(c, async |case| {
        let Some(data) = data::of(case) else {
            return Ok(Err("a local stream without records given to the contract: nothing to break".into()));
        };
        let (good, live) = run_over(c, case, Some(&data), &MemoryState::default()).await?;
        succeeded(&case.name, &good.report)?;
        let rows = good.sink.rows(&case.name).len();
        if rows < 2 {
            return Err(format!("{rows} row(s): one bad record among others needs at least two"));
        }
        let spec = spec(&live, &case.name).await?;
        let key = spec.primary_key.first().map(ToString::to_string).filter(|k| !k.contains(['.', '[']));
        let (broken, what) =
            data::with_first_record_broken(&data, key.as_deref()).ok_or("no record found in the data")?;
        let state = MemoryState::default();
        let (bad, _live) = run_over(c, case, Some(&broken), &state).await?;
        succeeded(&case.name, &bad.report).map_err(|e| format!("one bad record ({what}) failed the run: {e}"))?;
        let dead = state.dead_letters(Some(PIPELINE), Some(&case.name), 100).await.map_err(|e| e.report())?;
        let left = bad.sink.rows(&case.name).len();
        match dead.as_slice() {
            [d] if !d.reason.trim().is_empty() && left + 1 == rows => Ok(Ok(format!(
                "{what}: dead-lettered ({}), {left} of {rows} written",
                d.reason.chars().take(80).collect::<String>()
            ))),
            [d] if d.reason.trim().is_empty() => Err("the dead letter has no reason".into()),
            _ => Err(format!(
                "{what}: {} dead letter(s) and {left} row(s); expected 1 and {}, written {}",
                dead.len(),
                rows - 1,
                written(&bad.report, &case.name)
            )),
        }
    })
    .await;
    results.map_or_else(|o| o, summarize)
}

/// The first page of the first stream answered 200 with a truncated JSON body: the run ends
/// with an error naming what failed (never a panic, never a success), and writes nothing.
pub(super) async fn malformed_page_fails_clearly(c: &SourceContract) -> Outcome {
    if !c.http {
        return Outcome::NotApplicable("not an HTTP source: no page to malform".into());
    }
    let case = match cases(c) {
        Ok(cs) => &cs[0],
        Err(e) => return Outcome::Fail(e),
    };
    let Some((file, fixture)) = &case.fixture else { return Outcome::Fail("the stream has no fixture".into()) };
    let Some(at) = fixture.exchanges.iter().position(|x| (200..300).contains(&x.response.status)) else {
        return Outcome::Fail(format!("{file} has no successful exchange to malform"));
    };
    let mut exchanges = fixture.exchanges.clone();
    exchanges[at].response.headers.insert("content-type".into(), "application/json".into());
    exchanges[at].response.body = Body::text("{\"data\": [{\"id\": 1, \"name\": \"trunc");
    let malformed = Fixture::new(exchanges);
    let r: Result<String, String> = async {
        let server = serve(c, Some(&malformed)).await?.ok_or("no server")?;
        let run = run_once(c, builder(c, case), &server.base_url(), &case.name, &MemoryState::default()).await?;
        let error = run.report.error.clone().unwrap_or_default();
        if run.report.outcome == RunOutcome::Succeeded {
            return Err(format!("a page of malformed JSON (exchange {at} of {file}) was accepted"));
        }
        if error.trim().is_empty() {
            return Err(format!("the run ended {} without an error message", run.report.outcome));
        }
        match run.sink.rows(&case.name).len() {
            0 => Ok(format!("{}: {} (exit {}): {}", case.name, run.report.outcome, run.report.exit_code, error)),
            n => Err(format!("{n} row(s) written from a malformed page")),
        }
    }
    .await;
    r.map_or_else(Outcome::Fail, Outcome::Pass)
}
