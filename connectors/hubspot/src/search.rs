//! Incremental reads by the search endpoint, past its 10,000-result cap.
//!
//! A pass starts at the engine's lower bound: `lastmodified >= since`, sorted ascending by
//! the last-modified property (`lastmodifieddate` for contacts, `hs_lastmodifieddate` for
//! the rest), `after` in the body. HubSpot answers at most [`CAP`] results per query, so
//! when the next page would pass it, the pass restarts from the last modified time *T* seen,
//! with a tie-break: `lastmodified = T AND hs_object_id > last`, sorted by `hs_object_id`
//! (restarted the same way at the cap, with `last` the last id seen), then `lastmodified >
//! T` — so any number of records sharing one timestamp gets through. Records at *T* read
//! before the restart are read again; the ledger skips them. The position says which query
//! and where in it: a resumed run continues the same query.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Results HubSpot returns for one search query at most.
pub const CAP: u64 = 10_000;

/// Where a search pass is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "query", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Query {
    /// `lastmodified >= from` (`> from` when `strict`), sorted by it.
    Range { from_ms: i64, strict: bool, after: u64 },
    /// `lastmodified = at_ms AND hs_object_id > id_above`, sorted by `hs_object_id`.
    Tie { at_ms: i64, id_above: u64, after: u64 },
}

/// The property an object's last change is filtered and sorted on.
pub(crate) fn modified_property(object: &str) -> &'static str {
    if object == "contacts" { "lastmodifieddate" } else { "hs_lastmodifieddate" }
}

fn filter(name: &str, op: &str, value: String) -> Value {
    json!({ "propertyName": name, "operator": op, "value": value })
}

impl Query {
    /// The search body of this query's page of `limit` records.
    pub(crate) fn body(&self, object: &str, properties: &[&String], limit: u64) -> Value {
        let modified = modified_property(object);
        let (filters, sort, after) = match self {
            Query::Range { from_ms, strict, after } => {
                let op = if *strict { "GT" } else { "GTE" };
                (vec![filter(modified, op, from_ms.to_string())], modified, *after)
            }
            Query::Tie { at_ms, id_above, after } => (
                vec![filter(modified, "EQ", at_ms.to_string()), filter("hs_object_id", "GT", id_above.to_string())],
                "hs_object_id",
                *after,
            ),
        };
        let mut body = json!({
            "filterGroups": [{ "filters": filters }],
            "sorts": [{ "propertyName": sort, "direction": "ASCENDING" }],
            "properties": properties,
            "limit": limit,
        });
        if after > 0 {
            body["after"] = Value::String(after.to_string());
        }
        body
    }

    /// What comes after a page: `next_after` (HubSpot's `paging.next.after`, `None` at the
    /// end of the query) and the last record's modified time and id. `None`: the pass is done.
    pub(crate) fn next(&self, next_after: Option<u64>, limit: u64, last: Option<(i64, u64)>) -> Option<Query> {
        match (self, next_after) {
            (_, Some(after)) if after + limit <= CAP => Some(self.with_after(after)),
            // The next page would pass the cap: restart at the last record.
            (Query::Range { .. }, Some(_)) => last.map(|(at_ms, _)| Query::Tie { at_ms, id_above: 0, after: 0 }),
            (Query::Tie { at_ms, .. }, Some(_)) => {
                last.map(|(_, id)| Query::Tie { at_ms: *at_ms, id_above: id, after: 0 })
            }
            (Query::Tie { at_ms, .. }, None) => Some(Query::Range { from_ms: *at_ms, strict: true, after: 0 }),
            (Query::Range { .. }, None) => None,
        }
    }

    fn with_after(&self, after: u64) -> Query {
        match self.clone() {
            Query::Range { from_ms, strict, .. } => Query::Range { from_ms, strict, after },
            Query::Tie { at_ms, id_above, .. } => Query::Tie { at_ms, id_above, after },
        }
    }
}

/// An RFC 3339 time (a cursor, `updatedAt`) as epoch milliseconds.
pub(crate) fn epoch_ms(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_restarts_at_the_last_timestamp_then_breaks_ties_by_id() {
        let start = Query::Range { from_ms: 5, strict: false, after: 0 };
        assert_eq!(
            start.next(Some(100), 100, Some((9, 7))),
            Some(Query::Range { from_ms: 5, strict: false, after: 100 })
        );
        let at_cap = Query::Range { from_ms: 5, strict: false, after: 9_900 };
        let tie = Query::Tie { at_ms: 9, id_above: 0, after: 0 };
        assert_eq!(at_cap.next(Some(10_000), 100, Some((9, 7))), Some(tie.clone()));
        let tie_cap = Query::Tie { at_ms: 9, id_above: 0, after: 9_900 };
        assert_eq!(
            tie_cap.next(Some(10_000), 100, Some((9, 12_000))),
            Some(Query::Tie { at_ms: 9, id_above: 12_000, after: 0 })
        );
        assert_eq!(tie.next(None, 100, Some((9, 7))), Some(Query::Range { from_ms: 9, strict: true, after: 0 }));
        assert_eq!(start.next(None, 100, None), None);
        let body = Query::Tie { at_ms: 9, id_above: 3, after: 200 }.body("deals", &[], 100);
        assert_eq!(body["sorts"][0]["propertyName"], "hs_object_id");
        assert_eq!(body["filterGroups"][0]["filters"][0]["propertyName"], "hs_lastmodifieddate");
        assert_eq!(body["after"], "200");
        assert_eq!(epoch_ms("1970-01-01T00:00:01.500Z"), Some(1500));
    }
}
