//! RTCP (RFC 3550 §6.4) Sender/Receiver Reports and the RFC 4585 §6.3.1 PLI: builders with exact
//! bytes, and a compound parser that yields what it recognises and never panics on garbage.
//! SRTCP protection is not done here (see `proto::srtp`).

use std::time::{SystemTime, UNIX_EPOCH};

pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
/// Payload-specific feedback (RFC 4585 §6.1); FMT 1 is Picture Loss Indication.
pub const PT_PSFB: u8 = 206;
pub const FMT_PLI: u8 = 1;
/// Seconds from 1900-01-01 (NTP era 0) to 1970-01-01.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
const REPORT_BLOCK_LEN: usize = 24;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RtcpError {
    #[error("RTCP packet at offset {offset}: {len} bytes left, header needs 4")]
    TooShort { offset: usize, len: usize },
    #[error("RTCP packet at offset {offset}: version {version}, expected 2")]
    Version { offset: usize, version: u8 },
    #[error("RTCP packet at offset {offset} (PT {pt}): length says {declared} bytes, {left} left")]
    Truncated {
        offset: usize,
        pt: u8,
        declared: usize,
        left: usize,
    },
    #[error("RTCP PT {pt} at offset {offset}: body of {len} bytes too short for its contents")]
    Body { offset: usize, pt: u8, len: usize },
}

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: u32,
    pub fraction_lost: u8,
    /// 24-bit signed count on the wire; kept as the raw 24 bits.
    pub cumulative_lost: u32,
    pub highest_seq: u32,
    pub jitter: u32,
    pub last_sr: u32,
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        let lost = self.cumulative_lost & 0x00ff_ffff;
        out.push(self.fraction_lost);
        out.extend_from_slice(&lost.to_be_bytes()[1..]);
        out.extend_from_slice(&self.highest_seq.to_be_bytes());
        out.extend_from_slice(&self.jitter.to_be_bytes());
        out.extend_from_slice(&self.last_sr.to_be_bytes());
        out.extend_from_slice(&self.delay_since_last_sr.to_be_bytes());
    }

    fn parse(b: &[u8]) -> Self {
        let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Self {
            ssrc: word(0),
            fraction_lost: b[4],
            cumulative_lost: word(4) & 0x00ff_ffff,
            highest_seq: word(8),
            jitter: word(12),
            last_sr: word(16),
            delay_since_last_sr: word(20),
        }
    }
}

/// What the compound parser recognises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    SenderReport {
        ssrc: u32,
        ntp: u64,
        rtp_timestamp: u32,
        packet_count: u32,
        octet_count: u32,
        reports: Vec<ReportBlock>,
    },
    ReceiverReport {
        ssrc: u32,
        reports: Vec<ReportBlock>,
    },
    Pli {
        sender_ssrc: u32,
        media_ssrc: u32,
    },
    /// SDES, BYE, APP, other feedback: skipped but reported.
    Other {
        pt: u8,
        count: u8,
    },
}

/// The 64-bit NTP timestamp (RFC 3550 §4) of `t`.
pub fn ntp_timestamp(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs().wrapping_add(NTP_UNIX_OFFSET);
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

fn header(out: &mut Vec<u8>, count: u8, pt: u8, words_after_header: usize) {
    out.push(0x80 | (count & 0x1f));
    out.push(pt);
    // The length field counts 32-bit words minus one; the header itself is the "minus one".
    out.extend_from_slice(&(words_after_header as u16).to_be_bytes());
}

/// A Sender Report with up to 31 report blocks (extra blocks are ignored).
pub fn sender_report(
    ssrc: u32,
    ntp: u64,
    rtp_timestamp: u32,
    packet_count: u32,
    octet_count: u32,
    reports: &[ReportBlock],
) -> Vec<u8> {
    let reports = &reports[..reports.len().min(31)];
    let mut out = Vec::with_capacity(28 + REPORT_BLOCK_LEN * reports.len());
    header(&mut out, reports.len() as u8, PT_SR, 6 + 6 * reports.len());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(&ntp.to_be_bytes());
    out.extend_from_slice(&rtp_timestamp.to_be_bytes());
    out.extend_from_slice(&packet_count.to_be_bytes());
    out.extend_from_slice(&octet_count.to_be_bytes());
    reports.iter().for_each(|r| r.write_to(&mut out));
    out
}

/// A Receiver Report with up to 31 report blocks (extra blocks are ignored).
pub fn receiver_report(ssrc: u32, reports: &[ReportBlock]) -> Vec<u8> {
    let reports = &reports[..reports.len().min(31)];
    let mut out = Vec::with_capacity(8 + REPORT_BLOCK_LEN * reports.len());
    header(&mut out, reports.len() as u8, PT_RR, 1 + 6 * reports.len());
    out.extend_from_slice(&ssrc.to_be_bytes());
    reports.iter().for_each(|r| r.write_to(&mut out));
    out
}

/// A Picture Loss Indication (RFC 4585 §6.3.1): PT 206, FMT 1, no FCI.
pub fn pli(sender_ssrc: u32, media_ssrc: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    header(&mut out, FMT_PLI, PT_PSFB, 2);
    out.extend_from_slice(&sender_ssrc.to_be_bytes());
    out.extend_from_slice(&media_ssrc.to_be_bytes());
    out
}

/// Iterates the packets of a compound RTCP datagram; after the first error it yields nothing more.
pub struct CompoundIter<'a> {
    buf: &'a [u8],
    offset: usize,
    failed: bool,
}

