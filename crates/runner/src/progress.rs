//! Progress on a terminal: one line per stream, redrawn in place (indicatif), with log lines
//! printed above the bars instead of through them. Off a terminal there are no bars: the
//! logs and the final summary say what happened.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use dovetail_core::{Progress, StreamReport};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bars on screen, shared with the log writer so logs do not tear them.
static MULTI: OnceLock<MultiProgress> = OnceLock::new();

fn multi() -> &'static MultiProgress {
    MULTI.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8)))
}

/// Where log lines go: stderr, above any progress bars.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match MULTI.get() {
            Some(m) => m.suspend(|| std::io::stderr().write_all(buf)).map(|()| buf.len()),
            None => std::io::stderr().write_all(buf).map(|()| buf.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// One bar per stream.
#[derive(Debug, Default)]
pub struct Bars {
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    /// Bars when stderr is a terminal, else `None`.
    pub fn for_terminal() -> Option<Arc<dyn Progress>> {
        std::io::stderr().is_terminal().then(|| Arc::new(Bars::default()) as Arc<dyn Progress>)
    }

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
}

fn counts(r: &StreamReport) -> String {
    let mut s = format!("{} read, {} written, {} unchanged", r.read, r.written, r.skipped_unchanged);
    if r.dead_lettered > 0 {
        s.push_str(&format!(", {} dead-lettered", r.dead_lettered));
    }
    if r.outbox_queued > 0 {
        s.push_str(&format!(", {} queued (sink down)", r.outbox_queued));
    }
    s
}

impl Progress for Bars {
    fn started(&self, stream: &str) {
        self.bar(stream).set_message("starting");
    }
    fn batch(&self, stream: &str, report: &StreamReport) {
        self.bar(stream).set_message(counts(report));
    }
    fn finished(&self, stream: &str, report: &StreamReport) {
        self.bar(stream).finish_with_message(format!("{} — {}", counts(report), report.outcome));
    }
}
