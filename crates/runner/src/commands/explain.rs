//! `dovetail explain PIPELINE STREAM KEY`: one record's story — the request that fetched it,
//! its raw data, the mapping applied, the mapped output as a field-level diff, and the write
//! outcome. Everything comes from the state store (see docs/explain.md); the config is read
//! for the stream's key columns and to tell whether the mapping changed since.

use std::path::Path;

use dovetail_core::explain::{FieldChange, KeyHistory, LedgerView, Outcome, StoredFetch, field_diff};
use dovetail_core::mapping::Mapping;
use dovetail_core::{Error, Key, StateStore};
use serde::Serialize;
use serde_json::Value;

use crate::cli::ExplainArgs;
use crate::config;
use crate::output;

/// The story, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Explained {
    pipeline: String,
    stream: String,
    /// Canonical key (compact JSON of the key values).
    key: String,
    key_columns: Vec<String>,
    fetched_by: Option<StoredFetch>,
    /// Position of the record in its page.
    location: Option<String>,
    /// Raw source record (`null` when it was not kept: `[state] explain = "metadata"`).
    raw: Option<Value>,
    /// The mapping applied (`null`: identity — records pass unchanged).
    mapping: Option<Value>,
    /// The config's mapping is not the one applied then.
    mapping_changed: bool,
    /// The mapped output, re-computed from the raw record with the mapping applied then.
    output: Option<Value>,
    /// Why mapping the raw record fails, when it does.
    mapping_error: Option<String>,
    diff: Vec<FieldChange>,
    write: WriteOutcome,
}

#[derive(Debug, Serialize)]
struct WriteOutcome {
    /// `inserted`, `updated`, `unchanged`, `dead_lettered`, or `written` (known only to the
    /// ledger: written before the kept explain history).
    outcome: String,
    run_id: Option<i64>,
    reason: Option<String>,
    /// The latest later run that read the record unchanged (and its request).
    unchanged_since: Option<StoredFetch>,
    dead_letter_id: Option<i64>,
    dest_id: Option<String>,
    /// The destination's request id of the write that delivered the record, when the sink
    /// reports one (Stripe's `Request-Id`).
    request_id: Option<String>,
    ledger: Option<LedgerView>,
}

/// Explain one record.
pub async fn run(config_path: &Path, args: &ExplainArgs) -> anyhow::Result<i32> {
    let project = config::load_read_only(config_path)?;
    let spec = project.pipeline(&args.pipeline)?;
    let state = super::open_state(&project.state_path)?;
    let pipeline = spec.build(state.clone())?;
    let key_columns = || {
        pipeline.key_columns(&args.stream).map_err(|e| {
            e.with_hint(
                "pick one of the streams the message lists; `dovetail state show {pipeline}` lists them with their \
                 checkpoints",
            )
            .in_pipeline(&args.pipeline)
        })
    };
    let mut columns = key_columns()?;
    if columns.is_empty() {
        // The key is the source's catalog's (no `key` configured): ask the source for it.
        let cx = dovetail_core::Cx { pipeline: spec.name.clone(), ..Default::default() };
        match pipeline.discover(&cx).await {
            Ok(()) => columns = key_columns()?,
            Err(e) => tracing::warn!(error = %e.report(), "cannot read the source's catalog for the stream's key"),
        }
    }
    let (key, history) = find(state.as_ref(), &args.pipeline, &args.stream, &columns, &args.key).await?;
    let request_id = state.write_request(&args.pipeline, &args.stream, &key).await?;
    let current = pipeline.mapping_config(&args.stream);
    let mut e = explain(args, key, columns, history, current);
    e.write.request_id = request_id;
    if args.json {
        output::out(&format!("{}\n", serde_json::to_string_pretty(&e)?))?;
    } else {
        output::out(&render(&e))?;
    }
    Ok(0)
}

