//! Incremental reads by the search endpoint, past its 10,000-result cap.
//!
//! A pass starts at the engine's lower bound: `lastmodified >= since`, sorted ascending by
//! the last-modified property (`lastmodifieddate` for contacts, `hs_lastmodifieddate` for
//! the rest). Pages are keyset pages, never `after` offsets: a record changed while a pass
//! runs moves to the end of the results, and an offset into results that shifted under it
//! skips as many records as moved from before it — records that then fall behind the
//! cursor for good (the crash harness lost thousands this way). So each page restarts the
//! query at the last modified time *T* it saw, `lastmodified >= T` (records at *T* read again;
//! the ledger skips them); a page entirely at its own lower bound cannot move on that way, so
//! the pass breaks the tie: `lastmodified = T AND hs_object_id > last`, sorted by
//! `hs_object_id`, then `lastmodified > T` — any number of records sharing one timestamp gets
//! through, and no query reaches HubSpot's [`CAP`] of 10,000 results. The position says
//! which query: a resumed run continues it. (`after` is still read from positions written
//! before keyset pages.)

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

    /// What comes after a page: whether HubSpot has more (`paging.next.after` present) and
    /// the last record's modified time and id. `None`: the pass is done.
    pub(crate) fn next(&self, more: bool, last: Option<(i64, u64)>) -> Option<Query> {
        match (self, more, last) {
            // More, but nothing to restart from: HubSpot said more on an empty page.
            (_, true, None) | (Query::Range { .. }, false, _) => None,
            // A whole page at its own lower bound: break the tie by id.
            (Query::Range { from_ms, strict: false, .. }, true, Some((at_ms, _))) if at_ms == *from_ms => {
                Some(Query::Tie { at_ms, id_above: 0, after: 0 })
            }
            (Query::Range { .. }, true, Some((at_ms, _))) => {
                Some(Query::Range { from_ms: at_ms, strict: false, after: 0 })
            }
            (Query::Tie { at_ms, .. }, true, Some((_, id))) => {
                Some(Query::Tie { at_ms: *at_ms, id_above: id, after: 0 })
            }
            (Query::Tie { at_ms, .. }, false, _) => Some(Query::Range { from_ms: *at_ms, strict: true, after: 0 }),
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
    fn pages_restart_at_the_last_timestamp_and_break_ties_by_id() {
        let start = Query::Range { from_ms: 5, strict: false, after: 0 };
        assert_eq!(start.next(true, Some((9, 7))), Some(Query::Range { from_ms: 9, strict: false, after: 0 }));
        let stuck = Query::Range { from_ms: 9, strict: false, after: 0 };
        let tie = Query::Tie { at_ms: 9, id_above: 0, after: 0 };
        assert_eq!(stuck.next(true, Some((9, 7))), Some(tie.clone()));
        assert_eq!(tie.next(true, Some((9, 12_000))), Some(Query::Tie { at_ms: 9, id_above: 12_000, after: 0 }));
        assert_eq!(tie.next(false, Some((9, 7))), Some(Query::Range { from_ms: 9, strict: true, after: 0 }));
        let strict = Query::Range { from_ms: 9, strict: true, after: 0 };
        assert_eq!(strict.next(true, Some((9, 7))), Some(Query::Range { from_ms: 9, strict: false, after: 0 }));
        assert_eq!(start.next(false, None), None);
        assert_eq!(start.next(true, None), None);
        let body = Query::Tie { at_ms: 9, id_above: 3, after: 200 }.body("deals", &[], 100);
        assert_eq!(body["sorts"][0]["propertyName"], "hs_object_id");
        assert_eq!(body["filterGroups"][0]["filters"][0]["propertyName"], "hs_lastmodifieddate");
        assert_eq!(body["after"], "200");
        assert_eq!(epoch_ms("1970-01-01T00:00:01.500Z"), Some(1500));
    }

    /// HubSpot's search over `set` (`(modified, id)`): the query's filter and sort, records
    /// sharing a time in a scrambled order, `after` and `limit`; and whether there is more.
    fn search(set: &[(i64, u64)], q: &Query, limit: usize) -> (Vec<(i64, u64)>, bool) {
        let mut hits: Vec<(i64, u64)> = set
            .iter()
            .copied()
            .filter(|&(t, id)| match *q {
                Query::Range { from_ms, strict, .. } => t > from_ms || (!strict && t == from_ms),
                Query::Tie { at_ms, id_above, .. } => t == at_ms && id > id_above,
            })
            .collect();
        match q {
            Query::Range { .. } => hits.sort_by_key(|&(t, id)| (t, id.wrapping_mul(0x9E37_79B9_7F4A_7C15))),
            Query::Tie { .. } => hits.sort_by_key(|&(_, id)| id),
        }
        let after = match *q {
            Query::Range { after, .. } | Query::Tie { after, .. } => after as usize,
        };
        assert!(after + limit <= CAP as usize, "a query went past HubSpot's cap: {q:?}");
        let more = hits.len() > after + limit;
        (hits.into_iter().skip(after).take(limit).collect(), more)
    }

    #[test]
    fn records_changed_during_a_pass_do_not_push_others_out_of_it() {
        // 1,000 records, four sharing each time; 250 of them share one time, more than a page.
        let mut set: Vec<(i64, u64)> = (0..1_000u64).map(|id| (if id < 250 { 0 } else { id as i64 / 4 }, id)).collect();
        let mut seen = std::collections::HashSet::new();
        let mut q = Query::Range { from_ms: 0, strict: false, after: 0 };
        for page in 0.. {
            assert!(page < 1_000, "the pass does not end");
            let (hits, more) = search(&set, &q, 100);
            seen.extend(hits.iter().copied());
            // After the third page, 60 records already read change: they move to the end.
            if page == 2 {
                let newest = set.iter().map(|r| r.0).max().unwrap();
                for r in set.iter_mut().filter(|r| r.1 % 5 == 0 && seen.contains(r)).take(60) {
                    r.0 = newest + 1;
                }
            }
            match q.next(more, hits.last().copied()) {
                Some(n) => q = n,
                None => break,
            }
        }
        let missed: Vec<_> = set.iter().filter(|r| !seen.contains(r)).collect();
        assert!(
            missed.is_empty(),
            "{} records never read in their last version: {:?}",
            missed.len(),
            &missed[..missed.len().min(5)]
        );
    }
}
