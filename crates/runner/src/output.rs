//! What the verbs print: plain-text tables, run summaries, durations.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use dovetail_core::{DriftClass, RunReport, StreamReport};

/// Write to stdout; a closed pipe (`dovetail status | head`) is not an error.
pub fn out(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// `--quiet` was given: the verbs print only what was asked for (no story after `run`).
static QUIET: AtomicBool = AtomicBool::new(false);

/// Set from the command line when logging is set up.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether `--quiet` was given.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Whether errors go to stderr as JSON (`--log-format json`), set once at startup.
static JSON_ERRORS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Print errors as one JSON object each (for `--log-format json`), like the log lines.
pub fn json_errors(on: bool) {
    JSON_ERRORS.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// An error on stderr: its full chain, then what to do about it; under `--log-format json`
/// one JSON object with the kind, message, next step and exit code.
pub fn error(e: &dovetail_core::Error) {
    crate::progress::flush_logs();
    if JSON_ERRORS.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("{}", error_json(e.kind().name(), &e.report(), Some(&e.next_step()), e.kind().exit_code()));
    } else {
        eprintln!("dovetail: {}\n  what to do: {}", e.report(), e.next_step());
    }
}

/// An error that is not one of dovetail's (a bug, a broken pipe on stdout): printed like
/// [`error`], as an internal error without advice.
pub fn other_error(e: &anyhow::Error) {
    crate::progress::flush_logs();
    let code = dovetail_core::ErrorKind::Internal.exit_code();
    if JSON_ERRORS.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("{}", error_json(dovetail_core::ErrorKind::Internal.name(), &format!("{e:#}"), None, code));
    } else {
        eprintln!("dovetail: {e:#}");
    }
}

fn error_json(kind: &str, message: &str, what_to_do: Option<&str>, exit_code: i32) -> String {
    serde_json::json!({
        "timestamp": dovetail_core::now_rfc3339(),
        "level": "ERROR",
        "fields": {"message": message, "kind": kind, "what_to_do": what_to_do, "exit_code": exit_code},
        "target": "dovetail",
    })
    .to_string()
}

