//! The ring snapshot: which access unit becomes the visitor's picture. `SnapshotPicker` (pure)
//! waits for the ring's first keyframe and then passes on only frames whose slices reference a
//! PPS (and its SPS) already seen — a frame decoded against missing parameter sets is garbage
//! (c300x-protocol.md §10: first frames may be). `RingSnapshotter` decodes what the picker passes
//! and JPEG-encodes the first picture (FFmpeg: blocking, call it off the runtime).

use std::collections::HashMap;

use bytes::Bytes;
use h264_reader::rbsp::{BitRead, BitReader, decode_nal};

use crate::media::jpeg::{H264Decoder, JpegEncoder, JpegError};
use crate::proto::h264::{AccessUnit, NAL_IDR, NAL_PPS, NAL_SLICE, NAL_SPS, nal_type};

/// What the picker says about one access unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Before the ring's first keyframe: nothing to start decoding from.
    BeforeKeyframe,
    /// A slice references a PPS or SPS not seen yet (or unreadable): skip it.
    MissingParameterSets,
    /// After a skipped keyframe: P-frames have no decodable reference until the next keyframe.
    NoReference,
    /// Decode it: it may complete the picture.
    Decode,
}

/// Parameter-set bookkeeping and the decodable-chain rule. Pure: no decoder, no clock.
#[derive(Debug, Default)]
pub struct SnapshotPicker {
    /// SPS ids seen.
    sps: Vec<u32>,
    /// PPS id → the SPS id it references.
    pps: HashMap<u32, u32>,
    seen_keyframe: bool,
    /// The last keyframe was decodable and nothing since broke the chain.
    chain: bool,
}

impl SnapshotPicker {
    pub fn push(&mut self, au: &AccessUnit) -> Verdict {
        for nal in &au.nals {
            match nal_type(nal) {
                NAL_SPS => {
                    if let Some(id) = first_ue(nal, 3)
                        && !self.sps.contains(&id)
                    {
                        self.sps.push(id);
                    }
                }
                NAL_PPS => {
                    if let Some((pps, sps)) = two_ue(nal, 0) {
                        self.pps.insert(pps, sps);
                    }
                }
                _ => {}
            }
        }
        if !self.seen_keyframe && !au.keyframe {
            return Verdict::BeforeKeyframe;
        }
        self.seen_keyframe = true;
        let referenced = au
            .nals
            .iter()
            .filter(|n| matches!(nal_type(n), NAL_SLICE | NAL_IDR))
            .all(|slice| self.slice_is_decodable(slice));
        if !referenced {
            self.chain = false;
            return Verdict::MissingParameterSets;
        }
        if au.keyframe {
            self.chain = true;
        }
        if self.chain {
            Verdict::Decode
        } else {
            Verdict::NoReference
        }
    }

    /// The decoder failed on a frame: wait for the next keyframe.
    pub fn broken(&mut self) {
        self.chain = false;
    }

    fn slice_is_decodable(&self, slice: &[u8]) -> bool {
        // slice_header(): first_mb_in_slice ue(v), slice_type ue(v), pic_parameter_set_id ue(v).
        let Some(pps) = nth_ue(slice, 2) else {
            return false;
        };
        self.pps.get(&pps).is_some_and(|sps| self.sps.contains(sps))
    }
}

/// The RBSP of a NAL (header byte off, emulation prevention removed) as a bit reader input.
fn rbsp(nal: &[u8]) -> Option<Vec<u8>> {
    // The ids sit in the first bytes; 64 are plenty and bound the work on a big slice.
    let head = &nal[..nal.len().min(64)];
    let decoded = decode_nal(head).ok()?;
    Some(decoded.into_owned())
}

/// Skips `skip_bytes` of RBSP (the SPS's profile/constraint/level), then reads one ue(v).
fn first_ue(nal: &[u8], skip_bytes: usize) -> Option<u32> {
    let data = rbsp(nal)?;
    let mut r = BitReader::new(data.get(skip_bytes..)?);
    r.read_ue("id").ok()
}

