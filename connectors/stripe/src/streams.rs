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
    /// The declared JSON Schema of the rows (`schemas/STREAM.json`), the drift baseline;
    /// `None`: inferred from the first page.
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
        schema: None,
    },
    StreamDef {
        name: "products",
        changed_events: &["product.updated"],
        deleted_event: Some("product.deleted"),
        path: "v1/products",
        id: "id",
        expandable: &["default_price"],
        search: true,
        schema: None,
    },
    StreamDef {
        name: "prices",
        changed_events: &["price.updated"],
        deleted_event: Some("price.deleted"),
        path: "v1/prices",
        id: "id",
        expandable: &["product", "tiers"],
        search: true,
        schema: None,
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
        schema: None,
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
        schema: None,
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
        schema: None,
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
        schema: None,
    },
    StreamDef {
        name: "refunds",
        changed_events: &["charge.refund.updated", "refund.updated"],
        deleted_event: None,
        path: "v1/refunds",
        id: "id",
        expandable: &["balance_transaction", "charge", "payment_intent"],
        search: false,
        schema: None,
    },
    StreamDef {
        name: "balance_transactions",
        changed_events: &[],
        deleted_event: None,
        path: "v1/balance_transactions",
        id: "id",
        expandable: &["source"],
        search: false,
        schema: None,
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
            if let Some(schema) = s.schema {
                let v: serde_json::Value = serde_json::from_str(schema).expect("a declared schema is JSON");
                assert!(v["properties"]["id"].is_object(), "{}", s.name);
            }
        }
    }
}
