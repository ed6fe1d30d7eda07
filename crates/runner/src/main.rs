//! `dovetail`: the command-line tool. Parses the command line, sets up logging and hands
//! over to one module per verb; errors print with their full chain and pick the exit code.
//! The verbs live in the `dovetail_runner` library (`lib.rs`).

use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use dovetail_runner::cli::{Cli, Command, LogFormat};
use dovetail_runner::{alloc, commands, output, progress};

// See `alloc.rs`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    init_logging(&cli);
    output::json_errors(cli.log_format == LogFormat::Json);
    dovetail_core::failpoint::before_abort(progress::flush_logs);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        progress::flush_logs();
        default_hook(info);
    }));
    let code = match run(&cli) {
        Ok(code) => code,
        Err(err) => match err.downcast_ref::<dovetail_core::Error>() {
            Some(e) => {
                output::error(e);
                e.kind().exit_code()
            }
            None => {
                output::other_error(&err);
                dovetail_core::ErrorKind::Internal.exit_code()
            }
        },
    };
    progress::flush_logs();
    std::process::exit(code);
}

/// Async worker threads: `TOKIO_WORKER_THREADS` when set to a number, else one more than
/// the cores. A stream's reader, mapper, writer and committer are tasks that each run a page
/// or a batch at a time without yielding; with one worker per core, an HTTP response that
/// arrives while every worker is busy waits for one of them, on the reader's critical
/// path, and a spare worker lets the OS scheduler preempt instead. `bench-rest` on 2 cores,
/// 15 interleaved 200k runs: median 2.01 → 1.97 s, faster in 10 of 15 pairs (4 workers:
/// +2.7 MiB peak RSS for no more).
fn worker_threads(cores: usize, env: Option<&str>) -> usize {
    env.and_then(|v| v.trim().parse().ok()).filter(|n| *n > 0).unwrap_or(cores + 1)
}

fn run(cli: &Cli) -> anyhow::Result<i32> {
    // The verbs that need no runtime.
    match &cli.command {
        Command::ConfigSchema => return commands::schema::run(),
        Command::Init(a) => return commands::init::run(&cli.config, a),
        Command::Completions(a) => return commands::completions::run(a),
        Command::Man => return commands::completions::man(),
        _ => {}
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = worker_threads(cores, std::env::var("TOKIO_WORKER_THREADS").ok().as_deref());
    alloc::tune(workers);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .on_thread_start(alloc::thread_started)
        .enable_all()
        .build()?;
    // The workers start on their own threads; blocking threads must not start in their place.
    let started = std::time::Instant::now();
    while alloc::workers_pending() && started.elapsed() < std::time::Duration::from_secs(1) {
        std::thread::yield_now();
    }
    let config = cli.config.as_path();
    runtime.block_on(async {
        match &cli.command {
            Command::Run(a) => commands::run::run(config, a).await,
            Command::Worker(a) => commands::worker::run(config, a).await,
            Command::Check(a) => commands::check::run(config, a).await,
            Command::Status(a) => commands::status::run(config, a).await,
            Command::DeadLetters(c) => commands::dead_letters::run(config, c).await,
            Command::Reset(a) => commands::reset::run(config, a).await,
            Command::Resume(a) => commands::resume::run(config, a).await,
            Command::State(c) => commands::state::run(config, c).await,
            Command::Drift(a) => commands::drift::run(config, a).await,
            Command::Explain(a) => commands::explain::run(config, a).await,
            Command::Preview(a) => commands::preview::run(config, a).await,
            Command::Demo(a) => commands::demo::run(a).await,
            // (Returned before the runtime starts.)
            Command::ConfigSchema => commands::schema::run(),
            Command::Init(a) => commands::init::run(&cli.config, a),
            Command::Completions(a) => commands::completions::run(a),
            Command::Man => commands::completions::man(),
        }
    })
}

/// Logs go to stderr: text or JSON lines; `-v`/`-q` pick the level unless RUST_LOG is set.
/// The default is INFO, or WARN on a terminal and for the demo.
fn init_logging(cli: &Cli) {
    // On a terminal the progress bars carry the per-page figures, and the demo tells its own
    // story: per-request INFO lines would bury both (`-v` brings them back). Off a terminal
    // (a service, CI, a file) those lines are the only record, so INFO stays the default.
    output::set_quiet(cli.quiet > 0);
    let quieter = matches!(cli.command, Command::Demo(_)) || std::io::stderr().is_terminal();
    let level = match i16::from(cli.verbose) - i16::from(cli.quiet) - i16::from(quieter) {
        ..=-2 => "error",
        -1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let others = if level == "error" { "error" } else { "warn" };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("{others},dovetail={level}")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(progress::LogSink::stderr());
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_spare_worker_unless_the_environment_sets_the_count() {
        assert_eq!(super::worker_threads(2, None), 3);
        assert_eq!(super::worker_threads(1, None), 2);
        assert_eq!(super::worker_threads(2, Some("5")), 5);
        assert_eq!(super::worker_threads(2, Some("zero")), 3, "not a number: the default");
        assert_eq!(super::worker_threads(2, Some("0")), 3);
    }
}
