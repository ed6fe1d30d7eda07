//! dovetail-core: the engine of dovetail.
//!
//! It defines what flows ([`Record`]), where it comes from and goes to ([`Source`],
//! [`Sink`], [`Transform`]), how it is reshaped ([`mapping::Mapping`]), the durable state
//! contract ([`state::StateStore`]) and the [`Pipeline`] engine that moves records with
//! effectively-once delivery: at-least-once reading, a content-hash ledger and
//! checkpoints that advance only after the sink acknowledged.
//!
//! A pipeline in code:
//!
//! ```
//! use std::sync::Arc;
//! use dovetail_core::{Pipeline, mapping::Mapping, testing::{MemorySource, MemorySink, MemoryState}};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), dovetail_core::Error> {
//! let source = MemorySource::new("users", &["id"], vec![json!({"id": 1, "name": "Ada"})]);
//! let sink = MemorySink::default();
//! let mapping = Mapping::builder().rename("name", "full_name").constant("origin", json!("crm")).build();
//! let pipeline = Pipeline::builder("crm-to-warehouse")
//!     .source(source)
//!     .sink(sink.clone())
//!     .state(MemoryState::default())
//!     .stream_mapping("users", mapping)
//!     .build()?;
//! let report = pipeline.run(Default::default()).await?;
//! assert_eq!(report.streams["users"].written, 1);
//! assert_eq!(sink.rows("users")[0]["full_name"], json!("Ada"));
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod connector;
pub mod drift;
pub mod drift_policy;
pub mod error;
pub mod explain;
pub mod failpoint;
#[doc(hidden)]
pub mod fuzz_entry;
pub mod json;
pub mod lease;
pub mod mapping;
pub mod names;
pub mod number;
pub mod pipeline;
pub mod position;
pub mod record;
pub mod remote;
pub mod report;
pub mod schema;
pub mod secret;
pub mod state;
pub mod stream;
pub mod testing;

pub use connector::{
    Batch, BuildCx, ColumnDrift, CreateHint, Cx, Extent, Identity, Next, Page, ReadRequest, Reject, Sink,
    SinkConnector, SinkRecall, SinkStream, SinkTarget, Source, SourceConnector, Transform, TransformError, WriteMode,
    WriteReport,
};
pub use drift_policy::{DriftAction, DriftPolicy};
pub use error::{ConnectorError, Disposition, Error, ErrorContext, ErrorKind, HttpFailure, Result, io_kind};
pub use json::{JsonType, json_type_name, json_type_phrase};
pub use names::{DriftClass, PauseKind, RunOutcome, UnknownName};
pub use pipeline::{ALL_DEAD_LETTERED_MIN, Pipeline, PipelineBuilder, Progress, RunOptions, StreamOptions};
pub use record::{ContentHash, FieldPath, Key, Location, Provenance, Record};
pub use report::{HttpReport, RunReport, StreamReport};
pub use secret::Secret;
pub use state::{Checkpoint, DeliveryStore, HistoryStore, StateStore, StoredDrift};
pub use stream::{DeleteMode, OnUnavailable, StreamSpec, SyncMode};

/// Current time as RFC 3339 with millisecond precision, UTC.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().round(jiff::Unit::Millisecond).unwrap_or_else(|_| jiff::Timestamp::now()).to_string()
}
