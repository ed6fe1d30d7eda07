//! [`StripeSource`]: `impl Source` and `SourceConnector` for `kind = "stripe"`.
//!
//! Stripe lists newest first. Each pass of a stream reads the time window
//! `created[gte]=floor` … `created[lt]=window_end` whole, paging down with `starting_after`
//! (the last object's id) while `has_more`, and only a completed pass moves the floor — to the
//! newest `created` it saw, less [`OVERLAP`] (the engine's cursor bookkeeping: a resumed pass
//! keeps its floor, objects at exactly the floor that were delivered are skipped, the ledger
//! skips what the overlap re-reads). `window_end` is fixed when the pass starts and stored in
//! the position, so a pass resumed after a crash reads the same window, and an object created
//! during a pass (above `window_end`, or above the page the pass is on) is read by the next
//! pass: its `created` is at or above the newest the pass saw. With several connected
//! accounts one pass reads each account's window in turn, under the same `window_end`.
//!
//! A listing whose `starting_after` object was deleted before its next page starts again
//! below the last `created` it gave ([`StripeSource::listing_page`]).
//!
//! A pass resumed by a later run (after a crash or a failed page) reads the rest of its
//! window, then the window from that window's last second to the resuming run's start: what
//! was created since the window began (above the pages read then) is read by the run that
//! completes the pass, not one later.
//!
//! With `deleted_events`, a pass of a stream whose objects Stripe deletes ends with a last
//! phase: the stream's deletion events (`type=customer.deleted`) from the pass's floor to the
//! window's end, for each account, each handed to the engine as a tombstone of the event's
//! object; an object listed with `deleted: true` is a tombstone too.
//!
//! With `change_events`, a stream whose objects change reads, after its windows and before
//! the deletions, its change events (`types[]=customer.updated`) from the pass's floor to the
//! window's end, and re-fetches each changed object at the pinned version. Such a stream
//! declares no engine cursor (a re-fetched object keeps its old `created`, below any floor)
//! and keeps its floor itself: `"floor"` and `"newest"` in the position during a pass,
//! `{"floor": …}` handed back as `Next::Done { resume }` between passes.
//!
//! The position is `{"account": "acct_…", "window_start": 1699990000, "window_end":
//! 1700000000, "page": <PageState>}` (`account` absent for the key's own account,
//! `window_start` absent for a window starting at the pass's floor; `"changes": true` in the
//! change-events phase, `"deletes": true` in the deletion-events phase). A position that does
//! not decode is a `Permanent` error: the engine reports a corrupt checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dovetail_core::{
    BuildCx, Cx, Error, ErrorKind, Location, Next, Page, ReadRequest, Record, Reject, Source, SourceConnector,
    StreamSpec, position,
};
use dovetail_http::paginate::{PageState, PageStyle};
use dovetail_http::{Clock, HttpClient, Request, TokioClock};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::OnceCell;
use tracing::info;

use crate::client::ACCOUNT_HEADER;
use crate::config::{Accounts, Mode, StripeConfig};
use crate::streams::{self, StreamDef};

/// How far behind its last floor each pass starts: objects whose `created` lags their
/// appearance in the list (and clock skew between Stripe and this host) are read again,
/// and the ledger skips them when unchanged.
pub const OVERLAP: Duration = Duration::from_secs(300);

/// Stripe keeps events for 30 days: an `events` cursor older than that has lost events.
pub const EVENT_RETENTION_SECS: i64 = 30 * 24 * 3600;

/// Objects per list request (`limit`): Stripe's maximum.
pub const PAGE_SIZE: u32 = 100;

/// The row field that names the connected account a row came from (with `accounts`).
pub const ACCOUNT_FIELD: &str = "stripe_account";

