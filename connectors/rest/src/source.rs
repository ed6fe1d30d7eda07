//! The REST source: pages of JSON records from configured endpoints.
//!
//! Each `read` fetches one page. The position handed to the engine is small JSON:
//! `{"page": <PageState>}` for a stream, and for a child stream
//! `{"parents": <PageState> | null, "pending": [<parent fields>...], "child": <PageState> | null}`
//! (the parent listing's next page, the parents of the current parent page still to visit,
//! and where the current parent's child listing continues). A position that does not
//! decode is a permanent error: the engine reports a corrupt checkpoint instead of guessing.

use std::sync::Arc;

use async_trait::async_trait;
use dovetail_core::{
    BuildCx, Cx, Error, ErrorKind, Extent, FieldPath, Location, Next, Page, ReadRequest, Record, Reject, Source,
    SourceConnector, StreamSpec, position,
};
use dovetail_http::paginate::{PageState, PageStyle, Paginator};
// The sink builds its paths with the same encoder (`crate::source::encode_segment`).
pub(crate) use dovetail_http::encode_segment;
use dovetail_http::{HttpClient, Request};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::warn;

use crate::config::{Pagination, RestSourceConfig, RestStreamConfig};

/// A JSON REST API as a dovetail source, configured entirely in TOML (`kind = "rest"`).
#[derive(Debug, Clone)]
pub struct RestSource {
    pub(crate) client: HttpClient,
    pub(crate) streams: Arc<Vec<StreamDef>>,
    api_version: Option<String>,
    /// Per stream, how far its listing goes as its last page said (for progress bars).
    extents: Arc<std::sync::Mutex<std::collections::HashMap<String, Extent>>>,
}

#[derive(Debug)]
pub(crate) struct StreamDef {
    cfg: RestStreamConfig,
    spec: StreamSpec,
    style: Option<PageStyle>,
    /// Index of the parent stream's definition.
    parent: Option<usize>,
    /// Parent fields the path and the copied fields need.
    parent_fields: Vec<String>,
}

/// What one page of a listing yields: its records, the rejects of a page stepped over, and
/// the listing's next state (`None`: ended).
type PageOut = (Vec<Record>, Vec<Reject>, Option<PageState>);

/// Where a child stream is.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChildPosition {
    /// Next page of the parent listing; `None` once it is exhausted.
    parents: Option<PageState>,
    /// Parents of the current parent page not finished yet (the first is in progress).
    pending: Vec<Map<String, Value>>,
    /// Where the first pending parent's child listing continues.
    child: Option<PageState>,
}

/// Where a stream is.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamPosition {
    pub(crate) page: PageState,
}

impl SourceConnector for RestSource {
    const KIND: &'static str = crate::SOURCE_KIND;
    type Config = RestSourceConfig;

    fn build(config: RestSourceConfig, cx: &BuildCx) -> Result<Self, Error> {
        if config.streams.is_empty() {
            return Err(Error::config("`streams` is empty: define at least one stream"));
        }
        let client = crate::client::build(
            crate::SOURCE_KIND,
            &config.base_url,
            config.auth.as_ref(),
            config.api_version.as_ref(),
            &config.http,
            None,
            cx,
        )?;
        let names: Vec<&str> = config.streams.iter().map(|s| s.name.as_str()).collect();
        let mut defs = Vec::with_capacity(config.streams.len());
        for (i, s) in config.streams.iter().enumerate() {
            if names[..i].contains(&s.name.as_str()) {
                return Err(Error::config(format!("stream `{}` is defined twice", s.name)));
            }
            defs.push(define(s, &names)?);
            check_configured_origin(&client, s)?;
        }
        Ok(RestSource {
            client,
            streams: Arc::new(defs),
            api_version: config.api_version.map(|v| v.value),
            extents: Arc::default(),
        })
    }
}

