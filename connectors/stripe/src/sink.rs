//! The Stripe sink (`kind = "stripe"` as a sink): each record creates one Stripe object
//! (customer, product, price, invoice item), and later writes of the record update it.
//!
//! A create carries `Idempotency-Key` [`create_key`]: a function of (pipeline, stream, key)
//! only, not of the record's content, so every retry and rerun of a create of one record
//! sends the same key and Stripe creates the object once within the key's 24-hour life. A
//! record that changed between a lost response and its retry therefore meets
//! `400 idempotency_error` (same key, other parameters) rather than creating a second
//! object. Every create also sets `metadata[dovetail_key]`, which is what a lookup finds the
//! object by. The id Stripe answers goes to the ledger; a later write of the record is
//! `POST /v1/{object}/{id}` (an update). A response replayed from Stripe's idempotency store
//! (`Idempotent-Replayed: true`) is counted as a replay, not a create.
//!
//! Each create is recorded as pending in the state store (`Cx::pending`) before it is sent;
//! one still pending after the key's life (24 hours) is looked up before it is sent again,
//! since Stripe has forgotten the key. A record's `stripe_account` field sends its requests
//! to that connected account (`Stripe-Account`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use async_trait::async_trait;
use dovetail_core::Secret;
use dovetail_core::record::idempotency_key;
use dovetail_core::state::PendingCreate;
use dovetail_core::{
    Batch, BuildCx, ContentHash, CreateHint, Cx, Error, Key, Record, Sink, SinkConnector, SinkStream, WriteMode,
    WriteReport,
};
use dovetail_http::{HttpClient, HttpConfig, Request};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::client::ACCOUNT_HEADER;
use crate::config::{Connection, default_base_url, default_stripe_version};
use crate::price::PriceChanges;
use crate::source::ACCOUNT_FIELD;

/// The objects the sink writes: stream name → API path.
pub const OBJECTS: &[(&str, &str)] = &[
    ("customers", "v1/customers"),
    ("products", "v1/products"),
    ("prices", "v1/prices"),
    ("invoice_items", "v1/invoiceitems"),
];

tokio::task_local! {
    /// The connected account the record being written belongs to (its `stripe_account`
    /// field), sent as `Stripe-Account` on each of its requests.
    static ACCOUNT: Option<String>;
    /// The `Request-Id` of the first write (POST) Stripe accepted for the record being
    /// written: noted in the state store for `dovetail explain` once the record is written.
    static WRITE_REQUEST: std::cell::RefCell<Option<String>>;
}

/// The metadata field every create sets to the record's canonical key.
pub const KEY_METADATA: &str = "dovetail_key";

/// Config of the Stripe sink: the source's key, API root, version and HTTP settings.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StripeSinkConfig {
    /// Secret key (`sk_live_…`, `sk_test_…`) or restricted key with write access to the
    /// objects: write `${STRIPE_API_KEY}` or `${file:/path}`.
    pub api_key: Secret,
    /// API root (default `https://api.stripe.com`); the key is sent to this origin only.
    #[serde(default = "default_base_url", deserialize_with = "dovetail_http::http_url")]
    pub base_url: String,
    /// Pinned API version, sent as `Stripe-Version` on every request.
    #[serde(default = "default_stripe_version")]
    pub stripe_version: String,
    /// HTTP settings: timeouts, retries, proxy, rate budget.
    #[serde(default)]
    pub http: HttpConfig,
    /// A price's record that changes its amount (or currency, product, recurrence), which
    /// Stripe does not let change: `dead_letter` (default) or `replace` (a new price, the old
    /// one deactivated).
    #[serde(default)]
    pub price_changes: PriceChanges,
    /// How long Stripe keeps an `Idempotency-Key` (seconds, 0 to 86400; default 86400, its
    /// 24 hours). A create still pending from longer ago is looked up before it is sent
    /// again; tests set 0.
    #[serde(default = "default_key_life", deserialize_with = "dovetail_http::in_range_req::<_, _, 0, 86_400>")]
    #[schemars(range(min = 0, max = 86_400))]
    pub key_life_secs: u64,
    /// The id a product is created with: `stripe` (default, Stripe chooses it) or `key` (the
    /// sink derives it from the record's key, so a product is looked up by `GET
    /// /v1/products/{id}` instead of search, which lags writes).
    #[serde(default)]
    pub product_ids: ProductIds,
}

