//! The measured side of the rate-limit benchmark (`cargo xtask bench-http`).
//!
//! ```text
//! ratelimit_client URL [--seconds 20] [--concurrency 1] [--budget R/B]
//! ```
//!
//! Sends GETs to URL with a [`dovetail_http::HttpClient`] for `--seconds`, sequentially by
//! default (`--concurrency N` runs N sequential loops sharing one client). The client is
//! NOT told the server's rate: no budget is configured, so all it knows comes from the
//! server's `X-RateLimit-*` and `Retry-After` headers (`X-RateLimit-Reset` read as epoch
//! seconds, which is what `ratelimit_server` sends). `--budget 50/10` configures a
//! client-side budget instead, as a reference run.
//!
//! Counts every attempt the client put on the wire (retries included) from its per-attempt
//! tracing events, and prints one JSON line:
//! `{"seconds":..,"concurrency":..,"requests":..,"ok":..,"failed":..,"wire_200":..,"wire_429":..,"wire_other":..}`
//! where `requests`/`ok`/`failed` are logical requests (`send` calls and their outcomes).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dovetail_http::{HttpClient, RateBudget, Request, ResetStyle, RetryPolicy};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// Statuses of attempts, from the client's `dovetail_http::attempt` events.
#[derive(Debug, Default)]
struct Wire {
    ok: AtomicU64,
    too_many: AtomicU64,
    other: AtomicU64,
}

struct WireCounter(Arc<Wire>);

struct StatusField(Option<u64>);

impl Visit for StatusField {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "status" {
            self.0 = Some(value);
        }
    }
    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

impl<S: Subscriber> Layer<S> for WireCounter {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut status = StatusField(None);
        event.record(&mut status);
        let counter = match status.0 {
            Some(200..=299) => &self.0.ok,
            Some(429) => &self.0.too_many,
            _ => &self.0.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

struct Args {
    url: String,
    seconds: f64,
    concurrency: usize,
    budget: Option<RateBudget>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let url = it.next().filter(|u| !u.starts_with("--")).ok_or("the server URL comes first")?;
    let mut a = Args { url, seconds: 20.0, concurrency: 1, budget: None };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seconds" => a.seconds = value.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--concurrency" => a.concurrency = value.parse().map_err(|e| format!("--concurrency: {e}"))?,
            "--budget" => {
                let (r, b) = value.split_once('/').ok_or("--budget is R/B, e.g. 50/10")?;
                let requests = r.parse().map_err(|e| format!("--budget: {e}"))?;
                let burst = b.parse().map_err(|e| format!("--budget: {e}"))?;
                a.budget = Some(RateBudget { requests, per: Duration::from_secs(1), burst });
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if a.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "ratelimit_client: {e}\nusage: ratelimit_client URL [--seconds 20] [--concurrency 1] [--budget R/B]"
            );
            return ExitCode::from(2);
        }
    };
    let wire = Arc::new(Wire::default());
    tracing_subscriber::registry()
        .with(WireCounter(wire.clone()).with_filter(Targets::new().with_target("dovetail_http::attempt", Level::DEBUG)))
        .init();

    let retry = RetryPolicy { reset_style: ResetStyle::EpochSeconds, ..RetryPolicy::default() };
    let mut builder = HttpClient::builder("bench").retry(retry);
    if let Some(b) = args.budget {
        builder = builder.rate_limit(b);
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ratelimit_client: {}", e.report());
            return ExitCode::FAILURE;
        }
    };

    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.seconds);
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (client, url) = (client.clone(), args.url.clone());
        loops.spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            while Instant::now() < deadline {
                match client.send(Request::get(url.as_str())).await {
                    Ok(_) => ok += 1,
                    Err(e) => {
                        failed += 1;
                        if failed <= 5 {
                            eprintln!("ratelimit_client: {}", e.report());
                        }
                    }
                }
            }
            (ok, failed)
        });
    }
    let (mut ok, mut failed) = (0u64, 0u64);
    while let Some(r) = loops.join_next().await {
        let (o, f) = r.expect("a request loop panicked");
        ok += o;
        failed += f;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        r#"{{"seconds":{seconds:.3},"concurrency":{},"requests":{},"ok":{ok},"failed":{failed},"wire_200":{},"wire_429":{},"wire_other":{}}}"#,
        args.concurrency,
        ok + failed,
        wire.ok.load(Ordering::Relaxed),
        wire.too_many.load(Ordering::Relaxed),
        wire.other.load(Ordering::Relaxed),
    );
    // Failed requests are a figure of the benchmark, not a failure of this process.
    ExitCode::SUCCESS
}
