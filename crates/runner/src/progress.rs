//! Progress: on a terminal, one bar per stream redrawn in place (indicatif) plus one line of
//! the source's HTTP figures (retries, waits, refreshes), with log lines printed above the bars
//! instead of through them. A bar counts what the summary table counts, and shows a total and
//! an ETA when the API says how far its listing goes (`Source::extent`). Off a terminal (CI, a service, a file), a plain `progress` log line
//! per stream every `DOVETAIL_PROGRESS_SECS` seconds (default 10; 0 turns them off).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::logbuf::BufferedLog;
use dovetail_core::{Extent, HttpReport, Progress, Source, StreamReport};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing_subscriber::fmt::MakeWriter;

/// The bars on screen, shared with the log writer so logs do not tear them.
static MULTI: OnceLock<MultiProgress> = OnceLock::new();

fn multi() -> &'static MultiProgress {
    MULTI.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8)))
}

/// Where log lines go: stderr — above any progress bars and unbuffered on a terminal,
/// through a [`BufferedLog`] otherwise (one write per 64 KiB or 100 ms instead of one per
/// line; warnings and errors are written at once).
#[derive(Debug, Clone, Default)]
pub struct LogSink {
    buffered: Option<Arc<BufferedLog>>,
}

/// The process's buffered log, flushed by [`flush_logs`] before exit.
static BUFFERED: OnceLock<Arc<BufferedLog>> = OnceLock::new();

impl LogSink {
    /// The sink for this process's stderr.
    pub fn stderr() -> LogSink {
        if std::io::stderr().is_terminal() {
            return LogSink::default();
        }
        let log = BUFFERED.get_or_init(|| BufferedLog::new(std::io::stderr(), Duration::from_millis(100)));
        LogSink { buffered: Some(log.clone()) }
    }
}

/// Write out buffered log lines (before the process exits, or from a panic hook).
pub fn flush_logs() {
    if let Some(log) = BUFFERED.get() {
        log.flush_now();
    }
}

/// One log line's writer; `urgent` lines (warnings and errors) are written out at once.
#[derive(Debug)]
pub struct LogLine<'a> {
    sink: &'a LogSink,
    urgent: bool,
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = LogLine<'a>;
    fn make_writer(&'a self) -> LogLine<'a> {
        LogLine { sink: self, urgent: false }
    }
    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LogLine<'a> {
        LogLine { sink: self, urgent: *meta.level() <= tracing::Level::WARN }
    }
}

impl Write for LogLine<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(log) = &self.sink.buffered {
            log.append(buf);
            if self.urgent {
                log.flush_now();
            }
            return Ok(buf.len());
        }
        match MULTI.get() {
            Some(m) => m.suspend(|| std::io::stderr().write_all(buf)).map(|()| buf.len()),
            None => std::io::stderr().write_all(buf).map(|()| buf.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match &self.sink.buffered {
            Some(log) => {
                log.flush_now();
                Ok(())
            }
            None => std::io::stderr().flush(),
        }
    }
}

/// Where a run's progress goes: bars on a terminal, periodic log lines elsewhere.
pub fn for_run(source: Option<Arc<dyn Source>>) -> Option<Arc<dyn Progress>> {
    let http = source.map(HttpFigures::new);
    if std::io::stderr().is_terminal() {
        let bars = Arc::new(Bars { bars: Mutex::default(), http, http_bar: OnceLock::new() });
        redraw_http_while_running(&bars);
        return Some(bars);
    }
    let secs = std::env::var("DOVETAIL_PROGRESS_SECS").ok().and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(10.0);
    let every = Duration::try_from_secs_f64(secs).ok().filter(|d| !d.is_zero())?;
    Some(Arc::new(Lines::new(every, http)))
}

/// The source's HTTP figures since the run started (its client outlives single runs).
struct HttpFigures {
    source: Arc<dyn Source>,
    before: HttpReport,
}

impl HttpFigures {
    fn new(source: Arc<dyn Source>) -> Self {
        let before = source.http_report().unwrap_or_default();
        HttpFigures { source, before }
    }

    /// The HTTP figures of this run so far, or `None` for a source that does not speak HTTP.
    fn so_far(&self) -> Option<HttpReport> {
        Some(self.source.http_report()?.since(&self.before))
    }

    /// The summary table's HTTP figures so far (`340 requests (352 attempts); 12 retries (503
    /// ×10, 429 ×2) waiting 3.2s; ...`), or `None` for a source that does not speak HTTP.
    fn summary(&self) -> Option<String> {
        let r = self.so_far()?;
        let mut s = crate::output::http_parts(&r).join("; ");
        if let Some(until) = &r.rate_limited_until {
            s.push_str(&format!(" — rate-limited, waiting until {}", crate::commands::status::short_time(until)));
        }
        Some(s)
    }
}

/// Redraw the HTTP line every second until the run drops its bars: a rate-limit wait has no
/// batches to redraw it, and the line is where it says what the run waits for.
fn redraw_http_while_running(bars: &Arc<Bars>) {
    if bars.http.is_none() {
        return;
    }
    let weak = Arc::downgrade(bars);
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let Some(bars) = weak.upgrade() else { return };
            if bars.http_bar.get().is_some_and(ProgressBar::is_finished) {
                return;
            }
            bars.draw_http();
        }
    });
}

