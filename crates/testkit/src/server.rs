//! The loopback HTTP/1.1 server under both the replay server and the recorder: hyper
//! directly, whole bodies buffered, one async handler. Dropping the [`Loopback`] stops the
//! accept loop and every open connection.

use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::FixtureError;

/// A request as received, body read in full.
#[derive(Debug, Clone)]
pub(crate) struct Incoming {
    pub(crate) method: String,
    /// Percent-encoded path.
    pub(crate) path: String,
    /// Raw query string, without `?`.
    pub(crate) query: Option<String>,
    /// Lower-case names, in arrival order, repeated names repeated.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Bytes,
}

impl Incoming {
    /// Decoded query pairs.
    pub(crate) fn query_pairs(&self) -> Vec<(String, String)> {
        self.query.as_deref().map(parse_pairs).unwrap_or_default()
    }
}

/// Decoded `a=1&b=2` pairs.
pub(crate) fn parse_pairs(s: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(s.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// A response to send.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Bytes,
}

impl Reply {
    /// A JSON reply.
    pub(crate) fn json(status: u16, v: &serde_json::Value) -> Reply {
        let body = Bytes::from(serde_json::to_vec_pretty(v).unwrap_or_default());
        Reply { status, headers: vec![("content-type".into(), "application/json".into())], body }
    }
}

/// Answers requests.
pub(crate) trait Handler: Send + Sync + 'static {
    /// The reply to `req`.
    fn handle(&self, req: Incoming) -> impl Future<Output = Reply> + Send;
}

/// A running server.
#[derive(Debug)]
pub(crate) struct Loopback {
    cancel: CancellationToken,
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Bind `127.0.0.1:0` (any free port).
pub(crate) async fn bind() -> Result<(TcpListener, SocketAddr), FixtureError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.map_err(FixtureError::Bind)?;
    let addr = listener.local_addr().map_err(FixtureError::Bind)?;
    Ok((listener, addr))
}

/// Serve `handler` on `listener` from tasks of the current runtime.
pub(crate) fn serve<H: Handler>(listener: TcpListener, handler: Arc<H>) -> Loopback {
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                () = stop.cancelled() => return,
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(_) => continue,
                },
            };
            let (h, stop) = (handler.clone(), stop.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let h = h.clone();
                    async move { Ok::<_, Infallible>(to_hyper(h.handle(from_hyper(req).await).await)) }
                });
                let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                tokio::select! {
                    () = stop.cancelled() => {}
                    _ = conn => {}
                }
            });
        }
    });
    Loopback { cancel }
}

async fn from_hyper(req: hyper::Request<hyper::body::Incoming>) -> Incoming {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    Incoming {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers,
        body,
    }
}

fn to_hyper(r: Reply) -> hyper::Response<Full<Bytes>> {
    let mut resp = hyper::Response::new(Full::new(r.body));
    *resp.status_mut() = hyper::StatusCode::from_u16(r.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in r.headers {
        if let (Ok(k), Ok(v)) =
            (hyper::header::HeaderName::from_bytes(k.as_bytes()), hyper::header::HeaderValue::from_str(&v))
        {
            resp.headers_mut().append(k, v);
        }
    }
    resp
}
