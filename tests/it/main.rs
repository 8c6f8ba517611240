//! Integration tests (one binary): real sockets on 127.0.0.1, real peers.

mod addon;
mod blueprints;
mod cli;
mod depacketizer_sim;
mod doorbell;
mod http;
mod hub;
mod intercom_calls;
mod intercom_media;
mod intercom_sip;
mod lifecycle;
mod malformed_sip;
mod mqtt;
mod rig;
mod rtsp;
mod sim_media;
mod sim_ring;
mod sim_ringer;
mod sim_sip;
mod sip_peer;
mod status_page;
mod talk;
mod transcode;
