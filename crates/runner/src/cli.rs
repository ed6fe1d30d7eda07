//! Command-line interface: verbs, flags and their help texts (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// dovetail: API integrations that keep working in production.
///
/// Exit codes: 0 success, 2 usage error, 3 config, 4 auth, 5 rate limited, 6 transient,
/// 7 unavailable, 8 permanent, 9 data, 10 internal, 130 interrupted.
#[derive(Debug, Parser)]
#[command(name = "dovetail", version, propagate_version = true)]
pub struct Cli {
    /// Config file (TOML).
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "DOVETAIL_CONFIG",
        default_value = "dovetail.toml",
        value_name = "PATH"
    )]
    pub config: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More log output, a level per -v (the default is INFO, WARN on a terminal). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Less output: a log level less per -q, and no "What happened" story after `run`. RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
    /// The verb.
    #[command(subcommand)]
    pub command: Command,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter config (and its JSON Schema for editors) in this directory.
    Init(InitArgs),
    /// Fetch one page of a stream and print its raw records, the mapped records and the
    /// inferred schema; writes nothing, state included.
    Preview(PreviewArgs),
    /// Run pipelines (all of them by default, one after the other).
    Run(RunArgs),
    /// Join a fleet: claim stream leases of scheduled pipelines from PostgreSQL state and run
    /// them, until SIGTERM (docs/deploy.md).
    Worker(WorkerArgs),
    /// Validate the config, warn about literal secrets and probe every source and sink.
    Check(CheckArgs),
    /// Show each pipeline's latest runs, paused streams and the outbox.
    Status(StatusArgs),
    /// Inspect and replay records that could not be delivered.
    #[command(subcommand)]
    DeadLetters(DeadLettersCommand),
    /// Forget the checkpoints of a pipeline (or one of its streams); the ledger is kept.
    Reset(ResetArgs),
    /// Unpause a pipeline's paused streams (or one of them), whatever paused them.
    Resume(ResumeArgs),
    /// Inspect what the state holds for a pipeline (read-only).
    #[command(subcommand)]
    State(StateCommand),
    /// List response-shape drift; `drift accept` makes the observed shape the new baseline.
    Drift(DriftArgs),
    /// Show one record's story: the request that fetched it, its raw data, the mapping, the
    /// output diff and the write outcome.
    Explain(ExplainArgs),
    /// Print the JSON Schema of the config file.
    ConfigSchema,
    /// Print a shell completion script (`dovetail completions bash > …`).
    Completions(CompletionsArgs),
    /// Print the man page (roff); `cargo xtask man` writes it to a file.
    #[command(hide = true)]
    Man,
    /// Start a fake vendor with faults in-process and sync it into SQLite (examples/demo.toml).
    Demo(DemoArgs),
}

/// `dovetail worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// This worker's name in the fleet (default `HOST-PID`): leases, their history and
    /// `dovetail status` name it.
    #[arg(long, value_name = "NAME")]
    pub id: Option<String>,
    /// Lease units (streams, with their child streams) this worker runs at once.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// Serve Prometheus metrics on this address (docs/metrics.md).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
}

/// `dovetail check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Validate the config only: contact no API, open no file or database.
    #[arg(long)]
    pub offline: bool,
}

/// `dovetail init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where the records come from.
    #[arg(long, value_enum, default_value_t = InitSource::Files)]
    pub source: InitSource,
    /// Where the records go.
    #[arg(long, value_enum, default_value_t = InitSink::Sqlite)]
    pub sink: InitSink,
}

/// The sources `dovetail init` has a starter for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InitSource {
    /// A local JSONL file (a small sample is written beside the config).
    Files,
    /// A JSON API over HTTP.
    Rest,
    /// GitHub issues of a repository.
    Github,
}

/// The sinks `dovetail init` has a starter for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InitSink {
    /// A local SQLite database.
    Sqlite,
    /// JSON Lines files.
    Jsonl,
}

/// `dovetail preview`.
#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// Pipeline name.
    pub pipeline: String,
    /// Stream name.
    pub stream: String,
    /// Records to show (default: the first page); more pages are fetched to reach it.
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
}

/// `dovetail completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `dovetail demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The demo pipeline (default: examples/demo.toml, else a built-in copy); the vendor's
    /// config is `demo-vendor.toml` beside it (else built in).
    #[arg(long = "demo-config", value_name = "FILE")]
    pub demo_config: Option<std::path::PathBuf>,
    /// Records the fake vendor serves (default: the vendor config's).
    #[arg(long)]
    pub records: Option<u64>,
    /// Print one JSON object (the counts, the faults' counters, the run report) instead of
    /// the story.
    #[arg(long)]
    pub json: bool,
}

