//! The source: one stream per configured object, read in full by the list endpoint.
//!
//! - **Schema first.** The properties API is read when the engine starts a run or a check
//!   ([`Source::discover`]), at every run (a long-lived process sees a property added in the
//!   portal on its next run), or at the first read; never while a config loads. Its answer
//!   is each stream's declared schema ([`crate::props`]).
//! - **Pages.** `GET /crm/objects/{version}/{object}?limit=&properties=&after=`; the next
//!   page is `paging.next.after`. The position is `{"after": "<token>"}`.
//! - **Cursor.** `updatedAt` (HubSpot's last-modified time). A pass with a lower bound
//!   (an incremental run after the first) lists the objects archived since that bound minus
//!   [`LOOKBACK`] (search never returns them) as deletes (tombstones), then reads by the
//!   search endpoint from it, past its 10,000-result cap ([`crate::search`]). A first pass
//!   lists, then does the same from when the list started, for what changed behind it. So
//!   every pass ends with a search that reaches the newest change, and a resumed pass
//!   delivers what changed while the run was stopped ([`Position`]).
//! - **Merges.** The ids a record lists in `hs_merged_object_ids` were merged into it and
//!   are gone: each is a tombstone after the record (a delete, not an alias).
//! - **Associations** are streams of their own ([`crate::associations`]).
//! - **Owners** have no properties API: a fixed schema.
//! - **Account.** With the properties, the account-info API gives the account's time zone,
//!   when a spent daily allowance comes back ([`crate::client`]); UTC, with a warning, when
//!   it cannot be read.
//! - **Version.** A configured `api_version` near its end of life is reported from the first
//!   page on, like a `Sunset` header ([`crate::versions`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use dovetail_core::{
    BuildCx, Cx, Error, FieldPath, Location, Next, Page, ReadRequest, Record, Source, SourceConnector, StreamSpec,
    position,
};
use dovetail_http::{HttpClient, Request, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api;
use crate::client::AccountZone;
use crate::config::HubspotConfig;
use crate::props::{self, Kinds, PropertyList};
use crate::search::{self, Query};

/// The stream of the account's owners (users who can own records).
pub const OWNERS: &str = "owners";

/// The HubSpot source.
#[derive(Debug, Clone)]
pub struct HubspotSource {
    client: HttpClient,
    config: Arc<HubspotConfig>,
    /// What the properties API said per object, once read (a failure is not kept).
    discovered: Arc<std::sync::RwLock<Option<Properties>>>,
    /// One properties read at a time (streams read concurrently).
    discovering: Arc<tokio::sync::Mutex<()>>,
    /// When the last search went: searches carry no rate-limit headers, so they are paced
    /// at `search_rate` (default [`SEARCHES_PER_SECOND`]) across the source's streams.
    last_search: Arc<tokio::sync::Mutex<Option<tokio::time::Instant>>>,
    /// The account's time zone, read with the properties.
    zone: AccountZone,
    /// The configured version's end of life, when near ([`crate::versions::notice`]).
    sunset: Option<dovetail_core::report::Deprecation>,
    /// Whether the sunset was reported (on the first read, so a run's report carries it).
    noticed: Arc<AtomicBool>,
}

/// Each object's properties as read from the properties API, shared with the reads of a run.
type Properties = Arc<BTreeMap<String, Kinds>>;

/// How fast the source searches unless `search_rate` says otherwise: HubSpot allows 5
/// search requests per second per account.
pub const SEARCHES_PER_SECOND: u32 = 5;

impl SourceConnector for HubspotSource {
    const KIND: &'static str = crate::KIND;
    type Config = HubspotConfig;

    fn build(config: HubspotConfig, cx: &BuildCx) -> Result<Self, Error> {
        if config.objects.is_empty() {
            return Err(Error::config("`objects` is empty: name at least one, e.g. `objects = [\"contacts\"]`"));
        }
        for (i, o) in config.objects.iter().enumerate() {
            if o.trim().is_empty() || config.objects[..i].contains(o) {
                return Err(Error::config(format!("`objects[{i}]`: `{o}` is empty or named twice")));
            }
        }
        if let Some(name) = config.properties.keys().find(|k| !config.objects.contains(k)) {
            return Err(Error::config(format!("`properties.{name}`: `{name}` is not one of `objects`")));
        }
        if config.properties.contains_key(OWNERS) {
            return Err(Error::config("`properties.owners`: owners have a fixed schema, no properties to choose"));
        }
        crate::associations::pairs(&config)?;
        let zone = AccountZone::default();
        let client = crate::client::build(&config, cx, &zone)?;
        let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
        Ok(HubspotSource {
            client,
            sunset: crate::versions::notice(&config.api_version, today),
            config: Arc::new(config),
            discovered: Arc::default(),
            discovering: Arc::default(),
            last_search: Arc::default(),
            zone,
            noticed: Arc::default(),
        })
    }
}

/// Where a stream is inside its pass.
///
/// A pass of a searchable object ends with a search that reaches the newest change, so a
/// run that resumes a pass also delivers what changed while it was stopped: a first pass
/// lists (`List`), then takes the archived objects and searches from the list's start
/// (minus [`LOOKBACK`]) for what changed behind its position while it listed; an
/// incremental pass takes the archived objects, then searches. The flags default to the
/// order positions written before had (search, then archived, then done).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "read", rename_all = "snake_case", deny_unknown_fields)]
enum Position {
    List {
        after: String,
        /// When the list's first page was asked for (epoch ms); `None` in older positions.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        started_ms: Option<i64>,
    },
    Search {
        query: Query,
        since_ms: i64,
        /// The archived objects were taken earlier in this pass: the search ends it.
        #[serde(default)]
        archived_done: bool,
    },
    Archived {
        since_ms: i64,
        after: Option<String>,
        /// A search from `since_ms` follows the archived objects.
        #[serde(default)]
        then_search: bool,
    },
}

/// How far before the last run's newest change an incremental pass starts: HubSpot's
/// search index lags writes by seconds; the ledger skips what was already delivered.
pub const LOOKBACK: std::time::Duration = std::time::Duration::from_secs(300);

/// A list page as HubSpot sends it.
#[derive(Debug, Deserialize)]
struct ListPage {
    results: Vec<Value>,
    #[serde(default)]
    paging: Option<Paging>,
}

#[derive(Debug, Deserialize)]
struct Paging {
    next: Option<NextPage>,
}

#[derive(Debug, Deserialize)]
struct NextPage {
    after: String,
}

impl HubspotSource {
    /// The properties last read.
    fn known(&self) -> Option<Properties> {
        self.discovered.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Each object's properties as last read from the properties API; read now when they
    /// never were (the account's time zone with them).
    async fn discovered(&self) -> Result<Properties, Error> {
        if let Some(found) = self.known() {
            return Ok(found);
        }
        self.refresh().await
    }

    /// Reads the properties again — the engine asks at the start of every run, so a
    /// long-lived process (`run --every`, a worker) sees a property added or retyped in the
    /// portal as drift on its next run, not after a restart. When the read fails and an
    /// earlier one exists, the run goes on with that one (warned), as with a stale page.
    async fn refresh(&self) -> Result<Properties, Error> {
        let _one = self.discovering.lock().await;
        let before = self.known();
        match discover(&self.client, &self.config).await {
            Ok(found) => {
                if before.is_none() {
                    read_zone(&self.client, &self.config, &self.zone).await;
                }
                let found = Arc::new(found);
                *self.discovered.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(found.clone());
                Ok(found)
            }
            Err(e) => match before {
                Some(old) => {
                    tracing::warn!(target: "dovetail_hubspot", error = %e.report(),
                        "could not read the properties again; this run keeps the ones read before");
                    Ok(old)
                }
                None => Err(e.in_connector(crate::KIND)),
            },
        }
    }

    async fn list_page(
        &self,
        stream: &str,
        after: Option<&str>,
        kinds: Option<&Kinds>,
        archived: bool,
    ) -> Result<Response, Error> {
        let version = &self.config.api_version;
        let path = if kinds.is_some() { api::list(version, stream) } else { api::owners(version) };
        let mut req = Request::get(path).query("limit", crate::config::PAGE_SIZE.to_string());
        if archived {
            req = req.query("archived", "true");
        }
        if let Some(kinds) = kinds.filter(|k| !k.is_empty()) {
            req = req.query("properties", kinds.keys().cloned().collect::<Vec<_>>().join(","));
        }
        if let Some(after) = after {
            req = req.query("after", after);
        }
        self.client.send(req).await
    }
}

impl HubspotSource {
    /// One list page and the position after it.
    /// `started_ms`: when the pass's first list page was asked for (`None` for owners, which
    /// are only listed, and for positions written before it was recorded).
    async fn list_read(
        &self,
        stream: &str,
        after: Option<&str>,
        kinds: Option<&Kinds>,
        started_ms: Option<i64>,
    ) -> Result<Page, Error> {
        let response = self.list_page(stream, after, kinds, false).await.map_err(|e| e.in_stream(stream))?;
        let page: ListPage = response.json().map_err(|e| e.in_stream(stream))?;
        let next = match (page.paging.and_then(|p| p.next), started_ms) {
            (Some(n), _) => position::encode(&Position::List { after: n.after, started_ms })?,
            // Records changed behind the list's position while it ran (a long first pass,
            // or one stopped and resumed) are found by a search from when it started.
            (None, Some(started)) => {
                let since_ms = started - LOOKBACK.as_millis() as i64;
                position::encode(&Position::Archived { since_ms, after: None, then_search: true })?
            }
            (None, None) => Next::Done { resume: None },
        };
        Ok(self.page(&response, page.results, kinds, next))
    }

    /// One search page (a POST HubSpot answers the same when sent again: retried like a
    /// GET) and the query after it.
    async fn search_read(
        &self,
        stream: &str,
        query: Query,
        since_ms: i64,
        archived_done: bool,
        kinds: &Kinds,
    ) -> Result<Page, Error> {
        let limit = u64::from(crate::config::PAGE_SIZE);
        let names: Vec<&String> = kinds.keys().collect();
        let req = Request::post(api::search(&self.config.api_version, stream))
            .json(&query.body(stream, &names, limit))
            .repeatable(true);
        {
            let mut last = self.last_search.lock().await;
            if let Some(at) = *last {
                tokio::time::sleep_until(at + std::time::Duration::from_secs(1) / self.config.search_rate.max(1)).await;
            }
            *last = Some(tokio::time::Instant::now());
        }
        let response = self.client.send(req).await.map_err(|e| e.in_stream(stream))?;
        let page: ListPage = response.json().map_err(|e| e.in_stream(stream))?;
        // Only whether there is more: the next page is a keyset query (search.rs), never
        // HubSpot's `after` offset into results that may have shifted.
        let more = page.paging.as_ref().and_then(|p| p.next.as_ref()).is_some();
        let last = page.results.last().map(|r| {
            let at = r.get("updatedAt").and_then(Value::as_str).and_then(search::epoch_ms);
            let id = r.get("id").and_then(Value::as_str).and_then(|s| s.parse::<u64>().ok());
            (at, id)
        });
        let last = match last {
            None => None,
            Some((Some(at), Some(id))) => Some((at, id)),
            Some(_) => {
                return Err(Error::data("the last search result has no `updatedAt` time or numeric `id`")
                    .at(response.url.path())
                    .in_stream(stream));
            }
        };
        let next = match query.next(more, last) {
            Some(query) => position::encode(&Position::Search { query, since_ms, archived_done })?,
            None if archived_done => Next::Done { resume: None },
            None => position::encode(&Position::Archived { since_ms, after: None, then_search: false })?,
        };
        Ok(self.page(&response, page.results, Some(kinds), next))
    }

    /// One page of the archived objects (search never returns them), keeping those archived
    /// since the pass's lower bound: each is a tombstone (a deleted record), its `updatedAt`
    /// the archive time when that is later.
    async fn archived_read(
        &self,
        stream: &str,
        since_ms: i64,
        after: Option<&str>,
        then_search: bool,
        kinds: &Kinds,
    ) -> Result<Page, Error> {
        let response = self.list_page(stream, after, Some(kinds), true).await.map_err(|e| e.in_stream(stream))?;
        let page: ListPage = response.json().map_err(|e| e.in_stream(stream))?;
        let results = page
            .results
            .into_iter()
            .filter_map(|mut r| {
                let at = r.get("archivedAt").and_then(Value::as_str).map(str::to_owned)?;
                let at_ms = search::epoch_ms(&at).filter(|ms| *ms >= since_ms)?;
                let updated = r.get("updatedAt").and_then(Value::as_str).and_then(search::epoch_ms);
                if updated.is_none_or(|u| u < at_ms) {
                    r["updatedAt"] = Value::String(at);
                }
                Some(r)
            })
            .collect();
        let next = match page.paging.and_then(|p| p.next) {
            Some(n) => position::encode(&Position::Archived { since_ms, after: Some(n.after), then_search })?,
            None if then_search => {
                let query = Query::Range { from_ms: since_ms, strict: false, after: 0 };
                position::encode(&Position::Search { query, since_ms, archived_done: true })?
            }
            None => Next::Done { resume: None },
        };
        let mut page = self.page(&response, results, Some(kinds), next);
        // An archived object is deleted in HubSpot: the engine deletes its key under the
        // stream's `delete` mode (`keep` ignores it).
        for r in &mut page.records {
            r.deleted = true;
        }
        Ok(page)
    }

    /// Records of a page, typed by the object's properties.
    fn page(&self, response: &Response, results: Vec<Value>, kinds: Option<&Kinds>, next: Next) -> Page {
        let prov = Arc::new(response.provenance(crate::KIND, Some(&self.config.api_version)));
        let mut records = Vec::with_capacity(results.len());
        for (i, item) in results.into_iter().enumerate() {
            let merged = if kinds.is_some() { merged_away(&item) } else { vec![] };
            let updated = item.get("updatedAt").cloned().unwrap_or(Value::Null);
            let data = match kinds {
                Some(k) => props::type_record(k, item),
                None => item,
            };
            records.push(Record::new(data, prov.clone()).at(Location::Item(i as u64)));
            // A merge leaves one object: the ids merged into it are gone from HubSpot, so
            // they are deleted under the stream's `delete` mode, like archived objects.
            for id in merged {
                let gone = json!({ "id": id, "updatedAt": updated });
                records.push(Record::tombstone(gone, prov.clone()).at(Location::Item(i as u64)));
            }
        }
        Page { records, rejects: vec![], next }
    }
}

/// The ids merged into `item` (`hs_merged_object_ids`, `;`-separated as HubSpot sends it),
/// but its own.
fn merged_away(item: &Value) -> Vec<String> {
    let own = item.get("id").and_then(Value::as_str).unwrap_or_default();
    let ids = item.get("properties").and_then(|p| p.get(MERGED)).and_then(Value::as_str).unwrap_or_default();
    ids.split(';').map(str::trim).filter(|id| !id.is_empty() && *id != own).map(str::to_owned).collect()
}

/// The property that lists the ids of the objects merged into one.
const MERGED: &str = "hs_merged_object_ids";

/// Each configured object's properties (owners have none).
async fn discover(client: &HttpClient, config: &HubspotConfig) -> Result<BTreeMap<String, Kinds>, Error> {
    let mut out = BTreeMap::new();
    for object in config.objects.iter().filter(|o| *o != OWNERS) {
        let list: PropertyList = client
            .send(Request::get(api::properties(&config.api_version, object)))
            .await
            .and_then(|r| r.json())
            .map_err(|e| e.in_stream(object))?;
        out.insert(object.clone(), props::kinds(&list, config.properties.get(object).map(Vec::as_slice)));
    }
    Ok(out)
}

/// The account's details: only its time zone is used.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountInfo {
    time_zone: Option<String>,
    utc_offset_milliseconds: Option<i64>,
}

/// The account's time zone into `zone`, from the account-info API: its IANA name, else its
/// fixed UTC offset; left at UTC, with a warning, when neither can be had.
async fn read_zone(client: &HttpClient, config: &HubspotConfig, zone: &AccountZone) {
    let info = client.send(Request::get(api::account_info(&config.api_version))).await.and_then(|r| r.json());
    let found = match &info {
        Ok(AccountInfo { time_zone, utc_offset_milliseconds }) => {
            time_zone.as_deref().and_then(|name| jiff::tz::TimeZone::get(name).ok()).or_else(|| {
                let secs = i32::try_from(utc_offset_milliseconds.as_ref()? / 1000).ok()?;
                Some(jiff::tz::TimeZone::fixed(jiff::tz::Offset::from_seconds(secs).ok()?))
            })
        }
        Err(_) => None,
    };
    match found {
        Some(tz) => zone.set(tz),
        None => {
            let why = info.err().map_or_else(|| "it names no known time zone".to_owned(), |e| e.report());
            tracing::warn!(target: "dovetail_hubspot", %why,
                "cannot read the account's time zone: a spent daily limit is taken to come back at midnight UTC");
        }
    }
}

/// Owners' fixed schema (HubSpot has no properties API for them).
fn owner_schema() -> Value {
    let text = json!({ "type": ["string", "null"] });
    json!({
        "type": "object",
        "required": ["id", "updatedAt"],
        "properties": {
            "id": { "type": "string" },
            "email": text, "firstName": text, "lastName": text, "type": text,
            "userId": { "type": ["integer", "null"] },
            "userIdIncludingInactive": { "type": ["integer", "null"] },
            "createdAt": { "type": "string", "format": "date-time" },
            "updatedAt": { "type": "string", "format": "date-time" },
            "archived": { "type": "boolean" },
            "teams": { "type": ["array", "null"] },
        }
    })
}

#[async_trait]
impl Source for HubspotSource {
    fn kind(&self) -> &'static str {
        crate::KIND
    }

    fn streams(&self) -> Vec<StreamSpec> {
        // Before discovery: names, keys and cursors; the declared schemas once read.
        let found = self.known();
        let found = found.as_deref();
        self.config
            .objects
            .iter()
            .map(|o| {
                let mut spec =
                    StreamSpec::new(o.clone(), vec![FieldPath::new("id")]).with_cursor(FieldPath::new("updatedAt"));
                spec.lookback = (o != OWNERS).then_some(LOOKBACK);
                spec.schema = if o == OWNERS {
                    Some(owner_schema())
                } else {
                    found.and_then(|f| f.get(o)).map(props::object_schema)
                };
                spec
            })
            .chain(
                crate::associations::pairs(&self.config)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| crate::associations::spec(&p)),
            )
            .collect()
    }

    fn http_report(&self) -> Option<dovetail_core::HttpReport> {
        let mut report = self.client.report();
        if let Some(d) = self.sunset.as_ref().filter(|_| self.noticed.load(Ordering::Acquire)) {
            report.deprecations.push(d.clone());
        }
        Some(report)
    }

    async fn discover(&self, _cx: &Cx) -> Result<(), Error> {
        self.refresh().await.map(|_| ())
    }

    async fn check(&self, _cx: &Cx) -> Result<(), Error> {
        self.discovered().await.map(|_| ())
    }

    async fn read(&self, req: &ReadRequest, _cx: &Cx) -> Result<Page, Error> {
        if let Some(d) = &self.sunset
            && !self.noticed.swap(true, Ordering::AcqRel)
        {
            tracing::warn!(target: "dovetail_hubspot", version = %self.config.api_version, sunset = ?d.sunset,
                "the configured HubSpot API version nears its end of life: set a newer `api_version`");
        }
        let stream = req.stream.as_str();
        let pairs = crate::associations::pairs(&self.config)?;
        if let Some(pair) = pairs.iter().find(|p| p.stream == stream) {
            return crate::associations::read(&self.client, &self.config, pair, req.position.as_ref()).await;
        }
        let found = if stream == OWNERS { None } else { Some(self.discovered().await?) };
        let kinds = match &found {
            None => None,
            Some(f) => {
                Some(f.get(stream).ok_or_else(|| Error::internal(format!("no properties read for `{stream}`")))?)
            }
        };
        let position = match &req.position {
            None => None,
            Some(v) => Some(position::decode::<Position>(stream, v)?),
        };
        let since = req.since.as_ref().and_then(Value::as_str).and_then(search::epoch_ms);
        let Some(kinds) = kinds else {
            return match position {
                None => self.list_read(stream, None, None, None).await,
                Some(Position::List { after, .. }) => self.list_read(stream, Some(&after), None, None).await,
                Some(_) => Err(position::not_ours(stream, req.position.as_ref(), "owners are listed, never searched")),
            };
        };
        match (position, since) {
            (Some(Position::List { after, started_ms }), _) => {
                self.list_read(stream, Some(&after), Some(kinds), started_ms).await
            }
            (Some(Position::Search { query, since_ms, archived_done }), _) => {
                self.search_read(stream, query, since_ms, archived_done, kinds).await
            }
            (Some(Position::Archived { since_ms, after, then_search }), _) => {
                self.archived_read(stream, since_ms, after.as_deref(), then_search, kinds).await
            }
            (None, Some(since_ms)) => self.archived_read(stream, since_ms, None, true, kinds).await,
            (None, None) => {
                let started = jiff::Timestamp::now().as_millisecond();
                self.list_read(stream, None, Some(kinds), Some(started)).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_written_before_the_pass_order_changed_keep_their_order() {
        // A resumed pass from an older position: a search still followed by the archived
        // objects, an archived listing still ending the pass, a list that ends where it did.
        let search = json!({"read": "search", "query": {"query": "range", "from_ms": 5, "strict": false, "after": 0}, "since_ms": 5});
        let p: Position = position::decode("contacts", &search).unwrap();
        assert!(matches!(p, Position::Search { archived_done: false, since_ms: 5, .. }), "{p:?}");
        let archived = json!({"read": "archived", "since_ms": 5, "after": null});
        let p: Position = position::decode("contacts", &archived).unwrap();
        assert!(matches!(p, Position::Archived { then_search: false, .. }), "{p:?}");
        let list = json!({"read": "list", "after": "300"});
        let p: Position = position::decode("contacts", &list).unwrap();
        assert!(matches!(p, Position::List { started_ms: None, .. }), "{p:?}");
        // A new list position carries its start, so its pass ends with a catch-up search.
        let Next::More(v) = position::encode(&Position::List { after: "300".into(), started_ms: Some(7) }).unwrap()
        else {
            panic!("a position is More")
        };
        assert_eq!(v["started_ms"], 7);
    }
}
