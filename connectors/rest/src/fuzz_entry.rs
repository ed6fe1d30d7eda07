//! The body of the fuzz target over the REST source's checkpoint decoder
//! (`fuzz/fuzz_targets/rest_position.rs`, `cargo xtask fuzz`), public so the fuzz crate and
//! the stable replay of every committed corpus and crash file (tests/tests/fuzz_replay.rs)
//! call the same code.

use dovetail_core::position;
use serde_json::Value;

use crate::source::{ChildPosition, StreamPosition};

/// `data` as a stored position of a stream and of a child stream: decoded or refused as
/// "not a position this connector wrote", never a panic; a decoded one encodes again.
pub fn position(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else { return };
    if let Ok(p) = position::decode::<StreamPosition>("fuzz", &v) {
        let _ = position::encode(&p);
    }
    if let Ok(p) = position::decode::<ChildPosition>("fuzz", &v) {
        let _ = position::encode(&p);
    }
}