/// Who chooses a created product's id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProductIds {
    /// Stripe does (`prod_…`); a lookup searches `metadata[dovetail_key]`.
    #[default]
    Stripe,
    /// The sink does: [`product_id`] of the record's key; a lookup is a `GET` by that id.
    Key,
}

/// The id a product is created with under `product_ids = "key"`: `dt_` and the hex of the
/// create's key function over (pipeline, stream, key) — the same for every retry and rerun,
/// and only letters, digits and `_`, whatever the key holds.
pub fn product_id(pipeline: &str, stream: &str, key: &Key) -> String {
    let idem = create_key(pipeline, stream, key);
    format!("dt_{}", idem.trim_start_matches("dt-"))
}

fn default_key_life() -> u64 {
    KEY_LIFE.as_secs()
}

/// How long Stripe keeps an idempotency key and the response stored under it.
pub const KEY_LIFE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Writes streams named after Stripe objects (`customers`, `products`, `prices`,
/// `invoice_items`) to Stripe, creating each record once.
#[derive(Debug, Clone)]
pub struct StripeSink {
    pub(crate) client: HttpClient,
    replays: Arc<AtomicU64>,
    pub(crate) price_changes: PriceChanges,
    key_life: std::time::Duration,
    product_ids: ProductIds,
}

/// The `Idempotency-Key` of the create of one record: the engine's key function over
/// (pipeline, stream, key) with no content (see the module docs for why).
pub fn create_key(pipeline: &str, stream: &str, key: &Key) -> String {
    idempotency_key(pipeline, stream, key, &ContentHash::VOID)
}

fn object_path(stream: &str) -> Result<&'static str, Error> {
    OBJECTS.iter().find(|(name, _)| *name == stream).map(|(_, path)| *path).ok_or_else(|| {
        let known: Vec<&str> = OBJECTS.iter().map(|(n, _)| *n).collect();
        Error::config(format!(
            "the stripe sink writes no stream `{stream}`: name the stream after the object it creates ({})",
            known.join(", ")
        ))
    })
}

impl SinkConnector for StripeSink {
    const KIND: &'static str = crate::KIND;
    type Config = StripeSinkConfig;

    fn build(config: StripeSinkConfig, cx: &BuildCx) -> Result<Self, Error> {
        let conn = Connection {
            api_key: &config.api_key,
            base_url: &config.base_url,
            stripe_version: &config.stripe_version,
            http: &config.http,
        };
        let mode = crate::client::mode(&conn)?;
        let client = crate::client::builder(&conn, mode, cx)?.build()?;
        let key_life = std::time::Duration::from_secs(config.key_life_secs);
        Ok(StripeSink {
            client,
            replays: Arc::default(),
            price_changes: config.price_changes,
            key_life,
            product_ids: config.product_ids,
        })
    }
}

/// One record's outcome.
pub(crate) enum Sent {
    Ok(String),
    Rejected(Error),
}

impl StripeSink {
    /// The pending creates of the batch's records that are creates (no known id), by key.
    async fn pending_of(&self, batch: &Batch, cx: &Cx) -> Result<HashMap<Key, PendingCreate>, Error> {
        let Some(store) = &cx.pending else { return Ok(HashMap::new()) };
        let creates: Vec<Key> = batch
            .records
            .iter()
            .enumerate()
            .filter(|(i, _)| batch.hints.get(*i).is_none_or(|h| h.dest_id.is_none()))
            .filter_map(|(_, r)| r.key.clone())
            .collect();
        if creates.is_empty() {
            return Ok(HashMap::new());
        }
        let found = store.get(&batch.stream.name, &creates).await?;
        Ok(creates.into_iter().zip(found).filter_map(|(k, p)| Some((k, p?))).collect())
    }

