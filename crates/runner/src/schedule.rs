//! `dovetail run --every DURATION`: run the selected pipelines at once, then at every tick
//! of a fixed-rate clock. A tick that comes while a run is still going is skipped (logged and
//! counted), never queued; each pipeline's run lock still keeps other processes out.
//! SIGTERM / ctrl-c while waiting exits 0 at once; during a run it interrupts the run the
//! way a single `dovetail run` is interrupted, and the loop ends with that run's code.
//!
//! Also a pipeline's own schedule for `dovetail worker` ([`PipelineSchedule`]: `schedule`
//! with `timezone`, or `every`), as the latest tick at or before a time: a fleet compares
//! ticks, never counts them, so ticks missed while every worker was down run once.

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

/// When a worker runs a pipeline (`[pipelines.X] schedule` + `timezone`, or `every`).
#[derive(Debug, Clone)]
pub enum PipelineSchedule {
    /// Fixed rate, ticks aligned to the Unix epoch (so every worker sees the same ones).
    Every(Duration),
    /// A cron pattern in a time zone.
    Cron(Box<croner::Cron>, jiff::tz::TimeZone),
}

impl PipelineSchedule {
    /// From the pipeline's keys; `Err` says which key and why (the caller adds the line).
    pub fn parse(
        schedule: Option<&str>,
        timezone: Option<&str>,
        every: Option<&str>,
    ) -> Result<Option<PipelineSchedule>, (&'static str, String)> {
        match (schedule, every) {
            (Some(_), Some(_)) => Err(("every", "set `schedule` or `every`, not both".to_owned())),
            (None, Some(e)) => {
                if timezone.is_some() {
                    return Err(("timezone", "`timezone` applies to `schedule` only".to_owned()));
                }
                parse_every(e).map(|d| Some(PipelineSchedule::Every(d))).map_err(|m| ("every", m))
            }
            (Some(c), None) => {
                let cron: croner::Cron = c
                    .trim()
                    .parse()
                    .map_err(|e| ("schedule", format!("`{c}` is not a cron pattern like `*/15 * * * *` ({e})")))?;
                let tz = match timezone {
                    None => jiff::tz::TimeZone::UTC,
                    Some(name) => jiff::tz::TimeZone::get(name).map_err(|e| {
                        ("timezone", format!("`{name}` is not an IANA time zone like `Europe/Paris` ({e})"))
                    })?,
                };
                Ok(Some(PipelineSchedule::Cron(Box::new(cron), tz)))
            }
            (None, None) if timezone.is_some() => {
                Err(("timezone", "`timezone` applies to `schedule`, which is not set".to_owned()))
            }
            (None, None) => Ok(None),
        }
    }

    /// The latest tick at or before `now`, in Unix seconds (`None`: the pattern never fired).
    pub fn latest_tick(&self, now: jiff::Timestamp) -> Option<i64> {
        match self {
            PipelineSchedule::Every(d) => {
                let every = i64::try_from(d.as_secs().max(1)).unwrap_or(i64::MAX);
                Some(now.as_second().div_euclid(every) * every)
            }
            PipelineSchedule::Cron(cron, tz) => {
                let at = now.to_zoned(tz.clone());
                cron.find_previous_occurrence(&at, true).ok().map(|z| z.timestamp().as_second())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_schedules_tick_at_the_latest_time_at_or_before_now() {
        let now: jiff::Timestamp = "2026-03-01T10:17:41Z".parse().unwrap();
        let every = PipelineSchedule::parse(None, None, Some("15m")).unwrap().unwrap();
        assert_eq!(
            every.latest_tick(now),
            Some("2026-03-01T10:15:00Z".parse::<jiff::Timestamp>().unwrap().as_second())
        );
        let cron = PipelineSchedule::parse(Some("*/15 * * * *"), None, None).unwrap().unwrap();
        assert_eq!(cron.latest_tick(now), every.latest_tick(now));
        let paris = PipelineSchedule::parse(Some("0 9 * * *"), Some("Europe/Paris"), None).unwrap().unwrap();
        assert_eq!(
            paris.latest_tick(now),
            Some("2026-03-01T08:00:00Z".parse::<jiff::Timestamp>().unwrap().as_second())
        );
        assert_eq!(PipelineSchedule::parse(Some("* *"), None, None).unwrap_err().0, "schedule");
        assert_eq!(PipelineSchedule::parse(Some("* * * * *"), Some("Mars/Olympus"), None).unwrap_err().0, "timezone");
        assert_eq!(PipelineSchedule::parse(Some("* * * * *"), None, Some("1m")).unwrap_err().0, "every");
        assert_eq!(PipelineSchedule::parse(None, None, Some("0s")).unwrap_err().0, "every");
    }

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
