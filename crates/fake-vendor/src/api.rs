//! The vendor API proper: listings in five pagination styles, single records, comments, writes.

use std::io::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use hyper::HeaderMap;
use serde_json::{Map, Value};

use crate::config::Faults;
use crate::data::{Dataset, Key, dedup_key, parse_ts};
use crate::redirect;
use crate::server::{Inner, Reply, Rolls, Route, Shared};

/// How a listing paginates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// `GET /v1/items?cursor=`: opaque cursor in `meta.next_cursor`.
    Cursor,
    /// `GET /v1/items/next`: absolute URL of the next page in `next`.
    NextUrl,
    /// `GET /v1/items/link?page=`: bare array, RFC 8288 `Link: <…>; rel="next"`.
    Link,
    /// `GET /v1/items/paged?page=`: `{"data", "page"}`, empty past the end.
    Paged,
    /// `GET /v1/items/offset?offset=`: `{"data", "total"}`.
    Offset,
}

/// The parts of a request a handler reads.
pub(crate) struct Call<'a> {
    pub(crate) query: &'a [(String, String)],
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: &'a Bytes,
    pub(crate) faults: &'a Faults,
    pub(crate) rolls: &'a Rolls,
}

impl Call<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Runs the handler of an API route (auth and rate limit already passed).
pub(crate) fn dispatch(g: &mut Inner, shared: &Shared, route: Route, call: &Call<'_>) -> Reply {
    let result = match route {
        Route::List(style) => list(g, shared, style, call),
        Route::Item(id) => item(g, &id, call.faults),
        Route::Comments(id) => comments(g, shared, &id, call),
        Route::Create => create(g, call),
        Route::Upsert(ext) => upsert(g, ext, call),
        Route::Created => Ok(created_list(g)),
        Route::NotAllowed => Err(Reply::error(405, "method_not_allowed", "method not allowed")),
        Route::NotFound | Route::Token => Err(Reply::error(404, "not_found", "no such endpoint")),
    };
    result.unwrap_or_else(|e| e)
}

fn bad_request(message: &str) -> Reply {
    Reply::error(400, "invalid_request", message)
}

fn page_size(shared: &Shared, call: &Call<'_>) -> Result<usize, Reply> {
    let raw = call.param("limit").or_else(|| call.param("per_page"));
    let n = match raw {
        None => shared.page_size_default,
        Some(s) => s.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| bad_request("bad page size"))?,
    };
    Ok(usize::try_from(n.min(shared.page_size_max)).unwrap_or(usize::MAX))
}

fn since(call: &Call<'_>) -> Result<Option<i64>, Reply> {
    call.param("updated_since")
        .map(|s| parse_ts(s).ok_or_else(|| bad_request("updated_since is not RFC 3339")))
        .transpose()
}

fn number(call: &Call<'_>, name: &str, default: u64) -> Result<u64, Reply> {
    call.param(name).map_or(Ok(default), |s| s.parse().map_err(|_| bad_request(&format!("bad {name}"))))
}

fn encode_cursor(key: Key, page: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}.{}.{page}", key.0, key.1))
}

fn decode_cursor(text: &str) -> Result<(Key, u64), Reply> {
    let bad = || bad_request("invalid cursor");
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?).map_err(|_| bad())?;
    let mut parts = raw.split('.');
    let mut next = || parts.next().ok_or_else(bad);
    let ts = next()?.parse::<i64>().map_err(|_| bad())?;
    let id = next()?.parse::<u64>().map_err(|_| bad())?;
    let page = next()?.parse::<u64>().map_err(|_| bad())?;
    Ok(((ts, id), page))
}

fn write_array(out: &mut Vec<u8>, data: &Dataset, ids: &[u64], faults: &Faults) {
    out.push(b'[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        data.write_record(out, *id, faults);
    }
    out.push(b']');
}

