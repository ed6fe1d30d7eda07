//! The bodies of the fuzz targets over dovetail-http's header parsers (`fuzz/fuzz_targets/`,
//! `cargo xtask fuzz`), public so the fuzz crate and the stable replay of every committed
//! corpus and crash file (tests/tests/fuzz_replay.rs) call the same code.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::ResetStyle;

/// `data` as a `Link` header value: the `rel="next"` target, if any, is one of its `<…>`.
pub fn link_header(data: &[u8]) {
    let Ok(value) = std::str::from_utf8(data) else { return };
    if let Some(next) = crate::paginate::next_link(value) {
        assert!(value.contains(&format!("<{next}>")), "`{next}` is not a target of {value:?}");
    }
}

/// `data` as response headers, one `name: value` a line: the wait the server asks for
/// (`Retry-After` seconds or HTTP date, rate-limit resets) is computed without a panic for
/// every status and reset style, and never overflows.
pub fn rate_limit_headers(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(line[colon + 1..].trim_ascii()))
        else {
            continue;
        };
        headers.append(name, value);
    }
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    for status in [StatusCode::TOO_MANY_REQUESTS, StatusCode::FORBIDDEN, StatusCode::OK] {
        for style in [ResetStyle::EpochSeconds, ResetStyle::DeltaSeconds] {
            let _ = crate::retry::server_wait(status, &headers, now, style);
            let _ = crate::retry::reset_wait(&headers, now, style);
        }
    }
    let _ = crate::retry::remaining(&headers);
}
