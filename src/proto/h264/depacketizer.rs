//! Loss-aware RFC 6184 depacketizer (§5.6 single NAL, §5.7.1 STAP-A, §5.8 FU-A) for the receive
//! path after the reorder buffer: in-order packets (maybe with gaps) in, whole access units out.
//! After any loss it drops access units until the next complete IDR, and every keyframe it emits
//! starts with SPS + PPS. Pure (no clock); bounded. Interleaved structures are counted, ignored.

use bytes::Bytes;

use super::{
    NAL_AUD, NAL_FU_A, NAL_IDR, NAL_PPS, NAL_SLICE, NAL_SPS, NAL_STAP_A, SpsInfo, nal_type,
};

/// Default cap on one access unit (NAL bytes plus 4 per NAL).
pub const MAX_AU_BYTES: usize = 2 << 20;
/// Default cap on one NAL unit being reassembled from FU-A fragments.
pub const MAX_NAL_BYTES: usize = 2 << 20;
/// Default cap on the NAL units of one access unit (many tiny NALs cost more than their bytes).
pub const MAX_AU_NALS: usize = 1024;
/// Sequence numbers up to this far behind the previous one are duplicates or late packets, not a
/// sender restart (RFC 3550 A.1 `MAX_MISORDER`; the same bound as the reorder buffer).
const MAX_MISORDER: i16 = 100;

/// One access unit (one picture): NAL units without start codes, in decode order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    /// RTP 90 kHz timestamp of the access unit.
    pub timestamp: u32,
    /// NAL units without start codes; a keyframe starts with SPS then PPS.
    pub nals: Vec<Bytes>,
    /// Contains an IDR slice (type 5).
    pub keyframe: bool,
}

impl AccessUnit {
    /// H.264 Annex B byte stream: each NAL behind a 4-byte start code.
    pub fn to_annexb(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.byte_len() + 4 * self.nals.len());
        for nal in &self.nals {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(nal);
        }
        out
    }

    /// AVCC (ISO/IEC 14496-15) sample: each NAL behind its 4-byte big-endian length.
    pub fn to_avcc(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.byte_len() + 4 * self.nals.len());
        for nal in &self.nals {
            // A NAL is capped far below 4 GiB (MAX_NAL_BYTES), so the length always fits.
            out.extend_from_slice(&u32::try_from(nal.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(nal);
        }
        out
    }

    /// Bytes of the NAL units themselves (no start codes or length prefixes).
    pub fn byte_len(&self) -> usize {
        self.nals.iter().map(Bytes::len).sum()
    }
}

/// Size caps that keep garbage from growing memory without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_au_bytes: usize,
    pub max_nal_bytes: usize,
    pub max_au_nals: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_au_bytes: MAX_AU_BYTES,
            max_nal_bytes: MAX_NAL_BYTES,
            max_au_nals: MAX_AU_NALS,
        }
    }
}

/// Counters since creation (`reset` keeps them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DepacketizerStats {
    /// Access units returned by `push`.
    pub aus_out: u64,
    /// NAL units lost to a gap, an FU-A error, a malformed STAP-A or a cap.
    pub nals_dropped: u64,
    /// Complete access units dropped because the stream waits for an IDR (start, after loss).
    pub aus_dropped_waiting_for_idr: u64,
    /// Access units dropped because part of them was lost or unusable.
    pub aus_dropped_incomplete: u64,
    /// FU-A protocol errors: continuation without start, start while open, no end, bad header.
    pub fu_errors: u64,
    /// Payloads ignored: empty, types 0/25–27/29–31, malformed or empty STAP-A.
    pub bad_payloads: u64,
    /// Sequence gaps seen (one per jump, whatever its size).
    pub seq_gaps: u64,
    /// Sequence numbers missing in those gaps.
    pub packets_lost: u64,
    /// Duplicate or older packets ignored.
    pub stale_packets: u64,
    /// NAL units or access units over a cap in `Limits`.
    pub oversize: u64,
}

/// FU-A reassembly state.
#[derive(Debug)]
enum Fu {
    Idle,
    Open(Vec<u8>),
    /// The rest of a NAL already given up (gap, error, cap): eat its fragments quietly.
    Discarding,
}

