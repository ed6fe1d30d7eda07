//! Writes of a price the ledger already knows. Stripe fixes a price's amount, currency,
//! product and recurrence at creation; only a few fields can be updated. A record whose
//! fixed fields changed either replaces the price (a new one created, the old deactivated)
//! or is dead-lettered with the reason, as `price_changes` says.

use dovetail_core::record::idempotency_key;
use dovetail_core::state::PendingCreate;
use dovetail_core::{ContentHash, Cx, Error, Key};
use dovetail_http::Request;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::sink::{KEY_METADATA, Sent, StripeSink, encode_id, search_value, with_request_id};

/// What the sink does when a price's record changes a field Stripe does not let change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PriceChanges {
    /// Dead-letter the record with the fields that changed (the default: nothing is
    /// created or deactivated behind the operator's back).
    #[default]
    DeadLetter,
    /// Create a new price with the record's fields, deactivate the old one (`active=false`),
    /// and keep the new id in the ledger.
    Replace,
}

/// The parameters a price update takes; the others are fixed once the price exists.
const UPDATABLE: &[&str] =
    &["active", "currency_options", "lookup_key", "metadata", "nickname", "tax_behavior", "transfer_lookup_key"];
/// Fixed parameters whose change needs a new price.
const FIXED: &[&str] = &["unit_amount", "unit_amount_decimal", "currency", "product", "recurring"];

/// Whether `current` holds what `wanted` says (objects: every field `wanted` names; scalars
/// by their text, as a form sends them).
fn holds(wanted: &Value, current: &Value) -> bool {
    match (wanted, current) {
        (Value::Object(w), Value::Object(c)) => w.iter().all(|(k, v)| holds(v, c.get(k).unwrap_or(&Value::Null))),
        (w @ Value::String(_), c) | (w, c @ Value::String(_)) => text(w) == text(c),
        (w, c) => w == c,
    }
}

/// A scalar as a form sends it.
fn text(v: &Value) -> std::borrow::Cow<'_, str> {
    match v {
        Value::String(s) => s.as_str().into(),
        other => other.to_string().into(),
    }
}

impl StripeSink {
    /// Write `body` (the record, with its `metadata[dovetail_key]`) to the price `id`.
    pub(crate) async fn write_price(&self, cx: &Cx, key: &Key, id: &str, body: &Value) -> Result<Sent, Error> {
        let path = format!("v1/prices/{}", encode_id(id));
        let current: Value = match self.send(Request::get(&path).cacheable(false)).await {
            Ok(resp) => resp.json()?,
            Err(e) if e.kind().disposition().rejects_record() => return Ok(Sent::Rejected(with_request_id(e))),
            Err(e) => return Err(e),
        };
        let changed: Vec<&str> =
            FIXED.iter().copied().filter(|f| body.get(*f).is_some_and(|v| !holds(v, &current[*f]))).collect();
        if changed.is_empty() {
            let update: serde_json::Map<String, Value> =
                UPDATABLE.iter().filter_map(|f| body.get(*f).map(|v| ((*f).to_owned(), v.clone()))).collect();
            return self.post_form(&path, &Value::Object(update), None, id).await;
        }
        let fields = changed.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ");
        if self.price_changes == PriceChanges::DeadLetter {
            return Ok(Sent::Rejected(Error::data(format!(
                "price {id}: {fields} cannot change on a Stripe price; set `price_changes = \"replace\"` in the sink \
                 to create a new price and deactivate this one"
            ))));
        }
        // A key of its own per replaced price: retries of this replacement create it once.
        let idem = idempotency_key(&cx.pipeline, "prices", key, &ContentHash::of(&json!({ "replaces": id })));
        let new_id = match self.before_replace(cx, key, id, &idem).await? {
            Some(found) => found,
            None => match self.post_form("v1/prices", body, Some(&idem), "").await? {
                Sent::Ok(new_id) => new_id,
                rejected => return Ok(rejected),
            },
        };
        if new_id.is_empty() {
            return Ok(Sent::Rejected(Error::data("Stripe created the new price but its response has no `id`")));
        }
        match self.post_form(&path, &json!({ "active": "false" }), None, id).await? {
            Sent::Ok(_) => {
                tracing::info!(
                    key = key.as_str(),
                    old = id,
                    new = new_id,
                    "stripe sink: price replaced ({fields} changed)"
                );
                Ok(Sent::Ok(new_id))
            }
            Sent::Rejected(e) => Ok(Sent::Rejected(e)),
        }
    }

