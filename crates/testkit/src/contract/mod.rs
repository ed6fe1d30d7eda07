//! The connector contract suite: what docs/design.md promises for every source, checked
//! against the connector's own recorded fixtures through the real engine
//! ([`dovetail_core::Pipeline`] with [`MemorySink`](dovetail_core::testing::MemorySink) and
//! [`MemoryState`](dovetail_core::testing::MemoryState)).
//!
//! A connector's `tests/contract.rs` builds a [`SourceContract`] and awaits
//! [`SourceContract::run`]. Every check prints one line
//!
//! ```text
//! contract: <connector> <check> pass|fail|skip|n/a <reason>
//! ```
//!
//! (`cargo xtask contract` parses these lines), and `run` panics at the end when a check
//! failed. A check that lacks what it needs (no scenario fixture, no pinned header) fails,
//! naming what to give; the connector skips it only by stating why,
//! [`SourceContract::skip`]. `n/a` is left for what cannot apply to the kind of connector
//! (HTTP checks on a local source). A connector with an HTTP source may skip a
//! failure-scenario check ([`FAILURE_SCENARIOS`]) only with [`Skip::VendorCannot`].
//!
//! ```text
//! SourceContract::http("github", |base_url| GithubSource::build(config(base_url), &BuildCx::default()))
//!     .fixtures_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"))
//!     .stream("releases", "releases.json")
//!     .scenario("unauthorized", "releases", "bad_token.json")
//!     .version_header("x-github-api-version")
//!     .secret("ghp_fixture_token_not_real")
//!     .example_config::<GithubConfig>(example)
//!     .run()
//!     .await;
//! ```

mod checks;
mod data;
mod records;
mod sink;
mod snapshots;

pub use checks::CHECKS;
pub use sink::{ReadBack, SinkContract};

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use dovetail_core::{Error, Source};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::format::Fixture;

/// The line prefix of every check result printed by [`SourceContract::run`].
pub const LINE_PREFIX: &str = "contract:";

/// Scenario names [`SourceContract::scenario`] understands.
pub const SCENARIOS: &[&str] = &["unauthorized", "server_error_then_ok", "rate_limited_then_ok"];

/// The checks that prove what a source does when the vendor misbehaves (401, 5xx, 429,
/// drift, a malformed page or record): an HTTP source skips one only with
/// [`Skip::VendorCannot`].
pub const FAILURE_SCENARIOS: &[&str] = &[
    "unauthorized_fails_clearly",
    "retries_a_server_error",
    "waits_out_a_rate_limit",
    "refreshes_on_401",
    "malformed_page_fails_clearly",
    "drift_on_changed_field_type",
    "bad_record_dead_lettered_rest_continue",
];

/// Why a connector skips a check ([`SourceContract::skip`]); printed in its `skip` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The connector does not do what the check needs (yet): why.
    Because(String),
    /// The vendor cannot produce the scenario at all (it never answers 429, it has no
    /// OAuth2): why. The only skip a failure-scenario check of an HTTP source accepts.
    VendorCannot(String),
}

impl Skip {
    /// The stated reason, with `vendor cannot:` in front of a [`Skip::VendorCannot`].
    pub fn reason(&self) -> String {
        match self {
            Skip::Because(r) => r.clone(),
            Skip::VendorCannot(r) => format!("vendor cannot: {r}"),
        }
    }
}

impl From<&str> for Skip {
    fn from(reason: &str) -> Skip {
        Skip::Because(reason.to_owned())
    }
}

/// Builds the source under test from the replay server's base URL (`""` for a source that
/// speaks no HTTP).
pub type BuildSource = Arc<dyn Fn(&str) -> Result<Arc<dyn Source>, Error> + Send + Sync>;

/// Builds a local source over the given records of one stream (the test writes them where
/// the source reads, e.g. a JSONL file in a temp dir): `(stream, records)`.
pub type BuildOver = Arc<dyn Fn(&str, &[Value]) -> Result<Arc<dyn Source>, Error> + Send + Sync>;

/// What one check concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The promise holds.
    Pass(String),
    /// The promise is broken: why.
    Fail(String),
    /// The connector skipped the check, stating why ([`SourceContract::skip`]): the reason.
    Skipped(String),
    /// The check cannot apply to this kind of connector (an HTTP check on a local source).
    NotApplicable(String),
}

