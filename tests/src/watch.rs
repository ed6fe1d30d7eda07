//! A `dovetail` process watched line by line: its stderr lines arrive on a channel, so a
//! test waits for a log line (with a deadline) instead of sleeping, then signals it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// A running process and the stderr lines it printed so far.
pub struct Watched {
    /// The process.
    pub child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    /// Every stderr line received so far, in order.
    pub seen: Vec<String>,
}

impl Watched {
    /// Spawns `cmd` with stderr piped (stdout discarded).
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn dovetail");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watched { child, lines, seen: Vec::new() }
    }

    /// Waits until a new stderr line contains `needle` and returns it; panics, with every
    /// line seen, when the process closes stderr or `within` passes first.
    pub async fn wait_for(&mut self, needle: &str, within: Duration) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Ok(None) => panic!("dovetail closed stderr before `{needle}`:\n{}", self.log()),
                Err(_) => panic!("no `{needle}` within {within:?}:\n{}", self.log()),
            }
        }
    }

    /// Lines seen so far that contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.seen.iter().filter(|l| l.contains(needle)).count()
    }

    /// Every line seen so far.
    pub fn log(&self) -> String {
        self.seen.join("\n")
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let sent = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit (polling, with a deadline); panics when it does not.
    /// Returns its status and how long it took. Lines printed meanwhile are collected.
    pub async fn exit_within(&mut self, within: Duration) -> (ExitStatus, Duration) {
        let start = Instant::now();
        loop {
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line);
            }
            if let Some(status) = self.child.try_wait().expect("wait for dovetail") {
                // The reader thread may still hold the last lines.
                while let Some(line) = self.lines.recv().await {
                    self.seen.push(line);
                }
                return (status, start.elapsed());
            }
            if start.elapsed() > within {
                let _ = self.child.kill();
                panic!("dovetail did not exit within {within:?}:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The text of a Prometheus scrape, with sums over label filters.
#[derive(Debug, Clone)]
pub struct Scrape(pub String);

impl Scrape {
    /// GET `url` and keep the body (panics on a non-200).
    pub async fn get(url: &str) -> Scrape {
        let resp = reqwest::get(url).await.expect("scrape the metrics endpoint");
        assert_eq!(resp.status(), 200, "metrics endpoint status");
        Scrape(resp.text().await.expect("metrics body"))
    }

    /// Sum of the samples of `name` whose labels include every `key="value"` of `labels`
    /// (0 when none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (metric, rest) = match series.split_once('{') {
                    Some((m, r)) => (m, r),
                    None => (series, ""),
                };
                (metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
                    .then(|| value.parse::<f64>().ok())
                    .flatten()
            })
            .sum()
    }
}