/// The Stripe source (`kind = "stripe"`).
#[derive(Debug, Clone)]
pub struct StripeSource {
    client: HttpClient,
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    streams: Vec<&'static StreamDef>,
    version: String,
    mode: Mode,
    accounts: Option<Accounts>,
    /// The accounts read, in order (`None`: the key's own), once known.
    resolved: OnceCell<Vec<Option<String>>>,
    /// `start_date` in epoch seconds.
    start: Option<i64>,
    expand: BTreeMap<String, Vec<String>>,
    event_types: Vec<String>,
    /// Whether a pass of a deletable stream ends by reading its deletion events.
    deleted_events: bool,
    /// Whether a pass of a stream whose objects change reads its change events (and the
    /// stream keeps its own floor).
    change_events: bool,
    clock: Arc<dyn Clock>,
    /// Streams read in this process so far, and for each one resumed from a position an
    /// earlier process stored and not yet extended, where its window is extended to (this
    /// run's start).
    started: Mutex<HashMap<&'static str, Option<i64>>>,
}

/// Where a stream is.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Position {
    /// The connected account being read; absent for the key's own account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    account: Option<String>,
    /// The window's lower bound (`created[gte]`) when it is not the pass's floor: a pass
    /// resumed by a later run goes on with `[last second of the window before, now)` once its
    /// window is read, so what was created meanwhile is read by the run that finishes the pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    window_start: Option<i64>,
    /// The window's upper bound (`created[lt]`, epoch seconds), fixed when it started.
    window_end: i64,
    /// Where the account's listing continues.
    page: PageState,
    /// In the pass's last phase: the stream's deletion events (`deleted_events`), read from
    /// the pass's floor to `window_end` for each account in turn.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    deletes: bool,
    /// In the changes phase (`change_events`): the stream's change events from the pass's
    /// floor to `window_end`, each changed object re-fetched, for each account in turn.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    changes: bool,
    /// A stream that keeps its own floor (`change_events`): the pass's floor, the newest
    /// Stripe timestamp the last completed pass saw (absent on a first pass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    floor: Option<i64>,
    /// A stream that keeps its own floor: the newest Stripe timestamp (an object's
    /// `created`, a change event's) this pass has seen so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    newest: Option<i64>,
    /// The `created` of the last object the account's listing gave: when the object the
    /// listing continues after (`starting_after`) was deleted meanwhile, Stripe refuses the
    /// page, and the listing starts again below this second ([`Position::below`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_created: Option<i64>,
    /// The account's listing was started again below this `created` (`created[lt]`) after
    /// its `starting_after` object was deleted; the window's end stays the pass's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    below: Option<i64>,
}

/// Where a stream that keeps its own floor starts its next pass (`Next::Done { resume }`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NextPass {
    /// The next pass's floor.
    floor: i64,
}

/// How far behind its window's end a floor may be left when a pass saw nothing newer: a
/// stream nothing happens on for weeks would otherwise age into the events retention
/// check. A host clock a day ahead of Stripe's is not credible.
const FLOOR_LAG_SECS: i64 = 24 * 3600;

/// The listing's pagination: Stripe's `starting_after` the last id, while `has_more`.
fn style() -> PageStyle {
    PageStyle::LastId { param: "starting_after".into(), has_more: "/has_more".into(), id: "/id".into() }
}

impl SourceConnector for StripeSource {
    const KIND: &'static str = crate::KIND;
    type Config = StripeConfig;

    fn build(config: StripeConfig, cx: &BuildCx) -> Result<Self, Error> {
        Self::build_at(config, cx, Arc::new(TokioClock::default()))
    }
}

