//! The one error type of dovetail and the [`ErrorKind`] that decides retry, dead letter or abort.

use std::fmt;

/// What went wrong, in the terms that decide what happens next.
///
/// The kind is the single place where retry / dead-letter / abort is decided, and each kind
/// maps to a distinct process exit code (see [`ErrorKind::exit_code`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ErrorKind {
    /// The configuration is invalid; fix the config file.
    Config,
    /// Credentials were rejected or could not be obtained.
    Auth,
    /// The remote asked us to slow down; `until` is when it allows requests again.
    RateLimited {
        /// When the remote allows requests again, when it said (or a vendor rule implies it).
        until: Option<std::time::SystemTime>,
    },
    /// A failure that may succeed when retried.
    Transient,
    /// The remote stayed down past the retry budget (circuit open).
    Unavailable,
    /// A failure that will not succeed when retried.
    Permanent,
    /// One record's data is bad (decode, validation, mapping, drift under quarantine).
    Data,
    /// A bug or broken invariant inside dovetail.
    Internal,
    /// The run was stopped by a signal; state was committed.
    Interrupted,
    /// Someone else holds what this needs: the pipeline's run lock, or the state database
    /// past its busy timeout. Nothing is wrong; wait for the holder or stop it.
    Busy,
}

impl ErrorKind {
    /// The process exit code the CLI uses for this kind (documented in docs/operations.md).
    pub fn exit_code(&self) -> i32 {
        match self {
            ErrorKind::Config => 3,
            ErrorKind::Auth => 4,
            ErrorKind::RateLimited { .. } => 5,
            ErrorKind::Transient => 6,
            ErrorKind::Unavailable => 7,
            ErrorKind::Permanent => 8,
            ErrorKind::Data => 9,
            ErrorKind::Internal => 10,
            ErrorKind::Busy => 11,
            ErrorKind::Interrupted => 130,
        }
    }

    /// Short lowercase name used in logs, reports and dead letters.
    pub fn name(&self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Auth => "auth",
            ErrorKind::RateLimited { .. } => "rate_limited",
            ErrorKind::Transient => "transient",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Permanent => "permanent",
            ErrorKind::Data => "data",
            ErrorKind::Internal => "internal",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::Busy => "busy",
        }
    }

    /// What the engine, the HTTP client, sinks and alerting do with a failure of this kind:
    /// the one table every caller consults instead of matching kinds itself.
    pub fn disposition(&self) -> Disposition {
        match self {
            ErrorKind::Transient | ErrorKind::RateLimited { .. } => Disposition::Retry,
            ErrorKind::Unavailable => Disposition::Outage,
            ErrorKind::Permanent | ErrorKind::Data => Disposition::Reject,
            // Busy aborts rather than retries: the holder may run for hours, so a person (or
            // the scheduler's next tick) decides when to try again.
            ErrorKind::Config | ErrorKind::Auth | ErrorKind::Internal | ErrorKind::Busy => Disposition::Abort,
            ErrorKind::Interrupted => Disposition::Stop,
        }
    }

    /// Whether an operation failing with this kind may be retried.
    pub fn is_retryable(&self) -> bool {
        self.disposition().retries()
    }
}

/// What happens after a failure, decided by [`ErrorKind::disposition`] alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Try the same operation again after a backoff (or the wait the remote asked for); once
    /// the retry budget is spent, the remote counts as down ([`Disposition::Outage`]).
    Retry,
    /// The remote is down: a sink's records go to the outbox, a source's stream follows its
    /// `on_unavailable` policy (fail, pause, serve cached pages).
    Outage,
    /// This record or request was refused and retrying will not change that: a record is
    /// dead-lettered and its batch goes on; anything else fails the run.
    Reject,
    /// Stop the run: a person (or time) must act (config, credentials, a bug, another run
    /// holding the lock). Nothing is queued.
    Abort,
    /// Stop the run after committing what was delivered (a signal).
    Stop,
}

