//! The stream table: one entry per stream. Adding a stream is adding an entry (and its
//! fixture in tests/contract.rs): the source reads every entry the same way.

use dovetail_core::{FieldPath, StreamSpec};

/// One Stripe list endpoint read as a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamDef {
    /// The stream's name (the table name in a database sink).
    pub name: &'static str,
    /// The list endpoint, relative to the base URL (`v1/customers`).
    pub path: &'static str,
    /// The object's id field (the primary key; `starting_after` takes it).
    pub id: &'static str,
    /// Fields the list can expand (`expand[]=data.FIELD`), as Stripe's API reference lists
    /// them for the object.
    pub expandable: &'static [&'static str],
    /// Whether Stripe's Search API covers the object (`GET /v1/OBJECTS/search`): what a
    /// lookup by `metadata[dovetail_key]` can use.
    pub search: bool,
    /// The event Stripe sends when such an object is deleted (`customer.deleted`), read as
    /// deletes with `deleted_events`; `None`: the object is never deleted (only archived,
    /// cancelled or voided, which are changes).
    pub deleted_event: Option<&'static str>,
    /// The events Stripe sends when such an object changes (`customer.updated`), read with
    /// `change_events` to re-fetch the changed object at the pinned version; empty: the
    /// object never changes after creation (or Stripe sends no event for it).
    pub changed_events: &'static [&'static str],
    /// The declared JSON Schema of the rows (`schemas/STREAM.json`, generated from Stripe's
    /// OpenAPI spec by `cargo xtask stripe-schemas`): a new stream's drift baseline, and the
    /// columns a database sink makes; `None`: inferred from the first page.
    pub schema: Option<&'static str>,
}

/// Every stream, in the order they are listed.
pub const STREAMS: &[StreamDef] = &[
    StreamDef {
        name: "customers",
        changed_events: &["customer.updated"],
        deleted_event: Some("customer.deleted"),
        path: "v1/customers",
        id: "id",
        expandable: &["default_source", "invoice_settings.default_payment_method", "test_clock"],
        search: true,
        schema: Some(include_str!("../schemas/customers.json")),
    },
    StreamDef {
        name: "products",
        changed_events: &["product.updated"],
        deleted_event: Some("product.deleted"),
        path: "v1/products",
        id: "id",
        expandable: &["default_price"],
        search: true,
        schema: Some(include_str!("../schemas/products.json")),
    },
    StreamDef {
        name: "prices",
        changed_events: &["price.updated"],
        deleted_event: Some("price.deleted"),
        path: "v1/prices",
        id: "id",
        expandable: &["product", "tiers"],
        search: true,
        schema: Some(include_str!("../schemas/prices.json")),
    },
    StreamDef {
        name: "charges",
        changed_events: &[
            "charge.captured",
            "charge.expired",
            "charge.failed",
            "charge.refunded",
            "charge.succeeded",
            "charge.updated",
        ],
        deleted_event: None,
        path: "v1/charges",
        id: "id",
        expandable: &["balance_transaction", "customer", "invoice", "payment_intent"],
        search: true,
        schema: Some(include_str!("../schemas/charges.json")),
    },
    StreamDef {
        name: "payment_intents",
        changed_events: &[
            "payment_intent.amount_capturable_updated",
            "payment_intent.canceled",
            "payment_intent.partially_funded",
            "payment_intent.payment_failed",
            "payment_intent.processing",
            "payment_intent.requires_action",
            "payment_intent.succeeded",
        ],
        deleted_event: None,
        path: "v1/payment_intents",
        id: "id",
        expandable: &["customer", "invoice", "latest_charge", "payment_method"],
        search: true,
        schema: Some(include_str!("../schemas/payment_intents.json")),
    },
    StreamDef {
        name: "invoices",
        changed_events: &[
            "invoice.finalized",
            "invoice.marked_uncollectible",
            "invoice.paid",
            "invoice.payment_failed",
            "invoice.updated",
            "invoice.voided",
        ],
        deleted_event: Some("invoice.deleted"),
        path: "v1/invoices",
        id: "id",
        expandable: &["customer", "default_payment_method", "payment_intent", "subscription"],
        search: true,
        schema: Some(include_str!("../schemas/invoices.json")),
    },
    StreamDef {
        name: "subscriptions",
        changed_events: &[
            "customer.subscription.paused",
            "customer.subscription.resumed",
            "customer.subscription.updated",
        ],
        deleted_event: None,
        path: "v1/subscriptions",
        id: "id",
        expandable: &["customer", "default_payment_method", "latest_invoice"],
        search: true,
        schema: Some(include_str!("../schemas/subscriptions.json")),
    },
    StreamDef {
        name: "refunds",
        changed_events: &["charge.refund.updated", "refund.updated"],
        deleted_event: None,
        path: "v1/refunds",
        id: "id",
        expandable: &["balance_transaction", "charge", "payment_intent"],
        search: false,
        schema: Some(include_str!("../schemas/refunds.json")),
    },
    StreamDef {
        name: "balance_transactions",
        changed_events: &[],
        deleted_event: None,
        path: "v1/balance_transactions",
        id: "id",
        expandable: &["source"],
        search: false,
        schema: Some(include_str!("../schemas/balance_transactions.json")),
    },
    StreamDef {
        name: "events",
        changed_events: &[],
        deleted_event: None,
        path: "v1/events",
        id: "id",
        expandable: &[],
        search: false,
        schema: Some(include_str!("../schemas/events.json")),
    },
];