fn list(g: &Inner, shared: &Shared, style: Style, call: &Call<'_>) -> Result<Reply, Reply> {
    let n = page_size(shared, call)?;
    let since = since(call)?;
    let data = &g.data;
    let mut out = Vec::with_capacity(n.min(10_000) * 320 + 64);
    let mut headers = Vec::new();
    let (count, page_index) = match style {
        Style::Cursor | Style::NextUrl => {
            let cursor = call.param("cursor").map(decode_cursor).transpose()?;
            let (ids, more) = data.page_after(cursor.map(|c| c.0), since, n);
            let page_index = cursor.map_or(0, |c| c.1);
            let next = if more { ids.last().and_then(|id| data.key_of(*id)) } else { None };
            let next = next.map(|k| encode_cursor(k, page_index + 1));
            out.extend_from_slice(b"{\"data\":");
            write_array(&mut out, data, &ids, call.faults);
            match (style, next) {
                (Style::Cursor, Some(c)) => {
                    let _ = write!(out, ",\"meta\":{{\"next_cursor\":\"{c}\"}}}}");
                }
                (Style::Cursor, None) => out.extend_from_slice(b",\"meta\":{\"next_cursor\":null}}"),
                (_, Some(c)) => {
                    let origin = redirect::origin(call.faults.link_origin.as_deref(), &shared.base_url);
                    let _ = write!(out, ",\"next\":\"{origin}/v1/items/next?limit={n}&cursor={c}\"}}");
                }
                (_, None) => out.extend_from_slice(b",\"next\":null}"),
            }
            (ids.len(), page_index)
        }
        Style::Link | Style::Paged => {
            let page = number(call, "page", 1)?;
            if page == 0 {
                return Err(bad_request("pages start at 1"));
            }
            let rank = data.rank_of_since(since).saturating_add((page - 1).saturating_mul(n as u64));
            let (ids, more) = data.page_at_rank(rank, n);
            if style == Style::Link {
                write_array(&mut out, data, &ids, call.faults);
                if more {
                    let since = call
                        .param("updated_since")
                        .map(|s| {
                            format!(
                                "&updated_since={}",
                                form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                            )
                        })
                        .unwrap_or_default();
                    let origin = redirect::origin(call.faults.link_origin.as_deref(), &shared.base_url);
                    let url = format!("{origin}/v1/items/link?per_page={n}&page={}{since}", page + 1);
                    headers.push(("link", format!("<{url}>; rel=\"next\"")));
                }
            } else {
                out.extend_from_slice(b"{\"data\":");
                write_array(&mut out, data, &ids, call.faults);
                let _ = write!(out, ",\"page\":{page}}}");
            }
            (ids.len(), page - 1)
        }
        Style::Offset => {
            let offset = number(call, "offset", 0)?;
            let rank0 = data.rank_of_since(since);
            let (ids, _) = data.page_at_rank(rank0.saturating_add(offset), n);
            out.extend_from_slice(b"{\"data\":");
            write_array(&mut out, data, &ids, call.faults);
            let _ = write!(out, ",\"total\":{}}}", data.len() - rank0);
            (ids.len(), offset / n as u64)
        }
    };
    let mut reply = Reply::json(200, out);
    reply.headers = headers;
    reply.listing = true;
    reply.etag = true;
    let times = call.faults.malformed_page_times;
    if call.faults.malformed_page == Some(page_index) && (times == 0 || g.malformed_served < times) {
        // Cut mid-record: a complete HTTP message whose JSON can never parse.
        reply.body = reply.body.slice(..reply.body.len() / 2);
        reply.malformed = true;
    } else {
        reply.page_records = Some(count as u64);
    }
    Ok(reply)
}

fn parse_id(text: &str, data: &Dataset) -> Result<u64, Reply> {
    text.parse::<u64>().ok().filter(|id| data.exists(*id)).ok_or_else(|| Reply::error(404, "not_found", "no such item"))
}

fn item(g: &Inner, id: &str, faults: &Faults) -> Result<Reply, Reply> {
    let id = parse_id(id, &g.data)?;
    let mut out = Vec::with_capacity(400);
    g.data.write_record(&mut out, id, faults);
    let mut reply = Reply::json(200, out);
    reply.etag = true;
    Ok(reply)
}