impl Outcome {
    /// `pass`, `fail`, `skip` or `n/a`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Pass(_) => "pass",
            Outcome::Fail(_) => "fail",
            Outcome::Skipped(_) => "skip",
            Outcome::NotApplicable(_) => "n/a",
        }
    }
    /// The reason (or, for a pass, what was checked).
    pub fn reason(&self) -> &str {
        match self {
            Outcome::Pass(r) | Outcome::Fail(r) | Outcome::Skipped(r) | Outcome::NotApplicable(r) => r,
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// Connector name.
    pub connector: String,
    /// Check name (`syncs_each_stream_to_the_last_page`, ...).
    pub check: &'static str,
    /// What it concluded.
    pub outcome: Outcome,
}

impl fmt::Display for CheckResult {
    /// `contract: <connector> <check> pass|fail|skip|n/a <reason>`, on one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = self.outcome.reason().split_whitespace().collect::<Vec<_>>().join(" ");
        write!(f, "{LINE_PREFIX} {} {} {} {reason}", self.connector, self.check, self.outcome.label())
    }
}

/// One stream to sync: its happy-path fixture (HTTP sources) and, optionally, its own builder.
#[derive(Clone)]
pub(crate) struct StreamCase {
    pub(crate) name: String,
    pub(crate) fixture: Option<(String, Fixture)>,
    pub(crate) build: Option<BuildSource>,
    /// What the second run of `rerun_writes_nothing` replays, when it sends other requests
    /// than the first (an incremental `since` from the checkpoint).
    pub(crate) rerun: Option<(String, Fixture)>,
    /// The records a local source reads for this stream (given with
    /// [`SourceContract::records`]), so checks can derive changed copies of them.
    pub(crate) records: Option<Vec<Value>>,
    /// The stream reads newest-first and a resumed pass restarts at the newest page
    /// ([`SourceContract::restarts_on_resume`]).
    pub(crate) restarts: bool,
}

/// A scenario fixture: the stream it runs and the exchanges it replays.
#[derive(Clone)]
pub(crate) struct Scenario {
    pub(crate) stream: String,
    pub(crate) file: String,
    pub(crate) fixture: Fixture,
}

pub(crate) type ParseConfig = Arc<dyn Fn(Value) -> Result<(), String> + Send + Sync>;

/// The contract of one source connector, built by its `tests/contract.rs`.
pub struct SourceContract {
    pub(crate) connector: String,
    pub(crate) build: BuildSource,
    pub(crate) http: bool,
    pub(crate) fixtures_dir: Option<PathBuf>,
    pub(crate) streams: Vec<StreamCase>,
    pub(crate) scenarios: BTreeMap<String, Scenario>,
    /// Exchanges every replay server also answers: what the source asks before its streams
    /// are known ([`SourceContract::setup`]).
    pub(crate) setup: Option<(String, Fixture)>,
    pub(crate) version_header: Option<String>,
    pub(crate) secrets: Vec<String>,
    pub(crate) example_config: Option<(Value, ParseConfig)>,
    /// Where the committed insta snapshots of schemas and mappings live.
    pub(crate) snapshots_dir: Option<PathBuf>,
    /// How a local source is built over given records (`local_records`).
    pub(crate) over: Option<BuildOver>,
    /// The connector authenticates with OAuth2: the `refreshes_on_401` scenario and the
    /// builder it needs.
    pub(crate) refresh: Option<(Scenario, BuildSource)>,
    /// Checks the connector skips, and why.
    pub(crate) skips: BTreeMap<String, Skip>,
    /// Everything the runs produced that a user could see (reports, errors, dead letters),
    /// scanned for secrets by the last check.
    pub(crate) transcript: Mutex<Vec<String>>,
}

impl fmt::Debug for SourceContract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceContract")
            .field("connector", &self.connector)
            .field("http", &self.http)
            .field("streams", &self.streams.iter().map(|s| &s.name).collect::<Vec<_>>())
            .field("scenarios", &self.scenarios.keys().collect::<Vec<_>>())
            .field("version_header", &self.version_header)
            .field("skips", &self.skips)
            .finish_non_exhaustive()
    }
}

fn wrap<S, F>(build: F) -> BuildSource
where
    S: Source + 'static,
    F: Fn(&str) -> Result<S, Error> + Send + Sync + 'static,
{
    Arc::new(move |base_url: &str| build(base_url).map(|s| Arc::new(s) as Arc<dyn Source>))
}

