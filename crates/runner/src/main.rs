//! `dovetail`: the command-line tool. Parses the command line, sets up logging and hands
//! over to one module per verb; errors print with their full chain and pick the exit code.

mod alerts;
mod alloc;
mod build;
mod cli;
mod commands;
mod config;
mod diag;
mod interpolate;
mod metrics;
mod output;
mod progress;
mod registry;
mod retention;
mod schedule;
mod stores;

use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, LogFormat};

// See `alloc.rs`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    alloc::purge_freed_memory_at_once();
    let cli = Cli::parse();
    init_logging(&cli);
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
                progress::flush_logs();
                eprintln!("dovetail: {err:#}");
                dovetail_core::ErrorKind::Internal.exit_code()
            }
        },
    };
    progress::flush_logs();
    std::process::exit(code);
}

/// Async worker threads: one more than the cores (unless `TOKIO_WORKER_THREADS` says
/// otherwise). A stream's reader, mapper, writer and committer are tasks that each run a
/// page or a batch at a time without yielding; with one worker per core, an HTTP response
/// that arrives while every worker is mapping waits for one of them, and that wait is on
/// the reader's critical path. A spare worker lets the OS scheduler preempt instead:
/// `bench-rest` on 2 cores, 7 interleaved 300k runs, median 2.36 s → 2.12 s (4 workers:
/// 2.17 s and +2.7 MiB peak RSS).
fn worker_threads(cores: usize, env_override: bool) -> Option<usize> {
    (!env_override).then_some(cores + 1)
}

fn run(cli: &Cli) -> anyhow::Result<i32> {
    if let Command::ConfigSchema = cli.command {
        return commands::schema::run();
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let Some(n) = worker_threads(cores, std::env::var_os("TOKIO_WORKER_THREADS").is_some()) {
        builder.worker_threads(n);
    }
    let runtime = builder.enable_all().build()?;
    let config = cli.config.as_path();
    runtime.block_on(async {
        match &cli.command {
            Command::Run(a) => commands::run::run(config, a).await,
            Command::Check => commands::check::run(config).await,
            Command::Status(a) => commands::status::run(config, a).await,
            Command::DeadLetters(c) => commands::dead_letters::run(config, c).await,
            Command::Reset(a) => commands::reset::run(config, a).await,
            Command::Resume(a) => commands::resume::run(config, a).await,
            Command::Drift(a) => commands::drift::run(config, a).await,
            Command::Explain(a) => commands::explain::run(config, a).await,
            Command::ConfigSchema => commands::schema::run(),
            Command::Demo(a) => commands::demo::run(a).await,
        }
    })
}

/// Logs go to stderr: text or JSON lines; `-v`/`-q` pick the level unless RUST_LOG is set.
fn init_logging(cli: &Cli) {
    // The demo tells its own story; per-request lines would bury it (`-v` brings them back).
    let demo = i16::from(matches!(cli.command, Command::Demo(_)));
    let level = match i16::from(cli.verbose) - i16::from(cli.quiet) - demo {
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
        assert_eq!(super::worker_threads(2, false), Some(3));
        assert_eq!(super::worker_threads(1, false), Some(2));
        assert_eq!(super::worker_threads(2, true), None);
    }
}
