//! Where the vendor points a client: next-page URLs on another origin (`link_origin`) and
//! `/moved/...` redirects, for tests that credentials stay with their configured host.

mod common;

use common::{client, get, header, ids, start, start_with};
use dovetail_fake_vendor::{AuthMode, FakeVendor, Faults, Recorder, VendorConfig};
use serde_json::{Value, json};

/// A client that shows redirects instead of following them.
fn no_follow() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn link_url(headers: &reqwest::header::HeaderMap) -> String {
    let link = header(headers, "link").expect("a Link header");
    link.strip_prefix('<').and_then(|l| l.strip_suffix(">; rel=\"next\"")).expect("one rel=next link").to_owned()
}

#[tokio::test]
async fn link_origin_replaces_only_the_origin_of_next_page_urls() {
    let vendor = start(30).await;
    let (c, base) = (client(), vendor.base_url());
    let since = "updated_since=2020-01-01T00%3A00%3A00Z";
    let (_, own_headers, _) = get(&c, &format!("{base}/v1/items/link?per_page=5&{since}")).await;
    let (_, _, own_body) = get(&c, &format!("{base}/v1/items/next?limit=5")).await;
    let own_link = link_url(&own_headers);
    let own_next = own_body["next"].as_str().unwrap().to_owned();
    assert!(own_link.starts_with(&format!("{base}/v1/items/link?")), "{own_link}");
    assert!(own_next.starts_with(&format!("{base}/v1/items/next?")), "{own_next}");

    // Set over HTTP, with a trailing slash that must not double the path's.
    let set = c.post(format!("{base}/_control/faults")).json(&json!({"link_origin": "http://127.0.0.1:4098/"}));
    assert_eq!(set.send().await.unwrap().status().as_u16(), 200);
    let (status, headers, page) = get(&c, &format!("{base}/v1/items/link?per_page=5&{since}")).await;
    assert_eq!((status, ids(&page)), (200, vec![1, 2, 3, 4, 5]), "the page itself is unchanged");
    assert_eq!(link_url(&headers), own_link.replace(&base, "http://127.0.0.1:4098"));
    let (_, _, body) = get(&c, &format!("{base}/v1/items/next?limit=5")).await;
    assert_eq!(body["next"].as_str().unwrap(), own_next.replace(&base, "http://127.0.0.1:4098"));
    assert!(body["next"].as_str().unwrap().starts_with("http://127.0.0.1:4098/v1/items/next?limit=5&cursor="));

    vendor.set_faults(Faults::default());
    let (_, headers, _) = get(&c, &format!("{base}/v1/items/link?per_page=5&{since}")).await;
    assert_eq!(link_url(&headers), own_link, "off again: the vendor's own origin");
}

#[tokio::test]
async fn moved_paths_redirect_before_auth_with_path_and_query() {
    let config = VendorConfig { records: 20, auth: AuthMode::Bearer { token: "t0k".into() }, ..Default::default() };
    let vendor = start_with(config).await;
    let (c, base) = (no_follow(), vendor.base_url());
    let resp = c.get(format!("{base}/moved/v1/items/link?per_page=5&page=2")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 307, "no credential, and still not a 401");
    let location = format!("{base}/v1/items/link?per_page=5&page=2");
    assert_eq!(header(resp.headers(), "location"), Some(location.as_str()));
    let resp = c.post(format!("{base}/moved/oauth/token")).form(&[("grant_type", "client_credentials")]).send();
    let resp = resp.await.unwrap();
    assert_eq!(
        (resp.status().as_u16(), header(resp.headers(), "location")),
        (307, Some(&*format!("{base}/oauth/token")))
    );

    let recorder = Recorder::start().await.unwrap();
    vendor.set_faults(Faults { redirect_status: 308, redirect_origin: Some(recorder.origin()), ..Faults::default() });
    let resp = c.put(format!("{base}/moved/v1/items/a%20b")).bearer_auth("t0k").body("{}").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 308);
    let expected = format!("{}/v1/items/a%20b", recorder.origin());
    assert_eq!(header(resp.headers(), "location"), Some(expected.as_str()));
    assert!(recorder.requests().is_empty(), "the vendor only points; it does not forward");

    vendor.set_down(true);
    assert_eq!(c.get(format!("{base}/moved/v1/items")).send().await.unwrap().status().as_u16(), 503);
    let stats = vendor.stats();
    assert_eq!((stats.redirects, stats.by_path["/moved/*"], stats.requests), (3, 4, 4));
    assert_eq!((stats.by_status[&307], stats.by_status[&308], stats.unauthorized), (2, 1, 0));
    assert_eq!(stats.by_path.get("other"), None);
}

