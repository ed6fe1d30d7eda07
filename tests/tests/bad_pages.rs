//! Issue 16: a 2xx whose body does not decode is logged as an ERROR with its cause, and the
//! next step says what happened to the page — dead-lettered, or nothing dead-lettered and
//! the stream stopped — instead of pointing at dead letters that do not exist.

use dovetail_e2e::vendor::{RestPipeline, RestStream};
use dovetail_e2e::{Scratch, show};
use dovetail_fake_vendor::{FakeVendor, Faults, VendorConfig};

/// A short retry budget: the malformed page is retried a few times, quickly.
const SHORT_BUDGET: &str = "{ retry = { base_delay_ms = 5, max_delay_ms = 20, max_elapsed_ms = 300 } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_200_is_an_error_with_its_cause_and_no_dead_letter_advice() {
    let faults = Faults { malformed_page: Some(1), ..Faults::default() };
    let vendor = FakeVendor::start(VendorConfig { records: 300, faults, ..VendorConfig::default() }).await.unwrap();
    let s = Scratch::new();
    RestPipeline::new(&vendor.base_url()).http(SHORT_BUDGET).stream(RestStream::items_cursor(100)).write_to(&s);
    let out = s.run_async(&["run"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(9), "{}", show(&out));

    // Every attempt at the page is an ERROR line that says why it did not decode.
    // Only failed attempts are logged at INFO: those with a 200 are the bad page's.
    let bad: Vec<&str> = stderr.lines().filter(|l| l.contains("http attempt") && l.contains("status=200")).collect();
    assert!(!bad.is_empty(), "no attempt line for the bad page:\n{stderr}");
    for line in bad {
        assert!(line.contains(" ERROR ") && line.contains("error="), "not an error with its cause: {line}");
        assert!(line.contains("did not decode"), "{line}");
    }

    // Nothing was dead-lettered, and the advice does not say there was.
    let list = s.run(&["dead-letters", "list", "--json"]);
    assert!(list.status.success(), "{}", show(&list));
    let letters: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(letters.as_array().map(Vec::len), Some(0), "{letters:#}");
    let next = stderr.lines().rfind(|l| l.contains("what to do:")).unwrap_or_default();
    assert!(!next.contains("dead-letters list") && !next.contains("dead-letters replay"), "{next}");
    assert!(next.contains("nothing was dead-lettered"), "{next}");
}
