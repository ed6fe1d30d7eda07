//! What a listing fetched, for its loop guard: the hashes of its last [`RECENT`] positions,
//! and Brent's cycle detection over all of them (one saved hash, a step count and a power:
//! O(1) space, and a cycle of any length is caught within 3 × (tail + cycle) pages).
//!
//! It rides in [`super::PageState`], so in every checkpoint: a connector that builds a new
//! paginator per page, and a listing resumed by another process, remember what came before.
//! Serialized it is a few hundred bytes at most: `{"recent": "<base64>", "mark": …, "steps":
//! …, "power": …}`. The [`Paginator`]'s loop guard is here too: how a page's position is
//! hashed and the error a repeat ends with.

use std::collections::VecDeque;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use dovetail_core::{Error, ErrorKind};
use reqwest::Url;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{PageStyle, Paginator};

/// How many positions are remembered exactly: a loop back into them stops before the
/// repeated page is fetched (or, for numbered pages, before its records are handed on).
pub const RECENT: usize = 32;

/// The positions a listing fetched (hashes, never the URLs or cursors themselves).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trail {
    /// Hashes of the last [`RECENT`] positions, oldest first.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty", with = "packed")]
    recent: VecDeque<u64>,
    /// Brent's saved position: the hash every later one is compared with until it moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mark: Option<u64>,
    /// Positions fetched since the mark was saved.
    #[serde(default, skip_serializing_if = "is_zero")]
    steps: u64,
    /// When `steps` reaches it the mark moves to the newest position and it doubles (0 = 1).
    #[serde(default, skip_serializing_if = "is_zero")]
    power: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Trail {
    /// Whether nothing was fetched yet (the trail is then left out of the position).
    pub fn is_empty(&self) -> bool {
        self.recent.is_empty() && self.mark.is_none()
    }

    /// When `hash` was fetched before: `Some(n)` for n positions ago (1 = the last one),
    /// `Some(0)` for further back than [`RECENT`] (Brent's mark), `None` if it is new.
    pub(crate) fn seen(&self, hash: u64) -> Option<usize> {
        match self.recent.iter().rposition(|h| *h == hash) {
            Some(i) => Some(self.recent.len() - i),
            None => (self.mark == Some(hash)).then_some(0),
        }
    }

    /// Remember a fetched position.
    pub(crate) fn push(&mut self, hash: u64) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(hash);
        self.steps += 1;
        let power = self.power.max(1);
        if self.steps >= power {
            self.mark = Some(hash);
            self.power = power.saturating_mul(2);
            self.steps = 0;
        }
    }
}

/// A stable 64-bit hash of a position (xxh3: the same in every build, so stored trails stay
/// comparable), `tag` keeping the kinds of position apart.
pub(crate) fn hash(tag: &str, bytes: &[u8]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(tag.as_bytes());
    h.update(&[0]);
    h.update(bytes);
    h.digest()
}

