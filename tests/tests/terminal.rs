//! Issue 20, "a quiet, informative terminal", through the binary: on a terminal (a pty from
//! util-linux `script`) the default shows the progress bars and warnings only, off one the
//! per-request INFO lines stay; every error is printed once; after `run`, the "What
//! happened" story.

use std::process::{Command, Output};

use dovetail_e2e::vendor::{RestPipeline, RestStream, output_async};
use dovetail_e2e::{Scratch, dovetail_bin, show};
use dovetail_fake_vendor::{FakeVendor, Faults, VendorConfig};
use serde_json::json;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// `dovetail --config dovetail.toml ARGS` in a pseudo-terminal 160 columns wide, `RUST_LOG`
/// unset; its stdout is everything the terminal showed (stdout and stderr together).
fn in_pty(s: &Scratch, args: &[&str]) -> Command {
    let quote = |a: &str| format!("'{}'", a.replace('\'', r"'\''"));
    let mut line = format!(
        "stty cols 160 rows 50 2>/dev/null; exec {} --config {}",
        quote(&dovetail_bin().display().to_string()),
        quote(&s.path("dovetail.toml").display().to_string())
    );
    for a in args {
        line.push(' ');
        line.push_str(&quote(a));
    }
    let mut c = Command::new("script");
    c.args(["-qfec", &line, "/dev/null"]).current_dir(s.dir.path());
    c.env_remove("RUST_LOG").env_remove("DOVETAIL_FAILPOINT").env("TERM", "xterm-256color");
    c
}

/// `dovetail ARGS` with stdout and stderr piped (no terminal) and `RUST_LOG` unset.
fn piped(s: &Scratch, args: &[&str]) -> Command {
    let mut c = s.cmd(args);
    c.env_remove("RUST_LOG");
    c
}

/// Everything a run printed, stdout then stderr.
fn all(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A token endpoint that refuses the client (400 `invalid_client`).
async fn refusing_vendor() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_client"})))
        .mount(&server)
        .await;
    server
}

