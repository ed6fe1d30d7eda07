//! Issue 20: `dovetail check` has no side effects. It probes a SQLite sink and a JSONL sink
//! whose files and folders do not exist yet and creates none of them (nor the state), and
//! after a run whose sink database was deleted it reports the lost sink without creating an
//! empty database in its place.

use dovetail_e2e::vendor::output_async;
use dovetail_e2e::{Scratch, show};

const CONFIG: &str = r#"
[pipelines.to_sqlite.source]
kind = "files"
[[pipelines.to_sqlite.source.streams]]
name = "items"
path = "data/items.jsonl"
primary_key = ["id"]
[pipelines.to_sqlite.sink]
kind = "sqlite"
path = "out/db/sink.db"

[pipelines.to_jsonl.source]
kind = "files"
[[pipelines.to_jsonl.source.streams]]
name = "items"
path = "data/items.jsonl"
primary_key = ["id"]
[pipelines.to_jsonl.sink]
kind = "jsonl"
dir = "outj/x"
"#;

/// Every path under the scratch folder, sorted, relative.
fn tree(s: &Scratch) -> Vec<String> {
    fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            out.push(e.path().strip_prefix(root).unwrap().display().to_string());
            if e.path().is_dir() {
                walk(&e.path(), root, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&s.path(""), &s.path(""), &mut out);
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_creates_no_sink_file_folder_or_state() {
    let s = Scratch::new();
    s.write("dovetail.toml", CONFIG);
    s.write("data/items.jsonl", "{\"id\":1}\n{\"id\":2}\n");
    let before = tree(&s);
    let out = output_async(s.cmd(&["check"])).await;
    assert!(out.status.success(), "{}", show(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("pipeline `to_sqlite`: OK") && said.contains("pipeline `to_jsonl`: OK"), "{said}");
    assert_eq!(tree(&s), before, "check changed the folder: {}", show(&out));

    // After a run, the database is deleted: check says so and leaves it deleted.
    let out = output_async(s.cmd(&["run"])).await;
    assert!(out.status.success(), "{}", show(&out));
    std::fs::remove_dir_all(s.path("out")).unwrap();
    let out = output_async(s.cmd(&["check"])).await;
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("warning:"), "the lost sink is reported: {}", show(&out));
    assert!(!s.path("out").exists(), "check created the sink's folder again: {}", show(&out));
}
