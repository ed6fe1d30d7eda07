//! Pagination as a pull iterator: [`Paginator::next_page`] returns `Ok(Some(page))` until
//! the last page, then `Ok(None)`. (A pull iterator rather than a `Stream` keeps the borrow
//! of the client simple and lets the caller commit a cursor between pages.)
//!
//! Styles: RFC 8288 `Link: <…>; rel="next"`, a cursor at a JSON pointer sent back as a query
//! parameter, the last item's id sent back while a `has_more` flag is true (Stripe), a next
//! URL at a JSON pointer, a page number and an offset. Each stops at an empty page or when
//! there is no next.
//!
//! A listing cannot loop: [`PageState::fetched`] remembers what it fetched (see [`Trail`]) and
//! travels with the position, so a connector that builds a paginator per page and a listing
//! resumed from a checkpoint remember too. A `Link`, next-URL or cursor listing whose next
//! request is one it already sent (the URL with its query sorted, the first page included)
//! stops before sending it; a page-number or offset listing whose page holds the same records
//! as a page it already read stops before handing them on. Either way the error is
//! [`dovetail_core::ErrorKind::Data`] naming the URL (and the cursor), and nothing of the
//! pages before is lost.

use dovetail_core::Error;
use reqwest::Url;
use serde_json::Value;

use crate::client::HttpClient;
use crate::origin::Origin;
use crate::request::{Request, Response};

mod body;
mod trail;
use body::with_body_field;
pub use trail::{RECENT, Trail};

/// How the next page is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageStyle {
    /// The `Link` response header's `rel="next"` URL (GitHub, GitLab).
    LinkHeader,
    /// A cursor at `pointer` (RFC 6901, e.g. `/meta/next_cursor`) sent back as query `param`.
    Cursor {
        /// JSON pointer of the cursor in the body; missing, null or "" ends the listing.
        pointer: String,
        /// Query parameter that carries it on the next request.
        param: String,
    },
    /// A cursor at `pointer` in the body sent back as the top-level `field` of the next
    /// request's JSON body (a POST listing: HubSpot's search, `paging.next.after` → `after`);
    /// the first request sends the template's body as it is.
    BodyCursor {
        /// JSON pointer of the cursor in the body; missing, null or "" ends the listing.
        pointer: String,
        /// Top-level field of the request's JSON object body that carries it.
        field: String,
    },
    /// The id of the page's last item sent back as query `param` while the boolean at
    /// `has_more` is `true` (Stripe's `starting_after`): the server keeps no cursor, the
    /// client names the last object it has.
    LastId {
        /// Query parameter that carries the last id on the next request (`starting_after`).
        param: String,
        /// JSON pointer of the body's "more pages follow" flag (`/has_more`); anything but
        /// `true` ends the listing.
        has_more: String,
        /// JSON pointer of the id inside each item (`/id`).
        id: String,
    },
    /// A next-page URL at `pointer` in the body (absolute or relative to the page's URL).
    NextUrl {
        /// JSON pointer of the URL; missing, null or "" ends the listing.
        pointer: String,
    },
    /// Query `param` = 1, 2, 3… (starting at `first`) until an empty page.
    PageNumber {
        /// Query parameter of the page number.
        param: String,
        /// Number of the first page (usually 1, sometimes 0).
        first: u64,
    },
    /// Query `param` = 0, n, 2n… where n is the number of items received so far.
    Offset {
        /// Query parameter of the offset.
        param: String,
    },
}

/// One page: the response and its JSON body.
#[derive(Debug, Clone)]
pub struct Page {
    /// The response (status, headers, raw body, cache flags).
    pub response: Response,
    /// The decoded body, with the items array taken out (left empty) when an items pointer
    /// is set, so the page's records are not held twice.
    pub body: Value,
    /// The page's items: the array at the items pointer, or the body if it is an array.
    pub items: Vec<Value>,
}

/// Where the next page of a listing is: small, serializable, and enough to resume the
/// listing in another process (a connector stores it in its checkpoint).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageState {
    /// Absolute URL of the next page (`Link` header and next-URL styles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Cursor to send back (cursor style), or the last id (last-id style).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Number of the next page (page-number style).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u64>,
    /// Items received so far; the next offset (offset style).
    #[serde(default)]
    pub received: u64,
    /// The origin (`https://host[:port]`) of the listing this position belongs to. A
    /// position resumed against another origin (the base URL changed) is refused instead of
    /// carrying one server's cursor, page or URL — and the credential — to another.
    /// Positions written before it existed have none and are checked by their URL alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// What the listing fetched so far, for its loop guard; positions written before it
    /// existed have none and start remembering from where they are.
    #[serde(default, skip_serializing_if = "Trail::is_empty")]
    pub fetched: Trail,
}

