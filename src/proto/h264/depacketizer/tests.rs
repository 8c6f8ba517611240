//! Unit tests of the depacketizer on crafted packet sequences (single NAL, STAP-A, FU-A, loss,
//! wrap, caps, garbage). Split from `depacketizer.rs` to keep both files short.

use super::*;
use crate::proto::h264::Packetizer;

use crate::proto::h264::testdata::{PPS, SPS};
const SEI: &[u8] = &[0x06, 0x05, 0x01, 0xaa, 0x80];

/// An IDR slice (first_mb_in_slice = 0) of `len` bytes.
fn idr(len: usize, fill: u8) -> Vec<u8> {
    let mut v = vec![0x65, 0x88];
    v.resize(len, fill);
    v
}

/// A non-IDR slice (first_mb_in_slice = 0).
fn p_slice(len: usize, fill: u8) -> Vec<u8> {
    let mut v = vec![0x41, 0x9a];
    v.resize(len, fill);
    v
}

fn fu(indicator: u8, header: u8, data: &[u8]) -> Vec<u8> {
    let mut v = vec![indicator, header];
    v.extend_from_slice(data);
    v
}

fn stap_a(nals: &[&[u8]]) -> Vec<u8> {
    let mut v = vec![0x78];
    for n in nals {
        v.extend_from_slice(&(n.len() as u16).to_be_bytes());
        v.extend_from_slice(n);
    }
    v
}

/// Sends packets with consecutive sequence numbers; `skip` loses some on the way.
struct Wire {
    d: Depacketizer,
    seq: u16,
}

impl Wire {
    fn new(seq: u16) -> Self {
        Self {
            d: Depacketizer::new(),
            seq,
        }
    }

    fn send(&mut self, ts: u32, marker: bool, payload: &[u8]) -> Vec<AccessUnit> {
        let out = self.d.push(self.seq, ts, marker, payload);
        self.seq = self.seq.wrapping_add(1);
        out
    }

    fn skip(&mut self, n: u16) {
        self.seq = self.seq.wrapping_add(n);
    }

    /// Packetizes `nals` (FU-A above `mtu`) and sends them; marker on the last packet.
    fn send_au(&mut self, ts: u32, nals: &[&[u8]], mtu: usize) -> Vec<AccessUnit> {
        let mut out = Vec::new();
        for p in Packetizer::new(mtu).packetize(nals) {
            out.extend(self.send(ts, p.marker, &p.data));
        }
        out
    }
}

fn types(au: &AccessUnit) -> Vec<u8> {
    au.nals.iter().map(|n| nal_type(n)).collect()
}

#[test]
fn single_nals_with_marker() {
    let mut w = Wire::new(100);
    assert!(w.send(9000, false, SPS).is_empty());
    assert!(w.send(9000, false, PPS).is_empty());
    let aus = w.send(9000, true, &idr(40, 7));
    assert_eq!(aus.len(), 1);
    assert!(aus[0].keyframe);
    assert_eq!(aus[0].timestamp, 9000);
    assert_eq!(aus[0].nals, vec![SPS, PPS, &idr(40, 7)[..]]);
    let info = w.d.sps_info().expect("SPS parsed");
    assert_eq!((info.width, info.height), (400, 288));
    let p = p_slice(5, 1);
    let aus = w.send(18000, true, &p);
    assert_eq!(aus.len(), 1);
    assert!(!aus[0].keyframe);
    assert_eq!(aus[0].to_annexb(), [&[0, 0, 0, 1][..], &p].concat());
    assert_eq!(aus[0].to_avcc(), [&[0, 0, 0, 5][..], &p].concat());
    assert_eq!(aus[0].byte_len(), 5);
    assert_eq!(w.d.stats().aus_out, 2);
}

