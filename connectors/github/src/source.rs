//! [`GithubSource`]: `impl Source` and `SourceConnector` for `kind = "github"`.
//!
//! Each `read` returns one page of one repository's listing (Link-header pagination, the
//! `next` URL followed only within the client's origins: dovetail-http's rule). Positions are small JSON:
//! `{"page": <PageState>}` for `repositories` and `{"repo": "owner/name", "page":
//! <PageState>}` for the per-repository streams, which visit the repositories in order
//! (the configured list, or the owner's repositories sorted by full name). A position that
//! does not decode is a `Permanent` error: the engine reports a corrupt checkpoint.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use dovetail_core::record::compare_cursors;
use dovetail_core::{
    BuildCx, Cx, DriftClass, Error, ErrorKind, Location, Next, Page, ReadRequest, Record, Reject, Source,
    SourceConnector, StreamSpec, position,
};
use dovetail_http::paginate::{PageState, PageStyle};
use dovetail_http::{HttpClient, HttpClientBuilder, Request, Response, encode_segment, redact_url};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::OnceCell;
use tracing::{info, warn};

use crate::config::{GithubConfig, GithubStream, OwnerType, StreamSettings};
use crate::mapping;
use crate::streams::{self, Endpoint};

/// The GitHub source (`kind = "github"`).
#[derive(Debug, Clone)]
pub struct GithubSource {
    client: HttpClient,
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    owner: String,
    owner_type: OwnerType,
    /// Configured repositories as `owner/name`, in order; empty = discover.
    configured: Vec<String>,
    streams: Vec<GithubStream>,
    settings: BTreeMap<GithubStream, StreamSettings>,
    /// Listing pages read per stream in this run, for `max_pages`.
    pages_read: Mutex<HashMap<GithubStream, u32>>,
    /// Streams read in this run so far: a newest-first stream's first read restarts its
    /// descent at the newest page.
    started: Mutex<HashSet<GithubStream>>,
    api_version: String,
    start_date: Option<Value>,
    /// `orgs` or `users`, once known.
    owner_kind: OnceCell<&'static str>,
    /// Discovered repositories (sorted by full name), once listed.
    discovered: OnceCell<Vec<String>>,
}

/// Where a stream is.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Position {
    /// The repository being read (`owner/name`); absent for `repositories`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    repo: Option<String>,
    /// Where its listing continues.
    page: PageState,
    /// The run that stored it was cut short by `max_pages`: the next run continues here
    /// (a newest-first descent otherwise restarts at the newest page).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    preview: bool,
}

/// What a dead letter of this source holds: the GitHub object and its repository.
#[derive(Debug, Serialize, Deserialize)]
struct RawObject {
    github_repository: String,
    github_object: Value,
}

impl SourceConnector for GithubSource {
    const KIND: &'static str = crate::KIND;
    type Config = GithubConfig;

    fn build(config: GithubConfig, cx: &BuildCx) -> Result<Self, Error> {
        Self::build_with(config, cx, |b| b)
    }
}

impl GithubSource {
    /// Build with a hook on the HTTP client builder (tests set a `FakeClock` or a retry seed).
    pub fn build_with(
        config: GithubConfig,
        cx: &BuildCx,
        customize: impl FnOnce(HttpClientBuilder) -> HttpClientBuilder,
    ) -> Result<Self, Error> {
        let client = customize(crate::client::builder(&config, cx)?).build()?;
        let mut configured = Vec::with_capacity(config.repositories.len());
        for r in &config.repositories {
            let full = match r.split_once('/') {
                None if !r.is_empty() => format!("{}/{r}", config.owner),
                Some((o, n)) if !o.is_empty() && !n.is_empty() && !n.contains('/') => r.clone(),
                _ => return Err(Error::config(format!("`repositories`: `{r}` is not `name` or `owner/name`"))),
            };
            if configured.contains(&full) {
                return Err(Error::config(format!("`repositories`: `{full}` is listed twice")));
            }
            configured.push(full);
        }
        let mut streams = Vec::new();
        for s in if config.streams.is_empty() { GithubStream::ALL.to_vec() } else { config.streams.clone() } {
            if !streams.contains(&s) {
                streams.push(s);
            }
        }
        for (s, set) in &config.stream_options {
            if !streams.contains(s) {
                return Err(Error::config(format!(
                    "`stream_options.{0}`: `{0}` is not among the source's `streams`",
                    s.name()
                )));
            }
            streams::validate(*s, set).map_err(Error::config)?;
        }
        if let Some(d) = &config.start_date
            && d.parse::<jiff::Timestamp>().is_err()
        {
            return Err(Error::config(format!("`start_date` must be an RFC 3339 timestamp, not `{d}`")));
        }
        let inner = Inner {
            owner: config.owner,
            owner_type: config.owner_type,
            configured,
            streams,
            settings: config.stream_options,
            pages_read: Mutex::default(),
            started: Mutex::default(),
            // `http.api_version` overrides the top-level key in the client too.
            api_version: config.http.api_version.clone().unwrap_or(config.api_version),
            start_date: config.start_date.map(Value::String),
            owner_kind: OnceCell::new(),
            discovered: OnceCell::new(),
        };
        Ok(GithubSource { client, inner: Arc::new(inner) })
    }

