//! `dovetail run`: run pipelines one after the other (the engine holds each one's run
//! lock) and print what each did.

use std::path::Path;
use std::sync::Arc;

use dovetail_core::{Error, ErrorKind, RunOptions, RunOutcome, RunReport, StateStore};
use tokio_util::sync::CancellationToken;

use crate::cli::RunArgs;
use crate::config::{self, PipelineSpec, Project};
use crate::{diag, output};

/// Run the selected pipelines (once, or every `--every`); the exit code is the first
/// failure's (0 if all succeeded).
pub async fn run(config_path: &Path, args: &RunArgs) -> anyhow::Result<i32> {
    // Before the config is loaded: connectors build HTTP clients that cache metric handles.
    let metrics = match &args.metrics_addr {
        Some(addr) => Some(crate::metrics::serve(addr).await?),
        None => None,
    };
    let project = config::load(config_path)?;
    let selected = select(&project, &args.pipelines)?;
    check_streams(&project, &selected, &args.streams)?;
    let state = super::open_state(&project.state_path)?;
    crate::stores::share_budgets(&project.state_path);
    if metrics.is_some() {
        register_state_check(&state);
    }
    let cancel = super::cancel_on_signal();
    let state_path = project.state_path.as_path();
    let batch = Batch { selected, args, state, state_path, cancel, metrics: metrics.is_some() };
    match args.every {
        Some(every) => crate::schedule::run_every(&batch, every).await,
        None => Ok(batch.run().await),
    }
}

/// `/readyz` passes while the state store answers a cheap query (its pauses, usually none).
pub fn register_state_check(state: &Arc<dyn StateStore>) {
    let state = Arc::clone(state);
    crate::health::readiness().register(
        "state",
        Arc::new(move || {
            let state = Arc::clone(&state);
            Box::pin(async move { state.paused(None).await.map(|_| ()).map_err(|e| e.report()) })
        }),
    );
}

/// The pipelines one `dovetail run` runs, with what each run needs.
pub struct Batch<'a> {
    /// Pipelines, in order.
    pub selected: Vec<&'a PipelineSpec>,
    /// The command line.
    pub args: &'a RunArgs,
    /// The state store.
    pub state: Arc<dyn StateStore>,
    /// Where the state is (a path, or PostgreSQL's password-free label), for the story.
    pub state_path: &'a Path,
    /// Cancelled by SIGTERM / ctrl-c.
    pub cancel: CancellationToken,
    /// Whether `--metrics-addr` is on (progress is then counted into metrics).
    pub metrics: bool,
}

impl Batch<'_> {
    /// Runs each pipeline once, in order; the exit code is the first failure's (0 if all succeeded).
    pub async fn run(&self) -> i32 {
        let (args, cancel) = (self.args, &self.cancel);
        let mut code = 0;
        for &spec in &self.selected {
            if cancel.is_cancelled() {
                code = first(code, ErrorKind::Interrupted.exit_code());
                break;
            }
            let names = spec.stream_names();
            let streams: Vec<String> = args.streams.iter().filter(|s| names.contains(s)).cloned().collect();
            if !args.streams.is_empty() && streams.is_empty() {
                tracing::info!(pipeline = %spec.name, "skipped: none of the requested streams belongs to it");
                continue;
            }
            tracing::info!(pipeline = %spec.name, dry_run = args.dry_run, "run starting");
            let (show, metrics) = (!args.json, self.metrics);
            let progress = move |source| {
                let bars = if show { crate::progress::for_run(Some(source)) } else { None };
                if metrics { Some(crate::metrics::PipelineProgress::shared(&spec.name, bars)) } else { bars }
            };
            let opts = RunOptions {
                streams,
                dry_run: args.dry_run,
                cancel: cancel.clone(),
                from: from_value(args),
                progress: None,
                limit: args.limit,
                fence: None,
            };
            let alerts = spec.alerts.as_ref().filter(|_| !args.dry_run);
            let before = match alerts {
                Some(a) => crate::alerts::before(a, &spec.name, &self.state).await,
                None => Default::default(),
            };
            let started_at = dovetail_core::now_rfc3339();
            crate::metrics::in_progress(&spec.name, true);
            let result = run_one(spec, self.state.clone(), opts, progress).await;
            crate::metrics::in_progress(&spec.name, false);
            match result {
                Ok(report) => {
                    crate::metrics::run_finished(&report);
                    if let Err(e) = print_report(args, &report) {
                        tracing::error!(error = %e, "cannot print the run report");
                    }
                    if !args.json && !args.dry_run && !output::quiet() {
                        self.tell(&report).await;
                    }
                    let c = report_code(&report);
                    if let Some(e) = report.error.as_ref().filter(|_| c != 0) {
                        crate::progress::flush_logs();
                        eprintln!("dovetail: pipeline `{}` {}: {e}", report.pipeline, report.outcome);
                        if let Some(next) = &report.next_step {
                            eprintln!("  what to do: {next}");
                        }
                    }
                    if let Some(a) = alerts {
                        crate::alerts::send(a, crate::alerts::evaluate(a, &report, &before, jiff::Timestamp::now()))
                            .await;
                    }
                    code = first(code, c);
                    if report.outcome == RunOutcome::Interrupted || c == ErrorKind::Interrupted.exit_code() {
                        break;
                    }
                }
                Err(e) => {
                    crate::metrics::run_not_started(&spec.name);
                    output::error(&e);
                    if let Some(a) = alerts {
                        crate::alerts::send(
                            a,
                            crate::alerts::not_started(a, &spec.name, &e, &started_at).into_iter().collect(),
                        )
                        .await;
                    }
                    code = first(code, e.kind().exit_code());
                }
            }
        }
        code
    }
}

