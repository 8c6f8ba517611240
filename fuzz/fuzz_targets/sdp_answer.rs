//! cargo-fuzz target `sdp_answer`: the body is `c300x_bridge::fuzz::sdp_answer` (shared with the stable
//! fallback in tests/it/fuzz_fallback.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| c300x_bridge::fuzz::sdp_answer(data));
