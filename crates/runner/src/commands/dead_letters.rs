//! `dovetail dead-letters list|show|replay`.

use std::collections::BTreeMap;
use std::path::Path;

use dovetail_core::Error;
use dovetail_core::state::{DeadLetterCount, DeadLetterGroup};

use crate::cli::{DeadLettersCommand, DeadLettersListArgs, DeadLettersReplayArgs, GroupBy};
use crate::config;
use crate::output::{self, Table};

/// Dispatch the sub-verb.
pub async fn run(config_path: &Path, cmd: &DeadLettersCommand) -> anyhow::Result<i32> {
    match cmd {
        DeadLettersCommand::List(a) => list(config_path, a).await,
        DeadLettersCommand::Show(a) => show(config_path, a.id, a.json).await,
        DeadLettersCommand::Replay(a) => replay(config_path, a).await,
    }
}

async fn list(config_path: &Path, args: &DeadLettersListArgs) -> anyhow::Result<i32> {
    let cfg = config::load_state_only(config_path)?;
    let state = super::open_state(&cfg.state_path)?;
    let (pipeline, stream) = (args.pipeline.as_deref(), args.stream.as_deref());
    if let Some(by) = args.group_by {
        let by = match by {
            GroupBy::Reason => DeadLetterGroup::Reason,
            GroupBy::Path => DeadLetterGroup::Path,
        };
        let groups = state.dead_letter_counts(pipeline, stream, Some(by)).await?;
        if args.json {
            output::out(&format!("{}\n", serde_json::to_string_pretty(&groups)?))?;
        } else {
            output::out(&grouped(&groups, by, args.wide))?;
        }
        return Ok(0);
    }
    let letters = state.dead_letters(pipeline, stream, args.limit).await?;
    if args.json {
        output::out(&format!("{}\n", serde_json::to_string_pretty(&letters)?))?;
        return Ok(0);
    }
    if letters.is_empty() {
        output::out("no dead letters\n")?;
        return Ok(0);
    }
    let total = state.dead_letter_counts(pipeline, stream, None).await?.first().map_or(0, |c| c.count);
    let cut = |s: &str, max: usize| if args.wide { s.to_owned() } else { output::truncate(s, max) };
    // The reason first: it is what a reader needs, and what truncation must not lose.
    let mut t = Table::new(&["#id", "pipeline", "stream", "reason", "path", "location"]);
    for d in &letters {
        t.row(vec![
            d.id.to_string(),
            d.pipeline.clone(),
            d.stream.clone(),
            cut(d.reason_alone(), 70),
            cut(d.path.as_deref().unwrap_or("-"), 30),
            cut(d.location.as_deref().unwrap_or("-"), 40),
        ]);
    }
    output::out(&t.render())?;
    output::out(&format!(
        "{} of {} dead letters{}\n",
        output::thousands(letters.len() as u64),
        output::thousands(total.max(letters.len() as u64)),
        if (letters.len() as u64) < total {
            " (oldest first; `--limit N` shows more, `--group-by reason` counts them)"
        } else {
            ""
        }
    ))?;
    Ok(0)
}

/// The groups as a table, most first, with the total.
fn grouped(groups: &[DeadLetterCount], by: DeadLetterGroup, wide: bool) -> String {
    if groups.is_empty() {
        return "no dead letters\n".to_owned();
    }
    let header = match by {
        DeadLetterGroup::Reason => "reason",
        DeadLetterGroup::Path => "path",
    };
    let mut t = Table::new(&["#count", header]);
    for g in groups {
        let value = g.value.as_deref().unwrap_or("-");
        t.row(vec![output::thousands(g.count), if wide { value.to_owned() } else { output::truncate(value, 100) }]);
    }
    let total: u64 = groups.iter().map(|g| g.count).sum();
    let n = groups.len() as u64;
    let in_groups = format!("{} {}", output::thousands(n), if n == 1 { "group" } else { "groups" });
    format!("{}{} dead letters in {in_groups}\n", t.render(), output::thousands(total))
}

