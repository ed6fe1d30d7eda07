//! The HubSpot source through `dovetail run` into SQLite: on its recorded fixtures
//! (connectors/hubspot/fixtures, replayed by the testkit's server over loopback), and against a
//! double of the search endpoint that enforces its 10,000-result cap.

use std::path::PathBuf;
use std::process::Output;

use dovetail_e2e::hubspot as double;
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
    // A first pass lists, then searches once from when the list started (minus the
    // lookback) for what changed behind it: nothing here, the contacts are older.
    let first = *searches.lock().unwrap();
    assert_eq!(first, 1, "a first pass lists, then one catch-up search");
    gap.lock().unwrap().reset();
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
    // Keyset pages: about one search per page of 100 (the double refuses any query past its
    // cap with a 400, so none went there), not a restart per cap.
    let n = *searches.lock().unwrap() - first;
    assert!((106..=112).contains(&n), "{n} searches for 10,550 changes");
    let gap = gap.lock().unwrap().min_gap();
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
    // (fixture, exit code, attempts: the listing's, plus the archived listing and the
    // catch-up search that end a first pass; the properties API is asked when the run
    // starts, before the report counts requests)
    let cases = [("contacts_unauthorized", 4, 0), ("contacts_server_error", 0, 4), ("contacts_rate_limited", 0, 4)];
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

