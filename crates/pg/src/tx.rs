//! A transaction opened and closed by statements sent in the pipeline with its others
//! (docs/performance.md: a transaction waits on round trips, so BEGIN and COMMIT take none
//! of their own). tokio-postgres's `Transaction` awaits its BEGIN alone, hence this guard,
//! used by the state store's commit and by the postgres sink's batches.
//!
//! The rules that make pipelining a transaction safe: COMMIT is sent only once every
//! statement before it was sent (one refused before sending, by its parameters, must not
//! leave the others to commit without it); a statement the server refuses aborts the
//! transaction, so a COMMIT sent after it rolls back; and a guard dropped while the
//! transaction may be open queues a ROLLBACK.

use std::future::Future;
use std::ops::Deref;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Waker};

/// A connection that reaches a tokio-postgres client through two derefs, as a
/// deadpool-postgres pooled object does.
pub trait Connection {
    /// The driver's client.
    fn client(&self) -> &tokio_postgres::Client;
}

impl<C> Connection for C
where
    C: Deref,
    C::Target: Deref<Target = tokio_postgres::Client>,
{
    fn client(&self) -> &tokio_postgres::Client {
        self
    }
}

/// A (pooled) connection inside a transaction this process opened by hand. Until the
/// transaction is known to end ([`TxConn::commit`] sent, [`TxConn::rollback`] answered),
/// dropping the guard (an error, a cancelled future) queues a ROLLBACK on the connection,
/// as tokio-postgres's own `Transaction` does: requests run in order, so whoever takes the
/// connection from the pool next finds no transaction open.
pub struct TxConn<C: Connection> {
    conn: C,
    open: AtomicBool,
}

impl<C: Connection> TxConn<C> {
    /// `conn`, about to be sent a BEGIN ([`TxConn::begin`], or in a batch of statements).
    pub fn new(conn: C) -> Self {
        TxConn { conn, open: AtomicBool::new(true) }
    }

    /// The driver's client, for statements of the transaction.
    pub fn client(&self) -> &tokio_postgres::Client {
        self.conn.client()
    }

    /// Whether the transaction may still be open.
    pub fn is_open(&self) -> bool {
        self.open.load(Relaxed)
    }

    /// BEGIN; polled together with the transaction's first statements, it goes out with them.
    pub async fn begin(&self) -> Result<(), tokio_postgres::Error> {
        self.conn.client().batch_execute("BEGIN").await
    }

    /// COMMIT. Once it is sent the transaction ends whatever happens: committed, or rolled
    /// back when a statement before it failed (the server then answers `ROLLBACK`, not an
    /// error: the caller must look at the statements' own results).
    pub async fn commit(&self) -> Result<(), tokio_postgres::Error> {
        self.open.store(false, Relaxed);
        self.conn.client().batch_execute("COMMIT").await
    }

    /// Roll back and wait for it (the connection is used again right after).
    pub async fn rollback(&self) {
        if self.conn.client().batch_execute("ROLLBACK").await.is_ok() {
            self.open.store(false, Relaxed);
        }
    }
}

impl<C: Connection> Deref for TxConn<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.conn
    }
}

impl<C: Connection> Drop for TxConn<C> {
    fn drop(&mut self) {
        if self.is_open() {
            // The first poll queues the message; its answer is not waited for. On a closed
            // connection this fails, and the pool discards the connection on its next check.
            let mut rollback = std::pin::pin!(self.conn.client().batch_execute("ROLLBACK"));
            let _ = rollback.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        }
    }
}
