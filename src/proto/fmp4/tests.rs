//! The fMP4 writer's boxes: init segments (live and with durations) and fragment offsets.

use super::*;

/// The child boxes of `data` as (type, body).
fn boxes(data: &[u8]) -> Vec<([u8; 4], &[u8])> {
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 8 {
        let size = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        assert!(size >= 8 && size <= rest.len(), "box size {size}");
        out.push(([rest[4], rest[5], rest[6], rest[7]], &rest[8..size]));
        rest = &rest[size..];
    }
    assert!(rest.is_empty(), "trailing bytes");
    out
}

const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x15, 0xd9, 0x01];
const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

#[test]
fn init_segment_has_ftyp_and_a_moov_with_both_tracks() {
    let v = VideoTrack {
        sps: SPS,
        pps: PPS,
        width: 400,
        height: 288,
    };
    let a = AudioTrack {
        asc: &[0x14, 0x08],
        sample_rate: 16_000,
        channels: 1,
    };
    let init = init_segment(&v, Some(&a)).expect("init");
    let top = boxes(&init);
    assert_eq!(top[0].0, *b"ftyp");
    assert_eq!(top[1].0, *b"moov");
    let moov = boxes(top[1].1);
    let kinds: Vec<_> = moov.iter().map(|b| b.0).collect();
    assert_eq!(kinds, vec![*b"mvhd", *b"trak", *b"trak", *b"mvex"]);
    let find = |needle: &[u8]| init.windows(needle.len()).position(|w| w == needle);
    let avcc = find(b"avcC").expect("avcC");
    assert_eq!(
        &init[avcc + 4..avcc + 10],
        &[1, 0x42, 0xc0, 0x15, 0xff, 0xe1]
    );
    assert!(find(&[0x05, 0x02, 0x14, 0x08]).is_some(), "ASC in esds");
    let video_only = init_segment(&v, None).expect("init");
    assert_eq!(boxes(boxes(&video_only)[1].1).len(), 3);
}

#[test]
fn durations_go_in_fixed_width_fields_so_a_placeholder_can_be_overwritten() {
    let v = VideoTrack {
        sps: SPS,
        pps: PPS,
        width: 400,
        height: 288,
    };
    let a = AudioTrack {
        asc: &[0x14, 0x08],
        sample_rate: 16_000,
        channels: 1,
    };
    let zero = init_segment_with_durations(&v, Some(&a), Durations::default()).expect("init");
    let done = init_segment_with_durations(
        &v,
        Some(&a),
        Durations {
            video_90k: 900_000,
            audio_samples: 161_000,
        },
    )
    .expect("init");
    assert_eq!(zero.len(), done.len());
    let find = |needle: &[u8]| done.windows(needle.len()).position(|w| w == needle);
    // mehd v1: the longer track (audio, 10.0625 s) in ms.
    let mehd = find(b"mehd").expect("mehd");
    assert_eq!(done[mehd + 4], 1, "version 1");
    assert_eq!(&done[mehd + 8..mehd + 16], &10_062u64.to_be_bytes());
    // mvhd v1 duration after 16 bytes of times and the timescale.
    let mvhd = find(b"mvhd").expect("mvhd");
    assert_eq!(&done[mvhd + 24..mvhd + 28], &1000u32.to_be_bytes());
    assert_eq!(&done[mvhd + 28..mvhd + 36], &10_062u64.to_be_bytes());
    // The video mdhd in 90 kHz ticks.
    let mdhd = find(b"mdhd").expect("mdhd");
    assert_eq!(&done[mdhd + 24..mdhd + 28], &90_000u32.to_be_bytes());
    assert_eq!(&done[mdhd + 28..mdhd + 36], &900_000u64.to_be_bytes());
    // The live init is unchanged: no mehd, version 0 boxes.
    let live = init_segment(&v, Some(&a)).expect("init");
    assert!(!live.windows(4).any(|w| w == b"mehd"));
    assert!(live.len() < done.len());
}

#[test]
fn rejects_a_short_sps() {
    let v = VideoTrack {
        sps: &[0x67],
        pps: PPS,
        width: 1,
        height: 1,
    };
    assert_eq!(init_segment(&v, None), Err(Fmp4Error::ShortSps(1)));
}

#[test]
fn fragment_offsets_point_at_each_track_s_samples() {
    let runs = [
        TrackRun {
            track_id: VIDEO_TRACK,
            base_decode_time: 90_000,
            samples: vec![
                Sample {
                    data: b"KEYFRAME",
                    duration: 9000,
                    keyframe: true,
                },
                Sample {
                    data: b"P1",
                    duration: 9000,
                    keyframe: false,
                },
            ],
        },
        TrackRun {
            track_id: AUDIO_TRACK,
            base_decode_time: 16_000,
            samples: vec![Sample {
                data: b"AAC",
                duration: 1024,
                keyframe: true,
            }],
        },
    ];
    let frag = fragment(7, &runs);
    let top = boxes(&frag);
    assert_eq!((top[0].0, top[1].0), (*b"moof", *b"mdat"));
    assert_eq!(top[1].1, b"KEYFRAMEP1AAC");
    let moof_len = top[0].1.len() + 8;
    let trafs: Vec<_> = boxes(top[0].1)
        .into_iter()
        .filter(|b| b.0 == *b"traf")
        .collect();
    assert_eq!(trafs.len(), 2);
    let offset = |traf: &[u8]| {
        let trun = boxes(traf)
            .into_iter()
            .find(|b| b.0 == *b"trun")
            .expect("trun");
        u32::from_be_bytes([trun.1[8], trun.1[9], trun.1[10], trun.1[11]]) as usize
    };
    assert_eq!(&frag[offset(trafs[0].1)..][..8], b"KEYFRAME");
    assert_eq!(&frag[offset(trafs[1].1)..][..3], b"AAC");
    assert_eq!(offset(trafs[0].1), moof_len + 8);
}
