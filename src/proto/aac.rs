//! AAC framing, pure: the AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1) and its SDP `config=`
//! hex, ADTS headers (§1.A.2, for files and tools), and the RFC 3640 §3.3.6 AAC-hbr RTP payload.
//! No codec here: the AAC frames come from `media::transcode`.

use std::fmt::Write as _;

/// Sampling frequencies by index (ISO/IEC 14496-3 Table 1.18); index 15 means "explicit".
const SAMPLE_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];
/// AAC Main, LC, SSR, LTP: the object types ADTS can carry (profile = object type − 1).
const ADTS_MAX_OBJECT_TYPE: u8 = 4;
/// ADTS frame_length and the RFC 3640 AU-size are 13-bit fields.
const MAX_13_BITS: usize = (1 << 13) - 1;
const ADTS_HEADER_LEN: usize = 7;

/// AAC Low Complexity, the object type we produce.
pub const OBJECT_TYPE_AAC_LC: u8 = 2;
/// Samples per AAC-LC access unit (the RTP timestamp step, RFC 3640 §3.2.3.1).
pub const SAMPLES_PER_FRAME: u32 = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AacError {
    #[error("AudioSpecificConfig too short: {len} bytes")]
    ShortConfig { len: usize },
    #[error("AudioSpecificConfig: reserved sampling frequency index {index}")]
    ReservedRateIndex { index: u8 },
    #[error("sample rate {rate} Hz has no AAC sampling frequency index")]
    NoRateIndex { rate: u32 },
    #[error("object type {object_type} does not fit {what}")]
    ObjectType { object_type: u8, what: &'static str },
    #[error("{channels} channels do not fit {what}")]
    Channels { channels: u8, what: &'static str },
    #[error("AAC frame of {len} bytes is too large for {what} (13-bit size)")]
    FrameTooLarge { len: usize, what: &'static str },
    #[error("{count} access units do not fit one RFC 3640 payload")]
    TooManyFrames { count: usize },
}

/// The decoder configuration of an AAC stream: what `esds` (fMP4) and the SDP `config=` carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    /// Audio object type; 2 = AAC-LC.
    pub object_type: u8,
    pub sample_rate: u32,
    /// Channel configuration (1 = mono).
    pub channels: u8,
}

impl AudioSpecificConfig {
    /// AAC-LC at `sample_rate` with `channels`.
    pub fn aac_lc(sample_rate: u32, channels: u8) -> Self {
        Self {
            object_type: OBJECT_TYPE_AAC_LC,
            sample_rate,
            channels,
        }
    }

    /// The 4-bit sampling frequency index, `None` for a rate outside the table.
    pub fn sample_rate_index(&self) -> Option<u8> {
        rate_index(self.sample_rate)
    }

    /// The two-byte form: 5 bits object type, 4 bits rate index, 4 bits channels, `000`
    /// (frame length 1024, no core coder, no extension).
    pub fn to_bytes(&self) -> Result<[u8; 2], AacError> {
        let index = self.sample_rate_index().ok_or(AacError::NoRateIndex {
            rate: self.sample_rate,
        })?;
        if self.object_type == 0 || self.object_type > 30 {
            return Err(AacError::ObjectType {
                object_type: self.object_type,
                what: "a 5-bit AudioSpecificConfig field",
            });
        }
        if self.channels == 0 || self.channels > 7 {
            return Err(AacError::Channels {
                channels: self.channels,
                what: "a channel configuration",
            });
        }
        let bits: u16 = (u16::from(self.object_type) << 11)
            | (u16::from(index) << 7)
            | (u16::from(self.channels) << 3);
        Ok(bits.to_be_bytes())
    }

    /// The SDP `config=` value (RFC 3640 §4.1): the AudioSpecificConfig in hex, e.g. `1408`.
    pub fn config_hex(&self) -> Result<String, AacError> {
        let mut out = String::with_capacity(4);
        for b in self.to_bytes()? {
            // Writing to a String cannot fail.
            let _ = write!(out, "{b:02x}");
        }
        Ok(out)
    }

    /// Reads the leading fields of an AudioSpecificConfig (escapes included); trailing
    /// extensions, such as the SBR sync extension FFmpeg appends, are ignored.
    pub fn parse(bytes: &[u8]) -> Result<Self, AacError> {
        let mut bits = BitReader { bytes, pos: 0 };
        let short = AacError::ShortConfig { len: bytes.len() };
        let mut object_type = bits.read(5).ok_or(short.clone())? as u8;
        if object_type == 31 {
            object_type = 32 + bits.read(6).ok_or(short.clone())? as u8;
        }
        let index = bits.read(4).ok_or(short.clone())? as u8;
        let sample_rate = match index {
            15 => bits.read(24).ok_or(short.clone())?,
            i => *SAMPLE_RATES
                .get(usize::from(i))
                .ok_or(AacError::ReservedRateIndex { index: i })?,
        };
        let channels = bits.read(4).ok_or(short)? as u8;
        Ok(Self {
            object_type,
            sample_rate,
            channels,
        })
    }
}

fn rate_index(rate: u32) -> Option<u8> {
    SAMPLE_RATES
        .iter()
        .position(|&r| r == rate)
        .and_then(|i| u8::try_from(i).ok())
}

/// MSB-first bit reader over a byte slice; `None` past the end.
struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn read(&mut self, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = self.bytes.get(self.pos / 8)?;
            let bit = (byte >> (7 - self.pos % 8)) & 1;
            v = (v << 1) | u32::from(bit);
            self.pos += 1;
        }
        Some(v)
    }
}