#[test]
fn stap_a_parameter_sets_then_fu_a_idr() {
    let mut w = Wire::new(7);
    assert!(w.send(0, false, &stap_a(&[SPS, PPS])).is_empty());
    assert!(w.send(0, false, &fu(0x7c, 0x85, &[0x88, 1, 2])).is_empty());
    assert!(w.send(0, false, &fu(0x7c, 0x05, &[3, 4])).is_empty());
    let aus = w.send(0, true, &fu(0x7c, 0x45, &[5]));
    assert_eq!(aus.len(), 1);
    assert_eq!(
        aus[0].nals,
        vec![SPS, PPS, &[0x65, 0x88, 1, 2, 3, 4, 5][..]]
    );
    assert_eq!(w.d.sps().map(|b| &b[..]), Some(SPS));
    assert_eq!(w.d.pps().map(|b| &b[..]), Some(PPS));
    let s = w.d.stats();
    assert_eq!((s.fu_errors, s.nals_dropped, s.bad_payloads), (0, 0, 0));
}

#[test]
fn lost_middle_fragment_drops_the_nal_and_p_frames_until_next_idr() {
    let mut w = Wire::new(1);
    let big = idr(3000, 3);
    assert_eq!(w.send_au(0, &[SPS, PPS, &big], 1000).len(), 1);
    // P frame whose middle fragment is lost.
    let packets = Packetizer::new(1000).packetize(&[p_slice(2500, 4)]);
    assert_eq!(packets.len(), 3);
    assert!(w.send(9000, false, &packets[0].data).is_empty());
    w.skip(1);
    assert!(w.send(9000, true, &packets[2].data).is_empty());
    assert!(w.d.waiting_for_keyframe());
    // Intact P frames after the loss are dropped too: their reference is gone.
    assert!(w.send_au(18000, &[&p_slice(50, 5)], 1000).is_empty());
    assert!(w.send_au(27000, &[&p_slice(50, 6)], 1000).is_empty());
    // The next IDR (with in-band parameter sets) recovers.
    let aus = w.send_au(36000, &[SPS, PPS, &big], 1000);
    assert_eq!(aus.len(), 1);
    assert!(aus[0].keyframe);
    assert_eq!(aus[0].nals[2], big);
    assert_eq!(w.send_au(45000, &[&p_slice(50, 7)], 1000).len(), 1);
    let s = w.d.stats();
    assert_eq!((s.seq_gaps, s.packets_lost), (1, 1));
    assert_eq!(s.nals_dropped, 1);
    assert_eq!(s.aus_dropped_incomplete, 1);
    assert_eq!(s.aus_dropped_waiting_for_idr, 2);
    assert_eq!(
        s.fu_errors, 0,
        "fragments after a gap are not protocol errors"
    );
    assert_eq!(s.aus_out, 3);
}

#[test]
fn duplicate_and_older_packets_do_not_corrupt_state() {
    let mut d = Depacketizer::new();
    assert!(d.push(10, 0, false, SPS).is_empty());
    assert!(d.push(11, 0, false, PPS).is_empty());
    assert!(d.push(12, 0, false, &fu(0x7c, 0x85, &[0x88, 1])).is_empty());
    // A duplicate of the start, an older packet, and one from long ago (not a restart).
    assert!(d.push(12, 0, false, &fu(0x7c, 0x85, &[0x88, 1])).is_empty());
    assert!(d.push(11, 0, false, &[0x41, 0x9a, 9]).is_empty());
    assert!(
        d.push(12u16.wrapping_sub(100), 0, true, &[0x41, 0x9a])
            .is_empty()
    );
    let aus = d.push(13, 0, true, &fu(0x7c, 0x45, &[2]));
    assert_eq!(aus.len(), 1);
    assert_eq!(aus[0].nals[2][..], [0x65, 0x88, 1, 2]);
    let s = d.stats();
    assert_eq!(s.stale_packets, 3);
    assert_eq!((s.seq_gaps, s.fu_errors), (0, 0));
}

