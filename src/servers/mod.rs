//! Network servers that hand the hubs' streams to readers (RTSP now); each takes an
//! already-bound listener and a cancellation token.

pub mod http;
pub mod rtsp;
