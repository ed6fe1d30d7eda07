//! The sink (`kind = "hubspot"` under `[pipelines.X.sink]`): each mapped record is one
//! object's properties, upserted by `id_property` (`email`, or a custom unique property)
//! with HubSpot's batch upsert, at most [`BATCH_MAX`] inputs a request.
//!
//! - **Update by id when known.** A record the ledger already knows HubSpot's id of (an
//!   earlier run wrote it) is updated by that id (`batch/update`), so a change of its
//!   `id_property` value (a new email) updates the same object instead of creating another;
//!   an id HubSpot no longer has (`OBJECT_NOT_FOUND`, deleted in the portal) falls back to the
//!   upsert. The ledger's ids come in the batch's hints
//!   ([`WriteMode::CreateWithIdempotencyKey`]; the idempotency key itself is not used: an
//!   upsert or an update by id is idempotent already).
//! - **Values first.** Every record is checked against the properties API before anything
//!   is sent ([`crate::sink_values`]): a field that is no property, a value that is not its
//!   type, an enumeration value outside its options, a missing `id_property` value is a dead
//!   letter naming the property, and the rest of the batch goes. An upsert (an input whose
//!   HubSpot id the ledger does not know: it may create) without a property creating that
//!   object requires is one too ([`crate::sink_required`]).
//! - **Results by key.** Each input carries its record's `id_property` value; HubSpot's
//!   results and errors are matched back by that value, never by position. A `207
//!   Multi-Status` delivers what succeeded and dead-letters each failed input with HubSpot's
//!   error (category, message, property). An input HubSpot's answer does not mention is a
//!   dead letter saying so.
//! - **Split on a refused batch.** A whole-batch 4xx (a refusal, not an outage) is sent again
//!   in halves until the bad inputs stand alone: each is dead-lettered with HubSpot's error,
//!   the others are delivered. Nothing that succeeded is sent again.
//! - **Associations** after the writes, with `associate` ([`crate::sink_assoc`]).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use dovetail_core::{Batch, BuildCx, Cx, Disposition, Error, Sink, SinkConnector, SinkStream, WriteMode, WriteReport};
use dovetail_http::{HttpClient, Request};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::OnceCell;

use crate::api;
use crate::client::AccountZone;
use crate::config::{HubspotConfig, HubspotOAuth};
use crate::props::{self, Kinds, PropertyList};
use dovetail_core::Secret;
use dovetail_http::HttpConfig;

/// HubSpot's largest batch: 100 inputs a request.
pub const BATCH_MAX: usize = 100;

/// The HubSpot sink's config.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HubspotSinkConfig {
    /// API base URL (default `https://api.hubapi.com`); credentials go to this origin only.
    #[serde(default = "crate::config::default_base_url")]
    pub base_url: String,
    /// A private-app access token (from `${ENV}` or `${file:...}`); or give `oauth`.
    #[serde(default)]
    pub token: Option<Secret>,
    /// A public app's OAuth2 credentials, refreshed at `{base_url}/oauth/v1/token`.
    #[serde(default)]
    pub oauth: Option<HubspotOAuth>,
    /// The date-based API version in every path, e.g. `2026-09` (the default).
    #[serde(default = "crate::config::default_api_version")]
    pub api_version: String,
    /// The object written: `contacts`, `companies`, `deals`, `tickets`, or a custom object.
    pub object: String,
    /// The unique property records are upserted by (`email` for contacts, or a custom
    /// property with unique values); every record must carry it.
    pub id_property: String,
    /// Associate each written object with another by an id the record carries, e.g.
    /// `{ to = "companies", id_field = "company_id", type_id = 1 }` ([`crate::Associate`]).
    #[serde(default)]
    pub associate: Option<crate::Associate>,
    /// Properties a created object must have, on top of those HubSpot documents for the
    /// object (e.g. `["amount"]`; deals always need `dealname` and `dealstage`): an input
    /// without one is dead-lettered before it is sent, unless it updates a known HubSpot id.
    #[serde(default)]
    pub required: Vec<String>,
    /// Timeouts, retries, rate limit, circuit breaker, proxy, CA certificates, headers.
    #[serde(default)]
    pub http: HttpConfig,
}

