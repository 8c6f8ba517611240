//! RFC 6184 packetizer (§5.6 single NAL unit, §5.8 FU-A) and an Annex-B splitter (H.264 Annex B).
//! One access unit in, RTP payloads out, marker on the last one (§5.1). No STAP-A: SPS and PPS go
//! as single NAL packets before the IDR, which every depacketizer accepts.

use super::NAL_FU_A;

/// Payload bytes per RTP packet, well under a 1500-byte Ethernet MTU with SRTP overhead.
pub const DEFAULT_MTU: usize = 1200;

/// One RTP payload and whether it ends the access unit (the RTP marker bit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPayload {
    pub data: Vec<u8>,
    pub marker: bool,
}

/// Splits an Annex-B byte stream at 3- and 4-byte start codes; returns the NAL units without
/// start codes. Bytes before the first start code are ignored; empty NALs are skipped.
/// Trailing zero bytes of a NAL (`trailing_zero_8bits`) are removed.
pub fn split_annexb(stream: &[u8]) -> Vec<&[u8]> {
    let mut nals = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i + 3 <= stream.len() {
        if stream[i] == 0 && stream[i + 1] == 0 && stream[i + 2] == 1 {
            if let Some(s) = start {
                push_nal(&mut nals, &stream[s..i]);
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start {
        push_nal(&mut nals, &stream[s..]);
    }
    nals
}

fn push_nal<'a>(nals: &mut Vec<&'a [u8]>, nal: &'a [u8]) {
    // The zero of a 4-byte start code (and any trailing_zero_8bits) belongs to no NAL.
    let end = nal.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    if end > 0 {
        nals.push(&nal[..end]);
    }
}

/// Packetizes access units for non-interleaved mode (packetization-mode 1).
#[derive(Debug, Clone, Copy)]
pub struct Packetizer {
    mtu: usize,
}

impl Default for Packetizer {
    fn default() -> Self {
        Self::new(DEFAULT_MTU)
    }
}

impl Packetizer {
    /// `mtu` is the maximum RTP payload size; values below 3 are raised to 3 (FU headers + 1 byte).
    pub fn new(mtu: usize) -> Self {
        Self { mtu: mtu.max(3) }
    }

    /// Packetizes one access unit given as an Annex-B byte stream.
    pub fn packetize_annexb(&self, access_unit: &[u8]) -> Vec<RtpPayload> {
        self.packetize(&split_annexb(access_unit))
    }

    /// Packetizes one access unit given as NAL units (without start codes).
    pub fn packetize<N: AsRef<[u8]>>(&self, nals: &[N]) -> Vec<RtpPayload> {
        let mut out = Vec::new();
        for nal in nals.iter().map(AsRef::as_ref).filter(|n| !n.is_empty()) {
            if nal.len() <= self.mtu {
                out.push(RtpPayload {
                    data: nal.to_vec(),
                    marker: false,
                });
                continue;
            }
            // FU-A (§5.8): indicator keeps F and NRI, type 28; header has S/E and the NAL type.
            let indicator = (nal[0] & 0xe0) | NAL_FU_A;
            let nal_type = nal[0] & 0x1f;
            let chunks: Vec<&[u8]> = nal[1..].chunks(self.mtu - 2).collect();
            let last = chunks.len().saturating_sub(1);
            for (i, chunk) in chunks.into_iter().enumerate() {
                let mut fu_header = nal_type;
                if i == 0 {
                    fu_header |= 0x80;
                }
                if i == last {
                    fu_header |= 0x40;
                }
                let mut data = Vec::with_capacity(chunk.len() + 2);
                data.extend_from_slice(&[indicator, fu_header]);
                data.extend_from_slice(chunk);
                out.push(RtpPayload {
                    data,
                    marker: false,
                });
            }
        }
        if let Some(last) = out.last_mut() {
            last.marker = true;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal reassembler for the round trip (single NAL + FU-A only).
    fn reassemble(payloads: &[RtpPayload]) -> Vec<Vec<u8>> {
        let mut nals = Vec::new();
        let mut current: Option<Vec<u8>> = None;
        for p in payloads {
            let d = &p.data;
            if d[0] & 0x1f == NAL_FU_A {
                if d[1] & 0x80 != 0 {
                    current = Some(vec![(d[0] & 0xe0) | (d[1] & 0x1f)]);
                }
                let cur = current.as_mut().expect("FU-A start seen");
                cur.extend_from_slice(&d[2..]);
                if d[1] & 0x40 != 0 {
                    nals.push(current.take().expect("open FU-A"));
                }
            } else {
                nals.push(d.clone());
            }
        }
        nals
    }

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let s = [
            0xff, 0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 0, 0, 0, 0, 1,
        ];
        let nals = split_annexb(&s);
        assert_eq!(nals, vec![&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 4]]);
        assert!(split_annexb(&[1, 2, 3]).is_empty());
        assert!(split_annexb(&[]).is_empty());
        assert!(split_annexb(&[0, 0, 1]).is_empty());
    }

    #[test]
    fn small_nals_are_single_packets_with_marker_on_last() {
        let p = Packetizer::new(1200);
        let out = p.packetize(&[vec![0x67, 0x42], vec![0x68, 0xce], vec![0x65, 0x88, 0x84]]);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].data, [0x67, 0x42]);
        assert_eq!(
            out.iter().map(|p| p.marker).collect::<Vec<_>>(),
            [false, false, true]
        );
        assert!(p.packetize::<Vec<u8>>(&[]).is_empty());
    }

    #[test]
    fn fu_a_exact_headers() {
        // IDR with NRI 3 (0x65), 10 bytes of payload after the NAL header, MTU 6 -> 4 bytes each.
        let mut nal = vec![0x65];
        nal.extend(1..=10u8);
        let out = Packetizer::new(6).packetize(&[nal.clone()]);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].data, [0x7c, 0x85, 1, 2, 3, 4]);
        assert_eq!(out[1].data, [0x7c, 0x05, 5, 6, 7, 8]);
        assert_eq!(out[2].data, [0x7c, 0x45, 9, 10]);
        assert_eq!(
            out.iter().map(|p| p.marker).collect::<Vec<_>>(),
            [false, false, true]
        );
        // Non-IDR slice with NRI 2 (0x41): indicator 0x5c, header type 1.
        let mut slice = vec![0x41];
        slice.extend([0u8; 8]);
        let out = Packetizer::new(6).packetize(&[slice]);
        assert_eq!(out[0].data[..2], [0x5c, 0x81]);
        assert_eq!(out[1].data[..2], [0x5c, 0x41]);
    }

    #[test]
    fn round_trip_annexb_access_unit() {
        let sps = vec![0x67, 0x42, 0x80, 0x1f, 0xda];
        let pps = vec![0x68, 0xce, 0x06, 0xe2];
        let idr: Vec<u8> = std::iter::once(0x65)
            .chain((0..5000u32).map(|i| (i * 7 + 1) as u8 | 1))
            .collect();
        let mut au = Vec::new();
        for nal in [&sps, &pps, &idr] {
            au.extend_from_slice(&[0, 0, 0, 1]);
            au.extend_from_slice(nal);
        }
        let out = Packetizer::default().packetize_annexb(&au);
        assert!(out.iter().all(|p| p.data.len() <= DEFAULT_MTU));
        assert_eq!(out.len(), 2 + 5); // 5000 bytes in 1198-byte fragments -> 5 FU-As
        assert_eq!(out.iter().filter(|p| p.marker).count(), 1);
        assert!(out.last().is_some_and(|p| p.marker));
        assert_eq!(reassemble(&out), vec![sps, pps, idr]);
    }

    #[test]
    fn nal_exactly_mtu_is_single() {
        let nal = vec![0x41; 1200];
        let out = Packetizer::default().packetize(std::slice::from_ref(&nal));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, nal);
        assert_eq!(
            Packetizer::default().packetize(&[vec![0x41; 1201]]).len(),
            2
        );
    }
}
