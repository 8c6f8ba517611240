//! Integration tests (one binary): real sockets on 127.0.0.1, real peers.

mod access;
mod addon;
mod cli;
mod depacketizer_sim;
mod fuzz_fallback;
mod http;
mod hub;
mod intercom_calls;
mod intercom_media;
mod intercom_sip;
mod malformed_sip;
mod mqtt;
mod rtsp;
mod sim_media;
mod sim_sip;
mod sip_peer;
mod transcode;
