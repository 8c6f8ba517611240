//! Fuzzes the RTSP framing and request parser (`proto::rtsp::parse_inbound`) and the Transport
//! and Authorization parsers it feeds: no input may panic, and progress is always made.
#![no_main]

use c300x_bridge::proto::rtsp::{Inbound, auth, parse_inbound, transport};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((inbound, used))) = parse_inbound(rest) {
        assert!(used > 0 && used <= rest.len());
        if let Inbound::Request(r) = &inbound {
            let _ = transport::choose(r.header("Transport"));
            let creds = auth::Credentials {
                user: "u".into(),
                password: "p".into(),
            };
            let _ = auth::check(r.header("Authorization"), r.method.as_str(), &creds, "n");
        }
        rest = &rest[used..];
    }
});
