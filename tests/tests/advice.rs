//! Issue 20, "advice keyed on the cause": every `what to do:` line through the binary is
//! chosen by what happened, not only by the error's kind — a drift pause names `drift
//! accept`, an unknown explain stream or key says how to find one, a host that does not
//! answer `check` names its `base_url` — and the verbs that only read state work while the
//! pipelines' `${ENV}` secrets are unset.

use dovetail_e2e::vendor::{RestPipeline, RestStream};
use dovetail_e2e::{Scratch, show};
use dovetail_fake_vendor::{AuthMode, FakeVendor, Faults, VendorConfig};

const TOKEN: &str = "tok-e2e-advice-41c2"; // tidy: not-secret (a fake credential)

/// The `what to do:` line of an output (stdout or stderr), without its label.
fn what_to_do(out: &std::process::Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let line = text.lines().find_map(|l| l.split_once("what to do: ").map(|(_, a)| a.to_owned()));
    line.unwrap_or_else(|| panic!("no `what to do:` line:\n{}", show(out)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drift_pause_says_drift_accept_in_the_run_and_in_status() {
    let faults = Faults { drift_after: Some(50), ..Faults::default() };
    let vendor = FakeVendor::start(VendorConfig { records: 100, faults, ..VendorConfig::default() }).await.unwrap();
    let s = Scratch::new();
    RestPipeline::new(&vendor.base_url())
        .stream(RestStream::items_cursor(40))
        .pipeline_line("batch_size = 40")
        .pipeline_line("drift = { default = \"pause\" }")
        .write_to(&s);
    let (out, report) = s.run_json_async(&[]).await;
    assert_eq!(report["outcome"], "paused", "{}", show(&out));
    let next = report["next_step"].as_str().unwrap_or_default().to_owned();
    assert!(next.contains("dovetail drift accept vendor items"), "{next}");
    assert!(!next.contains("dead-letters"), "no dead letter was written: {next}");
    let status = s.run_async(&["status"]).await;
    assert!(status.status.success(), "{}", show(&status));
    insta::assert_snapshot!("drift_pause_status", what_to_do(&status));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_verbs_need_no_secrets_and_explain_says_how_to_find_a_stream_or_key() {
    let auth = AuthMode::Bearer { token: TOKEN.into() };
    let vendor = FakeVendor::start(VendorConfig { records: 3, auth, ..VendorConfig::default() }).await.unwrap();
    let s = Scratch::new();
    RestPipeline::new(&vendor.base_url())
        .auth("{ type = \"bearer\", token = \"${ADVICE_VENDOR_TOKEN}\" }")
        .stream(RestStream::items_cursor(10))
        .write_to(&s);
    let mut run = s.cmd(&["run"]);
    run.env("ADVICE_VENDOR_TOKEN", TOKEN);
    let out = output(run).await;
    assert!(out.status.success(), "{}", show(&out));

    // The token is unset from here on: reading state does not need it.
    for args in [
        &["status"][..],
        &["dead-letters", "list"],
        &["drift"],
        &["explain", "vendor", "items", "2"],
        &["state", "show", "vendor"],
    ] {
        let out = output(s.cmd(args)).await;
        assert!(out.status.success(), "`dovetail {}` without the secret: {}", args.join(" "), show(&out));
    }

    let out = output(s.cmd(&["explain", "vendor", "itemz", "2"])).await;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    insta::assert_snapshot!("explain_unknown_stream", what_to_do(&out));
    let out = output(s.cmd(&["explain", "vendor", "items", "999"])).await;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    insta::assert_snapshot!("explain_unknown_key", what_to_do(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_against_a_host_that_does_not_answer_asks_whether_base_url_is_reachable() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let s = Scratch::new();
    let toml = RestPipeline::new(&format!("http://127.0.0.1:{port}"))
        .http("{ retry = { base_delay_ms = 1, max_delay_ms = 2, max_elapsed_ms = 50 } }")
        .stream(RestStream::items_cursor(10))
        .toml();
    s.write("dovetail.toml", &toml);
    let out = output(s.cmd(&["check"])).await;
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    let config = s.path("dovetail.toml").display().to_string();
    let advice = what_to_do(&out).replace(&port.to_string(), "PORT").replace(&config, "dovetail.toml");
    insta::assert_snapshot!("check_host_down", advice);
}

async fn output(cmd: std::process::Command) -> std::process::Output {
    dovetail_e2e::vendor::output_async(cmd).await
}
