//! Association streams: one per configured pair (`associations = ["contacts:companies"]` →
//! stream `contacts_to_companies`), a row per association type between two objects.
//!
//! A page lists one page of the `from` object's ids (`GET …/objects/{version}/{from}`, `after`
//! paging) and reads their associations in one batch (`POST
//! /crm/associations/{version}/{from}/{to}/batch/read`, `inputs` of `id`), following an
//! object's own `paging.next.after` when it has more associations than one answer holds.
//! The key is `(from_id, to_id, type_id)`; there is no cursor (HubSpot keeps no modified
//! time on an association), so the stream is read whole each run: with `sync_mode =
//! "full_refresh"` and `delete = "delete"` an association removed in HubSpot is deleted at
//! the sink. An object with no association is HubSpot's `207` with a `NO_ASSOCIATIONS_FOUND`
//! error for that id: nothing to read, not a failure.

use std::sync::Arc;

use dovetail_core::{Error, FieldPath, Location, Next, Page, Record, StreamSpec, position};
use dovetail_http::{HttpClient, Request, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api;
use crate::config::{HubspotConfig, PAGE_SIZE};

/// One configured pair: the stream's name and the two object types.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pair {
    pub(crate) stream: String,
    pub(crate) from: String,
    pub(crate) to: String,
}

/// The pairs in `config.associations`, checked: `from:to`, both named, none twice, no
/// stream name shared with an object.
pub(crate) fn pairs(config: &HubspotConfig) -> Result<Vec<Pair>, Error> {
    let mut out: Vec<Pair> = Vec::new();
    for (i, text) in config.associations.iter().enumerate() {
        let bad = |why: &str| Error::config(format!("`associations[{i}]`: `{text}` {why}"));
        let (from, to) = text
            .split_once(':')
            .map(|(f, t)| (f.trim(), t.trim()))
            .filter(|(f, t)| !f.is_empty() && !t.is_empty() && !t.contains(':'))
            .ok_or_else(|| bad("is not `from:to`, e.g. `contacts:companies`"))?;
        if from == crate::source::OWNERS || to == crate::source::OWNERS {
            return Err(bad("names owners, which have no associations"));
        }
        let stream = format!("{from}_to_{to}");
        if out.iter().any(|p| p.stream == stream) {
            return Err(bad("is named twice"));
        }
        if config.objects.contains(&stream) {
            return Err(bad(&format!("makes stream `{stream}`, which is also one of `objects`")));
        }
        out.push(Pair { stream, from: from.to_owned(), to: to.to_owned() });
    }
    Ok(out)
}

/// The stream of `pair`: keyed by both ids and the association type, a fixed schema.
pub(crate) fn spec(pair: &Pair) -> StreamSpec {
    let text = json!({ "type": ["string", "null"] });
    let mut spec = StreamSpec::new(
        pair.stream.clone(),
        vec![FieldPath::new("from_id"), FieldPath::new("to_id"), FieldPath::new("type_id")],
    );
    spec.schema = Some(json!({
        "type": "object",
        "required": ["from_id", "to_id", "type_id"],
        "properties": {
            "from_id": { "type": "string" },
            "to_id": { "type": "string" },
            "type_id": { "type": "integer" },
            "category": text,
            "label": text,
        }
    }));
    spec
}

/// Where an association stream is: the `after` token of the `from` object's next list page.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Position {
    after: String,
}

#[derive(Debug, Deserialize)]
struct Ids {
    results: Vec<IdOnly>,
    #[serde(default)]
    paging: Option<Paging>,
}

#[derive(Debug, Deserialize)]
struct IdOnly {
    id: String,
}

#[derive(Debug, Deserialize)]
struct Paging {
    next: Option<NextPage>,
}

#[derive(Debug, Deserialize)]
struct NextPage {
    after: String,
}

/// A batch read's answer (`status`, `errors` for ids without associations are not used).
#[derive(Debug, Deserialize)]
struct BatchRead {
    #[serde(default)]
    results: Vec<FromResult>,
}

