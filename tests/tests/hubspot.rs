//! The HubSpot source through `dovetail run` into SQLite: on its recorded fixtures
//! (connectors/hubspot/fixtures, replayed by the testkit's server over loopback), and against a
//! double of the search endpoint that enforces its 10,000-result cap.

use std::path::PathBuf;
use std::process::Output;

use dovetail_e2e::vendor::{count, output_async};
use dovetail_e2e::{Scratch, show};
use dovetail_testkit::FixtureServer;
use serde_json::Value;

/// The private-app token the configs read from `HUBSPOT_TOKEN`; no output may contain it.
const TOKEN: &str = "pat-na1-e2e-fixture-token-not-real";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../connectors/hubspot/fixtures").join(format!("{name}.json"))
}

fn config(base_url: &str) -> String {
    format!(
        r#"[pipelines.crm.source]
kind = "hubspot"
token = "${{HUBSPOT_TOKEN}}"
base_url = "{base_url}"
objects = ["contacts"]
http = {{ retry = {{ max_attempts = 3, base_delay_ms = 1, max_delay_ms = 2 }} }}

[pipelines.crm.sink]
kind = "sqlite"
path = "out.db"
"#
    )
}

async fn run(s: &Scratch) -> (Output, Value) {
    let mut cmd = s.cmd(&["run", "--json"]);
    cmd.env("HUBSPOT_TOKEN", TOKEN);
    let out = output_async(cmd).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let report =
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not a JSON report ({e}):\n{}", show(&out)));
    let all = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains(TOKEN), "the token leaked into the output");
    (out, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_sync_page_by_page_into_sqlite_typed_by_the_properties_api() {
    let server = FixtureServer::from_file(fixture("contacts")).await.unwrap();
    let s = Scratch::new();
    s.write("dovetail.toml", &config(&server.base_url()));
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "contacts", "written"), 3, "{report:#}");
    let drift = report["streams"]["contacts"]["drift"].as_array().cloned().unwrap_or_default();
    assert!(drift.is_empty(), "{report:#}");
    assert!(server.unmatched().is_empty(), "{:?}", server.unmatched());
    let rows: i64 = s.db("out.db").query_row("SELECT count(*) FROM contacts", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_property_added_in_the_portal_and_a_new_option_are_drift_with_their_paths() {
    let first = FixtureServer::from_file(fixture("contacts")).await.unwrap();
    let s = Scratch::new();
    s.write("dovetail.toml", &config(&first.base_url()));
    let (out, _) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    // The portal gained `favorite_color` and a lifecycle stage `evangelist`.
    let second = FixtureServer::from_file(fixture("contacts_drift")).await.unwrap();
    s.write("dovetail.toml", &config(&second.base_url()));
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert!(second.unmatched().is_empty(), "{:?}", second.unmatched());
    let drift = report["streams"]["contacts"]["drift"].as_array().cloned().unwrap_or_default();
    let seen: Vec<(String, String)> = drift
        .iter()
        .map(|d| (d["path"].as_str().unwrap_or("").to_owned(), d["change"].as_str().unwrap_or("").to_owned()))
        .collect();
    assert!(seen.contains(&("/properties/favorite_color".into(), "new_field".into())), "{report:#}");
    assert!(seen.contains(&("/properties/lifecyclestage".into(), "enum_value".into())), "{report:#}");
}

/// A HubSpot double for contacts: the properties API, the list endpoint (`after` offsets)
/// and the search endpoint, which — like HubSpot — refuses a page past 10,000 results of a
/// query (`after + limit > 10,000` is a 400), and orders records sharing a timestamp in no
/// particular order (by a scramble of their ids), so only a tie-break by id gets them all.
mod double {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use serde_json::{Value, json};
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

    pub const CAP: u64 = 10_000;

    /// `(id, last modified in epoch ms, email)`.
    pub type Contacts = Arc<Mutex<Vec<(u64, i64, String)>>>;

    fn iso(ms: i64) -> String {
        let t = jiff::Timestamp::from_millisecond(ms).unwrap();
        format!("{}", t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"))
    }

    fn record(&(id, ms, ref email): &(u64, i64, String)) -> Value {
        json!({ "id": id.to_string(), "createdAt": iso(0), "updatedAt": iso(ms), "archived": false,
            "properties": { "email": email, "hs_object_id": id.to_string(), "lastmodifieddate": iso(ms) } })
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
            ]}))
        }
    }

    /// HubSpot's rolling window: at most `max` requests in any `interval`, told in the
    /// `X-HubSpot-RateLimit-*` headers; past it a 429 (no `Retry-After`, as HubSpot sends).
    pub struct Window {
        pub max: usize,
        pub interval: Duration,
        pub sent: Mutex<VecDeque<Instant>>,
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
    struct List(Contacts, Option<Arc<Window>>, Contacts);
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
                let mut r = record(c);
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

    struct Search {
        contacts: Contacts,
        requests: Arc<Mutex<u64>>,
        last: Mutex<Option<Instant>>,
        min_gap: Arc<Mutex<Duration>>,
    }
    impl Respond for Search {
        fn respond(&self, req: &Request) -> ResponseTemplate {
            *self.requests.lock().unwrap() += 1;
            let now = Instant::now();
            if let Some(gap) = self.last.lock().unwrap().replace(now).map(|t| now.duration_since(t)) {
                let mut g = self.min_gap.lock().unwrap();
                *g = (*g).min(gap);
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
            ResponseTemplate::new(200).set_body_json(page(all.iter().map(record).collect(), after, limit))
        }
    }

    /// The double on its own server, how many searches it answered and the shortest time
    /// between two of them.
    pub async fn start(
        contacts: Contacts,
        window: Option<Arc<Window>>,
        archived: Contacts,
    ) -> (MockServer, Arc<Mutex<u64>>, Arc<Mutex<Duration>>) {
        let server = MockServer::start().await;
        let requests = Arc::new(Mutex::new(0));
        let gap = Arc::new(Mutex::new(Duration::MAX));
        Mock::given(method("GET"))
            .and(path("/crm/properties/2026-09/contacts"))
            .respond_with(Properties)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/crm/objects/2026-09/contacts"))
            .respond_with(List(contacts.clone(), window, archived))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/crm/objects/2026-09/contacts/search"))
            .respond_with(Search { contacts, requests: requests.clone(), last: Mutex::default(), min_gap: gap.clone() })
            .mount(&server)
            .await;
        (server, requests, gap)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_search_gets_every_record_once_past_the_cap_with_more_than_10000_sharing_one_timestamp() {
    const T1: i64 = 1_793_491_200_000; // 2026-11-01T00:00:00Z
    const T2: i64 = 1_796_083_200_000; // 2026-12-01T00:00:00Z
    let contacts: double::Contacts = std::sync::Arc::new(std::sync::Mutex::new(
        (1..=10_600).map(|id| (id, T1 + id as i64 * 1000, format!("c{id}@example.com"))).collect(),
    ));
    let (server, searches, gap) = double::start(contacts.clone(), None, Default::default()).await;
    let s = Scratch::new();
    s.write("dovetail.toml", &config(&server.uri()));
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "contacts", "written"), 10_600);
    assert_eq!(*searches.lock().unwrap(), 0, "a first pass lists");
    // 10,500 contacts change at one instant, 50 new ones come a second later.
    {
        let mut all = contacts.lock().unwrap();
        for c in all.iter_mut().filter(|c| c.0 <= 10_500) {
            c.1 = T2;
            c.2 = format!("v2-{}", c.2);
        }
        all.extend((10_601..=10_650).map(|id| (id, T2 + 1000, format!("new{id}@example.com"))));
    }
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "contacts", "written"), 10_550, "every change once: {report:#}");
    assert!(*searches.lock().unwrap() > 2 * (double::CAP / 100), "{} searches", searches.lock().unwrap());
    let gap = *gap.lock().unwrap();
    assert!(gap >= std::time::Duration::from_millis(150), "searches paced at 5 a second: {gap:?} apart");
    let rows: i64 = s.db("out.db").query_row("SELECT count(*) FROM contacts", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 10_650);
    // Nothing changed: a third run writes nothing.
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "contacts", "written"), 0, "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_daily_limit_stops_the_run_rate_limited_until_midnight_without_retrying() {
    let server = FixtureServer::from_file(fixture("daily_limit")).await.unwrap();
    let s = Scratch::new();
    s.write("dovetail.toml", &config(&server.base_url()));
    let (out, report) = run(&s).await;
    assert!(!out.status.success(), "{}", show(&out));
    assert_eq!(report["http"]["source"]["attempts"], 1, "one 429, no retries: {report:#}");
    assert!(server.unmatched().is_empty(), "{:?}", server.unmatched());
    assert_eq!(out.status.code(), Some(5), "rate limited: {}", show(&out));
    assert_eq!(report["streams"]["contacts"]["outcome"], "paused", "{report:#}");
    let error = report["error"].as_str().unwrap_or("");
    assert!(new_york_midnight(error), "the time to come back, midnight in the account's zone: {error}");
}