impl SourceContract {
    /// The contract of an HTTP source: `build` gets the replay server's base URL.
    pub fn http<S, F>(connector: &str, build: F) -> SourceContract
    where
        S: Source + 'static,
        F: Fn(&str) -> Result<S, Error> + Send + Sync + 'static,
    {
        SourceContract::new(connector, wrap(build), true)
    }

    /// The contract of a source that speaks no HTTP (files, databases): `build` makes the
    /// source over data the test prepared; the HTTP checks are `n/a`.
    pub fn local<S, F>(connector: &str, build: F) -> SourceContract
    where
        S: Source + 'static,
        F: Fn() -> Result<S, Error> + Send + Sync + 'static,
    {
        SourceContract::new(connector, wrap(move |_: &str| build()), false)
    }

    fn new(connector: &str, build: BuildSource, http: bool) -> SourceContract {
        SourceContract {
            connector: connector.to_owned(),
            build,
            http,
            fixtures_dir: None,
            streams: Vec::new(),
            scenarios: BTreeMap::new(),
            setup: None,
            version_header: None,
            secrets: Vec::new(),
            example_config: None,
            snapshots_dir: None,
            over: None,
            refresh: None,
            skips: BTreeMap::new(),
            transcript: Mutex::new(Vec::new()),
        }
    }

    /// Where relative fixture file names are found (usually
    /// `concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures")`).
    pub fn fixtures_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.fixtures_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// A stream and its happy-path fixture (the whole first sync, to the last page).
    ///
    /// # Panics
    /// When the fixture file cannot be loaded.
    pub fn stream(mut self, name: &str, fixture: &str) -> Self {
        let f = self.load(fixture);
        self.streams.push(StreamCase {
            name: name.to_owned(),
            fixture: Some((fixture.to_owned(), f)),
            build: None,
            rerun: None,
            records: None,
            restarts: false,
        });
        self
    }

    /// A stream whose fixture needs a differently configured source (other repositories,
    /// another owner type, ...).
    ///
    /// # Panics
    /// When the fixture file cannot be loaded.
    pub fn stream_with<S, F>(mut self, name: &str, fixture: &str, build: F) -> Self
    where
        S: Source + 'static,
        F: Fn(&str) -> Result<S, Error> + Send + Sync + 'static,
    {
        let f = self.load(fixture);
        self.streams.push(StreamCase {
            name: name.to_owned(),
            fixture: Some((fixture.to_owned(), f)),
            build: Some(wrap(build)),
            rerun: None,
            records: None,
            restarts: false,
        });
        self
    }

    /// A stream of a local source (no fixture: the data is what the builder reads).
    pub fn local_stream(mut self, name: &str) -> Self {
        self.streams.push(StreamCase {
            name: name.to_owned(),
            fixture: None,
            build: None,
            rerun: None,
            records: None,
            restarts: false,
        });
        self
    }

    /// The contract of a local source built over records the contract hands it (`build`
    /// gets the stream and its records and writes them where the source reads): the data
    /// checks (drift, a bad record) then run on changed copies of each stream's records.
    pub fn local_records<S, F>(connector: &str, build: F) -> SourceContract
    where
        S: Source + 'static,
        F: Fn(&str, &[Value]) -> Result<S, Error> + Send + Sync + 'static,
    {
        let over: BuildOver = Arc::new(move |stream: &str, records: &[Value]| {
            build(stream, records).map(|s| Arc::new(s) as Arc<dyn Source>)
        });
        let name = connector.to_owned();
        let no_default: BuildSource = Arc::new(move |_: &str| {
            Err(Error::config(format!("contract {name}: a local_records source is built per stream")))
        });
        let mut c = SourceContract::new(connector, no_default, false);
        c.over = Some(over);
        c
    }

    /// A stream of a [`local_records`](Self::local_records) source and the records it reads.
    ///
    /// # Panics
    /// When the contract was not made with `local_records`.
    pub fn records(mut self, stream: &str, records: Vec<Value>) -> Self {
        let Some(over) = self.over.clone() else {
            panic!("contract {}: `records` needs SourceContract::local_records", self.connector)
        };
        let (name, data) = (stream.to_owned(), records.clone());
        let build: BuildSource = Arc::new(move |_: &str| over(&name, &data));
        self.streams.push(StreamCase {
            name: stream.to_owned(),
            fixture: None,
            build: Some(build),
            rerun: None,
            records: Some(records),
            restarts: false,
        });
        self
    }

