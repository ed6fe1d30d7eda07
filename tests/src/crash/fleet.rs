//! The crash harness's fleet path: `dovetail worker` on PostgreSQL state, killed while it
//! holds the stream's lease — aborted at each engine failpoint, and SIGKILLed at random
//! moments — then a second worker takes the stream over once the lease expired (`[workers]
//! lease = "1s"`) and finishes it from the last committed checkpoint. The sink must then hold
//! each key once with the source's last version, and a clean `dovetail run` must write
//! nothing, as on every other path ([`super::CrashPath::check`]). Each run history has a
//! state schema of its own. `DOVETAIL_CRASH_KILLS` random kills (default
//! [`DEFAULT_FLEET_KILLS`]: each costs a lease expiry).

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{CrashPath, FAILPOINT_HITS, PIPELINE, StreamSpec, Tally, env_u64};
use crate::Scratch;

/// Random kills on the fleet path when `DOVETAIL_CRASH_KILLS` is not set.
pub const DEFAULT_FLEET_KILLS: u64 = 3;
/// `[workers]` of the path: a short lease, so a takeover comes about a second after a kill.
const WORKERS: &str = "[workers]\nlease = \"1s\"\nheartbeat = \"300ms\"\n";
/// How long a worker may take to reach a line the path waits for.
const WITHIN: Duration = Duration::from_secs(60);

/// A `dovetail worker` whose stderr lines arrive on a channel.
struct Worker {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Worker {
    fn spawn(s: &Scratch, id: &str, failpoint: Option<String>) -> Worker {
        let mut cmd = s.cmd(&["worker", "--id", id, "--concurrency", "1"]);
        if let Some(f) = failpoint {
            cmd.env("DOVETAIL_FAILPOINT", f);
        }
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn dovetail worker");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Worker { child, lines, seen: Vec::new() }
    }

    /// Waits for a new line containing `needle`: `false` when stderr closed or `within` passed.
    fn wait_for(&mut self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    let hit = line.contains(needle);
                    self.seen.push(line);
                    if hit {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
    }

    /// Whether a line seen so far (or waiting on the channel) contains `needle`.
    fn said(&mut self, needle: &str) -> bool {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.iter().any(|l| l.contains(needle))
    }

    fn log(&self) -> String {
        self.seen.join("\n")
    }

    /// Waits for the process to end (SIGKILL after `within`).
    fn exit_within(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for dovetail worker") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the worker did not exit within {within:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, which must end the worker with 0.
    fn stop(mut self) {
        let sent = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let status = self.exit_within(WITHIN);
        assert!(status.success(), "SIGTERM ends a worker with 0 ({status:?}):\n{}", self.log());
    }
}

/// A fresh run history on `state_url`, schema `crash_fleet_N`: the path's config with the
/// state, `[workers]` and a schedule the workers run (one tick in a test).
fn start(path: &mut CrashPath, state_url: &str, histories: &mut u32) -> (Scratch, Vec<StreamSpec>, State) {
    *histories += 1;
    let (s, streams) = path.start();
    let toml = std::fs::read_to_string(s.path("dovetail.toml")).expect("read the path's config");
    let head = format!("[pipelines.{PIPELINE}]\n");
    assert!(toml.starts_with(&head), "the path's config starts with its pipeline:\n{toml}");
    let toml = toml.replacen(&head, &format!("{head}every = \"1h\"\n"), 1);
    let state = format!("[state]\nurl = \"{state_url}\"\nschema = \"crash_fleet_{histories}\"\n\n{WORKERS}\n");
    s.write("dovetail.toml", &format!("{state}{toml}"));
    (s, streams, State { url: state_url.to_owned(), schema: format!("crash_fleet_{histories}") })
}

/// After `w1` died holding the lease: `w2` takes the stream over once the lease expired,
/// resumes it from its checkpoint (when `resumes`), finishes and releases it, and stops.
/// `false` when there was nothing to take over: `w1` had finished its run and released
/// the lease just before a random kill (the log line after the release did not get out).
fn take_over(path_name: &str, s: &Scratch, w1: &mut Worker, resumes: bool, state: &State) -> bool {
    let mut w2 = Worker::spawn(s, "w2", None);
    let took = w2.wait_for("took over an expired lease", Duration::from_secs(10));
    // The killed worker's last log lines may not have got out before SIGKILL: whether it
    // released the lease is read from the state, not from its log.
    if !took && (w1.said("unit run finished") || state.released()) {
        w2.stop();
        return false;
    }
    assert!(
        took || w2.wait_for("took over an expired lease", WITHIN),
        "{path_name}: the second worker took the stream over from the killed one:\n{}\n-- the killed worker:\n{}",
        w2.log(),
        w1.log()
    );
    assert!(w2.wait_for("released a lease", WITHIN), "{path_name}: the second worker finished:\n{}", w2.log());
    assert!(
        !resumes || w2.said("resuming from checkpoint"),
        "{path_name}: the second worker resumes from the killed one's checkpoint:\n{}",
        w2.log()
    );
    w2.stop();
    true
}

/// Where one run history's leases are: the state URL and its schema.
struct State {
    url: String,
    schema: String,
}

impl State {
    /// The pipeline's lease was released after serving its tick (no holder, a done tick).
    fn released(&self) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(async {
            let (client, conn) =
                tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await.expect("connect to the state");
            tokio::spawn(conn);
            let sql = format!(
                "SELECT count(*) FROM \"{}\".leases WHERE pipeline = $1 AND holder IS NULL AND done_tick IS NOT NULL",
                self.schema
            );
            let n: i64 = client.query_one(&sql, &[&PIPELINE]).await.expect("read the leases").get(0);
            n > 0
        })
    }
}

/// Runs the fleet sweep on `path` with its state on `state_url` (a PostgreSQL database the
/// caller made); fails the test like [`super::sweep`].
pub fn sweep(mut path: CrashPath, state_url: &str) -> Tally {
    let seed = env_u64(
        "DOVETAIL_CRASH_SEED",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64),
    );
    let kills = env_u64("DOVETAIL_CRASH_KILLS", DEFAULT_FLEET_KILLS);
    eprintln!("crash harness: path {} seed {seed} (replay: DOVETAIL_CRASH_SEED={seed})", path.name);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut tally = Tally::default();
    let mut histories = 0;
    let name = path.name.clone();

