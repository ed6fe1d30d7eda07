//! Commits in batch order with two batches of a stream in flight
//! ([`dovetail_core::Sink::writes_in_flight`]): batch n+1 begins once every statement of
//! batch n was answered (n holds every lock it takes: only its COMMIT is left; when n made
//! or widened the table, once n committed: until then n+1 cannot see it), is staged,
//! copied and merged on a connection of its own while n's COMMIT is flushing, and sends its
//! COMMIT only once n's was answered OK. So n never waits for n+1, and a row n+1 waits on
//! (the offsets row, a key of both) is freed by n's COMMIT or rollback. When n's try fails
//! (its COMMIT refused or unanswered), n+1 rolls back — its offsets row would claim n's
//! checkpoint — and waits for n's write to end: it tries again after n committed, and fails
//! when n failed.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use dovetail_core::{Error, ErrorKind};
use tokio::sync::watch;

/// Where a stream's write is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// Its first try is running.
    Open,
    /// Its first try sent every statement and had them answered: only its COMMIT is left.
    Committing,
    /// Its first try committed.
    Clean,
    /// A try failed; it may try again.
    Broken,
    /// It ended after a failed try: committed (`true`) or not.
    Ended(bool),
}

/// The latest write of each stream.
#[derive(Default)]
pub(crate) struct Turns(Mutex<HashMap<String, watch::Receiver<Turn>>>);

impl Turns {
    /// A write of `stream` begins: its own turn, and the gate of the write before it when
    /// the engine started this one while that one was running (`overlaps`).
    pub(crate) fn take(&self, stream: &str, overlaps: bool) -> (Mine, Gate) {
        let (tx, rx) = watch::channel(Turn::Open);
        let prev = self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(stream.to_owned(), rx);
        (Mine { tx, broken: false }, Gate { prev: prev.filter(|_| overlaps) })
    }
}

/// A write's own turn, which the next write's gate watches. Dropped unfinished (a cancelled
/// write), it counts as failed.
pub(crate) struct Mine {
    tx: watch::Sender<Turn>,
    broken: bool,
}

impl Mine {
    /// Every statement of the try was answered; its COMMIT follows.
    pub(crate) fn committing(&self) {
        self.tx.send_if_modified(|t| {
            let first = *t == Turn::Open;
            if first {
                *t = Turn::Committing;
            }
            first
        });
    }

    /// A try failed: the next write must not commit after it.
    pub(crate) fn broken(&mut self) {
        self.broken = true;
        self.tx.send_replace(Turn::Broken);
    }

    /// The write committed.
    pub(crate) fn committed(&self) {
        self.tx.send_replace(if self.broken { Turn::Ended(true) } else { Turn::Clean });
    }
}

impl Drop for Mine {
    fn drop(&mut self) {
        self.tx.send_if_modified(|t| match t {
            Turn::Open | Turn::Committing | Turn::Broken => {
                *t = Turn::Ended(false);
                true
            }
            _ => false,
        });
    }
}

/// What a write waits for before its COMMIT: the write before it (none when that one had
/// been answered when this one started).
pub(crate) struct Gate {
    prev: Option<watch::Receiver<Turn>>,
}

impl Gate {
    /// Before a try begins: wait until the write before has only its COMMIT left (or ended;
    /// when it failed a try, until it ended, `Err` when it was not written).
    pub(crate) async fn begin(&mut self) -> Result<(), Error> {
        let Some(prev) = &mut self.prev else { return Ok(()) };
        let turn = prev.wait_for(|t| *t != Turn::Open).await.map(|t| *t).unwrap_or(Turn::Ended(false));
        match turn {
            Turn::Committing | Turn::Clean => Ok(()),
            _ => self.settle().await,
        }
    }

    /// Before the COMMIT: wait until the write before committed on its first try; `Err`
    /// (send no COMMIT) when it did not.
    pub(crate) async fn wait(&self) -> Result<(), Error> {
        let Some(prev) = &self.prev else { return Ok(()) };
        let mut prev = prev.clone();
        match prev.wait_for(|t| !matches!(t, Turn::Open | Turn::Committing)).await.map(|t| *t) {
            Ok(Turn::Clean) => Ok(()),
            _ => Err(gap("its COMMIT failed")),
        }
    }

    /// Whether the write before failed a try: then this one's failure is that gap's.
    pub(crate) fn broken(&self) -> bool {
        self.prev.as_ref().is_some_and(|p| !matches!(*p.borrow(), Turn::Open | Turn::Committing | Turn::Clean))
    }

    /// Wait for the write before to end. Committed: the gate is open from now on. Not
    /// committed: `Err`, and this batch is not written either.
    pub(crate) async fn settle(&mut self) -> Result<(), Error> {
        let Some(prev) = &mut self.prev else { return Ok(()) };
        match prev.wait_for(|t| matches!(t, Turn::Clean | Turn::Ended(_))).await.map(|t| *t) {
            Ok(Turn::Clean | Turn::Ended(true)) => {
                self.prev = None;
                Ok(())
            }
            _ => Err(gap("it was not written")),
        }
    }
}

/// The error of a batch not committed because the one before it was not (yet).
fn gap(why: &str) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!(
            "postgres sink: the batch was not committed: the batch before it was in flight and {why}, \
             and this batch's checkpoint would have passed it"
        ),
    )
}
