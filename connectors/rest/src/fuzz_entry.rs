//! The bodies of the fuzz targets over the REST source's decoders (`fuzz/fuzz_targets/rest_*.rs`,
//! `cargo xtask fuzz`), public so the fuzz crate and the stable replay of every committed
//! corpus and crash file (tests/tests/fuzz_replay.rs) call the same code.

use std::sync::OnceLock;

use dovetail_core::{BuildCx, SourceConnector, position};
use dovetail_http::header::{HeaderMap, HeaderName, HeaderValue};
use dovetail_http::paginate::PageState;
use dovetail_http::{Response, StatusCode, Url};
use serde_json::{Value, json};

use dovetail_core::Record;

use crate::RestSource;
use crate::source::{ChildPosition, StreamDef, StreamPosition};

/// `data` as a stored position of a stream and of a child stream: decoded or refused as
/// "not a position this connector wrote", never a panic; a decoded one encodes again.
pub fn position(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else { return };
    if let Ok(p) = position::decode::<StreamPosition>("fuzz", &v) {
        let _ = position::encode(&p);
    }
    if let Ok(p) = position::decode::<ChildPosition>("fuzz", &v) {
        let _ = position::encode(&p);
    }
}

/// The origin every stream of [`source`] reads from.
const BASE: &str = "https://api.example.com";

/// A REST source with one stream per pagination style, each with the body as the array of
/// records and with `records = "/data"`.
fn source() -> &'static RestSource {
    static SOURCE: OnceLock<RestSource> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let styles = [
            json!({ "type": "none" }),
            json!({ "type": "cursor", "pointer": "/meta/next_cursor", "param": "cursor" }),
            json!({ "type": "next_url", "pointer": "/next" }),
            json!({ "type": "link_header" }),
            json!({ "type": "page_number", "param": "page", "page_size": 2, "total_pointer": "/total" }),
            json!({ "type": "offset", "param": "offset", "page_size": 2, "total_pointer": "/total" }),
            json!({ "type": "last_id", "param": "starting_after", "has_more": "/has_more", "id": "/id" }),
            json!({ "type": "body_cursor", "pointer": "/meta/next_cursor", "field": "after", "body": { "limit": 2 } }),
        ];
        let mut streams = Vec::new();
        for (i, pagination) in styles.iter().enumerate() {
            for (j, records) in [Value::Null, json!("/data")].into_iter().enumerate() {
                streams.push(json!({
                    "name": format!("s{i}_{j}"), "path": "/v1/items", "primary_key": ["id"],
                    "pagination": pagination, "records": records,
                }));
            }
        }
        let config = serde_json::from_value(json!({ "base_url": BASE, "streams": streams }))
            .expect("the fuzz source's config is valid");
        RestSource::build(config, &BuildCx::default()).expect("the fuzz source builds")
    })
}

/// The first page of `def`'s listing answered with `headers` and `body`: its records, the
/// number of items the body held and the next page's state; `None` when it is refused.
fn first_page(
    src: &RestSource,
    def: &StreamDef,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<(Vec<Record>, usize, Option<PageState>)> {
    let template = src.template(def, None, None).expect("the fuzz streams' requests are valid");
    let mut p = src.paginator(def, template, PageState::default());
    let url = p.next_url().expect("a new listing has a first page");
    let response = Response {
        status: StatusCode::OK,
        headers: headers.clone(),
        body: body.to_vec().into(),
        url: Url::parse(&url).expect("the first page's URL parses"),
        from_cache: false,
        stale: false,
        attempts: 1,
    };
    let page = p.take(response).ok()?;
    let items = page.as_ref().map_or(0, |pg| pg.items.len());
    let (records, rejects, next) = src.page_records(def, &p, page, 0, None, &url).ok()?;
    assert!(rejects.is_empty(), "a decoded page rejects nothing");
    Some((records, items, next))
}

/// `data` as the first page of a REST listing — `name: value` header lines, a blank line and
/// the body, or the body alone — for every pagination style, with and without a `records`
/// pointer: its records and the next page's state, or an error, never a panic. A next page is
/// never outside the source's origin (where its credential goes), and its state is a
/// position that decodes to itself.
pub fn page(data: &[u8]) {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (&data[..0], data),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(line[colon + 1..].trim_ascii()))
        {
            headers.append(name, value);
        }
    }
    let src = source();
    for def in src.streams.iter() {
        let Some((records, items, next)) = first_page(src, def, &headers, body) else { continue };
        assert_eq!(records.len(), items, "every item is a record");
        let Some(state) = next else { continue };
        if let Some(next) = &state.url {
            let next = Url::parse(next).expect("a stored next URL parses");
            assert!(src.client.permits(&next), "a next page outside {BASE}: {next}");
        }
        let stored = position::encode(&StreamPosition { page: state.clone() }).expect("a next state encodes");
        let dovetail_core::Next::More(v) = stored else { panic!("a next state is a position") };
        let back: StreamPosition = position::decode("fuzz", &v).expect("a stored position decodes");
        assert_eq!(back.page, state, "a stored position decodes to itself");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `stream`: (pagination style, with `records`) as [`source`] orders its streams.
    fn decode(
        stream: (usize, usize),
        head: &[(&str, &str)],
        body: &str,
    ) -> Option<(Vec<Record>, usize, Option<PageState>)> {
        let mut headers = HeaderMap::new();
        for (k, v) in head {
            headers.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        let def = &source().streams[stream.0 * 2 + stream.1];
        first_page(source(), def, &headers, body.as_bytes())
    }

    #[test]
    fn the_target_reaches_records_and_next_pages() {
        let body = r#"{"data":[{"id":1},{"id":2}],"meta":{"next_cursor":"abc"},"next":"/v1/items?page=2"}"#;
        let (records, _, next) = decode((1, 1), &[], body).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(next.unwrap().cursor.as_deref(), Some("abc"));
        let (_, _, next) = decode((2, 1), &[], body).unwrap();
        assert_eq!(next.unwrap().url.as_deref(), Some("https://api.example.com/v1/items?page=2"));
        let link = [("link", r#"<https://api.example.com/v1/items?page=2>; rel="next""#)];
        let (records, _, next) = decode((3, 0), &link, r#"[{"id":1}]"#).unwrap();
        assert_eq!((records.len(), next.unwrap().url.is_some()), (1, true));
        // A next page on another origin is refused, not stored.
        let away = [("link", r#"<https://elsewhere.example.org/x>; rel="next""#)];
        assert!(decode((3, 0), &away, r#"[{"id":1}]"#).is_none());
        let (_, _, next) = decode((7, 1), &[], body).unwrap();
        assert_eq!(next.unwrap().cursor.as_deref(), Some("abc"), "the body cursor, sent back in the POST body");
        // `records` pointing at an object is an error, never an empty listing.
        assert!(decode((0, 1), &[], r#"{"data":{"id":1}}"#).is_none());
    }
}
