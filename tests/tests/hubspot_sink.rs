//! The HubSpot sink (issue 25) through `dovetail run`: contacts from a JSONL file upserted
//! by `email` in batches against a HubSpot double. A value outside an enumeration's options
//! is dead-lettered before anything is sent; a 207 Multi-Status delivers the good inputs and
//! dead-letters the failed one with HubSpot's category, message and property; a batch the
//! double refuses whole (400) is split in halves until the bad input stands alone; results
//! come back in another order than sent and are matched by `email`; nothing delivered is
//! sent again, and a rerun sends nothing.

use std::sync::{Arc, Mutex};

use dovetail_e2e::vendor::{count, output_async};
use dovetail_e2e::{Scratch, show};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TOKEN: &str = "pat-na1-e2e-sink-token-not-real";

/// The emails of each upsert request and the status it was answered with.
type Sent = Arc<Mutex<Vec<(Vec<String>, u16)>>>;

/// HubSpot's batch upsert: a `firstname` of `REFUSE_ALL` makes the whole batch a 400, an
/// email at `invalid.example` fails alone in a 207; results come back reversed.
struct Upsert(Sent, Arc<Mutex<Vec<Value>>>);

impl Respond for Upsert {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let inputs = body["inputs"].as_array().cloned().unwrap_or_default();
        let emails: Vec<String> = inputs.iter().map(|i| i["id"].as_str().unwrap_or("").to_owned()).collect();
        self.1.lock().unwrap().extend(inputs.iter().cloned());
        let answer = |status: u16, v: Value| {
            self.0.lock().unwrap().push((emails.clone(), status));
            ResponseTemplate::new(status).set_body_json(v)
        };
        if inputs.iter().any(|i| i["idProperty"] != "email") || inputs.len() > 100 {
            return answer(400, json!({ "status": "error", "category": "VALIDATION_ERROR", "message": "bad batch" }));
        }
        if inputs.iter().any(|i| i["properties"]["firstname"] == "REFUSE_ALL") {
            return answer(
                400,
                json!({ "status": "error", "category": "VALIDATION_ERROR",
                    "message": "Property values were not valid: firstname REFUSE_ALL is reserved" }),
            );
        }
        let (bad, good): (Vec<&String>, Vec<&String>) = emails.iter().partition(|e| e.ends_with("@invalid.example"));
        let results: Vec<Value> =
            good.iter().rev().map(|e| json!({ "id": object_id(e), "properties": { "email": e } })).collect();
        let errors: Vec<Value> = bad
            .iter()
            .map(|e| {
                json!({ "status": "error", "category": "VALIDATION_ERROR",
                    "message": format!("Email address {e} is invalid"),
                    "context": { "ids": [e], "propertyName": ["email"] } })
            })
            .collect();
        let status = if errors.is_empty() { 200 } else { 207 };
        answer(status, json!({ "status": "COMPLETE", "results": results, "errors": errors }))
    }
}

/// HubSpot's id of the contact first created with `email`: stable, unique.
fn object_id(email: &str) -> String {
    format!("{}", 1000 + email.bytes().map(u64::from).fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b)) % 1_000_000)
}

/// HubSpot's batch update by id: the ids in `known` are updated, any other is
/// `OBJECT_NOT_FOUND` (deleted in the portal); every input is kept.
struct Update(Vec<String>, Arc<Mutex<Vec<Value>>>);

impl Respond for Update {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let inputs = body["inputs"].as_array().cloned().unwrap_or_default();
        self.1.lock().unwrap().extend(inputs.iter().cloned());
        let (mut results, mut errors) = (Vec::new(), Vec::new());
        for i in inputs.iter().rev() {
            let id = i["id"].as_str().unwrap_or("").to_owned();
            if self.0.contains(&id) {
                results.push(json!({ "id": id, "properties": i["properties"] }));
            } else {
                errors.push(json!({ "status": "error", "category": "OBJECT_NOT_FOUND",
                    "message": "Object not found", "context": { "ids": [id] } }));
            }
        }
        let status = if errors.is_empty() { 200 } else { 207 };
        ResponseTemplate::new(status)
            .set_body_json(json!({ "status": "COMPLETE", "results": results, "errors": errors }))
    }
}

