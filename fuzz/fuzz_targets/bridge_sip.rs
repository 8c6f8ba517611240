//! Fuzzes what the bridge does with SIP bytes from the intercom (rsipstack's TCP framer and
//! parser via `intercom::sip::decode_stream`, and the UDP datagram parser): never a panic.
#![no_main]

use c300x_bridge::intercom::sip::{decode_stream, parse_datagram};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_datagram(data);
    let _ = decode_stream(data);
});
