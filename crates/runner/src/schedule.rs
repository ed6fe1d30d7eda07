//! `dovetail run --every DURATION`: run the selected pipelines at once, then at every tick
//! of a fixed-rate clock. A tick that comes while a run is still going is skipped (logged and
//! counted), never queued; each pipeline's run lock still keeps other processes out.
//! SIGTERM / ctrl-c while waiting exits 0 at once; during a run it interrupts the run the
//! way a single `dovetail run` is interrupted, and the loop ends with that run's code.

use std::time::Duration;

use tokio::time::MissedTickBehavior;

use crate::commands::run::Batch;

/// Parses `--every`: a duration such as `30s`, `15m`, `1h30m` or `PT15M` (jiff's friendly
/// and ISO 8601 formats), at least one second.
pub fn parse_every(s: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration =
        s.trim().parse().map_err(|e| format!("`{s}` is not a duration like `30s`, `15m` or `1h` ({e})"))?;
    let d = Duration::try_from(d).map_err(|_| format!("`{s}` is negative"))?;
    if d < Duration::from_secs(1) {
        return Err(format!("`{s}` is shorter than one second"));
    }
    Ok(d)
}

/// Runs `batch` every `every` until cancelled; the exit code is 0 when stopped while
/// waiting, else the interrupted run's.
pub async fn run_every(batch: &Batch<'_>, every: Duration) -> anyhow::Result<i32> {
    let mut ticks = tokio::time::interval(every);
    // Skip: after a long run the clock does not fire a burst of catch-up ticks.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let every_text = jiff::SignedDuration::try_from(every).map(|d| format!("{d:#}")).unwrap_or_default();
    tracing::info!(every = %every_text, "running on a schedule (SIGTERM or ctrl-c stops)");
    loop {
        tokio::select! {
            biased;
            _ = batch.cancel.cancelled() => {
                tracing::info!("stopped while waiting for the next run");
                return Ok(0);
            }
            _ = ticks.tick() => {}
        }
        let run = batch.run();
        tokio::pin!(run);
        let code = loop {
            tokio::select! {
                // A run that ends as a tick comes did not overlap it.
                biased;
                code = &mut run => break code,
                _ = ticks.tick() => {
                    crate::metrics::skipped_tick();
                    tracing::warn!(every = %every_text, "tick skipped: the previous run is still going");
                }
            }
        };
        if batch.cancel.is_cancelled() {
            tracing::info!(code, "stopped during a run");
            return Ok(code);
        }
        tracing::info!(code, every = %every_text, "scheduled run done; waiting for the next tick");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_takes_friendly_durations_and_refuses_nonsense() {
        assert_eq!(parse_every("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_every("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_every("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_every("PT2M"), Ok(Duration::from_secs(120)));
        let err = parse_every("soon").unwrap_err();
        assert!(err.contains("`soon` is not a duration"), "{err}");
        assert!(parse_every("500ms").unwrap_err().contains("shorter than one second"));
        assert!(parse_every("-5m").is_err());
    }
}
