//! `dovetail completions SHELL` and the hidden `dovetail man`: shell completion scripts
//! (clap_complete) and the man page (clap_mangen, written by `cargo xtask man`), both from
//! the same clap definition the binary parses with, so they never fall behind.

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};

/// Print the completion script for a shell.
pub fn run(args: &CompletionsArgs) -> anyhow::Result<i32> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "dovetail", &mut out);
    crate::output::out(&String::from_utf8(out)?)?;
    Ok(0)
}

/// Print the man page (roff).
pub fn man() -> anyhow::Result<i32> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    crate::output::out(&String::from_utf8(out)?)?;
    Ok(0)
}
