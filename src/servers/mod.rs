//! Network servers that hand the hubs' streams to readers (RTSP, HTTP); each takes an
//! already-bound listener and a cancellation token. `access` is the access model's I/O half
//! (who counts as Home Assistant ingress, secrets from the config, published URLs) and
//! `limits` the connection admission both servers share.

pub mod access;
pub mod http;
pub mod limits;
pub mod rtsp;
