//! RTSP 1.0 (RFC 2326) wire format, sans-IO: request framing with `$` interleaved data (§10.12),
//! the Transport header (§12.39), response writing, the SDP we describe a panel with (RFC 6184
//! §8.2, RFC 3640 §4.1) and the server session state machine (`server`, §A.1). Sockets live in
//! `servers::rtsp`; Basic/Digest checks in `proto::auth`.

pub mod framing;
pub mod response;
pub mod sdp;
pub mod server;
pub mod transport;

pub use framing::{FramingError, Inbound, Method, Request, parse_inbound};
pub use response::Response;
pub use transport::{ClientTransport, TransportError};