/// Two ue(v) after `skip_bytes` (PPS: pic_parameter_set_id, seq_parameter_set_id).
fn two_ue(nal: &[u8], skip_bytes: usize) -> Option<(u32, u32)> {
    let data = rbsp(nal)?;
    let mut r = BitReader::new(data.get(skip_bytes..)?);
    Some((r.read_ue("a").ok()?, r.read_ue("b").ok()?))
}

/// The ue(v) at index `n` (0-based) of a slice header.
fn nth_ue(nal: &[u8], n: usize) -> Option<u32> {
    let data = rbsp(nal)?;
    let mut r = BitReader::new(&data[..]);
    let mut value = None;
    for _ in 0..=n {
        value = Some(r.read_ue("field").ok()?);
    }
    value
}

/// Picker + decoder + JPEG encoder for one ring. Blocking (FFmpeg).
pub struct RingSnapshotter {
    picker: SnapshotPicker,
    decoder: Option<H264Decoder>,
    encoder: JpegEncoder,
    /// Frames offered, and those skipped by the picker.
    pub offered: u64,
    pub skipped: u64,
}

impl RingSnapshotter {
    pub fn new(quality: u8) -> Self {
        Self {
            picker: SnapshotPicker::default(),
            decoder: None,
            encoder: JpegEncoder::new(quality),
            offered: 0,
            skipped: 0,
        }
    }