impl Disposition {
    /// Whether the failed operation is tried again.
    pub fn retries(self) -> bool {
        self == Disposition::Retry
    }
    /// Whether, once retries are spent, this means the remote is down (outbox, pause, cache).
    pub fn is_outage(self) -> bool {
        matches!(self, Disposition::Retry | Disposition::Outage)
    }
    /// Whether a sink dead-letters the one record that failed this way and keeps going.
    pub fn rejects_record(self) -> bool {
        self == Disposition::Reject
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where an error happened: pipeline, stream, connector, request or record location.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorContext {
    /// Pipeline name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    /// Stream name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Connector kind (e.g. `files`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connector: Option<String>,
    /// Request, file or record location (URL without secrets, `file line N`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// dovetail's error: a kind, a message, context, and the source chain (boxed: errors are
/// cold and `Result<T, Error>` stays one pointer wide).
#[derive(Debug)]
pub struct Error(Box<Inner>);

#[derive(Debug)]
struct Inner {
    kind: ErrorKind,
    message: String,
    context: ErrorContext,
    source: Option<Source>,
    /// What the operator should do next, when the code that failed knows better than the kind.
    hint: Option<String>,
    /// What the HTTP response that failed said, when one did.
    http: Option<Box<HttpFailure>>,
}

/// What a failed HTTP exchange said, as data, so no caller parses an error message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpFailure {
    /// The response status (`None` when no response came: connect error, timeout).
    pub status: Option<u16>,
    /// How long the remote asked to wait (Retry-After, a rate-limit reset), in milliseconds.
    pub retry_after_ms: Option<u64>,
    /// Response headers that explain the failure (rate-limit, request id), names lowercase;
    /// never a credential.
    pub headers: Vec<(String, String)>,
}

impl HttpFailure {
    /// The value of header `name` (lowercase), if the response had it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Errors returned by connectors are ordinary dovetail errors.
pub type ConnectorError = Error;

/// Result alias with dovetail's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a human message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error(Box::new(Inner {
            kind,
            message: message.into(),
            context: ErrorContext::default(),
            source: None,
            hint: None,
            http: None,
        }))
    }
    /// Shorthand for a [`ErrorKind::Config`] error.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    /// Shorthand for a [`ErrorKind::Data`] error.
    pub fn data(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Data, message)
    }
    /// Shorthand for a [`ErrorKind::Internal`] error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    /// Shorthand for a [`ErrorKind::Permanent`] error.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Permanent, message)
    }
    /// Shorthand for a [`ErrorKind::Transient`] error.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, message)
    }
    /// Attach the underlying cause, keeping the source chain.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.0.source = Some(Box::new(source));
        self
    }
    /// Set the pipeline in the context (kept if already set).
    pub fn in_pipeline(mut self, pipeline: &str) -> Self {
        self.0.context.pipeline.get_or_insert_with(|| pipeline.to_owned());
        self
    }
    /// Set the stream in the context (kept if already set).
    pub fn in_stream(mut self, stream: &str) -> Self {
        self.0.context.stream.get_or_insert_with(|| stream.to_owned());
        self
    }
    /// Set the connector in the context (kept if already set).
    pub fn in_connector(mut self, connector: &str) -> Self {
        self.0.context.connector.get_or_insert_with(|| connector.to_owned());
        self
    }
    /// Set the location (request, file and line) in the context (kept if already set).
    pub fn at(mut self, location: impl Into<String>) -> Self {
        if self.0.context.location.is_none() {
            self.0.context.location = Some(location.into());
        }
        self
    }
    /// Say what the operator should do next (replaces the kind's generic advice). `{pipeline}`
    /// and `{stream}` in it become the context's names (`PIPELINE` / `STREAM` when unknown), so
    /// code that does not know them (an HTTP client) can still name the command to run.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.0.hint = Some(hint.into());
        self
    }
    /// What to do next: the hint set where the error arose, else advice for its kind that
    /// names the pipeline and stream from the context.
    pub fn next_step(&self) -> String {
        if let Some(h) = &self.0.hint {
            let c = &self.0.context;
            return h
                .replace("{pipeline}", c.pipeline.as_deref().unwrap_or("PIPELINE"))
                .replace("{stream}", c.stream.as_deref().unwrap_or("STREAM"));
        }
        next_step_for(&self.0.kind, &self.0.context)
    }
    /// Attach what the failed HTTP exchange said (status, wait, headers of interest).
    pub fn with_http(mut self, http: HttpFailure) -> Self {
        self.0.http = Some(Box::new(http));
        self
    }
    /// What the failed HTTP exchange said, if this error came from one.
    pub fn http(&self) -> Option<&HttpFailure> {
        self.0.http.as_deref()
    }
    /// The HTTP status of the response that failed, if any.
    pub fn status(&self) -> Option<u16> {
        self.0.http.as_ref().and_then(|h| h.status)
    }
    /// The hint set where the error arose, if any (placeholders not yet filled in).
    pub fn hint(&self) -> Option<&str> {
        self.0.hint.as_deref()
    }
    /// The kind that decides what happens next.
    pub fn kind(&self) -> &ErrorKind {
        &self.0.kind
    }
    /// The message without context.
    pub fn message(&self) -> &str {
        &self.0.message
    }
    /// Where it happened.
    pub fn context(&self) -> &ErrorContext {
        &self.0.context
    }
    /// The full message: context, message and every cause in the chain.
    pub fn report(&self) -> String {
        let mut out = self.to_string();
        let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(self);
        while let Some(e) = cur {
            out.push_str(": ");
            out.push_str(&e.to_string());
            cur = e.source();
        }
        out
    }
}