/// Whether `error` names a midnight in New York (the fixtures' account, `US/Eastern`) as
/// the time to come back: 05:00 UTC in winter, 04:00 in summer.
fn new_york_midnight(error: &str) -> bool {
    error.contains("T05:00:00Z)") || error.contains("T04:00:00Z)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_allowance_the_headers_say_is_spent_stops_the_run_before_the_next_request() {
    // The first page says `X-HubSpot-RateLimit-Daily-Remaining: 0`: the second is not sent.
    let server = FixtureServer::from_file(fixture("daily_spent_headers")).await.unwrap();
    let s = Scratch::new();
    s.write("dovetail.toml", &config(&server.base_url()));
    let (out, report) = run(&s).await;
    assert_eq!(out.status.code(), Some(5), "rate limited: {}", show(&out));
    assert!(server.unmatched().is_empty(), "no request past the spent allowance: {:?}", server.unmatched());
    assert_eq!(report["http"]["source"]["attempts"], 1, "{report:#}");
    assert_eq!(count(&report, "contacts", "written"), 2, "the page read is kept: {report:#}");
    let error = report["error"].as_str().unwrap_or("");
    assert!(new_york_midnight(error), "the time to come back, midnight in the account's zone: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_version_near_its_end_of_life_is_reported_like_a_sunset_header() {
    let text = std::fs::read_to_string(fixture("contacts")).unwrap().replace("/2026-09/", "/2026-03/");
    let server = FixtureServer::start(dovetail_testkit::Fixture::from_json(&text).unwrap()).await.unwrap();
    let s = Scratch::new();
    let config = config(&server.base_url()).replace("objects = [", "api_version = \"2026-03\"\nobjects = [");
    s.write("dovetail.toml", &config);
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert!(server.unmatched().is_empty(), "{:?}", server.unmatched());
    let deprecations = &report["http"]["source"]["deprecations"];
    assert_eq!(deprecations[0]["endpoint"], "HubSpot API version 2026-03", "{report:#}");
    assert_eq!(deprecations[0]["sunset"], "2027-09-30", "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspots_rolling_window_headers_pace_the_listing_to_zero_429s() {
    let contacts: double::Contacts = std::sync::Arc::new(std::sync::Mutex::new(
        (1..=2_500).map(|id| (id, 1_793_491_200_000 + id as i64, format!("c{id}@example.com"))).collect(),
    ));
    let window = std::sync::Arc::new(double::Window {
        max: 5,
        interval: std::time::Duration::from_millis(1000),
        sent: Default::default(),
        refused: Default::default(),
    });
    let (server, _, _) = double::start(contacts, Some(window.clone()), Default::default()).await;
    let s = Scratch::new();
    s.write("dovetail.toml", &config(&server.uri()));
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "contacts", "written"), 2_500);
    assert_eq!(*window.refused.lock().unwrap(), 0, "paced from the headers: {report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_fails_as_auth_and_a_502_or_a_rolling_429_is_retried() {
    // (fixture, exit code, attempts of the listing; the properties API is asked when the run
    // starts, before the report counts requests)
    let cases = [("contacts_unauthorized", 4, 0), ("contacts_server_error", 0, 2), ("contacts_rate_limited", 0, 2)];
    for (name, code, attempts) in cases {
        let server = FixtureServer::from_file(fixture(name)).await.unwrap();
        let s = Scratch::new();
        s.write("dovetail.toml", &config(&server.base_url()));
        let (out, report) = run(&s).await;
        assert_eq!(out.status.code(), Some(code), "{name}: {}", show(&out));
        assert_eq!(report["http"]["source"]["attempts"], attempts, "{name}: {report:#}");
        assert!(server.unmatched().is_empty(), "{name}: {:?}", server.unmatched());
    }
}

/// An object archived since the last run is deleted at the sink under the stream's `delete`
/// mode; one archived before the pass's lower bound is not looked at.
async fn archive_one_contact_between_two_runs(delete: &str) -> (Scratch, Value) {
    const T1: i64 = 1_793_491_200_000;
    let contacts: double::Contacts = std::sync::Arc::new(std::sync::Mutex::new(
        (1..=3).map(|id| (id, T1 + id as i64 * 1000, format!("c{id}@example.com"))).collect(),
    ));
    let archived: double::Contacts = Default::default();
    let (server, _, _) = double::start(contacts.clone(), None, archived.clone()).await;
    let s = Scratch::new();
    let streams = format!("\n[pipelines.crm.streams.contacts]\ndelete = \"{delete}\"\n");
    s.write("dovetail.toml", &(config(&server.uri()) + &streams));
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "contacts", "written"), 3);
    // Contact 2 is archived (search no longer finds it); one archived long ago stays out.
    let gone = contacts.lock().unwrap().remove(1);
    archived.lock().unwrap().extend([(2, T1 + 60_000, gone.2), (7, T1 - 86_400_000, "old@example.com".into())]);
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    (s, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_archived_since_the_last_run_is_deleted_at_the_sink() {
    let (s, report) = archive_one_contact_between_two_runs("delete").await;
    assert_eq!(count(&report, "contacts", "deleted"), 1, "{report:#}");
    let ids: Vec<String> = {
        let db = s.db("out.db");
        let mut q = db.prepare("SELECT id FROM contacts ORDER BY id").unwrap();
        q.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    assert_eq!(ids, ["1", "3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archived_object_is_marked_under_soft_delete_and_kept_under_keep() {
    let (s, report) = archive_one_contact_between_two_runs("soft_delete").await;
    assert_eq!(count(&report, "contacts", "deleted"), 1, "{report:#}");
    let marked: Option<String> =
        s.db("out.db").query_row("SELECT _deleted_at FROM contacts WHERE id = '2'", [], |r| r.get(0)).unwrap();
    assert!(marked.is_some(), "contact 2 not marked deleted");
    let live: i64 =
        s.db("out.db").query_row("SELECT count(*) FROM contacts WHERE _deleted_at IS NULL", [], |r| r.get(0)).unwrap();
    assert_eq!(live, 2);

    let (s, report) = archive_one_contact_between_two_runs("keep").await;
    assert_eq!(count(&report, "contacts", "deleted"), 0, "{report:#}");
    let rows: i64 = s.db("out.db").query_row("SELECT count(*) FROM contacts", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 3);
}
