//! Issue 6, "say exactly what happened": one run with a retry, a token refresh, a dead letter
//! and a drift, against a scripted vendor (wiremock, so every count is deterministic).
//! `dovetail status` and `dovetail explain` are golden-tested (times and durations
//! redacted), and no secret — OAuth2 client secret, refresh and access tokens, a secret query
//! parameter, the alert webhook's token — appears in any output: JSON logs, the run report,
//! status, explain, drift history, dead letters, alerts, or any file dovetail wrote.

use std::path::Path;

use dovetail_e2e::vendor::output_async;
use dovetail_e2e::{Scratch, show};
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CLIENT_SECRET: &str = "CS-s3cret-client-9f2";
const REFRESH_TOKEN: &str = "RT-s3cret-initial-71c";
const ROTATED_TOKEN: &str = "RT-s3cret-rotated-e40";
const ACCESS_ONE: &str = "AT-s3cret-one-5d8";
const ACCESS_TWO: &str = "AT-s3cret-two-b13";
const QUERY_KEY: &str = "QK-s3cret-query-0aa";
const HOOK_TOKEN: &str = "WH-s3cret-hook-c66";
/// 32 bytes as hex: tokens.json is sealed with it.
const SECRET_KEY: &str = "5f1e0c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

fn secrets() -> [&'static str; 7] {
    [CLIENT_SECRET, REFRESH_TOKEN, ROTATED_TOKEN, ACCESS_ONE, ACCESS_TWO, QUERY_KEY, HOOK_TOKEN]
}

fn item(id: u64, name: &str, price: Value, qty: &str) -> Value {
    json!({"id": id, "name": name, "price": price, "qty": qty, "updated_at": format!("2026-01-0{id}T00:00:00Z")})
}

