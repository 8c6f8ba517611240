//! H.264 over RTP (RFC 6184): NAL unit helpers and the MTU-aware packetizer.
//! (The loss-aware depacketizer and SPS info belong here too, owned by the bridge side.)

pub mod packetizer;

pub use packetizer::{Packetizer, RtpPayload, split_annexb};

pub const NAL_SLICE: u8 = 1;
pub const NAL_IDR: u8 = 5;
pub const NAL_SEI: u8 = 6;
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;
pub const NAL_AUD: u8 = 9;
pub const NAL_STAP_A: u8 = 24;
pub const NAL_FU_A: u8 = 28;

/// The `nal_unit_type` of a NAL unit (0 for an empty slice).
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}
