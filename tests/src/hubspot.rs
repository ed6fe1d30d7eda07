//! A HubSpot double for contacts: the properties API, the list endpoint (`after` offsets)
//! and the search endpoint, which — like HubSpot — refuses a page past 10,000 results of a
//! query (`after + limit > 10,000` is a 400), and orders records sharing a timestamp in no
//! particular order (by a scramble of their ids), so only a tie-break by id gets them all.
//! Shared by tests/tests/hubspot.rs and the crash harness's HubSpot source.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Results the double's search answers for one query at most, as HubSpot does.
pub const CAP: u64 = 10_000;

/// `(id, last modified in epoch ms, email)`.
pub type Contacts = Arc<Mutex<Vec<(u64, i64, String)>>>;

/// Epoch milliseconds as HubSpot writes a time (`2026-11-01T00:00:00.000Z`).
pub fn iso(ms: i64) -> String {
    let t = jiff::Timestamp::from_millisecond(ms).unwrap();
    format!("{}", t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"))
}

/// The ids merged into a contact (`hs_merged_object_ids`), by the surviving contact's id.
pub type Merges = Arc<Mutex<std::collections::BTreeMap<u64, String>>>;

fn record(&(id, ms, ref email): &(u64, i64, String), merges: &Merges) -> Value {
    let merged = merges.lock().unwrap().get(&id).cloned().unwrap_or_default();
    json!({ "id": id.to_string(), "createdAt": iso(0), "updatedAt": iso(ms), "archived": false,
        "properties": { "email": email, "hs_object_id": id.to_string(), "lastmodifieddate": iso(ms),
            "hs_merged_object_ids": merged } })
}

fn page(all: Vec<Value>, after: u64, limit: u64) -> Value {
    let total = all.len() as u64;
    let results: Vec<Value> = all.into_iter().skip(after as usize).take(limit as usize).collect();
    let mut body = json!({ "total": total, "results": results });
    if after + limit < total {
        body["paging"] = json!({ "next": { "after": (after + limit).to_string() } });
    }
    body
}

struct Properties;
impl Respond for Properties {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(json!({ "results": [
            { "name": "email", "type": "string", "fieldType": "text", "options": [] },
            { "name": "hs_object_id", "type": "number", "fieldType": "number", "options": [] },
            { "name": "lastmodifieddate", "type": "datetime", "fieldType": "date", "options": [] },
            { "name": "hs_merged_object_ids", "type": "enumeration", "fieldType": "checkbox", "options": [] },
        ]}))
    }
}

/// HubSpot's rolling window: at most `max` requests in any `interval`, told in the
/// `X-HubSpot-RateLimit-*` headers; past it a 429 (no `Retry-After`, as HubSpot sends).
pub struct Window {
    /// Requests allowed in any `interval`.
    pub max: usize,
    /// The rolling window.
    pub interval: Duration,
    /// When the requests in the window were admitted.
    pub sent: Mutex<VecDeque<Instant>>,
    /// 429s answered.
    pub refused: Mutex<u64>,
}

impl Window {
    /// `None` when the request fits, else the 429; the headers to send either way.
    fn admit(&self) -> (Option<ResponseTemplate>, Vec<(&'static str, String)>) {
        let now = Instant::now();
        let mut sent = self.sent.lock().unwrap();
        while sent.front().is_some_and(|t| now.duration_since(*t) >= self.interval) {
            sent.pop_front();
        }
        let full = sent.len() >= self.max;
        if !full {
            sent.push_back(now);
        }
        let headers = vec![
            ("x-hubspot-ratelimit-max", self.max.to_string()),
            ("x-hubspot-ratelimit-remaining", (self.max - sent.len()).to_string()),
            ("x-hubspot-ratelimit-interval-milliseconds", self.interval.as_millis().to_string()),
        ];
        if !full {
            return (None, headers);
        }
        *self.refused.lock().unwrap() += 1;
        let body = json!({ "status": "error", "message": "You have reached your ten_secondly_rolling limit.",
            "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING" });
        (Some(ResponseTemplate::new(429).set_body_json(body)), headers)
    }
}

/// The listing (`archived=true`: the archived ones, `(id, archivedAt, email)`).
struct List(Contacts, Option<Arc<Window>>, Contacts, Merges);
impl Respond for List {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let (refused, headers) = self.1.as_ref().map(|w| w.admit()).unwrap_or_default();
        let with = |mut t: ResponseTemplate| {
            for (k, v) in &headers {
                t = t.insert_header(*k, v.as_str());
            }
            t
        };
        if let Some(r) = refused {
            return with(r);
        }
        let q = |k: &str| req.url.query_pairs().find(|(n, _)| n == k).and_then(|(_, v)| v.parse::<u64>().ok());
        let archived = req.url.query_pairs().any(|(k, v)| k == "archived" && v == "true");
        let mut all = if archived { self.2.lock().unwrap().clone() } else { self.0.lock().unwrap().clone() };
        all.sort_by_key(|c| c.0);
        let records = all.iter().map(|c| {
            let mut r = record(c, &self.3);
            if archived {
                r["archived"] = Value::Bool(true);
                r["archivedAt"] = Value::String(iso(c.1));
                r["updatedAt"] = Value::String(iso(0));
            }
            r
        });
        with(ResponseTemplate::new(200).set_body_json(page(
            records.collect(),
            q("after").unwrap_or(0),
            q("limit").unwrap_or(10),
        )))
    }
}

