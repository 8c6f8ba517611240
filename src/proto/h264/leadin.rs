//! The lead-in picture sent to a reader just before its first keyframe: one non-reference P
//! slice with every macroblock skipped (a dozen bytes, built from the stream's SPS/PPS).
//!
//! Why: FFmpeg's H.264 parser (RTSP demuxer, FFmpeg 5.1) loses the timestamp of the first
//! picture it assembles — its pts/dts table is keyed by byte positions and RTP packets have none
//! (pos = -1), so the first lookup fails. With `-c copy` that picture reaches the muxer without
//! timestamps: "Timestamps are unset in a packet for stream 0", then "Non-monotonous DTS" (what
//! Frigate logs on every connect, against GStreamer's RTSP server too). FFmpeg drops a stream's
//! leading non-keyframes when copying, so a lead-in takes the timestamp loss and the keyframe
//! after it keeps its own (an I picture would not do: FFmpeg counts any I picture as a keyframe).
//! Decoders pass over it quietly: FFmpeg's conceals the reference it lacks (see `frame_num`) and
//! shows nothing before the IDR; nothing references it (`nal_ref_idc` 0); it is not a random
//! access point, so players that start at a keyframe skip it.
//!
//! Only CAVLC, frame-coded (no MBAFF), single-slice-group streams get one (the C300X and the
//! simulator send Baseline); anything else gets `None` and is sent as before.

use h264_reader::Context;
use h264_reader::nal::pps::PicParameterSet;
use h264_reader::nal::sps::{FrameMbsFlags, PicOrderCntType, SeqParameterSet};
use h264_reader::rbsp::{BitReader, decode_nal};

use super::{NAL_PPS, NAL_SPS, nal_type};

/// The lead-in NAL unit (header byte included, emulation-prevented) for a stream with this SPS
/// and PPS, or `None` when they do not parse or use a coding this writer does not produce.
pub fn lead_in(sps: &[u8], pps: &[u8]) -> Option<Vec<u8>> {
    if nal_type(sps) != NAL_SPS || nal_type(pps) != NAL_PPS {
        return None;
    }
    let sps_rbsp = decode_nal(sps).ok()?;
    let sps = SeqParameterSet::from_bits(BitReader::new(&sps_rbsp[..])).ok()?;
    let mut ctx = Context::new();
    ctx.put_seq_param_set(sps.clone());
    let pps_rbsp = decode_nal(pps).ok()?;
    let pps = PicParameterSet::from_bits(&ctx, BitReader::new(&pps_rbsp[..])).ok()?;
    if pps.entropy_coding_mode_flag
        || pps.slice_groups.is_some()
        || sps.chroma_info.separate_colour_plane_flag
        || matches!(
            sps.frame_mbs_flags,
            FrameMbsFlags::Fields {
                mb_adaptive_frame_field_flag: true
            }
        )
    {
        return None;
    }
    let mut w = BitWriter::default();
    w.ue(0); // first_mb_in_slice
    w.ue(5); // slice_type: P, every slice of the picture
    w.ue(u32::from(pps.pic_parameter_set_id.id()));
    // frame_num 1: FFmpeg's decoder, meeting a P picture first, conceals the gap quietly with a
    // grey reference it makes up (frame_num 0 would make it log "Missing reference picture").
    w.bits(1, u32::from(sps.log2_max_frame_num_minus4) + 4);
    let frame_mbs_only = matches!(sps.frame_mbs_flags, FrameMbsFlags::Frames);
    if !frame_mbs_only {
        w.bits(0, 1); // field_pic_flag: a frame
    }
    match &sps.pic_order_cnt {
        PicOrderCntType::TypeZero {
            log2_max_pic_order_cnt_lsb_minus4,
        } => {
            w.bits(0, u32::from(*log2_max_pic_order_cnt_lsb_minus4) + 4);
            if pps.bottom_field_pic_order_in_frame_present_flag {
                w.se(0); // delta_pic_order_cnt_bottom
            }
        }
        PicOrderCntType::TypeOne {
            delta_pic_order_always_zero_flag: false,
            ..
        } => {
            w.se(0);
            if pps.bottom_field_pic_order_in_frame_present_flag {
                w.se(0);
            }
        }
        _ => {}
    }
    if pps.redundant_pic_cnt_present_flag {
        w.ue(0);
    }
    w.bits(0, 1); // num_ref_idx_active_override_flag
    w.bits(0, 1); // ref_pic_list_modification_flag_l0
    if pps.weighted_pred_flag {
        let chroma = sps.chroma_info.chroma_array_type() != 0;
        w.ue(0); // luma_log2_weight_denom
        if chroma {
            w.ue(0); // chroma_log2_weight_denom
        }
        for _ in 0..=pps.num_ref_idx_l0_default_active_minus1 {
            w.bits(0, 1); // luma_weight_l0_flag
            if chroma {
                w.bits(0, 1); // chroma_weight_l0_flag
            }
        }
    }
    // nal_ref_idc 0: no dec_ref_pic_marking; CAVLC: no cabac_init_idc.
    w.se(0); // slice_qp_delta
    if pps.deblocking_filter_control_present_flag {
        w.ue(1); // disable_deblocking_filter_idc: off (nothing to filter)
    }
    let height_in_mbs =
        (sps.pic_height_in_map_units_minus1 + 1) * if frame_mbs_only { 1 } else { 2 };
    let mbs = (sps.pic_width_in_mbs_minus1 + 1).checked_mul(height_in_mbs)?;
    w.ue(mbs); // mb_skip_run: the whole picture
    w.bits(1, 1); // rbsp_stop_one_bit
    let rbsp = w.finish();
    let mut nal = Vec::with_capacity(rbsp.len() + 8);
    nal.push(0x01); // forbidden 0, nal_ref_idc 0, type 1 (non-IDR slice)
    let mut zeros = 0;
    for b in rbsp {
        if zeros >= 2 && b <= 3 {
            nal.push(3);
            zeros = 0;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        nal.push(b);
    }
    Some(nal)
}

/// MSB-first bit writer with Exp-Golomb codes (H.264 §9.1).
#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    used: u32,
}

