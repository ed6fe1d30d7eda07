//! dovetail-testkit: test support for connectors (a dev-dependency only).
//!
//! This first building block is **recorded HTTP fixtures**:
//!
//! - [`Fixture`]: the file format — one pretty-printed JSON file per scenario with its
//!   [`Exchange`]s in order (request method, path, query, relevant headers, body; response
//!   status, headers, body), stored under `connectors/<name>/fixtures/`;
//! - [`FixtureServer`]: replays a fixture over loopback, strictly — an unmatched request
//!   gets a [`UNMATCHED_STATUS`] answer explaining the closest exchange, and is kept for
//!   [`FixtureServer::unmatched`];
//! - [`Recorder`]: record mode, a proxy on loopback in front of a live API that captures
//!   what the connector's own client sends and receives, and saves it redacted
//!   ([`Redactor`]) with the live base URL replaced by `{{base_url}}`.
//!
//! - [`SourceContract`] ([`contract`]): the connector contract suite, run by each
//!   connector's `tests/contract.rs` over its fixtures through the real engine.
//!
//! - [`state_conformance`](mod@state_conformance): the state conformance suite, run by every state store
//!   (`dovetail-state`'s `tests/conformance.rs`, the in-memory store from this crate's
//!   tests) through [`state_conformance!`].
//!
//! The format is documented in the crate's README.md.
#![warn(missing_docs)]

mod capture;
pub mod contract;
mod error;
mod format;
pub mod pg;
mod record;
mod redact;
mod replay;
mod server;
pub mod state_conformance;

pub use contract::{CheckResult, Outcome, SinkContract, Skip, SourceContract};
pub use error::FixtureError;
pub use format::{BASE_URL, Body, Exchange, FORMAT_VERSION, Fixture, REDACTED, RecordedRequest, RecordedResponse};
pub use record::Recorder;
pub use redact::Redactor;
pub use replay::{FixtureServer, UNMATCHED_STATUS, Unmatched};
