//! Issue 20: `dovetail state show PIPELINE [STREAM] [--json]` prints each stream's checkpoint
//! and cursor, read-only: before the first run it says "no state yet" and creates nothing.

use dovetail_e2e::vendor::{RestPipeline, RestStream, output_async};
use dovetail_e2e::{Scratch, show};
use dovetail_fake_vendor::{FakeVendor, VendorConfig};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_show_prints_each_streams_checkpoint_and_creates_no_state() {
    let vendor = FakeVendor::start(VendorConfig { records: 25, ..VendorConfig::default() }).await.unwrap();
    let s = Scratch::new();
    RestPipeline::new(&vendor.base_url()).stream(RestStream::items_cursor(10).incremental()).write_to(&s);

    let out = output_async(s.cmd(&["state", "show", "vendor"])).await;
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("no state yet at "), "{}", show(&out));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("migration"), "nothing migrated: {}", show(&out));
    assert!(!s.path(".dovetail").exists(), "state show created the state folder");

    let out = output_async(s.cmd(&["run"])).await;
    assert!(out.status.success(), "{}", show(&out));
    let out = output_async(s.cmd(&["state", "show", "vendor", "items"])).await;
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let row = text.lines().find(|l| l.starts_with("items")).unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains("complete"), "{text}");

    let out = output_async(s.cmd(&["state", "show", "vendor", "--json"])).await;
    assert!(out.status.success(), "{}", show(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cp = &doc["streams"]["items"]["checkpoint"];
    assert_eq!(cp["pass_complete"], true, "{doc:#}");
    assert!(cp["max"]["value"].is_string() || cp["max"]["value"].is_number(), "a cursor max: {doc:#}");

    let out = output_async(s.cmd(&["state", "show", "vendor", "itemz"])).await;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
}