impl StripeSource {
    /// Build on `clock`: its wall time bounds each pass's window and ages the events
    /// cursor, and the HTTP client waits on it (tests pass a `FakeClock`).
    pub fn build_at(config: StripeConfig, cx: &BuildCx, clock: Arc<dyn Clock>) -> Result<Self, Error> {
        let conn = config.connection();
        let mode = crate::client::mode(&conn)?;
        let client = crate::client::builder(&conn, mode, cx)?.clock(clock.clone()).build()?;
        let mut chosen: Vec<&'static StreamDef> = Vec::new();
        for name in &config.streams {
            let def = streams::find(name).ok_or_else(|| {
                let known: Vec<&str> = streams::STREAMS.iter().map(|s| s.name).collect();
                Error::config(format!("`streams`: no stream `{name}`; the streams are {}", known.join(", ")))
            })?;
            if !chosen.contains(&def) {
                chosen.push(def);
            }
        }
        if chosen.is_empty() {
            chosen = streams::STREAMS.iter().collect();
        }
        for (name, fields) in &config.expand {
            let def = chosen.iter().find(|d| d.name == name).ok_or_else(|| {
                Error::config(format!("`expand.{name}`: `{name}` is not among the source's `streams`"))
            })?;
            if let Some(f) = fields.iter().find(|f| !def.expandable.contains(&f.as_str())) {
                return Err(Error::config(format!(
                    "`expand.{name}`: `{f}` is not expandable on {name}; expandable: {}",
                    if def.expandable.is_empty() { "nothing".to_owned() } else { def.expandable.join(", ") }
                )));
            }
        }
        if !config.event_types.is_empty() && !chosen.iter().any(|d| d.name == "events") {
            return Err(Error::config("`event_types` is set but `events` is not among the source's `streams`"));
        }
        if let Some(Accounts::List(list)) = &config.accounts {
            if list.is_empty() {
                return Err(Error::config("`accounts` is empty: list `acct_…` ids, write \"all\", or leave it out"));
            }
            if let Some(bad) = list.iter().find(|a| !a.starts_with("acct_") || a.len() <= 5) {
                return Err(Error::config(format!("`accounts`: `{bad}` is not a Stripe account id (`acct_…`)")));
            }
        }
        let start = match &config.start_date {
            None => None,
            Some(d) => Some(
                d.parse::<jiff::Timestamp>()
                    .map_err(|_| Error::config(format!("`start_date` must be an RFC 3339 timestamp, not `{d}`")))?
                    .as_second(),
            ),
        };
        let inner = Inner {
            streams: chosen,
            version: config.http.api_version.clone().unwrap_or(config.stripe_version),
            mode,
            accounts: config.accounts,
            resolved: OnceCell::new(),
            start,
            expand: config.expand,
            event_types: config.event_types,
            deleted_events: config.deleted_events,
            change_events: config.change_events,
            clock,
            started: Mutex::default(),
        };
        Ok(StripeSource { client, inner: Arc::new(inner) })
    }

    /// Now on the source's clock, in epoch seconds.
    fn now(&self) -> i64 {
        let wall = self.inner.clock.now().duration_since(std::time::UNIX_EPOCH);
        wall.map_or(0, |d| d.as_secs() as i64)
    }