fn define(s: &RestStreamConfig, names: &[&str]) -> Result<StreamDef, Error> {
    let at = |what: &str| Error::config(format!("stream `{}`: {what}", s.name));
    if s.primary_key.is_empty() || s.primary_key.iter().any(String::is_empty) {
        return Err(at("`primary_key` must list at least one field"));
    }
    let whole_url = whole_url_field(&s.path);
    if whole_url.is_some() && s.parent.is_none() {
        return Err(at(&format!("`path` takes its URL from `{}` but the stream has no `parent`", s.path)));
    }
    if !s.path.starts_with('/') && !is_absolute(&s.path) && whole_url.is_none() {
        return Err(at(
            "`path` must start with `/` (it is joined to `base_url`), be an absolute URL, or be one parent field \
             such as `{parent.url}`",
        ));
    }
    if let Some(p) = &s.records
        && !p.is_empty()
        && !p.starts_with('/')
    {
        return Err(at(&format!("`records` must be a JSON pointer such as `/data`, not `{p}`")));
    }
    let style = match &s.pagination {
        Pagination::None => None,
        Pagination::Cursor { pointer, param } => {
            Some(PageStyle::Cursor { pointer: pointer.clone(), param: param.clone() })
        }
        Pagination::BodyCursor { pointer, field, body } => {
            if !body.is_object() {
                return Err(at("`pagination.body` must be a table (the JSON object POSTed for each page)"));
            }
            Some(PageStyle::BodyCursor { pointer: pointer.clone(), field: field.clone() })
        }
        Pagination::LastId { param, has_more, id } => {
            Some(PageStyle::LastId { param: param.clone(), has_more: has_more.clone(), id: id.clone() })
        }
        Pagination::NextUrl { pointer } => Some(PageStyle::NextUrl { pointer: pointer.clone() }),
        Pagination::LinkHeader => Some(PageStyle::LinkHeader),
        Pagination::PageNumber { param, first, .. } => {
            Some(PageStyle::PageNumber { param: param.clone(), first: *first })
        }
        Pagination::Offset { param, .. } => Some(PageStyle::Offset { param: param.clone() }),
    };
    let placeholders = placeholders(&s.path);
    let parent = match &s.parent {
        None => {
            if let Some(p) = placeholders.first() {
                return Err(at(&format!("`path` uses `{{{p}}}` but the stream has no `parent`")));
            }
            None
        }
        Some(p) => {
            let idx = names.iter().position(|n| *n == p.stream).ok_or_else(|| {
                at(&format!("`parent.stream` names `{}`, which is not a stream of this source", p.stream))
            })?;
            if p.stream == s.name {
                return Err(at("a stream cannot be its own parent"));
            }
            Some(idx)
        }
    };
    let mut parent_fields: Vec<String> =
        placeholders.iter().map(|p| p.trim_start_matches("parent.").to_owned()).collect();
    if let Some(p) = &s.parent {
        parent_fields.extend(p.fields.values().cloned());
    }
    parent_fields.sort();
    parent_fields.dedup();
    let mut spec = StreamSpec::new(s.name.clone(), s.primary_key.iter().map(FieldPath::new).collect());
    if let Some(inc) = &s.incremental {
        spec = spec.with_cursor(FieldPath::new(&inc.cursor_field));
        if inc.lookback_secs > 0 {
            spec.lookback = Some(std::time::Duration::from_secs(inc.lookback_secs));
        }
    }
    spec.schema = s.schema.clone();
    Ok(StreamDef { cfg: s.clone(), spec, style, parent, parent_fields })
}

fn is_absolute(path: &str) -> bool {
    path.starts_with("http://") || path.starts_with("https://")
}

/// The parent field of a path that is one placeholder (`{parent.links.next}`): the child's
/// URL is that field's value, not a segment of a path.
fn whole_url_field(path: &str) -> Option<&str> {
    let inner = path.strip_prefix("{parent.")?.strip_suffix('}')?;
    (!inner.is_empty() && !inner.contains(['{', '}'])).then_some(inner)
}

/// An absolute configured path must be one the client may request. Only the part before
/// the first placeholder is checked here (a placeholder inside the host is checked when
/// the request is built from a parent's data).
fn check_configured_origin(client: &HttpClient, s: &RestStreamConfig) -> Result<(), Error> {
    if !is_absolute(&s.path) {
        return Ok(());
    }
    let fixed = &s.path[..s.path.find('{').unwrap_or(s.path.len())];
    let authority_done = fixed.split_once("://").is_some_and(|(_, rest)| rest.contains('/'));
    if !authority_done {
        return Ok(());
    }
    client
        .check_url(fixed, &format!("the path of stream `{}`", s.name))
        .map_err(|e| Error::config(format!("stream `{}`: {}", s.name, e.message())).with_hint(e.next_step()))
}

/// `{parent.x}` placeholders of a path, without braces.
fn placeholders(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else { break };
        out.push(rest[open + 1..open + close].to_owned());
        rest = &rest[open + close + 1..];
    }
    out
}

