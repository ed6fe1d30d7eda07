//! `dovetail preview`: one page of a stream (or the first N records), as the source returns
//! it, as the mapping turns it out, and the schema a first run would take as its baseline.
//! It writes nothing: no state database is opened or created (the response cache is off),
//! no sink is opened, no checkpoint moves.

use std::path::Path;

use dovetail_core::Record;
use dovetail_core::connector::{Cx, Next, ReadRequest};
use serde_json::Value;

use crate::cli::PreviewArgs;
use crate::{config, output};

/// Pages fetched at most to reach `--limit`, so a limit past the end of a long listing stops.
const MAX_PAGES: usize = 100;

/// Fetch, map and print; exit 0 unless the fetch fails.
pub async fn run(config_path: &Path, args: &PreviewArgs) -> anyhow::Result<i32> {
    crate::stores::write_nothing();
    let project = config::load(config_path)?;
    let spec = project.pipeline(&args.pipeline)?;
    let names = spec.stream_names();
    if !names.contains(&args.stream) {
        let hint = crate::diag::nearest(&args.stream, names.iter().map(String::as_str))
            .map(|n| format!("did you mean `{n}`? "))
            .unwrap_or_default();
        let list = names.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ");
        return Err(project
            .doc
            .error_nowhere(format!("no stream `{}` in pipeline `{}`; {hint}(streams: {list})", args.stream, spec.name))
            .into());
    }
    let opts = spec.streams.get(&args.stream).cloned().unwrap_or_default();
    let batch_size = spec.batch_size.unwrap_or(dovetail_core::pipeline::DEFAULT_BATCH_SIZE);
    let mut request = ReadRequest {
        stream: args.stream.clone(),
        position: None,
        since: None,
        batch_size: args.limit.map_or(batch_size, |n| batch_size.min(n as usize)),
        use_cache: false,
    };
    let cx = Cx { pipeline: spec.name.clone(), cancel: super::cancel_on_signal(), ..Default::default() };
    // What the remote declares first, as a run does (a catalog, properties).
    spec.source.discover(&cx).await.map_err(|e| e.in_pipeline(&spec.name).in_connector(spec.source.kind()))?;
    let want = args.limit.unwrap_or(u64::MAX) as usize;
    let (mut records, mut rejects, mut more) = (Vec::<Record>::new(), 0usize, false);
    for _ in 0..MAX_PAGES {
        let page =
            spec.source.read(&request, &cx).await.map_err(|e| e.in_pipeline(&spec.name).in_stream(&args.stream))?;
        rejects += page.rejects.len();
        records.extend(page.records);
        more = matches!(page.next, Next::More(_));
        match page.next {
            Next::More(pos) if args.limit.is_some() && records.len() < want => request.position = Some(pos),
            _ => break,
        }
    }
    more |= records.len() > want;
    records.truncate(want);
    output::out(&render(spec.name.as_str(), &args.stream, &records, rejects, more, opts.mapping.as_deref()))?;
    Ok(0)
}

/// The three sections: raw records, mapped records (or why one failed), the inferred schema.
fn render(
    pipeline: &str,
    stream: &str,
    records: &[Record],
    rejects: usize,
    more: bool,
    mapping: Option<&dyn dovetail_core::Transform>,
) -> String {
    let mut out = format!(
        "preview of `{pipeline}` / `{stream}`: {} record{}{}{}. Nothing was written.\n",
        records.len(),
        if records.len() == 1 { "" } else { "s" },
        if rejects > 0 { format!(", {rejects} undecodable (they would be dead letters)") } else { String::new() },
        if more { "; more follow" } else { "" },
    );
    out.push_str("\n== raw records ==\n");
    for r in records {
        out.push_str(&pretty(&r.data));
    }
    out.push_str("\n== mapped records ==\n");
    match mapping {
        None => out.push_str("(no mapping: the sink gets the raw records)\n"),
        Some(m) => {
            for (i, r) in records.iter().enumerate() {
                match m.apply(r.data.clone()) {
                    Ok(outs) => outs.iter().for_each(|o| out.push_str(&pretty(o))),
                    Err(e) => {
                        out.push_str(&format!("record {}: mapping failed at `{}`: {}\n", i + 1, e.path, e.reason))
                    }
                }
            }
        }
    }
    out.push_str("\n== inferred schema (the raw records; a first run stores it as the drift baseline) ==\n");
    out.push_str(&pretty(&dovetail_core::schema::infer(records.iter().map(|r| &r.data))));
    out
}

fn pretty(v: &Value) -> String {
    format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()))
}