/// The 7-byte ADTS header (MPEG-4, no CRC, one raw data block) for a raw AAC frame of
/// `payload_len` bytes: prepend it to each access unit to get a playable `.aac` file.
pub fn adts_header(asc: &AudioSpecificConfig, payload_len: usize) -> Result<[u8; 7], AacError> {
    if asc.object_type == 0 || asc.object_type > ADTS_MAX_OBJECT_TYPE {
        return Err(AacError::ObjectType {
            object_type: asc.object_type,
            what: "an ADTS profile",
        });
    }
    let index = asc.sample_rate_index().ok_or(AacError::NoRateIndex {
        rate: asc.sample_rate,
    })?;
    if asc.channels > 7 {
        return Err(AacError::Channels {
            channels: asc.channels,
            what: "an ADTS channel configuration",
        });
    }
    let len = payload_len + ADTS_HEADER_LEN;
    if len > MAX_13_BITS {
        return Err(AacError::FrameTooLarge {
            len: payload_len,
            what: "an ADTS frame",
        });
    }
    let profile = asc.object_type - 1;
    let ch = asc.channels;
    Ok([
        0xFF,
        0xF1, // syncword, MPEG-4, layer 0, protection absent
        (profile << 6) | (index << 2) | (ch >> 2),
        ((ch & 3) << 6) | (len >> 11) as u8,
        (len >> 3) as u8,
        (((len & 7) as u8) << 5) | 0x1F, // buffer fullness 0x7FF (VBR) ...
        0xFC,                            // ... and one raw data block
    ])
}