/// The access unit being collected.
#[derive(Debug)]
struct PendingAu {
    timestamp: u32,
    nals: Vec<Bytes>,
    bytes: usize,
    /// Something of it was lost or unusable: it will be dropped (its NALs are freed at once).
    damaged: bool,
    /// It began right after a gap (or on the first packet): its head may be missing.
    needs_clean_start: bool,
}

/// The depacketizer for one RTP stream (one SSRC).
#[derive(Debug)]
pub struct Depacketizer {
    limits: Limits,
    last_seq: Option<u16>,
    au: Option<PendingAu>,
    fu: Fu,
    waiting_for_idr: bool,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    sps_info: Option<SpsInfo>,
    stats: DepacketizerStats,
}

impl Default for Depacketizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Depacketizer {
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> Self {
        Self {
            limits,
            last_seq: None,
            au: None,
            fu: Fu::Idle,
            waiting_for_idr: true,
            sps: None,
            pps: None,
            sps_info: None,
            stats: DepacketizerStats::default(),
        }
    }

    /// The last SPS seen (NAL without start code).
    pub fn sps(&self) -> Option<&Bytes> {
        self.sps.as_ref()
    }

    /// The last PPS seen (NAL without start code).
    pub fn pps(&self) -> Option<&Bytes> {
        self.pps.as_ref()
    }

    /// What the last SPS says (None when it does not parse).
    pub fn sps_info(&self) -> Option<&SpsInfo> {
        self.sps_info.as_ref()
    }

    pub fn stats(&self) -> DepacketizerStats {
        self.stats
    }

    /// Whether access units are being dropped until an IDR: the moment to send a PLI.
    pub fn waiting_for_keyframe(&self) -> bool {
        self.waiting_for_idr
    }

    /// Forget the stream state (e.g. a new call): waits for a new IDR again but keeps the cached
    /// SPS/PPS.
    pub fn reset(&mut self) {
        self.last_seq = None;
        self.au = None;
        self.fu = Fu::Idle;
        self.waiting_for_idr = true;
    }