/// The HubSpot sink.
#[derive(Debug, Clone)]
pub struct HubspotSink {
    client: HttpClient,
    config: Arc<HubspotSinkConfig>,
    kinds: Arc<OnceCell<Kinds>>,
}

impl SinkConnector for HubspotSink {
    const KIND: &'static str = crate::KIND;
    type Config = HubspotSinkConfig;

    fn build(config: HubspotSinkConfig, cx: &BuildCx) -> Result<Self, Error> {
        if config.object.trim().is_empty() || config.object == crate::OWNERS {
            return Err(Error::config("`object`: name the object written, e.g. `contacts` (owners are read-only)"));
        }
        if config.id_property.trim().is_empty() {
            return Err(Error::config("`id_property` is empty: name the unique property, e.g. `email`"));
        }
        if let Some(blank) = config.required.iter().position(|n| n.trim().is_empty()) {
            return Err(Error::config(format!("`required[{blank}]` is empty: name a property of the object")));
        }
        if let Some(a) = &config.associate {
            if a.to.trim().is_empty() || a.to == crate::OWNERS {
                return Err(Error::config("`associate.to`: name the object type associated to, e.g. `companies`"));
            }
            if a.id_field.trim().is_empty() || a.id_field == config.id_property {
                return Err(Error::config(
                    "`associate.id_field`: name the record's field holding the other object's HubSpot id (not `id_property`)",
                ));
            }
        }
        let connection = HubspotConfig {
            base_url: config.base_url.clone(),
            token: config.token.clone(),
            oauth: config.oauth.clone(),
            api_version: config.api_version.clone(),
            objects: vec![config.object.clone()],
            properties: Default::default(),
            associations: vec![],
            search_rate: crate::SEARCHES_PER_SECOND,
            http: config.http.clone(),
        };
        let client = crate::client::build(&connection, cx, &AccountZone::default())?;
        Ok(HubspotSink { client, config: Arc::new(config), kinds: Arc::default() })
    }
}

/// One input of a batch: the record's index, its `id_property` value, HubSpot's id when the
/// ledger knows it, and its properties.
struct Input {
    index: usize,
    id: String,
    object_id: Option<String>,
    properties: Map<String, Value>,
}

/// How a request names its inputs: by the unique property (upsert) or HubSpot's id (update).
#[derive(Debug, Clone, Copy, PartialEq)]
enum By {
    Property,
    ObjectId,
}

impl HubspotSink {
    /// The object's properties, read once.
    async fn kinds(&self) -> Result<&Kinds, Error> {
        self.kinds
            .get_or_try_init(|| async {
                let list: PropertyList = self
                    .client
                    .send(Request::get(api::properties(&self.config.api_version, &self.config.object)))
                    .await?
                    .json()?;
                Ok(props::kinds(&list, None))
            })
            .await
    }