impl Batch<'_> {
    /// The "What happened" story of a run, with the dead letters it made.
    async fn tell(&self, report: &RunReport) {
        let dead = if report.total(|s| s.dead_lettered) > 0 {
            // Oldest first: the story picks this run's by their time.
            match self.state.dead_letters(Some(&report.pipeline), None, 100_000).await {
                Ok(dead) => dead,
                Err(e) => {
                    tracing::warn!(error = %e.report(), "cannot read the dead letters for the story");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        if let Err(e) = output::out(&crate::story::story(report, &dead, self.state_path, &[], None)) {
            tracing::error!(error = %e, "cannot print the story");
        }
    }
}

fn print_report(args: &RunArgs, report: &RunReport) -> anyhow::Result<()> {
    if args.json {
        output::out(&format!("{}\n", serde_json::to_string(report)?))?;
    } else {
        // `Batch::run` prints a failed run's error after this: once, there.
        if report.error.is_some() && report_code(report) != 0 {
            output::out(&output::run_summary_error_below(report, "pipeline"))?;
        } else {
            output::out(&output::run_summary(report, "pipeline"))?;
        }
        let limited: Vec<String> =
            report.streams.iter().filter(|(_, s)| s.limited).map(|(n, _)| format!("`{n}`")).collect();
        if let (false, Some(n)) = (limited.is_empty(), args.limit) {
            output::out(&format!(
                "  stopped at --limit {n}: {} not read to the end (no cursor moved, nothing deleted); `dovetail run {}` completes the pass without writing those records again\n",
                limited.join(", "),
                report.pipeline
            ))?;
        }
    }
    Ok(())
}

async fn run_one(
    spec: &PipelineSpec,
    state: std::sync::Arc<dyn dovetail_core::StateStore>,
    mut opts: RunOptions,
    progress: impl FnOnce(Arc<dyn dovetail_core::Source>) -> Option<Arc<dyn dovetail_core::Progress>>,
) -> Result<RunReport, Error> {
    let pipeline = spec.build(state)?;
    opts.progress = progress(pipeline.source());
    // The engine takes the pipeline's run lock (a live holder is refused by name).
    pipeline.run(opts).await
}

/// `--from` as a cursor value: a JSON number when it reads as one (numeric cursors), else text.
fn from_value(args: &RunArgs) -> Option<serde_json::Value> {
    let raw = args.from.as_deref()?.trim();
    Some(match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(v @ serde_json::Value::Number(_)) => v,
        _ => serde_json::Value::String(raw.to_owned()),
    })
}

/// The exit code of a finished run.
pub fn report_code(report: &RunReport) -> i32 {
    match (report.exit_code, report.outcome) {
        (c, _) if c != 0 => c,
        (_, RunOutcome::Succeeded) => 0,
        (_, RunOutcome::Interrupted) => ErrorKind::Interrupted.exit_code(),
        _ => ErrorKind::Internal.exit_code(),
    }
}

fn first(code: i32, next: i32) -> i32 {
    if code != 0 { code } else { next }
}

/// The pipelines named on the command line (all when none), in order, without repeats.
pub fn select<'p>(project: &'p Project, names: &[String]) -> Result<Vec<&'p PipelineSpec>, Error> {
    if project.pipelines.is_empty() {
        return Err(project.doc.error_nowhere("no pipelines are defined; add a [pipelines.NAME] table"));
    }
    if names.is_empty() {
        return Ok(project.pipelines.iter().collect());
    }
    let mut out: Vec<&PipelineSpec> = Vec::new();
    for n in names {
        let p = project.pipeline(n)?;
        if !out.iter().any(|q| q.name == p.name) {
            out.push(p);
        }
    }
    Ok(out)
}

fn check_streams(project: &Project, selected: &[&PipelineSpec], streams: &[String]) -> Result<(), Error> {
    let all: Vec<String> = selected.iter().flat_map(|p| p.stream_names()).collect();
    for s in streams {
        if !all.contains(s) {
            let hint = diag::nearest(s, all.iter().map(String::as_str))
                .map(|n| format!("did you mean `{n}`? "))
                .unwrap_or_default();
            let list = all.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ");
            return Err(project
                .doc
                .error_nowhere(format!("no stream `{s}` in the selected pipelines; {hint}(streams: {list})")));
        }
    }
    Ok(())
}
