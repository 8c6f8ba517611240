//! Pure protocol code: bytes and `now` in, bytes, events and deadlines out.
//! No tokio, no sockets. Shared by the bridge and the simulator.

pub mod aac;
pub mod auth;
pub mod fmp4;
pub mod g711;
pub mod h264;
pub mod hls;
pub mod openwebnet;
pub mod rfc3339;
pub mod rtp;
pub mod rtsp;
pub mod sdp;
pub mod srtp;
