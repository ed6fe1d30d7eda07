//! `cargo xtask bench-http`: issue 3's two benchmarks of dovetail-http, each a separate
//! server process and a separate client process (the examples of `crates/http`).
//!
//! 1. **Rate limit.** `ratelimit_server --rate 50 --burst 10` (a token bucket that sends
//!    `X-RateLimit-Limit/Remaining/Reset` (reset in epoch seconds) and `Retry-After` on its
//!    429s) against `ratelimit_client`, a sequential loop of GETs through an `HttpClient`
//!    that is not told the rate, for 20 s. Reported: achieved rate / R (target ≥ 97%), the
//!    share of 429 responses (target ≤ 1%), requests sent before a Retry-After elapsed
//!    (target 0). The server's counts are the reference; the client's own wire counts are
//!    shown next to them.
//! 2. **Keep-alive overhead.** `ratelimit_server --rate 0` (always 200) against
//!    `keepalive_client`: 10,000 sequential GETs with dovetail's client (info logs to a file)
//!    and with a bare `reqwest::Client`, median of 5 alternating rounds (target: dovetail
//!    under 10% slower).
//!
//! Both run N times (`--runs`, default 3). What the server received must match what the
//! client says it sent (its 200s, its 429s; every keep-alive GET), or the bench fails. The
//! targets are judged on the medians of the runs and a miss fails the bench unless
//! `--no-judge`. Each client's CPU-seconds per 100k requests is printed.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::bench_judge::{Judging, Verdict, cpu_per_100k, median};
use crate::rss::run_measured;
use crate::util::{cargo, display_command, target_dir};

/// The server's sustained rate (requests per second).
pub const RATE: u32 = 50;
/// The server's bucket size.
pub const BURST: u32 = 10;
/// Achieved rate / R at least this.
pub const TARGET_RATE_SHARE: f64 = 0.97;
/// Share of 429 responses at most this.
pub const TARGET_429_SHARE: f64 = 0.01;
/// dovetail / reqwest wall time below this.
pub const TARGET_RATIO: f64 = 1.10;

/// Command-line options.
#[derive(Debug, PartialEq)]
pub struct Options {
    /// How long the rate-limit client runs.
    pub seconds: f64,
    /// Sequential GETs per keep-alive round.
    pub requests: u64,
    /// Runs of both benchmarks, and whether a miss fails.
    pub judging: Judging,
}

/// Rounds of the keep-alive client (each: `requests` GETs with dovetail and with reqwest).
const KEEPALIVE_ROUNDS: u64 = 5;
/// GETs the keep-alive client sends to warm each client up before timing.
const KEEPALIVE_WARMUP: u64 = 200;

const USAGE: &str = "usage: cargo xtask bench-http [--seconds 20] [--requests 10000] [--runs K] [--no-judge]";

/// Parses `[--seconds S] [--requests N] [--runs K] [--no-judge]`.
pub fn parse_args(args: &[String]) -> Result<Options> {
    let (judging, rest) = Judging::take(args)?;
    let mut o = Options { seconds: 20.0, requests: 10_000, judging };
    for (name, v) in crate::util::flag_values(&rest, &["--seconds", "--requests"], USAGE)? {
        if name == "--seconds" {
            o.seconds = v.parse().ok().filter(|s: &f64| *s > 0.0).with_context(|| format!("--seconds: `{v}`"))?;
        } else {
            o.requests =
                v.replace('_', "").parse().ok().filter(|n| *n > 0).with_context(|| format!("--requests: `{v}`"))?;
        }
    }
    Ok(o)
}

/// The stats line of `ratelimit_server`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerStats {
    /// R (0 = unlimited).
    pub rate: u64,
    /// B.
    pub burst: u64,
    /// Requests received.
    pub total: u64,
    /// Answered 200.
    pub ok: u64,
    /// Answered 429.
    pub too_many: u64,
    /// Received before a Retry-After given to the same client had elapsed.
    pub early: u64,
    /// First to last request, seconds.
    pub window_s: f64,
}

