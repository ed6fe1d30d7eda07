//! dovetail-rest: any JSON REST API as a dovetail source or sink, from config alone.
//!
//! - [`RestSource`] (`kind = "rest"`): per stream a path, query, a record selector (JSON
//!   pointer), primary key, optional schema, pagination (cursor, next URL, `Link` header,
//!   page number, offset) and incremental sync (cursor field, the query parameter that
//!   receives the last value, an initial value, a lookback window), plus parent → child
//!   streams (`/v1/items/{parent.id}/comments`). Positions are resumable: an interrupted run
//!   continues at the page it stopped on.
//! - [`RestSink`] (`kind = "rest"`): per stream `create` (POST with the engine's
//!   deterministic idempotency key, destination id kept in the ledger, changes sent as
//!   updates) or `upsert` (PUT by key, per record or as array batches), with a body template.
//!
//! Both stand on dovetail-http: auth (every provider), retries, rate limits, circuit
//! breaker, conditional requests. docs/connectors/rest.md documents every key.
//!
//! ```
//! use dovetail_core::{BuildCx, Source, SourceConnector};
//! use dovetail_rest::{RestSource, RestSourceConfig};
//!
//! let config: RestSourceConfig = serde_json::from_value(serde_json::json!({
//!     "base_url": "https://api.example.com",
//!     "streams": [{
//!         "name": "items", "path": "/v1/items", "records": "/data", "primary_key": ["id"],
//!         "pagination": { "type": "cursor", "pointer": "/meta/next_cursor", "param": "cursor" },
//!         "incremental": { "cursor_field": "updated_at", "param": "updated_since" }
//!     }]
//! })).unwrap();
//! let source = RestSource::build(config, &BuildCx::default()).unwrap();
//! assert_eq!(source.streams()[0].cursor_field.as_ref().unwrap().as_str(), "updated_at");
//! ```
#![warn(missing_docs)]

mod client;
mod config;
#[doc(hidden)]
pub mod fuzz_entry;
mod sink;
mod source;

pub use config::{
    ApiVersion, Incremental, Pagination, ParentConfig, RestSinkConfig, RestSinkStream, RestSourceConfig,
    RestStreamConfig, SinkMode,
};
pub use sink::RestSink;
pub use source::RestSource;

/// The `kind` of the REST source in config.
pub const SOURCE_KIND: &str = "rest";
/// The `kind` of the REST sink in config.
pub const SINK_KIND: &str = "rest";
