//! Issue 6, "done when": drift under `pause` through the real binary. The fake vendor turns
//! `price` into a string after record 150; the stream pauses at its last checkpoint, stays
//! paused, `dovetail drift accept` takes the change into the baseline and unpauses it; the
//! SQLite column made for numbers then pauses the stream again (`column_type`), and a second
//! accept lets the next run deliver every record.

use dovetail_e2e::vendor::{RestPipeline, RestStream, count, row_count};
use dovetail_e2e::{Scratch, show};
use dovetail_fake_vendor::{FakeVendor, Faults, VendorConfig};
use serde_json::Value;

const RECORDS: u64 = 300;

async fn drift_list(s: &Scratch) -> Vec<Value> {
    let out = s.run_async(&["drift", "--json"]).await;
    assert!(out.status.success(), "{}", show(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn accept(s: &Scratch) -> String {
    let out = s.run_async(&["drift", "accept", "vendor", "items"]).await;
    assert!(out.status.success(), "{}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drift_under_pause_stops_the_stream_until_drift_accept_and_the_next_run_delivers() {
    let faults = Faults { drift_after: Some(150), ..Faults::default() };
    let vendor = FakeVendor::start(VendorConfig { records: RECORDS, faults, ..VendorConfig::default() }).await.unwrap();
    let s = Scratch::new();
    RestPipeline::new(&vendor.base_url())
        .stream(RestStream::items_cursor(100))
        .pipeline_line("batch_size = 100")
        .pipeline_line("drift = { default = \"pause\" }")
        .write_to(&s);

    // Run 1: page 1 (ids 1-100) becomes the baseline and is delivered; page 2 has the drift.
    let (out, report) = s.run_json_async(&[]).await;
    assert_eq!(out.status.code(), Some(9), "a drift pause exits with the data code: {}", show(&out));
    assert_eq!(
        (report["outcome"].as_str(), report["streams"]["items"]["outcome"].as_str()),
        (Some("paused"), Some("paused"))
    );
    let why = report["streams"]["items"]["paused"].as_str().unwrap_or_default();
    assert!(
        why.contains("/price: type_changed (expected number, observed string)") && why.contains("item 150"),
        "{why}"
    );
    assert_eq!((count(&report, "items", "written"), row_count(&s, "items")), (100, 100));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warned = stderr.lines().filter(|l| l.contains("WARN") && l.contains("response shape drifted")).count();
    assert_eq!(warned, 1, "one warn line per path: {stderr}");
    let status = String::from_utf8_lossy(&s.run_async(&["status"]).await.stdout).into_owned();
    assert!(status.contains("paused streams") && status.contains("drift"), "{status}");
    let events = drift_list(&s).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!((events[0]["path"].as_str(), events[0]["change"].as_str()), (Some("/price"), Some("type_changed")));

    // Run 2: still paused, nothing read.
    let (out, report) = s.run_json_async(&[]).await;
    assert_eq!(report["streams"]["items"]["outcome"], "paused", "{}", show(&out));
    assert_eq!((count(&report, "items", "read"), row_count(&s, "items")), (0, 100));
    // ... and the run says so every time, with what lifts the pause.
    assert_eq!((out.status.code(), report["outcome"].as_str()), (Some(9), Some("paused")), "{}", show(&out));
    let next = report["next_step"].as_str().unwrap_or_default();
    assert!(next.contains("dovetail drift accept vendor items"), "{report:#}");

    // Accept: the baseline takes strings at /price and the stream is unpaused. The sink's
    // column was made for numbers, so the next run pauses for `column_type` drift instead.
    let said = accept(&s).await;
    assert!(said.contains("1 change(s) taken in") && said.contains("no longer paused"), "{said}");
    let (out, report) = s.run_json_async(&[]).await;
    let why = report["streams"]["items"]["paused"].as_str().unwrap_or_default();
    assert!(why.contains("/price: column_type (expected number, observed string)"), "{why}\n{}", show(&out));
    assert_eq!(report["outcome"], "paused");
    let events = drift_list(&s).await;
    let open: Vec<&Value> = events.iter().filter(|e| e["accepted_at"].is_null()).collect();
    assert_eq!(open.len(), 1, "{events:#?}");
    assert_eq!((open[0]["path"].as_str(), open[0]["change"].as_str()), (Some("/price"), Some("column_type")));

    // Accept again: the column takes strings; the next run delivers the rest, exit 0.
    let said = accept(&s).await;
    assert!(said.contains("1 sink column change(s) take effect"), "{said}");
    let (out, report) = s.run_json_async(&[]).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
    assert_eq!(row_count(&s, "items"), RECORDS);
    let db = s.db("out.db");
    let strings: i64 =
        db.query_row("SELECT count(*) FROM items WHERE id > 150 AND typeof(price) = 'text'", [], |r| r.get(0)).unwrap();
    assert_eq!(strings, (RECORDS - 150) as i64, "the drifted prices are stored as they came");
    assert!(drift_list(&s).await.iter().all(|e| !e["accepted_at"].is_null()));
}
