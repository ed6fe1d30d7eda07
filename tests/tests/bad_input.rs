//! Issue 19, "Bad input, end to end": a matrix of broken inputs through the `dovetail`
//! binary. Each gives a dead letter naming its file and line, or a clear error with its exit
//! code — never a panic — and the good records around it still arrive. Files → SQLite for
//! the file cases (one stream per case in one pipeline, so one run covers them), a scripted
//! vendor (wiremock) for the HTTP cases.

use std::io::Write;

use dovetail_e2e::vendor::{RestPipeline, RestStream};
use dovetail_e2e::{Scratch, show};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Two good records, ids `a` and `b`, one JSON object a line.
const GOOD: &str = "{\"id\": \"a\", \"n\": 1}\n{\"id\": \"b\", \"n\": 2}\n";

/// Bytes that are not UTF-8 and not JSON: the stream fails only when no good record is left.
fn file_cases() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut latin1 = GOOD.as_bytes().to_vec();
    latin1.extend_from_slice(b"{\"id\": \"c\", \"city\": \"Z\xfcrich\"}\n");
    let mut bad_utf8 = b"{\"id\": \"c\", \"x\": \"\xff\xfe\xc0\"}\n".to_vec();
    bad_utf8.extend_from_slice(GOOD.as_bytes());
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(GOOD.as_bytes());
    let deep = format!("{{\"id\": \"c\", \"deep\": {}{}}}\n", "[".repeat(100_000), "]".repeat(100_000));
    vec![
        ("latin1", "jsonl", latin1),
        ("bad_utf8", "jsonl", bad_utf8),
        ("bom", "jsonl", bom),
        ("deep", "jsonl", format!("{GOOD}{deep}").into_bytes()),
        ("huge_number", "jsonl", format!("{GOOD}{{\"id\": \"c\", \"n\": 1e400}}\n").into_bytes()),
        ("duplicate_keys", "jsonl", format!("{GOOD}{{\"id\": \"c\", \"n\": 1, \"n\": 2}}\n").into_bytes()),
        ("ragged", "csv", b"id,n\na,1\nb,2,extra\nc\nd,4\n".to_vec()),
    ]
}

/// A files → SQLite pipeline `bad` with one stream per `(name, format)`.
fn files_config(streams: &[(&str, &str)]) -> String {
    let mut t = String::from("[pipelines.bad]\n[pipelines.bad.source]\nkind = \"files\"\n");
    for (name, ext) in streams {
        t.push_str(&format!(
            "[[pipelines.bad.source.streams]]\nname = \"{name}\"\npath = \"{name}.{ext}\"\nprimary_key = [\"id\"]\n"
        ));
    }
    t.push_str("[pipelines.bad.sink]\nkind = \"sqlite\"\npath = \"out.db\"\n");
    t
}

