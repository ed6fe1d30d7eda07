//! `dovetail status`: the latest runs with their counts and errors.

use std::path::Path;

use dovetail_core::state::RunRecord;
use serde_json::Value;

use crate::cli::StatusArgs;
use crate::config;
use crate::output::{self, Table};

/// Print the latest runs of each pipeline, paused streams and the outbox.
pub async fn run(config_path: &Path, args: &StatusArgs) -> anyhow::Result<i32> {
    let cfg = config::load_state_only(config_path)?;
    let state = super::open_state(&cfg.state_path)?;
    // Pipelines in the config, then any that only the history knows (renamed or removed).
    let mut names: Vec<String> = match &args.pipeline {
        Some(p) => vec![p.clone()],
        None => cfg.pipelines.clone(),
    };
    if args.pipeline.is_none() {
        for p in state.run_pipelines().await? {
            if !names.contains(&p) {
                names.push(p);
            }
        }
    }
    let mut runs = Vec::new();
    for name in &names {
        runs.extend(state.runs(Some(name), args.limit).await?);
    }
    let paused = state.paused(args.pipeline.as_deref()).await?;
    let outbox = state.outbox_depths(args.pipeline.as_deref()).await?;
    let fleet = match crate::stores::postgres_at(&cfg.state_path) {
        Some(pg) => Some(dovetail_core::lease::LeaseStore::fleet(&pg).await?),
        None => None,
    };
    if args.json {
        let outbox: Vec<Value> =
            outbox.iter().map(|(p, s, n)| serde_json::json!({"pipeline": p, "stream": s, "waiting": n})).collect();
        let doc = serde_json::json!({"runs": runs, "paused": paused, "outbox": outbox, "fleet": fleet});
        output::out(&format!("{}\n", serde_json::to_string_pretty(&doc)?))?;
        return Ok(0);
    }
    if runs.is_empty() {
        let whose = args.pipeline.as_ref().map(|p| format!(" of pipeline `{p}`")).unwrap_or_default();
        output::out(&format!("no runs{whose} yet\n"))?;
    } else {
        output::out(&table(&runs, args.wide).render())?;
        for name in &names {
            let mine: Vec<&RunRecord> = runs.iter().filter(|r| &r.pipeline == name).collect();
            if let Some(next) = mine.first().and_then(|r| r.report.as_ref()).and_then(|v| v["next_step"].as_str()) {
                output::out(&format!("\n`{name}`: what to do: {next}\n"))?;
            }
        }
    }
    if !paused.is_empty() {
        // Why first: the reason leads the stored text, so a cut keeps it.
        let mut t = Table::new(&["pipeline", "stream", "paused", "why", "since", "until"]);
        for p in &paused {
            t.row(vec![
                p.pipeline.clone(),
                p.stream.clone(),
                p.kind.to_string(),
                match (&p.location, args.wide) {
                    (Some(at), true) => format!("{} (at {at})", p.reason),
                    (None, true) => p.reason.clone(),
                    (_, false) => output::truncate(&p.reason, 80),
                },
                short_time(&p.since),
                p.until.as_deref().map(short_time).unwrap_or_else(|| "-".into()),
            ]);
        }
        output::out(&format!(
            "\npaused streams (an outage pause is probed by the next run, a rate-limited one lifts at its time; \
             `dovetail resume PIPELINE [STREAM]` lifts any pause):\n{}",
            t.render()
        ))?;
    }
    if !outbox.is_empty() {
        let mut t = Table::new(&["pipeline", "stream", "#waiting"]);
        for (p, s, n) in &outbox {
            t.row(vec![p.clone(), s.clone(), n.to_string()]);
        }
        output::out(&format!(
            "\nwaiting in the outbox (their sink was down; the next run delivers them first):\n{}",
            t.render()
        ))?;
    }
    if let Some(f) = fleet.filter(|f| !f.workers.is_empty() || !f.leases.is_empty()) {
        output::out(&fleet_text(&f))?;
    }
    Ok(0)
}