fn comments(g: &Inner, shared: &Shared, item: &str, call: &Call<'_>) -> Result<Reply, Reply> {
    let item = parse_id(item, &g.data)?;
    let n = page_size(shared, call)? as u64;
    let (start, page) = match call.param("cursor") {
        Some(c) => {
            let ((kind, index), page) = decode_cursor(c)?;
            if kind != -1 {
                return Err(bad_request("invalid cursor"));
            }
            (index, page)
        }
        None => (0, 0),
    };
    let count = g.data.comment_count(item);
    let end = start.saturating_add(n).min(count);
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"data\":[");
    for i in start..end {
        if i > start {
            out.push(b',');
        }
        g.data.write_comment(&mut out, item, i);
    }
    if end < count {
        // Kind -1 keeps comment cursors apart from item cursors.
        let _ = write!(out, "],\"meta\":{{\"next_cursor\":\"{}\"}}}}", encode_cursor((-1, end), page + 1));
    } else {
        out.extend_from_slice(b"],\"meta\":{\"next_cursor\":null}}");
    }
    let mut reply = Reply::json(200, out);
    reply.listing = true;
    reply.etag = true;
    reply.page_records = Some(end.saturating_sub(start));
    Ok(reply)
}

fn parse_object(body: &Bytes) -> Result<Map<String, Value>, Reply> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(bad_request("body must be a JSON object")),
        Err(e) => Err(bad_request(&format!("body is not JSON: {e}"))),
    }
}

/// Stores a new object; counts it, and counts it as a duplicate when its identity was seen before.
fn store(g: &mut Inner, body: Map<String, Value>) -> Value {
    let created = &mut g.created;
    let n = created.objects.len() + 1;
    if !created.seen.insert(dedup_key(&body)) {
        g.rec.stats.duplicate_creations += 1;
    }
    g.rec.stats.creations += 1;
    let mut obj = Map::new();
    obj.insert("id".to_owned(), Value::String(format!("obj_{n}")));
    obj.extend(body.into_iter().filter(|(k, _)| k != "id"));
    if let Some(Value::String(ext)) = obj.get("external_id") {
        created.by_external_id.entry(ext.clone()).or_insert(n - 1);
    }
    let obj = Value::Object(obj);
    created.objects.push(obj.clone());
    obj
}

fn create(g: &mut Inner, call: &Call<'_>) -> Result<Reply, Reply> {
    let body = parse_object(call.body)?;
    let key = call.headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let Some(key) = &key
        && let Some((stored_body, stored)) = g.created.idempotency.get(key)
    {
        if *stored_body != Value::Object(body) {
            return Err(Reply::error(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request body",
            ));
        }
        let stored = stored.clone();
        g.rec.stats.idempotent_replays += 1;
        return Ok(Reply::json(201, stored).header("idempotent-replayed", "true"));
    }
    let obj = store(g, body.clone());
    let bytes = Bytes::from(obj.to_string());
    if let Some(key) = key {
        g.created.idempotency.insert(key, (Value::Object(body), bytes.clone()));
    }
    let mut reply = Reply::json(201, bytes);
    reply.drop_connection = call.rolls.drop_after_create < call.faults.drop_after_create_ratio;
    Ok(reply)
}

fn upsert(g: &mut Inner, ext: String, call: &Call<'_>) -> Result<Reply, Reply> {
    let mut body = parse_object(call.body)?;
    body.insert("external_id".to_owned(), Value::String(ext.clone()));
    let obj = match g.created.by_external_id.get(&ext).copied() {
        Some(i) => {
            let id = g.created.objects[i].get("id").cloned().unwrap_or(Value::Null);
            let mut obj = Map::new();
            obj.insert("id".to_owned(), id);
            obj.extend(body.into_iter().filter(|(k, _)| k != "id"));
            let obj = Value::Object(obj);
            g.created.objects[i] = obj.clone();
            obj
        }
        None => store(g, body),
    };
    Ok(Reply::json(200, obj.to_string()))
}

fn created_list(g: &Inner) -> Reply {
    Reply::json(200, serde_json::json!({ "data": g.created.objects }).to_string())
}
