//! RTSP 1.0 (RFC 2326) wire format, sans-IO: request framing with `$` interleaved data (§10.12),
//! the Transport header (§12.39), response writing, Basic/Digest checks (RFC 2617/7616) and the
//! SDP we describe a panel with (RFC 6184 §8.2, RFC 3640 §4.1). Sessions and sockets live in
//! `servers::rtsp`.

pub mod auth;
pub mod framing;
pub mod response;
pub mod sdp;
pub mod transport;

pub use framing::{FramingError, Inbound, Method, Request, parse_inbound};
pub use response::Response;
pub use transport::{ClientTransport, TransportError};