#[test]
fn sequence_wrap_inside_fu_a() {
    let mut d = Depacketizer::new();
    assert!(d.push(65532, 5, false, SPS).is_empty());
    assert!(d.push(65533, 5, false, PPS).is_empty());
    assert!(
        d.push(65534, 5, false, &fu(0x7c, 0x85, &[0x88, 1]))
            .is_empty()
    );
    assert!(d.push(65535, 5, false, &fu(0x7c, 0x05, &[2])).is_empty());
    assert!(d.push(0, 5, false, &fu(0x7c, 0x05, &[3])).is_empty());
    let aus = d.push(1, 5, true, &fu(0x7c, 0x45, &[4]));
    assert_eq!(aus.len(), 1);
    assert_eq!(aus[0].nals[2][..], [0x65, 0x88, 1, 2, 3, 4]);
    assert_eq!(d.stats().seq_gaps, 0);
    // A gap across the wrap is still a gap.
    assert!(d.push(3, 6, true, &p_slice(4, 1)).is_empty());
    assert_eq!((d.stats().seq_gaps, d.stats().packets_lost), (1, 1));
}

#[test]
fn missing_marker_is_closed_by_timestamp_change() {
    let mut w = Wire::new(0);
    assert!(w.send(100, false, SPS).is_empty());
    assert!(w.send(100, false, PPS).is_empty());
    assert!(w.send(100, false, &idr(10, 1)).is_empty());
    // The next picture closes the IDR; nothing stalls.
    let aus = w.send(200, false, &p_slice(10, 2));
    assert_eq!(aus.len(), 1);
    assert_eq!(aus[0].timestamp, 100);
    assert!(aus[0].keyframe);
    // A timestamp change AND a marker: two access units from one packet.
    let aus = w.send(300, true, &p_slice(10, 3));
    assert_eq!(aus.len(), 2);
    assert_eq!((aus[0].timestamp, aus[1].timestamp), (200, 300));
    // An FU-A left open by a missing end is dropped when the timestamp changes.
    assert!(w.send(400, false, &fu(0x5c, 0x81, &[0x9a, 1])).is_empty());
    assert!(w.send(500, true, &p_slice(10, 4)).is_empty());
    assert_eq!(w.d.stats().fu_errors, 1);
    assert!(w.d.waiting_for_keyframe());
}

#[test]
fn idr_without_in_band_parameter_sets_gets_the_cached_ones() {
    let mut w = Wire::new(0);
    assert_eq!(w.send_au(0, &[SPS, PPS, &idr(30, 1)], 1200).len(), 1);
    assert_eq!(w.send_au(9000, &[&p_slice(30, 2)], 1200).len(), 1);
    let aus = w.send_au(18000, &[SEI, &idr(2000, 3)], 700);
    assert_eq!(aus.len(), 1);
    assert_eq!(types(&aus[0]), [7, 8, 6, 5]);
    assert_eq!(&aus[0].to_annexb()[..5], &[0, 0, 0, 1, 0x67]);
    // Parameter sets after an SEI and an AUD are moved to the front; the AUD goes.
    let aus = w.send_au(27000, &[&[0x09, 0xf0], SEI, SPS, PPS, &idr(20, 4)], 1200);
    assert_eq!(types(&aus[0]), [7, 8, 6, 5]);
}

#[test]
fn nothing_before_the_first_idr_with_parameter_sets() {
    let mut w = Wire::new(500);
    // Joined mid-IDR: the first packet is an FU-A continuation.
    assert!(w.send(0, false, &fu(0x7c, 0x05, &[1, 2])).is_empty());
    assert!(w.send(0, true, &fu(0x7c, 0x45, &[3])).is_empty());
    assert!(w.send_au(9000, &[&p_slice(20, 1)], 1200).is_empty());
    // An IDR before any SPS/PPS cannot start a decoder.
    assert!(w.send_au(18000, &[&idr(20, 2)], 1200).is_empty());
    assert!(w.d.sps().is_none());
    let aus = w.send_au(27000, &[SPS, PPS, &idr(20, 3)], 1200);
    assert_eq!(aus.len(), 1);
    assert!(!w.d.waiting_for_keyframe());
    let s = w.d.stats();
    assert_eq!(s.aus_out, 1);
    assert_eq!(s.aus_dropped_incomplete, 1, "the partial IDR");
    assert_eq!(s.aus_dropped_waiting_for_idr, 2);
}