    fn settings(&self, s: GithubStream) -> &StreamSettings {
        static NONE: StreamSettings =
            StreamSettings { state: None, per_page: None, query: BTreeMap::new(), max_pages: None };
        self.inner.settings.get(&s).unwrap_or(&NONE)
    }

    /// Count a listing page read; `true` once the stream's `max_pages` is reached.
    fn page_limit_reached(&self, s: GithubStream) -> bool {
        let Some(max) = self.settings(s).max_pages else { return false };
        let mut read = self.inner.pages_read.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = read.entry(s).or_default();
        *n += 1;
        *n >= max
    }

    fn stream(&self, name: &str) -> Result<GithubStream, Error> {
        GithubStream::from_name(name)
            .filter(|s| self.inner.streams.contains(s))
            .ok_or_else(|| Error::config(format!("the github source has no stream `{name}`")))
    }

    /// The repositories listing's path, trying the organization first under `auto`.
    async fn owner_kind(&self) -> Result<&'static str, Error> {
        let inner = &self.inner;
        inner
            .owner_kind
            .get_or_try_init(|| async {
                match inner.owner_type {
                    OwnerType::Org => Ok("orgs"),
                    OwnerType::User => Ok("users"),
                    OwnerType::Auto => {
                        let probe = Request::get(format!("orgs/{}", encode_segment(&inner.owner)));
                        match self.client.send(probe).await {
                            Ok(_) => Ok("orgs"),
                            Err(e) if e.status() == Some(404) => Ok("users"),
                            Err(e) => Err(e),
                        }
                    }
                }
            })
            .await
            .copied()
    }

    /// The repositories to visit, in order.
    async fn repositories(&self) -> Result<&[String], Error> {
        if !self.inner.configured.is_empty() {
            return Ok(&self.inner.configured);
        }
        let list = self
            .inner
            .discovered
            .get_or_try_init(|| async {
                let kind = self.owner_kind().await?;
                let set = self.settings(GithubStream::Repositories);
                let first =
                    streams::first_request(GithubStream::Repositories, &self.inner.owner, kind, None, None, set);
                let mut p = self.client.paginate(first, PageStyle::LinkHeader);
                let mut names = Vec::new();
                while let Some(page) = p.next_page().await? {
                    names.extend(page.items.iter().filter_map(|r| r.get("full_name")?.as_str().map(str::to_owned)));
                }
                names.sort();
                names.dedup();
                Ok::<_, Error>(names)
            })
            .await?;
        Ok(list)
    }

    /// The lower bound of the cursor for this pass: the engine's, else `start_date`.
    fn lower_bound(&self, req: &ReadRequest) -> Option<Value> {
        req.since.clone().filter(|v| !v.is_null()).or_else(|| self.inner.start_date.clone())
    }

    /// One page of `repo`'s listing: rows, rejects, and where the listing continues.
    async fn page(
        &self,
        stream: GithubStream,
        repo: &str,
        state: PageState,
        req: &ReadRequest,
    ) -> Result<(Vec<Record>, Vec<Reject>, Option<PageState>), Error> {
        let ep: Endpoint = streams::endpoint(stream);
        let bound = self.lower_bound(req);
        let kind = if stream == GithubStream::Repositories { self.owner_kind().await? } else { "" };
        let since = bound.as_ref().and_then(Value::as_str);
        let set = self.settings(stream);
        let first =
            streams::first_request(stream, &self.inner.owner, kind, Some(repo), since, set).use_cache(req.use_cache);
        let offset = state.received;
        let mut p = self.client.paginate_from(first, PageStyle::LinkHeader, state);
        if let Some(ptr) = ep.items {
            p = p.items_at(ptr);
        }
        let page = match p.next_page().await {
            Ok(Some(page)) => page,
            Ok(None) => return Ok((vec![], vec![], None)),
            Err(e) if e.status().is_some_and(|s| ep.skip_statuses.contains(&s)) => {
                warn!(stream = stream.name(), repository = repo, error = %e.report(), "the repository has nothing to list here; skipping it");
                return Ok((vec![], vec![], None));
            }
            Err(e) => return Err(e),
        };
        let prov = Arc::new(page.response.provenance(crate::KIND, Some(&self.inner.api_version)));
        let (mut records, mut rejects) = (Vec::with_capacity(page.items.len()), Vec::new());
        // A newest-first listing is done once it goes below the lower bound.
        let mut reached = false;
        for (i, item) in page.items.into_iter().enumerate() {
            let location = Location::Item(offset + i as u64);
            match mapping::map(stream, repo, &item) {
                Ok(row) => {
                    if let (Some(field), Some(low)) = (ep.cursor, &bound)
                        && row.get(field).and_then(|c| compare_cursors(c, low)) == Some(Ordering::Less)
                    {
                        reached |= ep.newest_first;
                        // Below the engine's bound: the engine drops it and counts it
                        // `filtered`. Without one (a full refresh under `start_date`) the
                        // source drops it.
                        if req.since.is_none() {
                            continue;
                        }
                    }
                    let at = || format!("{} {location}", prov.endpoint);
                    let coerced = mapping::coercions(stream, &item, &at);
                    records.push(Record::new(row, prov.clone()).at(location).coerced(coerced));
                }
                Err(e) => {
                    let drift = drift_of(&e, &item, &location, &page.response);
                    let raw = RawObject { github_repository: repo.to_owned(), github_object: item };
                    rejects.push(Reject {
                        location: Some(location),
                        reason: format!("{} object does not decode: {}", stream.name(), e.reason),
                        path: e.path,
                        raw: serde_json::to_string(&raw).unwrap_or_default(),
                        drift,
                    });
                }
            }
        }
        let next = if reached { None } else { p.state().cloned() };
        Ok((records, rejects, next))
    }

    /// `next`, or [`Next::Later`] (marked `preview`) once the stream's `max_pages` is
    /// reached in this run.
    fn limit(&self, stream: GithubStream, next: Next) -> Next {
        match next {
            Next::More(mut pos) if self.page_limit_reached(stream) => {
                pos["preview"] = Value::Bool(true);
                Next::Later(pos)
            }
            next => next,
        }
    }

    /// Whether this is the stream's first read in this run (and remember that it is not).
    fn first_read(&self, stream: GithubStream) -> bool {
        self.inner.started.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(stream)
    }

    async fn read_stream(&self, stream: GithubStream, req: &ReadRequest) -> Result<Page, Error> {
        let mut pos = match &req.position {
            None => None,
            Some(v) => Some(position::decode::<Position>(stream.name(), v)?),
        };
        // A descent that stopped for anything but `max_pages` (a crash, a failed page)
        // starts over at the newest page: what changed meanwhile is on top, and the pass
        // keeps its lower bound, so the ledger absorbs what is read twice.
        if streams::endpoint(stream).newest_first && self.first_read(stream) && pos.as_ref().is_some_and(|p| !p.preview)
        {
            info!(stream = stream.name(), "restarting the newest-first listing at its newest page");
            pos = None;
        }
        if stream == GithubStream::Repositories {
            if let Some(Position { repo: Some(_), .. }) = &pos {
                return Err(position::not_ours(stream.name(), req.position.as_ref(), "it names a repository"));
            }
            let state = pos.map(|p| p.page).unwrap_or_default();
            let (records, rejects, next) = self.page(stream, "", state, req).await?;
            let next = match next {
                Some(page) => position::encode(&Position { repo: None, page, preview: false })?,
                None => Next::Done { resume: None },
            };
            let next = self.limit(stream, next);
            return Ok(Page { records, rejects, next });
        }
        let repos = self.repositories().await?;
        let (mut idx, mut state) = match pos {
            None => (0, PageState::default()),
            Some(Position { repo: None, .. }) => {
                return Err(position::not_ours(stream.name(), req.position.as_ref(), "it names no repository"));
            }
            Some(Position { repo: Some(r), page, .. }) => match repos.iter().position(|x| *x == r) {
                Some(i) => (i, page),
                // A discovered repository that is gone: go on with the next one by name.
                None if self.inner.configured.is_empty() => (repos.partition_point(|x| *x < r), PageState::default()),
                None => {
                    return Err(position::not_ours(
                        stream.name(),
                        req.position.as_ref(),
                        format_args!("repository `{r}` is no longer in `repositories`"),
                    ));
                }
            },
        };
        let mut rejects_all = Vec::new();
        // Skip empty pages and finished repositories so each read returns records (or ends).
        while let Some(repo) = repos.get(idx) {
            let (records, mut rejects, next) = self.page(stream, repo, state, req).await?;
            rejects_all.append(&mut rejects);
            let (next_idx, next_state) = match next {
                Some(s) => (idx, s),
                None => (idx + 1, PageState::default()),
            };
            let next = match repos.get(next_idx) {
                Some(r) => {
                    position::encode(&Position { repo: Some(r.clone()), page: next_state.clone(), preview: false })?
                }
                None => Next::Done { resume: None },
            };
            let next = self.limit(stream, next);
            if !records.is_empty() || !rejects_all.is_empty() || !matches!(next, Next::More(_)) {
                return Ok(Page { records, rejects: rejects_all, next });
            }
            (idx, state) = (next_idx, next_state);
        }
        Ok(Page { records: vec![], rejects: rejects_all, next: Next::Done { resume: None } })
    }
}

