//! `dovetail run`: run pipelines one after the other (the engine holds each one's run
//! lock) and print what each did.

use std::path::Path;

use dovetail_core::{Error, ErrorKind, RunOptions, RunReport};

use crate::cli::RunArgs;
use crate::config::{self, PipelineSpec, Project};
use crate::{diag, output};

/// Run the selected pipelines; the exit code is the first failure's (0 if all succeeded).
pub async fn run(config_path: &Path, args: &RunArgs) -> anyhow::Result<i32> {
    let project = config::load(config_path)?;
    let selected = select(&project, &args.pipelines)?;
    check_streams(&project, &selected, &args.streams)?;
    let state = super::open_state(&project.state_path)?;
    let cancel = super::cancel_on_signal();

    let mut code = 0;
    for spec in selected {
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
        let opts = RunOptions {
            streams,
            dry_run: args.dry_run,
            cancel: cancel.clone(),
            from: from_value(args),
            progress: None,
        };
        match run_one(spec, state.clone(), opts, !args.json).await {
            Ok(report) => {
                if args.json {
                    output::out(&format!("{}\n", serde_json::to_string(&report)?))?;
                } else {
                    output::out(&output::run_summary(&report, "pipeline"))?;
                }
                let c = report_code(&report);
                if let Some(e) = report.error.as_ref().filter(|_| c != 0) {
                    crate::progress::flush_logs();
                    eprintln!("dovetail: pipeline `{}` {}: {e}", report.pipeline, report.outcome);
                    if let Some(next) = &report.next_step {
                        eprintln!("  what to do: {next}");
                    }
                }
                code = first(code, c);
                if report.outcome == "interrupted" || c == ErrorKind::Interrupted.exit_code() {
                    break;
                }
            }
            Err(e) => {
                output::error(&e);
                code = first(code, e.kind().exit_code());
            }
        }
    }
    Ok(code)
}

async fn run_one(
    spec: &PipelineSpec,
    state: std::sync::Arc<dyn dovetail_core::StateStore>,
    mut opts: RunOptions,
    show_progress: bool,
) -> Result<RunReport, Error> {
    let pipeline = spec.build(state)?;
    if show_progress {
        opts.progress = crate::progress::for_run(Some(pipeline.source()));
    }
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
    match (report.exit_code, report.outcome.as_str()) {
        (c, _) if c != 0 => c,
        (_, "succeeded") => 0,
        (_, "interrupted") => ErrorKind::Interrupted.exit_code(),
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