/// `dovetail run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Pipelines to run (default: all, in name order).
    #[arg(value_name = "PIPELINE")]
    pub pipelines: Vec<String>,
    /// Run only this stream (repeatable).
    #[arg(long = "stream", short = 's', value_name = "STREAM")]
    pub streams: Vec<String>,
    /// Read and map, write and commit nothing; report what would change.
    #[arg(long)]
    pub dry_run: bool,
    /// Stop each stream after N records: they are delivered and committed, but the pass is
    /// not completed (no cursor move, no deletes); the next run completes it without writing
    /// them again.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Print each run report as one JSON line instead of the summary table.
    #[arg(long)]
    pub json: bool,
    /// Backfill: incremental streams with a cursor re-read from this cursor value (inclusive),
    /// e.g. `--from 2026-01-01T00:00:00Z`; what is unchanged is skipped by the ledger.
    #[arg(long, value_name = "VALUE")]
    pub from: Option<String>,
    /// Serve Prometheus metrics on this address (`127.0.0.1:9185`; port 0 picks a free one,
    /// logged as `metrics on http://…`). See docs/metrics.md.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    /// Keep running: run the selected pipelines every DURATION (`30s`, `15m`, `1h`), skipping
    /// a tick while a run is still going; SIGTERM or ctrl-c stops. See docs/operations.md.
    #[arg(long, value_name = "DURATION", value_parser = crate::schedule::parse_every)]
    pub every: Option<std::time::Duration>,
}

/// `dovetail status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only runs of this pipeline.
    #[arg(value_name = "PIPELINE")]
    pub pipeline: Option<String>,
    /// Print the stored runs as JSON.
    #[arg(long)]
    pub json: bool,
    /// How many runs to show per pipeline, newest first.
    #[arg(long, short = 'n', default_value_t = 5)]
    pub limit: usize,
    /// Show every column in full (errors and reasons not truncated).
    #[arg(long)]
    pub wide: bool,
}

/// `dovetail dead-letters ...`.
#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// List dead letters, oldest first.
    List(DeadLettersListArgs),
    /// Show one dead letter in full, raw input included.
    Show(DeadLettersShowArgs),
    /// Re-process dead letters through the current config; those that pass are delivered and removed.
    Replay(DeadLettersReplayArgs),
}

/// `dovetail dead-letters list`.
#[derive(Debug, Args)]
pub struct DeadLettersListArgs {
    /// Only this pipeline.
    #[arg(long, short = 'p')]
    pub pipeline: Option<String>,
    /// Only this stream.
    #[arg(long, short = 's')]
    pub stream: Option<String>,
    /// How many to show.
    #[arg(long, short = 'n', default_value_t = 50)]
    pub limit: usize,
    /// Count them per reason or per field path instead of listing them.
    #[arg(long, value_enum, value_name = "WHAT")]
    pub group_by: Option<GroupBy>,
    /// Show every column in full (no truncation).
    #[arg(long)]
    pub wide: bool,
    /// Print them as JSON (raw input included), or the groups with `--group-by`.
    #[arg(long)]
    pub json: bool,
}

/// What `dead-letters list --group-by` counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GroupBy {
    /// The reason text.
    Reason,
    /// The field path at fault.
    Path,
}

/// `dovetail dead-letters show`.
#[derive(Debug, Args)]
pub struct DeadLettersShowArgs {
    /// Dead-letter id (from `dead-letters list`).
    pub id: i64,
    /// Print it as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `dovetail dead-letters replay`.
#[derive(Debug, Args)]
pub struct DeadLettersReplayArgs {
    /// Only this pipeline's dead letters (default: every pipeline).
    #[arg(value_name = "PIPELINE")]
    pub pipeline: Option<String>,
    /// Only these dead letters (repeatable).
    #[arg(long = "id", value_name = "ID")]
    pub ids: Vec<i64>,
    /// Print each replay report as one JSON line.
    #[arg(long)]
    pub json: bool,
}

/// `dovetail state ...`.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Print each stream's checkpoint and cursor; changes nothing (no secrets needed).
    Show(StateShowArgs),
}

/// `dovetail state show`.
#[derive(Debug, Args)]
pub struct StateShowArgs {
    /// Pipeline name.
    pub pipeline: String,
    /// Only this stream.
    pub stream: Option<String>,
    /// Print the checkpoints as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `dovetail drift`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DriftArgs {
    /// What to do (default: list).
    #[command(subcommand)]
    pub action: Option<DriftAction>,
    /// Only this pipeline's drift.
    #[arg(long)]
    pub pipeline: Option<String>,
    /// Print the history as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `dovetail drift` subcommands.
#[derive(Debug, Subcommand)]
pub enum DriftAction {
    /// Take a stream's open drift into its baseline, mark it accepted, and unpause the stream.
    Accept {
        /// Pipeline name.
        pipeline: String,
        /// Stream name.
        stream: String,
    },
}

/// `dovetail resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// Pipeline whose paused streams to resume.
    pub pipeline: String,
    /// Only this stream.
    pub stream: Option<String>,
}

/// `dovetail explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Pipeline name.
    pub pipeline: String,
    /// Stream name.
    pub stream: String,
    /// The record's primary key as you would type it: `42`, `abc`, `{"id":42}`; a composite
    /// key as a JSON array `["acme",42]` or object.
    pub key: String,
    /// Print the story as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `dovetail reset`.
#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Pipeline whose checkpoints to forget.
    pub pipeline: String,
    /// Only this stream's checkpoint.
    pub stream: Option<String>,
    /// Also forget the ledger's content hashes, so the next run writes every record again
    /// (for a sink that lost data dovetail cannot detect); destination ids are kept, so a
    /// create-only sink updates its records instead of creating them again.
    #[arg(long)]
    pub ledger: bool,
}
