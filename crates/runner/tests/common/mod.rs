//! Helpers shared by the runner's binary tests.

use std::path::Path;
use std::process::{Command, Output};

/// Run the `dovetail` binary in `dir` with `args`, without the caller's RUST_LOG or config.
pub fn dovetail(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dovetail"))
        .current_dir(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("DOVETAIL_CONFIG")
        .output()
        .unwrap()
}

/// Bytes of an output stream as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