    /// Offers one access unit; the JPEG of the first picture it completes, if any. A decoder
    /// error on a frame is not fatal: the next keyframe starts over.
    pub fn push(&mut self, au: &AccessUnit) -> Result<Option<Bytes>, JpegError> {
        self.offered += 1;
        if self.picker.push(au) != Verdict::Decode {
            self.skipped += 1;
            return Ok(None);
        }
        let decoder = match self.decoder.as_mut() {
            Some(d) => d,
            None => self.decoder.insert(H264Decoder::new()?),
        };
        match decoder.decode(&au.to_annexb()) {
            Ok(Some(picture)) => self.encoder.encode(picture).map(Some),
            Ok(None) => Ok(None),
            Err(e) => {
                tracing::debug!(error = %e, "ring snapshot: frame did not decode; waiting for a keyframe");
                self.picker.broken();
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::proto::h264::split_annexb;
    use crate::sim::media::PatternEncoder;

    fn au(nals: &[&[u8]], keyframe: bool) -> AccessUnit {
        AccessUnit {
            timestamp: 0,
            nals: nals.iter().map(|n| Bytes::copy_from_slice(n)).collect(),
            keyframe,
        }
    }

    // Hand-made NALs. ue(v): 0 = "1", 1 = "010", 2 = "011".
    const SPS0: &[u8] = &[0x67, 0x42, 0xc0, 0x15, 0b1000_0000]; // seq_parameter_set_id 0
    const PPS0: &[u8] = &[0x68, 0b1100_0000]; // pps 0 → sps 0
    const PPS1: &[u8] = &[0x68, 0b0101_0000]; // pps 1 → sps 0
    const IDR_PPS0: &[u8] = &[0x65, 0b1011_1000]; // mb 0, slice_type 0... pps 0
    const IDR_PPS1: &[u8] = &[0x65, 0b1101_0000]; // mb 0, type 0, pps 1
    const P_PPS0: &[u8] = &[0x41, 0b1111_0000]; // mb 0, type 0, pps 0

    #[test]
    fn waits_for_the_first_keyframe_then_decodes_the_chain() {
        let mut p = SnapshotPicker::default();
        assert_eq!(p.push(&au(&[P_PPS0], false)), Verdict::BeforeKeyframe);
        assert_eq!(p.push(&au(&[SPS0, PPS0, IDR_PPS0], true)), Verdict::Decode);
        assert_eq!(p.push(&au(&[P_PPS0], false)), Verdict::Decode);
    }

    #[test]
    fn skips_frames_that_reference_missing_parameter_sets() {
        let mut p = SnapshotPicker::default();
        // A keyframe whose PPS 1 was never sent (the cache came from another call).
        assert_eq!(
            p.push(&au(&[SPS0, PPS0, IDR_PPS1], true)),
            Verdict::MissingParameterSets
        );
        // Its P-frames have nothing to refer to, even if their own PPS is known.
        assert_eq!(p.push(&au(&[P_PPS0], false)), Verdict::NoReference);
        // A PPS without its SPS is not enough either.
        let mut q = SnapshotPicker::default();
        assert_eq!(
            q.push(&au(&[PPS0, IDR_PPS0], true)),
            Verdict::MissingParameterSets
        );
        // The next complete keyframe starts a decodable chain.
        assert_eq!(p.push(&au(&[SPS0, PPS1, IDR_PPS1], true)), Verdict::Decode);
        assert_eq!(p.push(&au(&[P_PPS0], false)), Verdict::Decode);
        p.broken();
        assert_eq!(p.push(&au(&[P_PPS0], false)), Verdict::NoReference);
    }

    #[test]
    fn reads_the_ids_of_real_x264_parameter_sets() {
        let mut enc = PatternEncoder::new(None).expect("libx264");
        let frame = enc.encode(0, true).expect("encode").remove(0);
        let nals: Vec<&[u8]> = split_annexb(&frame.annexb);
        let sps = nals.iter().find(|n| nal_type(n) == NAL_SPS).expect("sps");
        let pps = nals.iter().find(|n| nal_type(n) == NAL_PPS).expect("pps");
        let idr = nals.iter().find(|n| nal_type(n) == NAL_IDR).expect("idr");
        assert_eq!(first_ue(sps, 3), Some(0));
        assert_eq!(two_ue(pps, 0), Some((0, 0)));
        assert_eq!(nth_ue(idr, 2), Some(0));
    }

    /// The real thing: the simulator's camera, a P-frame before the keyframe, then a JPEG of
    /// the keyframe's picture at its size.
    #[test]
    fn the_first_decodable_frame_becomes_a_400x288_jpeg() {
        let mut enc = PatternEncoder::new(Some("front".into())).expect("libx264");
        let frames: Vec<AccessUnit> = (0..4)
            .flat_map(|i| enc.encode(i, false).expect("encode"))
            .map(|f| {
                let nals: Vec<&[u8]> = split_annexb(&f.annexb);
                let key = nals.iter().any(|n| nal_type(n) == NAL_IDR);
                au(&nals, key)
            })
            .collect();
        assert!(frames[0].keyframe && !frames[1].keyframe);
        let mut snap = RingSnapshotter::new(80);
        // The ring joins mid-GOP: P-frames first.
        assert_eq!(snap.push(&frames[2]).expect("push"), None);
        assert_eq!(snap.push(&frames[3]).expect("push"), None);
        let jpeg = snap
            .push(&frames[0])
            .expect("push")
            .expect("the keyframe gives the picture");
        assert_eq!(&jpeg[..2], &[0xff, 0xd8]);
        assert_eq!(jpeg_size(&jpeg), Some((400, 288)));
        assert_eq!((snap.offered, snap.skipped), (3, 2));
    }

    /// Width and height from a baseline JPEG's SOF0 marker.
    pub(crate) fn jpeg_size(jpeg: &[u8]) -> Option<(u16, u16)> {
        let at = jpeg.windows(2).position(|w| w == [0xff, 0xc0])?;
        let h = u16::from_be_bytes([*jpeg.get(at + 5)?, *jpeg.get(at + 6)?]);
        let w = u16::from_be_bytes([*jpeg.get(at + 7)?, *jpeg.get(at + 8)?]);
        Some((w, h))
    }
}