/// The canonical keys `typed` may mean, most likely first: `42` is tried as the number and
/// as the text "42"; an object picks the key columns; a composite key takes an array or an
/// object.
fn candidates(columns: &[String], typed: &str) -> Result<Vec<Key>, String> {
    let parsed: Option<Value> = serde_json::from_str(typed.trim()).ok();
    let text = Value::String(typed.to_owned());
    let form = if columns.len() == 1 {
        format!("the value of `{}`, e.g. 42 or \"abc\" or {{\"{}\": 42}}", columns[0], columns[0])
    } else {
        let names: Vec<String> = columns.iter().map(|c| format!("\"{c}\": …")).collect();
        format!("a JSON array of ({}) or an object {{{}}}", columns.join(", "), names.join(", "))
    };
    if columns.len() == 1 {
        let col = &columns[0];
        let mut out = Vec::new();
        match &parsed {
            Some(Value::Object(o)) => match o.get(col) {
                Some(v) => out.push(Key::from_parts(&[v])),
                None => return Err(format!("the object names no `{col}`; give {form}")),
            },
            Some(v) => {
                out.push(Key::from_parts(&[v]));
                if !v.is_string() {
                    out.push(Key::from_parts(&[&text]));
                }
            }
            None => out.push(Key::from_parts(&[&text])),
        }
        return Ok(out);
    }
    let parts: Vec<Value> = match parsed {
        Some(Value::Array(a)) if a.len() == columns.len() => a,
        Some(Value::Object(o)) => columns
            .iter()
            .map(|c| o.get(c).cloned().ok_or_else(|| format!("the object names no `{c}`; give {form}")))
            .collect::<Result<_, _>>()?,
        _ => return Err(format!("the stream's key has {} columns; give {form}", columns.len())),
    };
    Ok(vec![Key::from_parts(&parts.iter().collect::<Vec<_>>())])
}

async fn find(
    state: &dyn StateStore,
    pipeline: &str,
    stream: &str,
    columns: &[String],
    typed: &str,
) -> Result<(Key, KeyHistory), Error> {
    let keys = candidates(columns, typed)
        .map_err(|why| Error::config(format!("cannot read `{typed}` as a key of stream `{stream}`: {why}")))?;
    for k in &keys {
        let h = state.key_history(pipeline, stream, k).await?;
        if h.story.is_some() || h.unchanged.is_some() || h.ledger.is_some() || h.dead_letter.is_some() {
            return Ok((k.clone(), h));
        }
    }
    let tried: Vec<&str> = keys.iter().map(Key::as_str).collect();
    // A few keys the ledger holds, to show what one looks like: every ledger row's pass is
    // below `i64::MAX`, so the stale-key listing returns any of them.
    let known = state.stale_keys(pipeline, stream, i64::MAX as u64, 5).await.unwrap_or_default();
    let hint = if known.is_empty() {
        format!(
            "the ledger of stream `{stream}` is empty: run `dovetail run {pipeline} --stream {stream}` first, or \
             see `dovetail dead-letters list --pipeline {pipeline} --stream {stream}` for records that failed"
        )
    } else {
        let list: Vec<&str> = known.iter().map(Key::as_str).collect();
        format!(
            "give a key the stream wrote, as JSON: keys the ledger holds include {} (the sink's `{}` column lists \
             them all)",
            list.join(", "),
            columns.join("`, `")
        )
    };
    Err(Error::config(format!(
        "no record with key {} in stream `{stream}` of pipeline `{pipeline}`: neither the ledger, nor the \
         explain history, nor the dead letters know it. Keys are the output primary key ({}) as JSON; \
         check the value (`dovetail status {pipeline}` shows what runs read), or its history may have been \
         pruned (`[state.retention]`)",
        tried.join(" or "),
        columns.join(", ")
    ))
    .with_hint(hint))
}

