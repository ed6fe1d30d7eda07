//! `cargo xtask`: developer tasks for the dovetail workspace.
//!
//! - `ci`: fmt, clippy, tests, tidy and the demo smoke test, in order (`.ci/run` calls it)
//! - `tidy`: dependency direction, secret types, connector READMEs, file sizes, no copies of
//!   the shared connector helpers
//! - `bench [--records N]... [--runs K] [--no-judge] [--keep]`: JSONL → SQLite throughput and
//!   peak RSS, judged
//! - `bench-http [--seconds S] [--requests N] [--runs K] [--no-judge]`: dovetail-http against a rate-limited local
//!   server, and its keep-alive overhead over bare reqwest
//! - `bench-rest [--records N]... [--runs K] [--no-judge]`: the fake vendor → REST → SQLite
//!   through `dovetail run`, judged
//! - `bench-pg [--url URL] [--records N]... [--runs K] [--no-judge] [--debug]`: JSONL →
//!   PostgreSQL through `dovetail run` beside a raw COPY + merge of the same records, the fake
//!   vendor → PostgreSQL, and a kill -9 followed by a rerun, judged
//! - `bench-fleet [--workers 1,2,4] [--idle 8,32,128|none] [--streams S] [--records N] [--runs K]
//!   [--no-judge] [--url URL] [--debug]`: `dovetail worker` fleets against the fake vendor with 20 ms
//!   latency: records/s scaling from 1 to 2 and 4 workers (judged), lease SQL per batch and per
//!   stream-minute, and what idle fleets of 8 … 128 workers cost one PostgreSQL
//! - `new-connector NAME`: scaffold a connector crate (a source and a sink) and wire it in
//! - `crash [--kills N] [--seed S]`: the crash sweep, N random kills per path, as a table
//! - `contract [NAME ...]`: run the connectors' contract suites and print a table
//! - `stripe-schemas SPEC [--out DIR] [--source LABEL]`: the Stripe streams' row schemas from
//!   Stripe's OpenAPI spec, recording its version and where it came from
//! - `man [--out DIR]`: the man page and shell completions, from the `dovetail` binary
//!
//! xtask depends on no dovetail crate: it reads manifests with `toml` and drives the
//! `dovetail` binary as a child process.

mod bench;
mod bench_fleet;
mod bench_fleet_idle;
mod bench_http;
mod bench_judge;
mod bench_pg;
mod bench_rest;
mod ci;
mod contract;
mod crash;
mod fuzz;
mod man;
mod new_connector;
mod rss;
mod stripe_schemas;
mod tidy;
mod util;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  ci                              fmt check, clippy -D warnings, tests, tidy, demo smoke test
  tidy                            workspace rules: dependency direction, secret types,
                                  connector READMEs, file sizes, no copies of the shared
                                  connector helpers
  bench [--records N]... [--runs K] [--no-judge] [--keep]
                                  JSONL -> SQLite benchmark of the release binary
                                  (default: --records 100000 --records 1000000 --records 3000000)
  bench-http [--seconds S] [--requests N] [--runs K] [--no-judge]
                                  dovetail-http benchmarks (release examples of crates/http):
                                  client not told R vs a rate-limited server for S seconds
                                  (default 20); N keep-alive GETs vs bare reqwest (10000)
  bench-rest [--records N]... [--runs K] [--no-judge]
                                  fake vendor (own process) -> REST -> SQLite through
                                  `dovetail run` (default: 200000 and 1000000 records)
                                  benches: K runs (default 3), targets judged on the medians
                                  (exit 1 on a miss unless --no-judge); lost records always fail
  bench-pg [--url URL] [--records N]... [--runs K] [--no-judge] [--debug]
                                  JSONL -> PostgreSQL through `dovetail run` beside a raw psql
                                  COPY + merge of the same records (default 1000000; the
                                  server from --url or DOVETAIL_BENCH_PG_URL)
  bench-fleet [--workers 1,2,4] [--idle 8,32,128|none] [--streams S] [--records N] [--runs K]
              [--no-judge] [--url URL] [--debug]
                                  `dovetail worker --concurrency 1` fleets (own processes) on
                                  PostgreSQL state against the fake vendor with 20 ms latency:
                                  S pipelines (default 16) x N records (5000); records/s of 1, 2
                                  and 4 workers judged >= 1.8x and >= 3x of one; lease SQL per
                                  batch and per stream-minute; idle fleets' cost to the server
                                  (default: the testkit's throwaway cluster; not part of `ci`)
  new-connector NAME              scaffold connectors/NAME (a source and a sink) and wire it
                                  into the workspace and the runner
  contract [NAME ...]             run connectors/*/tests/contract.rs (or those of NAME ...) and
                                  print a table connector x check: pass / FAIL / skip / n/a, reasons
  stripe-schemas SPEC [--out DIR] [--source LABEL]
                                  the Stripe streams' row schemas (JSON Schema) from Stripe's
                                  OpenAPI spec3.json, recording its version and LABEL (or
                                  $STRIPE_SPEC_SOURCE): where the spec came from
                                  (default DIR: connectors/stripe/schemas)
  crash [--kills N] [--seed S]    the crash harness on every source x sink path with N random
                                  kills each (default 20): lost / duplicated / refetched table
  fuzz [--secs N] [TARGET ...]    cargo-fuzz targets of fuzz/ for N s each (default 60; nightly +
                                  cargo-fuzz); crashes land in fuzz/artifacts/, replayed on stable
  man [--out DIR]                 man page and bash/zsh/fish completions of `dovetail`
                                  (default DIR: target/share)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = util::workspace_root();
    let result = match args.first().map(String::as_str) {
        Some("ci") if args.len() == 1 => ci::main(&root),
        Some("tidy") if args.len() == 1 => tidy::main(&root),
        Some("bench") => bench::main(&root, &args[1..]),
        Some("bench-http") => bench_http::main(&root, &args[1..]),
        Some("bench-rest") => bench_rest::main(&root, &args[1..]),
        Some("bench-pg") => bench_pg::main(&root, &args[1..]),
        Some("bench-fleet") => bench_fleet::main(&root, &args[1..]),
        Some("contract") => contract::main(&root, &args[1..]),
        Some("crash") => crash::main(&root, &args[1..]),
        Some("man") => man::main(&root, &args[1..]).map(|()| true),
        Some("fuzz") => fuzz::main(&root, &args[1..]),
        Some("new-connector") => new_connector::main(&root, &args[1..]).map(|()| true),
        Some("stripe-schemas") => stripe_schemas::main(&root, &args[1..]),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
