//! G.711 decoders (ITU-T G.711: μ-law and A-law, 8 kHz, one byte per sample), as RTP static
//! payload types 0 (PCMU) and 8 (PCMA) carry them (RFC 3551 §4.5.14, table 4). Pure; the talk
//! path (`media::talk`) feeds the samples to the Speex encoder. No encoders: the bridge only
//! receives G.711 (an ONVIF backchannel client sends it).

/// Which G.711 law a payload uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Law {
    /// μ-law, RTP `PCMU/8000`, static PT 0.
    Mu,
    /// A-law, RTP `PCMA/8000`, static PT 8.
    A,
}

/// G.711's sample rate (and RTP clock rate).
pub const RATE: u32 = 8_000;

impl Law {
    /// The static RTP payload type (RFC 3551 table 4).
    pub fn static_pt(self) -> u8 {
        match self {
            Self::Mu => 0,
            Self::A => 8,
        }
    }

    /// The law of a static payload type: 0 → μ-law, 8 → A-law.
    pub fn from_static_pt(pt: u8) -> Option<Self> {
        match pt {
            0 => Some(Self::Mu),
            8 => Some(Self::A),
            _ => None,
        }
    }

    /// The law of an SDP encoding name (`PCMU`, `PCMA`, any case).
    pub fn from_encoding(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("PCMU") {
            Some(Self::Mu)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(Self::A)
        } else {
            None
        }
    }

    pub fn decode(self, byte: u8) -> i16 {
        match self {
            Self::Mu => ulaw_to_linear(byte),
            Self::A => alaw_to_linear(byte),
        }
    }

    /// Appends one payload's samples (16-bit linear) to `out`.
    pub fn decode_into(self, payload: &[u8], out: &mut Vec<i16>) {
        out.extend(payload.iter().map(|b| self.decode(*b)));
    }
}

/// μ-law byte → 16-bit linear (G.711 table 2; the 14-bit result scaled by 4, as G.191 does).
pub fn ulaw_to_linear(byte: u8) -> i16 {
    // The byte is sent inverted; sign in bit 7, 3-bit segment, 4-bit mantissa.
    let u = !byte;
    let segment = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0f);
    // Bias 0x84 (132) makes each segment's steps start where the previous ended.
    let magnitude = (((mantissa << 3) + 0x84) << segment) - 0x84;
    let value = if u & 0x80 != 0 { -magnitude } else { magnitude };
    value as i16
}

/// A-law byte → 16-bit linear (G.711 table 1; the 13-bit result scaled by 8).
pub fn alaw_to_linear(byte: u8) -> i16 {
    // Even bits are inverted on the line (XOR 0x55); bit 7 set means positive.
    let a = byte ^ 0x55;
    let segment = (a >> 4) & 0x07;
    let mantissa = i32::from(a & 0x0f);
    let magnitude = match segment {
        0 => (mantissa << 4) + 8,
        s => ((mantissa << 4) + 0x108) << (s - 1),
    };
    let value = if a & 0x80 != 0 { magnitude } else { -magnitude };
    value as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known values (G.711 tables; the same as G.191's reference decoder and FFmpeg's
    /// `pcm_mulaw`/`pcm_alaw` — the integration test `talk::g711_matches_ffmpeg` compares all
    /// 256 codes of each law with FFmpeg's decoders).
    #[test]
    fn ulaw_table() {
        for (byte, linear) in [
            (0xff, 0),
            (0x7f, 0),
            (0xfe, 8),
            (0x7e, -8),
            (0xf0, 120),
            (0x70, -120),
            (0xef, 132),
            (0x6f, -132),
            (0x80, 32124),
            (0x00, -32124),
            (0x8f, 16764),
            (0x0f, -16764),
            (0xa0, 7932),
            (0x20, -7932),
        ] {
            assert_eq!(ulaw_to_linear(byte), linear, "μ-law {byte:#04x}");
        }
    }

    #[test]
    fn alaw_table() {
        for (byte, linear) in [
            (0xd5, 8),
            (0x55, -8),
            (0xd4, 24),
            (0x54, -24),
            (0xaa, 32256),
            (0x2a, -32256),
            (0xc5, 264),
            (0x45, -264),
            (0xf5, 528),
            (0x80, 5504),
            (0x00, -5504),
        ] {
            assert_eq!(alaw_to_linear(byte), linear, "A-law {byte:#04x}");
        }
    }

    #[test]
    fn both_laws_are_odd_symmetric_and_monotonic() {
        for law in [Law::Mu, Law::A] {
            let mut positive: Vec<i16> = (0..=255u8)
                .map(|b| law.decode(b))
                .filter(|v| *v > 0)
                .collect();
            positive.sort_unstable();
            positive.dedup();
            // 128 codes per sign; μ-law has two zeros, so 127 distinct positive values.
            let expected = if law == Law::Mu { 127 } else { 128 };
            assert_eq!(positive.len(), expected, "{law:?}");
            for b in 0..=255u8 {
                // Flipping the sign bit negates the value.
                assert_eq!(law.decode(b), -law.decode(b ^ 0x80), "{law:?} {b:#04x}");
            }
        }
    }

    #[test]
    fn static_payload_types_and_names() {
        assert_eq!(Law::from_static_pt(0), Some(Law::Mu));
        assert_eq!(Law::from_static_pt(8), Some(Law::A));
        assert_eq!(Law::from_static_pt(96), None);
        assert_eq!(Law::from_encoding("pcma"), Some(Law::A));
        assert_eq!(Law::from_encoding("PCMU"), Some(Law::Mu));
        assert_eq!(Law::from_encoding("speex"), None);
        assert_eq!(Law::A.static_pt(), 8);
        let mut out = Vec::new();
        Law::Mu.decode_into(&[0xff, 0x00, 0x80], &mut out);
        assert_eq!(out, [0, -32124, 32124]);
    }
}