impl Error {
    /// The message and every cause in the chain, without where it happened.
    pub fn reason(&self) -> String {
        let mut out = self.0.message.clone();
        let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(self);
        while let Some(e) = cur {
            out.push_str(": ");
            out.push_str(&e.to_string());
            cur = e.source();
        }
        out
    }

    /// Where it happened, in words (`pipeline `p`, stream `s`, GET https://…`), if known.
    pub fn place(&self) -> Option<String> {
        let c = &self.0.context;
        let mut parts = Vec::new();
        if let Some(p) = &c.pipeline {
            parts.push(format!("pipeline `{p}`"));
        }
        if let Some(s) = &c.stream {
            parts.push(format!("stream `{s}`"));
        }
        if let Some(k) = &c.connector {
            parts.push(format!("connector `{k}`"));
        }
        if let Some(l) = &c.location {
            parts.push(l.clone());
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    /// [`Error::report`] with the reason before the place: what a table cut to its width
    /// must keep (a long URL first would leave only the URL).
    pub fn reason_first(&self) -> String {
        match self.place() {
            Some(place) => format!("{} error: {} (in {place})", self.0.kind, self.reason()),
            None => format!("{} error: {}", self.0.kind, self.reason()),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.place() {
            None => write!(f, "{} error: {}", self.0.kind, self.0.message),
            Some(place) => write!(f, "{} error in {place}: {}", self.0.kind, self.0.message),
        }
    }
}

/// A time ahead, for a person: `14:32 UTC, in 28 min` (the date too when it is not within
/// the next 24 hours).
pub fn when(t: std::time::SystemTime, now: std::time::SystemTime) -> String {
    let Ok(at) = jiff::Timestamp::try_from(t) else { return "an unknown time".into() };
    // Rounded up: "in 60 s" for a minute that began a few milliseconds ago.
    let ahead = t.duration_since(now).unwrap_or_default().as_millis().div_ceil(1000) as u64;
    let format = if ahead < 86_400 { "%H:%M:%S UTC" } else { "%Y-%m-%d %H:%M UTC" };
    let at = at.to_zoned(jiff::tz::TimeZone::UTC).strftime(format).to_string();
    let rel = match ahead {
        0 => "now".to_owned(),
        s if s < 120 => format!("in {s} s"),
        s if s < 7200 => format!("in {} min", s.div_ceil(60)),
        s => format!("in {} h {} min", s / 3600, (s % 3600) / 60),
    };
    format!("{at}, {rel}")
}

/// Generic advice for a kind of failure, naming the pipeline and stream when known.
pub fn next_step_for(kind: &ErrorKind, c: &ErrorContext) -> String {
    let p = c.pipeline.as_deref().unwrap_or("PIPELINE");
    let only_stream = c.stream.as_deref().map(|s| format!(" --stream {s}")).unwrap_or_default();
    match kind {
        ErrorKind::Config => "fix the config file where the message points, then run `dovetail check`".into(),
        ErrorKind::Auth => "check the credentials this connector uses (the environment variable or file the config \
                            names); the next run starts from the last checkpoint"
            .into(),
        ErrorKind::RateLimited { until: Some(t) } => format!(
            "the API allows requests again at {}; the stream stopped at its checkpoint: run `dovetail run \
             {p}{only_stream}` after that (a run before then skips the stream without calling the API)",
            when(*t, std::time::SystemTime::now())
        ),
        ErrorKind::RateLimited { until: None } | ErrorKind::Transient => {
            format!("run `dovetail run {p}{only_stream}` again; it resumes from the last checkpoint")
        }
        ErrorKind::Unavailable => format!(
            "a source or sink is unavailable (the cause above says which: a remote that is down, a full disk); \
             run `dovetail run {p}` again once it is back (it resumes from the last checkpoint), or set \
             `on_unavailable = \"pause\"` for the stream so runs go on without it"
        ),
        ErrorKind::Permanent => {
            "retrying will not help (a remote refused the request, a file cannot be written, ...); read the cause \
             above, fix it, then run again"
                .into()
        }
        ErrorKind::Data => format!(
            "see the bad records with `dovetail dead-letters list --pipeline {p}`, fix the mapping or the data, \
             then `dovetail dead-letters replay {p}`"
        ),
        ErrorKind::Internal => "this is a bug in dovetail: please report it with the log of a run with `-v`".into(),
        ErrorKind::Interrupted => format!("run `dovetail run {p}` again; it continues from the last checkpoint"),
        ErrorKind::Busy => format!(
            "another dovetail process holds it (the message names it); wait for it to finish, or stop it, then \
             run `dovetail run {p}` again"
        ),
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::new(io_kind(&e), "I/O error").with_source(e)
    }
}

/// The kind of a failed file operation: a full disk is [`ErrorKind::Unavailable`] (it frees
/// up without a config change), an interrupted or timed-out call is transient, anything
/// else (no permission, a read-only file system, ...) is permanent.
pub fn io_kind(e: &std::io::Error) -> ErrorKind {
    use std::io::ErrorKind as Io;
    match e.kind() {
        Io::Interrupted | Io::TimedOut | Io::WouldBlock => ErrorKind::Transient,
        Io::StorageFull | Io::QuotaExceeded => ErrorKind::Unavailable,
        _ => ErrorKind::Permanent,
    }
}

impl Error {
    /// A failed file operation on `path`: `doing` says what ("cannot write to `x`"); a full
    /// disk and a missing permission are named as such, with the path and what to do; a
    /// missing path or one of the wrong type (file or folder) is [`ErrorKind::Config`].
    pub fn io(e: std::io::Error, doing: impl Into<String>, path: &std::path::Path) -> Error {
        use std::io::ErrorKind as Io;
        let doing = doing.into();
        let shown = path.display();
        let (message, hint) = match e.kind() {
            Io::StorageFull | Io::QuotaExceeded => {
                let fs = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(path).display();
                (
                    format!("{doing}: the file system holding `{fs}` is full"),
                    Some(format!(
                        "free space on the file system holding `{fs}` (or point the config elsewhere), then run \
                         `dovetail run {{pipeline}}` again; it resumes from the last checkpoint"
                    )),
                )
            }
            Io::PermissionDenied | Io::ReadOnlyFilesystem => (
                format!("{doing}: permission denied: `{shown}` is not writable by this user ({e})"),
                Some(format!(
                    "give the user running dovetail write permission on `{shown}` and its folder (or \
                     point the config at a writable path), then run again"
                )),
            ),
            _ => (doing, None),
        };
        // A path that is not there or not the right thing (a file where a folder should be)
        // is the config's to fix.
        let kind = match e.kind() {
            Io::NotFound | Io::NotADirectory | Io::IsADirectory | Io::AlreadyExists => ErrorKind::Config,
            _ => io_kind(&e),
        };
        let err = Error::new(kind, message).with_source(e);
        match hint {
            Some(h) => err.with_hint(h),
            None => err,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_can_come_before_the_place() {
        let e = Error::transient("gave up")
            .with_source(std::io::Error::other("refused"))
            .in_pipeline("p")
            .at("GET https://api.example.com/v1/items");
        assert_eq!(
            e.report(),
            "transient error in pipeline `p`, GET https://api.example.com/v1/items: gave up: refused"
        );
        assert_eq!(e.reason(), "gave up: refused");
        assert_eq!(
            e.reason_first(),
            "transient error: gave up: refused (in pipeline `p`, GET https://api.example.com/v1/items)"
        );
        assert_eq!(Error::data("bad").reason_first(), "data error: bad");
    }

    #[test]
    fn every_kind_has_a_distinct_exit_code() {
        let kinds = [
            ErrorKind::Config,
            ErrorKind::Auth,
            ErrorKind::RateLimited { until: None },
            ErrorKind::Transient,
            ErrorKind::Unavailable,
            ErrorKind::Permanent,
            ErrorKind::Data,
            ErrorKind::Internal,
            ErrorKind::Interrupted,
            ErrorKind::Busy,
        ];
        let mut codes: Vec<i32> = kinds.iter().map(|k| k.exit_code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), kinds.len());
        assert!(!codes.contains(&0) && !codes.contains(&1) && !codes.contains(&2));
    }

    #[test]
    fn every_kind_has_one_disposition() {
        use Disposition::*;
        let table = [
            (ErrorKind::Config, Abort, false, false, false),
            (ErrorKind::Auth, Abort, false, false, false),
            (ErrorKind::RateLimited { until: Some(std::time::UNIX_EPOCH) }, Retry, true, true, false),
            (ErrorKind::RateLimited { until: None }, Retry, true, true, false),
            (ErrorKind::Transient, Retry, true, true, false),
            (ErrorKind::Unavailable, Outage, false, true, false),
            (ErrorKind::Permanent, Reject, false, false, true),
            (ErrorKind::Data, Reject, false, false, true),
            (ErrorKind::Internal, Abort, false, false, false),
            (ErrorKind::Interrupted, Stop, false, false, false),
            (ErrorKind::Busy, Abort, false, false, false),
        ];
        for (kind, d, retries, outage, rejects) in table {
            assert_eq!(kind.disposition(), d, "{kind}");
            assert_eq!(d.retries(), retries, "{kind} retries");
            assert_eq!(kind.is_retryable(), retries, "{kind} is_retryable");
            assert_eq!(d.is_outage(), outage, "{kind} outage");
            assert_eq!(d.rejects_record(), rejects, "{kind} rejects a record");
        }
    }

    #[test]
    fn a_full_disk_and_a_missing_permission_are_named_with_what_to_do() {
        use std::io::{Error as IoError, ErrorKind as Io};
        let file = std::path::Path::new("out/a.jsonl");
        let full = Error::io(IoError::from(Io::StorageFull), "cannot write to `out/a.jsonl`", file).in_pipeline("p");
        assert_eq!(full.kind(), &ErrorKind::Unavailable);
        assert_eq!(full.message(), "cannot write to `out/a.jsonl`: the file system holding `out` is full");
        assert!(full.next_step().starts_with("free space on the file system holding `out`"), "{}", full.next_step());
        assert!(full.next_step().contains("dovetail run p"), "{}", full.next_step());
        for denied in [Io::PermissionDenied, Io::ReadOnlyFilesystem] {
            let e = Error::io(IoError::from(denied), "cannot open `out/a.jsonl`", file);
            assert_eq!(e.kind(), &ErrorKind::Permanent, "{denied:?}");
            assert!(e.message().contains("permission denied: `out/a.jsonl` is not writable"), "{e}");
            assert!(e.next_step().starts_with("give the user running dovetail write permission"), "{e}");
        }
        let wrong = Error::io(IoError::from(Io::NotADirectory), "cannot create `out`", file);
        assert_eq!(wrong.kind(), &ErrorKind::Config);
        let other = Error::io(IoError::from(Io::TimedOut), "cannot read `x`", file);
        assert_eq!((other.kind(), other.message(), other.hint()), (&ErrorKind::Transient, "cannot read `x`", None));
        assert_eq!(Error::from(IoError::from(Io::StorageFull)).kind(), &ErrorKind::Unavailable);
    }

    #[test]
    fn busy_says_to_wait_for_the_holder_not_to_fix_the_config() {
        let step = Error::new(ErrorKind::Busy, "held").in_pipeline("p").next_step();
        assert!(step.contains("wait for it to finish, or stop it") && step.contains("dovetail run p"), "{step}");
        assert!(!step.contains("config"), "{step}");
    }

    #[test]
    fn a_hint_names_the_pipeline_and_stream_it_failed_in() {
        let e = Error::permanent("x").with_hint("run `dovetail reset {pipeline} {stream}`");
        assert_eq!(e.next_step(), "run `dovetail reset PIPELINE STREAM`");
        assert_eq!(e.in_pipeline("p").in_stream("items").next_step(), "run `dovetail reset p items`");
    }

    #[test]
    fn display_carries_context_and_report_the_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e =
            Error::permanent("cannot open source").with_source(io).in_pipeline("p").in_stream("s").at("a.jsonl line 3");
        assert_eq!(e.to_string(), "permanent error in pipeline `p`, stream `s`, a.jsonl line 3: cannot open source");
        assert!(e.report().ends_with(": no such file"));
    }

    #[test]
    fn a_time_ahead_is_said_in_utc_with_how_far() {
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000); // 2023-11-14 22:13:20 UTC
        let at = |s: u64| when(now + std::time::Duration::from_secs(s), now);
        assert_eq!(at(0), "22:13:20 UTC, now");
        assert_eq!(at(45), "22:14:05 UTC, in 45 s");
        assert_eq!(at(28 * 60), "22:41:20 UTC, in 28 min");
        assert_eq!(at(3 * 3600 + 120), "01:15:20 UTC, in 3 h 2 min");
        assert_eq!(at(2 * 86_400), "2023-11-16 22:13 UTC, in 48 h 0 min");
    }

    #[test]
    fn next_step_names_the_pipeline_and_prefers_an_explicit_hint() {
        let e = Error::transient("connection reset").in_pipeline("orders").in_stream("items");
        assert_eq!(
            e.next_step(),
            "run `dovetail run orders --stream items` again; it resumes from the last checkpoint"
        );
        let e = Error::data("bad").in_pipeline("orders");
        assert!(e.next_step().contains("dovetail dead-letters list --pipeline orders"), "{}", e.next_step());
        let until = std::time::SystemTime::now() + std::time::Duration::from_secs(28 * 60 - 5);
        let e = Error::new(ErrorKind::RateLimited { until: Some(until) }, "slow down").in_pipeline("p");
        let at = jiff::Timestamp::try_from(until).unwrap().to_zoned(jiff::tz::TimeZone::UTC).strftime("%H:%M:%S");
        assert!(
            e.next_step().starts_with(&format!("the API allows requests again at {at} UTC, in 28 min;")),
            "{}",
            e.next_step()
        );
        assert!(e.next_step().contains("a run before then skips the stream"), "{}", e.next_step());
        let e = Error::data("bad").with_hint("run `dovetail drift accept p s`");
        assert_eq!(e.next_step(), "run `dovetail drift accept p s`");
    }
}
