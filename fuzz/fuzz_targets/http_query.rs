//! cargo-fuzz target `http_query`: the body is `c300x_bridge::fuzz::http_query` (shared with the stable
//! fallback in tests/it/fuzz_fallback.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| c300x_bridge::fuzz::http_query(data));
