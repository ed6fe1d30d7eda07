//! Connections, shared by the vendor and the [`crate::Recorder`]: the accept loop and the response body.
//!
//! Connections are served with hyper directly (not a router framework) because a dropped
//! connection must really close the socket with no response: each connection task races the
//! hyper connection against a per-connection [`Notify`], and a handler that wants the client
//! to see an IO error fires it and never returns; the task then drops the socket.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Accepts connections until `cancel`; `handler` answers each request, given its connection's kill switch.
pub(crate) async fn serve<H, F>(listener: TcpListener, cancel: CancellationToken, handler: H)
where
    H: Fn(Request<Incoming>, Arc<Notify>) -> F + Clone + Send + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    // Out of file descriptors is the usual cause; do not spin on it.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = cancel.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let kill = Arc::new(Notify::new());
            let svc = {
                let kill = kill.clone();
                service_fn(move |req| {
                    let answer = handler(req, kill.clone());
                    async move { Ok::<_, Infallible>(answer.await) }
                })
            };
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                () = kill.notified() => return,
                () = cancel.cancelled() => {}
            }
            // Let the in-flight request (say, `/_control/shutdown` itself) answer, then close.
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                _ = conn => {}
                () = kill.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        });
    }
}

/// The response body: whole, or cut short by an error so hyper aborts the connection mid-body.
pub(crate) struct Body {
    data: Option<Bytes>,
    fail: bool,
    yielded: bool,
}

impl Body {
    pub(crate) fn full(data: Bytes) -> Body {
        Body { data: Some(data), fail: false, yielded: false }
    }

    /// Sends `part`, then fails: with a larger `Content-Length`, the client sees a body cut short.
    pub(crate) fn truncated(part: Bytes) -> Body {
        Body { data: Some(part), fail: true, yielded: false }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        if self.fail {
            if !self.yielded {
                // hyper flushes what it has while the body is pending; erroring right away would
                // discard the status line too, and the client would see no response at all.
                self.yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.fail = false;
            return Poll::Ready(Some(Err(io::Error::other("injected truncation"))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && !self.fail
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.data, self.fail) {
            (Some(d), false) => SizeHint::with_exact(d.len() as u64),
            (None, false) => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
