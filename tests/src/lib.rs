//! Helpers for dovetail's end-to-end tests: build and run the `dovetail` binary in a
//! scratch directory, and read what it left in SQLite.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

pub mod crash;
pub mod github;
pub mod hubspot;
pub mod pg_proxy;
pub mod stripe;
pub mod vendor;
pub mod watch;

/// Path of the `dovetail` binary, built once per test process (a no-op when up to date).
pub fn dovetail_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> → target/<profile>/dovetail
        let profile_dir = exe.parent().and_then(Path::parent).expect("target profile dir").to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "dovetail-runner", "--bin", "dovetail"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build for the dovetail binary");
        assert!(status.success(), "building the dovetail binary failed");
        profile_dir.join("dovetail")
    })
    .clone()
}

/// A scratch directory holding a config, its data, its state and its sink.
pub struct Scratch {
    /// The temporary directory (removed on drop).
    pub dir: tempfile::TempDir,
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Scratch {
    /// A new empty scratch directory.
    pub fn new() -> Self {
        Scratch { dir: tempfile::tempdir().expect("temp dir") }
    }
    /// A path inside the scratch directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    /// Write a file inside the scratch directory.
    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create dirs");
        }
        std::fs::write(p, content).expect("write file");
    }
    /// A `dovetail` command with `--config dovetail.toml`, run from the scratch directory.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(dovetail_bin());
        c.current_dir(self.dir.path()).arg("--config").arg(self.path("dovetail.toml")).args(args);
        c.env_remove("DOVETAIL_FAILPOINT").env("RUST_LOG", "info");
        c
    }
    /// Run `dovetail` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run dovetail")
    }
    /// Run `dovetail run --json` and parse the report; panics with stderr if it is not JSON.
    pub fn run_json(&self, extra: &[&str]) -> (Output, Value) {
        let mut args = vec!["run", "--json"];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let report = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!("stdout is not a JSON report ({e}):\n{text}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr))
        });
        (out, report)
    }
    /// Open a SQLite database inside the scratch directory.
    pub fn db(&self, rel: &str) -> rusqlite::Connection {
        rusqlite::Connection::open(self.path(rel)).expect("open sqlite")
    }
}

/// Spawn a command with piped stderr and wait until a stderr line contains `needle`.
/// Returns the child and the lines read so far. Panics if stderr closes first.
pub fn spawn_until(mut cmd: Command, needle: &str) -> (Child, Vec<String>) {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn dovetail");
    let stderr = child.stderr.take().expect("stderr");
    let mut reader = BufReader::new(stderr);
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("read stderr");
        if n == 0 {
            panic!("dovetail exited before printing `{needle}`:\n{}", lines.join(""));
        }
        let hit = line.contains(needle);
        lines.push(line);
        if hit {
            break;
        }
    }
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
            sink.clear();
        }
    });
    (child, lines)
}

/// Stdout and stderr of an output, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "status: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