#[test]
fn loss_before_a_picture_head_is_told_from_loss_of_its_head() {
    let mut w = Wire::new(0);
    assert_eq!(w.send_au(0, &[SPS, PPS, &idr(20, 1)], 1200).len(), 1);
    // Whole P frame lost, then an IDR that starts with its SPS: recovered at once.
    w.skip(2);
    assert_eq!(w.send_au(18000, &[SPS, PPS, &idr(20, 2)], 1200).len(), 1);
    // Lost head of an IDR (its SPS, PPS and first slice), second slice (first_mb != 0) arrives.
    w.skip(3);
    assert!(w.send(27000, true, &[0x65, 0x40, 1, 2]).is_empty());
    assert!(w.d.waiting_for_keyframe());
    assert_eq!(w.d.stats().aus_dropped_incomplete, 1);
}

#[test]
fn reset_waits_for_idr_but_keeps_parameter_sets() {
    let mut w = Wire::new(0);
    assert_eq!(w.send_au(0, &[SPS, PPS, &idr(20, 1)], 1200).len(), 1);
    w.d.reset();
    w.seq = 40000;
    assert!(w.send_au(9000, &[&p_slice(20, 1)], 1200).is_empty());
    let aus = w.send_au(18000, &[&idr(20, 2)], 1200);
    assert_eq!(types(&aus[0]), [7, 8, 5]);
    assert_eq!(w.d.stats().seq_gaps, 0);
}

#[test]
fn parameter_set_change_updates_the_cache_and_info() {
    let mut w = Wire::new(0);
    assert_eq!(w.send_au(0, &[SPS, PPS, &idr(20, 1)], 1200).len(), 1);
    let sps2: &[u8] = &[0x67, 0x42, 0xc0, 0x1e, 0xff, 0xff];
    let aus = w.send_au(9000, &[sps2, PPS, &idr(20, 1)], 1200);
    assert_eq!(aus[0].nals[0][..], *sps2);
    assert_eq!(w.d.sps().map(|b| &b[..]), Some(sps2));
    assert!(w.d.sps_info().is_none(), "garbage SPS has no info");
}

#[test]
fn caps_are_enforced() {
    let limits = Limits {
        max_au_bytes: 1000,
        max_nal_bytes: 600,
        max_au_nals: 8,
    };
    let mut d = Depacketizer::with_limits(limits);
    let mut seq = 0u16;
    let mut push = |d: &mut Depacketizer, ts, m, p: &[u8]| {
        seq = seq.wrapping_add(1);
        d.push(seq, ts, m, p)
    };
    push(&mut d, 0, false, SPS);
    push(&mut d, 0, false, PPS);
    assert_eq!(push(&mut d, 0, true, &idr(500, 1)).len(), 1);
    // One NAL reassembled past 600 bytes.
    push(&mut d, 1, false, &fu(0x7c, 0x85, &[0x88; 400]));
    push(&mut d, 1, false, &fu(0x7c, 0x05, &[1; 400]));
    assert!(push(&mut d, 1, true, &fu(0x7c, 0x45, &[2; 10])).is_empty());
    assert_eq!(d.stats().oversize, 1);
    assert_eq!(d.stats().fu_errors, 0, "the tail is eaten quietly");
    // An access unit past 1000 bytes of whole NALs.
    push(&mut d, 2, false, SPS);
    push(&mut d, 2, false, PPS);
    push(&mut d, 2, false, &idr(500, 1));
    assert!(push(&mut d, 2, true, &idr(500, 1)).is_empty());
    // Too many NALs.
    for _ in 0..9 {
        push(&mut d, 3, false, &[0x06, 1]);
    }
    assert!(push(&mut d, 3, true, &idr(20, 1)).is_empty());
    let s = d.stats();
    assert_eq!(s.oversize, 3);
    assert_eq!(s.aus_dropped_incomplete, 3);
    // Still recovers.
    push(&mut d, 4, false, SPS);
    push(&mut d, 4, false, PPS);
    assert_eq!(push(&mut d, 4, true, &idr(20, 1)).len(), 1);
}

