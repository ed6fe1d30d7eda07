//! The connector contract suite (dovetail-testkit) over the GitHub fixtures.
//! `cargo xtask contract github` runs it and prints the table.

use dovetail_core::BuildCx;
use dovetail_core::connector::SourceConnector;
use dovetail_github::{GithubConfig, GithubSource};
use dovetail_testkit::{Skip, SourceContract};
use serde_json::{Value, json};

const TOKEN: &str = "ghp_fixture_token_not_real";

fn build(base_url: &str, overrides: Value) -> Result<GithubSource, dovetail_core::Error> {
    let mut cfg = json!({
        "token": TOKEN,
        "base_url": base_url,
        "owner": "octo",
        "owner_type": "org",
        "repositories": ["hello"],
        "start_date": "2011-01-01T00:00:00Z",
        "http": { "retry": { "max_attempts": 3, "base_delay_ms": 1, "max_delay_ms": 2 } },
    });
    for (k, v) in overrides.as_object().into_iter().flatten() {
        cfg[k] = v.clone();
    }
    let config: GithubConfig = serde_json::from_value(cfg).map_err(|e| dovetail_core::Error::config(e.to_string()))?;
    GithubSource::build(config, &BuildCx::default())
}

#[tokio::test]
async fn github_honours_the_connector_contract() {
    SourceContract::http("github", |url| build(url, json!({})))
        .fixtures_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"))
        .snapshots_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots"))
        .stream_with("repositories", "repositories.json", |url| {
            build(url, json!({ "owner_type": "auto", "repositories": [] }))
        })
        .stream_with("issues", "issues.json", |url| build(url, json!({ "repositories": ["hello", "octo/world"] })))
        .stream("pull_requests", "pull_requests.json")
        .restarts_on_resume("pull_requests")
        .stream("issue_comments", "issue_comments.json")
        .rerun("issue_comments", "issue_comments_rerun.json")
        .stream("commits", "commits.json")
        .rerun("commits", "commits_rerun.json")
        .stream("releases", "releases.json")
        .stream("workflow_runs", "workflow_runs.json")
        .rerun("workflow_runs", "workflow_runs_rerun.json")
        .scenario("unauthorized", "releases", "bad_token.json")
        .scenario("rate_limited_then_ok", "releases", "secondary_rate_limit.json")
        .scenario("server_error_then_ok", "releases", "releases_server_error.json")
        .skip(
            "refreshes_on_401",
            Skip::VendorCannot(
                "GitHub tokens (personal access, app installation) are static: nothing to refresh".into(),
            ),
        )
        .version_header("x-github-api-version")
        .secret(TOKEN)
        .example_config::<GithubConfig>(json!({
            "token": "${GITHUB_TOKEN}", "owner": "octo-org", "repositories": ["hello", "octo-org/world"],
            "streams": ["issues", "pull_requests"], "start_date": "2024-01-01T00:00:00Z",
            "http": { "retry": { "max_attempts": 6, "max_elapsed_ms": 600000 } },
        }))
        .run()
        .await;
}