async fn double() -> (MockServer, Sent, Arc<Mutex<Vec<Value>>>) {
    let server = MockServer::start().await;
    let props = json!({ "results": [
        { "name": "email", "type": "string", "fieldType": "text", "options": [] },
        { "name": "firstname", "type": "string", "fieldType": "text", "options": [] },
        { "name": "external_id", "type": "string", "fieldType": "text", "options": [] },
        { "name": "date_of_birth", "type": "date", "fieldType": "date", "options": [] },
        { "name": "lifecyclestage", "type": "enumeration", "fieldType": "radio",
          "options": [{ "value": "lead" }, { "value": "customer" }] },
    ]});
    Mock::given(method("GET"))
        .and(path("/crm/properties/2026-09/contacts"))
        .respond_with(ResponseTemplate::new(200).set_body_json(props))
        .mount(&server)
        .await;
    let (sent, inputs) = (Sent::default(), Arc::new(Mutex::new(Vec::new())));
    Mock::given(method("POST"))
        .and(path("/crm/objects/2026-09/contacts/batch/upsert"))
        .respond_with(Upsert(sent.clone(), inputs.clone()))
        .mount(&server)
        .await;
    (server, sent, inputs)
}

/// `dovetail.toml`: the JSONL file `STREAM.jsonl` keyed by `key` into HubSpot's `object`,
/// upserted by `id_property`, with `extra` lines in the sink's table.
fn files_to_hubspot(
    s: &Scratch,
    server: &MockServer,
    (stream, key): (&str, &str),
    (object, id_property): (&str, &str),
    extra: &str,
) {
    s.write(
        "dovetail.toml",
        &format!(
            r#"[pipelines.crm.source]
kind = "files"
[[pipelines.crm.source.streams]]
name = "{stream}"
path = "{stream}.jsonl"
primary_key = ["{key}"]

[pipelines.crm.sink]
kind = "hubspot"
token = "${{HUBSPOT_TOKEN}}"
base_url = "{}"
object = "{object}"
id_property = "{id_property}"
{extra}
"#,
            server.uri()
        ),
    );
}

/// `dovetail run --json` with the token in the environment: the output and the report; the
/// token is in neither.
async fn run_json(s: &Scratch) -> (std::process::Output, Value) {
    let mut cmd = s.cmd(&["run", "--json"]);
    cmd.env("HUBSPOT_TOKEN", TOKEN);
    let out = output_async(cmd).await;
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    assert!(!format!("{}{}", show(&out), report).contains(TOKEN), "the token leaked");
    (out, report)
}

fn contact(email: &str, first: &str, stage: &str) -> String {
    format!(
        "{}\n",
        json!({ "email": email, "firstname": first, "lifecyclestage": stage, "date_of_birth": "1990-05-04" })
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_are_upserted_by_email_and_each_bad_one_is_dead_lettered_alone() {
    let (server, sent, inputs) = double().await;
    let s = Scratch::new();
    let lines = [
        contact("a@example.com", "Ada", "lead"),
        contact("b@example.com", "Bo", "customer"),
        contact("c@example.com", "Cy", "vip"),
        contact("bad@invalid.example", "Bad", "lead"),
        contact("d@example.com", "REFUSE_ALL", "lead"),
        contact("e@example.com", "Eve", "lead"),
    ];
    s.write("contacts.jsonl", &lines.concat());
    files_to_hubspot(&s, &server, ("contacts", "email"), ("contacts", "email"), "");
    let run = || run_json(&s);
    let (out, report) = run().await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "contacts", "written"), 3, "{report:#}");
    assert_eq!(count(&report, "contacts", "dead_lettered"), 3, "{report:#}");
    // vip never went out; every delivered contact went out in exactly one answered-2xx request.
    let sent = sent.lock().unwrap().clone();
    assert!(sent.iter().all(|(emails, _)| !emails.contains(&"c@example.com".to_owned())), "{sent:?}");
    for e in ["a@example.com", "b@example.com", "e@example.com"] {
        let ok = sent.iter().filter(|(emails, st)| *st < 300 && emails.contains(&e.to_owned())).count();
        assert_eq!(ok, 1, "{e} delivered once: {sent:?}");
    }
    assert_eq!(sent[0].1, 400, "the whole first batch refused: {sent:?}");
    assert!(sent.iter().any(|(emails, st)| *st == 400 && *emails == ["d@example.com"]), "{sent:?}");
    // Values as HubSpot wants them: a date is midnight UTC in epoch milliseconds.
    let first = inputs.lock().unwrap()[0].clone();
    assert_eq!(first["properties"]["date_of_birth"], "641779200000", "{first}");
    let list = s.run(&["dead-letters", "list", "--pipeline", "crm", "--json"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.contains("`lifecyclestage`: `vip` is not one of its options (lead, customer)"), "{text}");
    assert!(
        text.contains("Email address bad@invalid.example is invalid (VALIDATION_ERROR, property `email`)"),
        "{text}"
    );
    assert!(text.contains("REFUSE_ALL is reserved"), "{text}");
    // A rerun over unchanged records sends none of the delivered ones again.
    let before = sent.len();
    let (out, report) = run().await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "contacts", "written"), 0, "{report:#}");
    let again = self::sent_since(&server, before).await;
    assert!(
        again.iter().all(|e| !["a@example.com", "b@example.com", "e@example.com"].contains(&e.as_str())),
        "{again:?}"
    );
}

