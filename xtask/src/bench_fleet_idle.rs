//! The idle fleets of `cargo xtask bench-fleet` (`--idle 8,32,128`): N workers run the
//! bench's pipelines once (their claims race), then idle, polling and heartbeating, for
//! [`IDLE_WINDOW`]; what that costs the server (statements, execution time, its processes'
//! CPU from `/proc` when it runs on this machine, connections) and each worker.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::bench_fleet::{Bins, CONNECTIONS_SQL, Fleet, LeaseSql, Server, pass};
use crate::bench_pg::psql;

/// Records of the idle fleets' single pass: only the claims matter there.
const IDLE_RECORDS: u64 = 200;
/// How long an idle fleet is measured.
const IDLE_WINDOW: Duration = Duration::from_secs(20);

/// CPU seconds of the server's processes, when it runs on this machine: the postmaster (its
/// reaped children included) and its live children, from `/proc`.
fn server_cpu(server: &Server) -> Option<f64> {
    let dir = psql(&server.url, "SELECT setting FROM pg_settings WHERE name = 'data_directory'").ok()?;
    let pid: u32 =
        fs::read_to_string(Path::new(&dir).join("postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()?;
    let mut ticks = proc_ticks(pid, true)?;
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if proc_stat(child).is_some_and(|f| f.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid)) {
            ticks += proc_ticks(child, false).unwrap_or(0);
        }
    }
    Some(ticks as f64 / clock_ticks())
}

/// CPU seconds of the processes `pids` (their own time), from `/proc`.
fn processes_cpu(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|p| proc_ticks(*p, false)).sum::<u64>() as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    // The kernel's USER_HZ, 100 on every Linux that ships.
    100.0
}

/// The fields of `/proc/PID/stat` after the command name: state is [0], ppid [1], utime [11].
fn proc_stat(pid: u32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 2..];
    Some(after.split_whitespace().map(str::to_owned).collect())
}

/// utime + stime (and with `children`, cutime + cstime) of `pid`, in clock ticks.
fn proc_ticks(pid: u32, children: bool) -> Option<u64> {
    let f = proc_stat(pid)?;
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    let own = field(11)? + field(12)?;
    Some(if children { own + field(13)? + field(14)? } else { own })
}

/// One idle fleet's figures.
pub(crate) struct Idle {
    workers: usize,
    claim: (u64, f64, f64),
    statements_per_sec: f64,
    exec_ms_per_sec: f64,
    server_cpu: Option<f64>,
    worker_cpu: f64,
    connections: u64,
    poll_mean_ms: f64,
}

/// `workers` workers run the pipelines once (claims under contention), then idle for
/// [`IDLE_WINDOW`]: what the fleet costs the server while it only polls and heartbeats.
pub(crate) fn idle(bins: &Bins, server: &Server, dir: &Path, workers: usize, streams: usize) -> Result<Idle> {
    let mut figures = None;
    let mut measure = |fleet: &Fleet| -> Result<()> {
        server.reset_statements()?;
        let (cpu0, w0, started) = (server_cpu(server), processes_cpu(&fleet.pids()), Instant::now());
        // The measurement window itself (nothing to wait for: the fleet is idle by design).
        std::thread::sleep(IDLE_WINDOW);
        let secs = started.elapsed().as_secs_f64();
        let (cpu1, w1) = (server_cpu(server), processes_cpu(&fleet.pids()));
        let lease = LeaseSql::read(server)?.unwrap_or_default();
        let connections = server.count(CONNECTIONS_SQL);
        let (polls, poll_ms, _) = lease.kind("poll");
        figures = Some(Idle {
            workers,
            claim: (0, 0.0, 0.0),
            statements_per_sec: lease.total() as f64 / secs,
            exec_ms_per_sec: lease.exec_ms() / secs,
            server_cpu: cpu0.zip(cpu1).map(|(a, b)| (b - a) / secs),
            worker_cpu: (w1 - w0) / secs / workers as f64,
            connections,
            poll_mean_ms: poll_ms / polls.max(1) as f64,
        });
        Ok(())
    };
    let p = pass(bins, server, dir, (workers, streams, IDLE_RECORDS), &mut measure)?;
    let mut idle = figures.context("the idle window was not measured")?;
    idle.claim = p.lease.map(|l| l.kind("claim")).unwrap_or_default();
    Ok(idle)
}

/// The idle fleets' table.
pub(crate) fn print_idle(idles: &[Idle], streams: usize, counted: bool) {
    if idles.is_empty() {
        return;
    }
    println!(
        "\nidle fleets ({streams} scheduled pipelines, poll every 1 s, heartbeat 10 s; {} s window{}):",
        IDLE_WINDOW.as_secs(),
        if counted { "" } else { "; statements not counted" }
    );
    println!(
        "{:>7} {:>16} {:>17} {:>14} {:>16} {:>13} {:>14} {:>22}",
        "workers",
        "lease stmts/s",
        "server exec ms/s",
        "server CPU %",
        "CPU % per worker",
        "connections",
        "poll mean ms",
        "claims: n, mean/max ms"
    );
    for i in idles {
        println!("{}", idle_row(i));
    }
}

pub(crate) fn idle_row(i: &Idle) -> String {
    let (n, ms, max) = i.claim;
    format!(
        "{:>7} {:>16.0} {:>17.1} {:>14} {:>16.2} {:>13} {:>14.3} {:>22}",
        i.workers,
        i.statements_per_sec,
        i.exec_ms_per_sec,
        i.server_cpu.map(|c| format!("{:.1}", c * 100.0)).unwrap_or_else(|| "n/a".into()),
        i.worker_cpu * 100.0,
        i.connections,
        i.poll_mean_ms,
        format!("{n}, {:.3}/{max:.3}", ms / n.max(1) as f64)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_times_of_this_process_are_read() {
        let me = std::process::id();
        assert!(proc_stat(me).is_some_and(|f| f[0] == "R" || f[0] == "S"));
        let busy = Instant::now();
        while busy.elapsed() < Duration::from_millis(50) {
            std::hint::black_box(0u64);
        }
        assert!(proc_ticks(me, true).is_some() && processes_cpu(&[me]) >= 0.0);
    }
}
