//! Cursor bookkeeping of a stream's pass: where a run starts, and the inclusive cursor
//! filter that tracks the pass maximum.

use std::cmp::Ordering;

use serde_json::Value;

use crate::record::{Key, compare_cursors};
use crate::state::{Checkpoint, CursorState};

/// The checkpoint a run starts from: resume inside an unfinished pass, or start the next pass.
pub(super) fn starting_checkpoint(prev: Option<Checkpoint>, incremental: bool) -> Checkpoint {
    let prev = prev.unwrap_or(Checkpoint { pass_complete: true, ..Default::default() });
    if !prev.pass_complete {
        return prev;
    }
    Checkpoint {
        // A follow position survives passes only for incremental reads; a full refresh starts over.
        position: if incremental { prev.position } else { None },
        pass: prev.pass + 1,
        floor: if incremental { prev.floor } else { None },
        max: if incremental { prev.max } else { None },
        pass_complete: true,
    }
}

/// Decide whether a record passes the inclusive cursor bound, and track the pass maximum.
pub(super) fn admit(
    cp: &mut Checkpoint,
    cursor: Option<&Value>,
    key: &Key,
    field: &str,
    lookback_floor: Option<&Value>,
) -> Result<bool, String> {
    let Some(c) = cursor.filter(|c| !c.is_null()) else {
        return Err(format!("missing cursor field `{field}`"));
    };
    if let Some(low) = lookback_floor {
        match compare_cursors(c, low) {
            None => return Err(format!("cursor `{field}` value {c} cannot be compared with {low}")),
            Some(Ordering::Less) => return Ok(false),
            _ => {}
        }
    } else if let Some(floor) = &cp.floor {
        match compare_cursors(c, &floor.value) {
            None => {
                return Err(format!(
                    "cursor `{field}` value {c} cannot be compared with the checkpoint's {}",
                    floor.value
                ));
            }
            Some(Ordering::Less) => return Ok(false),
            Some(Ordering::Equal) if floor.keys.iter().any(|k| k == key.as_str()) => {
                return Ok(false);
            }
            _ => {}
        }
    }
    match &mut cp.max {
        None => cp.max = Some(CursorState { value: c.clone(), keys: vec![key.as_str().to_owned()] }),
        Some(max) => match compare_cursors(c, &max.value) {
            Some(Ordering::Greater) => *max = CursorState { value: c.clone(), keys: vec![key.as_str().to_owned()] },
            Some(Ordering::Equal) => {
                if !max.keys.iter().any(|k| k == key.as_str()) {
                    max.keys.push(key.as_str().to_owned());
                }
            }
            Some(Ordering::Less) => {}
            None => {
                return Err(format!("cursor `{field}` value {c} cannot be compared with {}", max.value));
            }
        },
    }
    Ok(true)
}
