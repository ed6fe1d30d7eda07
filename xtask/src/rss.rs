//! Run a child process and measure its wall time and peak resident set size.
//!
//! std's `Child::wait` throws the child's resource usage away, so we reap the child
//! ourselves with `wait4(2)`, which returns its `rusage` (`ru_maxrss` is in KiB on Linux).
#![allow(unsafe_code)] // two libc calls: zeroing a POD struct and wait4 on our own child

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// What a measured child did.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// How it ended.
    pub status: ExitStatus,
    /// Wall time from spawn to exit.
    pub wall: Duration,
    /// Peak resident set size in KiB (`ru_maxrss`).
    pub max_rss_kib: u64,
    /// CPU time, user + system (`ru_utime` + `ru_stime`): steadier than wall time on a
    /// shared machine.
    pub cpu: Duration,
}

impl Measured {
    /// Peak RSS in MiB.
    pub fn max_rss_mib(&self) -> f64 {
        self.max_rss_kib as f64 / 1024.0
    }
}

/// Spawns `cmd`, waits for it with `wait4` and returns its status, wall time and peak RSS.
pub fn run_measured(cmd: &mut Command) -> Result<Measured> {
    let start = Instant::now();
    let child = spawn(cmd).with_context(|| format!("starting {:?}", cmd.get_program()))?;
    wait_measured(child, start)
}

/// Waits for `child` (spawned at `start`, not waited for yet) with `wait4`: its status, wall
/// time, peak RSS and CPU, for a bench that runs several children at once.
pub fn wait_measured(child: std::process::Child, start: Instant) -> Result<Measured> {
    let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
    let (status, usage) = wait4(pid).with_context(|| format!("waiting for pid {pid}"))?;
    let wall = start.elapsed();
    // The child is reaped: dropping the handle only closes pipes we did not ask for.
    drop(child);
    Ok(Measured {
        status: ExitStatus::from_raw(status),
        wall,
        max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
    })
}

fn timeval(t: libc::timeval) -> Duration {
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let micros = u32::try_from(t.tv_usec).unwrap_or(0).min(999_999);
    Duration::new(secs, micros * 1000)
}

/// The high-water RSS of this process's address space in KiB (`VmHWM`).
///
/// Spawning (vfork / posix_spawn, and fork too) starts the child in, or as a copy of, the
/// parent's address space, and Linux folds that address space's high-water mark into the
/// child's `ru_maxrss` at `exec`. So a child's figure is really max(this, child's own peak):
/// the floor below which a measurement means nothing. xtask keeps it at a few MiB.
pub fn own_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn wait4(pid: libc::pid_t) -> io::Result<(libc::c_int, libc::rusage)> {
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is a plain C struct of integers; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers point at live locals of the right type, and `pid` is a child
        // we spawned and have not reaped (std never waits on it behind our back).
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return Ok((status, usage));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// `cmd.spawn()`, tried again while the kernel answers `ETXTBSY`: an executable written a
/// moment ago (a test's fake binary) stays "busy" while another thread's child, forked before
/// its writer closed the file, has not yet exec'd and closed that inherited descriptor.
pub fn spawn(cmd: &mut Command) -> std::io::Result<std::process::Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOC_ENV: &str = "XTASK_RSS_TEST_ALLOC_MIB";

    /// Not a real test: when re-run as a child with `XTASK_RSS_TEST_ALLOC_MIB` set, it
    /// allocates and touches that many MiB, so the parent can measure it.
    #[test]
    fn alloc_helper() {
        if let Some(mib) = std::env::var(ALLOC_ENV).ok().and_then(|v| v.parse::<usize>().ok()) {
            let buf = vec![1u8; mib * 1024 * 1024];
            // Touch every page so it is resident, and keep the optimiser honest.
            let sum: u64 = buf.iter().step_by(4096).map(|&b| u64::from(b)).sum();
            assert!(sum > 0);
            std::hint::black_box(&buf);
        }
    }

    fn helper(mib: usize) -> Command {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "rss::tests::alloc_helper", "--test-threads=1", "-q"])
            .env(ALLOC_ENV, mib.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd
    }

    #[test]
    fn measures_a_small_child() {
        let m = run_measured(&mut Command::new("true")).unwrap();
        assert!(m.status.success());
        assert!(m.max_rss_kib > 0, "{m:?}");
        // At most the floor (our own peak, shared until exec) or what `true` needs.
        let floor = own_hwm_kib();
        assert!(m.max_rss_kib <= floor.max(16 * 1024), "{m:?}, floor {floor} KiB");
    }

    #[test]
    fn measures_a_child_that_allocates_160_mib() {
        let floor = own_hwm_kib();
        assert!(floor > 0);
        assert!(floor < 120 * 1024, "the test process itself peaked at {floor} KiB: the measurement would be moot");
        let m = run_measured(&mut helper(160)).unwrap();
        assert!(m.status.success(), "{m:?}");
        assert!(m.max_rss_mib() >= 155.0, "{m:?}");
        assert!(m.max_rss_mib() < 300.0, "{m:?}");
        // Touching 160 MiB of pages costs some CPU, and never more than the wall time.
        assert!(m.cpu > Duration::ZERO && m.cpu <= m.wall * 2, "{m:?}");
    }

    #[test]
    fn reports_exit_codes() {
        let m = run_measured(Command::new("sh").args(["-c", "exit 3"])).unwrap();
        assert_eq!(m.status.code(), Some(3));
    }
}
