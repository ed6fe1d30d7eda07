//! dovetail-files: JSON Lines and CSV files as a dovetail source, and a JSON Lines sink.
//!
//! - [`FilesSource`] (`kind = "files"`) exposes one stream per configured file. It reads in
//!   pages by byte offset; the position it hands the engine is
//!   `{"offset", "line", "prefix_len", "prefix_hash"}`, where the hash (xxh3-64 of the first
//!   `min(offset, 4096)` bytes) tells on resume whether the file is still the same one. A
//!   replaced or truncated file is read again from the start (the engine's ledger absorbs
//!   the re-read); a position that does not decode is a permanent error. With `follow`, a
//!   completed pass keeps its offset so the next run reads only what was appended.
//! - [`JsonlSink`] (`kind = "jsonl"`) appends each stream to `<dir>/<stream>.jsonl`: an
//!   append-only log where consumers take the last line per key.
//!
//! ```
//! use dovetail_core::{BuildCx, SourceConnector};
//! use dovetail_files::{FilesSource, FilesSourceConfig};
//!
//! let config: FilesSourceConfig = serde_json::from_value(serde_json::json!({
//!     "streams": [{ "name": "orders", "path": "data/orders.jsonl", "primary_key": ["id"] }]
//! })).unwrap();
//! let source = FilesSource::build(config, &BuildCx::default()).unwrap();
//! # use dovetail_core::Source;
//! assert_eq!(source.streams()[0].name, "orders");
//! ```
#![warn(missing_docs)]

mod config;
mod csv;
#[doc(hidden)]
pub mod fuzz_entry;
mod jsonl;
mod position;
mod sink;
mod source;
mod strict;

pub use config::{FilesSourceConfig, Format, StreamConfig};
pub use sink::{JsonlSink, JsonlSinkConfig};
pub use source::FilesSource;

/// The `kind` of the files source in config.
pub const SOURCE_KIND: &str = "files";
/// The `kind` of the JSON Lines sink in config.
pub const SINK_KIND: &str = "jsonl";