/// Parses a (decrypted) compound RTCP datagram.
pub fn parse_compound(buf: &[u8]) -> CompoundIter<'_> {
    CompoundIter {
        buf,
        offset: 0,
        failed: false,
    }
}

impl Iterator for CompoundIter<'_> {
    type Item = Result<RtcpPacket, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.offset >= self.buf.len() {
            return None;
        }
        let item = self.parse_one();
        self.failed = item.is_err();
        Some(item)
    }
}

impl CompoundIter<'_> {
    fn parse_one(&mut self) -> Result<RtcpPacket, RtcpError> {
        let offset = self.offset;
        let rest = &self.buf[offset..];
        if rest.len() < 4 {
            return Err(RtcpError::TooShort {
                offset,
                len: rest.len(),
            });
        }
        let version = rest[0] >> 6;
        if version != 2 {
            return Err(RtcpError::Version { offset, version });
        }
        let count = rest[0] & 0x1f;
        let pt = rest[1];
        let declared = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
        let packet = rest.get(..declared).ok_or(RtcpError::Truncated {
            offset,
            pt,
            declared,
            left: rest.len(),
        })?;
        self.offset += declared;
        // Padding (P bit) only ever ends the last packet; the blocks we read come first anyway.
        let body = &packet[4..];
        let too_short = || RtcpError::Body {
            offset,
            pt,
            len: body.len(),
        };
        let word = |i: usize| -> Result<u32, RtcpError> {
            body.get(i..i + 4)
                .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
                .ok_or_else(too_short)
        };
        let blocks = |from: usize| -> Result<Vec<ReportBlock>, RtcpError> {
            let n = usize::from(count);
            let raw = body
                .get(from..from + n * REPORT_BLOCK_LEN)
                .ok_or_else(too_short)?;
            Ok(raw
                .chunks_exact(REPORT_BLOCK_LEN)
                .map(ReportBlock::parse)
                .collect())
        };
        Ok(match pt {
            PT_SR => RtcpPacket::SenderReport {
                ssrc: word(0)?,
                ntp: (u64::from(word(4)?) << 32) | u64::from(word(8)?),
                rtp_timestamp: word(12)?,
                packet_count: word(16)?,
                octet_count: word(20)?,
                reports: blocks(24)?,
            },
            PT_RR => RtcpPacket::ReceiverReport {
                ssrc: word(0)?,
                reports: blocks(4)?,
            },
            PT_PSFB if count == FMT_PLI => RtcpPacket::Pli {
                sender_ssrc: word(0)?,
                media_ssrc: word(4)?,
            },
            _ => RtcpPacket::Other { pt, count },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pli_exact_bytes() {
        assert_eq!(
            pli(0x1122_3344, 0xaabb_ccdd),
            [
                0x81, 206, 0, 2, 0x11, 0x22, 0x33, 0x44, 0xaa, 0xbb, 0xcc, 0xdd
            ]
        );
    }

    #[test]
    fn sender_report_exact_bytes() {
        let sr = sender_report(1, 0x0102_0304_0506_0708, 0x0a0b_0c0d, 5, 600, &[]);
        assert_eq!(
            sr,
            [
                0x80, 200, 0, 6, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 0x0a, 0x0b, 0x0c, 0x0d, 0, 0,
                0, 5, 0, 0, 2, 0x58
            ]
        );
    }

    #[test]
    fn receiver_report_exact_bytes() {
        let block = ReportBlock {
            ssrc: 2,
            fraction_lost: 0x10,
            cumulative_lost: 0x0102_0304, // only 24 bits go on the wire
            highest_seq: 3,
            jitter: 4,
            last_sr: 5,
            delay_since_last_sr: 6,
        };
        let rr = receiver_report(7, &[block]);
        let mut want = vec![0x81, 201, 0, 7, 0, 0, 0, 7, 0, 0, 0, 2, 0x10, 2, 3, 4];
        want.extend_from_slice(&[0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6]);
        assert_eq!(rr, want);
        let parsed: Vec<_> = parse_compound(&rr).collect();
        let mut expect = block;
        expect.cumulative_lost = 0x02_0304;
        assert_eq!(
            parsed,
            vec![Ok(RtcpPacket::ReceiverReport {
                ssrc: 7,
                reports: vec![expect]
            })]
        );
    }

    #[test]
    fn parses_compound_rr_sdes_pli() {
        let mut buf = receiver_report(9, &[]);
        // SDES with one empty chunk (SSRC 9, END), 3 words.
        buf.extend_from_slice(&[0x81, 202, 0, 2, 0, 0, 0, 9, 0, 0, 0, 0]);
        buf.extend_from_slice(&pli(9, 0x55));
        let got: Vec<_> = parse_compound(&buf).collect();
        assert_eq!(
            got,
            vec![
                Ok(RtcpPacket::ReceiverReport {
                    ssrc: 9,
                    reports: vec![]
                }),
                Ok(RtcpPacket::Other { pt: 202, count: 1 }),
                Ok(RtcpPacket::Pli {
                    sender_ssrc: 9,
                    media_ssrc: 0x55
                }),
            ]
        );
        let sr = sender_report(3, 42, 43, 44, 45, &[ReportBlock::default()]);
        assert!(matches!(
            parse_compound(&sr).next(),
            Some(Ok(RtcpPacket::SenderReport { ssrc: 3, ntp: 42, ref reports, .. })) if reports.len() == 1
        ));
    }

    #[test]
    fn garbage_gives_typed_errors() {
        assert_eq!(
            parse_compound(&[0x80, 200]).next(),
            Some(Err(RtcpError::TooShort { offset: 0, len: 2 }))
        );
        assert_eq!(
            parse_compound(&[0x00, 200, 0, 0]).next(),
            Some(Err(RtcpError::Version {
                offset: 0,
                version: 0
            }))
        );
        assert!(matches!(
            parse_compound(&[0x80, 200, 0, 9, 0, 0, 0, 0]).next(),
            Some(Err(RtcpError::Truncated { declared: 40, .. }))
        ));
        // RR claiming 2 blocks with none present.
        assert!(matches!(
            parse_compound(&[0x82, 201, 0, 1, 0, 0, 0, 1]).next(),
            Some(Err(RtcpError::Body { pt: 201, .. }))
        ));
        // PLI without media SSRC.
        assert!(matches!(
            parse_compound(&[0x81, 206, 0, 1, 0, 0, 0, 1]).next(),
            Some(Err(RtcpError::Body { pt: 206, .. }))
        ));
        // After an error the iterator ends.
        let mut it = parse_compound(&[0x00, 0, 0, 0, 0x81, 206, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(it.next(), Some(Err(_))));
        assert_eq!(it.next(), None);
        for len in 0..64usize {
            let junk: Vec<u8> = (0..len).map(|i| (i * 53 + 0x81) as u8).collect();
            let _ = parse_compound(&junk).count();
        }
    }

    #[test]
    fn ntp_of_unix_epoch() {
        assert_eq!(ntp_timestamp(UNIX_EPOCH), NTP_UNIX_OFFSET << 32);
        let half = UNIX_EPOCH + std::time::Duration::from_millis(500);
        assert_eq!(ntp_timestamp(half) & 0xffff_ffff, 0x8000_0000);
    }
}