fn explain(args: &ExplainArgs, key: Key, columns: Vec<String>, h: KeyHistory, current: Option<Value>) -> Explained {
    let story = h.story.as_ref();
    let dead = h.dead_letter.as_ref();
    let raw_text = story.and_then(|s| s.raw.clone()).or_else(|| dead.map(|d| d.raw.clone()));
    let raw = raw_text.map(|t| serde_json::from_str(&t).unwrap_or(Value::String(t)));
    let mapping = if story.is_some() || h.unchanged.is_some() { h.mapping.clone() } else { current.clone() };
    let mapping_changed = (story.is_some() || h.unchanged.is_some()) && mapping != current;
    let declarative: Option<Mapping> = mapping.clone().and_then(|m| serde_json::from_value(m).ok());
    let (output, mapping_error) = match (&raw, &declarative) {
        (Some(r), Some(m)) => match m.map(r.clone()) {
            Ok(o) => (Some(o), None),
            Err(e) => (None, Some(e.to_string())),
        },
        (Some(r), None) if mapping.is_none() => (Some(r.clone()), None),
        _ => (None, None),
    };
    let diff = match (&raw, &output) {
        (Some(r), Some(o)) => field_diff(r, o, declarative.as_ref()),
        _ => Vec::new(),
    };
    let outcome = match (story, dead) {
        (Some(s), _) => s.outcome.as_str().to_owned(),
        (None, Some(_)) => Outcome::DeadLettered.as_str().to_owned(),
        (None, None) if h.unchanged.is_some() => Outcome::Unchanged.as_str().to_owned(),
        (None, None) => "written".to_owned(),
    };
    let fetched_by = story.and_then(|s| s.fetch.clone()).or_else(|| h.unchanged.clone());
    let write = WriteOutcome {
        outcome,
        run_id: story.map(|s| s.run_id),
        reason: story.and_then(|s| s.reason.clone()).or_else(|| dead.map(|d| d.reason.clone())),
        unchanged_since: h.unchanged.clone(),
        dead_letter_id: dead.map(|d| d.id),
        dest_id: h.ledger.as_ref().and_then(|l| l.dest_id.clone()),
        request_id: None,
        ledger: h.ledger.clone(),
    };
    Explained {
        pipeline: args.pipeline.clone(),
        stream: args.stream.clone(),
        key: key.as_str().to_owned(),
        key_columns: columns,
        fetched_by,
        location: story.and_then(|s| s.location.clone()).or_else(|| dead.and_then(|d| d.location.clone())),
        raw,
        mapping,
        mapping_changed,
        output,
        mapping_error,
        diff,
        write,
    }
}

fn json(v: &Value) -> String {
    dovetail_core::record::canonical_json(v)
}