    /// Where the committed insta snapshots of stream schemas and mappings are (usually
    /// `concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots")`).
    pub fn snapshots_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.snapshots_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// The connector uses OAuth2: `fixture` replays a 401, a token refresh and the page
    /// again for `stream`, read by a source from `build` (configured for OAuth2).
    ///
    /// # Panics
    /// When the fixture file cannot be loaded.
    pub fn refreshes_on_401<S, F>(mut self, stream: &str, fixture: &str, build: F) -> Self
    where
        S: Source + 'static,
        F: Fn(&str) -> Result<S, Error> + Send + Sync + 'static,
    {
        let f = self.load(fixture);
        let sc = Scenario { stream: stream.to_owned(), file: fixture.to_owned(), fixture: f };
        self.refresh = Some((sc, wrap(build)));
        self
    }

    /// The fixture the second run of a stream replays (`rerun_writes_nothing`), for a
    /// stream whose rerun sends different requests (an incremental `since` taken from the
    /// checkpoint). Without it the second run replays the stream's own fixture.
    ///
    /// # Panics
    /// When the stream was not added before, or the fixture file cannot be loaded.
    pub fn rerun(mut self, stream: &str, fixture: &str) -> Self {
        let f = self.load(fixture);
        let Some(case) = self.streams.iter_mut().find(|s| s.name == stream) else {
            panic!("contract {}: rerun fixture for unknown stream `{stream}`", self.connector)
        };
        case.rerun = Some((fixture.to_owned(), f));
        self
    }

    /// `stream` reads newest-first and restarts its descent at the newest page when a run
    /// resumes an unfinished pass: `resumes_from_a_checkpoint` checks that the resumed run
    /// fetched the first page again (instead of checking that it did not).
    ///
    /// # Panics
    /// When the stream was not added before.
    pub fn restarts_on_resume(mut self, stream: &str) -> Self {
        let Some(case) = self.streams.iter_mut().find(|s| s.name == stream) else {
            panic!("contract {}: restarts_on_resume for unknown stream `{stream}`", self.connector)
        };
        case.restarts = true;
        self
    }

    /// A scenario fixture for `stream`, by name: `unauthorized` (a rejected credential),
    /// `server_error_then_ok` (a 5xx, then the page), `rate_limited_then_ok` (a 429 or the
    /// vendor's rate-limit answer with a short wait, then the page).
    ///
    /// # Panics
    /// On an unknown scenario name, or when the fixture file cannot be loaded.
    pub fn scenario(mut self, name: &str, stream: &str, fixture: &str) -> Self {
        assert!(SCENARIOS.contains(&name), "unknown contract scenario `{name}`; known: {SCENARIOS:?}");
        let f = self.load(fixture);
        self.scenarios
            .insert(name.to_owned(), Scenario { stream: stream.to_owned(), file: fixture.to_owned(), fixture: f });
        self
    }

    /// Setup exchanges: what the source asks before its streams are known (a properties
    /// API its schema comes from, account info). Every replay server of the suite answers
    /// them when none of the served fixture's own exchanges matches — a scenario may still
    /// record its own answer to the same request (a 401) — and does not count them, so the
    /// checks about which pages were fetched look at the stream's fixture only. The schema
    /// check serves them too. An OAuth2 source may fetch its first token with them, before
    /// the run starts counting: `refreshes_on_401` then wants one token request in the run.
    ///
    /// # Panics
    /// When the fixture file cannot be loaded.
    pub fn setup(mut self, fixture: &str) -> Self {
        let f = self.load(fixture);
        self.setup = Some((fixture.to_owned(), f));
        self
    }

    /// The request header the connector pins its API version with (`x-github-api-version`).
    pub fn version_header(mut self, name: &str) -> Self {
        self.version_header = Some(name.to_ascii_lowercase());
        self
    }

    /// A credential the builder uses (a fake one): it must never appear in reports, errors,
    /// dead letters or fixture files.
    pub fn secret(mut self, value: &str) -> Self {
        self.secrets.push(value.to_owned());
        self
    }

    /// The connector's example config (as in its README) and its config type: it must
    /// deserialize, and the same with an unknown key must not.
    pub fn example_config<C: DeserializeOwned>(mut self, example: Value) -> Self {
        let parse: ParseConfig =
            Arc::new(|v: Value| serde_json::from_value::<C>(v).map(|_| ()).map_err(|e| e.to_string()));
        self.example_config = Some((example, parse));
        self
    }