#[async_trait]
impl Source for GithubSource {
    fn kind(&self) -> &'static str {
        crate::KIND
    }

    fn http_report(&self) -> Option<dovetail_core::HttpReport> {
        Some(self.client.report())
    }

    fn streams(&self) -> Vec<StreamSpec> {
        let start = |s: GithubStream| streams::endpoint(s).cursor.and(self.inner.start_date.clone());
        self.inner.streams.iter().map(|s| StreamSpec { start: start(*s), ..streams::spec(*s) }).collect()
    }

    /// `GET /rate_limit` (free: it does not count against the limit) proves the token, then
    /// the owner's repositories listing (first page) proves access to the owner.
    async fn check(&self, _cx: &Cx) -> Result<(), Error> {
        self.client.send(Request::get("rate_limit").cacheable(false)).await?;
        let kind = self.owner_kind().await?;
        let set = self.settings(GithubStream::Repositories);
        let first = streams::first_request(GithubStream::Repositories, &self.inner.owner, kind, None, None, set);
        self.client.send(first).await.map(|_| ())
    }

    async fn read(&self, req: &ReadRequest, cx: &Cx) -> Result<Page, Error> {
        let stream = self.stream(&req.stream)?;
        tokio::select! {
            r = self.read_stream(stream, req) => r.map_err(|e| e.in_stream(stream.name())),
            () = cx.cancel.cancelled() => Err(Error::new(ErrorKind::Interrupted, "stopped while waiting for GitHub")),
        }
    }

    /// A dead letter of this source holds the GitHub object and its repository: map it
    /// again (after a fix); one the engine wrote holds a row already.
    fn decode_raw(&self, stream: &str, raw: &str) -> Result<Value, Reject> {
        let reject = |reason: String, path: Option<String>| Reject {
            location: None,
            reason,
            path,
            raw: raw.to_owned(),
            drift: None,
        };
        let v: Value = serde_json::from_str(raw).map_err(|e| reject(format!("invalid JSON: {e}"), None))?;
        if v.get("github_object").is_none() {
            return Ok(v);
        }
        let s = GithubStream::from_name(stream).ok_or_else(|| reject(format!("no stream `{stream}`"), None))?;
        let o: RawObject =
            serde_json::from_value(v).map_err(|e| reject(format!("not a dead letter of ours: {e}"), None))?;
        mapping::map(s, &o.github_repository, &o.github_object).map_err(|e| reject(e.reason, e.path))
    }
}

