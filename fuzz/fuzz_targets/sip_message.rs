//! Fuzzes the simulator's SIP parser and TCP framer (`sim::sip::message`): `Message::parse` never
//! panics, and `next_frame` always consumes bytes when it yields a frame (no busy loop).
#![no_main]

use c300x_bridge::sim::sip::message::{Frame, Message, next_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Message::parse(data);
    let mut buf = data.to_vec();
    loop {
        let before = buf.len();
        match next_frame(&mut buf) {
            Ok(Some(frame)) => {
                assert!(
                    buf.len() < before,
                    "next_frame yielded a frame without consuming bytes"
                );
                if let Frame::Message(bytes) = frame {
                    let _ = Message::parse(&bytes);
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
});