/// Pulls the pages of one listing.
#[derive(Debug)]
pub struct Paginator {
    client: HttpClient,
    template: Request,
    style: PageStyle,
    items_pointer: Option<String>,
    total_pointer: Option<String>,
    page_size: Option<usize>,
    /// Where the next page is; `None` once the listing ended.
    state: Option<PageState>,
    /// Whether the last [`Paginator::next_page`] stopped at a pagination loop.
    looped: bool,
    /// Whether the resumed position was checked against the listing's origin.
    resumed_checked: bool,
    /// Why the last page ended the listing when the items pointer found no array in a body
    /// that was not empty (the body's shape): a wrong pointer, not an empty listing.
    missed: Option<String>,
}

impl HttpClient {
    /// Pages of the listing that `first` starts, found by `style`.
    pub fn paginate(&self, first: Request, style: PageStyle) -> Paginator {
        self.paginate_from(first, style, PageState::default())
    }

    /// Pages of the listing that `first` starts, continuing at `state` (what
    /// [`Paginator::state`] said after the last page a previous run finished).
    pub fn paginate_from(&self, first: Request, style: PageStyle, state: PageState) -> Paginator {
        Paginator {
            client: self.clone(),
            template: first,
            style,
            items_pointer: None,
            total_pointer: None,
            page_size: None,
            state: Some(state),
            looped: false,
            resumed_checked: false,
            missed: None,
        }
    }
}

impl Paginator {
    /// Where the items are in each body (JSON pointer, e.g. `/data`); by default the body
    /// itself when it is an array. An empty items array ends the listing.
    pub fn items_at(mut self, pointer: &str) -> Self {
        self.items_pointer = Some(pointer.to_owned());
        self
    }

    /// End the listing after a page with fewer than `n` items (the page size asked for), saving
    /// the request for an empty page.
    pub fn stop_when_fewer_than(mut self, n: usize) -> Self {
        self.page_size = Some(n).filter(|n| *n > 0);
        self
    }

    /// End the listing once the number of items received reaches the total at `pointer`
    /// (e.g. `/total`) in the body.
    pub fn total_at(mut self, pointer: &str) -> Self {
        self.total_pointer = Some(pointer.to_owned());
        self
    }

    /// When the last [`Paginator::next_page`] ended the listing because the items pointer
    /// found no array in a body that was not empty: what it found (see [`items_missed`]).
    pub fn missed_items(&self) -> Option<&str> {
        self.missed.as_deref()
    }

    /// Whether the last [`Paginator::next_page`] failed because the listing looped (a Data
    /// error, but not a page that failed to decode: there is nothing to skip).
    pub fn looped(&self) -> bool {
        self.looped
    }

    /// Where the next page is, or `None` when the listing has ended. Store it to resume with
    /// [`HttpClient::paginate_from`].
    pub fn state(&self) -> Option<&PageState> {
        self.state.as_ref()
    }

    /// The request for the next page, when there is one.
    pub fn next_request(&self) -> Option<Request> {
        let state = self.state.as_ref()?;
        let t = self.template.clone();
        Some(match &self.style {
            PageStyle::LinkHeader | PageStyle::NextUrl { .. } => match &state.url {
                Some(u) => at_url(t, u.clone()),
                None => t,
            },
            PageStyle::Cursor { param, .. } | PageStyle::LastId { param, .. } => match &state.cursor {
                Some(c) => with_param(t, param, c),
                None => t,
            },
            PageStyle::BodyCursor { field, .. } => match &state.cursor {
                Some(c) => with_body_field(t, field, c),
                None => t,
            },
            PageStyle::PageNumber { param, first } => with_param(t, param, &state.page.unwrap_or(*first).to_string()),
            PageStyle::Offset { param } => with_param(t, param, &state.received.to_string()),
        })
    }

    /// The next page's URL as logs show it (secret query values redacted), when there is one.
    pub fn next_url(&self) -> Option<String> {
        let req = self.next_request()?;
        let url = self.client.resolve(&req).ok()?;
        Some(crate::observe::redact_url(&url, &self.client.inner.secret_params))
    }