/// A parent field as it appears in a URL path segment.
fn path_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl RestSource {
    fn def(&self, stream: &str) -> Result<(usize, &StreamDef), Error> {
        self.streams
            .iter()
            .enumerate()
            .find(|(_, d)| d.cfg.name == stream)
            .ok_or_else(|| Error::config(format!("the rest source has no stream `{stream}`")))
    }

    /// The first request of a listing, with the stream's query and the incremental bound.
    pub(crate) fn template(
        &self,
        def: &StreamDef,
        parent: Option<&Map<String, Value>>,
        since: Option<&Value>,
    ) -> Result<Request, Error> {
        let mut path = def.cfg.path.clone();
        if let (Some(fields), Some(field)) = (parent, whole_url_field(&def.cfg.path)) {
            path = match fields.get(field) {
                Some(Value::String(u)) if !u.is_empty() => u.clone(),
                _ => {
                    return Err(Error::data(format!(
                        "stream `{}`: the parent record's `{field}` is not a URL for the child listing",
                        def.cfg.name
                    )));
                }
            };
            let what = format!("the URL of child stream `{}` from the parent's `{field}`", def.cfg.name);
            self.client.check_url(&path, &what)?;
        } else if let Some(fields) = parent {
            for p in placeholders(&def.cfg.path) {
                let name = p.trim_start_matches("parent.");
                let v = fields.get(name).filter(|v| !v.is_null()).ok_or_else(|| {
                    Error::data(format!("stream `{}`: the parent record has no `{name}` for the path", def.cfg.name))
                })?;
                path = path.replace(&format!("{{{p}}}"), &encode_segment(&path_text(v)));
            }
        }
        let mut req = match &def.cfg.pagination {
            // A search-style POST changes nothing: retried like a GET, never cached.
            Pagination::BodyCursor { body, .. } => Request::post(path).json(body).repeatable(true).cacheable(false),
            _ => Request::get(path).cacheable(def.cfg.conditional_requests),
        };
        for (k, v) in &def.cfg.query {
            req = req.query(k, v);
        }
        if let Some(inc) = &def.cfg.incremental
            && let Some(param) = &inc.param
        {
            let value = match since {
                Some(Value::String(s)) => Some(s.clone()),
                Some(v) if !v.is_null() => Some(v.to_string()),
                _ => inc.initial.clone(),
            };
            if let Some(v) = value {
                req = req.query(param, v);
            }
        }
        Ok(req)
    }

    pub(crate) fn paginator(&self, def: &StreamDef, template: Request, state: PageState) -> Paginator {
        let style = def.style.clone().unwrap_or(PageStyle::LinkHeader);
        let mut p = self.client.paginate_from(template, style, state);
        if let Some(ptr) = def.cfg.records.as_deref().filter(|p| !p.is_empty()) {
            p = p.items_at(ptr);
        }
        match &def.cfg.pagination {
            Pagination::PageNumber { page_size, total_pointer, .. }
            | Pagination::Offset { page_size, total_pointer, .. } => {
                if let Some(n) = page_size {
                    p = p.stop_when_fewer_than(*n as usize);
                }
                if let Some(t) = total_pointer {
                    p = p.total_at(t);
                }
            }
            _ => {}
        }
        p
    }

    /// One page of a listing: its records and the listing's next state (`None`: ended).
    /// A page that never decodes is skipped with a reject where the style allows it.
    async fn page(
        &self,
        def: &StreamDef,
        template: Request,
        state: PageState,
        parent: Option<&Map<String, Value>>,
    ) -> Result<PageOut, Error> {
        let mut p = self.paginator(def, template, state);
        let offset = p.state().map(|s| s.received).unwrap_or(0);
        let url = p.next_url().unwrap_or_default();
        let page = match p.next_page().await {
            Ok(page) => page,
            // A loop is bad data too, but no page to skip: the error stands as it is.
            Err(e) if *e.kind() == ErrorKind::Data && !p.looped() => {
                let page_size = match &def.cfg.pagination {
                    Pagination::PageNumber { page_size, .. } | Pagination::Offset { page_size, .. } => *page_size,
                    _ => None,
                };
                let skippable = match def.style {
                    Some(PageStyle::Offset { .. }) => page_size.is_some(),
                    Some(PageStyle::PageNumber { .. }) => true,
                    _ => false,
                };
                if skippable && p.skip_page(page_size.unwrap_or(0)) {
                    warn!(stream = %def.cfg.name, url = %url, error = %e.report(), "a page never decoded; it is dead-lettered and the stream goes on");
                    let reject = Reject {
                        location: None,
                        reason: format!("page {url} was not valid JSON after every retry: {}", e.report()),
                        path: None,
                        raw: url.clone(),
                        drift: None,
                    };
                    return Ok((vec![], vec![reject], p.state().cloned()));
                }
                return Err(Error::new(
                    ErrorKind::Data,
                    format!(
                        "page {url} was not valid JSON after every retry; with {} pagination the next page is only known from this one, so the stream stops at its last checkpoint and the next run starts at this page",
                        pagination_name(&def.cfg.pagination)
                    ),
                )
                .with_hint(format!(
                    "nothing was dead-lettered: the page {url} must decode before the stream can go on; fix \
                     the API's answer (see the cause above), then run `dovetail run {{pipeline}}` again"
                ))
                .with_source(e));
            }
            Err(e) => return Err(e),
        };
        self.page_records(def, &p, page, offset, parent, &url)
    }

    /// What a decoded page of `def`'s listing yields: its records (each with the fields
    /// copied from its parent and its place in the listing) and the listing's next state
    /// (`None`: ended); a body where `records` finds no array is a Data error.
    pub(crate) fn page_records(
        &self,
        def: &StreamDef,
        p: &Paginator,
        page: Option<dovetail_http::paginate::Page>,
        offset: u64,
        parent: Option<&Map<String, Value>>,
        url: &str,
    ) -> Result<PageOut, Error> {
        let Some(page) = page else {
            if let Some(what) = p.missed_items() {
                return Err(records_missed(def, what, url));
            }
            return Ok((vec![], vec![], None));
        };
        if parent.is_none()
            && let Some(extent) = extent(def, &page)
        {
            self.extents.lock().unwrap_or_else(|p| p.into_inner()).insert(def.cfg.name.clone(), extent);
        }
        let prov = Arc::new(page.response.provenance(crate::SOURCE_KIND, self.api_version.as_deref()));
        let mut records = Vec::with_capacity(page.items.len());
        for (i, mut item) in page.items.into_iter().enumerate() {
            if let (Some(fields), Some(cfg)) = (parent, def.cfg.parent.as_ref())
                && let Value::Object(obj) = &mut item
            {
                for (child_field, parent_field) in &cfg.fields {
                    if let Some(v) = fields.get(parent_field) {
                        obj.insert(child_field.clone(), v.clone());
                    }
                }
            }
            records.push(Record::new(item, prov.clone()).at(Location::Item(offset + i as u64)));
        }
        let next = if def.style.is_none() { None } else { p.state().cloned() };
        Ok((records, vec![], next))
    }

    async fn read_child(&self, def: &StreamDef, parent_idx: usize, req: &ReadRequest) -> Result<Page, Error> {
        let parent_def = &self.streams[parent_idx];
        let mut pos: ChildPosition = match &req.position {
            None => ChildPosition { parents: Some(PageState::default()), ..Default::default() },
            Some(v) => position::decode(&def.cfg.name, v)?,
        };
        let mut rejects = Vec::new();
        loop {
            if let Some(fields) = pos.pending.first().cloned() {
                let template = self.template(def, Some(&fields), req.since.as_ref())?.use_cache(req.use_cache);
                let (records, mut rej, next) =
                    self.page(def, template, pos.child.take().unwrap_or_default(), Some(&fields)).await?;
                rejects.append(&mut rej);
                match next {
                    Some(state) => pos.child = Some(state),
                    None => {
                        pos.pending.remove(0);
                    }
                }
                if !records.is_empty() || !rejects.is_empty() {
                    return Ok(Page { records, rejects, next: child_next(&pos)? });
                }
                continue;
            }
            let Some(state) = pos.parents.take() else {
                return Ok(Page { records: vec![], rejects, next: Next::Done { resume: None } });
            };
            let template = self.template(parent_def, None, None)?.use_cache(req.use_cache);
            let (parents, mut rej, next) = self.page(parent_def, template, state, None).await?;
            rejects.append(&mut rej);
            pos.parents = next;
            pos.pending = parents
                .iter()
                .map(|r| {
                    def.parent_fields
                        .iter()
                        .filter_map(|f| FieldPath::new(f).get(&r.data).map(|v| (f.clone(), v.clone())))
                        .collect()
                })
                .collect();
            if !rejects.is_empty() {
                return Ok(Page { records: vec![], rejects, next: child_next(&pos)? });
            }
        }
    }
}

