//! GitHub pipelines for the e2e tests: one config shape, the test token, the recorded
//! fixtures, and `run --json` with the token in the environment.

use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;

use crate::{Scratch, show};

/// The token the configs read from `GH_TOKEN`; no output may contain it.
pub const TOKEN: &str = "ghp_e2e_fixture_token_not_real";

/// A recorded fixture of connectors/github/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../connectors/github/fixtures").join(format!("{name}.json"))
}

/// Pipeline `gh`: `stream` of `octo/hello` into `out.db`, with `retry` as the inline keys of
/// `http.retry`, `extra` lines in the source block and `after` lines after the sink block.
pub fn config(base_url: &str, stream: &str, retry: &str, extra: &str, after: &str) -> String {
    format!(
        r#"[pipelines.gh.source]
kind = "github"
token = "${{GH_TOKEN}}"
base_url = "{base_url}"
owner = "octo"
owner_type = "org"
repositories = ["hello"]
streams = ["{stream}"]
http = {{ retry = {{ {retry} }} }}
{extra}

[pipelines.gh.sink]
kind = "sqlite"
path = "out.db"
{after}
"#
    )
}

/// `dovetail run --json` with `GH_TOKEN` set, on a blocking thread; panics (showing the
/// output) when stdout is not a report.
pub async fn run(s: &Scratch) -> (Output, Value) {
    let mut cmd = s.cmd(&["run", "--json"]);
    cmd.env("GH_TOKEN", TOKEN);
    let out = crate::vendor::output_async(cmd).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let report =
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not a JSON report ({e}):\n{}", show(&out)));
    (out, report)
}