/// HubSpot's associations batch read for contacts → companies: `(contact, company, type)`
/// triples; at most two companies per contact in one answer (the rest behind that
/// contact's `paging.next.after`), and a contact with none is a `207` error for its id.
struct AssociationsRead(std::sync::Arc<std::sync::Mutex<Vec<(u64, u64, i64)>>>);
impl wiremock::Respond for AssociationsRead {
    fn respond(&self, req: &wiremock::Request) -> wiremock::ResponseTemplate {
        use serde_json::json;
        let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let all = self.0.lock().unwrap().clone();
        let (mut results, mut errors) = (vec![], vec![]);
        for input in body["inputs"].as_array().cloned().unwrap_or_default() {
            let id: u64 = input["id"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
            let after: usize = input["after"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
            let mut companies: Vec<u64> = all.iter().filter(|a| a.0 == id).map(|a| a.1).collect();
            companies.dedup();
            if companies.is_empty() {
                errors.push(json!({ "status": "error", "category": "OBJECT_NOT_FOUND",
                    "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
                    "context": { "fromObjectId": [id.to_string()] },
                    "message": format!("No company is associated with contact {id}.") }));
                continue;
            }
            let to: Vec<Value> = companies
                .iter()
                .skip(after)
                .take(2)
                .map(|c| {
                    let types: Vec<Value> = all
                        .iter()
                        .filter(|a| a.0 == id && a.1 == *c)
                        .map(|a| {
                            json!({ "category": "HUBSPOT_DEFINED", "typeId": a.2,
                            "label": (if a.2 == 1 { Value::String("Primary".into()) } else { Value::Null }) })
                        })
                        .collect();
                    json!({ "toObjectId": c.to_string(), "associationTypes": types })
                })
                .collect();
            let mut result = json!({ "from": { "id": id.to_string() }, "to": to });
            if after + 2 < companies.len() {
                result["paging"] = json!({ "next": { "after": (after + 2).to_string() } });
            }
            results.push(result);
        }
        let status = if errors.is_empty() { 200 } else { 207 };
        let mut body = json!({ "status": "COMPLETE", "results": results,
            "startedAt": "2026-12-08T00:00:00.000Z", "completedAt": "2026-12-08T00:00:00.100Z" });
        if !errors.is_empty() {
            body["numErrors"] = json!(errors.len());
            body["errors"] = Value::Array(errors);
        }
        wiremock::ResponseTemplate::new(status).set_body_json(body)
    }
}

fn association_rows(s: &Scratch) -> Vec<(String, String, i64)> {
    let db = s.db("out.db");
    let mut q = db.prepare("SELECT from_id, to_id, type_id FROM contacts_to_companies ORDER BY 1, 2, 3").unwrap();
    q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn associations_are_a_stream_per_pair_and_a_removed_one_is_deleted_by_a_full_refresh() {
    let contacts: double::Contacts = std::sync::Arc::new(std::sync::Mutex::new(
        (1..=3).map(|id| (id, 1_793_491_200_000 + id as i64, format!("c{id}@example.com"))).collect(),
    ));
    let (server, _, _) = double::start(contacts, None, Default::default()).await;
    // Contact 1: three companies, 101 both primary (1) and unlabeled (279); contact 2: one;
    // contact 3: none.
    let links = std::sync::Arc::new(std::sync::Mutex::new(vec![
        (1, 101, 1),
        (1, 101, 279),
        (1, 102, 279),
        (1, 103, 279),
        (2, 104, 279),
    ]));
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/crm/associations/2026-09/contacts/companies/batch/read"))
        .respond_with(AssociationsRead(links.clone()))
        .mount(&server)
        .await;
    let s = Scratch::new();
    let config = config(&server.uri()).replace("objects = [", "associations = [\"contacts:companies\"]\nobjects = [")
        + "\n[pipelines.crm.streams.contacts_to_companies]\nsync_mode = \"full_refresh\"\ndelete = \"delete\"\n";
    s.write("dovetail.toml", &config);
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "contacts_to_companies", "written"), 5, "{report:#}");
    let row = |f: &str, t: &str, ty: i64| (f.to_owned(), t.to_owned(), ty);
    assert_eq!(
        association_rows(&s),
        [row("1", "101", 1), row("1", "101", 279), row("1", "102", 279), row("1", "103", 279), row("2", "104", 279)]
    );
    // Contact 1 loses company 102 in HubSpot: the next full refresh deletes that row.
    links.lock().unwrap().retain(|a| a.1 != 102);
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "contacts_to_companies", "deleted"), 1, "{report:#}");
    assert_eq!(
        association_rows(&s),
        [row("1", "101", 1), row("1", "101", 279), row("1", "103", 279), row("2", "104", 279)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_search_rate_of_two_a_second_is_not_exceeded() {
    const T1: i64 = 1_793_491_200_000;
    let contacts: double::Contacts = std::sync::Arc::new(std::sync::Mutex::new(
        (1..=250).map(|id| (id, T1 + id as i64 * 1000, format!("c{id}@example.com"))).collect(),
    ));
    let (server, searches, gap) = double::start(contacts.clone(), None, Default::default()).await;
    let s = Scratch::new();
    s.write("dovetail.toml", &config(&server.uri()).replace("objects = [", "search_rate = 2\nobjects = ["));
    let (out, _) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    // Every contact changes: the incremental pass searches three pages of 100.
    for c in contacts.lock().unwrap().iter_mut() {
        c.1 += 86_400_000;
    }
    gap.lock().unwrap().reset();
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "contacts", "written"), 250, "{report:#}");
    assert!(*searches.lock().unwrap() >= 3, "{} searches", searches.lock().unwrap());
    let gap = gap.lock().unwrap().min_gap();
    assert!(gap >= std::time::Duration::from_millis(480), "searches 2 a second at most: {gap:?} apart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_merged_away_are_deleted_at_the_sink() {
    const T1: i64 = 1_793_491_200_000;
    let contacts: double::Contacts = std::sync::Arc::new(std::sync::Mutex::new(
        (1..=4).map(|id| (id, T1 + id as i64 * 1000, format!("c{id}@example.com"))).collect(),
    ));
    let merges = double::Merges::default();
    let (server, _, _) = double::start_merged(contacts.clone(), None, Default::default(), merges.clone()).await;
    let s = Scratch::new();
    let streams = "\n[pipelines.crm.streams.contacts]\ndelete = \"delete\"\n";
    s.write("dovetail.toml", &(config(&server.uri()) + streams));
    let (out, _) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    // Contacts 3 and 4 are merged into contact 1: HubSpot lists them no more and 1 names
    // both (`3;4`), changed now.
    {
        let mut all = contacts.lock().unwrap();
        all.retain(|c| c.0 != 3 && c.0 != 4);
        all[0].1 = T1 + 60_000;
    }
    merges.lock().unwrap().insert(1, "3;4".into());
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "contacts", "written"), 1, "{report:#}");
    assert_eq!(count(&report, "contacts", "deleted"), 2, "{report:#}");
    // The merged ids are ids, not options of an enumeration: no drift for them.
    let drift = report["streams"]["contacts"]["drift"].as_array().cloned().unwrap_or_default();
    assert!(drift.iter().all(|d| d["path"].as_str().is_none_or(|p| !p.contains("hs_merged_object_ids"))), "{drift:#?}");
    let ids: Vec<String> = {
        let db = s.db("out.db");
        let mut q = db.prepare("SELECT id FROM contacts ORDER BY id").unwrap();
        q.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    assert_eq!(ids, ["1", "2"]);
}