/// The RFC 3640 AAC-hbr payload (§3.2.1, §3.3.6): AU-headers-length in bits, then per frame a
/// 13-bit AU-size and a 3-bit AU-Index (first) / AU-Index-delta (others, 0 = consecutive), then
/// the raw frames (no ADTS). The caller sets the marker bit: every AU here is complete.
pub fn rfc3640_payload(frames: &[&[u8]]) -> Result<Vec<u8>, AacError> {
    let header_bits = frames
        .len()
        .checked_mul(16)
        .and_then(|b| u16::try_from(b).ok())
        .ok_or(AacError::TooManyFrames {
            count: frames.len(),
        })?;
    let data_len: usize = frames.iter().map(|f| f.len()).sum();
    let mut out = Vec::with_capacity(2 + 2 * frames.len() + data_len);
    out.extend_from_slice(&header_bits.to_be_bytes());
    for frame in frames {
        if frame.len() > MAX_13_BITS {
            return Err(AacError::FrameTooLarge {
                len: frame.len(),
                what: "an RFC 3640 AU-size",
            });
        }
        // Fits: 13 bits of size shifted over the 3-bit index (0).
        let header = (frame.len() as u16) << 3;
        out.extend_from_slice(&header.to_be_bytes());
    }
    for frame in frames {
        out.extend_from_slice(frame);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_hex_matches_known_sdps() {
        assert_eq!(
            AudioSpecificConfig::aac_lc(8_000, 1).config_hex(),
            Ok("1588".into())
        );
        assert_eq!(
            AudioSpecificConfig::aac_lc(16_000, 1).config_hex(),
            Ok("1408".into())
        );
        assert_eq!(
            AudioSpecificConfig::aac_lc(48_000, 1).config_hex(),
            Ok("1188".into())
        );
        assert_eq!(
            AudioSpecificConfig::aac_lc(44_100, 2).to_bytes(),
            Ok([0x12, 0x10])
        );
    }

    #[test]
    fn rate_indexes() {
        assert_eq!(
            AudioSpecificConfig::aac_lc(8_000, 1).sample_rate_index(),
            Some(11)
        );
        assert_eq!(
            AudioSpecificConfig::aac_lc(16_000, 1).sample_rate_index(),
            Some(8)
        );
        assert_eq!(
            AudioSpecificConfig::aac_lc(48_000, 1).sample_rate_index(),
            Some(3)
        );
        assert_eq!(
            AudioSpecificConfig::aac_lc(12_345, 1).sample_rate_index(),
            None
        );
        assert_eq!(
            AudioSpecificConfig::aac_lc(12_345, 1).to_bytes(),
            Err(AacError::NoRateIndex { rate: 12_345 })
        );
    }

    #[test]
    fn parse_round_trips_and_ignores_the_sbr_extension() {
        for rate in [8_000, 16_000, 24_000, 32_000, 44_100, 48_000] {
            let asc = AudioSpecificConfig::aac_lc(rate, 1);
            let bytes = asc.to_bytes().expect("valid");
            assert_eq!(AudioSpecificConfig::parse(&bytes), Ok(asc));
        }
        // FFmpeg's native encoder at 16 kHz mono: ASC + explicit "no SBR" sync extension.
        let ffmpeg = [0x14, 0x08, 0x56, 0xE5, 0x00];
        assert_eq!(
            AudioSpecificConfig::parse(&ffmpeg),
            Ok(AudioSpecificConfig::aac_lc(16_000, 1))
        );
    }

    #[test]
    fn parse_escapes_and_errors() {
        // Explicit 24-bit rate (index 15): object 2, rate 0x001F40 = 8000, 1 channel.
        let explicit = [0x17, 0x80, 0x0F, 0xA0, 0x08];
        assert_eq!(
            AudioSpecificConfig::parse(&explicit),
            Ok(AudioSpecificConfig::aac_lc(8_000, 1))
        );
        assert_eq!(
            AudioSpecificConfig::parse(&[0x14]),
            Err(AacError::ShortConfig { len: 1 })
        );
        assert_eq!(
            AudioSpecificConfig::parse(&[]),
            Err(AacError::ShortConfig { len: 0 })
        );
        assert_eq!(
            AudioSpecificConfig::parse(&[0x16, 0x88]),
            Err(AacError::ReservedRateIndex { index: 13 })
        );
    }

    #[test]
    fn adts_header_exact_bytes() {
        // 16 kHz mono LC, 100-byte payload → frame_length 107 = 0b000_0000_1101_011.
        let h = adts_header(&AudioSpecificConfig::aac_lc(16_000, 1), 100).expect("fits");
        assert_eq!(h, [0xFF, 0xF1, 0x60, 0x40, 0x0D, 0x7F, 0xFC]);
        // 48 kHz stereo, 1000 bytes → 1007 = 0x3EF.
        let h = adts_header(&AudioSpecificConfig::aac_lc(48_000, 2), 1000).expect("fits");
        assert_eq!(h, [0xFF, 0xF1, 0x4C, 0x80, 0x7D, 0xFF, 0xFC]);
        assert!(matches!(
            adts_header(&AudioSpecificConfig::aac_lc(16_000, 1), 8185),
            Err(AacError::FrameTooLarge { .. })
        ));
        assert!(adts_header(&AudioSpecificConfig::aac_lc(16_000, 1), 8184).is_ok());
        assert!(matches!(
            adts_header(
                &AudioSpecificConfig {
                    object_type: 5,
                    sample_rate: 16_000,
                    channels: 1
                },
                10
            ),
            Err(AacError::ObjectType { .. })
        ));
    }

    #[test]
    fn rfc3640_one_and_two_access_units() {
        let one = rfc3640_payload(&[&[0xAA, 0xBB, 0xCC]]).expect("fits");
        assert_eq!(one, [0x00, 0x10, 0x00, 0x18, 0xAA, 0xBB, 0xCC]);
        let big = vec![0x11; 300];
        let two = rfc3640_payload(&[&[0x01], &big]).expect("fits");
        // 32 bits of headers; AU 1: size 1 → 0x0008; AU 2: size 300 = 0x12C → 0x0960.
        assert_eq!(&two[..6], &[0x00, 0x20, 0x00, 0x08, 0x09, 0x60]);
        assert_eq!(two[6], 0x01);
        assert_eq!(&two[7..], &big[..]);
        assert_eq!(rfc3640_payload(&[]).expect("empty"), [0x00, 0x00]);
    }

    #[test]
    fn rfc3640_rejects_oversized_frames() {
        let huge = vec![0u8; 8192];
        assert_eq!(
            rfc3640_payload(&[&huge]),
            Err(AacError::FrameTooLarge {
                len: 8192,
                what: "an RFC 3640 AU-size"
            })
        );
        let max = vec![0u8; 8191];
        let p = rfc3640_payload(&[&max]).expect("8191 fits");
        assert_eq!(&p[..4], &[0x00, 0x10, 0xFF, 0xF8]);
    }
}