/// A text table with left-aligned text and right-aligned numbers.
#[derive(Debug)]
pub struct Table {
    headers: Vec<&'static str>,
    numeric: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Headers; a header starting with `#` marks a right-aligned (numeric) column.
    pub fn new(headers: &[&'static str]) -> Self {
        Table {
            headers: headers.iter().map(|h| h.trim_start_matches('#')).collect(),
            numeric: headers.iter().map(|h| h.starts_with('#')).collect(),
            rows: Vec::new(),
        }
    }

    /// Add a row (one cell per header).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Whether no rows were added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, ending with a newline.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, c) in row.iter().enumerate().take(widths.len()) {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, w) in widths.iter().enumerate() {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                let pad = w.saturating_sub(cell.chars().count());
                if i > 0 {
                    line.push_str("  ");
                }
                if self.numeric[i] {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    if i + 1 < widths.len() {
                        line.push_str(&" ".repeat(pad));
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// One line, at most `max` characters (an ellipsis marks the cut).
pub fn truncate(s: &str, max: usize) -> String {
    let flat: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() <= max {
        return flat;
    }
    let mut t: String = flat.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// A count with thousands separators: `13,521`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Milliseconds as seconds with two decimals.
pub fn seconds(ms: u64) -> String {
    format!("{}.{:02}", ms / 1000, (ms % 1000) / 10)
}

/// `n` with its noun, singular for one: `1 request`, `3 requests`, `1 retry`, `2 retries`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Milliseconds as a short human duration (`850ms`, `12.3s`, `4m05s`, `2h03m`).
pub fn duration(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms}ms"),
        1000..60_000 => format!("{}.{}s", ms / 1000, (ms % 1000) / 100),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000),
        _ => format!("{}h{:02}m", ms / 3_600_000, (ms % 3_600_000) / 60_000),
    }
}

/// The human summary of one run: a header line, a table per stream, and errors.
pub fn run_summary(report: &RunReport, verb: &str) -> String {
    summary(report, verb, false)
}

/// [`run_summary`] for a caller that prints the run's error after it (`dovetail run`): the
/// summary leaves that error out, so it is printed once.
pub fn run_summary_error_below(report: &RunReport, verb: &str) -> String {
    summary(report, verb, true)
}

/// Whether a stream's error is the run's: the run's adds the pipeline and stream to the
/// context before the message, so the stream's message (after its kind and location) ends it.
fn same_error(run: &str, stream: &str) -> bool {
    run == stream || stream.split_once(": ").is_some_and(|(_, message)| run.ends_with(message))
}

fn summary(report: &RunReport, verb: &str, error_below: bool) -> String {
    let mut out = format!(
        "{verb} `{}`: {}{} in {} (run {})\n",
        report.pipeline,
        report.outcome,
        if report.dry_run { " (dry run: nothing written or committed)" } else { "" },
        duration(report.duration_ms),
        report.run_id
    );
    let cols = columns(report.total(|s| s.superseded) > 0);
    let mut headers = vec!["stream"];
    headers.extend(cols.iter().map(|c| c.0));
    headers.extend(["#seconds", "outcome"]);
    let mut t = Table::new(&headers);
    for (name, s) in &report.streams {
        let mut row = vec![name.clone()];
        row.extend(cols.iter().map(|c| c.1(s).to_string()));
        // Stages overlap, so their sum can exceed wall-clock time; a stream never runs
        // longer than its run.
        row.push(seconds(s.stage_ms.values().sum::<u64>().min(report.duration_ms)));
        row.push(format!("{}{}", s.outcome, if s.resumed { " (resumed)" } else { "" }));
        t.row(row);
    }
    if report.streams.len() > 1 {
        let mut row = vec!["total".to_owned()];
        row.extend(cols.iter().map(|c| report.total(c.1).to_string()));
        row.push(seconds(report.duration_ms));
        row.push(report.outcome.to_string());
        t.row(row);
    }
    if !t.is_empty() {
        out.push_str(&t.render());
    }
    let run_error = report.error.as_deref();
    for (name, s) in &report.streams {
        if let Some(e) = &s.error
            && !(error_below && run_error.is_some_and(|r| same_error(r, e)))
        {
            out.push_str(&format!("  stream `{name}` {}: {e}\n", s.outcome));
        }
    }
    if let Some(e) = run_error.filter(|e| {
        !error_below && !report.streams.values().any(|s| s.error.as_deref().is_some_and(|se| same_error(e, se)))
    }) {
        out.push_str(&format!("  error: {e}\n"));
    }
    for (name, s) in &report.streams {
        out.push_str(&quarantine_note(&report.pipeline, name, s));
        out.push_str(&stream_notes(name, s));
    }
    for (role, h) in &report.http {
        out.push_str(&http_line(role, h));
    }
    out
}

/// A stream's count: its `#`-marked header and how to read it from the report.
pub type Column = (&'static str, fn(&StreamReport) -> u64);

/// The counts of a stream, in the order the summary table and the progress bars show them;
/// superseded only when a source repeated a key (most never do).
pub fn columns(superseded: bool) -> Vec<Column> {
    let mut cols: Vec<Column> =
        vec![("#read", |s| s.read), ("#written", |s| s.written), ("#unchanged", |s| s.skipped_unchanged)];
    if superseded {
        cols.push(("#superseded", |s| s.superseded));
    }
    cols.extend::<[Column; 3]>([
        ("#before-cursor", |s| s.filtered),
        ("#deleted", |s| s.deleted),
        ("#dead-lettered", |s| s.dead_lettered),
    ]);
    cols
}

/// A stream that dead-lettered most of what it read (more than half) is not a few bad
/// records but a mapping or a source that changed: say so, with the next step.
fn quarantine_note(pipeline: &str, name: &str, s: &StreamReport) -> String {
    if s.read == 0 || s.dead_lettered * 2 <= s.read {
        return String::new();
    }
    format!(
        "  stream `{name}`: {} of {} records read were dead-lettered ({}%): most of the input did not map. \
         what to do: see why with `dovetail dead-letters list --pipeline {pipeline} --stream {name} --group-by \
         reason`, fix the mapping or the data, then `dovetail dead-letters replay {pipeline}`\n",
        thousands(s.dead_lettered),
        thousands(s.read),
        s.dead_lettered * 100 / s.read
    )
}

/// What else happened to a stream, one line each: outbox, stale pages, drift.
fn stream_notes(name: &str, s: &dovetail_core::StreamReport) -> String {
    let mut out = String::new();
    if s.outbox_queued > 0 || s.outbox_delivered > 0 || s.outbox_pending > 0 {
        out.push_str(&format!(
            "  stream `{name}` outbox: {} queued this run (sink down), {} delivered, {} waiting\n",
            s.outbox_queued, s.outbox_delivered, s.outbox_pending
        ));
    }
    if s.stale_pages > 0 {
        out.push_str(&format!(
            "  stream `{name}`: {} pages served from the last good responses (the remote was down; data may be old)\n",
            s.stale_pages
        ));
    }
    for d in &s.drift {
        let what = match d.change {
            DriftClass::TypeChanged => format!("changed type: expected {}, got {}", d.expected, d.observed),
            DriftClass::NullValue if d.observed == "null" => {
                format!("null where the schema promises {} (kept as null)", d.expected)
            }
            // A coercion: `null (read as [])`.
            DriftClass::NullValue => format!("{} where the schema promises {}", d.observed, d.expected),
            DriftClass::NewField => format!("new field ({})", d.observed),
            DriftClass::MissingField if d.observed == "absent" => "required field missing".to_owned(),
            DriftClass::MissingField => format!("required field missing, {}", d.observed),
            DriftClass::EnumValue => format!("value {} not among {}", d.observed, d.expected),
            DriftClass::ColumnType => {
                format!("{} no longer fits its sink column (made for {})", d.observed, d.expected)
            }
        };
        out.push_str(&format!(
            "  stream `{name}` drift at {}: {what} in {} records (first at {})\n",
            d.path, d.count, d.first_at
        ));
    }
    out
}

/// One line of HTTP figures for a connector role (`source`, `sink`).
fn http_line(role: &str, h: &dovetail_core::HttpReport) -> String {
    if h.requests == 0 && h.attempts == 0 {
        return String::new();
    }
    let mut line = format!("  {role} http: {}\n", http_parts(h).join("; "));
    for d in &h.deprecations {
        line.push_str(&format!(
            "  {role} http: {} is deprecated{}{}\n",
            d.endpoint,
            d.deprecation.as_ref().map(|v| format!(" (Deprecation: {v})")).unwrap_or_default(),
            d.sunset.as_ref().map(|v| format!("; sunset {v}")).unwrap_or_default()
        ));
    }
    line
}

/// The HTTP figures in words, as the run summary and the progress bars both show them (so
/// the waits on the bar are the table's): requests and attempts, retries by cause and their
/// wait, 429s and the rate-limit wait, tokens, the cache, failures, the API version.
pub fn http_parts(h: &dovetail_core::HttpReport) -> Vec<String> {
    let mut parts =
        vec![format!("{} ({})", count(h.requests, "request", "requests"), count(h.attempts, "attempt", "attempts"))];
    if h.retries > 0 {
        let causes: Vec<String> = h.retry_causes.iter().map(|(c, n)| format!("{c} ×{n}")).collect();
        let retries = count(h.retries, "retry", "retries");
        parts.push(format!("{retries} ({}) waiting {}", causes.join(", "), duration(h.retry_wait_ms)));
    }
    if let Some(n) = h.by_status.get("429") {
        parts.push(format!("{n} rate-limited (429)"));
    }
    if h.rate_limit_wait_ms > 0 {
        parts.push(format!("{} waiting on rate limits", duration(h.rate_limit_wait_ms)));
    }
    if h.token_requests > 0 {
        parts.push(count(h.token_requests, "token request", "token requests"));
    }
    if h.not_modified > 0 {
        parts.push(format!("{} not modified (304)", h.not_modified));
    }
    if h.stale > 0 {
        parts.push(format!("{} served stale", h.stale));
    }
    if h.failed > 0 {
        parts.push(format!("{} failed", h.failed));
    }
    if let Some(v) = &h.api_version {
        parts.push(format!("API version {v}"));
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["name", "#n"]);
        t.row(vec!["a".into(), "1000".into()]);
        t.row(vec!["long name".into(), "7".into()]);
        assert_eq!(t.render(), "name          n\na          1000\nlong name     7\n");
    }

    #[test]
    fn durations_and_truncation() {
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(12_345), "12.3s");
        assert_eq!(duration(245_000), "4m05s");
        assert_eq!(seconds(1234), "1.23");
        assert_eq!(truncate("abc\ndef", 10), "abc def");
        assert_eq!(truncate("abcdefghij", 5), "abcd…");
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(13_521), "13,521");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn counts_take_the_singular_for_one_only() {
        assert_eq!(count(1, "retry", "retries"), "1 retry");
        assert_eq!(count(0, "retry", "retries"), "0 retries");
        assert_eq!(count(2, "token request", "token requests"), "2 token requests");
        let mut h =
            dovetail_core::HttpReport { requests: 1, attempts: 2, retries: 1, token_requests: 1, ..Default::default() };
        h.retry_causes.insert("503".into(), 1);
        let line = "  source http: 1 request (2 attempts); 1 retry (503 ×1) waiting 0ms; 1 token request\n";
        assert_eq!(http_line("source", &h), line);
    }
}
