//! Pending creates ([`DeliveryStore::record_pending_create`](dovetail_core::DeliveryStore)):
//! one row per key whose create was sent without its destination id being known yet. And
//! the request id of the last write that delivered each key (`write_requests`).

use std::collections::HashMap;

use dovetail_core::state::PendingCreate;
use dovetail_core::{Error, Key};

use crate::PgState;

/// Pending creates in the order of the keys asked.
pub(crate) type Pendings = Vec<Option<PendingCreate>>;

impl PgState {
    /// Insert or replace the pending create of its key.
    pub(crate) async fn pending_record(&self, pipeline: &str, stream: &str, p: &PendingCreate) -> Result<(), Error> {
        let c = self.conn().await?;
        c.execute(
            "INSERT INTO pending_creates (pipeline, stream, key, idempotency_key, since) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (pipeline, stream, key) DO UPDATE SET
               idempotency_key = excluded.idempotency_key, since = excluded.since",
            &[&pipeline, &stream, &p.key.as_str(), &p.idempotency_key, &p.since],
        )
        .await
        .map_err(|e| self.err("recording a pending create", e))?;
        Ok(())
    }

    /// The pending creates of `keys`, in order, read in one query.
    pub(crate) async fn pending_lookup(&self, pipeline: &str, stream: &str, keys: &[Key]) -> Result<Pendings, Error> {
        let c = self.conn().await?;
        let wanted: Vec<&str> = keys.iter().map(Key::as_str).collect();
        let rows = c
            .query(
                "SELECT key, idempotency_key, since FROM pending_creates
                 WHERE pipeline = $1 AND stream = $2 AND key = ANY($3)",
                &[&pipeline, &stream, &wanted],
            )
            .await
            .map_err(|e| self.err("looking up pending creates", e))?;
        let found: HashMap<String, (String, String)> =
            rows.into_iter().map(|r| (r.get(0), (r.get(1), r.get(2)))).collect();
        Ok(keys
            .iter()
            .map(|k| {
                found.get(k.as_str()).map(|(i, s)| PendingCreate {
                    key: k.clone(),
                    idempotency_key: i.clone(),
                    since: s.clone(),
                })
            })
            .collect())
    }

    /// Remove the pending create of `key`; whether there was one.
    pub(crate) async fn pending_clear(&self, pipeline: &str, stream: &str, key: &Key) -> Result<bool, Error> {
        let c = self.conn().await?;
        let n = c
            .execute(
                "DELETE FROM pending_creates WHERE pipeline = $1 AND stream = $2 AND key = $3",
                &[&pipeline, &stream, &key.as_str()],
            )
            .await
            .map_err(|e| self.err("clearing a pending create", e))?;
        Ok(n > 0)
    }

    /// Insert or replace the request id of the write that delivered `key`.
    pub(crate) async fn write_record(
        &self,
        pipeline: &str,
        stream: &str,
        key: &Key,
        request_id: &str,
    ) -> Result<(), Error> {
        let c = self.conn().await?;
        c.execute(
            "INSERT INTO write_requests (pipeline, stream, key, request_id) VALUES ($1, $2, $3, $4)
             ON CONFLICT (pipeline, stream, key) DO UPDATE SET request_id = excluded.request_id",
            &[&pipeline, &stream, &key.as_str(), &request_id],
        )
        .await
        .map_err(|e| self.err("recording a write's request id", e))?;
        Ok(())
    }

    /// The request id of the last write that delivered `key`.
    pub(crate) async fn write_lookup(&self, pipeline: &str, stream: &str, key: &Key) -> Result<Option<String>, Error> {
        let c = self.conn().await?;
        let row = c
            .query_opt(
                "SELECT request_id FROM write_requests WHERE pipeline = $1 AND stream = $2 AND key = $3",
                &[&pipeline, &stream, &key.as_str()],
            )
            .await
            .map_err(|e| self.err("reading a write's request id", e))?;
        Ok(row.map(|r| r.get(0)))
    }
}
