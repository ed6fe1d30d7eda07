//! The measured side of the keep-alive benchmark (`cargo xtask bench-http`).
//!
//! ```text
//! keepalive_client URL --log FILE [--requests 10000] [--rounds 3]
//! ```
//!
//! Times `--requests` sequential GETs to URL over one keep-alive connection, once with a
//! [`dovetail_http::HttpClient`] and once with a bare `reqwest::Client::new()`, per round
//! (the order alternates between rounds, after a warm-up of 200 requests each). Tracing is
//! on for the whole process: info level, fmt format, written to FILE through
//! the `dovetail` binary's `BufferedLog` (crates/runner/src/logbuf.rs, compiled in here) with a 100 ms interval — what the `dovetail` binary
//! does when its stderr is a file or a pipe. Prints one JSON line:
//! `{"requests":..,"dovetail_s":[..],"reqwest_s":[..],"dovetail_median_s":..,"reqwest_median_s":..,"ratio":..,"log_lines":..}`
//! where `ratio` = dovetail median / reqwest median.

use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

// The binary's own buffered log, so the benchmark measures what `dovetail` runs.
#[path = "../../runner/src/logbuf.rs"]
mod logbuf;
use logbuf::BufferedLog;

use dovetail_http::{HttpClient, Request};

struct Args {
    url: String,
    log: PathBuf,
    requests: u32,
    rounds: u32,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let url = it.next().filter(|u| !u.starts_with("--")).ok_or("the server URL comes first")?;
    let (mut log, mut requests, mut rounds) = (None, 10_000, 3);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--log" => log = Some(PathBuf::from(value)),
            "--requests" => requests = value.parse().map_err(|e| format!("--requests: {e}"))?,
            "--rounds" => rounds = value.parse().map_err(|e| format!("--rounds: {e}"))?,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let log = log.ok_or("--log FILE is required")?;
    if rounds == 0 || requests == 0 {
        return Err("--requests and --rounds must be at least 1".into());
    }
    Ok(Args { url, log, requests, rounds })
}

async fn run_dovetail(client: &HttpClient, url: &str, n: u32) -> Result<f64, String> {
    let t0 = Instant::now();
    for _ in 0..n {
        client.send(Request::get(url)).await.map_err(|e| format!("dovetail: {}", e.report()))?;
    }
    Ok(t0.elapsed().as_secs_f64())
}

async fn run_reqwest(client: &reqwest::Client, url: &str, n: u32) -> Result<f64, String> {
    let t0 = Instant::now();
    for _ in 0..n {
        let r = client.get(url).send().await.map_err(|e| format!("reqwest: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("reqwest: HTTP {}", r.status()));
        }
        r.bytes().await.map_err(|e| format!("reqwest: {e}"))?;
    }
    Ok(t0.elapsed().as_secs_f64())
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

async fn bench(a: &Args, log: &Arc<BufferedLog>) -> Result<String, String> {
    let dovetail = HttpClient::builder("bench").build().map_err(|e| e.report())?;
    let bare = reqwest::Client::new();
    run_dovetail(&dovetail, &a.url, 200).await?;
    run_reqwest(&bare, &a.url, 200).await?;
    let (mut dt, mut rq) = (Vec::new(), Vec::new());
    for round in 0..a.rounds {
        if round % 2 == 0 {
            dt.push(run_dovetail(&dovetail, &a.url, a.requests).await?);
            rq.push(run_reqwest(&bare, &a.url, a.requests).await?);
        } else {
            rq.push(run_reqwest(&bare, &a.url, a.requests).await?);
            dt.push(run_dovetail(&dovetail, &a.url, a.requests).await?);
        }
        eprintln!(
            "keepalive_client: round {}: dovetail {:.3}s, reqwest {:.3}s",
            round + 1,
            dt[dt.len() - 1],
            rq[rq.len() - 1]
        );
    }
    let (d, r) = (median(&dt), median(&rq));
    log.flush_now();
    let log_lines = std::fs::read_to_string(&a.log).map(|s| s.lines().count()).unwrap_or(0);
    let list = |v: &[f64]| v.iter().map(|x| format!("{x:.4}")).collect::<Vec<_>>().join(",");
    Ok(format!(
        r#"{{"requests":{},"dovetail_s":[{}],"reqwest_s":[{}],"dovetail_median_s":{d:.4},"reqwest_median_s":{r:.4},"ratio":{:.4},"log_lines":{log_lines}}}"#,
        a.requests,
        list(&dt),
        list(&rq),
        d / r
    ))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("keepalive_client: {e}\nusage: keepalive_client URL --log FILE [--requests 10000] [--rounds 3]");
            return ExitCode::from(2);
        }
    };
    let file = match File::create(&args.log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("keepalive_client: cannot create {}: {e}", args.log.display());
            return ExitCode::FAILURE;
        }
    };
    let log = BufferedLog::new(file, Duration::from_millis(100));
    tracing_subscriber::fmt().with_max_level(tracing::Level::INFO).with_ansi(false).with_writer(log.clone()).init();
    match bench(&args, &log).await {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("keepalive_client: {e}");
            ExitCode::FAILURE
        }
    }
}