    /// Whether the key is for test or live mode.
    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    fn stream(&self, name: &str) -> Result<&'static StreamDef, Error> {
        self.inner
            .streams
            .iter()
            .copied()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::config(format!("the stripe source has no stream `{name}`")))
    }

    /// The accounts to read, in order: the key's own (`None`), the configured ones, or every
    /// connected account sorted by id.
    async fn accounts(&self) -> Result<&[Option<String>], Error> {
        let list = self
            .inner
            .resolved
            .get_or_try_init(|| async {
                match &self.inner.accounts {
                    None => Ok(vec![None]),
                    Some(Accounts::List(l)) => Ok(l.iter().cloned().map(Some).collect()),
                    Some(Accounts::All(_)) => {
                        let first = Request::get("v1/accounts").query("limit", "100");
                        let mut p = self.client.paginate(first, style()).items_at("/data");
                        let mut ids = Vec::new();
                        while let Some(page) = p.next_page().await? {
                            ids.extend(page.items.iter().filter_map(|a| a.get("id")?.as_str().map(str::to_owned)));
                        }
                        ids.sort();
                        ids.dedup();
                        info!(accounts = ids.len(), "stripe: reading every connected account");
                        Ok::<_, Error>(ids.into_iter().map(Some).collect())
                    }
                }
            })
            .await?;
        Ok(list)
    }

    /// The pass's lower bound (`created[gte]`): the engine's floor, else `start_date`. An
    /// `events` floor past Stripe's retention has lost events: a full refresh is asked for.
    fn floor(&self, def: &StreamDef, req: &ReadRequest) -> Result<Option<i64>, Error> {
        let since = match &req.since {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.parse::<i64>().ok(),
            _ => None,
        };
        if def.name == "events"
            && let Some(s) = since
            && s < self.now() - EVENT_RETENTION_SECS - OVERLAP.as_secs() as i64
        {
            let at = jiff::Timestamp::from_second(s).map(|t| t.to_string()).unwrap_or_else(|_| s.to_string());
            return Err(Error::new(
                ErrorKind::Permanent,
                format!(
                    "the events cursor ({at}) is older than Stripe's 30-day event retention: the events between it \
                     and 30 days ago are gone, so reading on would skip them silently"
                ),
            )
            .with_hint(
                "run `dovetail reset {pipeline} events` to start a full refresh of the events Stripe still keeps, and \
                 a full refresh of the object streams the events would have updated",
            ));
        }
        Ok(since.or(self.inner.start))
    }

    /// The first request of `def`'s listing for one account and window.
    fn first_request(&self, def: &StreamDef, account: Option<&str>, floor: Option<i64>, window_end: i64) -> Request {
        let mut r =
            Request::get(def.path).query("limit", PAGE_SIZE.to_string()).query("created[lt]", window_end.to_string());
        if let Some(f) = floor {
            r = r.query("created[gte]", f.to_string());
        }
        for f in self.inner.expand.get(def.name).into_iter().flatten() {
            r = r.query("expand[]", format!("data.{f}"));
        }
        if def.name == "events" {
            for t in &self.inner.event_types {
                r = r.query("types[]", t);
            }
        }
        if let Some(a) = account {
            r = r.header(ACCOUNT_HEADER, a);
        }
        r
    }

    /// The first request of the deletion events of `def` for one account: `type=…deleted`
    /// from the pass's floor to the window's end.
    fn deletes_request(&self, event: &str, account: Option<&str>, floor: Option<i64>, window_end: i64) -> Request {
        let mut r = Request::get("v1/events")
            .query("limit", PAGE_SIZE.to_string())
            .query("type", event)
            .query("created[lt]", window_end.to_string());
        if let Some(f) = floor {
            r = r.query("created[gte]", f.to_string());
        }
        if let Some(a) = account {
            r = r.header(ACCOUNT_HEADER, a);
        }
        r
    }

    /// One page of an account's window: rows, rejects, and where the listing continues. An
    /// object marked `deleted: true` is a tombstone, and so is the object of each deletion
    /// event (`deletes`: the page lists events).
    async fn page(
        &self,
        def: &StreamDef,
        account: Option<&str>,
        (first, deletes): (Request, bool),
        state: PageState,
        use_cache: bool,
    ) -> Result<(Vec<Record>, Vec<Reject>, Option<PageState>), Error> {
        let offset = state.received;
        let mut p = self.client.paginate_from(first.use_cache(use_cache), style(), state).items_at("/data");
        let Some(page) = p.next_page().await? else { return Ok((vec![], vec![], None)) };
        let prov = Arc::new(page.response.provenance(crate::KIND, Some(&self.inner.version)));
        let (mut records, mut rejects) = (Vec::with_capacity(page.items.len()), Vec::new());
        for (i, mut item) in page.items.into_iter().enumerate() {
            let location = Location::Item(offset + i as u64);
            if deletes {
                // A deletion event carries the object as it was (its id is the row's key).
                item = item.pointer_mut("/data/object").map(Value::take).unwrap_or(Value::Null);
            }
            let Some(obj) = item.as_object_mut() else {
                rejects.push(Reject {
                    location: Some(location),
                    reason: format!("{} list item is not an object", def.name),
                    path: None,
                    raw: item.to_string(),
                    drift: None,
                });
                continue;
            };
            if let Some(a) = account {
                obj.insert(ACCOUNT_FIELD.to_owned(), Value::String(a.to_owned()));
            }
            let gone = deletes || obj.get("deleted").and_then(Value::as_bool) == Some(true);
            let record = if gone { Record::tombstone(item, prov.clone()) } else { Record::new(item, prov.clone()) };
            records.push(record.at(location));
        }
        Ok((records, rejects, p.state().cloned()))
    }

    /// One page of an account's listing in `(floor, window_end)`, below `below` when set. A
    /// listing whose `starting_after` object was deleted since the page before (Stripe answers
    /// `resource_missing` for `starting_after`) starts again below the `created` of the last
    /// object it gave (objects of that second come again; the ledger skips them), instead of
    /// stopping the stream for good.
    #[allow(clippy::too_many_arguments)]
    async fn listing_page(
        &self,
        def: &StreamDef,
        account: Option<&str>,
        (floor, window_end): (Option<i64>, i64),
        below: &mut Option<i64>,
        last_created: Option<i64>,
        state: PageState,
        use_cache: bool,
    ) -> Result<(Vec<Record>, Vec<Reject>, Option<PageState>), Error> {
        let resumed = state.received > 0;
        let first = (self.first_request(def, account, floor, below.unwrap_or(window_end)), false);
        match self.page(def, account, first, state, use_cache).await {
            Err(e) if resumed && starting_after_is_gone(&e) => {
                let restart = last_created.map_or(window_end, |c| c + 1).min(below.unwrap_or(window_end));
                tracing::warn!(target: "dovetail_stripe", stream = def.name, account = account.unwrap_or("(own)"),
                    below = restart, "the object the listing continued after was deleted; listing again below the last one read");
                *below = Some(restart);
                let first = (self.first_request(def, account, floor, restart), false);
                self.page(def, account, first, PageState::default(), use_cache).await
            }
            other => other,
        }
    }

    /// Notes the stream's first read in this process: one resumed from an earlier run's
    /// position is owed one extension of its window, to this run's start.
    fn note_start(&self, def: &'static StreamDef, resumed: bool) {
        let mut started = self.inner.started.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        started.entry(def.name).or_insert_with(|| resumed.then(|| self.now() + 1));
    }

    /// The extension a resumed stream is owed, once: where its window then ends.
    fn take_extension(&self, def: &'static StreamDef) -> Option<i64> {
        let mut started = self.inner.started.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        started.get_mut(def.name).and_then(Option::take)
    }

    /// Whether `def` keeps its own floor: its change events are read (`change_events`), and
    /// an object re-fetched from one keeps its old `created`, which the engine's `created`
    /// cursor would drop below its floor.
    fn owns_floor(&self, def: &StreamDef) -> bool {
        self.inner.change_events && !def.changed_events.is_empty()
    }

    /// The floor of a stream that keeps its own, checked against Stripe's event retention:
    /// the changes between an older floor and 30 days ago are gone.
    fn own_floor(&self, def: &StreamDef, floor: Option<i64>) -> Result<Option<i64>, Error> {
        if let Some(f) = floor
            && f < self.now() - EVENT_RETENTION_SECS
        {
            let at = jiff::Timestamp::from_second(f).map(|t| t.to_string()).unwrap_or_else(|_| f.to_string());
            return Err(Error::new(
                ErrorKind::Permanent,
                format!(
                    "the {} changes floor ({at}) is older than Stripe's 30-day event retention: the changes \
                     between it and 30 days ago are gone, so reading on would miss them silently",
                    def.name
                ),
            )
            .with_hint(format!(
                "run `dovetail reset {{pipeline}} {}` to read every object again (the ledger writes only what changed)",
                def.name
            )));
        }
        Ok(floor)
    }

    /// The first request of `def`'s change events for one account: `types[]=…updated` (…)
    /// from the pass's floor to the window's end.
    fn changes_request(&self, def: &StreamDef, account: Option<&str>, floor: Option<i64>, window_end: i64) -> Request {
        let mut r = Request::get("v1/events")
            .query("limit", PAGE_SIZE.to_string())
            .query("created[lt]", window_end.to_string());
        for t in def.changed_events {
            r = r.query("types[]", *t);
        }
        if let Some(f) = floor {
            r = r.query("created[gte]", f.to_string());
        }
        if let Some(a) = account {
            r = r.header(ACCOUNT_HEADER, a);
        }
        r
    }

    /// One page of an account's change events: each changed object (once per page)
    /// re-fetched at the pinned version — the event renders it at the version of the event's
    /// creation, and holds it as it was then, not as it is — with the newest event's time and
    /// where the events continue. An object gone since (404) is skipped: its deletion is the
    /// listing's or the deletion events'.
    async fn changes_page(
        &self,
        def: &StreamDef,
        account: Option<&str>,
        first: Request,
        state: PageState,
        use_cache: bool,
    ) -> Result<(Vec<Record>, Vec<Reject>, Option<i64>, Option<PageState>), Error> {
        let offset = state.received;
        let mut p = self.client.paginate_from(first.use_cache(use_cache), style(), state).items_at("/data");
        let Some(page) = p.next_page().await? else { return Ok((vec![], vec![], None, None)) };
        let newest = page.items.iter().filter_map(|e| e.get("created")?.as_i64()).max();
        let (mut records, mut rejects, mut seen) = (Vec::new(), Vec::new(), Vec::new());
        for (i, event) in page.items.iter().enumerate() {
            let location = Location::Item(offset + i as u64);
            let id = event.pointer("/data/object/id").and_then(Value::as_str).unwrap_or_default();
            if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                if seen.contains(&id) {
                    continue;
                }
                seen.push(id);
            } else {
                let reason = format!("{} change event has no usable object id at /data/object/id", def.name);
                rejects.push(Reject {
                    location: Some(location),
                    reason,
                    path: None,
                    raw: event.to_string(),
                    drift: None,
                });
                continue;
            }
            let mut r = Request::get(format!("{}/{id}", def.path)).use_cache(use_cache);
            for f in self.inner.expand.get(def.name).into_iter().flatten() {
                r = r.query("expand[]", f);
            }
            if let Some(a) = account {
                r = r.header(ACCOUNT_HEADER, a);
            }
            let response = match self.client.send(r).await {
                Err(e) if e.status() == Some(404) => continue,
                other => other?,
            };
            let prov = Arc::new(response.provenance(crate::KIND, Some(&self.inner.version)));
            let mut object: Value = response.json()?;
            if let (Some(a), Some(obj)) = (account, object.as_object_mut()) {
                obj.insert(ACCOUNT_FIELD.to_owned(), Value::String(a.to_owned()));
            }
            let gone = object.get("deleted").and_then(Value::as_bool) == Some(true);
            let record = if gone { Record::tombstone(object, prov) } else { Record::new(object, prov) };
            records.push(record.at(location));
        }
        Ok((records, rejects, newest, p.state().cloned()))
    }

    /// The phase after every account's listing of `phase` is read, and its window: a resumed
    /// stream's extension (once), the changes (a stream with its own floor, not on its first
    /// pass), the deletions (`deleted_events`); `None`: the pass is complete.
    fn next_phase(&self, def: &'static StreamDef, phase: Phase, own: bool, window: Window) -> Option<(Phase, Window)> {
        // The window is read; a resumed pass goes on with what was created since the window
        // started — in its last second too, above the pages read then.
        if let Some(end) = self.take_extension(def) {
            return Some((Phase::Windows, (Some(window.1 - 1), end.max(window.1))));
        }
        if phase == Phase::Windows && own && self.owns_floor(def) {
            return Some((Phase::Changes, window));
        }
        // Every window read: the pass ends with the deletions of its time, from its floor.
        (phase != Phase::Deletes && self.inner.deleted_events && def.deleted_event.is_some())
            .then_some((Phase::Deletes, window))
    }

    /// The end of a pass: a stream that keeps its own floor starts the next one from the
    /// newest Stripe time this one saw, at most [`FLOOR_LAG_SECS`] behind its window's end.
    fn done(&self, def: &StreamDef, own: Option<i64>, newest: Option<i64>, window_end: i64) -> Next {
        if !self.owns_floor(def) {
            return Next::Done { resume: None };
        }
        let floor = own.max(newest).map_or(window_end - FLOOR_LAG_SECS, |f| f.max(window_end - FLOOR_LAG_SECS));
        // `NextPass`'s shape, which `read_stream` decodes.
        Next::Done { resume: Some(serde_json::json!({ "floor": floor })) }
    }

    async fn read_stream(&self, def: &'static StreamDef, req: &ReadRequest) -> Result<Page, Error> {
        let owns = self.owns_floor(def);
        // Between passes a stream that keeps its own floor is at `{"floor": …}` (a new pass
        // from `start_date` once `change_events` is off).
        let (pos, next_pass) = match &req.position {
            None => (None, None),
            Some(v) if v.get("window_end").is_none() && v.get("floor").is_some() => {
                (None, Some(position::decode::<NextPass>(def.name, v)?.floor).filter(|_| owns))
            }
            Some(v) => (Some(position::decode::<Position>(def.name, v)?), None),
        };
        self.note_start(def, pos.is_some());
        let mut phase = pos.as_ref().map_or(Phase::Windows, Phase::of);
        let own = if owns { pos.as_ref().map_or(next_pass, |p| p.floor) } else { None };
        let mut newest = pos.as_ref().and_then(|p| p.newest);
        let (mut last_created, mut below) = pos.as_ref().map_or((None, None), |p| (p.last_created, p.below));
        let accounts = self.accounts().await?;
        let (mut idx, mut window, mut state) = match pos {
            // `created[lt]` the next second: objects of this very second are in the window.
            None => (0, (None, self.now() + 1), PageState::default()),
            Some(p) => match accounts.iter().position(|a| *a == p.account) {
                Some(i) => (i, (p.window_start, p.window_end), p.page),
                // A connected account that is gone from "all": on with the next one by id.
                None if matches!(self.inner.accounts, Some(Accounts::All(_))) => {
                    let at = accounts.partition_point(|a| *a < p.account);
                    (at, (p.window_start, p.window_end), PageState::default())
                }
                None => {
                    let why = match &p.account {
                        Some(a) => format!("account `{a}` is no longer in `accounts`"),
                        None => "it names no account, and `accounts` is set".to_owned(),
                    };
                    return Err(position::not_ours(def.name, req.position.as_ref(), why));
                }
            },
        };
        let floor = match owns {
            true => self.own_floor(def, own)?.map(|f| f - OVERLAP.as_secs() as i64).or(self.inner.start),
            false => self.floor(def, req)?,
        };
        let mut rejects_all = Vec::new();
        // Skip empty windows so each read returns records (or ends).
        while let Some(account) = accounts.get(idx) {
            let a = account.as_deref();
            let (records, mut rejects, next) = match (phase, def.deleted_event) {
                (Phase::Changes, _) => {
                    let first = self.changes_request(def, a, floor, window.1);
                    let (records, rejects, seen, next) = self.changes_page(def, a, first, state, req.use_cache).await?;
                    newest = newest.max(seen);
                    (records, rejects, next)
                }
                (Phase::Deletes, Some(event)) => {
                    let first = (self.deletes_request(event, a, floor, window.1), true);
                    self.page(def, a, first, state, req.use_cache).await?
                }
                _ => {
                    let page = self
                        .listing_page(
                            def,
                            a,
                            (window.0.or(floor), window.1),
                            &mut below,
                            last_created,
                            state,
                            req.use_cache,
                        )
                        .await?;
                    let created = |r: &Record| r.data.get(streams::CURSOR)?.as_i64();
                    newest = newest.max(page.0.iter().filter_map(created).max());
                    last_created = page.0.iter().rev().find_map(created).or(last_created);
                    page
                }
            };
            rejects_all.append(&mut rejects);
            let (mut next_idx, mut next_state) = match next {
                Some(s) => (idx, s),
                None => (idx + 1, PageState::default()),
            };
            if next_idx != idx || next_state.received == 0 {
                // Another account's (or phase's) listing starts afresh.
                (last_created, below) = (None, None);
            }
            let mut next_phase = phase;
            if next_idx == accounts.len()
                && let Some((p, w)) = self.next_phase(def, phase, own.is_some(), window)
            {
                (next_idx, next_state, next_phase, window) = (0, PageState::default(), p, w);
            }
            let next = match accounts.get(next_idx) {
                Some(a) => position::encode(&Position {
                    account: a.clone(),
                    window_start: window.0,
                    window_end: window.1,
                    page: next_state.clone(),
                    deletes: next_phase == Phase::Deletes,
                    changes: next_phase == Phase::Changes,
                    floor: own,
                    newest: newest.filter(|_| owns),
                    last_created,
                    below,
                })?,
                None => self.done(def, own, newest, window.1),
            };
            if !records.is_empty() || !rejects_all.is_empty() || !matches!(next, Next::More(_)) {
                return Ok(Page { records, rejects: rejects_all, next });
            }
            (idx, state, phase) = (next_idx, next_state, next_phase);
        }
        Ok(Page { records: vec![], rejects: rejects_all, next: self.done(def, own, newest, window.1) })
    }
}

