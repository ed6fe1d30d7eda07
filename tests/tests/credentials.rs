//! Issue 14, "done when": through the `dovetail` binary, a credential goes only where the
//! config sent it. A second loopback server (the fake vendor's `Recorder`) stands where an
//! API points dovetail elsewhere — a `Link` header, a next URL in the body, a child URL, a
//! checkpoint stored before `base_url` moved, a cross-origin redirect — and must receive
//! nothing. Each case also shows the way that is allowed (`http.allowed_origins`,
//! `dovetail reset`, a same-origin redirect), so the refusal is the rule, not an accident.

use dovetail_e2e::vendor::{FAST_HTTP, RestPipeline, RestStream, count, row_count};
use dovetail_e2e::{Scratch, show};
use dovetail_fake_vendor::{AuthMode, FakeVendor, Faults, Recorder, VendorConfig, VendorHandle};
use serde_json::{Value, json};

const TOKEN: &str = "tok-e2e-origin-7f3a"; // tidy: not-secret (a fake credential)
const RECORDS: u64 = 30;

fn bearer_auth() -> String {
    format!("{{ type = \"bearer\", token = \"{TOKEN}\" }}")
}

async fn vendor(auth: AuthMode, faults: Faults) -> VendorHandle {
    FakeVendor::start(VendorConfig { records: RECORDS, auth, faults, ..VendorConfig::default() }).await.unwrap()
}

fn bearer_mode() -> AuthMode {
    AuthMode::Bearer { token: TOKEN.into() }
}

/// `items` on the `Link`-header listing, 10 per page, bare arrays.
fn link_stream(path: &str) -> RestStream {
    RestStream::new("items", path).line("query = { per_page = \"10\" }").line("pagination = { type = \"link_header\" }")
}

/// `items` on the listing with the next page's URL at `/next` in the body.
fn next_url_stream() -> RestStream {
    RestStream::new("items", "/v1/items/next")
        .line("query = { limit = \"10\" }")
        .line("records = \"/data\"")
        .line("pagination = { type = \"next_url\", pointer = \"/next\" }")
}

/// The tests' usual `http` block with `origin` allowed.
fn http_allowing(origin: &str) -> String {
    let inner = FAST_HTTP.trim().strip_suffix('}').expect("FAST_HTTP is an inline table");
    format!("{inner}, allowed_origins = [\"{origin}\"] }}")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The run failed as Permanent (exit 8) with every `needle` in its stderr.
fn refused(out: &std::process::Output, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(8), "{}", show(out));
    let err = stderr(out);
    for n in needles {
        assert!(err.contains(n), "stderr lacks `{n}`:\n{err}");
    }
}