/// The drift behind a decode failure, when it is one: a field of another JSON type than the
/// model's (`invalid type`), or a required field gone (`missing field`).
fn drift_of(
    e: &mapping::MapError,
    item: &Value,
    at: &Location,
    resp: &Response,
) -> Option<Box<dovetail_core::drift::DriftEvent>> {
    let dotted = e.path.as_deref().filter(|p| !p.is_empty() && *p != ".")?;
    let pointer: String =
        dotted.split('.').map(|seg| format!("/{}", seg.replace('~', "~0").replace('/', "~1"))).collect();
    let (change, observed) = if e.reason.starts_with("invalid type") {
        (DriftClass::TypeChanged, item.pointer(&pointer).map_or("absent", dovetail_core::json_type_name))
    } else if e.reason.starts_with("missing field") {
        (DriftClass::MissingField, "absent")
    } else {
        return None;
    };
    let expected = e.reason.rsplit_once("expected ").map_or("the model's type", |(_, x)| x);
    Some(Box::new(dovetail_core::drift::DriftEvent {
        path: pointer,
        change,
        expected: expected.to_owned(),
        observed: observed.to_owned(),
        count: 1,
        first_seen: dovetail_core::now_rfc3339(),
        first_at: format!("{} {at}", redact_url(&resp.url, &[])),
    }))
}