/// One bar per stream and one line of HTTP figures.
struct Bars {
    bars: Mutex<HashMap<String, ProgressBar>>,
    http: Option<HttpFigures>,
    http_bar: OnceLock<ProgressBar>,
}

impl Bars {
    fn bar(&self, stream: &str) -> ProgressBar {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        bars.entry(stream.to_owned())
            .or_insert_with(|| {
                let style = ProgressStyle::with_template("{spinner:.cyan} {prefix:.bold} {msg} [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
                let bar = multi().add(ProgressBar::new_spinner().with_style(style).with_prefix(stream.to_owned()));
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            })
            .clone()
    }

    /// A total and an ETA on the bar once the source knows how far the listing goes.
    fn show_extent(&self, bar: &ProgressBar, stream: &str, report: &StreamReport) {
        let Some(extent) = self.http.as_ref().and_then(|h| h.source.extent(stream)) else { return };
        let (at, last, unit) = match extent {
            Extent::Records(total) => (report.read, total, "records"),
            Extent::Pages { at, last } => (at, last, "pages"),
        };
        if bar.length() != Some(last) {
            let template = format!(
                "{{spinner:.cyan}} {{prefix:.bold}} [{{bar:20}}] {{pos}}/{{len}} {unit}, ETA {{eta}} · {{msg}} [{{elapsed}}]"
            );
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_length(last);
        }
        bar.set_position(at.min(last));
    }

    fn draw_http(&self) {
        let Some(text) = self.http.as_ref().and_then(HttpFigures::summary) else { return };
        let bar = self.http_bar.get_or_init(|| {
            let style = ProgressStyle::with_template("  {prefix:.dim} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            multi().add(ProgressBar::new_spinner().with_style(style).with_prefix("http"))
        });
        bar.set_message(text);
    }
}

/// The summary table's counts: `12 read, 11 written, 0 unchanged, 0 before-cursor, ...`.
fn counts(r: &StreamReport) -> String {
    let cols = crate::output::columns(r.superseded > 0);
    let mut s =
        cols.iter().map(|(h, f)| format!("{} {}", f(r), h.trim_start_matches('#'))).collect::<Vec<_>>().join(", ");
    if r.outbox_queued > 0 {
        s.push_str(&format!(", {} queued (sink down)", r.outbox_queued));
    }
    s
}

/// Records read per second since `since`, whole; 0 before a millisecond has passed.
fn records_per_s(read: u64, since: Instant) -> u64 {
    let secs = since.elapsed().as_secs_f64();
    if secs < 0.001 { 0 } else { (read as f64 / secs).round() as u64 }
}

impl Progress for Bars {
    fn started(&self, stream: &str) {
        self.bar(stream).set_message("starting");
    }
    fn batch(&self, stream: &str, report: &StreamReport) {
        let bar = self.bar(stream);
        self.show_extent(&bar, stream, report);
        let per_sec = report.read as f64 / bar.elapsed().as_secs_f64().max(0.001);
        bar.set_message(format!("{} ({per_sec:.0} records/s)", counts(report)));
        self.draw_http();
    }
    fn finished(&self, stream: &str, report: &StreamReport) {
        let bar = self.bar(stream);
        self.show_extent(&bar, stream, report);
        bar.finish_with_message(format!("{} — {}", counts(report), report.outcome));
        self.draw_http();
        if let Some(b) = self.http_bar.get()
            && self.bars.lock().unwrap_or_else(|p| p.into_inner()).values().all(ProgressBar::is_finished)
        {
            b.finish();
        }
    }
}

/// Periodic `progress` log lines, at most one per stream per interval.
struct Lines {
    every: Duration,
    http: Option<HttpFigures>,
    /// Per stream: when it started and when its last line was written.
    streams: Mutex<HashMap<String, (Instant, Instant)>>,
}

impl Lines {
    fn new(every: Duration, http: Option<HttpFigures>) -> Self {
        Lines { every, http, streams: Mutex::default() }
    }
}

impl Progress for Lines {
    fn started(&self, stream: &str) {
        let now = Instant::now();
        self.streams.lock().unwrap_or_else(|p| p.into_inner()).insert(stream.to_owned(), (now, now));
    }
    fn batch(&self, stream: &str, report: &StreamReport) {
        let started = {
            let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let entry = streams.entry(stream.to_owned()).or_insert((now, now));
            if now.duration_since(entry.1) < self.every {
                return;
            }
            entry.1 = now;
            entry.0
        };
        let http = self.http.as_ref().and_then(HttpFigures::summary);
        let figures = self.http.as_ref().and_then(HttpFigures::so_far);
        let figure = |f: fn(&HttpReport) -> u64| figures.as_ref().map(f);
        // Numbers stay numbers under `--log-format json`; the HTTP fields only for a source
        // that speaks HTTP (`None` records no field).
        tracing::info!(
            stream,
            read = report.read,
            written = report.written,
            unchanged = report.skipped_unchanged,
            before_cursor = report.filtered,
            deleted = report.deleted,
            dead_lettered = report.dead_lettered,
            records_per_s = records_per_s(report.read, started),
            http_requests = figure(|h| h.requests),
            http_attempts = figure(|h| h.attempts),
            http_retries = figure(|h| h.retries),
            http_failed = figure(|h| h.failed),
            rate_limit_wait_ms = figure(|h| h.rate_limit_wait_ms),
            http = http.as_deref(),
            "progress"
        );
    }
}
