//! The global allocator and its one tuning.
//!
//! serde_json values allocate per key and per exact number, from several threads; mimalloc
//! roughly halves the allocator's share of a run and keeps fragmentation down. By default it
//! returns freed memory to the OS only after a delay (1 s in the bundled v3), which keeps the
//! pages of every batch that was in flight resident. Measured (interleaved runs, release):
//! a 1 s delay costs ~36 MiB peak RSS on the 1M REST bench; no delay ~25.5 MiB. A 20 ms
//! delay saved ~7 % CPU on the REST bench (fewer page faults) but added 2–3 MiB of peak RSS
//! and made the JSONL bench's peak grow from 100k to 1M records beyond its allowance
//! (+3.5 MiB), so freed memory goes back at once.
#![allow(unsafe_code)] // FFI calls into mimalloc's option API, before any thread starts

use std::ffi::c_long;

use libmimalloc_sys::{mi_option_get, mi_option_set, mi_option_t};

/// mimalloc (v3) option index of `mi_option_purge_delay` (its `mimalloc.h` enum).
const PURGE_DELAY: mi_option_t = 15;
/// Index of `mi_option_os_tag`, whose default (100) shows the enum is numbered as expected.
const OS_TAG: mi_option_t = 18;

/// Freed memory goes back to the OS after this many milliseconds (see the module docs).
const PURGE_DELAY_MS: c_long = 0;

/// Purge freed memory at once ([`PURGE_DELAY_MS`]). Does nothing, and says so, when
/// mimalloc's options are not numbered as expected (another version).
pub fn purge_freed_memory_at_once() -> bool {
    // SAFETY: option get/set are plain reads and writes of mimalloc's option table; this runs
    // at the start of `main`, before the runtime starts any thread.
    unsafe {
        if mi_option_get(OS_TAG) != 100 {
            return false;
        }
        mi_option_set(PURGE_DELAY, PURGE_DELAY_MS);
        mi_option_get(PURGE_DELAY) == PURGE_DELAY_MS
    }
}

/// The current purge delay in milliseconds.
#[cfg(test)]
fn purge_delay() -> c_long {
    // SAFETY: a read of mimalloc's option table.
    unsafe { mi_option_get(PURGE_DELAY) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_option_is_found_and_set() {
        // Fails loudly if a mimalloc upgrade renumbers its options: the RSS figure would regress.
        assert!(super::purge_freed_memory_at_once());
        assert_eq!(super::purge_delay(), super::PURGE_DELAY_MS);
    }
}
