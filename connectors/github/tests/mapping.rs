//! Snapshots of the flat rows the fixtures map to, of the stream schemas, and config checks.

use std::path::PathBuf;

use dovetail_core::{BuildCx, Source, SourceConnector};
use dovetail_github::mapping::{map, schema};
use dovetail_github::{GithubConfig, GithubSource, GithubStream};
use serde_json::{Value, json};

/// JSON as text: `insta`'s own serializer would show `arbitrary_precision` numbers as
/// objects, so snapshots hold serde_json's rendering (numbers exact).
fn pretty(v: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(v).unwrap()
}

/// Every 200 body's items of a fixture, with the repository its request path names.
fn fixture_items(name: &str) -> Vec<(String, Value)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(format!("{name}.json"));
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for ex in fixture["exchanges"].as_array().unwrap() {
        if ex["response"]["status"] != 200 {
            continue;
        }
        let parts: Vec<&str> = ex["request"]["path"].as_str().unwrap().split('/').collect();
        let repo = if parts.get(1) == Some(&"repos") { format!("{}/{}", parts[2], parts[3]) } else { String::new() };
        let body = &ex["response"]["body"];
        let items = body.get("workflow_runs").unwrap_or(body).as_array().unwrap();
        out.extend(items.iter().map(|i| (repo.clone(), i.clone())));
    }
    out
}

#[test]
fn fixture_objects_map_to_flat_rows() {
    for stream in GithubStream::ALL {
        let rows: Vec<Value> =
            fixture_items(stream.name()).iter().map(|(repo, item)| map(stream, repo, item).unwrap()).collect();
        assert!(!rows.is_empty(), "{}", stream.name());
        insta::assert_snapshot!(format!("rows_{}", stream.name()), pretty(&rows));
    }
}

#[test]
fn stream_schemas_are_snapshotted_and_describe_the_rows() {
    for stream in GithubStream::ALL {
        let s = schema(stream);
        let props = s["properties"].as_object().unwrap();
        for (repo, item) in fixture_items(stream.name()) {
            let row = map(stream, &repo, &item).unwrap();
            let keys: Vec<&String> = row.as_object().unwrap().keys().collect();
            assert!(keys.iter().all(|k| props.contains_key(*k)), "{}: {keys:?}", stream.name());
            assert_eq!(keys.len(), props.len(), "{}", stream.name());
        }
        insta::assert_snapshot!(format!("schema_{}", stream.name()), pretty(&s));
    }
}

#[test]
fn the_config_schema_is_snapshotted() {
    insta::assert_snapshot!("config_schema", pretty(&schemars::schema_for!(GithubConfig)));
}

#[test]
fn config_defaults_unknown_keys_and_secrets() {
    let cfg: GithubConfig = serde_json::from_value(json!({ "token": "ghp_secret_value", "owner": "octo" })).unwrap();
    assert_eq!(cfg.base_url, "https://api.github.com");
    assert_eq!(cfg.api_version, "2022-11-28");
    assert!(!format!("{cfg:?}").contains("ghp_secret_value"));
    let src = GithubSource::build(cfg, &BuildCx::default()).unwrap();
    let specs = src.streams();
    assert_eq!(specs.len(), 7);
    let keys: Vec<(String, Vec<String>, Option<String>)> = specs
        .iter()
        .map(|s| {
            let pk = s.primary_key.iter().map(|f| f.as_str().to_owned()).collect();
            (s.name.clone(), pk, s.cursor_field.as_ref().map(|c| c.as_str().to_owned()))
        })
        .collect();
    insta::assert_snapshot!("stream_keys", pretty(&keys));

    let err = serde_json::from_value::<GithubConfig>(json!({ "token": "t", "owner": "o", "repos": [] })).unwrap_err();
    assert!(err.to_string().contains("unknown field `repos`"), "{err}");
    let err = serde_json::from_value::<GithubConfig>(json!({ "token": "t", "owner": "o", "streams": ["gists"] }))
        .unwrap_err();
    assert!(err.to_string().contains("gists"), "{err}");

    for (bad, what) in [
        (json!({ "token": "", "owner": "o" }), "token"),
        (json!({ "token": "t", "owner": "o/r" }), "owner"),
        (json!({ "token": "t", "owner": "o", "repositories": ["a/b/c"] }), "repositories"),
        (json!({ "token": "t", "owner": "o", "repositories": ["a", "o/a"] }), "twice"),
        (json!({ "token": "t", "owner": "o", "start_date": "yesterday" }), "start_date"),
    ] {
        let cfg: GithubConfig = serde_json::from_value(bad).unwrap();
        let err = GithubSource::build(cfg, &BuildCx::default()).unwrap_err();
        assert_eq!(*err.kind(), dovetail_core::ErrorKind::Config);
        assert!(err.to_string().contains(what), "{err}");
    }
    // A base URL that is not http(s) is refused while the config is read.
    for bad in ["api.github.com", "ftp://api.github.com"] {
        let err =
            serde_json::from_value::<GithubConfig>(json!({ "token": "t", "owner": "o", "base_url": bad })).unwrap_err();
        assert!(err.to_string().contains("http://"), "{err}");
    }
}

#[test]
fn a_dead_letter_of_the_source_maps_again_on_replay() {
    let cfg: GithubConfig = serde_json::from_value(json!({ "token": "t", "owner": "octo" })).unwrap();
    let src = GithubSource::build(cfg, &BuildCx::default()).unwrap();
    let (_, item) = fixture_items("releases").remove(0);
    let raw = json!({ "github_repository": "octo/hello", "github_object": item }).to_string();
    let row = src.decode_raw("releases", &raw).unwrap();
    assert_eq!((row["repository"].as_str(), row["tag_name"].as_str()), (Some("octo/hello"), Some("v1.0.0")));
    // A row the engine dead-lettered (after mapping) comes back as it is.
    assert_eq!(src.decode_raw("releases", r#"{"id":1}"#).unwrap(), json!({ "id": 1 }));
    let bad = json!({ "github_repository": "octo/hello", "github_object": { "id": "x" } }).to_string();
    assert_eq!(src.decode_raw("releases", &bad).unwrap_err().path.as_deref(), Some("id"));
}
