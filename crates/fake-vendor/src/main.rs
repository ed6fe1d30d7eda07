//! `dovetail-fake-vendor`: the fake vendor API as a process, for benchmarks and manual poking.
//!
//! Prints exactly one line, `listening on http://127.0.0.1:PORT`, once ready, then serves until
//! SIGINT, SIGTERM, `POST /_control/shutdown`, or (with `--exit-on-stdin-close`) the end of stdin.
//! Stdin is opt-in because CI runs without one: an always-closed stdin would stop the server at once.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dovetail_fake_vendor::{AuthMode, FakeVendor, RateLimit, VendorConfig};
use tokio::io::AsyncReadExt as _;

/// A vendor API on loopback that misbehaves on demand.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Config file: TOML, or JSON when it starts with `{`. Flags override its values.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long)]
    port: Option<u16>,
    /// Number of records.
    #[arg(long)]
    records: Option<u64>,
    /// Seed of record contents and fault dice.
    #[arg(long)]
    seed: Option<u64>,
    /// Rate limit in requests per second per credential (needs --burst).
    #[arg(long, requires = "burst")]
    rate: Option<f64>,
    /// Rate-limit bucket size (needs --rate).
    #[arg(long, requires = "rate")]
    burst: Option<u32>,
    /// Require `Authorization: Bearer <TOKEN>`.
    #[arg(long, value_name = "TOKEN")]
    bearer: Option<String>,
    /// Fraction of requests answered 500.
    #[arg(long = "error-500", value_name = "RATIO")]
    error_500: Option<f64>,
    /// Fraction of requests answered 503.
    #[arg(long = "error-503", value_name = "RATIO")]
    error_503: Option<f64>,
    /// Fraction of connections closed without a response.
    #[arg(long = "drop", value_name = "RATIO")]
    drop_ratio: Option<f64>,
    /// Delay added to every API response.
    #[arg(long, value_name = "MS")]
    latency_ms: Option<u64>,
    /// Stop when stdin reaches end of file (so a parent that dies takes the server with it).
    #[arg(long)]
    exit_on_stdin_close: bool,
}

fn config(args: &Args) -> Result<VendorConfig, String> {
    let mut c = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            VendorConfig::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => VendorConfig::default(),
    };
    c.port = args.port.unwrap_or(c.port);
    c.records = args.records.unwrap_or(c.records);
    c.seed = args.seed.unwrap_or(c.seed);
    if let (Some(per_second), Some(burst)) = (args.rate, args.burst) {
        c.rate_limit = Some(RateLimit { per_second, burst });
    }
    if let Some(token) = &args.bearer {
        c.auth = AuthMode::Bearer { token: token.clone() };
    }
    c.faults.error_500_ratio = args.error_500.unwrap_or(c.faults.error_500_ratio);
    c.faults.error_503_ratio = args.error_503.unwrap_or(c.faults.error_503_ratio);
    c.faults.drop_ratio = args.drop_ratio.unwrap_or(c.faults.drop_ratio);
    c.faults.latency_ms = args.latency_ms.unwrap_or(c.faults.latency_ms);
    Ok(c)
}

async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
}

#[cfg(unix)]
async fn sigterm() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn sigterm() {
    std::future::pending().await
}

// One thread: a loopback fake serves a handful of connections, and on a small machine the
// client it is measured against needs the cores more (a second worker's wake-ups cost
// more than they parallelise).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let args = Args::parse();
    let config = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dovetail-fake-vendor: {e}");
            return ExitCode::from(2);
        }
    };
    let handle = match FakeVendor::start(config).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("dovetail-fake-vendor: cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "listening on {}", handle.base_url()).and_then(|()| out.flush()).is_err() {
        return ExitCode::FAILURE;
    }
    drop(out);
    let stdin = async { if args.exit_on_stdin_close { stdin_closed().await } else { std::future::pending().await } };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = sigterm() => {}
        () = handle.stopped() => {}
        () = stdin => {}
    }
    handle.shutdown().await;
    ExitCode::SUCCESS
}
