//! The bodies of the fuzz targets over the GitHub source's decoders (`fuzz/fuzz_targets/`,
//! `cargo xtask fuzz`), public so the fuzz crate and the stable replay of every committed
//! corpus and crash file (tests/tests/fuzz_replay.rs) call the same code.

use dovetail_core::position;
use serde_json::Value;

use crate::GithubStream;
use crate::source::Position;

/// `data` as a stored position: decoded or refused, never a panic.
pub fn position(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else { return };
    if let Ok(p) = position::decode::<Position>("fuzz", &v) {
        let _ = position::encode(&p);
    }
}

/// `data` as a page body: each item of an array (or the object itself) mapped as a record
/// of every stream, with its drift coercions: a row or a `MapError`, never a panic.
pub fn page(data: &[u8]) {
    let Ok(body) = serde_json::from_slice::<Value>(data) else { return };
    let items = match &body {
        Value::Array(items) => items.iter().collect::<Vec<_>>(),
        Value::Object(o) => {
            o.get("workflow_runs").and_then(Value::as_array).map_or(vec![&body], |a| a.iter().collect())
        }
        _ => return,
    };
    for item in items {
        for stream in GithubStream::ALL {
            let _ = crate::mapping::map(stream, "octo/hello", item);
            let _ = crate::mapping::coercions(stream, item, &|| "fuzz".to_owned());
        }
    }
}
