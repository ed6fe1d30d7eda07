//! Pagination as a pull iterator: [`Paginator::next_page`] returns `Ok(Some(page))` until
//! the last page, then `Ok(None)`. (A pull iterator rather than a `Stream` keeps the borrow
//! of the client simple and lets the caller commit a cursor between pages.)
//!
//! Styles: RFC 8288 `Link: <…>; rel="next"`, a cursor at a JSON pointer sent back as a query
//! parameter, a next URL at a JSON pointer, a page number and an offset. Each stops at an
//! empty page or when there is no next, and each has a loop guard: a next URL or cursor
//! already seen, or (page number / offset) a page identical to the one before, ends with
//! an error instead of looping forever.

use std::collections::HashSet;

use dovetail_core::Error;
use reqwest::Url;
use serde_json::Value;

use crate::client::HttpClient;
use crate::request::{Request, Response};

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
    /// The decoded body.
    pub body: Value,
    /// The page's items: the array at the items pointer, or the body if it is an array.
    pub items: Vec<Value>,
}

/// Pulls the pages of one listing.
#[derive(Debug)]
pub struct Paginator {
    client: HttpClient,
    template: Request,
    style: PageStyle,
    items_pointer: Option<String>,
    next: Option<Request>,
    seen: HashSet<String>,
    last_body: Option<Value>,
    received: u64,
    page: u64,
}

impl HttpClient {
    /// Pages of the listing that `first` starts, found by `style`.
    pub fn paginate(&self, first: Request, style: PageStyle) -> Paginator {
        let mut next = first.clone();
        match &style {
            PageStyle::PageNumber { param, first: n } => next = with_param(next, param, &n.to_string()),
            PageStyle::Offset { param } => next = with_param(next, param, "0"),
            _ => {}
        }
        let page = match &style {
            PageStyle::PageNumber { first, .. } => *first,
            _ => 0,
        };
        Paginator {
            client: self.clone(),
            template: first,
            style,
            items_pointer: None,
            next: Some(next),
            seen: HashSet::new(),
            last_body: None,
            received: 0,
            page,
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

    /// The next page, `None` after the last one.
    pub async fn next_page(&mut self) -> Result<Option<Page>, Error> {
        let Some(req) = self.next.take() else { return Ok(None) };
        let (response, body) = self.client.send_decode(req, |r| Ok((r.clone(), r.json::<Value>()?))).await?;
        let items = match &self.items_pointer {
            Some(p) => body.pointer(p).and_then(Value::as_array).cloned(),
            None => body.as_array().cloned(),
        };
        if items.as_ref().is_some_and(Vec::is_empty) {
            return Ok(None);
        }
        let items = items.unwrap_or_default();
        self.received += items.len() as u64;
        self.next = self.next_request(&response, &body)?;
        self.last_body = Some(body.clone());
        Ok(Some(Page { response, body, items }))
    }

    fn next_request(&mut self, resp: &Response, body: &Value) -> Result<Option<Request>, Error> {
        let t = self.template.clone();
        let next = match &self.style {
            PageStyle::LinkHeader => {
                let link = resp.headers.get_all("link").iter().filter_map(|v| v.to_str().ok()).find_map(next_link);
                link.map(|l| absolute(&resp.url, &l))
                    .transpose()?
                    .map(|u| self.guard(u.to_string()).map(|u| at_url(t, u)))
            }
            PageStyle::NextUrl { pointer } => {
                match body.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty()) {
                    Some(u) => Some(self.guard(absolute(&resp.url, u)?.to_string()).map(|u| at_url(t, u))),
                    None => None,
                }
            }
            PageStyle::Cursor { pointer, param } => {
                let cursor = match body.pointer(pointer) {
                    Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                };
                let param = param.clone();
                cursor.map(|c| self.guard(c).map(|c| with_param(t, &param, &c)))
            }
            PageStyle::PageNumber { param, .. } => {
                self.guard_repeat(body)?;
                self.page += 1;
                Some(Ok(with_param(t, param, &self.page.to_string())))
            }
            PageStyle::Offset { param } => {
                self.guard_repeat(body)?;
                Some(Ok(with_param(t, param, &self.received.to_string())))
            }
        };
        next.transpose()
    }

    /// A next URL or cursor must be new.
    fn guard(&mut self, next: String) -> Result<String, Error> {
        if self.seen.insert(next.clone()) {
            return Ok(next);
        }
        let shown = Url::parse(&next).map(|u| crate::observe::redact_url(&u, &[])).unwrap_or(next);
        Err(Error::permanent(format!("pagination loop: the server sent `{shown}` as next twice")))
    }

    /// A numbered page identical to the previous one means the parameter is ignored.
    fn guard_repeat(&self, body: &Value) -> Result<(), Error> {
        if self.last_body.as_ref() == Some(body) {
            return Err(Error::permanent(
                "pagination loop: two consecutive pages are identical (page parameter ignored?)",
            ));
        }
        Ok(())
    }
}

/// The `rel="next"` target of one `Link` header value (RFC 8288).
fn next_link(value: &str) -> Option<String> {
    value.split(',').find_map(|part| {
        let (target, params) = part.trim().strip_prefix('<')?.split_once('>')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim();
            p.strip_prefix("rel=")
                .is_some_and(|v| v.trim_matches('"').split_ascii_whitespace().any(|r| r.eq_ignore_ascii_case("next")))
        });
        is_next.then(|| target.to_owned())
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_link_headers() {
        let v = r#"<https://a.test/x?page=1>; rel="prev", <https://a.test/x?page=3>; rel="next last""#;
        assert_eq!(next_link(v).as_deref(), Some("https://a.test/x?page=3"));
        assert_eq!(next_link(r#"<https://a.test/x?page=1>; rel="prev""#), None);
    }
}
