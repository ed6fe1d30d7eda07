//! The committer: the one state transaction per batch, in the order the writer queued them.
//!
//! The writer queues a batch's [`Commit`] (ledger rows, dead letters, stories, outbox
//! changes and the batch's checkpoint) only after the sink acknowledged the batch or the
//! outbox took it, so a checkpoint committed here is never ahead of what the sink holds.
//! Commits run on their own task, a bounded channel behind the sink, so the sink never waits
//! for the state store. The first failed commit ends the task: nothing after it is
//! committed, and the writer stops when its next send finds the channel closed.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::failpoint;
use crate::state::{Commit, DeliveryStore};

/// Commits a stream's batches in order until the writer is done or a commit fails.
pub(super) struct Committer {
    /// The store every commit goes to.
    pub state: Arc<dyn DeliveryStore>,
    /// The writer's commits, in batch order.
    pub commits: mpsc::Receiver<Commit>,
}

impl Committer {
    /// Start committing. The task ends when the writer drops its sender, with the time spent
    /// committing (ns), or with the first commit's error.
    pub fn spawn(self) -> JoinHandle<Result<u128, Error>> {
        // In the stream's span, so what the stage logs (HTTP exchanges included) names the
        // pipeline, run and stream.
        tokio::spawn(tracing::Instrument::in_current_span(self.run()))
    }

    async fn run(mut self) -> Result<u128, Error> {
        let mut ns = 0u128;
        while let Some(commit) = self.commits.recv().await {
            let started = Instant::now();
            self.state.commit(commit).await?;
            failpoint::hit("after_checkpoint");
            ns += started.elapsed().as_nanos();
        }
        Ok(ns)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use serde_json::Value;

    use super::*;
    use crate::record::{ContentHash, Key};
    use crate::state::{Checkpoint, OutboxEntry, PausedStream, RunLock};

    /// Keeps the pass of every commit it is asked for, in call order; the commit of pass
    /// `fail_at` fails. The committer calls nothing else.
    struct Recorder {
        attempts: Mutex<Vec<u64>>,
        fail_at: u64,
    }

    #[async_trait]
    impl DeliveryStore for Recorder {
        async fn commit(&self, commit: Commit) -> Result<(), Error> {
            self.attempts.lock().unwrap().push(commit.pass);
            if commit.pass == self.fail_at {
                return Err(Error::new(crate::error::ErrorKind::Unavailable, "the state store is gone"));
            }
            Ok(())
        }
        async fn lock(&self, _: &str) -> Result<Box<dyn RunLock>, Error> {
            unreachable!()
        }
        async fn checkpoint(&self, _: &str, _: &str) -> Result<Option<Checkpoint>, Error> {
            unreachable!()
        }
        async fn reset(&self, _: &str, _: Option<&str>) -> Result<u64, Error> {
            unreachable!()
        }
        async fn ledger_lookup(&self, _: &str, _: &str, _: &[Key]) -> Result<Vec<Option<ContentHash>>, Error> {
            unreachable!()
        }
        async fn outbox(&self, _: &str, _: &str, _: usize) -> Result<Vec<OutboxEntry>, Error> {
            unreachable!()
        }
        async fn outbox_len(&self, _: &str, _: &str) -> Result<u64, Error> {
            unreachable!()
        }
        async fn outbox_depths(&self, _: Option<&str>) -> Result<Vec<(String, String, u64)>, Error> {
            unreachable!()
        }
        async fn pause(&self, _: &PausedStream) -> Result<(), Error> {
            unreachable!()
        }
        async fn unpause(&self, _: &str, _: &str) -> Result<bool, Error> {
            unreachable!()
        }
        async fn paused(&self, _: Option<&str>) -> Result<Vec<PausedStream>, Error> {
            unreachable!()
        }
        async fn ledger_dest_ids(&self, _: &str, _: &str, _: &[Key]) -> Result<Vec<Option<String>>, Error> {
            unreachable!()
        }
        async fn stale_keys(&self, _: &str, _: &str, _: u64, _: usize) -> Result<Vec<Key>, Error> {
            unreachable!()
        }
        async fn sink_mark(&self, _: &str, _: &str) -> Result<Option<String>, Error> {
            unreachable!()
        }
        async fn forget_ledger(&self, _: &str, _: Option<&str>, _: bool) -> Result<u64, Error> {
            unreachable!()
        }
        async fn baseline(&self, _: &str, _: &str) -> Result<Option<Value>, Error> {
            unreachable!()
        }
        async fn save_baseline(&self, _: &str, _: &str, _: &Value) -> Result<(), Error> {
            unreachable!()
        }
    }

    /// Commits are applied in the order queued; the first failure ends the committer with
    /// that error, no later commit is attempted, and the writer's next send fails.
    #[tokio::test]
    async fn commits_in_order_and_stops_at_the_first_failure() {
        let state = Arc::new(Recorder { attempts: Mutex::new(Vec::new()), fail_at: 3 });
        let (tx, commits) = mpsc::channel(2);
        let task = Committer { state: state.clone(), commits }.spawn();
        for pass in 1..=5 {
            // Sends after the failure find the channel closed; that is what stops the writer.
            let _ = tx.send(Commit { pass, ..Default::default() }).await;
        }
        // The sender is still held: the task must end by itself. The timeout only turns a
        // committer that keeps waiting into a failure instead of a hung test.
        let ended = tokio::time::timeout(std::time::Duration::from_secs(30), task).await;
        let err = ended.expect("the committer ends at the failure").unwrap().expect_err("the third commit fails");
        assert!(err.report().contains("the state store is gone"), "{}", err.report());
        assert_eq!(*state.attempts.lock().unwrap(), [1, 2, 3]);
        assert!(tx.send(Commit { pass: 6, ..Default::default() }).await.is_err(), "the channel is closed");

        // Without a failure every commit lands, in order, and the task ends with the sender.
        let state = Arc::new(Recorder { attempts: Mutex::new(Vec::new()), fail_at: 0 });
        let (tx, commits) = mpsc::channel(2);
        let task = Committer { state: state.clone(), commits }.spawn();
        for pass in 1..=5 {
            tx.send(Commit { pass, ..Default::default() }).await.unwrap();
        }
        drop(tx);
        task.await.unwrap().unwrap();
        assert_eq!(*state.attempts.lock().unwrap(), [1, 2, 3, 4, 5]);
    }
}