    /// One RTP packet (already decrypted, in sequence order). Returns the access units it
    /// completed (0, 1, or 2 when a timestamp change closes the previous AU and the packet itself
    /// completes one).
    pub fn push(
        &mut self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Vec<AccessUnit> {
        let mut out = Vec::new();
        // Missing sequence numbers before this packet; None for the first packet (unknown past).
        let lost = match self.last_seq {
            None => None,
            Some(last) => {
                let delta = seq.wrapping_sub(last);
                // Reinterpreting the 16-bit distance as signed is the RFC 3550 A.1 comparison.
                let signed = delta as i16;
                if (-MAX_MISORDER..=0).contains(&signed) {
                    self.stats.stale_packets += 1;
                    return out;
                }
                // Further behind than MAX_MISORDER is a restart: a jump like any other gap.
                Some(delta.wrapping_sub(1))
            }
        };
        self.last_seq = Some(seq);
        let gap = lost != Some(0);
        if let Some(n) = lost.filter(|&n| n > 0) {
            self.stats.seq_gaps += 1;
            self.stats.packets_lost += u64::from(n);
            self.waiting_for_idr = true;
            // Whatever was open may have lost its tail; a half NAL is never glued across a gap.
            self.damage();
            if matches!(self.fu, Fu::Open(_)) {
                self.stats.nals_dropped += 1;
            }
            self.fu = Fu::Idle;
        }
        // A timestamp change ends the previous access unit, marker or not (§5.1).
        if self.au.as_ref().is_some_and(|au| au.timestamp != timestamp) {
            out.extend(self.close_au());
        }
        if gap {
            // Fragments right after a gap continue a NAL whose start is gone: not an FU error.
            self.fu = Fu::Discarding;
        }
        let au = self.au.get_or_insert_with(|| PendingAu {
            timestamp,
            nals: Vec::new(),
            bytes: 0,
            damaged: false,
            needs_clean_start: gap,
        });
        if au.needs_clean_start {
            au.needs_clean_start = false;
            if !starts_picture(payload) {
                // Joined mid-picture, or the lost packets were this picture's head.
                self.damage();
            }
        }
        self.handle_payload(payload);
        if marker {
            out.extend(self.close_au());
        }
        out
    }

    fn handle_payload(&mut self, payload: &[u8]) {
        match nal_type(payload) {
            NAL_FU_A => self.handle_fu_a(payload),
            t => {
                self.end_fu_before_whole_nal();
                match t {
                    1..=23 => self.add_nal(Bytes::copy_from_slice(payload)),
                    NAL_STAP_A => self.handle_stap_a(payload),
                    25..=27 | 29 => {
                        // STAP-B, MTAP16/24, FU-B (interleaved mode): NALs we cannot use.
                        self.stats.bad_payloads += 1;
                        self.damage();
                    }
                    // Empty payload, type 0 or the reserved 30/31: ignored (§5.2).
                    _ => self.stats.bad_payloads += 1,
                }
            }
        }
    }

    /// A whole NAL (single or STAP-A) arrived while a fragmented one was still open.
    fn end_fu_before_whole_nal(&mut self) {
        if matches!(self.fu, Fu::Open(_)) {
            self.stats.fu_errors += 1;
            self.stats.nals_dropped += 1;
            self.damage();
        }
        self.fu = Fu::Idle;
    }

    fn handle_stap_a(&mut self, payload: &[u8]) {
        let mut rest = payload.get(1..).unwrap_or_default();
        if rest.is_empty() {
            self.stats.bad_payloads += 1;
            return;
        }
        while !rest.is_empty() {
            let Some((nal, tail)) = stap_unit(rest) else {
                // A size past the end or a lone size byte: the rest is lost.
                self.stats.bad_payloads += 1;
                self.stats.nals_dropped += 1;
                self.damage();
                return;
            };
            rest = tail;
            match nal_type(nal) {
                // A zero-size unit carries nothing.
                _ if nal.is_empty() => {}
                1..=23 => self.add_nal(Bytes::copy_from_slice(nal)),
                _ => {
                    self.stats.nals_dropped += 1;
                    self.damage();
                }
            }
        }
    }

    fn handle_fu_a(&mut self, payload: &[u8]) {
        let (Some(&indicator), Some(&header)) = (payload.first(), payload.get(1)) else {
            self.stats.fu_errors += 1;
            self.damage();
            self.fu = Fu::Idle;
            return;
        };
        let data = payload.get(2..).unwrap_or_default();
        let (start, end, original) = (header & 0x80 != 0, header & 0x40 != 0, header & 0x1f);
        if !(1..=23).contains(&original) {
            self.stats.fu_errors += 1;
            self.damage();
            self.fu = if end { Fu::Idle } else { Fu::Discarding };
            return;
        }
        if start {
            if matches!(self.fu, Fu::Open(_)) {
                self.stats.fu_errors += 1;
                self.stats.nals_dropped += 1;
                self.damage();
            }
            // F and NRI from the indicator, type from the FU header (§5.8).
            let mut nal = Vec::with_capacity(data.len() + 1);
            nal.push((indicator & 0xe0) | original);
            self.fu = Fu::Open(nal);
        }
        match &mut self.fu {
            Fu::Open(nal) => {
                if nal.len() + data.len() > self.limits.max_nal_bytes {
                    self.stats.oversize += 1;
                    self.stats.nals_dropped += 1;
                    self.damage();
                    self.fu = if end { Fu::Idle } else { Fu::Discarding };
                    return;
                }
                nal.extend_from_slice(data);
                if end {
                    let nal = std::mem::take(nal);
                    self.fu = Fu::Idle;
                    self.add_nal(Bytes::from(nal));
                }
            }
            Fu::Discarding => {
                if end {
                    self.fu = Fu::Idle;
                }
            }
            Fu::Idle => {
                // A continuation whose start never came.
                self.stats.fu_errors += 1;
                self.stats.nals_dropped += 1;
                self.damage();
                self.fu = if end { Fu::Idle } else { Fu::Discarding };
            }
        }
    }

    /// Caches parameter sets (even while waiting for an IDR) and adds the NAL to the open AU.
    fn add_nal(&mut self, nal: Bytes) {
        match nal_type(&nal) {
            // Access unit delimiters carry nothing a consumer needs.
            NAL_AUD => return,
            NAL_SPS if self.sps.as_ref() != Some(&nal) => {
                self.sps_info = SpsInfo::parse(&nal).ok();
                self.sps = Some(nal.clone());
            }
            NAL_PPS if self.pps.as_ref() != Some(&nal) => self.pps = Some(nal.clone()),
            _ => {}
        }
        let limits = self.limits;
        let Some(au) = self.au.as_mut() else {
            return;
        };
        if au.damaged {
            return;
        }
        let bytes = au.bytes + nal.len() + 4;
        if bytes > limits.max_au_bytes || au.nals.len() >= limits.max_au_nals {
            self.stats.oversize += 1;
            self.stats.nals_dropped += 1;
            self.damage();
            return;
        }
        au.bytes = bytes;
        au.nals.push(nal);
    }

    /// Marks the open access unit as unusable and frees what it holds.
    fn damage(&mut self) {
        if let Some(au) = self.au.as_mut() {
            au.damaged = true;
            au.nals = Vec::new();
            au.bytes = 0;
        }
    }

    /// Ends the open access unit; returns it when it is complete and decodable from here.
    fn close_au(&mut self) -> Option<AccessUnit> {
        if matches!(self.fu, Fu::Open(_)) {
            // A NAL still in fragments when its access unit ends never gets its end.
            self.stats.fu_errors += 1;
            self.stats.nals_dropped += 1;
            self.damage();
        }
        self.fu = Fu::Idle;
        let au = self.au.take()?;
        if au.damaged {
            self.stats.aus_dropped_incomplete += 1;
            self.waiting_for_idr = true;
            return None;
        }
        if !au
            .nals
            .iter()
            .any(|n| (NAL_SLICE..=NAL_IDR).contains(&nal_type(n)))
        {
            // No picture (parameter sets only, already cached; or SEI alone): nothing to show.
            return None;
        }
        let keyframe = au.nals.iter().any(|n| nal_type(n) == NAL_IDR);
        let nals = if keyframe {
            let (Some(sps), Some(pps)) = (&self.sps, &self.pps) else {
                self.stats.aus_dropped_waiting_for_idr += 1;
                return None;
            };
            self.waiting_for_idr = false;
            with_parameter_sets(sps, pps, au.nals)
        } else if self.waiting_for_idr {
            self.stats.aus_dropped_waiting_for_idr += 1;
            return None;
        } else {
            au.nals
        };
        self.stats.aus_out += 1;
        Some(AccessUnit {
            timestamp: au.timestamp,
            nals,
            keyframe,
        })
    }
}

/// A keyframe's NALs as SPS, PPS (its own ones, else the cached one), then the rest in order, so
/// a late joiner, a muxer or a decoder can start on it.
fn with_parameter_sets(sps: &Bytes, pps: &Bytes, nals: Vec<Bytes>) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(nals.len() + 2);
    out.push(sps.clone());
    for p in nals.iter().filter(|n| nal_type(n) == NAL_PPS) {
        if !out.contains(p) {
            out.push(p.clone());
        }
    }
    if out.len() == 1 {
        out.push(pps.clone());
    }
    out.extend(
        nals.into_iter()
            .filter(|n| !matches!(nal_type(n), NAL_SPS | NAL_PPS)),
    );
    out
}

/// One STAP-A aggregation unit (16-bit size, NAL) and what follows it; None when truncated.
fn stap_unit(rest: &[u8]) -> Option<(&[u8], &[u8])> {
    let [hi, lo, tail @ ..] = rest else {
        return None;
    };
    tail.split_at_checked(usize::from(u16::from_be_bytes([*hi, *lo])))
}

/// Whether a payload can be the first of a picture: an AUD, an SPS, or the slice holding
/// macroblock 0 (`first_mb_in_slice` is ue(v), so 0 is a single 1 bit right after the header).
fn starts_picture(payload: &[u8]) -> bool {
    let (t, first_byte) = match nal_type(payload) {
        NAL_FU_A => match payload {
            [_, fu, b, ..] if fu & 0x80 != 0 => (fu & 0x1f, Some(*b)),
            _ => return false,
        },
        NAL_STAP_A => match payload.get(1..).and_then(stap_unit) {
            Some((nal, _)) => (nal_type(nal), nal.get(1).copied()),
            None => return false,
        },
        t => (t, payload.get(1).copied()),
    };
    match t {
        NAL_AUD | NAL_SPS => true,
        NAL_SLICE | NAL_IDR => first_byte.is_some_and(|b| b & 0x80 != 0),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
