#![no_main]
// The body is `dovetail_http::fuzz_entry::rate_limit_headers`: tests/tests/fuzz_replay.rs replays this target's corpus through it on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| dovetail_http::fuzz_entry::rate_limit_headers(data));
