//! The reader: a stream's pages from the source, in order, from the position the run
//! starts at (the last committed one, or the start of a pass) until the pass is done, the
//! source fails, or the run is cancelled. Each page goes to the mapper as it arrives; the
//! bounded channel between them is the backpressure on the source.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::connector::{Cx, Next, Page, ReadRequest, Source};
use crate::error::Error;

/// Reads one stream's pages into the mapper's channel.
pub(super) struct Reader {
    /// The pipeline's source.
    pub source: Arc<dyn Source>,
    /// The run's context; cancelling it stops the reader before its next page.
    pub cx: Cx,
    /// The first page's request; its position moves to each page's `next`.
    pub request: ReadRequest,
    /// Pages (or the failure that ends the read) for the mapper.
    pub pages: mpsc::Sender<Result<Page, Error>>,
    /// Records after which no further page is fetched (`run --limit`).
    pub limit: Option<u64>,
}

impl Reader {
    /// Start reading. The task returns the time spent waiting on the source (ns), and
    /// whether the source ended the run early ([`Next::Later`]).
    pub fn spawn(self) -> JoinHandle<(u128, bool)> {
        // In the stream's span, so what the stage logs (HTTP exchanges included) names the
        // pipeline, run and stream.
        tokio::spawn(tracing::Instrument::in_current_span(self.run()))
    }

    async fn run(mut self) -> (u128, bool) {
        let (mut read_ns, mut later) = (0u128, false);
        let mut records = 0u64;
        loop {
            if self.cx.cancel.is_cancelled() {
                break;
            }
            let t = Instant::now();
            let page = self.source.read(&self.request, &self.cx).await;
            read_ns += t.elapsed().as_nanos();
            let stop = match &page {
                Ok(p)
                    if self.limit.is_some_and(|l| {
                        records += p.records.len() as u64;
                        records >= l
                    }) =>
                {
                    true
                }
                Ok(p) => match &p.next {
                    Next::More(pos) => {
                        self.request.position = Some(pos.clone());
                        false
                    }
                    Next::Later(_) => {
                        later = true;
                        true
                    }
                    Next::Done { .. } => true,
                },
                Err(_) => true,
            };
            if self.pages.send(page).await.is_err() || stop {
                break;
            }
        }
        (read_ns, later)
    }
}
