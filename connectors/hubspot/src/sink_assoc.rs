//! The sink's associations: with `associate = { to = "companies", id_field = "company_id",
//! type_id = 1 }`, each record's `company_id` field (a HubSpot id; not a property, so not
//! sent as one) names the company its object is associated with, once the upsert gave the
//! object's id: `POST /crm/associations/{version}/{object}/{to}/batch/create`, at most
//! [`crate::BATCH_MAX`] pairs a request. HubSpot's answer is matched by the pair of ids,
//! never by position; a pair it does not confirm dead-letters its record with HubSpot's
//! error (the object itself was written: a replay upserts it again, which changes nothing,
//! and associates it). A whole batch refused is split in halves like the upsert's.

use dovetail_core::{Disposition, Error, WriteReport};
use dovetail_http::{HttpClient, Request};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::api;

/// What each written object is associated with (see the module docs).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Associate {
    /// The object type associated to, e.g. `companies`.
    pub to: String,
    /// The record's field holding the HubSpot id of the object to associate with; a record
    /// without it (or with null) is written without an association.
    pub id_field: String,
    /// HubSpot's association type id (e.g. 1, contact to primary company; 279, unlabeled).
    #[serde(deserialize_with = "dovetail_http::in_range_req::<_, _, 1, 1_000_000>")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub type_id: u32,
    /// `HUBSPOT_DEFINED` (the default) or `USER_DEFINED` (a custom label's type).
    #[serde(default = "hubspot_defined")]
    pub category: String,
}

fn hubspot_defined() -> String {
    "HUBSPOT_DEFINED".to_owned()
}

/// The id to associate `fields` with, taken out of them: `Ok(None)` when the record has none.
pub(crate) fn take_id(associate: &Associate, fields: &mut Map<String, Value>) -> Result<Option<String>, String> {
    match fields.remove(&associate.id_field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
        Some(Value::Number(n)) if n.is_u64() => Ok(Some(n.to_string())),
        Some(other) => Err(format!("`{}`: `{other}` is not a HubSpot id to associate with", associate.id_field)),
    }
}

/// One pair to associate: the record's index, its object's id, the other object's id.
pub(crate) struct Pair {
    pub(crate) index: usize,
    pub(crate) from: String,
    pub(crate) to: String,
}

/// `pairs` associated, in batches; a pair HubSpot does not confirm makes its record a dead
/// letter instead of written.
pub(crate) async fn associate(
    client: &HttpClient,
    version: &str,
    object: &str,
    associate: &Associate,
    pairs: Vec<Pair>,
    report: &mut WriteReport,
) -> Result<(), Error> {
    let path = api::associations_create(version, object, &associate.to);
    let mut pending: Vec<Vec<Pair>> = Vec::new();
    let mut pairs = pairs;
    while !pairs.is_empty() {
        let rest = pairs.split_off(pairs.len().min(crate::BATCH_MAX));
        pending.push(pairs);
        pairs = rest;
    }
    while let Some(batch) = pending.pop() {
        let types = json!([{ "associationCategory": associate.category, "associationTypeId": associate.type_id }]);
        let inputs: Vec<Value> =
            batch.iter().map(|p| json!({ "from": { "id": p.from }, "to": { "id": p.to }, "types": types })).collect();
        let req = Request::post(path.clone()).json(&json!({ "inputs": inputs })).repeatable(true);
        match client.send(req).await {
            Ok(response) => {
                let answer: Answer = response.json()?;
                settle(batch, &answer, report);
            }
            Err(e) if e.kind().disposition() == Disposition::Reject && batch.len() > 1 => {
                let mut first = batch;
                let second = first.split_off(first.len() / 2);
                pending.push(second);
                pending.push(first);
            }
            Err(e) if e.kind().disposition() == Disposition::Reject => {
                let p = &batch[0];
                refuse(
                    report,
                    p.index,
                    format!("HubSpot refused to associate {} with {}: {}", p.from, p.to, e.message()),
                );
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A written record turned dead letter: its association failed.
fn refuse(report: &mut WriteReport, index: usize, why: String) {
    report.written = report.written.saturating_sub(1);
    report.rejected.push((index, Error::data(why)));
}

fn settle(batch: Vec<Pair>, answer: &Answer, report: &mut WriteReport) {
    let done: Vec<(String, String)> =
        answer.results.iter().map(|r| (text(&r.from_object_id), text(&r.to_object_id))).collect();
    for p in batch {
        if done.iter().any(|(f, t)| *f == p.from && *t == p.to) {
            continue;
        }
        // HubSpot's errors name the ids in their message or context: those about this pair.
        let about = |e: &&Failed| {
            let context = e.context.to_string();
            [&p.from, &p.to].iter().any(|id| e.message.contains(id.as_str()) || context.contains(id.as_str()))
        };
        let why: Vec<String> =
            answer.errors.iter().filter(about).map(|e| format!("{} ({})", e.message, e.category)).collect();
        let said = if why.is_empty() { "its answer does not confirm it".to_owned() } else { why.join("; ") };
        refuse(report, p.index, format!("HubSpot did not associate {} with {}: {said}", p.from, p.to));
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The batch create's answer (200, 201 or 207).
#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    results: Vec<Created>,
    #[serde(default)]
    errors: Vec<Failed>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Created {
    #[serde(default)]
    from_object_id: Value,
    #[serde(default)]
    to_object_id: Value,
}

#[derive(Debug, Deserialize)]
struct Failed {
    #[serde(default)]
    category: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    context: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_field_is_taken_out_of_the_properties_as_text() {
        let a: Associate =
            serde_json::from_value(json!({ "to": "companies", "id_field": "company_id", "type_id": 1 })).unwrap();
        assert_eq!(a.category, "HUBSPOT_DEFINED");
        let mut fields = json!({ "email": "a@example.com", "company_id": 502 }).as_object().cloned().unwrap();
        assert_eq!(take_id(&a, &mut fields), Ok(Some("502".to_owned())));
        assert!(!fields.contains_key("company_id"));
        let mut none = json!({ "company_id": null }).as_object().cloned().unwrap();
        assert_eq!(take_id(&a, &mut none), Ok(None));
        let mut bad = json!({ "company_id": [1] }).as_object().cloned().unwrap();
        assert_eq!(take_id(&a, &mut bad), Err("`company_id`: `[1]` is not a HubSpot id to associate with".to_owned()));
    }
}
