//! dovetail-stripe: the Stripe source and sink (`kind = "stripe"`).
//!
//! The sink (`sink.rs`) creates customers, products, prices and invoice items once each,
//! with a per-record `Idempotency-Key`, and updates them by the id kept in the ledger.
//!
//! Streams (one table each, rows are Stripe's objects as the pinned version renders them):
//! customers, products, prices, charges, payment_intents, invoices, subscriptions, refunds,
//! balance_transactions, events — one entry each in the stream table (`streams.rs`).
//! Lists are read newest first in `created` windows (see `source.rs` and
//! docs/connectors/stripe.md), with `Stripe-Version` pinned on every request, Connect
//! accounts through `Stripe-Account`, and a client-side rate budget by key mode.
//!
//! ```
//! use dovetail_core::{BuildCx, Source, SourceConnector};
//! use dovetail_stripe::{StripeConfig, StripeSource};
//!
//! let config: StripeConfig = serde_json::from_value(serde_json::json!({
//!     "api_key": "sk_test_example", "streams": ["customers", "charges"]
//! })).unwrap();
//! let source = StripeSource::build(config, &BuildCx::default()).unwrap();
//! let names: Vec<String> = source.streams().into_iter().map(|s| s.name).collect();
//! assert_eq!(names, ["customers", "charges"]);
//! ```
#![warn(missing_docs)]

mod client;
mod config;
mod price;
mod sink;
mod source;
pub mod streams;

pub use client::{ACCOUNT_HEADER, VERSION_HEADER};
pub use config::{Accounts, AllAccounts, DEFAULT_BASE_URL, DEFAULT_STRIPE_VERSION, Mode, StripeConfig};
pub use price::PriceChanges;
pub use sink::{KEY_METADATA, OBJECTS, ProductIds, StripeSink, StripeSinkConfig, create_key, product_id};
pub use source::{ACCOUNT_FIELD, EVENT_RETENTION_SECS, OVERLAP, PAGE_SIZE, StripeSource};

/// The `kind` of the Stripe source in config.
pub const KIND: &str = "stripe";