    /// One request for the record being written: on its connected account, if it has one.
    pub(crate) async fn send(&self, req: Request) -> Result<dovetail_http::Response, Error> {
        let account = ACCOUNT.try_with(Clone::clone).ok().flatten();
        let post = req.method().as_str() == "POST";
        let resp = match account {
            Some(a) => self.client.send(req.header(ACCOUNT_HEADER, &a)).await?,
            None => self.client.send(req).await?,
        };
        if post && let Some(id) = resp.header("request-id") {
            // The first accepted write delivered the record (a replaced price's deactivation follows it).
            let _ = WRITE_REQUEST.try_with(|w| {
                w.borrow_mut().get_or_insert_with(|| id.to_owned());
            });
        }
        Ok(resp)
    }

    /// Creates answered from Stripe's idempotency store so far (not new objects).
    pub fn replays(&self) -> u64 {
        self.replays.load(Relaxed)
    }

    /// After a create whose outcome is unknown (`failed`): find the object by
    /// `metadata[dovetail_key]`. Found: its id, and the record's current fields sent to it as
    /// an update (the record may have changed since the lost create). Not found: `failed`
    /// stands — a transient one leaves the record in the outbox for the next run (same key),
    /// a final one dead-letters it with Stripe's Request-Id; never a second create.
    async fn resolve_by_lookup(
        &self,
        cx: &Cx,
        path: &str,
        stream: &str,
        key: &Key,
        data: &Value,
        failed: Error,
    ) -> Result<Sent, Error> {
        let found = self.lookup(cx, path, key, data).await?;
        let Some(id) = found else {
            tracing::warn!(stream, key = key.as_str(), error = %failed.report(), "stripe sink: create outcome unknown and no object found by metadata[dovetail_key]");
            return if failed.kind().disposition().rejects_record() {
                Ok(Sent::Rejected(with_request_id(failed)))
            } else {
                Err(with_request_id(failed))
            };
        };
        tracing::info!(
            stream,
            key = key.as_str(),
            id,
            "stripe sink: a create with an unknown outcome had created the object (found by lookup)"
        );
        self.adopt(cx, path, stream, key, data, id).await
    }

    /// The object a lookup found for the record: the record's current fields sent to it as
    /// an update (it may have changed since the create), its id for the ledger.
    async fn adopt(
        &self,
        cx: &Cx,
        path: &str,
        stream: &str,
        key: &Key,
        data: &Value,
        id: String,
    ) -> Result<Sent, Error> {
        let mut body = data.clone();
        if let Some(fields) = body.as_object_mut() {
            let metadata = fields.entry("metadata").or_insert_with(|| Value::Object(Default::default()));
            if let Some(m) = metadata.as_object_mut() {
                m.insert(KEY_METADATA.into(), Value::String(key.as_str().to_owned()));
            }
        }
        if stream == "prices" {
            // A price takes only some fields in an update; a changed amount follows `price_changes`.
            return self.write_price(cx, key, &id, &body).await;
        }
        let form = dovetail_http::form_encode(&body)?;
        let req = Request::post(format!("{path}/{}", encode_id(&id)))
            .body(form)
            .header("content-type", dovetail_http::FORM_CONTENT_TYPE);
        match self.send(req).await {
            Ok(resp) => {
                let request_id = resp.header("request-id").unwrap_or("-");
                tracing::info!(stream, key = key.as_str(), id, request_id, "stripe sink: updated");
                Ok(Sent::Ok(id))
            }
            Err(e) if e.kind().disposition().rejects_record() => Ok(Sent::Rejected(with_request_id(e))),
            Err(e) => Err(e),
        }
    }

    /// The id a create of `stream` chooses itself (products under `product_ids = "key"`).
    fn chosen_id(&self, cx: &Cx, stream: &str, key: &Key) -> Option<String> {
        (stream == "products" && self.product_ids == ProductIds::Key).then(|| product_id(&cx.pipeline, stream, key))
    }

