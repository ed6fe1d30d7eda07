//! The writes of one stream that run at once ([`crate::connector::Sink::writes_in_flight`]),
//! answered in the order they started. Every poll polls them front to back, so a write is
//! polled before any later one starts and the sink sees them begin in batch order.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;
use std::time::Instant;

use crate::connector::WriteReport;
use crate::error::Error;

/// A sink's write, started and not awaited.
pub(super) type WriteFuture<'a> = Pin<Box<dyn Future<Output = Result<WriteReport, Error>> + Send + 'a>>;

/// A write's answer, with the sink's mark taken the moment it came.
pub(super) type Answer = (Result<WriteReport, Error>, Option<String>);

/// One write in flight, with what its commit is made of once it answers.
struct Flying<'a, T> {
    staged: T,
    write: WriteFuture<'a>,
    answer: Option<Answer>,
}

/// Writes in flight, oldest first.
pub(super) struct Flight<'a, T> {
    queue: VecDeque<Flying<'a, T>>,
    /// Since when a write has been running: the stream's write time counts the wall time
    /// with any write in flight, not the sum of overlapping writes.
    busy_since: Option<Instant>,
}

impl<'a, T> Flight<'a, T> {
    /// No write in flight.
    pub fn new() -> Self {
        Flight { queue: VecDeque::new(), busy_since: None }
    }

    /// Writes in flight.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no write is in flight.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Add a started write behind the others.
    pub fn push(&mut self, staged: T, write: WriteFuture<'a>) {
        self.busy_since.get_or_insert_with(Instant::now);
        self.queue.push_back(Flying { staged, write, answer: None });
    }

    /// The oldest write's answer, once it came; the later ones run meanwhile. `None` when no
    /// write is in flight. `busy` gets the wall time with writes in flight once none is left.
    /// `mark` is the sink's mark, taken as each write answers: before a later write can
    /// commit and move it, so each commit stores the mark of its own batch.
    pub async fn next(&mut self, busy: &mut u128, mark: &(dyn Fn() -> Option<String> + Sync)) -> Option<(T, Answer)> {
        let queue = &mut self.queue;
        let answered = poll_fn(|cx| {
            poll_all(queue, cx, mark);
            match queue.front().map(|w| w.answer.is_some()) {
                Some(false) => Poll::Pending,
                _ => Poll::Ready(queue.pop_front()),
            }
        })
        .await;
        if self.queue.is_empty()
            && let Some(since) = self.busy_since.take()
        {
            *busy += since.elapsed().as_nanos();
        }
        answered.and_then(|w| Some((w.staged, w.answer?)))
    }

    /// `f`, the writes in flight going on meanwhile (their answers kept for [`Flight::next`]):
    /// what the writer awaits besides them (the committer's room, a lease check) stops none.
    pub async fn meanwhile<F: Future>(&mut self, f: F, mark: &(dyn Fn() -> Option<String> + Sync)) -> F::Output {
        let mut f = std::pin::pin!(f);
        let queue = &mut self.queue;
        poll_fn(|cx| {
            if let Poll::Ready(out) = f.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            poll_all(queue, cx, mark);
            Poll::Pending
        })
        .await
    }

    /// Every write still in flight, finished, in order.
    pub async fn drain(&mut self, busy: &mut u128, mark: &(dyn Fn() -> Option<String> + Sync)) -> Vec<(T, Answer)> {
        let mut all = Vec::with_capacity(self.queue.len());
        while let Some(answered) = self.next(busy, mark).await {
            all.push(answered);
        }
        all
    }
}

/// Poll every write not answered yet, oldest first; an answer is kept with the sink's mark.
fn poll_all<T>(
    queue: &mut VecDeque<Flying<'_, T>>,
    cx: &mut std::task::Context<'_>,
    mark: &(dyn Fn() -> Option<String> + Sync),
) {
    for w in queue.iter_mut().filter(|w| w.answer.is_none()) {
        if let Poll::Ready(answer) = w.write.as_mut().poll(cx) {
            w.answer = Some((answer, mark()));
        }
    }
}