    /// Skip `check`, stating why: its line says `skip` with the reason, counted apart from
    /// passes. A skipped check that passes fails (remove the skip); an HTTP source's
    /// failure-scenario check ([`FAILURE_SCENARIOS`]) accepts only [`Skip::VendorCannot`].
    ///
    /// # Panics
    /// When `check` names no check of the suite.
    pub fn skip(mut self, check: &str, why: impl Into<Skip>) -> Self {
        assert!(checks::CHECKS.contains(&check), "skip: unknown contract check `{check}`; known: {:?}", checks::CHECKS);
        self.skips.insert(check.to_owned(), why.into());
        self
    }

    /// What a check's outcome becomes given the connector's declared skip, if any.
    fn settle(&self, check: &str, outcome: Outcome) -> Outcome {
        let Some(skip) = self.skips.get(check) else { return outcome };
        let reason = skip.reason();
        match outcome {
            Outcome::Pass(what) => Outcome::Fail(format!("skipped ({reason}) but it passes ({what}): remove the skip")),
            na @ Outcome::NotApplicable(_) => na,
            _ if self.http && FAILURE_SCENARIOS.contains(&check) && !matches!(skip, Skip::VendorCannot(_)) => {
                Outcome::Fail(format!(
                    "an HTTP source skips a failure scenario only when the vendor cannot produce it \
                     (`Skip::VendorCannot(why)`); stated: {reason}"
                ))
            }
            _ => Outcome::Skipped(reason),
        }
    }

    fn load(&self, file: &str) -> Fixture {
        let path = match &self.fixtures_dir {
            Some(dir) => dir.join(file),
            None => PathBuf::from(file),
        };
        Fixture::load(&path).unwrap_or_else(|e| panic!("contract {}: {e}", self.connector))
    }

    /// Run every check, print one `contract:` line each, and return the results (no panic).
    pub async fn results(&self) -> Vec<CheckResult> {
        let mut out = Vec::new();
        for (check, outcome) in checks::run_all(self).await {
            let outcome = self.settle(check, outcome);
            let r = CheckResult { connector: self.connector.clone(), check, outcome };
            println!("{r}");
            out.push(r);
        }
        out
    }

    /// Run every check and print one `contract:` line each.
    ///
    /// # Panics
    /// When any check failed (listing the failures), so `cargo test` fails.
    pub async fn run(self) {
        let results = self.results().await;
        let failed: Vec<String> =
            results.iter().filter(|r| matches!(r.outcome, Outcome::Fail(_))).map(ToString::to_string).collect();
        assert!(failed.is_empty(), "{} contract check(s) failed:\n{}", failed.len(), failed.join("\n"));
    }

    pub(crate) fn note(&self, text: String) {
        self.transcript.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(http: bool) -> SourceContract {
        let build: BuildSource = Arc::new(|_: &str| Err(Error::config("not built in this test")));
        SourceContract::new("t", build, http)
    }

    #[test]
    fn a_skip_states_why_and_a_failure_scenario_of_an_http_source_needs_vendor_cannot() {
        let missing = || Outcome::Fail("no `rate_limited_then_ok` scenario fixture given".into());
        let c = contract(true).skip("waits_out_a_rate_limit", "not recorded yet");
        let o = c.settle("waits_out_a_rate_limit", missing());
        assert!(matches!(&o, Outcome::Fail(r) if r.contains("VendorCannot")), "{o:?}");
        let c = contract(true).skip("waits_out_a_rate_limit", Skip::VendorCannot("it never answers 429".into()));
        assert_eq!(
            c.settle("waits_out_a_rate_limit", missing()),
            Outcome::Skipped("vendor cannot: it never answers 429".into())
        );
        // Not a failure scenario, or not an HTTP source: any stated reason does.
        let c = contract(true).skip("sends_the_pinned_version_header", "the API has no versions");
        assert_eq!(c.settle("sends_the_pinned_version_header", missing()).label(), "skip");
        let c = contract(false).skip("no_fixture_secret_in_output", "no credential");
        assert_eq!(c.settle("no_fixture_secret_in_output", missing()).label(), "skip");
        // A skip that is not needed fails; without a skip the outcome stands.
        let o = c.settle("no_fixture_secret_in_output", Outcome::Pass("scanned".into()));
        assert!(matches!(&o, Outcome::Fail(r) if r.contains("remove the skip")), "{o:?}");
        assert_eq!(contract(true).settle("waits_out_a_rate_limit", missing()).label(), "fail");
    }

    #[test]
    #[should_panic(expected = "unknown contract check")]
    fn a_skip_must_name_a_check() {
        let _ = contract(true).skip("no_such_check", "typo");
    }
}
