//! `dovetail state show PIPELINE [STREAM]`: each stream's checkpoint and cursor, read from the
//! state without changing it. An absent state is not created (nor migrated): "no state yet".

use std::path::Path;

use dovetail_core::{Checkpoint, Error};
use serde_json::{Value, json};

use crate::cli::{StateCommand, StateShowArgs};
use crate::config;
use crate::output::{self, Table};

/// Dispatch the sub-verb.
pub async fn run(config_path: &Path, cmd: &StateCommand) -> anyhow::Result<i32> {
    match cmd {
        StateCommand::Show(a) => show(config_path, a).await,
    }
}

async fn show(config_path: &Path, args: &StateShowArgs) -> anyhow::Result<i32> {
    // The streams come from the config; its secrets are not needed to read them.
    let project = config::load_read_only(config_path)?;
    let spec = project.pipeline(&args.pipeline)?;
    let mut streams = spec.stream_names();
    if let Some(s) = &args.stream {
        if !streams.contains(s) {
            let msg = format!("pipeline `{}` has no stream `{s}` (streams: {})", spec.name, streams.join(", "));
            return Err(Error::config(msg)
                .with_hint("pick one of the streams the message lists, or leave it out to see them all")
                .into());
        }
        streams = vec![s.clone()];
    }
    if !exists(&project.state_path).await? {
        if args.json {
            output::out(&format!("{}\n", json!({"pipeline": spec.name, "state": null, "streams": {}})))?;
        } else {
            output::out(&format!(
                "no state yet at {} (the first `dovetail run {}` creates it)\n",
                project.state_path.display(),
                spec.name
            ))?;
        }
        return Ok(0);
    }
    let state = super::open_state(&project.state_path)?;
    let mut found = Vec::new();
    for s in &streams {
        found.push((s.clone(), state.checkpoint(&spec.name, s).await?));
    }
    if args.json {
        let streams: serde_json::Map<String, Value> =
            found.iter().map(|(s, cp)| (s.clone(), json!({ "checkpoint": cp }))).collect();
        let doc = json!({"pipeline": spec.name, "state": project.state_path.display().to_string(), "streams": streams});
        output::out(&format!("{}\n", serde_json::to_string_pretty(&doc)?))?;
        return Ok(0);
    }
    output::out(&table(&found).render())?;
    Ok(0)
}

/// Whether there is a state to read: the SQLite file, or a PostgreSQL schema that was migrated.
async fn exists(path: &Path) -> Result<bool, Error> {
    match crate::stores::postgres_at(path) {
        Some(pg) => Ok(pg.migration().await?.is_some()),
        None => Ok(path.exists()),
    }
}

fn table(found: &[(String, Option<Checkpoint>)]) -> Table {
    let mut t = Table::new(&["stream", "#pass", "pass", "cursor floor", "cursor max", "position"]);
    for (stream, cp) in found {
        let Some(cp) = cp else {
            t.row(vec![stream.clone(), "-".into(), "no checkpoint yet".into()]);
            continue;
        };
        let cursor = |c: &Option<dovetail_core::state::CursorState>| match c {
            Some(c) => output::truncate(&compact(&c.value), 40),
            None => "-".into(),
        };
        t.row(vec![
            stream.clone(),
            cp.pass.to_string(),
            if cp.pass_complete { "complete" } else { "in progress" }.into(),
            cursor(&cp.floor),
            cursor(&cp.max),
            cp.position.as_ref().map(|p| output::truncate(&compact(p), 60)).unwrap_or_else(|| "start".into()),
        ]);
    }
    t
}

/// A JSON value on one line; a string without its quotes.
fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