fn render(e: &Explained) -> String {
    let mut t = format!("{} / {} / key {}\n", e.pipeline, e.stream, e.key);
    let line = |t: &mut String, k: &str, v: &str| t.push_str(&format!("  {k:<12} {v}\n"));
    t.push_str("\nFetched by\n");
    match &e.fetched_by {
        Some(f) => {
            line(&mut t, "request", &format!("{} {}", f.method, f.url));
            line(&mut t, "status", &f.status.map_or("-".into(), |s| s.to_string()));
            line(&mut t, "request id", f.request_id.as_deref().unwrap_or("-"));
            line(&mut t, "fetched at", &f.fetched_at);
            line(&mut t, "api version", f.api_version.as_deref().unwrap_or("-"));
            line(&mut t, "run", &format!("#{}", f.run_id));
            if f.stale {
                line(&mut t, "stale", "served from the cache while the remote was down");
            }
        }
        None => line(&mut t, "request", "not kept (a dead letter the source could not decode, or pruned)"),
    }
    if let Some(l) = &e.location {
        // A dead letter's location names its endpoint too; the request line above already does.
        let short = e.fetched_by.as_ref().and_then(|f| l.strip_prefix(f.url.as_str())).map(str::trim_start);
        line(&mut t, "at", short.filter(|s| !s.is_empty()).unwrap_or(l));
    }
    t.push_str("\nRaw\n");
    match &e.raw {
        Some(r) => t.push_str(&format!("  {}\n", json(r))),
        None => t.push_str(
            "  not kept: set `[state] explain = \"full\"` to keep written records' raw data (the default keeps the request and outcome)\n",
        ),
    }
    t.push_str("\nMapping\n");
    match &e.mapping {
        None => t.push_str("  identity (records pass unchanged)\n"),
        Some(m) => t.push_str(&format!("  {}\n", json(m))),
    }
    if e.mapping_changed {
        t.push_str("  note: the config's mapping changed since; shown is the mapping applied then\n");
    }
    t.push_str("\nOutput diff\n");
    if let Some(err) = &e.mapping_error {
        t.push_str(&format!("  mapping fails: {err}\n"));
    } else if e.diff.is_empty() {
        t.push_str("  - (no raw record kept to map)\n");
    }
    for d in &e.diff {
        let field = match (&d.from, &d.to) {
            (Some(f), Some(to)) if f != to => format!("{f} → {to}"),
            (Some(f), _) | (None, Some(f)) => f.clone(),
            (None, None) => String::new(),
        };
        let value = match (&d.before, &d.after) {
            (Some(b), Some(a)) if b != a => format!("{} → {}", json(b), json(a)),
            (Some(v), _) | (None, Some(v)) => json(v),
            (None, None) => String::new(),
        };
        t.push_str(&format!("  {:<10} {field:<24} {value}\n", d.change));
    }
    t.push_str("\nWrite outcome\n");
    let w = &e.write;
    let run = w.run_id.map(|r| format!(" in run #{r}")).unwrap_or_default();
    line(&mut t, "outcome", &format!("{}{run}", w.outcome.replace('_', "-")));
    if w.outcome == "written" {
        line(
            &mut t,
            "note",
            "the ledger holds it, but no run story: delivered by `dead-letters replay` or from the outbox, \
             written with `[state] explain = \"off\"`, or before explain history began",
        );
    }
    if let Some(r) = &w.reason {
        line(&mut t, "reason", r);
    }
    if let Some(id) = w.dead_letter_id {
        line(&mut t, "dead letter", &format!("#{id} (`dovetail dead-letters show {id}`; replay after a fix)"));
    }
    if let Some(u) = &w.unchanged_since {
        line(&mut t, "since", &format!("read unchanged in run #{} (fetched {})", u.run_id, u.fetched_at));
    }
    if let Some(l) = &w.ledger {
        line(&mut t, "ledger", &format!("hash {} pass {}", l.hash, l.pass));
    }
    if let Some(d) = &w.dest_id {
        line(&mut t, "dest id", d);
    }
    if let Some(r) = &w.request_id {
        line(&mut t, "request id", r);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keys_are_read_in_their_natural_forms() {
        let id = cols(&["id"]);
        let strs = |k: Vec<Key>| k.iter().map(|k| k.as_str().to_owned()).collect::<Vec<_>>();
        assert_eq!(strs(candidates(&id, "42").unwrap()), ["42", "\"42\""]);
        assert_eq!(strs(candidates(&id, "{\"id\": 42}").unwrap()), ["42"]);
        assert_eq!(strs(candidates(&id, "abc").unwrap()), ["\"abc\""]);
        assert_eq!(strs(candidates(&id, "\"abc\"").unwrap()), ["\"abc\""]);
        let two = cols(&["org", "n"]);
        assert_eq!(strs(candidates(&two, "[\"a\", 1]").unwrap()), ["[\"a\",1]"]);
        assert_eq!(strs(candidates(&two, "{\"n\": 1, \"org\": \"a\"}").unwrap()), ["[\"a\",1]"]);
        let err = candidates(&two, "1").unwrap_err();
        assert!(err.contains("JSON array of (org, n)"), "{err}");
        assert!(candidates(&id, "{\"x\": 1}").unwrap_err().contains("names no `id`"));
    }
}
