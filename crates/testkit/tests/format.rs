//! The fixture file format: the README's example parses, files round-trip byte for byte,
//! and malformed files are refused; redaction leaves no secret in a saved file.

use dovetail_testkit::{Body, Fixture, Redactor};
use serde_json::json;

/// The first ```json block of the README: the documented format stays true.
fn readme_example() -> String {
    let readme = include_str!("../README.md");
    let start = readme.find("```json\n").expect("README has a json example") + "```json\n".len();
    let len = readme[start..].find("```").unwrap();
    readme[start..start + len].to_owned()
}

#[test]
fn the_readme_example_is_a_valid_fixture() {
    let f = Fixture::from_json(&readme_example()).unwrap();
    assert!(f.exchanges.len() >= 2);
    assert_eq!(f.exchanges[0].request.headers["authorization"], "[redacted]");
}

#[test]
fn files_round_trip_byte_for_byte_with_a_stable_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/fixtures/scenario.json");
    let f = Fixture::from_json(&readme_example()).unwrap();
    f.save(&path).unwrap();
    let first = std::fs::read_to_string(&path).unwrap();
    let loaded = Fixture::load(&path).unwrap();
    assert_eq!(loaded, f);
    loaded.save(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
    assert!(first.ends_with("}\n") && first.contains("\n  \"exchanges\": ["), "pretty-printed");
    // Keys are sorted inside bodies too, whatever order the server sent.
    let b = Body::from_bytes(br#"{"z": 1, "a": {"y": 2, "b": 3}}"#);
    assert_eq!(b.to_bytes().unwrap(), r#"{"a":{"b":3,"y":2},"z":1}"#);
}

#[test]
fn bodies_are_json_text_or_base64() {
    assert_eq!(Body::from_bytes(b""), Body::default());
    assert_eq!(Body::from_bytes(b"[1, {\"a\": true}]"), Body::json(json!([1, {"a": true}])));
    assert_eq!(Body::from_bytes(b"[12345678901234567890.5]").to_bytes().unwrap(), "[12345678901234567890.5]");
    assert_eq!(Body::from_bytes(b"12345678901234567890123").to_bytes().unwrap(), "12345678901234567890123");
    assert_eq!(Body::from_bytes(b"plain text"), Body::text("plain text"));
    let bin = Body::from_bytes(&[0xff, 0x00, 0xfe]);
    assert_eq!(bin.body_base64.as_deref(), Some("/wD+"));
    assert_eq!(bin.to_bytes().unwrap().as_ref(), &[0xff, 0x00, 0xfe]);
}

#[test]
fn malformed_fixtures_are_refused() {
    let exchange = |extra: serde_json::Value| {
        let mut req = json!({"method": "GET", "path": "/"});
        req.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({"exchanges": [{"request": req, "response": {"status": 200}}]}).to_string()
    };
    assert!(Fixture::from_json(&exchange(json!({}))).is_ok());
    let unknown = Fixture::from_json(&exchange(json!({"methd": "GET"}))).unwrap_err().to_string();
    assert!(unknown.contains("unknown field `methd`"), "{unknown}");
    let two = Fixture::from_json(&exchange(json!({"body": {}, "body_text": "x"}))).unwrap_err().to_string();
    assert!(two.contains("more than one of body"), "{two}");
    let v2 = Fixture::from_json(r#"{"version": 2, "exchanges": []}"#).unwrap_err().to_string();
    assert!(v2.contains("unsupported fixture version 2"), "{v2}");
    let missing = Fixture::load("/nonexistent/fixture.json").unwrap_err().to_string();
    assert!(missing.contains("/nonexistent/fixture.json"), "{missing}");
}

#[test]
fn redaction_leaves_no_secret_in_the_file() {
    let mut f = Fixture::from_json(
        &json!({"exchanges": [
            {
                "request": {
                    "method": "GET",
                    "path": "/v1/items",
                    "query": [["api_key", "qk-11112222"], ["limit", "2"], ["author", "octocat"]],
                    "headers": {
                        "authorization": "Bearer sk_live_abcdef123456",
                        "cookie": "session=c00kie-value",
                        "x-api-key": "xk-99998888",
                        "x-api-version": "2024-06-01",
                        "idempotency-key": "idem-1",
                    },
                },
                "response": {
                    "status": 200,
                    "headers": {
                        "set-cookie": "session=new-c00kie; HttpOnly",
                        "www-authenticate": "Bearer realm=\"api\"",
                        "link": "<{{base_url}}/v1/items?page=2&access_token=sk_live_abcdef123456>; rel=\"next\"",
                    },
                    "body": {
                        "access_token": "at-1234567890",
                        "echo": "your token is at-1234567890",
                        "author": {"login": "octo"},
                        "token_type": "Bearer",
                        "clientSecret": {"nested": "cs-object-secret"},
                        "refresh_token": null,
                        "note": "the password is hunter2!",
                    },
                },
            },
            {
                "request": {
                    "method": "POST",
                    "path": "/oauth/token",
                    "headers": {"content-type": "application/x-www-form-urlencoded"},
                    "body_text": "grant_type=client_credentials&client_id=cid&client_secret=shh%2Fsecret",
                },
                "response": {"status": 200, "body_text": "token=plain-text-secret&mode=hunter2"},
            },
            {
                "request": {"method": "POST", "path": "/hooks/hunter2", "body": {"password": 12345, "name": "n"}},
                "response": {"status": 201},
            },
        ]})
        .to_string(),
    )
    .unwrap();
    Redactor::new().secret("hunter2").secret("plain-text-secret").redact(&mut f);
    let text = f.to_json();
    for secret in [
        "qk-11112222",
        "sk_live_abcdef123456",
        "c00kie",
        "xk-99998888",
        "at-1234567890",
        "cs-object-secret",
        "hunter2",
        "shh",
        "plain-text-secret",
        "12345",
    ] {
        assert!(!text.contains(secret), "`{secret}` is in the file:\n{text}");
    }
    for kept in
        ["octocat", "octo", "2024-06-01", "idem-1", "Bearer realm", "client_credentials", "cid", "rel=\\\"next\\\""]
    {
        assert!(text.contains(kept), "`{kept}` was redacted:\n{text}");
    }
    let x = &f.exchanges[0];
    assert_eq!(x.request.headers["authorization"], "[redacted]");
    assert_eq!(x.request.query[0], ("api_key".to_owned(), "[redacted]".to_owned()));
    assert_eq!(x.response.headers["link"], "<{{base_url}}/v1/items?page=2&access_token=[redacted]>; rel=\"next\"");
    let body = x.response.body.body.as_ref().unwrap();
    assert_eq!(body["echo"], "your token is [redacted]", "a value learned under a secret name is scrubbed elsewhere");
    assert_eq!(body["refresh_token"], serde_json::Value::Null, "null is not a secret");
    assert_eq!(
        f.exchanges[1].request.body.body_text.as_deref(),
        Some("grant_type=client_credentials&client_id=cid&client_secret=[redacted]")
    );
    assert_eq!(f.exchanges[2].request.path, "/hooks/[redacted]");
    // Redacting twice changes nothing.
    let again = {
        let mut g = f.clone();
        Redactor::new().redact(&mut g);
        g
    };
    assert_eq!(again, f);
}
