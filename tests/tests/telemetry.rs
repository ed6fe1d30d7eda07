//! Issue 20, "machine-friendly telemetry": under `--log-format json` every stderr line is
//! JSON — the final error with its kind, next step and exit code included — and the HTTP
//! exchange lines carry the pipeline, run id and stream of the run that made them.

use dovetail_e2e::vendor::{RestPipeline, RestStream, output_async};
use dovetail_e2e::{Scratch, show};
use dovetail_fake_vendor::{FakeVendor, VendorConfig};
use serde_json::Value;

/// Every stderr line as JSON; panics on a line that is not.
fn json_lines(out: &std::process::Output) -> Vec<Value> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{}", show(out))))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_final_error_is_one_json_object_with_its_kind_next_step_and_exit_code() {
    let s = Scratch::new();
    let out = output_async(s.cmd(&["--log-format", "json", "run"])).await;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let lines = json_lines(&out);
    let last = lines.last().unwrap_or_else(|| panic!("no stderr: {}", show(&out)));
    let f = &last["fields"];
    assert_eq!(
        (last["level"].as_str(), f["kind"].as_str(), f["exit_code"].as_i64()),
        (Some("ERROR"), Some("config"), Some(3))
    );
    assert!(f["message"].as_str().unwrap_or_default().contains("cannot read config file"), "{last}");
    assert!(f["what_to_do"].as_str().unwrap_or_default().contains("dovetail init"), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_exchange_lines_name_the_pipeline_run_and_stream() {
    let vendor = FakeVendor::start(VendorConfig { records: 30, ..VendorConfig::default() }).await.unwrap();
    let s = Scratch::new();
    RestPipeline::new(&vendor.base_url()).stream(RestStream::items_cursor(10)).write_to(&s);
    let out = output_async(s.cmd(&["--log-format", "json", "run"])).await;
    assert!(out.status.success(), "{}", show(&out));
    let requests: Vec<Value> =
        json_lines(&out).into_iter().filter(|l| l["fields"]["message"] == "http request").collect();
    assert!(requests.len() >= 3, "{}", show(&out));
    for r in &requests {
        let spans = r["spans"].as_array().unwrap_or_else(|| panic!("no spans: {r}"));
        let field = |name: &str| spans.iter().find_map(|sp| sp.get(name).cloned());
        assert_eq!(field("pipeline"), Some(Value::from("vendor")), "{r}");
        assert_eq!(field("stream"), Some(Value::from("items")), "{r}");
        assert_eq!(field("run_id"), Some(Value::from(1)), "{r}");
    }
}

/// A periodic `progress` line's counters are JSON numbers, not strings, so a log pipeline can
/// sum and chart them without parsing `"1894/s"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_lines_carry_their_counters_as_numbers() {
    let vendor = FakeVendor::start(VendorConfig { records: 60, ..VendorConfig::default() }).await.unwrap();
    let s = Scratch::new();
    RestPipeline::new(&vendor.base_url()).stream(RestStream::items_cursor(10)).write_to(&s);
    let mut cmd = s.cmd(&["--log-format", "json", "run"]);
    cmd.env("DOVETAIL_PROGRESS_SECS", "0.000001");
    let out = output_async(cmd).await;
    assert!(out.status.success(), "{}", show(&out));
    let progress: Vec<Value> = json_lines(&out).into_iter().filter(|l| l["fields"]["message"] == "progress").collect();
    let last = progress.last().unwrap_or_else(|| panic!("no progress line: {}", show(&out)));
    let f = &last["fields"];
    for field in ["records_per_s", "read", "written", "unchanged", "dead_lettered", "http_requests", "http_retries"] {
        assert!(f[field].is_u64(), "`{field}` is a number: {last}");
    }
    assert_eq!(f["read"].as_u64(), Some(60), "{last}");
    assert!(f["http_requests"].as_u64().is_some_and(|n| n >= 6), "{last}");
}
