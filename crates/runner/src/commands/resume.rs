//! `dovetail resume PIPELINE [STREAM]`: lift pauses, whatever caused them.

use std::path::Path;

use crate::cli::ResumeArgs;
use crate::{config, output};

/// Unpause the stream (or every paused stream of the pipeline) and say what was lifted.
pub async fn run(config_path: &Path, args: &ResumeArgs) -> anyhow::Result<i32> {
    let cfg = config::load_state_only(config_path)?;
    if !cfg.pipelines.contains(&args.pipeline) {
        return Err(config::unknown_pipeline(&cfg.doc, &args.pipeline, cfg.pipelines.clone()).into());
    }
    let state = super::open_state_for(&cfg.state_path, &args.pipeline, args.stream.as_slice())?;
    // A run decides per stream whether it is paused; change that only between runs.
    let _lock = state.lock(&args.pipeline).await?;
    let paused: Vec<_> = state
        .paused(Some(&args.pipeline))
        .await?
        .into_iter()
        .filter(|p| args.stream.as_ref().is_none_or(|s| *s == p.stream))
        .collect();
    let mut text = String::new();
    for p in &paused {
        if state.unpause(&p.pipeline, &p.stream).await? {
            text.push_str(&format!(
                "Resumed stream `{}` of pipeline `{}` (paused since {}, {}: {}). The next run reads it from its last checkpoint.\n",
                p.stream, p.pipeline, p.since, p.kind, p.reason
            ));
        }
    }
    if text.is_empty() {
        text = match &args.stream {
            Some(s) => format!("Stream `{s}` of pipeline `{}` is not paused; nothing to resume.\n", args.pipeline),
            None => format!("No stream of pipeline `{}` is paused; nothing to resume.\n", args.pipeline),
        };
    }
    output::out(&text)?;
    Ok(0)
}
