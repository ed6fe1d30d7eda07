//! A commit's transaction, opened and closed by statements sent in the pipeline with the
//! commit's own (docs/performance.md: a commit waits on round trips, so BEGIN and COMMIT
//! take none of their own). tokio-postgres's `Transaction` awaits its BEGIN alone, hence this
//! guard instead.

use std::future::Future;
use std::ops::Deref;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Waker};

use crate::Conn;

/// A pooled connection inside a transaction this process opened by hand. Until the
/// transaction is known to end ([`TxConn::commit`] sent, [`TxConn::rollback`] answered),
/// dropping the guard (an error, a cancelled commit) queues a ROLLBACK on the connection,
/// as tokio-postgres's own `Transaction` does: requests run in order, so whoever takes the
/// connection from the pool next finds no transaction open.
pub(crate) struct TxConn {
    conn: Conn,
    open: AtomicBool,
}

impl TxConn {
    /// `conn`, about to be sent a BEGIN.
    pub(crate) fn new(conn: Conn) -> TxConn {
        TxConn { conn, open: AtomicBool::new(true) }
    }

    /// Whether the transaction may still be open.
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Relaxed)
    }

    /// COMMIT. Once it is sent the transaction ends whatever happens: committed, or rolled
    /// back when a statement before it failed.
    pub(crate) async fn commit(&self) -> Result<(), tokio_postgres::Error> {
        self.open.store(false, Relaxed);
        self.conn.batch_execute("COMMIT").await
    }

    /// Roll back and wait for it (the connection is used again right after).
    pub(crate) async fn rollback(&self) {
        if self.conn.batch_execute("ROLLBACK").await.is_ok() {
            self.open.store(false, Relaxed);
        }
    }
}

impl Deref for TxConn {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl Drop for TxConn {
    fn drop(&mut self) {
        if self.is_open() {
            // The first poll queues the message; its answer is not waited for. On a closed
            // connection this fails, and the pool discards the connection on its next check.
            let mut rollback = std::pin::pin!(self.conn.batch_execute("ROLLBACK"));
            let _ = rollback.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        }
    }
}