/// Whether Stripe refused a listing page because its `starting_after` object is gone.
fn starting_after_is_gone(e: &Error) -> bool {
    matches!(e.status(), Some(400 | 404))
        && e.message().contains("resource_missing")
        && e.message().contains("starting_after")
}

/// A window: its lower bound when it is not the pass's floor, and its end (`created[lt]`).
type Window = (Option<i64>, i64);

/// What a pass is reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The listing, in its `created` window.
    Windows,
    /// The change events, each changed object re-fetched (`change_events`).
    Changes,
    /// The deletion events (`deleted_events`).
    Deletes,
}

impl Phase {
    fn of(p: &Position) -> Phase {
        match (p.changes, p.deletes) {
            (true, _) => Phase::Changes,
            (false, true) => Phase::Deletes,
            (false, false) => Phase::Windows,
        }
    }
}

#[async_trait]
impl Source for StripeSource {
    fn kind(&self) -> &'static str {
        crate::KIND
    }

    fn http_report(&self) -> Option<dovetail_core::HttpReport> {
        Some(self.client.report())
    }

    fn streams(&self) -> Vec<StreamSpec> {
        let start = self.inner.start.map(Value::from);
        let spec = |s: &StreamDef| match self.owns_floor(s) {
            // The stream keeps its own floor: a re-fetched object keeps its old `created`.
            true => StreamSpec { cursor_field: None, lookback: None, ..streams::spec(s) },
            false => StreamSpec { start: start.clone(), ..streams::spec(s) },
        };
        self.inner.streams.iter().map(|&s| spec(s)).collect()
    }

    /// Nothing to read; says once, at the start of each run, when the declared schemas come
    /// from a spec of another API version than the pinned one.
    async fn discover(&self, _cx: &Cx) -> Result<(), Error> {
        if let Some(note) = streams::spec_note(&self.inner.streams, &self.inner.version) {
            info!("{note}");
        }
        Ok(())
    }

    /// `GET /v1/account` proves the key and names the account (and each configured connected
    /// account, with its `Stripe-Account` header); the mode comes from the key.
    async fn check(&self, _cx: &Cx) -> Result<(), Error> {
        let own = self.client.send(Request::get("v1/account").cacheable(false)).await?;
        let mode = self.inner.mode.as_str();
        let name = describe(&own.json::<Value>()?);
        info!(target: "dovetail_stripe::check", "stripe: {mode} mode, account {name}");
        if let Some(Accounts::List(list)) = &self.inner.accounts {
            for a in list {
                let r = self.client.send(Request::get("v1/account").header(ACCOUNT_HEADER, a).cacheable(false)).await?;
                let name = describe(&r.json::<Value>()?);
                info!(target: "dovetail_stripe::check", "stripe: {mode} mode, connected account {name}");
            }
        }
        Ok(())
    }

    async fn read(&self, req: &ReadRequest, cx: &Cx) -> Result<Page, Error> {
        let def = self.stream(&req.stream)?;
        tokio::select! {
            r = self.read_stream(def, req) => r.map_err(|e| e.in_stream(def.name)),
            () = cx.cancel.cancelled() => Err(Error::new(ErrorKind::Interrupted, "stopped while waiting for Stripe")),
        }
    }
}

/// An account as `check` names it: its id and, when it has one, its display name.
fn describe(account: &Value) -> String {
    let id = account.get("id").and_then(Value::as_str).unwrap_or("(no id)");
    let name = ["/settings/dashboard/display_name", "/business_profile/name"]
        .iter()
        .find_map(|p| account.pointer(p).and_then(Value::as_str).filter(|s| !s.is_empty()));
    match name {
        Some(n) => format!("{id} ({n})"),
        None => id.to_owned(),
    }
}