/// The emails of the upsert requests after the first `before`.
async fn sent_since(server: &MockServer, before: usize) -> Vec<String> {
    let reqs = server.received_requests().await.unwrap_or_default();
    reqs.iter()
        .filter(|r| r.url.path().ends_with("/batch/upsert"))
        .skip(before)
        .flat_map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap_or_default();
            body["inputs"].as_array().cloned().unwrap_or_default()
        })
        .filter_map(|i| i["id"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_docs_examples_both_ways_pass_an_offline_check() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/connectors/hubspot.md")).unwrap();
    let examples: Vec<&str> = doc
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        // Whole pipelines only: a fragment (a `[pipelines.X.streams.Y]` table) is not a config.
        .filter(|b| b.contains(".source]") && b.contains(".sink]"))
        .collect();
    let sinks = examples.iter().filter(|e| e.contains(".sink]\nkind = \"hubspot\"")).count();
    let sources = examples.iter().filter(|e| e.contains(".source]\nkind = \"hubspot\"")).count();
    assert!(sinks >= 1 && sources >= 1, "an example each way: {examples:?}");
    for example in examples {
        let s = Scratch::new();
        s.write("dovetail.toml", example);
        let mut cmd = s.cmd(&["check", "--offline"]);
        for var in ["HUBSPOT_TOKEN", "PG_URL", "DATABASE_URL"] {
            cmd.env(var, "postgres://u:p@localhost:5432/db");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{example}\n{}", show(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_the_ledger_knows_is_updated_by_its_hubspot_id_even_when_its_email_changes() {
    let (server, _sent, _) = double().await;
    let updates = Arc::new(Mutex::new(Vec::new()));
    // x's object still exists in HubSpot; y's was deleted in the portal since.
    let known = vec![object_id("x@example.com")];
    Mock::given(method("POST"))
        .and(path("/crm/objects/2026-09/contacts/batch/update"))
        .respond_with(Update(known.clone(), updates.clone()))
        .mount(&server)
        .await;
    let s = Scratch::new();
    let line =
        |ext: &str, email: &str| format!("{}\n", json!({ "external_id": ext, "email": email, "firstname": "F" }));
    s.write("contacts.jsonl", &[line("1", "x@example.com"), line("2", "y@example.com")].concat());
    files_to_hubspot(&s, &server, ("contacts", "external_id"), ("contacts", "email"), "");
    let run = || run_json(&s);
    let (out, report) = run().await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "contacts", "written"), 2, "{report:#}");
    assert!(updates.lock().unwrap().is_empty(), "nothing known yet: upserts only");
    // Both change their email: x is updated by its id; y's id is gone, so it is upserted.
    s.write("contacts.jsonl", &[line("1", "x2@example.com"), line("2", "y2@example.com")].concat());
    let upserts_before = sent_since(&server, 0).await.len();
    let (out, report) = run().await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "contacts", "written"), 2, "{report:#}");
    assert_eq!(count(&report, "contacts", "dead_lettered"), 0, "{report:#}");
    let updates = updates.lock().unwrap().clone();
    let ids: Vec<&str> = updates.iter().filter_map(|u| u["id"].as_str()).collect();
    assert_eq!(ids.len(), 2, "{updates:?}");
    assert!(ids.contains(&known[0].as_str()) && ids.contains(&object_id("y@example.com").as_str()), "{updates:?}");
    let x = updates.iter().find(|u| u["id"] == known[0]).unwrap();
    assert_eq!(x["properties"]["email"], "x2@example.com");
    let upserted: Vec<String> = sent_since(&server, 0).await.into_iter().skip(upserts_before).collect();
    assert_eq!(upserted, ["y2@example.com"], "only the contact whose object is gone is upserted");
}