/// The vendor: page 1 answers 503 once; page 2 answers 401 to the first access token, so
/// the client refreshes (the refresh token rotates); page 2 holds a record whose `price`
/// turned into a string (drift) and one whose `qty` does not cast (a dead letter).
async fn vendor() -> MockServer {
    let server = MockServer::start().await;
    let token = |access: &str, refresh: &str| {
        ResponseTemplate::new(200).set_body_json(json!({
            "access_token": access, "token_type": "bearer", "expires_in": 3600, "refresh_token": refresh
        }))
    };
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(body_string_contains(REFRESH_TOKEN))
        .respond_with(token(ACCESS_ONE, ROTATED_TOKEN))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(body_string_contains(ROTATED_TOKEN))
        .respond_with(token(ACCESS_TWO, ROTATED_TOKEN))
        .mount(&server)
        .await;
    let page = |records: Vec<Value>| {
        ResponseTemplate::new(200).set_body_json(json!({ "data": records })).insert_header("x-request-id", "req-p")
    };
    Mock::given(method("GET"))
        .and(path("/v1/items"))
        .and(query_param("page", "1"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/items"))
        .and(query_param("page", "1"))
        .respond_with(
            page(vec![item(1, "alpha", json!(10.5), "3"), item(2, "beta", json!(11), "4")])
                .insert_header("x-request-id", "req-page-1"),
        )
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/items"))
        .and(query_param("page", "2"))
        .and(header("authorization", format!("Bearer {ACCESS_ONE}").as_str()))
        .respond_with(ResponseTemplate::new(401))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/items"))
        .and(query_param("page", "2"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": [
                    item(3, "gamma", json!("12.50"), "5"),
                    item(4, "delta", json!(13), "many"),
                ]}))
                .insert_header("x-request-id", "req-page-2"),
        )
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/items"))
        .and(query_param("page", "3"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": []})))
        .mount(&server)
        .await;
    server
}

fn config(vendor: &str, hook: &str) -> String {
    format!(
        r#"[state]
explain = "full"

[pipelines.shop]
alerts = {{ webhook = "${{HOOK_URL}}", on = ["drift", "dead_letters"] }}

[pipelines.shop.source]
kind = "rest"
base_url = "{vendor}"

[pipelines.shop.source.auth]
type = "oauth2_refresh_token"
token_url = "{vendor}/oauth/token"
client_id = "dovetail"
client_secret = "${{SHOP_CLIENT_SECRET}}"
refresh_token = "${{SHOP_REFRESH_TOKEN}}"

[pipelines.shop.source.http]
retry = {{ base_delay_ms = 5, max_delay_ms = 20 }}

[[pipelines.shop.source.streams]]
name = "items"
path = "/v1/items"
query = {{ api_key = "${{SHOP_QUERY_KEY}}" }}
records = "/data"
primary_key = ["id"]
pagination = {{ type = "page_number", param = "page" }}

[pipelines.shop.sink]
kind = "sqlite"
path = "shop.db"

[pipelines.shop.streams.items.mapping]
rename = {{ name = "title" }}
cast = {{ qty = "integer" }}
"#,
    )
    .replace("${HOOK_URL}", hook)
}

fn cmd(s: &Scratch, hook: &str, args: &[&str]) -> std::process::Command {
    let mut c = s.cmd(args);
    c.env("SHOP_CLIENT_SECRET", CLIENT_SECRET)
        .env("SHOP_REFRESH_TOKEN", REFRESH_TOKEN)
        .env("SHOP_QUERY_KEY", QUERY_KEY)
        .env("HOOK_URL", hook)
        .env("DOVETAIL_SECRET_KEY", SECRET_KEY);
    c
}

/// Lines split on runs of 2+ spaces and joined with ` | `: tables compare without depending
/// on column widths (which follow the redacted values' original widths).
fn cells(text: &str) -> String {
    text.lines()
        .map(|l| {
            let l = redact_times(l);
            l.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect::<Vec<_>>().join(" | ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Redacts `2026-11-28 06:38:01` / RFC 3339 times and `35ms` / `1.2s` durations, word by word.
fn redact_times(line: &str) -> String {
    fn redact(word: &str) -> &str {
        let b = word.as_bytes();
        let is_date = word.len() == 10 && b.get(4) == Some(&b'-') && b.get(7) == Some(&b'-');
        let is_clock = word.len() == 8 && b.get(2) == Some(&b':') && b.get(5) == Some(&b':');
        let is_rfc3339 = word.len() >= 20 && b.get(10) == Some(&b'T') && word.contains(':');
        let is_duration =
            word.ends_with('s') && word.trim_end_matches("ms").trim_end_matches('s').parse::<f64>().is_ok();
        match () {
            _ if is_date => "[date]",
            _ if is_clock => "[time]",
            _ if is_rfc3339 => "[timestamp]",
            _ if is_duration => "[duration]",
            _ => word,
        }
    }
    line.split(' ').map(redact).collect::<Vec<_>>().join(" ")
}

/// Explain output with times, the vendor's port and content hashes redacted.
fn redact_explain(text: &str, vendor: &str) -> String {
    text.replace(vendor, "http://[vendor]")
        .lines()
        .map(|l| {
            let l = redact_times(l);
            match l.find("hash ") {
                Some(i) => {
                    let rest = &l[i + 5..];
                    format!("{}hash [hash]{}", &l[..i], rest.find(' ').map(|j| &rest[j..]).unwrap_or(""))
                }
                None => l,
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in secrets() {
        assert!(!text.contains(secret), "{what} contains the secret {secret}:\n{text}");
    }
}

/// Every file under `dir`, as lossy text (SQLite databases and their WAL included).
fn files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push((p.display().to_string(), String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_explain_tell_the_story_and_no_secret_leaks() {
    let vendor = vendor().await;
    let hooks = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&hooks).await;
    let hook = format!("{}/hooks/{HOOK_TOKEN}?token={HOOK_TOKEN}", hooks.uri());
    let s = Scratch::new();
    s.write("dovetail.toml", &config(&vendor.uri(), "${HOOK_URL}"));

    let out = output_async(cmd(&s, &hook, &["--log-format", "json", "run", "--json"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = &report["streams"]["items"];
    assert_eq!((items["written"].as_u64(), items["dead_lettered"].as_u64()), (Some(3), Some(1)), "{report:#}");
    let http = &report["http"]["source"];
    assert_eq!(http["retry_causes"]["503"], 1, "{report:#}");
    assert_eq!(http["token_requests"], 2, "first token and one refresh after the 401: {report:#}");
    let drift = items["drift"].as_array().unwrap();
    assert!(drift.iter().any(|d| d["path"] == "/price" && d["change"] == "type_changed"), "{report:#}");

    // JSON logs: every line parses, and together they say what happened.
    let logs = String::from_utf8_lossy(&out.stderr).into_owned();
    for line in logs.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    assert!(logs.contains("response shape drifted"), "{logs}");
    assert_no_secret("the JSON logs", &logs);
    assert_no_secret("the run report", &String::from_utf8_lossy(&out.stdout));

    // status: golden, plus --json.
    let status = output_async(cmd(&s, &hook, &["status"])).await;
    assert!(status.status.success(), "{}", show(&status));
    let status_text = String::from_utf8_lossy(&status.stdout).into_owned();
    insta::assert_snapshot!("status_after_a_run_with_a_retry_a_refresh_a_dead_letter_and_a_drift", cells(&status_text));
    let status_json = output_async(cmd(&s, &hook, &["status", "--json"])).await;
    let sj: Value = serde_json::from_slice(&status_json.stdout).unwrap();
    assert_eq!(sj["runs"][0]["report"]["streams"]["items"]["written"], 3, "{sj:#}");

    // explain: the drifted record fetched after the refresh, and the dead-lettered one.
    let mut texts = Vec::new();
    for key in ["3", "4"] {
        let o = output_async(cmd(&s, &hook, &["explain", "shop", "items", key])).await;
        assert!(o.status.success(), "explain {key}: {}", show(&o));
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        insta::assert_snapshot!(format!("explain_item_{key}"), redact_explain(&text, &vendor.uri()));
        texts.push((format!("explain {key}"), text));
        let o = output_async(cmd(&s, &hook, &["explain", "shop", "items", key, "--json"])).await;
        assert!(o.status.success(), "explain {key} --json: {}", show(&o));
        texts.push((format!("explain {key} --json"), String::from_utf8_lossy(&o.stdout).into_owned()));
    }
    let story: Value = serde_json::from_str(&texts[1].1).unwrap();
    assert_eq!(story["fetched_by"]["request_id"], "req-page-2", "{story:#}");
    texts.push(("status".to_owned(), status_text));
    texts.push(("status --json".to_owned(), String::from_utf8_lossy(&status_json.stdout).into_owned()));
    for args in [&["drift", "--json"][..], &["drift"], &["dead-letters", "list", "--json"]] {
        let o = output_async(cmd(&s, &hook, args)).await;
        assert!(o.status.success(), "{args:?}: {}", show(&o));
        texts.push((args.join(" "), String::from_utf8_lossy(&o.stdout).into_owned()));
    }
    assert!(texts.iter().any(|(_, t)| t.contains("/price")), "drift history names the path");

    // Alerts: drift and dead letters, each once.
    let alerts: Vec<Value> =
        hooks.received_requests().await.unwrap().iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect();
    let conditions: Vec<&str> = alerts.iter().map(|a| a["condition"].as_str().unwrap()).collect();
    assert_eq!(conditions, ["drift", "dead_letters"], "{alerts:#?}");
    texts.push(("alerts".into(), serde_json::to_string(&alerts).unwrap()));

    for (what, text) in &texts {
        assert_no_secret(what, text);
    }
    // Every file dovetail wrote: the state database (runs, dead letters, drift, explain),
    // the sink, and tokens.json (sealed with DOVETAIL_SECRET_KEY: the rotated token is there,
    // but not in clear text).
    let written = files(s.dir.path());
    assert!(written.iter().any(|(p, _)| p.ends_with("tokens.json")), "the rotated token was stored");
    for (p, text) in &written {
        if p.ends_with("dovetail.toml") {
            continue;
        }
        assert_no_secret(p, text);
    }
}
