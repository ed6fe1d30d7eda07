#![no_main]
// The body is `dovetail_rest::fuzz_entry::page`: tests/tests/fuzz_replay.rs replays this target's corpus through it on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| dovetail_rest::fuzz_entry::page(data));