    /// Step over the next page without reading it (after it failed for good), when the style
    /// allows: page numbers and offsets (`assumed_items`: the page size, for offsets) can
    /// skip; `Link`, cursor and next-URL listings cannot, since the next position is inside
    /// the page. Returns whether it skipped.
    pub fn skip_page(&mut self, assumed_items: u64) -> bool {
        let style = self.style.clone();
        let Some(state) = self.state.as_mut() else { return false };
        match style {
            PageStyle::PageNumber { first, .. } => {
                state.page = Some(state.page.unwrap_or(first) + 1);
                true
            }
            PageStyle::Offset { .. } => {
                state.received += assumed_items.max(1);
                true
            }
            _ => false,
        }
    }

    /// The next page, `None` after the last one.
    pub async fn next_page(&mut self) -> Result<Option<Page>, Error> {
        if !self.resumed_checked {
            self.check_resumed()?;
            self.resumed_checked = true;
        }
        let Some(req) = self.next_request() else { return Ok(None) };
        // Link, next-URL and cursor listings are positioned by the URL they ask for, so a
        // repeat is refused before it is sent; numbered pages are known by their records.
        let numbered = matches!(self.style, PageStyle::PageNumber { .. } | PageStyle::Offset { .. });
        let at = if numbered { None } else { Some(self.client.resolve(&req).map(|u| self.position_hash(&u))?) };
        if let Some(h) = at {
            self.refuse_seen(h)?;
        }
        let (response, body) = self.client.send_decode(req, |r| Ok((r.clone(), r.json::<Value>()?))).await?;
        self.received(response, body, at)
    }

    /// The page in `response`, taken as [`Paginator::next_page`] takes a page it fetched but
    /// with nothing sent: the body decoded, its items taken out, the listing advanced (or
    /// ended). The page decoder alone, for bodies that never crossed a wire (fuzzing).
    pub fn take(&mut self, response: Response) -> Result<Option<Page>, Error> {
        let numbered = matches!(self.style, PageStyle::PageNumber { .. } | PageStyle::Offset { .. });
        let at = if numbered { None } else { Some(self.position_hash(&response.url)) };
        if let Some(h) = at {
            self.refuse_seen(h)?;
        }
        let body = response.json::<Value>()?;
        self.received(response, body, at)
    }

    /// A fetched page's response and decoded body: its items, and where the next page is.
    /// `at`: the hash of the page's URL, `None` for numbered pages (known by their records).
    fn received(&mut self, response: Response, mut body: Value, at: Option<u64>) -> Result<Option<Page>, Error> {
        if let Some(p) = &self.items_pointer {
            self.missed = items_missed(&body, p);
        }
        let items = match &self.items_pointer {
            Some(p) => body.pointer_mut(p).and_then(|v| v.as_array_mut()).map(std::mem::take),
            None => match &mut body {
                Value::Array(a) => Some(std::mem::take(a)),
                _ => None,
            },
        };
        let Some(items) = items.filter(|i| !i.is_empty()) else {
            self.state = None;
            return Ok(None);
        };
        let at = match at {
            Some(h) => h,
            None => {
                let h = trail::records_hash(&items);
                self.refuse_seen(h)?;
                h
            }
        };
        let last_id = match &self.style {
            PageStyle::LastId { id, .. } => items.last().and_then(|i| i.pointer(id)).cloned(),
            _ => None,
        };
        self.advance(&response, &body, items.len(), at, last_id)?;
        Ok(Some(Page { response, body, items }))
    }

