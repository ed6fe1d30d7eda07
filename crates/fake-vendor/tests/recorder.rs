//! The `Recorder`: a loopback server that answers `200 []` and keeps every request.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use dovetail_fake_vendor::Recorder;

#[tokio::test]
async fn records_method_target_headers_and_body_and_answers_an_empty_array() {
    let recorder = Recorder::start().await.unwrap();
    let base = recorder.base_url();
    assert!(base.starts_with("http://127.0.0.1:") && !base.ends_with('/'), "{base}");
    assert_eq!(recorder.origin(), base);
    let c = reqwest::Client::new();
    let resp = c.get(format!("{base}/v1/items?limit=5&q=a%2Fb+c")).header("X-Trace", "t-1").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.text().await.unwrap(), "[]");
    c.put(format!("{base}/v1/items/e1")).body("{\"n\":1}").send().await.unwrap();

    let requests = recorder.requests();
    assert_eq!(requests.len(), 2, "visible as soon as the client has the response");
    assert_eq!((requests[0].method.as_str(), requests[0].target.as_str()), ("GET", "/v1/items?limit=5&q=a%2Fb+c"));
    assert!(requests[0].headers.contains(&("x-trace".to_owned(), "t-1".to_owned())), "{:?}", requests[0].headers);
    assert_eq!(requests[0].body, "");
    assert_eq!((requests[1].method.as_str(), requests[1].body.as_str()), ("PUT", "{\"n\":1}"));

    recorder.clear();
    assert!(recorder.requests().is_empty());
    c.get(format!("{base}/again")).send().await.unwrap();
    assert_eq!(recorder.requests().len(), 1);
}

#[tokio::test]
async fn requests_containing_finds_a_secret_however_it_travelled() {
    let recorder = Recorder::start().await.unwrap();
    let base = recorder.base_url();
    let c = reqwest::Client::new();
    let secret = "s3cr/t+k=y";
    c.get(format!("{base}/clean?page=2")).bearer_auth("something-else").send().await.unwrap();
    c.get(format!("{base}/header")).bearer_auth(secret).send().await.unwrap();
    c.get(format!("{base}/query")).query(&[("api_key", secret)]).send().await.unwrap();
    c.post(format!("{base}/body")).form(&[("client_secret", secret)]).send().await.unwrap();
    c.get(format!("{base}/basic")).basic_auth("user", Some(secret)).send().await.unwrap();

    let targets = |needle: &str| -> Vec<String> {
        let found = recorder.requests_containing(needle).into_iter().map(|r| r.target);
        found.map(|t| t.split('?').next().unwrap_or_default().to_owned()).collect()
    };
    // The query and the form body carry it percent-encoded, the Basic header in base64.
    assert_eq!(targets(secret), ["/header", "/query", "/body", "/basic"]);
    let basic = STANDARD.encode(format!("user:{secret}"));
    assert_eq!(targets(&basic), ["/basic"]);
    assert_eq!(targets("page=2"), ["/clean"]);
    assert!(targets("never-sent").is_empty());
    assert_eq!(recorder.requests().len(), 5);
}

#[tokio::test]
async fn dropping_the_recorder_stops_accepting() {
    let recorder = Recorder::start().await.unwrap();
    let addr = recorder.base_url().trim_start_matches("http://").to_owned();
    drop(recorder);
    // The accept loop sees the drop when it next runs; wait for that, not for a fixed time.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::net::TcpStream::connect(&addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            // Accepted into the backlog, or reset as the listener closed under it: try again.
            _ => {
                assert!(Instant::now() < deadline, "still accepting after the recorder was dropped");
                tokio::task::yield_now().await;
            }
        }
    }
}