/// HubSpot's batch associate: every pair is associated but those to company `999`, which
/// does not exist (a 207 error naming it); the pairs asked for are kept.
struct AssociateCreate(Arc<Mutex<Vec<Value>>>);

impl Respond for AssociateCreate {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let inputs = body["inputs"].as_array().cloned().unwrap_or_default();
        self.0.lock().unwrap().extend(inputs.iter().cloned());
        let (mut results, mut errors) = (Vec::new(), Vec::new());
        for i in inputs.iter().rev() {
            let (from, to) = (i["from"]["id"].as_str().unwrap_or(""), i["to"]["id"].as_str().unwrap_or(""));
            if to == "999" {
                errors.push(json!({ "status": "error", "category": "VALIDATION_ERROR",
                    "message": "No company with id 999 exists", "context": { "toObjectId": [to] } }));
            } else {
                let n = |s: &str| s.parse::<u64>().unwrap_or(0);
                results.push(json!({ "fromObjectTypeId": "0-1", "fromObjectId": n(from),
                    "toObjectTypeId": "0-2", "toObjectId": n(to), "labels": [] }));
            }
        }
        let status = if errors.is_empty() { 201 } else { 207 };
        let mut answer = json!({ "status": "COMPLETE", "results": results,
            "startedAt": "2026-12-08T00:00:00.000Z", "completedAt": "2026-12-08T00:00:00.100Z" });
        if !errors.is_empty() {
            answer["numErrors"] = json!(errors.len());
            answer["errors"] = Value::Array(errors);
        }
        ResponseTemplate::new(status).set_body_json(answer)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_contacts_are_associated_with_their_company_and_a_failed_association_is_dead_lettered() {
    let (server, _sent, inputs) = double().await;
    let pairs = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path("/crm/associations/2026-09/contacts/companies/batch/create"))
        .respond_with(AssociateCreate(pairs.clone()))
        .mount(&server)
        .await;
    let s = Scratch::new();
    let line = |email: &str, company: &str| format!("{}\n", json!({ "email": email, "company_id": company }));
    // d has no company: written, not associated. c's pair, which fails, goes first: HubSpot
    // answers for the others, so matching by position would refuse b's instead.
    let lines = [
        line("c@example.com", "999"),
        line("a@example.com", "501"),
        line("b@example.com", "502"),
        format!("{}\n", json!({ "email": "d@example.com" })),
    ];
    s.write("contacts.jsonl", &lines.concat());
    files_to_hubspot(
        &s,
        &server,
        ("contacts", "email"),
        ("contacts", "email"),
        "associate = { to = \"companies\", id_field = \"company_id\", type_id = 1 }",
    );
    let (out, report) = run_json(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "contacts", "written"), 3, "{report:#}");
    assert_eq!(count(&report, "contacts", "dead_lettered"), 1, "{report:#}");
    // The id field is no property: it is not sent with the contact.
    assert!(inputs.lock().unwrap().iter().all(|i| i["properties"].get("company_id").is_none()), "{inputs:?}");
    let mut asked: Vec<(String, String)> = pairs
        .lock()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["types"], json!([{ "associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 1 }]));
            (p["from"]["id"].as_str().unwrap_or("").to_owned(), p["to"]["id"].as_str().unwrap_or("").to_owned())
        })
        .collect();
    asked.sort();
    let mut want = vec![
        (object_id("a@example.com"), "501".to_owned()),
        (object_id("b@example.com"), "502".to_owned()),
        (object_id("c@example.com"), "999".to_owned()),
    ];
    want.sort();
    assert_eq!(asked, want, "each written contact with a company, by HubSpot's ids");
    let list = s.run(&["dead-letters", "list", "--pipeline", "crm", "--json"]);
    let text = String::from_utf8_lossy(&list.stdout);
    let c = object_id("c@example.com");
    assert!(
        text.contains(&format!(
            "HubSpot did not associate {c} with 999: No company with id 999 exists (VALIDATION_ERROR)"
        )),
        "{text}"
    );
    assert!(!text.contains("with 501") && !text.contains("with 502"), "{text}");
}

/// HubSpot's batch upsert of deals by `deal_ref`: every input created or updated.
struct DealUpsert(Arc<Mutex<Vec<Value>>>);