    /// `at`: the hash of the page just read (its URL, or its records when numbered);
    /// `last_id`: the last item's id (last-id style).
    fn advance(
        &mut self,
        resp: &Response,
        body: &Value,
        count: usize,
        at: u64,
        last_id: Option<Value>,
    ) -> Result<(), Error> {
        let Some(mut state) = self.state.take() else { return Ok(()) };
        state.received += count as u64;
        state.fetched.push(at);
        let short = self.page_size.is_some_and(|n| count < n);
        let total_reached = self
            .total_pointer
            .as_deref()
            .and_then(|p| body.pointer(p))
            .and_then(Value::as_u64)
            .is_some_and(|total| state.received >= total);
        let more = match &self.style {
            PageStyle::LinkHeader => {
                let link = resp.headers.get_all("link").iter().filter_map(|v| v.to_str().ok()).find_map(next_link);
                match link {
                    Some(l) => {
                        let next = self.next_url_from(&resp.url, &l, "the `Link` header's next page")?;
                        state.url = Some(next);
                        true
                    }
                    None => false,
                }
            }
            PageStyle::NextUrl { pointer } => {
                match body.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty()) {
                    Some(u) => {
                        let what = format!("the next-page URL in the body at `{pointer}`");
                        let next = self.next_url_from(&resp.url, u, &what)?;
                        state.url = Some(next);
                        true
                    }
                    None => false,
                }
            }
            PageStyle::Cursor { pointer, .. } | PageStyle::BodyCursor { pointer, .. } => {
                let cursor = match body.pointer(pointer) {
                    Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                };
                match cursor {
                    Some(c) => {
                        state.cursor = Some(c);
                        true
                    }
                    None => false,
                }
            }
            PageStyle::LastId { has_more, id, param } => {
                if body.pointer(has_more) != Some(&Value::Bool(true)) {
                    false
                } else {
                    state.cursor = Some(last_id_value(last_id, id, param, has_more)?);
                    true
                }
            }
            PageStyle::PageNumber { first, .. } => {
                state.page = Some(state.page.unwrap_or(*first) + 1);
                true
            }
            PageStyle::Offset { .. } => true,
        };
        if state.origin.is_none() {
            state.origin = self.listing_origin().map(|o| o.to_string());
        }
        self.state = (more && !short && !total_reached).then_some(state);
        Ok(())
    }

    /// The origin of the listing's first request (what positions are stamped with).
    fn listing_origin(&self) -> Option<Origin> {
        self.client.resolve(&self.template).ok().as_ref().and_then(Origin::of)
    }

    /// A next-page URL the server sent (`link`, relative to `page`) as it is stored: refused
    /// outside the client's origins, and without the query parameters the auth provider
    /// adds (an API key echoed back in the link must not land in a checkpoint).
    fn next_url_from(&self, page: &Url, link: &str, what: &str) -> Result<String, Error> {
        let mut url = absolute(page, link)?;
        if let Some(scope) = &self.client.inner.scope
            && !scope.permits(&url)
        {
            return Err(crate::origin::refused(scope, &url, what)
                .with_hint(format!(
                    "if {} is the vendor's own and trusted, add it to `http.allowed_origins`; the stream stops at its \
                     last checkpoint and the next run re-reads this page",
                    crate::origin::shown(&url)
                ))
                .at(crate::observe::redact_url(page, &self.client.inner.secret_params)));
        }
        let secret = &self.client.inner.auth_query_params;
        if !secret.is_empty() && url.query_pairs().any(|(k, _)| secret.iter().any(|s| *s == k)) {
            let kept: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(k, _)| !secret.iter().any(|s| *s == *k))
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            url.set_query(None);
            if !kept.is_empty() {
                url.query_pairs_mut().extend_pairs(&kept);
            }
        }
        Ok(url.to_string())
    }

    /// A position from an earlier run must belong to this listing's origin, and a stored
    /// next URL must be one this client may request: no silent rebasing onto a new base URL.
    fn check_resumed(&self) -> Result<(), Error> {
        let Some(state) = &self.state else { return Ok(()) };
        let reset = "run `dovetail reset {pipeline} {stream}` to read the stream from the start at its configured \
                     origin (the sink keeps what it has; unchanged records are not written again)";
        if let (Some(stored), Some(now)) = (&state.origin, self.listing_origin())
            && stored != now.as_str()
        {
            return Err(Error::permanent(format!(
                "the stored position of this listing was written for {stored}, but the listing is now at {now} (the \
                 base URL or the path changed); a position is never carried from one origin to another"
            ))
            .with_hint(reset));
        }
        if let Some(u) = &state.url
            && let Ok(url) = Url::parse(u)
            && !self.client.permits(&url)
        {
            let now = self.listing_origin().map(|o| o.to_string()).unwrap_or_default();
            return Err(Error::permanent(format!(
                "the stored position of this listing points at {}, outside the origins this connector sends requests \
                 and credentials to (now {now})",
                crate::origin::shown(&url)
            ))
            .with_hint(reset));
        }
        Ok(())
    }
}

/// The `rel="next"` target of one `Link` header value (RFC 8288).
pub(crate) fn next_link(value: &str) -> Option<String> {
    link_rel(value, "next")
}

