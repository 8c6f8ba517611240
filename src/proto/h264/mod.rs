//! H.264 over RTP (RFC 6184): NAL unit helpers and the MTU-aware packetizer.
//! SPS facts in `sps`; the loss-aware depacketizer (bridge side) in `depacketizer`.

pub mod depacketizer;
pub mod leadin;
pub mod packetizer;
pub mod sps;

pub use depacketizer::{AccessUnit, Depacketizer, DepacketizerStats, Limits};
pub use leadin::lead_in;
pub use packetizer::{Packetizer, RtpPayload, split_annexb};
pub use sps::SpsInfo;

/// A libx264 Baseline 400x288 SPS and its PPS — the simulator's and the C300X's lo-res stream —
/// for every test that needs a real parameter set.
#[cfg(test)]
pub(crate) mod testdata {
    pub(crate) const SPS: &[u8] = &[
        0x67, 0x42, 0xc0, 0x15, 0xd9, 0x01, 0x90, 0x96, 0xc0, 0x44, 0x00, 0x00, 0x03, 0x00, 0x04,
        0x00, 0x00, 0x03, 0x00, 0x50, 0x3c, 0x58, 0xb9, 0x20,
    ];
    pub(crate) const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
}

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

/// The complete NAL units in one RFC 6184 payload: the NAL itself (types 1–23) or the
/// aggregated ones of a STAP-A (§5.7.1). FU-A fragments are not whole NALs and give none.
pub fn whole_nals(payload: &[u8]) -> Vec<&[u8]> {
    match nal_type(payload) {
        0 | 25..=31 => Vec::new(),
        NAL_STAP_A => {
            let mut out = Vec::new();
            let mut rest = payload.get(1..).unwrap_or_default();
            while let [hi, lo, tail @ ..] = rest {
                let size = usize::from(u16::from_be_bytes([*hi, *lo]));
                let Some(nal) = tail.get(..size) else {
                    break;
                };
                if size > 0 {
                    out.push(nal);
                }
                rest = &tail[size..];
            }
            out
        }
        _ => vec![payload],
    }
}

/// Whether an RFC 6184 payload starts a keyframe: an IDR slice (5) or SPS (7), alone, inside a
/// STAP-A or at the start of a FU-A.
pub fn starts_keyframe(payload: &[u8]) -> bool {
    let key = |t: u8| t == NAL_IDR || t == NAL_SPS;
    if nal_type(payload) == NAL_FU_A {
        return payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && key(fu & 0x1f));
    }
    whole_nals(payload).iter().any(|n| key(nal_type(n)))
}

#[cfg(test)]
mod payload_tests {
    use super::*;

    #[test]
    fn whole_nals_of_single_stap_a_and_fu_a() {
        assert_eq!(whole_nals(&[0x65, 1, 2]), vec![&[0x65, 1, 2][..]]);
        let stap = [0x18, 0, 2, 0x67, 9, 0, 1, 0x68, 0, 9];
        assert_eq!(whole_nals(&stap), vec![&[0x67, 9][..], &[0x68][..]]);
        assert!(whole_nals(&[0x7c, 0x85, 1]).is_empty());
        assert!(whole_nals(&[]).is_empty());
        assert!(starts_keyframe(&stap));
        assert!(starts_keyframe(&[0x7c, 0x85, 1]));
        assert!(!starts_keyframe(&[0x7c, 0x05, 1]));
        assert!(!starts_keyframe(&[0x41, 1]));
    }
}