    /// The id of the object of `path` whose `metadata[dovetail_key]` is `key`: a `GET` of the
    /// id the create chose where it chose one, else through Stripe's search where it covers
    /// the object, else by listing the record's customer's invoice items.
    async fn lookup(&self, cx: &Cx, path: &str, key: &Key, data: &Value) -> Result<Option<String>, Error> {
        let matches = |o: &Value| o["metadata"][KEY_METADATA].as_str() == Some(key.as_str());
        let stream = OBJECTS.iter().find(|(_, p)| *p == path).map_or("", |(s, _)| *s);
        if let Some(id) = self.chosen_id(cx, stream, key) {
            let req = Request::get(format!("{path}/{}", encode_id(&id))).cacheable(false);
            return match self.send(req).await {
                Ok(resp) => Ok(resp.json::<Value>()?["id"].as_str().map(str::to_owned)),
                Err(e) if e.status() == Some(404) => Ok(None),
                Err(e) => Err(e),
            };
        }
        if path != "v1/invoiceitems" {
            let query = format!("metadata['{KEY_METADATA}']:{}", search_value(key.as_str()));
            let req = Request::get(format!("{path}/search")).query("query", query).cacheable(false);
            let v: Value = self.send(req).await?.json()?;
            let data = v["data"].as_array().map(Vec::as_slice).unwrap_or_default();
            return Ok(data.iter().find(|o| matches(o)).and_then(|o| o["id"].as_str().map(str::to_owned)));
        }
        let Some(customer) = data["customer"].as_str() else { return Ok(None) };
        let mut after: Option<String> = None;
        loop {
            let mut req = Request::get(path).query("customer", customer).query("limit", "100").cacheable(false);
            if let Some(a) = &after {
                req = req.query("starting_after", a.clone());
            }
            let v: Value = self.send(req).await?.json()?;
            let page = v["data"].as_array().map(Vec::as_slice).unwrap_or_default();
            if let Some(o) = page.iter().find(|o| matches(o)) {
                return Ok(o["id"].as_str().map(str::to_owned));
            }
            match page.last().and_then(|o| o["id"].as_str()) {
                Some(last) if v["has_more"] == true => after = Some(last.to_owned()),
                _ => return Ok(None),
            }
        }
    }

    /// Whether a create pending since `p.since` may have outlived its key at Stripe (an
    /// unreadable time counts as expired: the lookup is the safe side).
    pub(crate) fn expired(&self, p: &PendingCreate) -> bool {
        let Ok(since) = p.since.parse::<jiff::Timestamp>() else { return true };
        let age = jiff::Timestamp::now().as_second() - since.as_second();
        age < 0 || age as u64 >= self.key_life.as_secs()
    }

    /// Before a create: a create of the record still pending past the key's life may have
    /// made the object while Stripe has since forgotten the key, so it is looked up first —
    /// `Some`: found and adopted. Otherwise the create is recorded as pending (unless a
    /// younger one is, which the same key still covers) before it is sent.
    async fn before_create(
        &self,
        cx: &Cx,
        (path, stream): (&str, &str),
        key: &Key,
        data: &Value,
        pending: Option<&PendingCreate>,
    ) -> Result<Option<Sent>, Error> {
        let expired = pending.is_some_and(|p| self.expired(p));
        if expired {
            if let Some(id) = self.lookup(cx, path, key, data).await? {
                tracing::info!(
                    stream,
                    key = key.as_str(),
                    id,
                    "stripe sink: a create pending past the key's life had created the object (found by lookup)"
                );
                return self.adopt(cx, path, stream, key, data, id).await.map(Some);
            }
            tracing::info!(
                stream,
                key = key.as_str(),
                "stripe sink: a create pending past the key's life found nothing by lookup; creating"
            );
        }
        if let Some(store) = &cx.pending
            && (pending.is_none() || expired)
        {
            let idempotency_key = create_key(&cx.pipeline, stream, key);
            let p = PendingCreate { key: key.clone(), idempotency_key, since: dovetail_core::now_rfc3339() };
            store.record(stream, &p).await?;
        }
        Ok(None)
    }