fn oauth_pipeline(base: &str) -> RestPipeline {
    RestPipeline::new(base)
        .auth(&format!(
            "{{ type = \"oauth2_client_credentials\", token_url = \"{base}/oauth/token\", client_id = \"cid\", client_secret = \"wrong\" }}"
        ))
        .stream(RestStream::new("items", "/v1/items").line("records = \"/data\""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_client_error_is_printed_once_on_a_terminal_and_off_one() {
    let server = refusing_vendor().await;
    let s = Scratch::new();
    oauth_pipeline(&server.uri()).write_to(&s);

    let out = output_async(piped(&s, &["run"])).await;
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    let text = all(&out);
    assert_eq!(text.matches("invalid_client").count(), 1, "printed once: {}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("dovetail: pipeline `vendor` failed: auth error"), "{text}");

    let out = output_async(in_pty(&s, &["run"])).await;
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(screen.matches("invalid_client").count(), 1, "printed once on a terminal:\n{screen}");
    assert!(screen.contains("what to do: check client_id, client_secret"), "{screen}");
}

/// Three pages linked by `Link` (the last page says so with `rel="last"`), one retried 503,
/// and a `Deprecation` header: a warning.
async fn paged_vendor() -> MockServer {
    let server = MockServer::start().await;
    let base = server.uri();
    let link = |page: u32| {
        let mut l = Vec::new();
        if page < 3 {
            l.push(format!("<{base}/v1/items?page={}>; rel=\"next\"", page + 1));
        }
        l.push(format!("<{base}/v1/items?page=3>; rel=\"last\""));
        l.join(", ")
    };
    Mock::given(method("GET"))
        .and(path("/v1/items"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    for page in 1..=3u32 {
        let ids = (1..=4u32).map(|i| (page - 1) * 4 + i);
        let records: Vec<_> = ids
            .map(|id| json!({"id": id, "name": if id == 7 { "seven".to_owned() } else { id.to_string() }}))
            .collect();
        let mut answer = ResponseTemplate::new(200)
            .set_body_json(json!({"data": records}))
            .insert_header("link", link(page).as_str());
        if page == 3 {
            answer = answer.insert_header("deprecation", "true");
        }
        let mut mock = Mock::given(method("GET")).and(path("/v1/items"));
        mock = if page == 1 {
            mock.and(wiremock::matchers::query_param_is_missing("page"))
        } else {
            mock.and(query_param("page", page.to_string().as_str()))
        };
        mock.respond_with(answer).with_priority(2).mount(&server).await;
    }
    server
}

fn paged_pipeline(base: &str) -> RestPipeline {
    RestPipeline::new(base).stream(
        RestStream::new("items", "/v1/items")
            .line("records = \"/data\"")
            .line("pagination = { type = \"link_header\" }"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_the_default_shows_bars_and_warnings_only_and_off_one_the_info_lines_stay() {
    let server = paged_vendor().await;
    let s = Scratch::new();
    paged_pipeline(&server.uri()).write_to(&s);

    let out = output_async(in_pty(&s, &["run"])).await;
    let screen = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{screen}");
    assert!(screen.contains("vendor marked this endpoint deprecated") && screen.contains("WARN"), "{screen}");
    assert!(!screen.contains("INFO"), "no INFO line at the default on a terminal:\n{screen}");
    assert!(!screen.contains("http request") && !screen.contains("http attempt"), "{screen}");
    let counts = "12 read, 12 written, 0 unchanged, 0 before-cursor, 0 deleted, 0 dead-lettered";
    assert!(screen.contains(counts), "the bar counts what the table counts:\n{screen}");
    assert!(screen.contains("3/3 pages, ETA"), "the `rel=\"last\"` link gives the bar a total:\n{screen}");
    // The bar's HTTP line is the table's: the same retries and the same wait.
    let table = screen.lines().find(|l| l.contains("source http:")).unwrap_or_else(|| panic!("{screen}"));
    let figures = table.trim().trim_start_matches("source http: ");
    assert!(figures.contains("1 retry (503 ×1) waiting"), "{table}");
    assert!(screen.matches(figures).count() >= 2, "the bar and the table agree on `{figures}`:\n{screen}");

    // `-v` brings the per-request lines back.
    let out = output_async(in_pty(&s, &["-v", "run"])).await;
    let screen = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(screen.contains("INFO") && screen.contains("http request"), "{screen}");

    // Off a terminal the default stays INFO: one line per request; the retried 503 is DEBUG.
    let s = Scratch::new();
    paged_pipeline(&server.uri()).write_to(&s);
    let out = output_async(piped(&s, &["run"])).await;
    assert!(out.status.success(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().filter(|l| l.contains("INFO") && l.contains("http request")).count(), 3, "{err}");
    assert!(!err.contains("http attempt") && !err.contains("status=503"), "the retry is DEBUG:\n{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_run_the_story_tells_the_retries_and_the_dead_letter_and_quiet_leaves_it_out() {
    let server = paged_vendor().await;
    let s = Scratch::new();
    // Record 7's `name` is not an integer: one dead letter.
    paged_pipeline(&server.uri()).option("items", "mapping = { cast = { name = \"integer\" } }").write_to(&s);
    let out = output_async(piped(&s, &["run"])).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", show(&out));
    let story = &stdout[stdout.find("\nWhat happened:").unwrap_or_else(|| panic!("no story:\n{stdout}"))..];
    let scratch = std::fs::canonicalize(s.dir.path()).unwrap();
    let story = story.replace(&scratch.display().to_string(), "[scratch]").replace(&server.uri(), "[vendor]");
    insta::assert_snapshot!("story_with_a_retry_and_a_dead_letter", story);

    let out = output_async(piped(&s, &["-q", "run"])).await;
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("pipeline `vendor`") && !stdout.contains("What happened"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_reads_connection_dropped() {
    let faults = Faults { drop_every: 3, ..Faults::default() };
    let vendor = FakeVendor::start(VendorConfig { records: 20, faults, ..VendorConfig::default() }).await.unwrap();
    let s = Scratch::new();
    RestPipeline::new(&vendor.base_url()).stream(RestStream::items_cursor(5)).write_to(&s);
    let out = s.run_async(&["run"]).await;
    assert!(out.status.success(), "{}", show(&out));
    assert!(vendor.stats().dropped > 0, "{:?}", vendor.stats());
    let text = all(&out);
    assert!(text.contains("(connection dropped ×"), "the summary names the cause:\n{text}");
    assert!(
        text.contains("more attempt (connection dropped ×1).") || text.contains("more attempts (connection dropped ×"),
        "the story too:\n{text}"
    );
    assert!(!text.contains("transport error") && !text.contains("SendRequest"), "{text}");
}