/// The hash of a numbered page's records (not its raw body, so a body that also carries a
/// request id or a timestamp still matches a repeat of the same records).
pub(crate) fn records_hash(items: &[serde_json::Value]) -> u64 {
    struct W(xxhash_rust::xxh3::Xxh3);
    impl std::io::Write for W {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut w = W(xxhash_rust::xxh3::Xxh3::new());
    w.0.update(b"records\0");
    // Writing JSON values to a sink that cannot fail does not fail.
    let _ = serde_json::to_writer(&mut w, items);
    w.0.digest()
}

/// The loop guard of a [`Paginator`]: a listing's next page checked against its trail.
impl Paginator {
    /// A URL's position: without the fragment and the auth provider's query parameters,
    /// the query sorted (a next link that reorders the first page's query is that page).
    pub(super) fn url_hash(&self, url: &Url) -> u64 {
        let secret = &self.client.inner.auth_query_params;
        let mut pairs: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| !secret.iter().any(|s| *s == *k))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        pairs.sort();
        let mut u = url.clone();
        u.set_fragment(None);
        u.set_query(None);
        if !pairs.is_empty() {
            u.query_pairs_mut().extend_pairs(&pairs);
        }
        hash("url", u.as_str().as_bytes())
    }

    /// The position of the page at `url`: its URL, and for a body-cursor listing (one URL,
    /// the cursor in the body) the cursor it is asked with too.
    pub(super) fn position_hash(&self, url: &Url) -> u64 {
        let h = self.url_hash(url);
        match (&self.style, self.state.as_ref().and_then(|s| s.cursor.as_deref())) {
            (PageStyle::BodyCursor { .. }, Some(c)) => h ^ hash("body cursor", c.as_bytes()),
            _ => h,
        }
    }

    /// The next page, at `h`, must be one the listing has not fetched.
    pub(super) fn refuse_seen(&mut self, h: u64) -> Result<(), Error> {
        let Some(ago) = self.state.as_ref().and_then(|s| s.fetched.seen(h)) else { return Ok(()) };
        self.looped = true;
        Err(self.loop_error(ago))
    }

    /// The error of a listing whose next page is one it fetched `ago` pages before (0:
    /// further back than the exact memory reaches).
    fn loop_error(&self, ago: usize) -> Error {
        let url = self.next_url().unwrap_or_default();
        let when = match ago {
            0 => "earlier in this listing".to_owned(),
            n => format!("{n} pages before"),
        };
        let state = self.state.as_ref();
        let (what, numbered_param) = match &self.style {
            PageStyle::LinkHeader | PageStyle::NextUrl { .. } => {
                let link = match &self.style {
                    PageStyle::NextUrl { pointer } => format!("the next-page URL at `{pointer}`"),
                    _ => "the `Link` header's next page".to_owned(),
                };
                let what = match ago {
                    1 => format!("{link} is {url}, the page that sent it"),
                    _ => format!("{link} is {url}, which this listing already fetched ({when})"),
                };
                (what, None)
            }
            PageStyle::Cursor { pointer, param } | PageStyle::BodyCursor { pointer, field: param } => {
                let cursor = shorten(state.and_then(|s| s.cursor.as_deref()).unwrap_or_default());
                let what = match ago {
                    1 => format!(
                        "the cursor at `{pointer}` is `{cursor}` again, the one its page was fetched with ({url})"
                    ),
                    _ => format!(
                        "the cursor at `{pointer}` is `{cursor}`, which this listing already sent as `{param}` ({when}: {url})"
                    ),
                };
                (what, None)
            }
            PageStyle::LastId { param, id, .. } => {
                let last = shorten(state.and_then(|s| s.cursor.as_deref()).unwrap_or_default());
                (
                    format!(
                        "the last item's id at `{id}` is `{last}`, which this listing already sent as `{param}` ({when}: {url})"
                    ),
                    None,
                )
            }
            PageStyle::PageNumber { param, first } => {
                let n = state.and_then(|s| s.page).unwrap_or(*first);
                let earlier = match ago {
                    0 => "a page read earlier".to_owned(),
                    a => format!("page {}", n.saturating_sub(a as u64)),
                };
                (format!("page {n} ({url}) holds the same records as {earlier}"), Some(("page", param)))
            }
            PageStyle::Offset { param } => {
                let at = state.map_or(0, |s| s.received);
                let earlier = match ago {
                    0 => "a page read earlier".to_owned(),
                    1 => "the page before".to_owned(),
                    a => format!("the page {a} pages before"),
                };
                let what = format!("the page at offset {at} ({url}) holds the same records as {earlier}");
                (what, Some(("offset", param)))
            }
        };
        let check = match numbered_param {
            Some((noun, param)) => format!(
                "check that `{param}` is the API's {noun} parameter (an API that ignores it answers the same page \
                 again)"
            ),
            None => "check the stream's pagination settings against the API's documentation, and report the loop \
                     to the API's owner"
                .to_owned(),
        };
        Error::new(
            ErrorKind::Data,
            format!(
                "pagination loop ({} pagination): {what}; the stream stops here instead of reading the same \
                 records again",
                self.style.name()
            ),
        )
        .with_hint(format!(
            "every record before this page was kept, and a rerun stops here again while the API answers the same: \
             {check}, or run `dovetail reset {{pipeline}} {{stream}}` to read the stream from the start"
        ))
    }
}