    // A clean pass by one worker: the exact contents, and how long it holds the lease.
    let (s, streams, _) = start(&mut path, state_url, &mut histories);
    let mut w1 = Worker::spawn(&s, "w1", None);
    assert!(w1.wait_for("claimed a lease", WITHIN), "{name}: the worker claims the stream:\n{}", w1.log());
    let claimed = Instant::now();
    assert!(w1.wait_for("released a lease", WITHIN), "{name}: the calibration pass finished:\n{}", w1.log());
    let mut most = claimed.elapsed().as_millis().max(2) as u64;
    w1.stop();
    path.check(&s, &streams, &mut tally, None);
    drop(s);

    // Each failpoint (at its second hit) kills the worker holding the lease; the second
    // worker takes over, from the checkpoint committed before `after_checkpoint`'s second
    // hit (the other failpoints may fire before the first checkpoint committed: the
    // writer runs one batch ahead of the committer).
    for fp in path.sink.failpoints() {
        let (s, streams, state) = start(&mut path, state_url, &mut histories);
        let mut w1 = Worker::spawn(&s, "w1", Some(format!("{fp}:{}", FAILPOINT_HITS[0])));
        let status = w1.exit_within(WITHIN);
        assert_eq!(status.signal(), Some(libc::SIGABRT), "{name}: failpoint {fp} must abort the worker:\n{}", w1.log());
        tally.failpoints += 1;
        path.source.after_kill(tally.failpoints);
        assert!(take_over(&name, &s, &mut w1, fp == "after_checkpoint", &state), "{name}: {fp} killed a finished run");
        path.check(&s, &streams, &mut tally, None);
    }

    // SIGKILL at a random moment while the worker holds the lease.
    let mut tries = 0;
    while tally.kills < kills {
        tries += 1;
        assert!(tries <= kills * 5 + 5, "{name}: kills keep missing the worker's lease (a pass takes {most} ms)");
        let (s, streams, state) = start(&mut path, state_url, &mut histories);
        let mut w1 = Worker::spawn(&s, "w1", None);
        assert!(w1.wait_for("claimed a lease", WITHIN), "{name}: the worker claims the stream:\n{}", w1.log());
        let claimed = Instant::now();
        std::thread::sleep(Duration::from_millis(rng.u64(0..most)));
        let _ = w1.child.kill();
        w1.exit_within(WITHIN);
        let killed_at = claimed.elapsed();
        if w1.said("released a lease") || !take_over(&name, &s, &mut w1, false, &state) {
            // The pass ended before the kill: a shorter window next time.
            most = (killed_at.as_millis() as u64).clamp(2, most);
            continue;
        }
        tally.kills += 1;
        path.source.after_kill(tally.kills);
        path.check(&s, &streams, &mut tally, None);
    }
    super::finish(&name, &tally, seed);
    tally
}