#[tokio::test]
async fn a_followed_redirect_reaches_the_real_endpoint_or_the_recorder() {
    let vendor = start(20).await;
    let (c, base) = (client(), vendor.base_url());
    let (status, _, page) = get(&c, &format!("{base}/moved/v1/items/link?per_page=5")).await;
    assert_eq!((status, ids(&page)), (200, vec![1, 2, 3, 4, 5]));
    let stats = vendor.stats();
    assert_eq!((stats.redirects, stats.by_path["/v1/items/link"], stats.pages_served), (1, 1, 1));

    let recorder = Recorder::start().await.unwrap();
    vendor.set_faults(Faults { redirect_origin: Some(recorder.origin()), ..Faults::default() });
    let (status, _, body) = get(&c, &format!("{base}/moved/v1/items/offset?limit=3&x=%2F")).await;
    assert_eq!((status, body), (200, json!([])));
    let seen: Vec<(String, String)> = recorder.requests().into_iter().map(|r| (r.method, r.target)).collect();
    assert_eq!(seen, [("GET".to_owned(), "/v1/items/offset?limit=3&x=%2F".to_owned())]);
}

#[tokio::test]
async fn redirects_draw_no_fault_dice() {
    // The same seed gives the same 503s to the same sequence of API requests, redirects or not.
    let statuses = |interleave: bool| async move {
        let config = VendorConfig { records: 5, seed: 11, ..Default::default() };
        let vendor = start_with(config).await;
        vendor.set_faults(Faults { error_503_ratio: 0.5, ..Faults::default() });
        let (c, base) = (no_follow(), vendor.base_url());
        let mut out = Vec::new();
        for _ in 0..24 {
            if interleave {
                assert_eq!(get(&c, &format!("{base}/moved/v1/items/1")).await.0, 307);
            }
            out.push(get(&c, &format!("{base}/v1/items/1")).await.0);
        }
        out
    };
    let plain = statuses(false).await;
    assert!(plain.contains(&503) && plain.contains(&200), "{plain:?}");
    assert_eq!(statuses(true).await, plain);
}

#[tokio::test]
async fn redirect_status_and_origins_are_checked() {
    let vendor = start(5).await;
    let (c, base) = (no_follow(), vendor.base_url());
    let post = |body: Value| c.post(format!("{base}/_control/faults")).json(&body).send();
    for bad in [
        json!({"redirect_status": 200}),
        json!({"redirect_status": 304}),
        json!({"redirect_origin": "http://127.0.0.1:1/api"}),
        json!({"link_origin": "127.0.0.1:4098"}),
        json!({"link_origin": "http://h/?q=1"}),
        json!({"link_origin": "http://a\"b:1"}),
    ] {
        let resp = post(bad.clone()).await.unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{bad}");
    }
    assert_eq!(vendor.faults(), Faults::default(), "a refused set changes nothing");
    assert_eq!(post(json!({"redirect_status": 301})).await.unwrap().status().as_u16(), 200);
    assert_eq!(vendor.faults().redirect_status, 301);
    assert_eq!(post(json!({})).await.unwrap().status().as_u16(), 200);
    assert_eq!(vendor.faults().redirect_status, 307, "omitted means 307");

    let toml = "[faults]\nredirect_status = 302\nredirect_origin = \"http://127.0.0.1:9\"\n";
    let faults = VendorConfig::parse(toml).unwrap().faults;
    assert_eq!((faults.redirect_status, faults.redirect_origin.as_deref()), (302, Some("http://127.0.0.1:9")));
    assert!(VendorConfig::parse("[faults]\nredirect_status = 300\n").unwrap_err().contains("redirect_status"));
    assert!(VendorConfig::parse("[faults]\nlink_origin = \"nope\"\n").is_err());

    let bad = Faults { redirect_status: 200, ..Faults::default() };
    let err = FakeVendor::start(VendorConfig { faults: bad.clone(), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    // Set in code, the value is not checked up front; the redirect says what is wrong.
    vendor.set_faults(bad);
    let resp = c.get(format!("{base}/moved/v1/items")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 500);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "invalid_fault");
    assert_eq!(vendor.stats().redirects, 0);
}
