//! The global allocator and its two tunings.
//!
//! serde_json values allocate per key and per exact number, from several threads; mimalloc
//! roughly halves the allocator's share of a run and keeps fragmentation down. By default it
//! returns freed memory to the OS only after a delay (1 s in the bundled v3), which keeps the
//! pages of every batch that was in flight resident. Measured (interleaved runs, release):
//! a 1 s delay costs ~36 MiB peak RSS on the 1M REST bench; no delay ~25.5 MiB. A 20 ms
//! delay saved ~7 % CPU on the REST bench (fewer page faults) but added 2–3 MiB of peak RSS
//! and made the JSONL bench's peak grow from 100k to 1M records beyond its allowance
//! (+3.5 MiB), so freed memory goes back at once.
//!
//! Records are decoded on an async worker (the reader) and freed on a blocking thread (the
//! state store's): a mimalloc page they filled sits in its owner's "full" queue, so when
//! the other thread frees its blocks the page is retired and, with no purge delay, handed
//! back to the OS — and faulted in again for the next page of records. The async workers
//! keep up to 32 full small pages per size class in their normal queues instead
//! (`page_full_retain`, default 2), where they find the freed blocks and reuse the page.
//! `bench-rest`, 200k records, 9 interleaved runs: page faults 67k → 35k, median wall
//! 1.36 → 1.28 s, CPU 1.85 → 1.71 s, peak RSS +0.7 MiB. Only the workers: set for every
//! thread, the JSONL bench (which decodes on blocking threads) peaked at 43 MiB instead of
//! ~31 and grew 6 MiB from 100k to 1M records; with 8 pages, 2.4–4.2 MiB.
#![allow(unsafe_code)] // FFI calls into mimalloc's option API, before any thread starts

use std::ffi::c_long;
use std::sync::atomic::{AtomicUsize, Ordering};

use libmimalloc_sys::{mi_option_get, mi_option_set, mi_option_t};

/// mimalloc (v3) option index of `mi_option_purge_delay` (its `mimalloc.h` enum).
const PURGE_DELAY: mi_option_t = 15;
/// Index of `mi_option_os_tag`, whose default (100) shows the enum is numbered as expected.
const OS_TAG: mi_option_t = 18;
/// Index of `mi_option_page_full_retain` (default 2; mimalloc clamps it to 32).
const PAGE_FULL_RETAIN: mi_option_t = 36;
/// Full small pages an async worker keeps per size class (see the module docs).
const PAGE_FULL_RETAIN_PAGES: c_long = 32;
/// mimalloc's default for every other thread.
const PAGE_FULL_RETAIN_DEFAULT: c_long = 2;
/// Index of `mi_option_page_max_candidates`, the neighbour whose default (4) confirms it.
const PAGE_MAX_CANDIDATES: mi_option_t = 37;

/// Freed memory goes back to the OS after this many milliseconds (see the module docs).
const PURGE_DELAY_MS: c_long = 0;

/// Purge freed memory at once ([`PURGE_DELAY_MS`]), and let the next `workers` threads
/// that start (the async runtime's workers, started before any blocking thread) retain
/// full pages ([`PAGE_FULL_RETAIN_PAGES`]); [`thread_started`] must run on each new thread.
/// Does nothing, and says so, when mimalloc's options are not numbered as expected.
pub fn tune(workers: usize) -> bool {
    // SAFETY: option get/set are plain reads and writes of mimalloc's option table; this runs
    // at the start of `main`, before the runtime starts any thread.
    unsafe {
        if mi_option_get(OS_TAG) != 100 || mi_option_get(PAGE_MAX_CANDIDATES) != 4 {
            return false;
        }
        mi_option_set(PURGE_DELAY, PURGE_DELAY_MS);
        WORKERS_TO_START.store(workers, Ordering::SeqCst);
        mi_option_set(PAGE_FULL_RETAIN, PAGE_FULL_RETAIN_PAGES);
        mi_option_get(PURGE_DELAY) == PURGE_DELAY_MS
    }
}

/// Threads still to start with the workers' setting.
static WORKERS_TO_START: AtomicUsize = AtomicUsize::new(0);

/// On each new runtime thread: a thread reads `page_full_retain` when its heap is first
/// used, so use it now; after the last worker, later threads get the default again.
pub fn thread_started() {
    drop(std::hint::black_box(Box::new(0u64)));
    let last = WORKERS_TO_START.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) == Ok(1);
    if last {
        // SAFETY: a write to mimalloc's option table.
        unsafe { mi_option_set(PAGE_FULL_RETAIN, PAGE_FULL_RETAIN_DEFAULT) };
    }
}

/// Whether workers counted by [`tune`] have not started yet.
pub fn workers_pending() -> bool {
    WORKERS_TO_START.load(Ordering::SeqCst) > 0
}

/// An option's current value.
#[cfg(test)]
fn option(o: mi_option_t) -> c_long {
    // SAFETY: a read of mimalloc's option table.
    unsafe { mi_option_get(o) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_options_are_found_and_set_and_only_the_workers_retain_full_pages() {
        // Fails loudly if a mimalloc upgrade renumbers its options: the RSS and speed
        // figures would regress.
        assert_eq!(option(PAGE_FULL_RETAIN), PAGE_FULL_RETAIN_DEFAULT, "the default, before tuning");
        assert!(tune(2));
        assert_eq!(option(PURGE_DELAY), PURGE_DELAY_MS);
        assert_eq!(option(PAGE_FULL_RETAIN), PAGE_FULL_RETAIN_PAGES);
        thread_started();
        assert!(workers_pending());
        assert_eq!(option(PAGE_FULL_RETAIN), PAGE_FULL_RETAIN_PAGES, "one worker still to start");
        thread_started();
        assert!(!workers_pending());
        assert_eq!(option(PAGE_FULL_RETAIN), PAGE_FULL_RETAIN_DEFAULT, "threads after the workers");
        thread_started();
        assert_eq!(option(PAGE_FULL_RETAIN), PAGE_FULL_RETAIN_DEFAULT);
    }
}