/// The error of a page whose body holds no array where `records` points: a wrong pointer
/// would otherwise read as an empty listing and succeed with nothing.
fn records_missed(def: &StreamDef, what: &str, url: &str) -> Error {
    let ptr = def.cfg.records.as_deref().unwrap_or_default();
    Error::data(format!("stream `{}`: `records = {ptr:?}` {what} ({url})", def.cfg.name)).with_hint(
        "set `records` to the JSON pointer of the array of records in the body (leave it out when the body is the array itself)",
    )
}

fn child_next(pos: &ChildPosition) -> Result<Next, Error> {
    if pos.pending.is_empty() && pos.parents.is_none() {
        return Ok(Next::Done { resume: None });
    }
    position::encode(pos)
}

fn pagination_name(p: &Pagination) -> &'static str {
    match p {
        Pagination::None => "no",
        Pagination::Cursor { .. } => "cursor",
        Pagination::BodyCursor { .. } => "body-cursor",
        Pagination::LastId { .. } => "last-id",
        Pagination::NextUrl { .. } => "next-URL",
        Pagination::LinkHeader => "Link-header",
        Pagination::PageNumber { .. } => "page-number",
        Pagination::Offset { .. } => "offset",
    }
}

#[async_trait]
impl Source for RestSource {
    fn kind(&self) -> &'static str {
        crate::SOURCE_KIND
    }

    fn http_report(&self) -> Option<dovetail_core::HttpReport> {
        Some(self.client.report())
    }

    fn extent(&self, stream: &str) -> Option<Extent> {
        self.extents.lock().unwrap_or_else(|p| p.into_inner()).get(stream).copied()
    }

    fn streams(&self) -> Vec<StreamSpec> {
        self.streams.iter().map(|d| d.spec.clone()).collect()
    }

    async fn check(&self, _cx: &Cx) -> Result<(), Error> {
        let def = self.streams.iter().find(|d| d.parent.is_none()).unwrap_or(&self.streams[0]);
        if def.parent.is_some() {
            return Err(Error::config("every stream is a child stream: at least one needs no parent"));
        }
        let template = self.template(def, None, None)?;
        let response = self.client.send(template).await.map_err(|e| e.in_stream(&def.cfg.name))?;
        if let Some(ptr) = def.cfg.records.as_deref().filter(|p| !p.is_empty()) {
            let body: Value = response.json().map_err(|e| e.in_stream(&def.cfg.name))?;
            if let Some(what) = dovetail_http::paginate::items_missed(&body, ptr) {
                return Err(records_missed(def, &what, response.url.path()));
            }
        }
        Ok(())
    }

    async fn read(&self, req: &ReadRequest, cx: &Cx) -> Result<Page, Error> {
        let (_, def) = self.def(&req.stream)?;
        let read = async {
            if let Some(parent) = def.parent {
                return self.read_child(def, parent, req).await;
            }
            let state = match &req.position {
                None => PageState::default(),
                Some(v) => position::decode::<StreamPosition>(&def.cfg.name, v)?.page,
            };
            let template = self.template(def, None, req.since.as_ref())?.use_cache(req.use_cache);
            let (records, rejects, next) = self.page(def, template, state, None).await?;
            let next = match next {
                Some(page) => position::encode(&StreamPosition { page })?,
                None => Next::Done { resume: None },
            };
            Ok(Page { records, rejects, next })
        };
        tokio::select! {
            r = read => r,
            () = cx.cancel.cancelled() => Err(Error::new(ErrorKind::Interrupted, "stopped while waiting for the API")),
        }
    }
}

/// How far a listing goes, from one of its pages: the body's total (`total_pointer`), or a
/// `Link` header's `rel="last"` page number (`page` in its query) beside the page read.
fn extent(def: &StreamDef, page: &dovetail_http::paginate::Page) -> Option<Extent> {
    if let Pagination::PageNumber { total_pointer: Some(t), .. } | Pagination::Offset { total_pointer: Some(t), .. } =
        &def.cfg.pagination
    {
        return page.body.pointer(t).and_then(Value::as_u64).map(Extent::Records);
    }
    let link = page.response.headers.get("link")?.to_str().ok()?;
    let last = dovetail_http::paginate::link_rel(link, "last")?;
    let number = |url: &dovetail_http::Url| {
        url.query_pairs().find(|(k, _)| k == "page").and_then(|(_, v)| v.parse::<u64>().ok())
    };
    let last = number(&page.response.url.join(&last).ok()?)?;
    let at = number(&page.response.url).unwrap_or(1);
    Some(Extent::Pages { at: at.min(last), last })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_segments() {
        assert_eq!(placeholders("/v1/items/{parent.id}/comments/{parent.x}"), vec!["parent.id", "parent.x"]);
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
    }
}
