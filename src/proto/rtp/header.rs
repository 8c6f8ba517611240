//! The fixed RTP header (RFC 3550 §5.1): writing our 12-byte header and reading any valid one,
//! tolerating CSRC lists, a header extension (§5.3.1) and padding. Payload formats live elsewhere.

/// RTP version 2, the only version in use.
pub const VERSION: u8 = 2;
/// Bytes of the fixed header (no CSRC, no extension).
pub const FIXED_HEADER_LEN: usize = 12;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RtpError {
    #[error("RTP packet of {0} bytes is shorter than the 12-byte header")]
    TooShort(usize),
    #[error("RTP version {0}, expected 2")]
    Version(u8),
    #[error("RTP packet of {len} bytes: CSRC list/extension/padding needs {needed}")]
    Truncated { len: usize, needed: usize },
}

/// The fields of the fixed header that a sender chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

impl RtpHeader {
    /// Appends the 12-byte header (V=2, no padding, no extension, no CSRC).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.push(VERSION << 6);
        out.push((u8::from(self.marker) << 7) | (self.payload_type & 0x7f));
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
    }

    /// A whole packet: header followed by `payload`.
    pub fn to_packet(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED_HEADER_LEN + payload.len());
        self.write_to(&mut out);
        out.extend_from_slice(payload);
        out
    }
}

/// A parsed view of one RTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub header: RtpHeader,
    pub csrcs: Vec<u32>,
    /// Profile-defined id and data of the header extension, if present.
    pub extension: Option<(u16, &'a [u8])>,
    /// The payload with any padding removed.
    pub payload: &'a [u8],
}

impl<'a> RtpPacket<'a> {
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        if buf.len() < FIXED_HEADER_LEN {
            return Err(RtpError::TooShort(buf.len()));
        }
        let version = buf[0] >> 6;
        if version != VERSION {
            return Err(RtpError::Version(version));
        }
        let has_padding = buf[0] & 0x20 != 0;
        let has_extension = buf[0] & 0x10 != 0;
        let csrc_count = usize::from(buf[0] & 0x0f);
        let header = RtpHeader {
            marker: buf[1] & 0x80 != 0,
            payload_type: buf[1] & 0x7f,
            sequence: u16::from_be_bytes([buf[2], buf[3]]),
            timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        };
        let truncated = |needed| RtpError::Truncated {
            len: buf.len(),
            needed,
        };
        let mut pos = FIXED_HEADER_LEN + 4 * csrc_count;
        let csrc_bytes = buf
            .get(FIXED_HEADER_LEN..pos)
            .ok_or_else(|| truncated(pos))?;
        let csrcs = csrc_bytes
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let mut extension = None;
        if has_extension {
            let ext = buf.get(pos..pos + 4).ok_or_else(|| truncated(pos + 4))?;
            let id = u16::from_be_bytes([ext[0], ext[1]]);
            let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
            let start = pos + 4;
            let end = start + 4 * words;
            extension = Some((id, buf.get(start..end).ok_or_else(|| truncated(end))?));
            pos = end;
        }
        let mut end = buf.len();
        if has_padding {
            let pad = usize::from(buf[buf.len() - 1]);
            if pad == 0 || pos + pad > buf.len() {
                return Err(truncated(pos + pad.max(1)));
            }
            end -= pad;
        }
        Ok(Self {
            header,
            csrcs,
            extension,
            payload: &buf[pos..end],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_exact_bytes() {
        let h = RtpHeader {
            marker: true,
            payload_type: 96,
            sequence: 0x1234,
            timestamp: 0xdead_beef,
            ssrc: 0x0102_0304,
        };
        assert_eq!(
            h.to_packet(&[0xaa]),
            [
                0x80, 0xe0, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 0xaa
            ]
        );
        let buf = h.to_packet(b"xyz");
        let p = RtpPacket::parse(&buf).expect("valid");
        assert_eq!(p.header, h);
        assert_eq!(p.payload, b"xyz");
    }

    #[test]
    fn reads_csrc_extension_and_padding() {
        // V=2 P=1 X=1 CC=1, PT 110, seq 7, ts 160, SSRC 9, CSRC 5, ext 0xBEDE len 1, payload, pad 3.
        let buf = [
            0xb1, 110, 0, 7, 0, 0, 0, 160, 0, 0, 0, 9, 0, 0, 0, 5, 0xbe, 0xde, 0, 1, 1, 2, 3, 4,
            0x42, 0x43, 0, 0, 3,
        ];
        let p = RtpPacket::parse(&buf).expect("valid");
        assert!(!p.header.marker);
        assert_eq!(p.header.payload_type, 110);
        assert_eq!(p.header.sequence, 7);
        assert_eq!(p.header.timestamp, 160);
        assert_eq!(p.csrcs, vec![5]);
        assert_eq!(p.extension, Some((0xbede, &[1u8, 2, 3, 4][..])));
        assert_eq!(p.payload, &[0x42, 0x43]);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(RtpPacket::parse(&[0x80; 5]), Err(RtpError::TooShort(5)));
        assert_eq!(RtpPacket::parse(&[0x40; 12]), Err(RtpError::Version(1)));
        // CC=15 but no CSRCs.
        assert!(matches!(
            RtpPacket::parse(&[0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(RtpError::Truncated { .. })
        ));
        // Padding count larger than the packet.
        let mut pad = vec![0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        pad.push(200);
        assert!(RtpPacket::parse(&pad).is_err());
        // Extension header cut short.
        assert!(RtpPacket::parse(&[0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe]).is_err());
        for len in 0..40 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 0x91) as u8).collect();
            let _ = RtpPacket::parse(&junk);
        }
    }
}