    /// Before a replacement price is created: it is recorded as a pending create under its
    /// own `Idempotency-Key`, like every create. One still pending past the key's life may have
    /// made the new price while Stripe has since forgotten the key, so it is looked up first:
    /// `Some`, the new price found.
    async fn before_replace(&self, cx: &Cx, key: &Key, old: &str, idem: &str) -> Result<Option<String>, Error> {
        let Some(store) = &cx.pending else { return Ok(None) };
        let pending = store.get("prices", std::slice::from_ref(key)).await?.pop().flatten();
        let ours = pending.filter(|p| p.idempotency_key == idem);
        let expired = ours.as_ref().is_some_and(|p| self.expired(p));
        if expired {
            if let Some(found) = self.replacement_of(key, old).await? {
                tracing::info!(
                    key = key.as_str(),
                    old,
                    new = found,
                    "stripe sink: a price replacement pending past the key's life had created the price (found by lookup)"
                );
                return Ok(Some(found));
            }
            tracing::info!(
                key = key.as_str(),
                old,
                "stripe sink: a price replacement pending past the key's life found nothing by lookup; creating"
            );
        }
        if ours.is_none() || expired {
            let p = PendingCreate {
                key: key.clone(),
                idempotency_key: idem.to_owned(),
                since: dovetail_core::now_rfc3339(),
            };
            store.record("prices", &p).await?;
        }
        Ok(None)
    }

    /// The price a replacement of `old` created for the record: found by search on
    /// `metadata[dovetail_key]`, neither `old` nor a price deactivated (an earlier one
    /// replaced).
    async fn replacement_of(&self, key: &Key, old: &str) -> Result<Option<String>, Error> {
        let query = format!("metadata['{KEY_METADATA}']:{}", search_value(key.as_str()));
        let req = Request::get("v1/prices/search").query("query", query).cacheable(false);
        let v: Value = self.send(req).await?.json()?;
        let found = v["data"].as_array().into_iter().flatten().find(|o| {
            o["metadata"][KEY_METADATA].as_str() == Some(key.as_str())
                && o["id"] != old
                && o["active"] != false
                && o["active"] != "false"
        });
        Ok(found.and_then(|o| o["id"].as_str().map(str::to_owned)))
    }

    /// POST `body` as a form to `path` (with `Idempotency-Key: idem` when given); the id
    /// answered, else `id`.
    async fn post_form(&self, path: &str, body: &Value, idem: Option<&str>, id: &str) -> Result<Sent, Error> {
        let form = match dovetail_http::form_encode(body) {
            Ok(form) => form,
            Err(e) => return Ok(Sent::Rejected(e)),
        };
        let mut req = Request::post(path).body(form).header("content-type", dovetail_http::FORM_CONTENT_TYPE);
        if let Some(k) = idem {
            req = req.header("Idempotency-Key", k);
        }
        match self.send(req).await {
            Ok(resp) => {
                let request_id = resp.header("request-id").unwrap_or("-").to_owned();
                let answered = resp.json::<Value>().ok().and_then(|v| v["id"].as_str().map(str::to_owned));
                let id = answered.unwrap_or_else(|| id.to_owned());
                tracing::info!(path, id, request_id, "stripe sink: price write");
                Ok(Sent::Ok(id))
            }
            Err(e) if e.kind().disposition().rejects_record() => Ok(Sent::Rejected(with_request_id(e))),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_holds_by_its_form_text_and_objects_by_the_fields_named() {
        assert!(holds(&json!(1000), &json!(1000)));
        assert!(holds(&json!(1000), &json!("1000")));
        assert!(holds(&json!("1000"), &json!(1000)));
        assert!(!holds(&json!(1200), &json!(1000)));
        assert!(holds(&json!({ "interval": "month" }), &json!({ "interval": "month", "interval_count": 1 })));
        assert!(!holds(&json!({ "interval": "year" }), &json!({ "interval": "month" })));
    }
}
