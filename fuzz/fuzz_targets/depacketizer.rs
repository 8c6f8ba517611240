//! Fuzzes `proto::h264::Depacketizer::push` on sequences of RTP packets: never panics, every
//! access unit it emits is non-empty Annex B, and every keyframe starts with an SPS.
//! Input records: seq (u16 BE), timestamp (u32 BE), marker (u8, low bit), len (u8), payload.
#![no_main]

use c300x_bridge::proto::h264::{Depacketizer, Limits, NAL_PPS, NAL_SPS, nal_type};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Small caps so the fuzzer reaches the over-cap paths too.
    let mut d = Depacketizer::with_limits(Limits {
        max_au_bytes: 8192,
        max_nal_bytes: 4096,
        max_au_nals: 32,
    });
    let mut rest = data;
    while let [s0, s1, t0, t1, t2, t3, m, len, tail @ ..] = rest {
        let take = usize::from(*len).min(tail.len());
        let (payload, after) = tail.split_at(take);
        rest = after;
        let seq = u16::from_be_bytes([*s0, *s1]);
        let ts = u32::from_be_bytes([*t0, *t1, *t2, *t3]);
        for au in d.push(seq, ts, m & 1 == 1, payload) {
            let annexb = au.to_annexb();
            assert!(!annexb.is_empty());
            assert_eq!(annexb.len(), au.byte_len() + 4 * au.nals.len());
            if au.keyframe {
                assert_eq!(annexb[..4], [0, 0, 0, 1]);
                assert_eq!(nal_type(&annexb[4..]), NAL_SPS);
                assert_eq!(au.nals.get(1).map(|p| nal_type(p)), Some(NAL_PPS));
            }
        }
    }
});
