//! What of a live request or response goes into a fixture: transport-level headers (those
//! the HTTP stack sets by itself, and the ones that change on every exchange) are left out.

use std::collections::BTreeMap;

use crate::format::{Body, RecordedRequest, RecordedResponse};
use crate::server::Incoming;

/// Request headers that are not part of what a connector asks for.
pub(crate) const TRANSPORT_REQUEST_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "proxy-connection",
    "accept-encoding",
    "user-agent",
];

/// Response headers left out: hop-by-hop, recomputed on replay, or noise in every diff.
pub(crate) const TRANSPORT_RESPONSE_HEADERS: &[&str] =
    &["content-length", "connection", "keep-alive", "transfer-encoding", "content-encoding", "date", "trailer"];

/// Lower-case names, repeated headers joined with `, `, `skip` left out.
pub(crate) fn header_map(headers: &[(String, String)], skip: &[&str]) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in headers {
        let k = k.to_ascii_lowercase();
        if skip.contains(&k.as_str()) {
            continue;
        }
        out.entry(k).and_modify(|x| *x = format!("{x}, {v}")).or_insert_with(|| v.clone());
    }
    out
}

/// The identifying parts of `req`.
pub(crate) fn capture_request(req: &Incoming) -> RecordedRequest {
    RecordedRequest {
        method: req.method.clone(),
        path: req.path.clone(),
        query: req.query_pairs(),
        headers: header_map(&req.headers, TRANSPORT_REQUEST_HEADERS),
        body: Body::from_bytes(&req.body),
    }
}

/// A response as recorded.
pub(crate) fn capture_response(status: u16, headers: &[(String, String)], body: &[u8]) -> RecordedResponse {
    RecordedResponse { status, headers: header_map(headers, TRANSPORT_RESPONSE_HEADERS), body: Body::from_bytes(body) }
}