impl BitWriter {
    fn bits(&mut self, value: u32, count: u32) {
        for i in (0..count).rev() {
            if self.used.is_multiple_of(8) {
                self.out.push(0);
            }
            if (value >> i) & 1 == 1
                && let Some(last) = self.out.last_mut()
            {
                *last |= 0x80 >> (self.used % 8);
            }
            self.used += 1;
        }
    }

    fn ue(&mut self, v: u32) {
        let x = u64::from(v) + 1;
        let len = 64 - x.leading_zeros();
        self.bits(0, len - 1);
        for i in (0..len).rev() {
            self.bits(((x >> i) & 1) as u32, 1);
        }
    }

    fn se(&mut self, v: i32) {
        let k = if v > 0 {
            2 * v.unsigned_abs() - 1
        } else {
            2 * v.unsigned_abs()
        };
        self.ue(k);
    }

    /// The bytes, the last one padded with zero bits.
    fn finish(self) -> Vec<u8> {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::proto::h264::testdata::{PPS, SPS};

    #[test]
    fn exp_golomb_codes() {
        let mut w = BitWriter::default();
        for v in [0, 1, 2, 3, 7] {
            w.ue(v);
        }
        // 1 010 011 00100 0001000 → 1010 0110 0100 0001 000(0 pad)
        assert_eq!(w.finish(), vec![0b1010_0110, 0b0100_0001, 0b0000_0000]);
        let mut w = BitWriter::default();
        for v in [0, 1, -1, 2] {
            w.se(v);
        }
        // 1 010 011 00100 → 1010 0110 0100 0000
        assert_eq!(w.finish(), vec![0b1010_0110, 0b0100_0000]);
    }

    #[test]
    fn lead_in_is_a_skipped_non_reference_p_slice_for_the_whole_picture() {
        let nal = lead_in(SPS, PPS).expect("a lead-in for Baseline");
        assert_eq!(nal[0], 0x01, "nal_ref_idc 0, type 1");
        // first_mb 0 (1), slice_type 5 (00110), pps 0 (1), frame_num 1 (0001: 4 bits, this SPS
        // has log2_max_frame_num 4 and pic_order_cnt_type 2), override 0, modification 0,
        // slice_qp_delta 0 (1), disable_deblocking 1 (010), mb_skip_run 450 (17 bits), stop bit.
        let bits: String = nal[1..].iter().map(|b| format!("{b:08b}")).collect();
        let skip_450 = format!("{:017b}", 451);
        let want = format!("10011010001001010{skip_450}1");
        assert!(bits.starts_with(&want), "{bits}\n{want}");
        assert!(bits[want.len()..].chars().all(|c| c == '0'), "{bits}");
    }

    #[test]
    fn nothing_for_other_nals_garbage_or_cabac() {
        assert_eq!(lead_in(PPS, SPS), None);
        assert_eq!(lead_in(&[0x67, 0xff], PPS), None);
        // The same PPS with entropy_coding_mode_flag set (the bit after two ue(0)): CABAC.
        assert_eq!(lead_in(SPS, &[0x68, 0xee, 0x3c, 0x80]), None);
    }
}