/// Workers (what each holds since when), expired leases and takeovers.
fn fleet_text(f: &dovetail_core::lease::FleetStatus) -> String {
    let mut t = Table::new(&["worker", "host", "#pid", "last heartbeat", "holds"]);
    for w in &f.workers {
        let holds: Vec<String> = f
            .leases
            .iter()
            .filter(|l| l.holder.as_deref() == Some(w.id.as_str()))
            .map(|l| {
                let since = l.since.as_deref().map(short_time).unwrap_or_default();
                let expired = if l.expired { ", expired" } else { "" };
                format!("{}/{} since {since}{expired}", l.pipeline, l.unit)
            })
            .collect();
        let beat = match &w.stopped {
            Some(at) => format!("stopped {}", short_time(at)),
            None => short_time(&w.heartbeat),
        };
        let holds = if holds.is_empty() { "-".to_owned() } else { holds.join(", ") };
        t.row(vec![w.id.clone(), w.host.clone(), w.pid.to_string(), beat, holds]);
    }
    let mut out = format!(
        "
workers (`dovetail worker`):
{}",
        t.render()
    );
    let expired: Vec<String> = f
        .leases
        .iter()
        .filter(|l| l.expired)
        .map(|l| {
            format!(
                "  {}/{}: held by {} (epoch {}), expired: not renewed, waiting to be taken over\n",
                l.pipeline,
                l.unit,
                l.holder.as_deref().unwrap_or("-"),
                l.epoch
            )
        })
        .collect();
    if !expired.is_empty() {
        out.push_str(&format!(
            "
expired leases:
{}",
            expired.concat()
        ));
    }
    if !f.takeovers.is_empty() {
        out.push_str(
            "
takeovers (the last of each stream):
",
        );
        for k in &f.takeovers {
            let from = k.from.as_deref().unwrap_or("an expired holder");
            out.push_str(&format!(
                "  {}/{}: {} took it over from {from} at {}\n",
                k.pipeline,
                k.unit,
                k.by,
                short_time(&k.at)
            ));
        }
    }
    out
}

/// The runs as a table, in the order given (per pipeline, newest first); `wide` cuts nothing.
pub fn table(runs: &[RunRecord], wide: bool) -> Table {
    let mut t = Table::new(&[
        "#id",
        "pipeline",
        "started",
        "#duration",
        "outcome",
        "#read",
        "#written",
        "#unchanged",
        "#dead-lettered",
        "#retries",
        "#waited",
        "#tokens",
        "drift",
        "error",
    ]);
    for r in runs {
        let report = r.report.as_ref();
        let streams = report.and_then(|v| v.get("streams")).and_then(Value::as_object);
        let sum = |field: &str| -> String {
            match streams {
                Some(streams) => {
                    streams.values().map(|s| s.get(field).and_then(Value::as_u64).unwrap_or(0)).sum::<u64>().to_string()
                }
                None => "-".into(),
            }
        };
        let http = report.and_then(|v| v.get("http")).and_then(Value::as_object);
        let http_sum = |field: &str| -> u64 {
            http.map(|h| h.values().map(|c| c.get(field).and_then(Value::as_u64).unwrap_or(0)).sum()).unwrap_or(0)
        };
        let waited = http_sum("retry_wait_ms") + http_sum("rate_limit_wait_ms");
        // Drift: the distinct JSON paths that drifted this run.
        let mut drift: Vec<&str> = streams
            .into_iter()
            .flat_map(|s| s.values())
            .filter_map(|s| s.get("drift").and_then(Value::as_array))
            .flatten()
            .filter_map(|e| e.get("path").and_then(Value::as_str))
            .collect();
        drift.sort_unstable();
        drift.dedup();
        let dry = report.and_then(|v| v.get("dry_run")).and_then(Value::as_bool).unwrap_or(false);
        // The reason alone when the report keeps it apart from where it happened (a URL first
        // would fill the column); `--wide` shows both in full.
        let text = |k: &str| report.and_then(|v| v.get(k)).and_then(Value::as_str);
        let error = match (text("error_reason"), text("error_at")) {
            (Some(reason), Some(at)) if wide => format!("{reason} (at {at})"),
            (Some(reason), _) => reason.to_owned(),
            (None, _) => text("error").unwrap_or("").to_owned(),
        };
        t.row(vec![
            r.id.to_string(),
            r.pipeline.clone(),
            short_time(&r.started_at),
            duration(r),
            if dry { format!("{} (dry run)", r.outcome) } else { r.outcome.to_string() },
            sum("read"),
            sum("written"),
            sum("skipped_unchanged"),
            sum("dead_lettered"),
            http_sum("retries").to_string(),
            if waited == 0 { "0".into() } else { output::duration(waited) },
            http_sum("token_requests").to_string(),
            if wide { drift.join(" ") } else { output::truncate(&drift.join(" "), 30) },
            if wide { error } else { output::truncate(&error, 60) },
        ]);
    }
    t
}

