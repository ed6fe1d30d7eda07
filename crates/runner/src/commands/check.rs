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
                let e = unreachable_hint(e, &project.doc, spec);
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

/// A probe that got no response at all (refused, timed out, no such host) asks whether the
/// host is reachable, naming the `base_url` the config gives — not "run again", which is
/// what the kind alone would advise.
fn unreachable_hint(
    e: dovetail_core::Error,
    doc: &crate::diag::Doc,
    spec: &crate::build::PipelineSpec,
) -> dovetail_core::Error {
    let no_response = e.http().is_some_and(|h| h.status.is_none());
    if !no_response || !e.kind().disposition().is_outage() {
        return e;
    }
    // The side whose connector failed; the source when both are of one kind (it is probed first).
    let side = match e.context().connector.as_deref() {
        Some(k) if k != spec.source.kind() && k == spec.sink.kind() => "sink",
        _ => "source",
    };
    let Ok(root) = toml::de::DeTable::parse(&doc.text) else { return e };
    let path = ["pipelines", spec.name.as_str(), side, "base_url"];
    let hint = match crate::diag::lookup(root.get_ref(), &path) {
        Some((key, v)) => format!(
            "no response came from the {side}'s host: is `base_url = {}` ({}) reachable from here (the host up, \
             the name resolving, the port open, no proxy or firewall in between)? Then run `dovetail check` again",
            shown_url(v.get_ref().as_str().unwrap_or_default()),
            doc.at(key.start)
        ),
        None => format!(
            "no response came from the {side}'s host: is it reachable from here (network, proxy, firewall)? Then \
             run `dovetail check` again"
        ),
    };
    e.with_hint(hint)
}

/// A configured URL as messages may show it: credentials and secret parameters redacted (a
/// value still holding `${VAR}` is shown as written).
fn shown_url(raw: &str) -> String {
    match dovetail_http::Url::parse(raw) {
        Ok(u) => dovetail_http::redact_url(&u, &[]),
        Err(_) => raw.to_owned(),
    }
}

fn first(code: i32, next: i32) -> i32 {
    if code != 0 { code } else { next }
}
