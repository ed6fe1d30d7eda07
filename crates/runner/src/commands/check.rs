//! `dovetail check`: validate the config, warn about literal secrets, probe every source and sink.

use std::path::Path;
use std::sync::Arc;

use crate::{config, output};

/// Validate and probe; non-zero exit when anything fails.
pub async fn run(config_path: &Path) -> anyhow::Result<i32> {
    let project = config::load(config_path)?;
    // A config with nothing to run is refused here exactly as `run` refuses it.
    super::run::select(&project, &[])?;
    for s in &project.literal_secrets {
        eprintln!("warning: {}", s.warning(&project.doc));
    }
    output::out(&format!(
        "{}: config OK ({} pipeline{}, state at {})\n",
        project.doc.label,
        project.pipelines.len(),
        if project.pipelines.len() == 1 { "" } else { "s" },
        project.state_path.display()
    ))?;
    // Probing needs no durable state: check against a private in-memory store so `check`
    // leaves nothing behind. An existing state is read to find sinks that lost what the
    // ledger remembers.
    let state: Arc<dyn dovetail_core::StateStore> = Arc::new(dovetail_state::SqliteState::open_in_memory()?);
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
    let mut code = 0;
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
                if code == 0 {
                    code = e.kind().exit_code();
                }
            }
        }
    }
    Ok(code)
}
