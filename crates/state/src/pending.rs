//! Pending creates ([`DeliveryStore::record_pending_create`](dovetail_core::DeliveryStore)):
//! one row per key whose create was sent without its destination id being known yet. And
//! the request id of the last write that delivered each key (`write_requests`).

use dovetail_core::state::PendingCreate;
use dovetail_core::{Error, Key};
use rusqlite::{OptionalExtension, params};

use crate::Db;
use crate::error::DbResultExt;

/// Insert or replace the pending create of its key.
pub(crate) fn record(db: &mut Db, pipeline: &str, stream: &str, p: &PendingCreate) -> Result<(), Error> {
    db.conn
        .prepare_cached(
            "INSERT INTO pending_creates (pipeline, stream, key, idempotency_key, since) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (pipeline, stream, key) DO UPDATE SET
               idempotency_key = excluded.idempotency_key, since = excluded.since",
        )
        .and_then(|mut st| st.execute(params![pipeline, stream, p.key.as_str(), p.idempotency_key, p.since]))
        .op("recording a pending create")?;
    Ok(())
}

/// The pending creates of `keys`, in order.
pub(crate) fn lookup(
    db: &mut Db,
    pipeline: &str,
    stream: &str,
    keys: &[Key],
) -> Result<Vec<Option<PendingCreate>>, Error> {
    let mut st = db
        .conn
        .prepare_cached(
            "SELECT idempotency_key, since FROM pending_creates WHERE pipeline = ?1 AND stream = ?2 AND key = ?3",
        )
        .op("preparing the pending-create lookup")?;
    keys.iter()
        .map(|k| {
            st.query_row(params![pipeline, stream, k.as_str()], |r| {
                Ok(PendingCreate { key: k.clone(), idempotency_key: r.get(0)?, since: r.get(1)? })
            })
            .optional()
            .op("looking up a pending create")
        })
        .collect()
}

/// Remove the pending create of `key`; whether there was one.
pub(crate) fn clear(db: &mut Db, pipeline: &str, stream: &str, key: &Key) -> Result<bool, Error> {
    let n = db
        .conn
        .prepare_cached("DELETE FROM pending_creates WHERE pipeline = ?1 AND stream = ?2 AND key = ?3")
        .and_then(|mut st| st.execute(params![pipeline, stream, key.as_str()]))
        .op("clearing a pending create")?;
    Ok(n > 0)
}

/// Insert or replace the request id of the write that delivered `key`.
pub(crate) fn record_write(
    db: &mut Db,
    pipeline: &str,
    stream: &str,
    key: &Key,
    request_id: &str,
) -> Result<(), Error> {
    db.conn
        .prepare_cached(
            "INSERT INTO write_requests (pipeline, stream, key, request_id) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (pipeline, stream, key) DO UPDATE SET request_id = excluded.request_id",
        )
        .and_then(|mut st| st.execute(params![pipeline, stream, key.as_str(), request_id]))
        .op("recording a write's request id")?;
    Ok(())
}

/// The request id of the last write that delivered `key`.
pub(crate) fn write_request(db: &mut Db, pipeline: &str, stream: &str, key: &Key) -> Result<Option<String>, Error> {
    db.conn
        .prepare_cached("SELECT request_id FROM write_requests WHERE pipeline = ?1 AND stream = ?2 AND key = ?3")
        .and_then(|mut st| st.query_row(params![pipeline, stream, key.as_str()], |r| r.get(0)).optional())
        .op("reading a write's request id")
}
