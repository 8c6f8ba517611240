//! SPS facts the bridge reports and advertises: size, profile/level and the RFC 6381 codec
//! string (`avc1.42c01f`), parsed with h264-reader (ITU-T H.264 §7.3.2.1.1).

use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::{BitReader, decode_nal};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpsError {
    #[error("NAL unit of type {0} is not an SPS (7)")]
    NotSps(u8),
    #[error("SPS does not parse: {0}")]
    Invalid(String),
}

/// What an SPS says about the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpsInfo {
    pub width: u32,
    pub height: u32,
    /// `profile_idc`, constraint flags and `level_idc`: the SDP `profile-level-id` bytes.
    pub profile_level_id: [u8; 3],
    /// RFC 6381 codec string for HLS/MSE, e.g. `avc1.42c01f`.
    pub codec: String,
}

impl SpsInfo {
    /// Parses an SPS NAL unit (header byte included, no start code).
    pub fn parse(nal: &[u8]) -> Result<Self, SpsError> {
        let t = super::nal_type(nal);
        if t != super::NAL_SPS || nal.len() < 4 {
            return Err(SpsError::NotSps(t));
        }
        let rbsp = decode_nal(nal).map_err(|e| SpsError::Invalid(e.to_string()))?;
        let sps = SeqParameterSet::from_bits(BitReader::new(&rbsp[..]))
            .map_err(|e| SpsError::Invalid(format!("{e:?}")))?;
        let (width, height) = sps
            .pixel_dimensions()
            .map_err(|e| SpsError::Invalid(format!("{e:?}")))?;
        let profile_level_id = [nal[1], nal[2], nal[3]];
        Ok(Self {
            width,
            height,
            profile_level_id,
            codec: format!("avc1.{}", hex::encode(profile_level_id)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::proto::h264::testdata::SPS as SPS_400X288;

    #[test]
    fn reads_size_and_codec() {
        let info = SpsInfo::parse(SPS_400X288).expect("valid SPS");
        assert_eq!((info.width, info.height), (400, 288));
        assert_eq!(info.codec, "avc1.42c015");
        assert_eq!(info.profile_level_id, [0x42, 0xc0, 0x15]);
    }

    #[test]
    fn rejects_other_nals_and_garbage() {
        assert_eq!(SpsInfo::parse(&[0x68, 1, 2, 3]), Err(SpsError::NotSps(8)));
        assert_eq!(SpsInfo::parse(&[]), Err(SpsError::NotSps(0)));
        assert!(matches!(
            SpsInfo::parse(&[0x67, 0xff, 0xff, 0xff, 0xff]),
            Err(SpsError::Invalid(_))
        ));
    }
}