/// The cursor of every stream: when the object was created (epoch seconds, never changes).
pub const CURSOR: &str = "created";

/// The stream called `name`.
pub fn find(name: &str) -> Option<&'static StreamDef> {
    STREAMS.iter().find(|s| s.name == name)
}

/// The stream's spec: primary key `id`, cursor `created`, the overlap each pass re-reads.
pub fn spec(def: &StreamDef) -> StreamSpec {
    let mut spec = StreamSpec::new(def.name, vec![FieldPath::new(def.id)]).with_cursor(FieldPath::new(CURSOR));
    spec.lookback = Some(crate::source::OVERLAP);
    spec.schema = def.schema.and_then(|s| serde_json::from_str(s).ok());
    spec
}

/// What a run says once when the declared schemas of `streams` come from a spec of another
/// API version than `pinned` (the spec's version and source, the regenerate command), so the
/// `new_field` drift of what Stripe added since is no surprise; `None` when they match.
pub fn spec_note(streams: &[&StreamDef], pinned: &str) -> Option<String> {
    let mut specs: Vec<(String, String)> = Vec::new();
    for def in streams {
        let Some(v) = def.schema.and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok()) else { continue };
        let version = v["x-stripe-spec-version"].as_str().unwrap_or("(unrecorded)").to_owned();
        let source = v["x-stripe-spec-source"].as_str().unwrap_or("source unrecorded").to_owned();
        if version != pinned && !specs.contains(&(version.clone(), source.clone())) {
            specs.push((version, source));
        }
    }
    if specs.is_empty() {
        return None;
    }
    // Stripe's versions start with their date: `2020-08-27`, `2025-03-31.basil`.
    let day = |v: &str| v.get(..10).unwrap_or(v).to_owned();
    let relation =
        match (specs.iter().all(|(v, _)| day(v) < day(pinned)), specs.iter().all(|(v, _)| day(v) > day(pinned))) {
            (true, _) => "older than",
            (_, true) => "newer than",
            _ => "not",
        };
    let which: Vec<String> = specs.iter().map(|(v, s)| format!("version {v} ({s})")).collect();
    Some(format!(
        "stripe: the streams' declared schemas come from Stripe's OpenAPI spec {}, {relation} the pinned API \
         version {pinned}: a field the pinned version sends that the spec lacks is `new_field` drift (under the \
         pipeline's drift policy), a field the spec declares that is not sent is none; `cargo xtask stripe-schemas \
         SPEC.json --source LABEL` regenerates them from a newer spec",
        which.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_holds_the_ten_streams_once_each() {
        let names: Vec<&str> = STREAMS.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "customers",
                "products",
                "prices",
                "charges",
                "payment_intents",
                "invoices",
                "subscriptions",
                "refunds",
                "balance_transactions",
                "events"
            ]
        );
        for s in STREAMS {
            assert_eq!(s.path, format!("v1/{}", s.name), "{}", s.name);
            assert_eq!(find(s.name), Some(s));
            let schema = s.schema.unwrap_or_else(|| panic!("{} declares no schema", s.name));
            let v: serde_json::Value = serde_json::from_str(schema).expect("a declared schema is JSON");
            assert!(v["properties"]["id"].is_object(), "{}", s.name);
        }
    }

    /// Every stream's schema is generated from Stripe's spec and says which one: its version
    /// and its source (repository, commit, date); it declares the field `accounts` adds,
    /// requires nothing, and types each top-level expandable field as an id or an object.
    #[test]
    fn the_schemas_record_the_spec_version_and_source_they_were_generated_from() {
        for s in STREAMS {
            let v: serde_json::Value = serde_json::from_str(s.schema.unwrap()).unwrap();
            assert_eq!(v["x-stripe-spec-version"], "2020-08-27", "{}", s.name);
            let source = v["x-stripe-spec-source"].as_str().unwrap_or_default();
            assert!(
                source.starts_with("github.com/stripe/openapi@e0123a38b40c8d840b4c0469ac0ee1650b6bfea3")
                    && source.contains("2022-04-12"),
                "{}: {source}",
                s.name
            );
            assert!(v["x-stripe-component"].is_string(), "{}", s.name);
            assert!(v.get("required").is_none(), "{}: fields come and go with API versions", s.name);
            assert_eq!(v["properties"][crate::source::ACCOUNT_FIELD]["type"], "string", "{}", s.name);
            for f in s.expandable.iter().filter(|f| !f.contains('.')) {
                let Some(t) = v["properties"][*f]["type"].as_array() else { continue };
                let has = |n: &str| t.iter().any(|x| x == n);
                assert!(has("array") || (has("string") && has("object")), "{}.{f}: {t:?}", s.name);
            }
        }
    }

    #[test]
    fn the_spec_note_names_both_versions_and_the_command_once_for_all_streams() {
        let all: Vec<&StreamDef> = STREAMS.iter().collect();
        let note = spec_note(&all, "2025-03-31.basil").expect("the spec is older than the pin");
        assert!(note.contains("version 2020-08-27 (github.com/stripe/openapi@e0123a3"), "{note}");
        assert!(note.contains("older than the pinned API version 2025-03-31.basil"), "{note}");
        assert!(note.contains("cargo xtask stripe-schemas"), "{note}");
        assert_eq!(note.matches("2020-08-27").count(), 1, "one spec, named once: {note}");
        assert!(spec_note(&all, "2020-08-27").is_none(), "the pin is the spec's version");
        assert!(spec_note(&all, "2019-02-19").unwrap().contains("newer than"));
    }
}
