//! Helpers shared by the integration tests: real temp files, a source built from JSON config.

#![allow(dead_code)]

use std::path::Path;

use dovetail_core::{BuildCx, Cx, Error, Location, Next, Page, ReadRequest, Source, SourceConnector};
use dovetail_files::{FilesSource, FilesSourceConfig};
use serde_json::{Value, json};

/// A source over `dir` with the given `streams` array.
pub fn source(dir: &Path, streams: Value) -> FilesSource {
    try_source(dir, streams).expect("config builds")
}

/// Build a source, returning the build error.
pub fn try_source(dir: &Path, streams: Value) -> Result<FilesSource, Error> {
    let config: FilesSourceConfig = serde_json::from_value(json!({ "streams": streams })).expect("config parses");
    FilesSource::build(config, &BuildCx { base_dir: dir.to_path_buf(), pipeline: "p".into(), ..Default::default() })
}

/// Read one page.
pub async fn read(src: &FilesSource, stream: &str, position: Option<Value>, batch_size: usize) -> Result<Page, Error> {
    let req = ReadRequest { stream: stream.into(), position, since: None, batch_size, use_cache: false };
    src.read(&req, &Cx::default()).await
}

/// The 1-based line of every record of a page.
pub fn record_lines(page: &Page) -> Vec<u64> {
    page.records
        .iter()
        .map(|r| match r.location {
            Some(Location::Line(n)) => n,
            other => panic!("record without a line: {other:?}"),
        })
        .collect()
}

/// The `id` field of every record of a page, as JSON text.
pub fn ids(page: &Page) -> Vec<String> {
    page.records.iter().map(|r| r.data["id"].to_string()).collect()
}

/// The position of a `More` page.
pub fn more(page: &Page) -> Value {
    match &page.next {
        Next::More(p) => p.clone(),
        other => panic!("expected More, got {other:?}"),
    }
}

/// The resume position of a `Done` page.
pub fn done(page: &Page) -> Option<Value> {
    match &page.next {
        Next::Done { resume } => resume.clone(),
        other => panic!("expected Done, got {other:?}"),
    }
}

/// Read a whole pass from `position`, page by page, returning every page.
pub async fn read_all(src: &FilesSource, stream: &str, mut position: Option<Value>, batch_size: usize) -> Vec<Page> {
    let mut pages = Vec::new();
    loop {
        let page = read(src, stream, position.take(), batch_size).await.expect("read succeeds");
        let next = page.next.clone();
        pages.push(page);
        match next {
            Next::More(p) | Next::Later(p) => position = Some(p),
            Next::Done { .. } => return pages,
        }
        assert!(pages.len() < 10_000, "pass does not end");
    }
}