/// The result line of `ratelimit_client`.
#[derive(Debug, Clone, PartialEq)]
pub struct RateClientStats {
    /// Wall time of the request loops.
    pub seconds: f64,
    /// Sequential loops sharing the client.
    pub concurrency: u64,
    /// Logical requests (`send` calls).
    pub requests: u64,
    /// Logical requests that succeeded.
    pub ok: u64,
    /// Logical requests that failed (retry budget spent).
    pub failed: u64,
    /// Attempts answered 2xx.
    pub wire_200: u64,
    /// Attempts answered 429.
    pub wire_429: u64,
    /// Other attempts (other statuses, transport errors).
    pub wire_other: u64,
}

/// The result line of `keepalive_client`.
#[derive(Debug, Clone, PartialEq)]
pub struct KeepaliveStats {
    /// Sequential GETs per round.
    pub requests: u64,
    /// dovetail's wall time per round, seconds.
    pub dovetail_s: Vec<f64>,
    /// bare reqwest's wall time per round, seconds.
    pub reqwest_s: Vec<f64>,
    /// Median of `dovetail_s`.
    pub dovetail_median_s: f64,
    /// Median of `reqwest_s`.
    pub reqwest_median_s: f64,
    /// dovetail median / reqwest median.
    pub ratio: f64,
    /// Lines in the log file.
    pub log_lines: u64,
}

/// The last line of `stdout` that is a JSON object.
fn json_line(stdout: &str, what: &str) -> Result<Value> {
    stdout
        .lines()
        .rev()
        .map(str::trim)
        .filter(|l| l.starts_with('{'))
        .find_map(|l| serde_json::from_str::<Value>(l).ok().filter(Value::is_object))
        .with_context(|| format!("{what} printed no JSON stats line; its stdout was:\n{stdout}"))
}

fn u(v: &Value, key: &str, what: &str) -> Result<u64> {
    v.get(key).and_then(Value::as_u64).with_context(|| format!("{what}: `{key}` missing or not a count in {v}"))
}

fn f(v: &Value, key: &str, what: &str) -> Result<f64> {
    v.get(key).and_then(Value::as_f64).with_context(|| format!("{what}: `{key}` missing or not a number in {v}"))
}

fn floats(v: &Value, key: &str, what: &str) -> Result<Vec<f64>> {
    v.get(key)
        .and_then(Value::as_array)
        .and_then(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<_>>>())
        .with_context(|| format!("{what}: `{key}` missing or not a list of numbers in {v}"))
}

impl ServerStats {
    /// From the server's whole stdout (the stats line is its last JSON line).
    pub fn parse(stdout: &str) -> Result<Self> {
        const W: &str = "ratelimit_server";
        let v = json_line(stdout, W)?;
        Ok(ServerStats {
            rate: u(&v, "rate", W)?,
            burst: u(&v, "burst", W)?,
            total: u(&v, "total", W)?,
            ok: u(&v, "ok", W)?,
            too_many: u(&v, "too_many", W)?,
            early: u(&v, "early", W)?,
            window_s: f(&v, "window_s", W)?,
        })
    }
}

impl RateClientStats {
    /// From the client's stdout.
    pub fn parse(stdout: &str) -> Result<Self> {
        const W: &str = "ratelimit_client";
        let v = json_line(stdout, W)?;
        Ok(RateClientStats {
            seconds: f(&v, "seconds", W)?,
            concurrency: u(&v, "concurrency", W)?,
            requests: u(&v, "requests", W)?,
            ok: u(&v, "ok", W)?,
            failed: u(&v, "failed", W)?,
            wire_200: u(&v, "wire_200", W)?,
            wire_429: u(&v, "wire_429", W)?,
            wire_other: u(&v, "wire_other", W)?,
        })
    }
}

impl KeepaliveStats {
    /// From the client's stdout.
    pub fn parse(stdout: &str) -> Result<Self> {
        const W: &str = "keepalive_client";
        let v = json_line(stdout, W)?;
        Ok(KeepaliveStats {
            requests: u(&v, "requests", W)?,
            dovetail_s: floats(&v, "dovetail_s", W)?,
            reqwest_s: floats(&v, "reqwest_s", W)?,
            dovetail_median_s: f(&v, "dovetail_median_s", W)?,
            reqwest_median_s: f(&v, "reqwest_median_s", W)?,
            ratio: f(&v, "ratio", W)?,
            log_lines: u(&v, "log_lines", W)?,
        })
    }
}

