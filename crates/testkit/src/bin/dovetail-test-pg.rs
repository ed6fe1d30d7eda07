//! `dovetail-test-pg [--databases N] [--durable] [--set NAME=VALUE]...`: a throwaway PostgreSQL for tools that
//! cannot link the testkit (`cargo xtask bench --state pg`). Starts a cluster of its own
//! (`pg::Cluster`), creates N databases (default 1), prints one URL per line and then
//! `ready`, and keeps the cluster until its stdin closes; then the cluster is stopped and
//! removed (also when this process is killed: the testkit's watchdog). `--durable` turns
//! `fsync`, `synchronous_commit` and `full_page_writes` back on, as a real server has them;
//! `--set` passes a server setting (`shared_preload_libraries=pg_stat_statements` for
//! `cargo xtask bench-fleet`, which counts the lease statements).

use std::io::{Read, Write};

use dovetail_testkit::pg;

fn main() {
    let mut databases = 1usize;
    let mut durable = false;
    let mut settings: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--databases" => {
                databases =
                    args.next().and_then(|n| n.parse().ok()).unwrap_or_else(|| usage("--databases needs a count"))
            }
            "--durable" => durable = true,
            "--set" => settings
                .push(args.next().filter(|s| s.contains('=')).unwrap_or_else(|| usage("--set needs NAME=VALUE"))),
            other => usage(&format!("unknown argument `{other}`")),
        }
    }
    if durable {
        settings.extend(["fsync=on", "synchronous_commit=on", "full_page_writes=on"].map(String::from));
    }
    let options = pg::ClusterOptions { settings, ..pg::ClusterOptions::default() };
    let Some(cluster) = pg::Cluster::start("dovetail-test-pg", &options) else {
        eprintln!("dovetail-test-pg: no PostgreSQL on this machine");
        std::process::exit(2);
    };
    let mut out = std::io::stdout().lock();
    for i in 0..databases {
        let db = cluster.database(&format!("db{i}"));
        let _ = writeln!(out, "{}", db.url());
    }
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    drop(out);
    // Until the caller closes our stdin (or dies).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(cluster);
}

fn usage(why: &str) -> ! {
    eprintln!("dovetail-test-pg: {why}\nusage: dovetail-test-pg [--databases N] [--durable] [--set NAME=VALUE]...");
    std::process::exit(64);
}