    /// `inputs` upserted (or updated by HubSpot's id), halves sent again after a whole-batch
    /// refusal; the outcome of each into `report`; the updates of objects HubSpot no longer
    /// has are returned, to be upserted.
    async fn send(&self, by: By, inputs: Vec<Input>, report: &mut WriteReport) -> Result<Vec<Input>, Error> {
        let (version, object) = (&self.config.api_version, &self.config.object);
        let mut pending = vec![inputs];
        let mut gone = Vec::new();
        while let Some(inputs) = pending.pop() {
            let (path, body) = match by {
                By::Property => (
                    api::batch_upsert(version, object),
                    json!({ "inputs": inputs.iter().map(|i| json!({
                        "idProperty": self.config.id_property, "id": i.id, "properties": i.properties,
                    })).collect::<Vec<_>>() }),
                ),
                By::ObjectId => (
                    api::batch_update(version, object),
                    json!({ "inputs": inputs.iter().map(|i| json!({
                        "id": i.object_id, "properties": i.properties,
                    })).collect::<Vec<_>>() }),
                ),
            };
            match self.client.send(Request::post(path).json(&body)).await {
                Ok(response) => {
                    let answer: BatchAnswer = response.json()?;
                    gone.extend(self.settle(by, inputs, answer, report));
                }
                Err(e) if e.kind().disposition() == Disposition::Reject && inputs.len() > 1 => {
                    let mut first = inputs;
                    let second = first.split_off(first.len() / 2);
                    pending.push(second);
                    pending.push(first);
                }
                Err(e) if e.kind().disposition() == Disposition::Reject => {
                    report.rejected.push((inputs[0].index, e));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(gone)
    }

    /// Each input's outcome from HubSpot's answer, matched by its `id_property` value (or
    /// HubSpot's id, for updates), never by position; the updates of objects HubSpot no
    /// longer has are returned.
    fn settle(&self, by: By, inputs: Vec<Input>, answer: BatchAnswer, report: &mut WriteReport) -> Vec<Input> {
        let prop = self.config.id_property.as_str();
        let (name, key) = match by {
            By::Property => (prop, (|i: &Input| i.id.clone()) as fn(&Input) -> String),
            By::ObjectId => ("id", (|i: &Input| i.object_id.clone().unwrap_or_default()) as fn(&Input) -> String),
        };
        let mut by_key: HashMap<String, Input> = inputs.into_iter().map(|i| (key(&i), i)).collect();
        for r in &answer.results {
            let found = match by {
                By::Property => r.properties.get(prop).and_then(Value::as_str).map(str::to_owned),
                By::ObjectId => r.id.clone(),
            };
            if let Some(input) = found.and_then(|k| by_key.remove(&k)) {
                report.written += 1;
                report.dest_ids[input.index] = r.id.clone();
            }
        }
        let mut gone = Vec::new();
        for e in &answer.errors {
            for id in e.ids() {
                let Some(input) = by_key.remove(&id) else { continue };
                if by == By::ObjectId && e.category == "OBJECT_NOT_FOUND" {
                    gone.push(Input { object_id: None, ..input });
                } else {
                    report.rejected.push((input.index, Error::data(e.describe(name, &id))));
                }
            }
        }
        for (k, input) in by_key {
            let why = format!("HubSpot's answer names neither a result nor an error for `{name}` = `{k}`");
            report.rejected.push((input.index, Error::data(why)));
        }
        gone
    }
}

/// A batch write's answer (200, 201 or 207 Multi-Status).
#[derive(Debug, Deserialize)]
struct BatchAnswer {
    #[serde(default)]
    results: Vec<BatchResult>,
    #[serde(default)]
    errors: Vec<BatchError>,
}

#[derive(Debug, Deserialize)]
struct BatchResult {
    id: Option<String>,
    #[serde(default)]
    properties: Map<String, Value>,
}

/// One error of a 207: HubSpot's category and message, and in its context the inputs it is
/// about (`ids`) and the property (`propertyName`).
#[derive(Debug, Deserialize)]
struct BatchError {
    #[serde(default)]
    category: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    context: Map<String, Value>,
}

impl BatchError {
    fn ids(&self) -> Vec<String> {
        let list = |k: &str| -> Vec<String> {
            match self.context.get(k) {
                Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
                Some(Value::String(s)) => vec![s.clone()],
                _ => Vec::new(),
            }
        };
        [list("ids"), list("id")].concat()
    }

    fn describe(&self, prop: &str, id: &str) -> String {
        let property = match self.context.get("propertyName") {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "),
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let on = if property.is_empty() { String::new() } else { format!(", property `{property}`") };
        format!("HubSpot refused `{prop}` = `{id}`: {} ({}{on})", self.message, self.category)
    }
}

#[async_trait]
impl Sink for HubspotSink {
    fn kind(&self) -> &'static str {
        crate::KIND
    }

    fn write_mode(&self) -> WriteMode {
        // For the ledger's HubSpot ids in the batch's hints (see the module docs).
        WriteMode::CreateWithIdempotencyKey
    }

    fn http_report(&self) -> Option<dovetail_core::HttpReport> {
        Some(self.client.report())
    }

    async fn check(&self, _cx: &Cx) -> Result<(), Error> {
        self.kinds().await.map(|_| ())
    }

    async fn open(&self, _stream: &SinkStream, _cx: &Cx) -> Result<(), Error> {
        let kinds = self.kinds().await?;
        if !kinds.contains_key(&self.config.id_property) {
            return Err(Error::config(format!(
                "`id_property`: `{}` is no property of HubSpot's {}",
                self.config.id_property, self.config.object
            )));
        }
        crate::sink_required::Required::check_config(&self.config.required, kinds, &self.config.object)
    }

    async fn write(&self, batch: Batch, _cx: &Cx) -> Result<WriteReport, Error> {
        let kinds = self.kinds().await?;
        let n = batch.records.len();
        let mut report = WriteReport { dest_ids: vec![None; n], ..Default::default() };
        let prop = &self.config.id_property;
        let mut inputs = Vec::new();
        let mut links = Vec::new();
        for (index, record) in batch.records.iter().enumerate() {
            let checked = record
                .data
                .as_object()
                .ok_or_else(|| "the mapped record is not an object of properties".to_owned())
                .and_then(|fields| {
                    let Some(associate) = &self.config.associate else { return Ok(fields.clone()) };
                    let mut fields = fields.clone();
                    if let Some(to) = crate::sink_assoc::take_id(associate, &mut fields)? {
                        links.push((index, to));
                    }
                    Ok(fields)
                })
                .and_then(|fields| crate::sink_values::properties(kinds, &self.config.object, &fields))
                .and_then(|properties| match properties.get(prop).and_then(Value::as_str) {
                    Some(id) if !id.is_empty() => {
                        let object_id = batch.hints.get(index).and_then(|h| h.dest_id.clone());
                        Ok(Input { index, id: id.to_owned(), object_id, properties })
                    }
                    _ => Err(format!("no `{prop}` value to upsert by")),
                });
            match checked {
                Ok(input) => inputs.push(input),
                Err(why) => report.rejected.push((index, Error::data(why))),
            }
        }
        let (mut updates, upserts): (Vec<Input>, Vec<Input>) = inputs.into_iter().partition(|i| i.object_id.is_some());
        let mut inputs = upserts;
        while !updates.is_empty() {
            let rest = updates.split_off(updates.len().min(BATCH_MAX));
            inputs.extend(self.send(By::ObjectId, updates, &mut report).await?);
            updates = rest;
        }
        // An upsert may create, so it must carry what a create requires (an update by a
        // known id that found its object gone is an upsert now too).
        let required = crate::sink_required::Required::new(&self.config.object, &self.config.required, kinds);
        let (mut inputs, incomplete): (Vec<Input>, Vec<Input>) =
            inputs.into_iter().partition(|i| required.missing(&i.properties).is_none());
        for i in incomplete {
            let missing = required.missing(&i.properties).unwrap_or_default();
            let key = batch.records[i.index].key.as_ref().map_or_else(|| i.id.clone(), ToString::to_string);
            let why = format!(
                "HubSpot's {} require {missing} to create one: record {key} (`{prop}` = `{}`) has none, \
                 and no HubSpot id is known for it to update",
                self.config.object, i.id
            );
            report.rejected.push((i.index, Error::data(why)));
        }
        while !inputs.is_empty() {
            let rest = inputs.split_off(inputs.len().min(BATCH_MAX));
            self.send(By::Property, inputs, &mut report).await?;
            inputs = rest;
        }
        if let Some(associate) = &self.config.associate {
            let refused: std::collections::HashSet<usize> = report.rejected.iter().map(|(i, _)| *i).collect();
            let pairs = links
                .into_iter()
                .filter(|(index, _)| !refused.contains(index))
                .filter_map(|(index, to)| {
                    let from = report.dest_ids.get(index).cloned().flatten()?;
                    Some(crate::sink_assoc::Pair { index, from, to })
                })
                .collect();
            let (version, object) = (&self.config.api_version, &self.config.object);
            crate::sink_assoc::associate(&self.client, version, object, associate, pairs, &mut report).await?;
        }
        Ok(report)
    }
}
