//! A rate-limited HTTP/1.1 server for `cargo xtask bench-http` (issue 3's benchmarks).
//!
//! ```text
//! ratelimit_server [--port P] [--rate R] [--burst B] [--duration SECS]
//! ```
//!
//! Listens on 127.0.0.1:P (default 0: any free port) and prints the bound address alone on
//! the first line of stdout. Every request, whatever its method or path, takes one token
//! from a token bucket refilled at R per second holding at most B (defaults 50 and 10);
//! `--rate 0` turns limiting off (always 200, no rate-limit headers: the keep-alive bench).
//!
//! Headers on every limited response:
//! - `X-RateLimit-Limit: R` — requests per one-second window (the sustained rate);
//! - `X-RateLimit-Remaining` — whole tokens left after this request (at most B);
//! - `X-RateLimit-Reset` — **epoch seconds** (rounded up) at which the next token is added:
//!   when Remaining is 0, the first moment a request can succeed again.
//!
//! An empty bucket answers 429 with `Retry-After` (whole seconds until the next token,
//! rounded up, at least 1) and remembers, per client IP, the instant it told the client to
//! wait until. A request arriving before that instant is counted as *early* (and still
//! served if the bucket has a token by then).
//!
//! Stops on SIGTERM, SIGINT, end of stdin or after `--duration`, then prints one JSON line:
//! `{"rate":..,"burst":..,"total":..,"ok":..,"too_many":..,"early":..,"window_s":..}`, where
//! `window_s` is the time from the first to the last request.
//!
//! Keep-alive HTTP/1.1 is hand-rolled (request line, headers, `Content-Length` bodies,
//! `Connection: close`): enough for reqwest and curl, not a general server.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug)]
struct Args {
    port: u16,
    rate: u32,
    burst: u32,
    duration: Option<Duration>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args { port: 0, rate: 50, burst: 10, duration: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--port" => a.port = value("--port")?.parse().map_err(|e| format!("--port: {e}"))?,
            "--rate" => a.rate = value("--rate")?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--burst" => a.burst = value("--burst")?.parse().map_err(|e| format!("--burst: {e}"))?,
            "--duration" => {
                let s: f64 = value("--duration")?.parse().map_err(|e| format!("--duration: {e}"))?;
                a.duration = Some(Duration::from_secs_f64(s));
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if a.rate > 0 && a.burst == 0 {
        return Err("--burst must be at least 1".into());
    }
    Ok(a)
}

/// What the server decided for one request.
struct Verdict {
    status: u16,
    /// (limit, remaining, reset epoch seconds, retry-after seconds)
    headers: Option<(u32, u64, u64, Option<u64>)>,
}

#[derive(Debug)]
struct State {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
    /// Per client IP: the instant a 429's Retry-After told it to wait until.
    retry_until: HashMap<IpAddr, Instant>,
    total: u64,
    ok: u64,
    too_many: u64,
    early: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl State {
    fn new(rate: u32, burst: u32) -> Self {
        State {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            refilled: Instant::now(),
            retry_until: HashMap::new(),
            total: 0,
            ok: 0,
            too_many: 0,
            early: 0,
            first: None,
            last: None,
        }
    }

    fn decide(&mut self, ip: IpAddr) -> Verdict {
        let now = Instant::now();
        self.total += 1;
        self.first.get_or_insert(now);
        self.last = Some(now);
        if self.retry_until.get(&ip).is_some_and(|until| now < *until) {
            self.early += 1;
        }
        if self.rate == 0.0 {
            self.ok += 1;
            return Verdict { status: 200, headers: None };
        }
        self.tokens = (self.tokens + now.duration_since(self.refilled).as_secs_f64() * self.rate).min(self.burst);
        self.refilled = now;
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        let limit = self.rate as u32;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.ok += 1;
            let remaining = self.tokens.floor();
            // The next whole token is added when the bucket reaches remaining + 1.
            let next = if self.tokens >= self.burst { 0.0 } else { (remaining + 1.0 - self.tokens) / self.rate };
            let reset = (wall + next).ceil() as u64;
            Verdict { status: 200, headers: Some((limit, remaining as u64, reset, None)) }
        } else {
            self.too_many += 1;
            let wait = (1.0 - self.tokens) / self.rate;
            let retry_after = (wait.ceil() as u64).max(1);
            let until = now + Duration::from_secs(retry_after);
            let slot = self.retry_until.entry(ip).or_insert(until);
            *slot = (*slot).max(until);
            let reset = (wall + wait).ceil() as u64;
            Verdict { status: 429, headers: Some((limit, 0, reset, Some(retry_after))) }
        }
    }

    fn stats_json(&self, rate: u32, burst: u32) -> String {
        let window = match (self.first, self.last) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
            _ => 0.0,
        };
        format!(
            r#"{{"rate":{rate},"burst":{burst},"total":{},"ok":{},"too_many":{},"early":{},"window_s":{window:.3}}}"#,
            self.total, self.ok, self.too_many, self.early
        )
    }
}

fn response(v: &Verdict) -> Vec<u8> {
    let (reason, body) = match v.status {
        200 => ("OK", r#"{"ok":true}"#),
        _ => ("Too Many Requests", r#"{"error":"rate limited"}"#),
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        v.status,
        body.len()
    );
    if let Some((limit, remaining, reset, retry_after)) = v.headers {
        out.push_str(&format!(
            "x-ratelimit-limit: {limit}\r\nx-ratelimit-remaining: {remaining}\r\nx-ratelimit-reset: {reset}\r\n"
        ));
        if let Some(s) = retry_after {
            out.push_str(&format!("retry-after: {s}\r\n"));
        }
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

/// Serves one connection until the peer closes it or asks to.
async fn serve(stream: TcpStream, peer: SocketAddr, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    loop {
        // Request line; end of stream between requests is a normal close.
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        if line.trim().is_empty() {
            continue;
        }
        let http10 = line.trim_end().ends_with("HTTP/1.0");
        let mut content_length = 0usize;
        let mut close = http10;
        let mut header_bytes = 0usize;
        loop {
            line.clear();
            let n = reader.read_line(&mut line).await?;
            header_bytes += n;
            if n == 0 || header_bytes > 64 * 1024 {
                return Ok(());
            }
            let h = line.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.eq_ignore_ascii_case("close");
                }
            }
        }
        if content_length > 0 {
            let mut body = vec![0; content_length];
            reader.read_exact(&mut body).await?;
        }
        let verdict = state.lock().unwrap_or_else(|p| p.into_inner()).decide(peer.ip());
        write.write_all(&response(&verdict)).await?;
        if close {
            return Ok(());
        }
    }
}

async fn stop_signal(duration: Option<Duration>) {
    use tokio::signal::unix::{SignalKind, signal};
    // End of stdin, read on a plain thread (tokio's stdin is not enabled here).
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ = tx.send(());
    });
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    let timer = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = rx => {}
        () = timer => {}
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "ratelimit_server: {e}\nusage: ratelimit_server [--port P] [--rate R] [--burst B] [--duration SECS]"
            );
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(("127.0.0.1", args.port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ratelimit_server: cannot listen on 127.0.0.1:{}: {e}", args.port);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().expect("a bound socket has an address");
    println!("{addr}");
    let state = Arc::new(Mutex::new(State::new(args.rate, args.burst)));
    let accept = {
        let state = state.clone();
        async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        let state = state.clone();
                        tokio::spawn(async move {
                            if let Err(e) = serve(stream, peer, state).await {
                                eprintln!("ratelimit_server: connection from {peer}: {e}");
                            }
                        });
                    }
                    Err(e) => eprintln!("ratelimit_server: accept: {e}"),
                }
            }
        }
    };
    tokio::select! {
        () = accept => {}
        () = stop_signal(args.duration) => {}
    }
    let line = state.lock().unwrap_or_else(|p| p.into_inner()).stats_json(args.rate, args.burst);
    println!("{line}");
    // Exit at once: the stdin reader thread may still be blocked in read(2).
    std::process::exit(0)
}
