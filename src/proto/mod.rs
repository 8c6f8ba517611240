//! Pure protocol code: bytes and `now` in, bytes, events and deadlines out.
//! No tokio, no sockets. Shared by the bridge and the simulator.

pub mod aac;
pub mod h264;
pub mod openwebnet;
pub mod rtp;
pub mod sdp;
pub mod srtp;