fn nothing_reached(recorder: &Recorder, case: &str) {
    let got = recorder.requests();
    assert!(got.is_empty(), "{case}: the other host received {} request(s), first: {:?}", got.len(), got.first());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_page_urls_to_another_host_get_no_credential_unless_allowed() {
    let recorder = Recorder::start().await.unwrap();
    let faults = Faults { link_origin: Some(recorder.origin()), ..Faults::default() };
    let vendor = vendor(bearer_mode(), faults).await;
    let base = vendor.base_url();

    for (what, stream) in [
        ("the `Link` header's next page", link_stream("/v1/items/link")),
        ("the next-page URL in the body at `/next`", next_url_stream()),
    ] {
        let s = Scratch::new();
        RestPipeline::new(&base).auth(&bearer_auth()).stream(stream.clone()).write_to(&s);
        let out = s.run_async(&["run"]).await;
        let refused_to = format!("refused to send a request to {}", recorder.origin());
        refused(&out, &[what, &refused_to, &format!("{base} (the base URL)"), "`http.allowed_origins`"]);
        nothing_reached(&recorder, what);
        // Nothing was committed past the page that carried the link: the rerun stops there too.
        let again = s.run_async(&["run"]).await;
        refused(&again, &[what]);
        nothing_reached(&recorder, what);

        // Allowed, the link is followed with the credential: the list, not luck, decides.
        let s = Scratch::new();
        RestPipeline::new(&base)
            .auth(&bearer_auth())
            .http(&http_allowing(&recorder.origin()))
            .stream(stream)
            .write_to(&s);
        let (out, report) = s.run_json_async(&[]).await;
        assert!(out.status.success(), "{what}: {}", show(&out));
        assert_eq!(count(&report, "items", "written"), 10, "the first page, then the recorder's empty one");
        assert_eq!(recorder.requests_containing(TOKEN).len(), 1, "{what}: {:?}", recorder.requests());
        recorder.clear();
    }
}

/// Creates `{id, comments_url}` objects at the vendor (what `/v1/created` then lists).
async fn create_parents(vendor: &VendorHandle, parents: &[(u64, String)]) {
    let client = reqwest::Client::new();
    for (id, url) in parents {
        let resp = client
            .post(format!("{}/v1/items", vendor.base_url()))
            .bearer_auth(TOKEN)
            .json(&json!({ "external_id": id, "comments_url": url }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "create parent {id}");
    }
}

/// An item id whose comment listing is not empty, and its comment count.
async fn item_with_comments(vendor: &VendorHandle) -> (u64, u64) {
    let client = reqwest::Client::new();
    for id in 1..=RECORDS {
        let page: Value = client
            .get(format!("{}/v1/items/{id}/comments", vendor.base_url()))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let n = page["data"].as_array().map_or(0, Vec::len) as u64;
        if n > 0 {
            return (id, n);
        }
    }
    panic!("no item with comments among the first {RECORDS}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_url_on_another_host_gets_no_credential() {
    let recorder = Recorder::start().await.unwrap();
    let vendor = vendor(bearer_mode(), Faults::default()).await;
    let base = vendor.base_url();
    let (item, comments) = item_with_comments(&vendor).await;
    vendor.reset_stats();
    // Two parents link to their children: one on the vendor, one on another host.
    create_parents(
        &vendor,
        &[(1, format!("{base}/v1/items/{item}/comments")), (2, format!("{}/v1/items/2/comments", recorder.origin()))],
    )
    .await;
    let parents = RestStream::new("created", "/v1/created").line("records = \"/data\"");
    let children = RestStream::new("comments", "{parent.comments_url}")
        .line("records = \"/data\"")
        .line("pagination = { type = \"cursor\", pointer = \"/meta/next_cursor\", param = \"cursor\" }")
        .line("parent = { stream = \"created\", fields = { parent_id = \"id\" } }");
    let s = Scratch::new();
    RestPipeline::new(&base).auth(&bearer_auth()).stream(parents).stream(children).write_to(&s);
    let out = s.run_async(&["run"]).await;
    refused(
        &out,
        &[
            &format!("refused to send a request to {}", recorder.origin()),
            "the URL of child stream `comments` from the parent's `comments_url`",
            &format!("{base} (the base URL)"),
        ],
    );
    nothing_reached(&recorder, "child URL from a parent");
    assert_eq!(row_count(&s, "comments"), comments, "the child listing on the vendor was delivered");

    // A child path configured on another host is refused when the config is loaded.
    let configured = RestStream::new("comments", &format!("{}/v1/items/{{parent.id}}/comments", recorder.origin()))
        .line("parent = { stream = \"created\" }");
    let s = Scratch::new();
    let parents = RestStream::new("created", "/v1/created").line("records = \"/data\"");
    RestPipeline::new(&base).auth(&bearer_auth()).stream(parents).stream(configured).write_to(&s);
    for verb in ["check", "run"] {
        let out = s.run_async(&[verb]).await;
        assert_eq!(out.status.code(), Some(3), "{verb}: {}", show(&out));
        let err = stderr(&out);
        assert!(err.contains("stream `comments`: refused to send a request to"), "{verb}: {err}");
        assert!(err.contains("`http.allowed_origins`"), "{verb}: {err}");
    }
    nothing_reached(&recorder, "configured child path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_stored_before_base_url_moved_is_not_resumed_at_the_old_host() {
    // Run 1 on the old host stops at its checkpoint: page 2 never decodes, and with `Link`
    // pagination the position (page 2's absolute URL on the old host) is kept.
    let old = vendor(bearer_mode(), Faults { malformed_page: Some(2), ..Faults::default() }).await;
    let new = vendor(bearer_mode(), Faults::default()).await;
    let s = Scratch::new();
    RestPipeline::new(&old.base_url()).auth(&bearer_auth()).stream(link_stream("/v1/items/link")).write_to(&s);
    let (out, report) = s.run_json_async(&[]).await;
    assert_eq!(out.status.code(), Some(9), "{}", show(&out));
    assert_eq!(count(&report, "items", "written"), 20, "{report:#}");

    // The API moved. The stored position is the old host's: refused, and nothing goes there.
    old.reset_stats();
    RestPipeline::new(&new.base_url()).auth(&bearer_auth()).stream(link_stream("/v1/items/link")).write_to(&s);
    let out = s.run_async(&["run"]).await;
    refused(
        &out,
        &[
            &format!("written for {}", old.base_url()),
            &format!("the listing is now at {}", new.base_url()),
            "`dovetail reset vendor items`",
        ],
    );
    assert_eq!(old.stats().requests, 0, "the old host received requests: {:?}", old.stats());
    assert_eq!(new.stats().requests, 0, "nothing was read from the new host with the old position");

    // What the message says to do works: the stream starts over on the new host.
    let reset = s.run_async(&["reset", "vendor", "items"]).await;
    assert!(reset.status.success(), "{}", show(&reset));
    let (out, report) = s.run_json_async(&[]).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "items", "read"), RECORDS, "{report:#}");
    assert_eq!(row_count(&s, "items"), RECORDS);
    assert_eq!(old.stats().requests, 0, "the old host received requests: {:?}", old.stats());
}

/// Each way a credential travels: the config's `auth`, the vendor's mode, the secret a leak shows.
fn auth_cases() -> Vec<(&'static str, String, AuthMode, &'static str)> {
    vec![
        ("bearer", bearer_auth(), bearer_mode(), TOKEN),
        (
            "header API key",
            "{ type = \"api_key\", key = \"hk-e2e-91c2\", in = { header = \"X-Api-Key\" } }".into(),
            AuthMode::ApiKey { header: "x-api-key".into(), value: "hk-e2e-91c2".into() },
            "hk-e2e-91c2",
        ),
        (
            "query API key",
            "{ type = \"api_key\", key = \"qk-e2e-5d70\", in = { query = \"api_key\" } }".into(),
            AuthMode::ApiKeyQuery { param: "api_key".into(), value: "qk-e2e-5d70".into() },
            "qk-e2e-5d70",
        ),
        (
            "basic",
            "{ type = \"basic\", username = \"ann\", password = \"pw-e2e-33b8\" }".into(),
            AuthMode::Basic { username: "ann".into(), password: "pw-e2e-33b8".into() },
            "pw-e2e-33b8",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_origin_redirect_is_never_followed_with_any_auth_type() {
    let recorder = Recorder::start().await.unwrap();
    for (name, auth, mode, secret) in auth_cases() {
        for status in [302, 307, 308] {
            let faults =
                Faults { redirect_status: status, redirect_origin: Some(recorder.origin()), ..Faults::default() };
            let vendor = vendor(mode.clone(), faults).await;
            let s = Scratch::new();
            let stream = link_stream("/moved/v1/items/link");
            RestPipeline::new(&vendor.base_url()).auth(&auth).stream(stream.clone()).write_to(&s);
            let out = s.run_async(&["run"]).await;
            refused(
                &out,
                &[&format!("redirecting to {}", recorder.origin()), "never follows a redirect to another origin"],
            );
            assert!(!stderr(&out).contains(secret), "{name}: the secret reached the log");
            nothing_reached(&recorder, &format!("{name}, {status}"));
            assert_eq!(vendor.stats().redirects, 1, "{name} {status}: {:?}", vendor.stats());

            // The same API redirecting within its own origin keeps working, credential and all.
            vendor.set_faults(Faults { redirect_status: status, ..Faults::default() });
            let (out, report) = s.run_json_async(&[]).await;
            assert!(out.status.success(), "{name} {status}: {}", show(&out));
            assert_eq!(count(&report, "items", "written"), RECORDS, "{name} {status}: {report:#}");
            assert_eq!(vendor.stats().unauthorized, 0, "{name} {status}: the credential was dropped on the way");
        }
    }
    nothing_reached(&recorder, "redirects");
}
