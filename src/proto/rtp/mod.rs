//! RTP/RTCP packet helpers (RFC 3550, RFC 4585): header writer/reader, RTCP SR/RR/PLI builders
//! and a compound RTCP parser. Pure code: no sockets, no SRTP (see `proto::srtp`).

pub mod header;
pub mod reorder;
pub mod rtcp;

pub use header::{RtpError, RtpHeader, RtpPacket};
pub use rtcp::{ReportBlock, RtcpError, RtcpPacket};