#[derive(Debug, Deserialize)]
struct FromResult {
    from: IdOnly,
    #[serde(default)]
    to: Vec<To>,
    #[serde(default)]
    paging: Option<Paging>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct To {
    /// A string in the dated versions, a number in `/crm/v4/`: either is taken.
    to_object_id: Value,
    #[serde(default)]
    association_types: Vec<AssociationType>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssociationType {
    #[serde(default)]
    category: Option<String>,
    type_id: i64,
    #[serde(default)]
    label: Option<String>,
}

/// One page of `pair`'s stream: a page of `from` ids and all their associations.
pub(crate) async fn read(
    client: &HttpClient,
    config: &HubspotConfig,
    pair: &Pair,
    at: Option<&Value>,
) -> Result<Page, Error> {
    let stream = pair.stream.as_str();
    let after = match at {
        None => None,
        Some(v) => Some(position::decode::<Position>(stream, v)?.after),
    };
    let version = &config.api_version;
    let mut req = Request::get(api::list(version, &pair.from))
        .query("limit", PAGE_SIZE.to_string())
        .query("properties", "hs_object_id");
    if let Some(after) = &after {
        req = req.query("after", after);
    }
    let listed = client.send(req).await.map_err(|e| e.in_stream(stream))?;
    let ids: Ids = listed.json().map_err(|e| e.in_stream(stream))?;
    let next = match ids.paging.and_then(|p| p.next) {
        Some(n) => position::encode(&Position { after: n.after })?,
        None => Next::Done { resume: None },
    };
    let mut inputs: Vec<Value> = ids.results.iter().map(|r| json!({ "id": r.id })).collect();
    let mut records = Vec::new();
    // Each answer may leave some ids with more to read: ask again for those, from their `after`.
    while !inputs.is_empty() {
        let req = Request::post(api::associations_read(version, &pair.from, &pair.to))
            .json(&json!({ "inputs": inputs }))
            .repeatable(true);
        let response = client.send(req).await.map_err(|e| e.in_stream(stream))?;
        let batch: BatchRead = response.json().map_err(|e| e.in_stream(stream))?;
        let prov = Arc::new(response.provenance(crate::KIND, Some(version)));
        inputs = Vec::new();
        for result in batch.results {
            if let Some(n) = result.paging.and_then(|p| p.next) {
                inputs.push(json!({ "id": result.from.id, "after": n.after }));
            }
            for to in result.to {
                let to_id = id_text(&to.to_object_id, &response)?;
                for t in to.association_types {
                    let data = json!({ "from_id": result.from.id, "to_id": to_id, "type_id": t.type_id,
                        "category": t.category, "label": t.label });
                    let i = records.len() as u64;
                    records.push(Record::new(data, prov.clone()).at(Location::Item(i)));
                }
            }
        }
    }
    Ok(Page { records, rejects: vec![], next })
}

/// `toObjectId` as text (a string or a number), else a data error naming the URL.
fn id_text(v: &Value, response: &Response) -> Result<String, Error> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(Error::data(format!("`results[].to[].toObjectId` is not an id: {other}")).at(response.url.path())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(associations: &[&str]) -> HubspotConfig {
        serde_json::from_value(json!({ "token": "t", "objects": ["contacts", "companies_to_deals"],
            "associations": associations }))
        .unwrap()
    }

    #[test]
    fn pairs_are_from_to_named_once_and_clash_with_no_object() {
        let ok = pairs(&config(&["contacts:companies", " deals : 2-123 "])).unwrap();
        assert_eq!(
            ok[0],
            Pair { stream: "contacts_to_companies".into(), from: "contacts".into(), to: "companies".into() }
        );
        assert_eq!(ok[1].stream, "deals_to_2-123");
        for (bad, says) in [
            (vec!["contacts"], "`associations[0]`: `contacts` is not `from:to`"),
            (vec!["a:b", "a:b"], "`associations[1]`: `a:b` is named twice"),
            (vec!["contacts:owners"], "names owners"),
            (vec!["companies:deals"], "also one of `objects`"),
            (vec!["a:b:c"], "is not `from:to`"),
        ] {
            let e = pairs(&config(&bad)).unwrap_err();
            assert!(e.message().contains(says), "{bad:?}: {}", e.message());
        }
    }
}
