//! `_dovetail_offsets`: each table's last checkpoint, written in the transaction of the
//! batch it passes, with an epoch counting those batches. The epoch travels in the sink's
//! mark (`<table marker>.<epoch>`), which the engine commits to the state with the batch, so
//! at the next start the sink can tell whether it committed batches the state never got (a
//! crash between the two commits) and hand that checkpoint back
//! ([`dovetail_core::Sink::committed_position`]).
//!
//! Under `dovetail worker` the row also keeps the highest lease epoch that wrote the table
//! (`lease_epoch`): a batch carrying a lower one — a worker that stalled past its lease while
//! another took the stream over — is refused in the batch's own transaction, so none of its
//! rows land.

use dovetail_core::Error;
use dovetail_core::state::Checkpoint;
use tokio_postgres::GenericClient;

use crate::error::PgErr;
use crate::ident::qualified;

/// The offsets table.
pub const OFFSETS_TABLE: &str = "_dovetail_offsets";

/// The statement that stores a batch's checkpoint, prepared before the batch's last round
/// trip so that nothing is sent out of order within it ([`dovetail_pg::tx`]).
pub(crate) struct Save {
    statement: tokio_postgres::Statement,
    text: String,
    /// The table's name (the row's key).
    table: String,
    /// `schema.table`, for messages.
    shown: String,
    what: String,
    lease_epoch: Option<i64>,
}

/// Prepare storing `checkpoint` for `table` (a statement the connection keeps prepared: no
/// round trip after the first batch).
pub(crate) async fn prepare(
    c: &deadpool_postgres::Object,
    schema: &str,
    table: &str,
    checkpoint: &Checkpoint,
    lease_epoch: Option<i64>,
) -> Result<Save, Error> {
    let text =
        serde_json::to_string(checkpoint).map_err(|e| Error::internal("cannot encode a checkpoint").with_source(e))?;
    let sql = format!(
        "INSERT INTO {o} AS o (table_name, checkpoint, epoch, lease_epoch) VALUES ($1, $2, 1, $3) \
         ON CONFLICT (table_name) DO UPDATE SET checkpoint = EXCLUDED.checkpoint, epoch = o.epoch + 1, \
           lease_epoch = coalesce(EXCLUDED.lease_epoch, o.lease_epoch) \
         WHERE EXCLUDED.lease_epoch IS NULL OR o.lease_epoch IS NULL OR EXCLUDED.lease_epoch >= o.lease_epoch \
         RETURNING epoch",
        o = qualified(schema, OFFSETS_TABLE)
    );
    let what = format!("storing the checkpoint of table `{schema}.{table}`");
    let statement = c.prepare_cached(&sql).await.map_err(|e| PgErr::new(&what).err(e))?;
    Ok(Save { statement, text, table: table.to_owned(), shown: format!("{schema}.{table}"), what, lease_epoch })
}

impl Save {
    /// Store the checkpoint and step the table's epoch; returns the new epoch. With a lease
    /// epoch lower than the one stored, nothing is stored and the batch is refused — decided
    /// on this statement's answer, so a batch with a lease epoch sends its COMMIT after it.
    pub(crate) async fn run(&self, c: &tokio_postgres::Client) -> Result<i64, Error> {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&self.table, &self.text, &self.lease_epoch];
        match c.query_opt(&self.statement, &params).await.map_err(|e| PgErr::new(&self.what).err(e))? {
            Some(row) => Ok(row.get(0)),
            None => Err(Error::new(
                dovetail_core::ErrorKind::Busy,
                format!(
                    "fenced: table `{}` was written under a newer lease than this batch's (epoch {}); \
                     another worker took the stream over, so nothing of this batch was written",
                    self.shown,
                    self.lease_epoch.unwrap_or_default()
                ),
            )),
        }
    }

    /// Whether the batch is fenced by a lease epoch (decided on [`Save::run`]'s answer).
    pub(crate) fn fenced(&self) -> bool {
        self.lease_epoch.is_some()
    }
}

/// The stored checkpoint and epoch of `table` (none when the offsets table does not exist:
/// this reads, never creates).
pub(crate) async fn load<C: GenericClient>(
    c: &C,
    schema: &str,
    table: &str,
) -> Result<Option<(Checkpoint, i64)>, Error> {
    let what = format!("reading the checkpoint of table `{schema}.{table}`");
    let o = qualified(schema, OFFSETS_TABLE);
    let exists =
        c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&o]).await.map_err(|e| PgErr::new(&what).err(e))?;
    if !exists.get::<_, bool>(0) {
        return Ok(None);
    }
    let sql = format!("SELECT checkpoint, epoch FROM {o} WHERE table_name = $1");
    let Some(row) = c.query_opt(&sql, &[&table]).await.map_err(|e| PgErr::new(&what).err(e))? else { return Ok(None) };
    let text: String = row.get(0);
    let cp = serde_json::from_str(&text).map_err(|e| {
        Error::permanent(format!(
            "the checkpoint stored in `{schema}.{OFFSETS_TABLE}` for table `{table}` is not one dovetail wrote"
        ))
        .with_source(e)
    })?;
    Ok(Some((cp, row.get(1))))
}

/// Forget `table`'s checkpoint (a table made anew holds none of what it passed).
pub(crate) async fn forget<C: GenericClient>(c: &C, schema: &str, table: &str) -> Result<(), Error> {
    let sql = format!("DELETE FROM {} WHERE table_name = $1", qualified(schema, OFFSETS_TABLE));
    c.execute(&sql, &[&table])
        .await
        .map_err(|e| PgErr::new(&format!("forgetting the checkpoint of table `{schema}.{table}`")).err(e))?;
    Ok(())
}

/// A mark: the table marker and the epoch.
pub(crate) fn mark(marker: &str, epoch: i64) -> String {
    format!("{marker}.{epoch}")
}

/// A mark read back: the table marker and the epoch (0 when it has none).
pub(crate) fn parse_mark(mark: &str) -> (&str, i64) {
    match mark.split_once('.') {
        Some((m, e)) => (m, e.parse().unwrap_or(0)),
        None => (mark, 0),
    }
}
