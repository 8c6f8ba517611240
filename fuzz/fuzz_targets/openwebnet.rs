//! Fuzzes `proto::openwebnet::Frame::parse` on MESSAGE bodies: never panics, and the frames the
//! bridge writes are always classified as what they are.
#![no_main]

use c300x_bridge::proto::openwebnet::{Frame, unlock};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let body = String::from_utf8_lossy(data);
    let _ = Frame::parse(&body);
    if let Some(&w) = data.first() {
        assert_eq!(Frame::parse(&unlock(w)), Frame::Unlock { where_: w });
    }
});
