//! `dovetail check`: validate the config, warn about literal secrets, probe every source and sink.

use std::path::Path;
use std::sync::Arc;

use crate::cli::CheckArgs;
use crate::{config, output};

/// Validate and probe; non-zero exit when anything fails. Every pipeline is loaded and
/// probed on its own, so one run of `check` reports the errors of all of them.
pub async fn run(config_path: &Path, args: &CheckArgs) -> anyhow::Result<i32> {
    let config::Checked { project, failed } = config::load_each(config_path)?;
    // A config with nothing to run is refused here exactly as `run` refuses it.
    if failed.is_empty() {
        super::run::select(&project, &[])?;
    }
    for s in &project.literal_secrets {
        eprintln!("warning: {}", s.warning(&project.doc));
    }
    let mut code = 0;
    for (_, e) in &failed {
        output::error(e);
        code = first(code, e.kind().exit_code());
    }
    let n = project.pipelines.len() + failed.len();
    let plural = if n == 1 { "" } else { "s" };
    let verdict = match failed.len() {
        0 => format!("config OK ({n} pipeline{plural}, "),
        bad => format!("config errors in {bad} of {n} pipeline{plural}, printed above ("),
    };
    output::out(&format!("{}: {verdict}state at {})\n", project.doc.label, project.state_path.display()))?;
    for (name, _) in &failed {
        output::out(&format!("pipeline `{name}`: FAILED: config error (printed above)\n"))?;
    }
    if args.offline {
        for spec in &project.pipelines {
            output::out(&format!("pipeline `{}`: config OK (not probed: --offline)\n", spec.name))?;
        }
        return Ok(code);
    }
    if project.pipelines.is_empty() {
        return Ok(code);
    }
    // Probing reads and writes no state (`Pipeline::check` asks only the connectors): the
    // pipelines are built over an empty in-memory store, which has no schema to migrate.
    // An existing state is read to find sinks that lost what the ledger remembers.
    let state: Arc<dyn dovetail_core::StateStore> = Arc::new(dovetail_core::testing::MemoryState::default());
    let recorded = match crate::stores::postgres_at(&project.state_path) {
        Some(pg) => {
            let t = pg.target();
            let at = format!("state: PostgreSQL at {}, schema `{}`", t.place(), t.schema());
            let known = dovetail_state_pg::migrations::SCHEMA_VERSION;
            match pg.migration().await? {
                Some(v) => {
                    output::out(&format!("{at}: at migration {v} (this dovetail knows up to {known})\n"))?;
                    Some(super::open_state(&project.state_path)?)
                }
                None => {
                    output::out(&format!("{at}: not created yet (the first run creates it, at migration {known})\n"))?;
                    None
                }
            }
        }
        None if project.state_path.exists() => Some(super::open_state(&project.state_path)?),
        None => None,
    };
    for spec in &project.pipelines {
        let result = match spec.build(state.clone()) {
            Ok(p) => p.check().await,
            Err(e) => Err(e),
        };
        let lost = match (&result, &recorded) {
            (Ok(()), Some(st)) => spec.build(st.clone())?.lost_sinks().await?,
            _ => Vec::new(),
        };
        match result {
            Ok(()) => {
                output::out(&format!(
                    "pipeline `{}`: OK ({} → {})\n",
                    spec.name,
                    spec.source.kind(),
                    spec.sink.kind()
                ))?;
                for line in lost {
                    output::out(&format!("  warning: {line}\n"))?;
                }
            }
            Err(e) => {
                output::out(&format!(
                    "pipeline `{}`: FAILED: {}\n  what to do: {}\n",
                    spec.name,
                    e.report(),
                    e.next_step()
                ))?;
                code = first(code, e.kind().exit_code());
            }
        }
    }
    Ok(code)
}

fn first(code: i32, next: i32) -> i32 {
    if code != 0 { code } else { next }
}
