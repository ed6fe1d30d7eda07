//! dovetail-sqlite: a SQLite sink that writes each stream to a table, upserting by
//! primary key.
//!
//! - **Tables.** [`Sink::open`](dovetail_core::Sink::open) creates the stream's table when
//!   it is missing: columns from the stream schema's top-level `properties` when there is a
//!   schema, else from the fields of the first batch's records that can be written (see
//!   Rejects). Key columns come first, then
//!   the other fields sorted by name, then `_synced_at` (RFC 3339 time of the write) and,
//!   for streams whose delete mode is `soft_delete`, the soft-delete column
//!   (`_deleted_at` by default). `PRIMARY KEY` is the stream's key. A batch carrying a
//!   field the table lacks adds the column (`ALTER TABLE ADD COLUMN`); older rows read NULL.
//! - **Idempotent writes.** Each batch is one transaction of
//!   `INSERT .. ON CONFLICT (key) DO UPDATE SET` every column: replaying a batch leaves the
//!   table as it was. A record is the full row, so a field it lacks is set to NULL, and a
//!   write clears the soft-delete column.
//! - **Exact numbers.** SQLite's INTEGER/REAL/NUMERIC affinities turn numeric text into
//!   numbers lossily, so columns that may hold numbers have no declared type (BLOB affinity
//!   keeps values exactly as bound). Integers that fit i64 are bound as INTEGER; other
//!   numbers as REAL only when formatting the f64 gives back exactly the same decimal text,
//!   else as TEXT holding the exact digits (`12345678901234567890`,
//!   `0.123456789012345678901234567891`). Strings go to TEXT, booleans to INTEGER 0/1,
//!   objects and arrays to TEXT holding compact JSON, null to NULL. The crate README has the full table.
//! - **Deletes.** `delete` removes rows by key, or with `soft_delete` sets the soft-delete
//!   column (and `_synced_at`) on rows not already soft-deleted.
//! - **Column drift.** Each column remembers the JSON types it was made for (noted in
//!   [`NOTES_TABLE`]); a value of another type is `column_type` drift, reported in
//!   `WriteReport::drift` and written or left out as the batch's `ColumnDrift` says.
//! - **Rejects.** A record that is not an object, lacks a key field, carries a field
//!   whose name clashes with a column or another of its fields (SQLite names ignore case),
//!   needs more columns than SQLite allows a table, or holds a value or row over SQLite's
//!   size limit is reported in `WriteReport::rejected`, naming the limit; the rest of the
//!   batch is written. Records are checked before their new fields become columns, so a
//!   refused record leaves no column behind.
//!
//! ```no_run
//! use dovetail_core::{BuildCx, SinkConnector};
//! use dovetail_sqlite::{SqliteConfig, SqliteSink};
//!
//! let sink = SqliteSink::build(SqliteConfig::new("out/warehouse.db"), &BuildCx::default())?;
//! # Ok::<(), dovetail_core::Error>(())
//! ```

#![warn(missing_docs)]

mod admit;
mod bind;
mod column;
mod config;
mod error;
mod marker;
mod notes;
mod probe;
mod sink;
mod table;
mod write;

pub use column::SYNCED_AT;
pub use config::SqliteConfig;
pub use notes::NOTES_TABLE;
pub use sink::SqliteSink;

/// The `kind` that selects this sink in pipeline config.
pub const KIND: &str = "sqlite";
