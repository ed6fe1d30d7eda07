//! The bodies of the fuzz targets over this crate's decoders (`fuzz/fuzz_targets/`,
//! `cargo xtask fuzz`), public so the fuzz crate and the stable replay of every committed
//! corpus and crash file (tests/tests/fuzz_replay.rs) call the same code. Each returns
//! without panicking whatever the bytes; errors are the expected answer to most of them.

use std::sync::Arc;

use dovetail_core::{BuildCx, Next, Provenance};
use serde_json::{Value, json};

use crate::config::{FilesSourceConfig, PlanFormat};
use crate::position::Position;

/// Pages a read follows before the entry gives up (each page reads at least one line).
const MAX_PAGES: usize = 10_000;

/// `data` as a JSON Lines file, read to its end in pages of 3 through the checkpoints.
pub fn jsonl(data: &[u8]) {
    read_all(data, "jsonl");
}

/// `data` as a CSV file, read to its end in pages of 3 through the checkpoints.
pub fn csv(data: &[u8]) {
    read_all(data, "csv");
}

/// `data` as a stored checkpoint position: decoded or refused, and a decoded one encodes
/// back to a position that decodes the same.
pub fn position(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else { return };
    if let Ok(p) = Position::decode("fuzz", &v) {
        let again = Position::decode("fuzz", &p.to_value()).map(|q| q.to_value());
        assert_eq!(again.ok(), Some(p.to_value()), "a decoded position does not round-trip: {v}");
    }
}

fn read_all(data: &[u8], ext: &str) {
    // One file per process and format: the fuzzer runs one input at a time.
    let path = std::env::temp_dir().join(format!("dovetail-fuzz-{}.{ext}", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let config = json!({ "streams": [{ "name": "s", "path": path, "primary_key": ["id"] }] });
    let Ok(config) = serde_json::from_value::<FilesSourceConfig>(config) else { return };
    let Ok(plans) = config.plan(&BuildCx::default()) else { return };
    let provenance = Arc::new(Provenance::default());
    let mut from = None;
    for _ in 0..MAX_PAGES {
        let page = match plans[0].format {
            PlanFormat::Jsonl => crate::jsonl::read_page(&plans[0], from, 3, provenance.clone()),
            PlanFormat::Csv(opts) => crate::csv::read_page(&plans[0], opts, from, 3, provenance.clone()),
        };
        let Ok(page) = page else { break };
        for r in &page.rejects {
            // What a dead letter keeps must decode the same way (or be refused again).
            let _ = match plans[0].format {
                PlanFormat::Jsonl => crate::jsonl::decode_line(&r.raw),
                PlanFormat::Csv(opts) => crate::csv::decode_row(&plans[0], opts, &r.raw),
            };
        }
        match page.next {
            Next::More(p) => match Position::decode("s", &p) {
                Ok(p) => from = Some(p),
                Err(e) => panic!("the reader wrote a position it cannot read back: {e}"),
            },
            Next::Done { .. } | Next::Later(_) => break,
        }
    }
    let _ = std::fs::remove_file(&path);
}