fn duration(r: &RunRecord) -> String {
    if let Some(ms) = r.report.as_ref().and_then(|v| v.get("duration_ms")).and_then(Value::as_u64) {
        return output::duration(ms);
    }
    let parse = |s: &str| s.parse::<jiff::Timestamp>().ok();
    match (parse(&r.started_at), r.finished_at.as_deref().and_then(parse)) {
        (Some(a), Some(b)) => output::duration(b.duration_since(a).as_millis().max(0) as u64),
        _ => "-".into(),
    }
}

/// An RFC 3339 time to the second, in UTC.
pub(crate) fn short_time(s: &str) -> String {
    match s.parse::<jiff::Timestamp>() {
        Ok(t) => t
            .round(jiff::Unit::Second)
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|_| s.to_owned()),
        Err(_) => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_come_from_the_stored_report() {
        let r = RunRecord {
            id: 7,
            pipeline: "orders".into(),
            started_at: "2026-11-03T10:15:02.123Z".into(),
            finished_at: Some("2026-11-03T10:15:04.000Z".into()),
            outcome: dovetail_core::RunOutcome::Failed,
            report: Some(serde_json::json!({
                "duration_ms": 1877, "error": "boom",
                "streams": {"a": {"read": 3, "written": 2, "skipped_unchanged": 1, "dead_lettered": 0,
                                  "drift": [{"path": "/price"}]},
                            "b": {"read": 4, "written": 0, "skipped_unchanged": 4, "dead_lettered": 1,
                                  "drift": [{"path": "/price"}, {"path": "/tags"}]}},
                "http": {"source": {"retries": 3, "retry_wait_ms": 1000, "rate_limit_wait_ms": 500, "token_requests": 2},
                         "sink": {"retries": 1, "token_requests": 0}}
            })),
        };
        let text = table(&[r], false).render();
        let line = text.lines().nth(1).unwrap();
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "7",
                "orders",
                "2026-11-03",
                "10:15:02",
                "1.8s",
                "failed",
                "7",
                "2",
                "5",
                "1",
                "4",
                "1.5s",
                "2",
                "/price",
                "/tags",
                "boom"
            ]
        );
    }

    #[test]
    fn the_error_column_shows_the_reason_not_the_url() {
        let url = format!("GET https://api.example.com/{}", "segment/".repeat(12));
        let r = RunRecord {
            id: 1,
            pipeline: "p".into(),
            started_at: "2026-11-03T10:15:02Z".into(),
            finished_at: None,
            outcome: dovetail_core::RunOutcome::Failed,
            report: Some(serde_json::json!({
                "error": format!("transient error in pipeline `p`, {url}: gave up after 5 attempts"),
                "error_reason": "gave up after 5 attempts", "error_at": url,
            })),
        };
        let narrow = table(std::slice::from_ref(&r), false).render();
        assert!(narrow.lines().nth(1).unwrap().ends_with("gave up after 5 attempts"), "{narrow}");
        let wide = table(&[r], true).render();
        assert!(wide.contains(&format!("gave up after 5 attempts (at {url})")), "{wide}");
    }
}