/// When the double's searches came: the shortest time between two of them since the last
/// [`Pacing::reset`] (pacing is per process: a test measures one run's searches).
#[derive(Debug, Default)]
pub struct Pacing {
    last: Option<Instant>,
    min: Option<Duration>,
}

impl Pacing {
    /// The shortest time between two searches since the last reset (`Duration::MAX` when
    /// fewer than two came).
    pub fn min_gap(&self) -> Duration {
        self.min.unwrap_or(Duration::MAX)
    }

    /// Forgets the searches so far (a new run starts).
    pub fn reset(&mut self) {
        *self = Pacing::default();
    }
}

struct Search {
    contacts: Contacts,
    merges: Merges,
    requests: Arc<Mutex<u64>>,
    pacing: Arc<Mutex<Pacing>>,
}
impl Respond for Search {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        *self.requests.lock().unwrap() += 1;
        let now = Instant::now();
        {
            let mut p = self.pacing.lock().unwrap();
            if let Some(gap) = p.last.replace(now).map(|t| now.duration_since(t)) {
                p.min = Some(p.min.map_or(gap, |m| m.min(gap)));
            }
        }
        let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let limit = body["limit"].as_u64().unwrap_or(10);
        let after = body["after"].as_str().and_then(|a| a.parse::<u64>().ok()).unwrap_or(0);
        if after + limit > CAP {
            return ResponseTemplate::new(400).set_body_json(json!({ "status": "error",
                "message": "There was a problem with the request.", "category": "VALIDATION_ERROR" }));
        }
        let mut all: Vec<(u64, i64, String)> = self.contacts.lock().unwrap().clone();
        for f in body["filterGroups"][0]["filters"].as_array().cloned().unwrap_or_default() {
            let v: i64 = f["value"].as_str().and_then(|v| v.parse().ok()).unwrap_or(0);
            let field = |c: &(u64, i64, String)| match f["propertyName"].as_str() {
                Some("hs_object_id") => c.0 as i64,
                _ => c.1,
            };
            all.retain(|c| match f["operator"].as_str() {
                Some("GTE") => field(c) >= v,
                Some("GT") => field(c) > v,
                Some("EQ") => field(c) == v,
                _ => false,
            });
        }
        let scramble = |id: u64| id.wrapping_mul(2_654_435_761) % 1_000_003;
        match body["sorts"][0]["propertyName"].as_str() {
            Some("hs_object_id") => all.sort_by_key(|c| c.0),
            _ => all.sort_by_key(|c| (c.1, scramble(c.0))),
        }
        ResponseTemplate::new(200).set_body_json(page(
            all.iter().map(|c| record(c, &self.merges)).collect(),
            after,
            limit,
        ))
    }
}

/// The double on its own server, how many searches it answered and when (their pacing).
pub async fn start(
    contacts: Contacts,
    window: Option<Arc<Window>>,
    archived: Contacts,
) -> (MockServer, Arc<Mutex<u64>>, Arc<Mutex<Pacing>>) {
    start_merged(contacts, window, archived, Merges::default()).await
}

/// [`start`], with contacts that others were merged into.
pub async fn start_merged(
    contacts: Contacts,
    window: Option<Arc<Window>>,
    archived: Contacts,
    merges: Merges,
) -> (MockServer, Arc<Mutex<u64>>, Arc<Mutex<Pacing>>) {
    let server = MockServer::start().await;
    let requests = Arc::new(Mutex::new(0));
    let pacing = Arc::new(Mutex::new(Pacing::default()));
    Mock::given(method("GET"))
        .and(path("/crm/properties/2026-09/contacts"))
        .respond_with(Properties)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/crm/objects/2026-09/contacts"))
        .respond_with(List(contacts.clone(), window, archived, merges.clone()))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/objects/2026-09/contacts/search"))
        .respond_with(Search { contacts, merges, requests: requests.clone(), pacing: pacing.clone() })
        .mount(&server)
        .await;
    (server, requests, pacing)
}
