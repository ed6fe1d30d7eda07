//! A sink that takes two writes of a stream at once (`Sink::writes_in_flight`): the engine
//! hands it batch n+1 while batch n is being written, and when batch n fails, batch n+1 (which
//! such a sink fails, uncommitted) is dealt with after it, in order: nothing lost, nothing
//! written twice, commits in batch order.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dovetail_core::testing::{MemorySource, MemoryState};
use dovetail_core::{
    Batch, Cx, DeliveryStore, Error, ErrorKind, Pipeline, RunOptions, RunOutcome, Sink, SinkStream, StreamOptions,
    WriteReport,
};
use serde_json::{Value, json};
use tokio::sync::watch;

/// What the sink saw.
#[derive(Default)]
struct Seen {
    rows: BTreeMap<u64, Value>,
    /// Every record written, in commit order (a record twice: written twice).
    committed: Vec<u64>,
    running: usize,
    /// The most writes running at once.
    most: usize,
    /// The batch (by its first id) whose next write fails, and how.
    fail: Option<(u64, ErrorKind)>,
    /// The outcome of the write started last (`Some(committed)` once known).
    last: Option<watch::Receiver<Option<bool>>>,
}

/// Commits a write only after the write before it committed (when the engine started it
/// while that one ran); fails it, uncommitted, when that one failed.
#[derive(Clone, Default)]
struct TwoAtOnce(Arc<Mutex<Seen>>);

impl TwoAtOnce {
    fn seen<T>(&self, f: impl FnOnce(&mut Seen) -> T) -> T {
        f(&mut self.0.lock().unwrap())
    }
}

#[async_trait]
impl Sink for TwoAtOnce {
    fn kind(&self) -> &'static str {
        "two-at-once"
    }
    async fn check(&self, _cx: &Cx) -> Result<(), Error> {
        Ok(())
    }
    async fn open(&self, _stream: &SinkStream, _cx: &Cx) -> Result<(), Error> {
        Ok(())
    }
    fn writes_in_flight(&self) -> usize {
        2
    }
    async fn write(&self, batch: Batch, _cx: &Cx) -> Result<WriteReport, Error> {
        let ids: Vec<u64> = batch.records.iter().map(|r| r.data["id"].as_u64().unwrap()).collect();
        let (done, outcome) = watch::channel(None);
        let before = self.seen(|s| {
            s.running += 1;
            s.most = s.most.max(s.running);
            s.last.replace(outcome)
        });
        // Long enough for the engine to start the next batch meanwhile.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let fail = self.seen(|s| s.fail.take_if(|(first, _)| *first == ids[0]));
        let result = match (fail, before.filter(|_| batch.overlaps)) {
            (Some((_, kind)), _) => Err(Error::new(kind, format!("batch {} refused", ids[0]))),
            (None, Some(mut before)) => match before.wait_for(Option::is_some).await.map(|v| *v) {
                Ok(Some(true)) => Ok(()),
                _ => Err(Error::new(ErrorKind::Unavailable, "the batch before failed: not committed")),
            },
            (None, None) => Ok(()),
        };
        self.seen(|s| {
            s.running -= 1;
            if result.is_ok() {
                for (id, r) in ids.iter().zip(batch.records.iter()) {
                    s.rows.insert(*id, r.data.clone());
                }
                s.committed.extend(&ids);
            }
        });
        done.send_replace(Some(result.is_ok()));
        result.map(|()| WriteReport { written: ids.len() as u64, ..Default::default() })
    }
}

fn people(n: u64) -> Vec<Value> {
    (1..=n).map(|i| json!({"id": i, "name": format!("p{i}")})).collect()
}

fn pipeline(sink: &TwoAtOnce, state: &MemoryState) -> Pipeline {
    Pipeline::builder("p")
        .source(MemorySource::new("s", &["id"], people(50)))
        .sink(sink.clone())
        .state(state.clone())
        .stream("s", StreamOptions::default())
        .batch_size(5)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_batch_failing_an_outage_with_the_next_in_flight_sends_both_to_the_outbox_in_order() {
    let (sink, state) = (TwoAtOnce::default(), MemoryState::default());
    let p = pipeline(&sink, &state);
    // The fourth batch (ids 16–20) finds the sink down; the fifth is in flight meanwhile.
    sink.seen(|s| s.fail = Some((16, ErrorKind::Unavailable)));
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!(r.outcome, RunOutcome::Failed);
    let s = &r.streams["s"];
    assert_eq!((s.written, s.outbox_queued), (15, 35), "{s:?}");
    assert!(sink.seen(|s| s.most) >= 2, "two writes ran at once");
    assert_eq!(sink.seen(|s| s.committed.clone()), (1..=15).collect::<Vec<_>>());
    let queued: Vec<u64> =
        state.outbox("p", "s", 100).await.unwrap().iter().map(|e| e.data["id"].as_u64().unwrap()).collect();
    assert_eq!(queued, (16..=50).collect::<Vec<_>>(), "the failed batch first, then the one in flight, in order");

    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
    assert_eq!(r.streams["s"].outbox_delivered, 35);
    assert_eq!(sink.seen(|s| s.committed.clone()), (1..=50).collect::<Vec<_>>(), "each once, in order");
    assert_eq!(sink.seen(|s| s.rows.len()), 50);
}

#[tokio::test]
async fn a_batch_refused_with_the_next_in_flight_stops_the_stream_before_both_and_a_rerun_writes_them_once() {
    let (sink, state) = (TwoAtOnce::default(), MemoryState::default());
    let p = pipeline(&sink, &state);
    sink.seen(|s| s.fail = Some((16, ErrorKind::Permanent)));
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!(r.outcome, RunOutcome::Failed);
    assert!(r.streams["s"].error.as_ref().unwrap().contains("batch 16 refused"), "{:?}", r.streams["s"]);
    assert!(sink.seen(|s| s.most) >= 2, "two writes ran at once");
    assert_eq!(sink.seen(|s| s.committed.clone()), (1..=15).collect::<Vec<_>>(), "nothing after the failure");
    let cp = state.checkpoint("p", "s").await.unwrap().unwrap();
    assert_eq!(cp.position, Some(json!({"offset": 15})), "the checkpoint is the last committed batch's");

    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
    assert_eq!(sink.seen(|s| s.committed.clone()), (1..=50).collect::<Vec<_>>(), "each once, in order");
}