impl Respond for DealUpsert {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let inputs = body["inputs"].as_array().cloned().unwrap_or_default();
        self.0.lock().unwrap().extend(inputs.iter().cloned());
        let results: Vec<Value> = inputs
            .iter()
            .map(|i| {
                let id = i["id"].as_str().unwrap_or("");
                json!({ "id": object_id(id), "properties": { "deal_ref": id } })
            })
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({ "status": "COMPLETE", "results": results }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deal_created_without_a_required_property_is_dead_lettered_before_it_is_sent() {
    let server = MockServer::start().await;
    let props = json!({ "results": [
        { "name": "deal_ref", "type": "string", "fieldType": "text", "options": [], "hasUniqueValue": true },
        { "name": "dealname", "type": "string", "fieldType": "text", "options": [] },
        { "name": "amount", "type": "number", "fieldType": "number", "options": [] },
        { "name": "pipeline", "type": "enumeration", "fieldType": "select", "options": [{ "value": "default" }] },
        { "name": "dealstage", "type": "enumeration", "fieldType": "radio",
          "options": [{ "value": "appointmentscheduled" }, { "value": "closedwon" }] },
    ]});
    Mock::given(method("GET"))
        .and(path("/crm/properties/2026-09/deals"))
        .respond_with(ResponseTemplate::new(200).set_body_json(props))
        .mount(&server)
        .await;
    let (upserted, updated) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    Mock::given(method("POST"))
        .and(path("/crm/objects/2026-09/deals/batch/upsert"))
        .respond_with(DealUpsert(upserted.clone()))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/objects/2026-09/deals/batch/update"))
        .respond_with(Update(vec![object_id("D1")], updated.clone()))
        .mount(&server)
        .await;
    let s = Scratch::new();
    let deal = |r: &str, stage: Option<&str>, amount: Option<u32>| {
        let mut d = json!({ "deal_ref": r, "dealname": format!("Deal {r}") });
        if let Some(stage) = stage {
            d["dealstage"] = json!(stage);
        }
        if let Some(amount) = amount {
            d["amount"] = json!(amount);
        }
        format!("{d}\n")
    };
    // D2 lacks HubSpot's `dealstage`, D3 the configured `amount`.
    let lines = [
        deal("D1", Some("closedwon"), Some(100)),
        deal("D2", None, Some(200)),
        deal("D3", Some("closedwon"), None),
        deal("D4", Some("appointmentscheduled"), Some(400)),
    ];
    s.write("deals.jsonl", &lines.concat());
    files_to_hubspot(&s, &server, ("deals", "deal_ref"), ("deals", "deal_ref"), "required = [\"amount\"]");
    let run = || async {
        let (out, report) = run_json(&s).await;
        assert!(out.status.success(), "{}", show(&out));
        report
    };
    let report = run().await;
    assert_eq!(count(&report, "deals", "written"), 2, "{report:#}");
    assert_eq!(count(&report, "deals", "dead_lettered"), 2, "{report:#}");
    let sent: Vec<String> =
        upserted.lock().unwrap().iter().filter_map(|i| i["id"].as_str().map(str::to_owned)).collect();
    assert_eq!(sent, ["D1", "D4"], "the incomplete deals never reached HubSpot");
    for r in server.received_requests().await.unwrap_or_default() {
        let body = String::from_utf8_lossy(&r.body);
        assert!(!body.contains("\"D2\"") && !body.contains("\"D3\""), "{} {body}", r.url);
    }
    let list = s.run(&["dead-letters", "list", "--pipeline", "crm", "--json"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains(
            "HubSpot's deals require `dealstage` to create one: record \\\"D2\\\" (`deal_ref` = `D2`) has none"
        ),
        "{text}"
    );
    assert!(text.contains("HubSpot's deals require `amount` to create one: record \\\"D3\\\""), "{text}");
    // D1, now known by its HubSpot id, is updated without `amount`: an update is not held to it.
    s.write("deals.jsonl", &[deal("D1", Some("closedwon"), None), lines[3].clone()].concat());
    let report = run().await;
    assert_eq!(count(&report, "deals", "written"), 1, "{report:#}");
    assert_eq!(count(&report, "deals", "dead_lettered"), 0, "{report:#}");
    let updated = updated.lock().unwrap().clone();
    assert_eq!(updated.len(), 1, "{updated:?}");
    assert_eq!(updated[0]["id"], object_id("D1"));
    assert!(updated[0]["properties"].get("amount").is_none(), "{updated:?}");
}
