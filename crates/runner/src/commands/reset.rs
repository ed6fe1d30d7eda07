//! `dovetail reset [--ledger] PIPELINE [STREAM]`: forget checkpoints, keep the ledger (or,
//! with `--ledger`, forget its content hashes too, keeping destination ids).

use std::path::Path;

use crate::cli::ResetArgs;
use crate::{config, output};

/// Forget the checkpoints and say how many.
pub async fn run(config_path: &Path, args: &ResetArgs) -> anyhow::Result<i32> {
    let cfg = config::load_state_only(config_path)?;
    if !cfg.pipelines.contains(&args.pipeline) {
        return Err(config::unknown_pipeline(&cfg.doc, &args.pipeline, cfg.pipelines.clone()).into());
    }
    let state = super::open_state_for(&cfg.state_path, &args.pipeline, args.stream.as_slice())?;
    // Never move a checkpoint under a live run.
    let _lock = state.lock(&args.pipeline).await?;
    let n = state.reset(&args.pipeline, args.stream.as_deref()).await?;
    let what = match &args.stream {
        Some(s) => format!("stream `{s}` of pipeline `{}`", args.pipeline),
        None => format!("pipeline `{}`", args.pipeline),
    };
    if args.ledger {
        let rows = state.forget_ledger(&args.pipeline, args.stream.as_deref(), true).await?;
        output::out(&format!(
            "Forgot {n} checkpoint{} and the content hashes of {rows} ledger row{} of {what}. The next run reads from the start and writes every record again; destination ids are kept, so records a create-only sink made are updated, not created again.\n",
            if n == 1 { "" } else { "s" },
            if rows == 1 { "" } else { "s" }
        ))?;
        return Ok(0);
    }
    output::out(&format!(
        "Forgot {n} checkpoint{} of {what}. The ledger is kept: the next run reads from the start and skips records that did not change.\n",
        if n == 1 { "" } else { "s" }
    ))?;
    Ok(0)
}
