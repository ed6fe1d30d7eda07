//! `dovetail drift`: the response-shape drift history, and `drift accept`.

use std::path::Path;

use dovetail_core::{DriftClass, StateStore, StoredDrift};

use crate::cli::{DriftAction, DriftArgs};
use crate::commands::status::short_time;
use crate::config;
use crate::output::{self, Table};

/// List drift, or accept a stream's.
pub async fn run(config_path: &Path, args: &DriftArgs) -> anyhow::Result<i32> {
    let cfg = config::load_state_only(config_path)?;
    for p in [args.pipeline.as_ref(), accept_target(args).map(|(p, _)| p)].into_iter().flatten() {
        if !cfg.pipelines.contains(p) {
            return Err(config::unknown_pipeline(&cfg.doc, p, cfg.pipelines.clone()).into());
        }
    }
    let state = super::open_state(&cfg.state_path)?;
    if let Some((pipeline, stream)) = accept_target(args) {
        return accept(state.as_ref(), pipeline, stream).await;
    }
    let events = state.drift_events(args.pipeline.as_deref()).await?;
    if args.json {
        output::out(&format!("{}\n", serde_json::to_string_pretty(&events)?))?;
    } else if events.is_empty() {
        output::out("no drift recorded\n")?;
    } else {
        output::out(&table(&events).render())?;
        if events.iter().any(|e| e.accepted_at.is_none()) {
            output::out(
                "\nopen drift stays until `dovetail drift accept PIPELINE STREAM` takes it into the baseline\n",
            )?;
        }
    }
    Ok(0)
}

fn accept_target(args: &DriftArgs) -> Option<(&String, &String)> {
    match &args.action {
        Some(DriftAction::Accept { pipeline, stream }) => Some((pipeline, stream)),
        None => None,
    }
}

fn table(events: &[StoredDrift]) -> Table {
    let mut t = Table::new(&[
        "pipeline",
        "stream",
        "path",
        "change",
        "expected",
        "observed",
        "count",
        "first seen",
        "last seen",
        "status",
    ]);
    for e in events {
        t.row(vec![
            e.pipeline.clone(),
            e.stream.clone(),
            e.path.clone(),
            e.change.to_string(),
            e.expected.clone(),
            e.observed.clone(),
            e.count.to_string(),
            short_time(&e.first_seen),
            short_time(&e.last_seen),
            match &e.accepted_at {
                Some(at) => format!("accepted {}", short_time(at)),
                None => "open".to_owned(),
            },
        ]);
    }
    t
}

/// Widen the baseline by every open drift of the stream (`column_type` drift: the sink's
/// columns, at the next run), mark them accepted, unpause.
async fn accept(state: &dyn StateStore, pipeline: &str, stream: &str) -> anyhow::Result<i32> {
    // Never change a baseline under a run that is checking against it.
    let _lock = state.lock(pipeline).await?;
    let open: Vec<StoredDrift> = state
        .drift_events(Some(pipeline))
        .await?
        .into_iter()
        .filter(|e| e.stream == stream && e.accepted_at.is_none())
        .collect();
    let mut text = String::new();
    if let Some(mut baseline) = state.baseline(pipeline, stream).await? {
        let widened =
            open.iter().filter(|e| dovetail_core::drift::accept(&mut baseline, &e.path, e.change, &e.observed));
        let n = widened.count();
        if n > 0 {
            state.save_baseline(pipeline, stream, &baseline).await?;
        }
        text.push_str(&format!("Baseline of stream `{stream}` of pipeline `{pipeline}`: {n} change(s) taken in.\n"));
    }
    // Sink columns are widened by the sink itself, which the next run hands accepted drift to.
    let columns = open.iter().filter(|e| e.change == DriftClass::ColumnType).count();
    if columns > 0 {
        text.push_str(&format!("{columns} sink column change(s) take effect when the next run opens the sink.\n"));
    }
    let now = dovetail_core::now_rfc3339();
    let accepted = state.accept_drift(pipeline, stream, &now).await?;
    for e in &open {
        text.push_str(&format!("  accepted {} {}: {} → {}\n", e.path, e.change, e.expected, e.observed));
    }
    if accepted == 0 {
        text.push_str(&format!("No open drift for stream `{stream}` of pipeline `{pipeline}`.\n"));
    }
    if state.unpause(pipeline, stream).await? {
        text.push_str(&format!(
            "Stream `{stream}` is no longer paused; the next run reads it from its last checkpoint.\n"
        ));
    }
    output::out(&text)?;
    Ok(0)
}