fn mark(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

fn pct(part: f64, whole: f64) -> f64 {
    if whole > 0.0 { 100.0 * part / whole } else { 0.0 }
}

/// The rate-limit figures against their targets. Achieved rate = the server's 200s over
/// the client's run time.
pub fn rate_summary(s: &ServerStats, c: &RateClientStats) -> Vec<String> {
    let achieved = s.ok as f64 / c.seconds.max(1e-9);
    let share = if s.rate > 0 { achieved / s.rate as f64 } else { 0.0 };
    let share_429 = if s.total > 0 { s.too_many as f64 / s.total as f64 } else { 0.0 };
    let mut out = vec![
        format!(
            "rate limit: R = {}/s, burst {}, {:.1} s, {} sequential client loop(s), client not told R",
            s.rate, s.burst, c.seconds, c.concurrency
        ),
        format!(
            "  achieved rate / R: {achieved:.1}/s = {:.1}% of R (target ≥ {:.0}%)  {}",
            share * 100.0,
            TARGET_RATE_SHARE * 100.0,
            mark(share >= TARGET_RATE_SHARE)
        ),
        format!(
            "  429 responses: {} of {} = {:.2}% (target ≤ {:.0}%)  {}",
            s.too_many,
            s.total,
            pct(s.too_many as f64, s.total as f64),
            TARGET_429_SHARE * 100.0,
            mark(share_429 <= TARGET_429_SHARE)
        ),
        format!("  early requests (sent before a Retry-After elapsed): {} (target 0)  {}", s.early, mark(s.early == 0)),
        format!(
            "  client: {} logical requests ({} ok, {} failed); on the wire {} × 2xx, {} × 429, {} other",
            c.requests, c.ok, c.failed, c.wire_200, c.wire_429, c.wire_other
        ),
    ];
    let wire = c.wire_200 + c.wire_429 + c.wire_other;
    if wire != s.total || c.wire_429 != s.too_many {
        out.push(format!(
            "  note: the server counted {} requests ({} × 429), the client {wire} attempts ({} × 429)",
            s.total, s.too_many, c.wire_429
        ));
    }
    out
}

/// The keep-alive comparison against its target.
pub fn keepalive_summary(k: &KeepaliveStats) -> Vec<String> {
    let list = |v: &[f64]| v.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>().join(", ");
    let rps = |s: f64| k.requests as f64 / s.max(1e-9);
    let diff = (k.ratio - 1.0) * 100.0;
    let verdict = if diff >= 0.0 { format!("{diff:.1}% slower") } else { format!("{:.1}% faster", -diff) };
    vec![
        format!(
            "keep-alive: {} sequential GETs over loopback, median of {} rounds, dovetail logging at info to a file ({} lines)",
            k.requests,
            k.dovetail_s.len(),
            k.log_lines
        ),
        format!(
            "  dovetail {:.3} s ({:.0} req/s) vs bare reqwest {:.3} s ({:.0} req/s): ratio {:.3}, {verdict} (target < {:.0}% slower)  {}",
            k.dovetail_median_s,
            rps(k.dovetail_median_s),
            k.reqwest_median_s,
            rps(k.reqwest_median_s),
            k.ratio,
            (TARGET_RATIO - 1.0) * 100.0,
            mark(k.ratio < TARGET_RATIO)
        ),
        format!("  rounds (s): dovetail {}; reqwest {}", list(&k.dovetail_s), list(&k.reqwest_s)),
    ]
}

/// Builds the examples in release and runs both benchmarks; `Ok(false)` when a judged target is missed.
pub fn main(root: &Path, args: &[String]) -> Result<bool> {
    let opts = parse_args(args)?;
    let mut build = cargo(root);
    build.args(["build", "--release", "-p", "dovetail-http", "--examples"]);
    println!("bench-http: running: {}", display_command(&build));
    let status = build.status().context("running cargo build")?;
    if !status.success() {
        bail!("bench-http: `{}` failed ({status})", display_command(&build));
    }
    let examples = target_dir(root).join("release").join("examples");
    run_bench(&examples, &opts).map(|(passed, _)| passed)
}

/// A running `ratelimit_server`; killed if dropped before [`Server::finish`].
struct Server {
    child: Child,
    stdout: BufReader<ChildStdout>,
    addr: String,
}

impl Server {
    fn start(bin: &Path, args: &[&str]) -> Result<Self> {
        let mut cmd = Command::new(bin);
        cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = crate::rss::spawn(&mut cmd).with_context(|| format!("starting {}", bin.display()))?;
        let mut stdout = BufReader::new(child.stdout.take().context("server stdout")?);
        let mut addr = String::new();
        stdout.read_line(&mut addr)?;
        let addr = addr.trim().to_owned();
        if addr.is_empty() {
            let status = child.wait()?;
            bail!("bench-http: `{}` printed no address ({status})", display_command(&cmd));
        }
        Ok(Server { child, stdout, addr })
    }

    /// Closes the server's stdin (its signal to stop) and returns the rest of its stdout.
    fn finish(mut self) -> Result<String> {
        drop(self.child.stdin.take());
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest)?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("bench-http: the server failed: {status}");
        }
        Ok(rest)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a client to completion; its stdout and CPU time, or an error with its stdout shown.
fn run_client(bin: &Path, args: &[&str]) -> Result<(String, std::time::Duration)> {
    let out = tempfile::NamedTempFile::new().context("creating a temp file")?;
    let mut cmd = Command::new(bin);
    cmd.args(args).stdin(Stdio::null()).stdout(out.reopen()?).stderr(Stdio::inherit());
    println!("bench-http: running: {}", display_command(&cmd));
    let m = run_measured(&mut cmd)?;
    let stdout = fs::read_to_string(out.path()).unwrap_or_default();
    if !m.status.success() {
        bail!("bench-http: `{}` failed ({}); stdout:\n{stdout}", display_command(&cmd), m.status);
    }
    Ok((stdout, m.cpu))
}

/// One run of both benchmarks.
pub type RunStats = (ServerStats, RateClientStats, KeepaliveStats);

/// Fails unless the servers received what the clients say they sent: a figure over requests
/// that never arrived measures nothing.
fn require_arrived(s: &ServerStats, c: &RateClientStats, k: &KeepaliveStats, k_server: &ServerStats) -> Result<()> {
    if s.ok != c.wire_200 || s.too_many != c.wire_429 {
        bail!(
            "bench-http: the rate-limit client got {} × 2xx and {} × 429, the server sent {} × 200 and {} × 429",
            c.wire_200,
            c.wire_429,
            s.ok,
            s.too_many
        );
    }
    let sent = 2 * (KEEPALIVE_WARMUP + KEEPALIVE_ROUNDS * k.requests);
    if k_server.total != sent || k_server.ok != sent {
        bail!(
            "bench-http: the keep-alive client sent {sent} GETs, the server received {} ({} answered 200)",
            k_server.total,
            k_server.ok
        );
    }
    Ok(())
}

/// The targets, each on the median over the runs.
fn verdict(runs: &[RunStats]) -> Verdict {
    let med = |f: &dyn Fn(&RunStats) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    let share = med(&|(s, c, _)| if s.rate > 0 { s.ok as f64 / c.seconds.max(1e-9) / s.rate as f64 } else { 0.0 });
    let share_429 = med(&|(s, _, _)| if s.total > 0 { s.too_many as f64 / s.total as f64 } else { 0.0 });
    let early = med(&|(s, _, _)| s.early as f64);
    let ratio = med(&|(_, _, k)| k.ratio);
    let mut v = Verdict::default();
    v.check(
        format!("achieved rate ≥ {:.0}% of R: {:.1}%", TARGET_RATE_SHARE * 100.0, share * 100.0),
        share >= TARGET_RATE_SHARE,
    );
    v.check(
        format!("429 responses ≤ {:.0}%: {:.2}%", TARGET_429_SHARE * 100.0, share_429 * 100.0),
        share_429 <= TARGET_429_SHARE,
    );
    v.check(format!("early requests = 0: {early:.0}"), early == 0.0);
    v.check(format!("keep-alive overhead ratio < {TARGET_RATIO:.2}: {ratio:.3}"), ratio < TARGET_RATIO);
    v
}

/// Runs both benchmarks `--runs` times with the example binaries in `examples`; prints the
/// figures and returns whether the bench passes, and each run's figures.
fn run_bench(examples: &Path, opts: &Options) -> Result<(bool, Vec<RunStats>)> {
    let runs = opts.judging.runs;
    let mut all = Vec::new();
    for run in 1..=runs {
        println!("\nbench-http: run {run}/{runs}");
        all.push(run_once(examples, opts)?);
    }
    let passed = verdict(&all).finish("bench-http", opts.judging);
    Ok((passed, all))
}

fn run_once(examples: &Path, opts: &Options) -> Result<RunStats> {
    let server_bin = examples.join("ratelimit_server");
    let (rate, burst) = (RATE.to_string(), BURST.to_string());
    let server = Server::start(&server_bin, &["--rate", &rate, "--burst", &burst])?;
    let url = format!("http://{}/", server.addr);
    println!("bench-http: rate-limited server on {} (R = {RATE}/s, burst {BURST})", server.addr);
    let seconds = opts.seconds.to_string();
    let (client, rate_cpu) = run_client(&examples.join("ratelimit_client"), &[&url, "--seconds", &seconds])?;
    let server_out = server.finish()?;
    let (s, c) = (ServerStats::parse(&server_out)?, RateClientStats::parse(&client)?);

    let server = Server::start(&server_bin, &["--rate", "0"])?;
    let url = format!("http://{}/", server.addr);
    let dir = tempfile::Builder::new().prefix("dovetail-bench-http-").tempdir()?;
    let log = dir.path().join("dovetail.log");
    let requests = opts.requests.to_string();
    let log_arg = log.to_string_lossy().into_owned();
    let rounds = KEEPALIVE_ROUNDS.to_string();
    let (ka, ka_cpu) = run_client(
        &examples.join("keepalive_client"),
        &[&url, "--log", &log_arg, "--requests", &requests, "--rounds", &rounds],
    )?;
    let k_server = ServerStats::parse(&server.finish()?)?;
    let k = KeepaliveStats::parse(&ka)?;
    if let Ok(meta) = fs::metadata(&log) {
        println!("bench-http: dovetail's log: {:.1} MiB", meta.len() as f64 / (1024.0 * 1024.0));
    }
    require_arrived(&s, &c, &k, &k_server)?;

    println!();
    for line in rate_summary(&s, &c).into_iter().chain(keepalive_summary(&k)) {
        println!("{line}");
    }
    let ka_sent = 2 * (KEEPALIVE_WARMUP + KEEPALIVE_ROUNDS * k.requests);
    println!(
        "  CPU-s per 100k requests: rate-limit client {:.2} ({} attempts), keep-alive client {:.2} ({ka_sent} GETs, both clients)",
        cpu_per_100k(rate_cpu, s.total),
        s.total,
        cpu_per_100k(ka_cpu, ka_sent)
    );
    Ok((s, c, k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    const SERVER: &str = r#"{"rate":50,"burst":10,"total":1012,"ok":1005,"too_many":7,"early":0,"window_s":19.998}"#;
    const CLIENT: &str = r#"{"seconds":20.001,"concurrency":1,"requests":1005,"ok":1005,"failed":0,"wire_200":1005,"wire_429":7,"wire_other":0}"#;
    const KEEPALIVE: &str = r#"{"requests":10000,"dovetail_s":[1.2,1.1,1.3],"reqwest_s":[1.0,1.05,0.98],"dovetail_median_s":1.2,"reqwest_median_s":1.0,"ratio":1.2,"log_lines":30200}"#;

    #[test]
    fn options() {
        assert_eq!(parse_args(&[]).unwrap(), Options { seconds: 20.0, requests: 10_000, judging: Judging::default() });
        let o = parse_args(&args(&["--seconds", "2.5", "--requests=1_000", "--runs", "1", "--no-judge"])).unwrap();
        assert_eq!(o, Options { seconds: 2.5, requests: 1_000, judging: Judging { runs: 1, judge: false } });
        assert!(parse_args(&args(&["--seconds"])).is_err());
        assert!(parse_args(&args(&["--seconds", "0"])).is_err());
        assert!(parse_args(&args(&["--requests", "many"])).is_err());
        assert!(parse_args(&args(&["--fast"])).is_err());
    }

    #[test]
    fn stats_lines_parse_from_whole_stdout() {
        let s = ServerStats::parse(&format!("127.0.0.1:4000\n{SERVER}\n")).unwrap();
        assert_eq!((s.rate, s.burst, s.total, s.ok, s.too_many, s.early), (50, 10, 1012, 1005, 7, 0));
        assert!((s.window_s - 19.998).abs() < 1e-9);
        let c = RateClientStats::parse(CLIENT).unwrap();
        assert_eq!((c.requests, c.wire_200, c.wire_429, c.wire_other, c.concurrency), (1005, 1005, 7, 0, 1));
        let k = KeepaliveStats::parse(&format!("noise\n{KEEPALIVE}")).unwrap();
        assert_eq!(k.dovetail_s, vec![1.2, 1.1, 1.3]);
        assert_eq!((k.requests, k.log_lines), (10_000, 30_200));
        // No JSON line, a missing field, a wrong type: errors naming the program.
        let e = ServerStats::parse("127.0.0.1:4000\n").unwrap_err();
        assert!(e.to_string().contains("ratelimit_server printed no JSON"), "{e}");
        let e = RateClientStats::parse(r#"{"seconds":1}"#).unwrap_err();
        assert!(e.to_string().contains("`concurrency` missing"), "{e}");
        let e = KeepaliveStats::parse(&KEEPALIVE.replace("[1.2,1.1,1.3]", r#"["x"]"#)).unwrap_err();
        assert!(e.to_string().contains("`dovetail_s`"), "{e}");
    }

    #[test]
    fn rate_summary_marks_each_target() {
        let s = ServerStats::parse(SERVER).unwrap();
        let c = RateClientStats::parse(CLIENT).unwrap();
        let text = rate_summary(&s, &c).join("\n");
        assert!(text.contains("achieved rate / R: 50.2/s = 100.5% of R (target ≥ 97%)  ok"), "{text}");
        assert!(text.contains("429 responses: 7 of 1012 = 0.69% (target ≤ 1%)  ok"), "{text}");
        assert!(text.contains("early requests (sent before a Retry-After elapsed): 0 (target 0)  ok"), "{text}");
        assert!(!text.contains("note:"), "{text}");
        let slow = ServerStats { ok: 220, total: 240, too_many: 20, early: 2, ..s };
        let text = rate_summary(&slow, &c).join("\n");
        assert!(text.contains("= 22.0% of R (target ≥ 97%)  MISSED"), "{text}");
        assert!(text.contains("20 of 240 = 8.33% (target ≤ 1%)  MISSED"), "{text}");
        assert!(text.contains(": 2 (target 0)  MISSED"), "{text}");
        assert!(text.contains("note: the server counted 240 requests (20 × 429), the client 1012 attempts (7 × 429)"));
    }

    #[test]
    fn keepalive_summary_marks_the_target() {
        let k = KeepaliveStats::parse(KEEPALIVE).unwrap();
        let text = keepalive_summary(&k).join("\n");
        assert!(text.contains("dovetail 1.200 s (8333 req/s) vs bare reqwest 1.000 s (10000 req/s)"), "{text}");
        assert!(text.contains("ratio 1.200, 20.0% slower (target < 10% slower)  MISSED"), "{text}");
        assert!(text.contains("rounds (s): dovetail 1.200, 1.100, 1.300; reqwest 1.000, 1.050, 0.980"), "{text}");
        let fast = KeepaliveStats { ratio: 0.95, ..k };
        assert!(keepalive_summary(&fast).join("\n").contains("5.0% faster (target < 10% slower)  ok"));
    }

    fn script(dir: &Path, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// The keep-alive server's stats for 100 GETs per round: 2 × (200 + 5 × 100) received.
    const KA_SERVER: &str = r#"{"rate":0,"burst":0,"total":1400,"ok":1400,"too_many":0,"early":0,"window_s":1.0}"#;

    /// Fake examples: the server prints an address, waits for stdin to close, prints stats
    /// (`ka_total` GETs received when unlimited).
    fn fake_examples(dir: &Path, rate_client_exit: i32, ka_total: u64) {
        let ka = KA_SERVER.replace("1400", &ka_total.to_string());
        script(
            dir,
            "ratelimit_server",
            &format!(
                "echo 127.0.0.1:4000\ncat >/dev/null\nif [ \"$2\" = 0 ]; then echo '{ka}'; else echo '{SERVER}'; fi"
            ),
        );
        script(
            dir,
            "ratelimit_client",
            &format!(
                "[ \"$1 $2 $3\" = \"http://127.0.0.1:4000/ --seconds 0.5\" ] || exit 64\necho '{CLIENT}'\nexit {rate_client_exit}"
            ),
        );
        script(
            dir,
            "keepalive_client",
            &format!(
                "[ \"$1 $2\" = \"http://127.0.0.1:4000/ --log\" ] || exit 64\necho hi > \"$3\"\necho '{}'",
                KEEPALIVE.replace("10000", "100")
            ),
        );
    }

    fn opts(runs: usize, judge: bool) -> Options {
        Options { seconds: 0.5, requests: 100, judging: Judging { runs, judge } }
    }

    #[test]
    fn runs_servers_and_clients_as_processes_and_judges_the_medians() {
        let tmp = tempfile::tempdir().unwrap();
        fake_examples(tmp.path(), 0, 1400);
        // The fake keep-alive ratio (1.2) misses its target: judged, the bench fails.
        let (passed, runs) = run_bench(tmp.path(), &opts(2, true)).unwrap();
        assert!(!passed);
        assert_eq!(runs.len(), 2);
        let (s, c, k) = &runs[0];
        assert_eq!((s.ok, c.ok, k.requests), (1005, 1005, 100));
        assert!(run_bench(tmp.path(), &opts(1, false)).unwrap().0, "--no-judge passes");
        let v = verdict(&runs);
        assert_eq!(v.missed().collect::<Vec<_>>(), ["keep-alive overhead ratio < 1.10: 1.200"]);
        let fast = (s.clone(), c.clone(), KeepaliveStats { ratio: 1.05, ..k.clone() });
        assert_eq!(verdict(&[fast.clone(), runs[0].clone(), fast]).missed().count(), 0, "judged on the median");
    }

    #[test]
    fn requests_the_server_did_not_receive_fail_the_bench() {
        let tmp = tempfile::tempdir().unwrap();
        fake_examples(tmp.path(), 0, 1399);
        let err = run_bench(tmp.path(), &opts(1, false)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bench-http: the keep-alive client sent 1400 GETs, the server received 1399 (1399 answered 200)"
        );
        let s = ServerStats::parse(SERVER).unwrap();
        let c = RateClientStats { wire_200: 1004, ..RateClientStats::parse(CLIENT).unwrap() };
        let k = KeepaliveStats::parse(KEEPALIVE).unwrap();
        let k_server = ServerStats { total: 100_400, ok: 100_400, ..s.clone() };
        let err = require_arrived(&s, &c, &k, &k_server).unwrap_err().to_string();
        assert!(err.contains("got 1004 × 2xx and 7 × 429, the server sent 1005 × 200 and 7 × 429"), "{err}");
    }

    #[test]
    fn a_failing_client_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        fake_examples(tmp.path(), 3, 1400);
        let err = run_bench(tmp.path(), &opts(1, true)).unwrap_err();
        assert!(err.to_string().contains("failed (exit status: 3)"), "{err:#}");
    }
}