    async fn send_one(
        &self,
        cx: &Cx,
        stream: &str,
        record: &Record,
        hint: Option<&CreateHint>,
        pending: Option<&PendingCreate>,
        replays: &mut u64,
    ) -> Result<Sent, Error> {
        let path = object_path(stream)?;
        let Some(key) = &record.key else {
            return Ok(Sent::Rejected(Error::data("the record has no primary key to create it by")));
        };
        let mut body = record.data.clone();
        let Some(fields) = body.as_object_mut() else {
            return Ok(Sent::Rejected(Error::data("the record is not an object: it cannot be a Stripe object")));
        };
        let metadata = fields.entry("metadata").or_insert_with(|| Value::Object(Default::default()));
        let Some(metadata) = metadata.as_object_mut() else {
            return Ok(Sent::Rejected(Error::data("`metadata` is not an object")));
        };
        metadata.insert(KEY_METADATA.into(), Value::String(key.as_str().to_owned()));
        let dest_id = hint.and_then(|h| h.dest_id.clone());
        if dest_id.is_none()
            && let Some(id) = self.chosen_id(cx, stream, key)
        {
            fields.insert("id".into(), Value::String(id));
        }
        let form = match dovetail_http::form_encode(&body) {
            Ok(form) => form,
            Err(e) => return Ok(Sent::Rejected(e)),
        };
        if let (Some(id), "prices") = (&dest_id, stream) {
            return self.write_price(cx, key, id, &body).await;
        }
        if dest_id.is_none()
            && let Some(sent) = self.before_create(cx, (path, stream), key, &record.data, pending).await?
        {
            return Ok(sent);
        }
        let req = match &dest_id {
            Some(id) => Request::post(format!("{path}/{}", encode_id(id))),
            None => Request::post(path).header("Idempotency-Key", &create_key(&cx.pipeline, stream, key)),
        };
        let req = req.body(form).header("content-type", dovetail_http::FORM_CONTENT_TYPE);
        let resp = match self.send(req).await {
            Ok(resp) => resp,
            Err(e) if dest_id.is_none() && unknown_outcome(&e) => {
                return self.resolve_by_lookup(cx, path, stream, key, &record.data, e).await;
            }
            Err(e) if e.kind().disposition().rejects_record() => return Ok(Sent::Rejected(with_request_id(e))),
            Err(e) => return Err(e),
        };
        let request_id = resp.header("request-id").unwrap_or("-").to_owned();
        let replayed = resp.header("idempotent-replayed").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let answered = resp.json::<Value>().ok().and_then(|v| v["id"].as_str().map(str::to_owned));
        let id = match answered.or_else(|| dest_id.clone()) {
            Some(id) => id,
            None => {
                return Ok(Sent::Rejected(Error::data(format!(
                    "Stripe created the object but its response has no `id` (Request-Id {request_id})"
                ))));
            }
        };
        if replayed {
            self.replays.fetch_add(1, Relaxed);
            *replays += 1;
        }
        let what = match (&dest_id, replayed) {
            (Some(_), _) => "updated",
            (None, true) => "replayed create",
            (None, false) => "created",
        };
        tracing::info!(stream, key = key.as_str(), id, request_id, "stripe sink: {what}");
        Ok(Sent::Ok(id))
    }
}

/// Whether a failed create may have created the object: a 5xx (Stripe stores it under the
/// key, so the same key answers it again), `400 idempotency_error` (the key was used with
/// other parameters: the record changed after a response was lost) or `400
/// resource_already_exists` (a product's chosen id is taken: by this record's earlier create).
fn unknown_outcome(e: &Error) -> bool {
    match e.status() {
        Some(s) if s >= 500 => true,
        Some(400) => ["idempotency_error", "resource_already_exists"].iter().any(|c| e.message().contains(c)),
        _ => false,
    }
}

/// The error with Stripe's `Request-Id` in its words, for dead letters and logs.
pub(crate) fn with_request_id(e: Error) -> Error {
    match e.http().and_then(|h| h.header("request-id")).map(str::to_owned) {
        Some(id) if !e.message().contains(&id) => {
            let http = e.http().cloned();
            let out = Error::new(e.kind().clone(), format!("{} (Request-Id {id})", e.message()));
            match http {
                Some(h) => out.with_http(h),
                None => out,
            }
        }
        _ => e,
    }
}

