//! dovetail-postgres: a PostgreSQL sink (and a table source) — the sink writes each stream to a table of one schema,
//! upserting by primary key (`kind = "postgres"`). docs/connectors/postgres.md has the
//! full reference.
//!
//! - **Fast path.** Each batch is one transaction: its records are checked and converted,
//!   the last record of each key kept, sent with `COPY … FROM STDIN (FORMAT binary)` into a
//!   temporary table, and merged with one `INSERT … SELECT … ON CONFLICT (key) DO UPDATE
//!   … WHERE (…) IS DISTINCT FROM (…)`: an unchanged row is not touched.
//! - **Typed tables** from the stream's schema ([`types`](crate::types) has the table):
//!   `bigint`, exact `numeric`, `double precision` only where the schema says `float` or
//!   `double`, `text`, `boolean`, `jsonb`, `timestamptz` for `date-time` (the instant, not
//!   the offset written, to the microsecond). New fields become columns
//!   (`ALTER TABLE … ADD COLUMN`, logged); a value that does not fit its column is
//!   `column_type` drift, written as NULL or left out as the batch's `ColumnDrift` says.
//! - **Untrusted names.** Every identifier is quoted; names over 63 bytes are shortened to
//!   a prefix and a hash, the field of each column kept in [`NOTES_TABLE`] and the stream of
//!   each table in [`TABLES_TABLE`]; a record that
//!   would need more than 1,600 columns, or holds a NUL character (unless `nul = "strip"`)
//!   is dead-lettered naming why.
//! - **One commit for rows and position.** The batch's checkpoint goes into
//!   [`OFFSETS_TABLE`] in the same transaction; after a crash between that commit and the
//!   state's, [`Sink::committed_position`](dovetail_core::Sink::committed_position) hands it
//!   back and the batch is not written again.
//! - **Reconnects.** A batch whose connection dies (a server restart) is written again on a
//!   fresh connection with a backoff, for up to 30 s; after an unanswered `COMMIT` the
//!   offsets row tells whether it landed, so it is never applied twice.
//! - **Lost tables.** A table's comment holds a creation marker: a table dropped or made
//!   again makes the engine write the stream again.
//!
//! - **The source** ([`PostgresSource`], the same `kind` under `[source]`): one table or query
//!   read by keyset pages on (cursor, key), or in full by key; values converted exactly
//!   (numeric, jsonb, timestamptz in RFC 3339).
//!
//! ```no_run
//! use dovetail_core::{BuildCx, SinkConnector};
//! use dovetail_postgres::{PostgresSink, PostgresSinkConfig};
//!
//! let sink = PostgresSink::build(PostgresSinkConfig::new("postgres://loader@localhost/warehouse"), &BuildCx::default())?;
//! # Ok::<(), dovetail_core::Error>(())
//! ```

#![warn(missing_docs)]

mod check;
mod config;
mod error;
mod ident;
mod offsets;
mod sink;
mod source;
mod table;
mod turn;
mod types;
mod write;

pub use config::{NulPolicy, PostgresSinkConfig};
pub use ident::SYNCED_AT;
pub use offsets::OFFSETS_TABLE;
pub use sink::PostgresSink;
pub use source::{PostgresSource, PostgresSourceConfig};
pub use table::{NOTES_TABLE, TABLES_TABLE};

/// The `kind` that selects this sink, and this source, in pipeline config.
pub const KIND: &str = "postgres";
