//! HubSpot's search endpoint read by the declarative REST connector (`kind = "rest"`) with
//! `body_cursor` pagination, through `dovetail run` into SQLite: each page is a POST whose
//! JSON body carries the configured filters and, after the first, the cursor the last page
//! sent at `paging.next.after`.

use std::sync::{Arc, Mutex};

use dovetail_e2e::vendor::{count, output_async};
use dovetail_e2e::{Scratch, show};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const SEARCH: &str = "/crm/objects/2026-09/contacts/search";

/// Five contacts, `limit` per page, `after` an offset as HubSpot's search sends it; every
/// body it receives is kept.
struct Search(Arc<Mutex<Vec<Value>>>);

impl Respond for Search {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
            return ResponseTemplate::new(400).set_body_json(json!({ "message": "not JSON" }));
        };
        self.0.lock().unwrap().push(body.clone());
        let after: usize = body["after"].as_str().map_or(0, |a| a.parse().unwrap_or(usize::MAX));
        let limit = body["limit"].as_u64().unwrap_or(10) as usize;
        let results: Vec<Value> = (1..=5)
            .skip(after)
            .take(limit)
            .map(|id| json!({ "id": id.to_string(), "properties": { "email": format!("c{id}@example.com") } }))
            .collect();
        let mut page = json!({ "total": 5, "results": results });
        if after + limit < 5 {
            page["paging"] = json!({ "next": { "after": (after + limit).to_string() } });
        }
        ResponseTemplate::new(200).set_body_json(page)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_search_is_paged_by_the_cursor_sent_back_in_its_body() {
    let server = MockServer::start().await;
    let bodies = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST")).and(path(SEARCH)).respond_with(Search(bodies.clone())).mount(&server).await;
    let s = Scratch::new();
    s.write(
        "dovetail.toml",
        &format!(
            r#"[pipelines.crm.source]
kind = "rest"
base_url = "{}"

[[pipelines.crm.source.streams]]
name = "contacts"
path = "{SEARCH}"
records = "/results"
primary_key = ["id"]
pagination = {{ type = "body_cursor", pointer = "/paging/next/after", field = "after", body = {{ limit = 2, properties = ["email"] }} }}

[pipelines.crm.sink]
kind = "sqlite"
path = "out.db"
"#,
            server.uri()
        ),
    );
    let out = output_async(s.cmd(&["run", "--json"])).await;
    assert!(out.status.success(), "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    assert_eq!(count(&report, "contacts", "written"), 5, "{report:#}");
    let want = [
        json!({ "limit": 2, "properties": ["email"] }),
        json!({ "limit": 2, "properties": ["email"], "after": "2" }),
        json!({ "limit": 2, "properties": ["email"], "after": "4" }),
    ];
    assert_eq!(*bodies.lock().unwrap(), want);
    let rows: i64 = s.db("out.db").query_row("SELECT count(*) FROM contacts", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 5);
}
