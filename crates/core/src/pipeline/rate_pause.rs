//! A stream whose API is rate-limited past the longest wait taken stops at its checkpoint
//! with the time the API allows requests again; that time is stored as a `rate_limited`
//! pause, and a run (or an `--every` tick) before it skips the stream without a request.
//! At or after the time the pause lifts by itself; `dovetail resume` lifts it sooner.

use std::time::SystemTime;

use tracing::{info, warn};

use super::stream::StreamRun;
use crate::error::{Error, ErrorKind, when};
use crate::report::{RunOutcome, StreamReport};
use crate::state::{PauseKind, PausedStream};

/// What a stored pause means for this run.
pub(super) enum Held {
    /// Not rate-limited (or its time has come): run as usual.
    Run,
    /// Skip the stream: the report and error to end it with.
    Skip(Box<(StreamReport, Error)>),
}

impl StreamRun {
    /// A `rate_limited` pause whose time has not come skips the stream; one whose time has
    /// come is lifted.
    pub(super) async fn rate_limit_pause(&self, pause: Option<&PausedStream>) -> Result<Held, Error> {
        let Some(p) = pause.filter(|p| p.kind == PauseKind::RateLimited) else { return Ok(Held::Run) };
        let (pipeline, stream) = (&self.shared.name, &self.spec.name);
        let until = p.until.as_deref().and_then(parse_time);
        let now = SystemTime::now();
        match until {
            Some(t) if t > now => {
                let at = when(t, now);
                info!(stream = %stream, until = p.until.as_deref().unwrap_or_default(),
                    "stream skipped: its API allows requests again at {at}; no request sent");
                let report = StreamReport {
                    outcome: RunOutcome::Paused,
                    paused: Some(format!(
                        "rate-limited until {}: {}",
                        p.until.as_deref().unwrap_or_default(),
                        p.reason
                    )),
                    ..StreamReport::default()
                };
                let err = Error::new(
                    ErrorKind::RateLimited { until: Some(t) },
                    format!("skipped without calling the API, which allows requests again at {at} (rate-limited since {}: {})", p.since, p.reason),
                )
                .in_pipeline(pipeline)
                .in_stream(stream);
                Ok(Held::Skip(Box::new((report, err))))
            }
            _ => {
                self.shared.state.unpause(pipeline, stream).await?;
                info!(stream = %stream, "the API's rate-limit time has come: the stream runs again");
                Ok(Held::Run)
            }
        }
    }

    /// A run that ended rate-limited with a time to come back records the pause (whatever
    /// `on_unavailable` says: waiting is what the API asked for). `Ok(true)`: recorded.
    pub(super) async fn record_rate_limit(&self, err: &Error, report: &mut StreamReport) -> Result<bool, Error> {
        let ErrorKind::RateLimited { until: Some(t) } = err.kind() else { return Ok(false) };
        if *t <= SystemTime::now() {
            return Ok(false);
        }
        let until = jiff::Timestamp::try_from(*t).map(|t| t.to_string()).unwrap_or_default();
        let reason = format!("{} error: {}", err.kind(), err.reason());
        warn!(stream = %self.spec.name, until = %until,
            "stream stopped at its checkpoint: the API is rate-limited for longer than dovetail waits; runs before then skip it");
        let pause = PausedStream {
            pipeline: self.shared.name.clone(),
            stream: self.spec.name.clone(),
            kind: PauseKind::RateLimited,
            reason: reason.clone(),
            since: crate::now_rfc3339(),
            until: Some(until.clone()),
            location: err.context().location.clone(),
        };
        self.shared.state.pause(&pause).await?;
        report.paused = Some(format!("rate-limited until {until}: {reason}"));
        Ok(true)
    }
}

/// An RFC 3339 time as stored.
fn parse_time(s: &str) -> Option<SystemTime> {
    s.parse::<jiff::Timestamp>().ok().map(SystemTime::from)
}
