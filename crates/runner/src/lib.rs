//! The `dovetail` command line as a library: the binary (`main.rs`) parses the command line
//! and hands over to `commands`; `fuzz_entry` is the body of the config loader's fuzz target,
//! which needs the loader outside the binary.

mod alerts;
pub mod alloc;
mod build;
pub mod cli;
pub mod commands;
mod config;
mod diag;
#[doc(hidden)]
pub mod fuzz_entry;
pub mod health;
mod interpolate;
mod logbuf;
mod metrics;
pub mod output;
mod own_files;
pub mod progress;
mod registry;
mod retention;
mod schedule;
mod stores;
mod story;