/// The target of one `Link` header value (RFC 8288) with relation `rel` (`next`, `last`).
pub fn link_rel(value: &str, rel: &str) -> Option<String> {
    value.split(',').find_map(|part| {
        let (target, params) = part.trim().strip_prefix('<')?.split_once('>')?;
        let found = params.split(';').any(|p| {
            let p = p.trim();
            p.strip_prefix("rel=")
                .is_some_and(|v| v.trim_matches('"').split_ascii_whitespace().any(|r| r.eq_ignore_ascii_case(rel)))
        });
        found.then(|| target.to_owned())
    })
}

/// The last item's id as the next request sends it: a string or an integer; anything else
/// (no id, `null`, an object) while more pages follow is a Data error naming the pointers.
fn last_id_value(v: Option<Value>, id: &str, param: &str, has_more: &str) -> Result<String, Error> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::Number(n)) => Ok(n.to_string()),
        other => Err(Error::data(format!(
            "last-id pagination: `{has_more}` says more pages follow, but the page's last item has {} at `{id}`, \
             so there is no `{param}` to ask for the next page",
            match other {
                None => "nothing".to_owned(),
                Some(v) => dovetail_core::json::json_type_phrase(&v).to_owned(),
            }
        ))),
    }
}

fn absolute(base: &Url, link: &str) -> Result<Url, Error> {
    base.join(link).map_err(|e| Error::permanent("the server sent an invalid next-page URL").with_source(e))
}

fn at_url(mut t: Request, url: String) -> Request {
    t.url = url;
    t.query.clear();
    t
}

fn with_param(mut t: Request, name: &str, value: &str) -> Request {
    t.query.retain(|(k, _)| k != name);
    t.query.push((name.to_owned(), value.to_owned()));
    t
}

/// What the items `pointer` found in `body` when it is not an array of items, as a message
/// continues after naming the pointer: `found nothing: the body is an array of 100 items` or
/// `is an object, not an array of records`. `None` when it found an array, `null`, or the body
/// is empty (`null`, `{}`, `[]`, `""`): those are an empty page, not a wrong pointer.
pub fn items_missed(body: &Value, pointer: &str) -> Option<String> {
    let empty = match body {
        Value::Null => true,
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    };
    match body.pointer(pointer) {
        Some(Value::Array(_) | Value::Null) => None,
        Some(other) => Some(format!("is {}, not an array of records", dovetail_core::json::json_type_phrase(other))),
        None if empty => None,
        None => Some(format!("found nothing: the body is {}", body_shape(body))),
    }
}

/// The shape of a body in a message: an array of N items, an object with its first keys.
fn body_shape(body: &Value) -> String {
    match body {
        Value::Array(a) => format!("an array of {} item{}", a.len(), if a.len() == 1 { "" } else { "s" }),
        Value::Object(o) => {
            let keys: Vec<String> = o.keys().take(5).map(|k| format!("`{k}`")).collect();
            let more = if o.len() > 5 { format!(" and {} more", o.len() - 5) } else { String::new() };
            format!("an object with keys {}{more}", keys.join(", "))
        }
        other => dovetail_core::json::json_type_phrase(other).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_link_headers() {
        let v = r#"<https://a.test/x?page=1>; rel="prev", <https://a.test/x?page=3>; rel="next last""#;
        assert_eq!(next_link(v).as_deref(), Some("https://a.test/x?page=3"));
        assert_eq!(next_link(r#"<https://a.test/x?page=1>; rel="prev""#), None);
    }

    #[test]
    fn a_records_pointer_that_finds_no_array_says_what_the_body_is() {
        use serde_json::json;
        let hundred = Value::Array((0..100).map(|i| json!({ "id": i })).collect());
        assert_eq!(
            items_missed(&hundred, "/data").as_deref(),
            Some("found nothing: the body is an array of 100 items")
        );
        assert_eq!(
            items_missed(&json!({"error": "x", "items": []}), "/data").as_deref(),
            Some("found nothing: the body is an object with keys `error`, `items`")
        );
        assert_eq!(
            items_missed(&json!({"data": {"id": 1}}), "/data").as_deref(),
            Some("is an object, not an array of records")
        );
        assert_eq!(items_missed(&json!("text"), "/data").as_deref(), Some("found nothing: the body is a string"));
        for fine in
            [json!({"data": [1]}), json!({"data": []}), json!({"data": null}), json!({}), json!([]), json!(null)]
        {
            assert_eq!(items_missed(&fine, "/data"), None, "{fine}");
        }
    }
}