fn ids(scratch: &Scratch, table: &str) -> Vec<String> {
    let db = scratch.db("out.db");
    let mut stmt = db.prepare(&format!("SELECT id FROM \"{table}\" ORDER BY id")).unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

fn dead_letters(scratch: &Scratch) -> Vec<Value> {
    let out = scratch.run(&["dead-letters", "list", "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    serde_json::from_slice(&out.stdout).expect("dead letters as JSON")
}

/// The reasons of the dead letters of `stream`.
fn reasons(letters: &[Value], stream: &str) -> Vec<String> {
    letters
        .iter()
        .filter(|d| d["stream"] == stream)
        .map(|d| d["reason"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn no_panic(out: &std::process::Output) {
    let text = show(out);
    assert!(!text.contains("panicked") && !text.contains("RUST_BACKTRACE"), "{text}");
}

#[test]
fn broken_files_dead_letter_their_lines_and_the_good_records_arrive() {
    let scratch = Scratch::new();
    let cases = file_cases();
    for (name, ext, bytes) in &cases {
        std::fs::write(scratch.path(&format!("{name}.{ext}")), bytes).unwrap();
    }
    let streams: Vec<(&str, &str)> = cases.iter().map(|(n, e, _)| (*n, *e)).collect();
    scratch.write("dovetail.toml", &files_config(&streams));
    let (out, report) = scratch.run_json(&[]);
    no_panic(&out);
    assert!(out.status.success(), "{}", show(&out));
    let letters = dead_letters(&scratch);
    let dead = |s: &str| reasons(&letters, s);

    assert_eq!(ids(&scratch, "bom"), ["a", "b"], "a BOM is not part of the first record");
    assert!(dead("bom").is_empty(), "{:?}", dead("bom"));

    assert_eq!(ids(&scratch, "latin1"), ["a", "b"]);
    assert_eq!(dead("latin1"), ["latin1.jsonl line 3: invalid UTF-8 at byte 23"]);
    assert_eq!(ids(&scratch, "bad_utf8"), ["a", "b"]);
    assert_eq!(dead("bad_utf8"), ["bad_utf8.jsonl line 1: invalid UTF-8 at byte 19"]);

    assert_eq!(ids(&scratch, "deep"), ["a", "b"]);
    let deep = dead("deep");
    assert!(deep.len() == 1 && deep[0].starts_with("deep.jsonl line 3: invalid JSON: recursion limit"), "{deep:?}");

    // 1e400 has no f64: kept exactly as written, never infinity or null.
    assert_eq!(ids(&scratch, "huge_number"), ["a", "b", "c"], "{report}");
    let n: String =
        scratch.db("out.db").query_row("SELECT n FROM huge_number WHERE id = 'c'", [], |r| r.get(0)).unwrap();
    assert!(n == "1e400" || n == "1e+400", "{n}");

    assert_eq!(ids(&scratch, "duplicate_keys"), ["a", "b"]);
    assert_eq!(
        dead("duplicate_keys"),
        ["duplicate_keys.jsonl line 3: invalid JSON: duplicate key `n` at line 1 column 23"]
    );

    assert_eq!(ids(&scratch, "ragged"), ["a", "d"]);
    let ragged = dead("ragged");
    assert_eq!(ragged.len(), 2, "{ragged:?}");
    assert!(ragged[0].starts_with("ragged.csv line 3: expected 2 fields (id,n), found 3"), "{ragged:?}");
    assert!(ragged[1].starts_with("ragged.csv line 4: expected 2 fields (id,n), found 1"), "{ragged:?}");
}

#[test]
fn utf16_files_are_refused_by_name_and_encoding() {
    for (ext, text) in [("jsonl", GOOD), ("csv", "id,n\na,1\n")] {
        let scratch = Scratch::new();
        let mut bytes = vec![0xFF, 0xFE];
        bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        std::fs::write(scratch.path(&format!("wide.{ext}")), bytes).unwrap();
        scratch.write("dovetail.toml", &files_config(&[("wide", ext)]));
        let (out, report) = scratch.run_json(&[]);
        no_panic(&out);
        assert_eq!(out.status.code(), Some(9), "{}", show(&out));
        let error = report["streams"]["wide"]["error"].as_str().unwrap_or_default().to_owned();
        assert!(error.contains(&format!("`wide.{ext}` is UTF-16")) && error.contains("UTF-8"), "{report}");
    }
}

#[test]
fn a_50_mb_line_is_one_record_and_the_rest_arrive() {
    let scratch = Scratch::new();
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(scratch.path("big.jsonl")).unwrap());
        f.write_all(GOOD.as_bytes()).unwrap();
        // Unterminated: a 50 MB string that never closes is one bad line.
        f.write_all(b"{\"id\": \"c\", \"blob\": \"").unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..50 {
            f.write_all(&chunk).unwrap();
        }
        f.write_all(b"\n{\"id\": \"d\", \"n\": 4}\n").unwrap();
    }
    scratch.write("dovetail.toml", &files_config(&[("big", "jsonl")]));
    let (out, report) = scratch.run_json(&[]);
    no_panic(&out);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(ids(&scratch, "big"), ["a", "b", "d"], "{report}");
    let dead = reasons(&dead_letters(&scratch), "big");
    assert!(dead.len() == 1 && dead[0].starts_with("big.jsonl line 3: invalid JSON: EOF while parsing"), "{dead:?}");
}

/// A vendor answering every `GET /v1/items` with `body`.
async fn vendor(body: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET")).and(path("/v1/items")).respond_with(body).mount(&server).await;
    server
}

/// A short retry budget: a bad page is retried a few times, quickly.
const SHORT: &str = "{ retry = { base_delay_ms = 5, max_delay_ms = 20, max_elapsed_ms = 300 } }";

/// `dovetail run --json` on a one-stream REST pipeline reading `body`: the exit code and the
/// stream's error.
async fn run_rest(body: ResponseTemplate) -> (Option<i32>, String, Value) {
    let server = vendor(body).await;
    let scratch = Scratch::new();
    RestPipeline::new(&server.uri())
        .http(SHORT)
        .stream(RestStream::new("items", "/v1/items").line("records = \"/data\""))
        .write_to(&scratch);
    let (out, report) = scratch.run_json_async(&[]).await;
    no_panic(&out);
    let error = report["streams"]["items"]["error"].as_str().unwrap_or_default().to_owned();
    (out.status.code(), error, report)
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_pages_fail_with_their_url_and_exit_code() {
    let gzip_cut = {
        // The first bytes of a gzip stream: a valid header, then nothing.
        let mut b = vec![0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0x03];
        b.extend_from_slice(&[0xab, 0x56, 0x4a, 0x49]);
        ResponseTemplate::new(200)
            .insert_header("content-type", "application/json")
            .insert_header("content-encoding", "gzip")
            .set_body_bytes(b)
    };
    // A body cut off in transit is a transient failure (retried, exit 6); a whole body that is
    // not the records is data (exit 9).
    let cases = [
        (
            "an HTML 200 page",
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/html")
                .set_body_string("<html><body>Maintenance</body></html>"),
            "<html>",
            9,
        ),
        (
            "an empty body",
            ResponseTemplate::new(200).insert_header("content-type", "application/json"),
            "body is empty",
            9,
        ),
        ("a truncated gzip body", gzip_cut, "broken response body: unexpected end of file", 6),
        (
            "`records` at a non-array",
            ResponseTemplate::new(200).set_body_json(json!({"data": "nope"})),
            "is a string, not an array",
            9,
        ),
    ];
    for (what, body, needle, exit) in cases {
        let (code, error, report) = run_rest(body).await;
        assert_eq!(code, Some(exit), "{what}: {report}");
        assert!(error.contains(needle) && error.contains("/v1/items"), "{what}: {error}");
    }
}

#[test]
fn a_mapping_path_with_a_stray_bracket_does_not_crash_the_run() {
    // `n[0]]` panicked in the field path parser (found by the field_path fuzz target) and
    // the run ended as an internal error.
    let scratch = Scratch::new();
    std::fs::write(scratch.path("odd.jsonl"), "{\"id\": \"a\", \"n\": [[1]]}\n").unwrap();
    let config = files_config(&[("odd", "jsonl")]);
    scratch.write(
        "dovetail.toml",
        &format!("{config}[pipelines.bad.streams.odd.mapping]\ncolumns = {{ first = \"n[0]]\" }}\n"),
    );
    let (out, report) = scratch.run_json(&[]);
    no_panic(&out);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(report["streams"]["odd"]["written"], 1, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limit_reset_past_the_clock_is_no_panic() {
    // `X-RateLimit-Reset` beyond what `SystemTime` holds panicked in the client (found by the
    // rate_limit_headers fuzz target); now it is no usable reset and the 429 is retried.
    let body = ResponseTemplate::new(429).insert_header("x-ratelimit-reset", "9999999999999999999");
    let (code, error, report) = run_rest(body).await;
    assert!(matches!(code, Some(5 | 6)), "{report}");
    assert!(error.contains("/v1/items"), "{error}");
}

/// A primary key naming a nested field: a key is a top-level column of every sink, so the
/// run stops at once as a config error (exit 3) naming the mapping that lifts it — not a
/// dead letter per record and a table keyed by a column no record has. With that mapping
/// the records arrive keyed by the lifted column.
#[test]
fn a_nested_primary_key_is_a_config_error_naming_the_mapping_that_lifts_it() {
    let s = Scratch::new();
    s.write("in.jsonl", "{\"id\": 1, \"metadata\": {\"ref\": \"a\"}}\n{\"id\": 2, \"metadata\": {\"ref\": \"b\"}}\n");
    let config = "[pipelines.p.source]\nkind = \"files\"\n[[pipelines.p.source.streams]]\nname = \"s\"\n\
                  path = \"in.jsonl\"\nprimary_key = [\"metadata.ref\"]\n\n[pipelines.p.sink]\nkind = \"sqlite\"\n\
                  path = \"out.db\"\n";
    s.write("dovetail.toml", config);
    let out = s.run(&["run"]);
    no_panic(&out);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(
        show(&out).contains("primary key `metadata.ref` is a nested field")
            && show(&out).contains("columns = { ref = \"metadata.ref\" }"),
        "{}",
        show(&out)
    );
    assert!(!s.path("out.db").exists() || ids(&s, "s").is_empty(), "nothing written under a key no record has");
    s.write(
        "dovetail.toml",
        &format!("{config}\n[pipelines.p.streams.s.mapping]\ncolumns = {{ ref = \"metadata.ref\" }}\n"),
    );
    let out = s.run(&["run"]);
    assert!(out.status.success(), "{}", show(&out));
    let refs: Vec<String> = s
        .db("out.db")
        .prepare("SELECT ref FROM s ORDER BY ref")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(refs, ["a", "b"]);
}