async fn show(config_path: &Path, id: i64, json: bool) -> anyhow::Result<i32> {
    let cfg = config::load_state_only(config_path)?;
    let state = super::open_state(&cfg.state_path)?;
    let d = state
        .dead_letter(id)
        .await?
        .ok_or_else(|| Error::config(format!("no dead letter with id {id} (see `dovetail dead-letters list`)")))?;
    if json {
        output::out(&format!("{}\n", serde_json::to_string_pretty(&d)?))?;
        return Ok(0);
    }
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let mut text = String::new();
    for (k, v) in [
        ("id", d.id.to_string()),
        ("pipeline", d.pipeline.clone()),
        ("stream", d.stream.clone()),
        ("key", opt(&d.key)),
        ("kind", d.kind.clone()),
        ("location", opt(&d.location)),
        ("path", opt(&d.path)),
        ("created", d.created_at.clone()),
        ("reason", d.reason.clone()),
    ] {
        text.push_str(&format!("{k:<9} {v}\n"));
    }
    match d.raw_len {
        Some(full) => text.push_str(&format!(
            "raw (the first {} of {full} bytes: a longer input is kept cut, and cannot be replayed):\n",
            d.raw.len()
        )),
        None => text.push_str("raw:\n"),
    }
    text.push_str(&d.raw);
    if !d.raw.ends_with('\n') {
        text.push('\n');
    }
    output::out(&text)?;
    Ok(0)
}

async fn replay(config_path: &Path, args: &DeadLettersReplayArgs) -> anyhow::Result<i32> {
    let project = config::load(config_path)?;
    if let Some(p) = &args.pipeline {
        project.pipeline(p)?;
    }
    let state = super::open_state(&project.state_path)?;
    // Which pipelines, and which ids of each (`None`: all of that pipeline's dead letters).
    let mut plan: BTreeMap<String, Option<Vec<i64>>> = BTreeMap::new();
    // The streams those ids are of: only a worker's lease on one of them refuses the replay
    // (a whole pipeline's replay is refused while a worker holds any of its streams).
    let mut streams: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if args.ids.is_empty() {
        for spec in &project.pipelines {
            if args.pipeline.as_ref().is_none_or(|p| *p == spec.name) {
                plan.insert(spec.name.clone(), None);
            }
        }
    } else {
        for id in &args.ids {
            let d = state.dead_letter(*id).await?.ok_or_else(|| {
                Error::config(format!("no dead letter with id {id} (see `dovetail dead-letters list`)"))
            })?;
            if args.pipeline.as_ref().is_some_and(|p| *p != d.pipeline) {
                return Err(Error::config(format!(
                    "dead letter {id} belongs to pipeline `{}`, not `{}`",
                    d.pipeline,
                    args.pipeline.as_deref().unwrap_or_default()
                ))
                .into());
            }
            if project.pipelines.iter().all(|p| p.name != d.pipeline) {
                return Err(Error::config(format!(
                    "dead letter {id} belongs to pipeline `{}`, which is no longer in {}",
                    d.pipeline, project.doc.label
                ))
                .into());
            }
            plan.entry(d.pipeline.clone()).or_insert_with(|| Some(Vec::new())).get_or_insert_with(Vec::new).push(*id);
            let of = streams.entry(d.pipeline.clone()).or_default();
            if !of.contains(&d.stream) {
                of.push(d.stream.clone());
            }
        }
    }
    let cancel = super::cancel_on_signal();
    let mut code = 0;
    for (name, ids) in plan {
        if ids.is_none() && state.dead_letters(Some(&name), None, 1).await?.is_empty() {
            output::out(&format!("pipeline `{name}`: no dead letters\n"))?;
            continue;
        }
        let spec = project.pipeline(&name)?;
        // The engine takes the pipeline's run lock for the replay.
        let scoped = super::open_state_for(&project.state_path, &name, streams.get(&name).map_or(&[], Vec::as_slice))?;
        let result = match spec.build(scoped) {
            Ok(p) => p.replay_dead_letters(ids.as_deref(), cancel.clone()).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(report) => {
                if args.json {
                    output::out(&format!("{}\n", serde_json::to_string(&report)?))?;
                } else {
                    let delivered = report.total(|s| s.written);
                    let unchanged = report.total(|s| s.skipped_unchanged);
                    let failing = report.total(|s| s.dead_lettered);
                    output::out(&format!(
                        "pipeline `{name}`: replayed {} dead letter{}: {} delivered ({delivered} written, {unchanged} already up to date), {failing} still failing\n",
                        delivered + unchanged + failing,
                        if delivered + unchanged + failing == 1 { "" } else { "s" },
                        delivered + unchanged,
                    ))?;
                    for (stream, s) in &report.streams {
                        if let Some(e) = &s.error {
                            output::out(&format!("  stream `{stream}` {}: {e}\n", s.outcome))?;
                        }
                    }
                }
                let c = super::run::report_code(&report);
                if code == 0 {
                    code = c;
                }
                if c == dovetail_core::ErrorKind::Interrupted.exit_code() {
                    break;
                }
            }
            Err(e) => {
                output::error(&e);
                if code == 0 {
                    code = e.kind().exit_code();
                }
            }
        }
    }
    Ok(code)
}