#[test]
fn fu_a_protocol_errors_drop_the_nal() {
    let mut w = Wire::new(0);
    assert_eq!(w.send_au(0, &[SPS, PPS, &idr(20, 1)], 1200).len(), 1);
    // Start while one is open.
    w.send(1, false, &fu(0x5c, 0x81, &[0x9a, 1]));
    assert!(w.send(1, true, &fu(0x5c, 0xc1, &[0x9a, 2])).is_empty());
    // Continuation without a start (no gap: a sender bug).
    assert!(w.send(2, true, &fu(0x5c, 0x41, &[3])).is_empty());
    // Single NAL while an FU-A is open.
    w.send(3, false, &fu(0x5c, 0x81, &[0x9a, 1]));
    assert!(w.send(3, true, &p_slice(5, 1)).is_empty());
    // FU-A of one byte, and FU-A carrying type 0.
    assert!(w.send(4, true, &[0x7c]).is_empty());
    assert!(w.send(5, true, &fu(0x7c, 0xc0, &[1])).is_empty());
    assert_eq!(w.d.stats().fu_errors, 5);
}

#[test]
fn unsupported_and_malformed_payloads_are_counted() {
    let mut w = Wire::new(0);
    assert_eq!(w.send_au(0, &[SPS, PPS, &idr(20, 1)], 1200).len(), 1);
    for bad in [
        &[][..],
        &[0x00, 1],
        &[0x19, 0, 1, 0x41],
        &[0x1a, 1],
        &[0x1b, 1],
        &[0x1d, 0x81, 1],
        &[0x1e],
        &[0x1f, 1],
        &[0x18],
        &[0x18, 0],
        &[0x18, 0, 9, 0x41],
    ] {
        let aus = w.send(7, true, bad);
        assert!(aus.is_empty(), "{bad:?} gave {aus:?}");
    }
    assert_eq!(w.d.stats().bad_payloads, 11);
    // Empty payloads, type 0, 30/31 and an empty STAP-A damage no picture; the interleaved types
    // (4) and the truncated STAP-As (2) do.
    assert_eq!(w.d.stats().aus_dropped_incomplete, 6);
}

#[test]
fn garbage_never_panics_and_output_keeps_its_promises() {
    let mut d = Depacketizer::with_limits(Limits {
        max_au_bytes: 4096,
        max_nal_bytes: 2048,
        max_au_nals: 16,
    });
    // xorshift: deterministic, no dependency.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut seq, mut ts) = (0u16, 0u32);
    for i in 0..200_000u32 {
        let r = next();
        let len = (r % 64) as usize;
        let mut payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if i % 50 == 0 {
            payload = [SPS, PPS, &idr(30, 1)][(r >> 8) as usize % 3].to_vec();
        }
        seq = seq.wrapping_add(match r >> 16 & 7 {
            0 => 0,
            1 => 2,
            2 => (r >> 20) as u16,
            _ => 1,
        });
        if r >> 24 & 3 == 0 {
            ts = ts.wrapping_add(3000);
        }
        for au in d.push(seq, ts, r >> 30 & 1 == 1, &payload) {
            assert!(!au.nals.is_empty());
            if au.keyframe {
                assert_eq!(types(&au)[..2], [7, 8]);
            }
        }
    }
    assert!(d.stats().aus_out > 0);
}
