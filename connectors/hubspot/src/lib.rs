//! dovetail-hubspot: the HubSpot CRM source and sink (`kind = "hubspot"`).
//!
//! ```
//! use dovetail_core::{BuildCx, SourceConnector};
//! use dovetail_hubspot::{HubspotConfig, HubspotSource};
//!
//! let config: HubspotConfig = serde_json::from_value(serde_json::json!({
//!     "token": "pat-na1-not-real", "objects": ["contacts", "owners"],
//!     "properties": { "contacts": ["email", "firstname"] }
//! })).unwrap();
//! assert_eq!(config.api_version, "2026-09");
//! HubspotSource::build(config, &BuildCx::default()).unwrap();
//! ```
#![warn(missing_docs)]

mod api;
mod associations;
mod client;
mod config;
mod props;
mod search;
mod sink;
mod sink_assoc;
mod sink_required;
mod sink_values;
mod source;
mod versions;

pub use client::{AccountZone, classifier};
pub use config::{API_VERSION, DEFAULT_BASE_URL, HubspotConfig, HubspotOAuth};
pub use search::CAP as SEARCH_CAP;
pub use sink::{BATCH_MAX, HubspotSink, HubspotSinkConfig};
pub use sink_assoc::Associate;
pub use source::{HubspotSource, LOOKBACK, OWNERS, SEARCHES_PER_SECOND};
pub use versions::{NOTICE_DAYS as SUNSET_NOTICE_DAYS, VERSIONS};

/// The `kind` of this source in config.
pub const KIND: &str = "hubspot";