impl PageStyle {
    /// The style as messages name it (`Link-header`, `cursor`, …).
    pub fn name(&self) -> &'static str {
        match self {
            PageStyle::LinkHeader => "Link-header",
            PageStyle::Cursor { .. } => "cursor",
            PageStyle::BodyCursor { .. } => "body-cursor",
            PageStyle::LastId { .. } => "last-id",
            PageStyle::NextUrl { .. } => "next-URL",
            PageStyle::PageNumber { .. } => "page-number",
            PageStyle::Offset { .. } => "offset",
        }
    }
}

/// A cursor as a message shows it: long opaque cursors cut to their first 60 characters.
fn shorten(cursor: &str) -> String {
    match cursor.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &cursor[..i]),
        None => cursor.to_owned(),
    }
}

/// `recent` as base64 of its little-endian hashes: 11 characters a position.
mod packed {
    use super::*;

    pub fn serialize<S: Serializer>(v: &VecDeque<u64>, s: S) -> Result<S::Ok, S::Error> {
        let bytes: Vec<u8> = v.iter().flat_map(|h| h.to_le_bytes()).collect();
        s.serialize_str(&B64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<VecDeque<u64>, D::Error> {
        use serde::de::Error as _;
        let text = String::deserialize(d)?;
        let bytes =
            B64.decode(text.as_bytes()).map_err(|e| D::Error::custom(format!("`recent` is not base64 ({e})")))?;
        if bytes.len() % 8 != 0 || bytes.len() / 8 > RECENT {
            return Err(D::Error::custom(format!(
                "`recent` holds {} bytes, not up to {RECENT} hashes of 8 bytes",
                bytes.len()
            )));
        }
        Ok(bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Positions of a listing that runs `tail` new pages, then cycles through `cycle` pages.
    fn walk(tail: u64, cycle: u64) -> impl Iterator<Item = u64> {
        (0..).map(move |i| if i < tail { i } else { tail + (i - tail) % cycle })
    }

    /// How many positions are fetched before one is refused.
    fn fetched_before_refusal(tail: u64, cycle: u64) -> u64 {
        let mut t = Trail::default();
        for (n, p) in walk(tail, cycle).enumerate() {
            let h = hash("t", &p.to_le_bytes());
            if t.seen(h).is_some() {
                return n as u64;
            }
            // A round trip through JSON at every page, as a per-page paginator does.
            t.push(h);
            t = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
            assert!(n < 10_000, "no loop found in ({tail}, {cycle})");
        }
        unreachable!()
    }

    #[test]
    fn a_short_cycle_stops_before_any_page_is_fetched_twice() {
        for (tail, cycle) in [(0, 1), (1, 1), (5, 1), (0, 2), (3, 2), (10, 7), (40, RECENT as u64)] {
            assert_eq!(fetched_before_refusal(tail, cycle), tail + cycle, "({tail}, {cycle})");
        }
    }

    #[test]
    fn a_long_cycle_is_caught_within_three_times_tail_plus_cycle() {
        for (tail, cycle) in [(0, 33), (5, 100), (1000, 50), (3, 1000), (2000, 2000)] {
            let n = fetched_before_refusal(tail, cycle);
            assert!(n >= tail + cycle && n <= 3 * (tail + cycle) + 4, "({tail}, {cycle}): {n}");
        }
    }

    #[test]
    fn a_listing_without_repeats_is_never_refused_and_stays_small() {
        let mut t = Trail::default();
        for p in 0u64..5000 {
            let h = hash("t", &p.to_le_bytes());
            assert_eq!(t.seen(h), None, "{p}");
            t.push(h);
        }
        assert!(serde_json::to_string(&t).unwrap().len() < 420, "{}", serde_json::to_string(&t).unwrap());
    }

    #[test]
    fn a_damaged_trail_does_not_load() {
        assert!(serde_json::from_str::<Trail>(r#"{"recent": "%%"}"#).is_err());
        assert!(serde_json::from_str::<Trail>(r#"{"recent": "AAAA"}"#).is_err());
        assert!(serde_json::from_str::<Trail>(r#"{"other": 1}"#).is_err());
        assert_eq!(serde_json::from_str::<Trail>("{}").unwrap(), Trail::default());
    }
}
