//! Commits in batch order with two batches of a stream in flight
//! ([`dovetail_core::Sink::writes_in_flight`]), on two connections: batch n+1 begins once n
//! knows its table unchanged (when n made or widened the table, once n committed: until then
//! n+1 cannot see it) and converts and copies its rows into its stage while n merges — no
//! lock n needs; it sends its merge and offsets row once every statement of n was answered
//! (n holds every lock it takes: only its COMMIT is left), and its COMMIT only once n's was
//! answered OK. So n never waits for n+1, and a row n+1 waits on (the offsets row, a key of
//! both) is freed by n's COMMIT or rollback. When n's try fails
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
    /// Its first try found the table as known (no DDL): the next write may stage its rows.
    Shaped,
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
    /// The try changes nothing of the table: the next write may begin and stage its rows.
    pub(crate) fn shaped(&self) {
        self.step(Turn::Shaped);
    }

    /// Every statement of the try was answered; its COMMIT follows.
    pub(crate) fn committing(&self) {
        self.step(Turn::Committing);
    }

    /// Move on to `to` during the first try (a later try stays `Broken`).
    fn step(&self, to: Turn) {
        self.tx.send_if_modified(|t| {
            let first = matches!(t, Turn::Open | Turn::Shaped);
            if first {
                *t = to;
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
            Turn::Open | Turn::Shaped | Turn::Committing | Turn::Broken => {
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
    /// Before a try begins: wait until the write before knows its table unchanged (or
    /// ended; when it failed a try, until it ended, `Err` when it was not written).
    pub(crate) async fn begin(&mut self) -> Result<(), Error> {
        let Some(prev) = &mut self.prev else { return Ok(()) };
        let turn = prev.wait_for(|t| *t != Turn::Open).await.map(|t| *t).unwrap_or(Turn::Ended(false));
        match turn {
            Turn::Shaped | Turn::Committing | Turn::Clean => Ok(()),
            _ => self.settle().await,
        }
    }

    /// Before the merge and the offsets row (which lock rows): wait until the write before
    /// holds every lock it takes; `Err` (send neither) when its try failed.
    pub(crate) async fn locked(&self) -> Result<(), Error> {
        self.past(&[Turn::Open, Turn::Shaped], "its statements failed").await
    }

    /// Before the COMMIT: wait until the write before committed on its first try; `Err`
    /// (send no COMMIT) when it did not.
    pub(crate) async fn wait(&self) -> Result<(), Error> {
        self.past(&[Turn::Open, Turn::Shaped, Turn::Committing], "its COMMIT failed").await
    }

    /// Wait until the write before is past `before`: `Ok` when it got there on its first try.
    async fn past(&self, before: &[Turn], why: &str) -> Result<(), Error> {
        let Some(prev) = &self.prev else { return Ok(()) };
        let mut prev = prev.clone();
        match prev.wait_for(|t| !before.contains(t)).await.map(|t| *t) {
            Ok(Turn::Shaped | Turn::Committing | Turn::Clean) => Ok(()),
            _ => Err(gap(why)),
        }
    }

    /// Whether the write before failed a try: then this one's failure is that gap's.
    pub(crate) fn broken(&self) -> bool {
        self.prev.as_ref().is_some_and(|p| matches!(*p.borrow(), Turn::Broken | Turn::Ended(_)))
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