/// Connect: a record's `stripe_account` (the column the source names every row's account
/// with) is no parameter of the object but the account its requests go to, as `Stripe-Account`.
fn on_account(record: &Record) -> Result<(std::borrow::Cow<'_, Record>, Option<String>), Error> {
    let Some(v) = record.data.get(ACCOUNT_FIELD) else { return Ok((std::borrow::Cow::Borrowed(record), None)) };
    let account = match v {
        Value::String(a) if a.starts_with("acct_") => Some(a.clone()),
        Value::Null => None,
        other => {
            return Err(Error::data(format!(
                "`{ACCOUNT_FIELD}` must be a connected account id (`acct_…`), not {other}"
            )));
        }
    };
    let mut owned = record.clone();
    if let Some(o) = owned.data.as_object_mut() {
        o.remove(ACCOUNT_FIELD);
    }
    Ok((std::borrow::Cow::Owned(owned), account))
}

/// A Stripe search query value: single-quoted, with `'` and `\` escaped.
pub(crate) fn search_value(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// An object id as one path segment (Stripe ids are `[A-Za-z0-9_]`; anything else is escaped).
pub(crate) fn encode_id(id: &str) -> String {
    id.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b == b'_' { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[async_trait]
impl Sink for StripeSink {
    fn kind(&self) -> &'static str {
        crate::KIND
    }

    fn http_report(&self) -> Option<dovetail_core::HttpReport> {
        Some(self.client.report())
    }

    fn write_mode(&self) -> WriteMode {
        WriteMode::CreateWithIdempotencyKey
    }

    async fn check(&self, _cx: &Cx) -> Result<(), Error> {
        self.client.send(Request::get("v1/account").cacheable(false)).await.map(|_| ())
    }

    async fn open(&self, stream: &SinkStream, _cx: &Cx) -> Result<(), Error> {
        object_path(&stream.name).map(|_| ())
    }

    async fn write(&self, batch: Batch, cx: &Cx) -> Result<WriteReport, Error> {
        let n = batch.records.len();
        let mut report = WriteReport { dest_ids: vec![None; n], ..Default::default() };
        let pending = self.pending_of(&batch, cx).await?;
        for (i, record) in batch.records.iter().enumerate() {
            if cx.cancel.is_cancelled() {
                return Err(Error::new(
                    dovetail_core::ErrorKind::Interrupted,
                    "stopped before the whole batch was sent",
                ));
            }
            let p = record.key.as_ref().and_then(|k| pending.get(k));
            let (record, account) = match on_account(record) {
                Ok(split) => split,
                Err(e) => {
                    report.rejected.push((i, e));
                    continue;
                }
            };
            let sent = async {
                let sent = self.send_one(cx, &batch.stream.name, &record, batch.hints.get(i), p, &mut report.replayed);
                let sent = sent.await;
                (sent, WRITE_REQUEST.with(|w| w.borrow_mut().take()))
            };
            let (sent, request_id) = WRITE_REQUEST.scope(Default::default(), ACCOUNT.scope(account, sent)).await;
            match sent? {
                Sent::Ok(id) => {
                    report.written += 1;
                    report.dest_ids[i] = Some(id);
                    if let (Some(store), Some(rid), Some(key)) = (&cx.pending, request_id, &record.key)
                        && let Err(e) = store.note_write(&batch.stream.name, key, &rid).await
                    {
                        tracing::warn!(
                            key = key.as_str(),
                            request_id = rid,
                            "stripe sink: cannot note the write's Request-Id for explain: {e}"
                        );
                    }
                }
                Sent::Rejected(e) => report.rejected.push((i, e)),
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_create_key_ignores_content_and_ids_are_one_segment() {
        let k = Key::from_canonical("7");
        assert_eq!(create_key("p", "customers", &k), create_key("p", "customers", &k));
        assert_ne!(create_key("p", "customers", &k), create_key("p", "products", &k));
        assert_eq!(encode_id("cus_A1/x"), "cus_A1%2Fx");
        assert_eq!(search_value(r#""it's""#), r#"'"it\'s"'"#);
        assert!(object_path("charges").unwrap_err().message().contains("customers, products, prices, invoice_items"));
    }
}
