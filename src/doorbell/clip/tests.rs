//! The clip writer's rules with hand-made frames (no codec needed: video is copied): it starts at
//! a keyframe, cuts at the length, drops audio from before the first keyframe, fragments at
//! keyframes, ends early on a format change, and rewrites the durations in place.

use std::io::Cursor;
use std::sync::Arc;
use std::time::SystemTime;

use super::*;
use crate::media::transcode::AacFrame;

use crate::proto::h264::testdata::{PPS, SPS};

fn video(pts: u64, keyframe: bool) -> Frame {
    let mut nals = Vec::new();
    if keyframe {
        nals.push(Bytes::from_static(SPS));
        nals.push(Bytes::from_static(PPS));
        nals.push(Bytes::from_static(&[0x65, 0x88, 0x84]));
    } else {
        nals.push(Bytes::from_static(&[0x41, 0x9a, 0x02]));
    }
    Frame::Video(Arc::new(VideoFrame {
        pts,
        au: AccessUnit {
            timestamp: pts as u32,
            nals,
            keyframe,
        },
        received: SystemTime::now(),
    }))
}

/// AAC at 16 kHz: `pts` in samples on the hub timeline.
fn audio(pts: u64) -> Frame {
    Frame::Audio(Arc::new(AudioFrame {
        pts,
        frame: AacFrame {
            pts,
            duration: 1024,
            data: Bytes::from_static(&[0x21, 0x10, 0x05]),
        },
    }))
}

fn tracks(with_audio: bool) -> ClipTracks {
    let key = video(0, true);
    let Frame::Video(v) = key else { unreachable!() };
    ClipTracks::from_keyframe(
        &v.au,
        with_audio.then(|| AudioSpecificConfig::aac_lc(16_000, 1)),
    )
    .expect("tracks")
}

fn count(data: &[u8], kind: &[u8; 4]) -> usize {
    data.windows(4).filter(|w| w == kind).count()
}

#[test]
fn starts_at_a_keyframe_cuts_at_the_length_and_keeps_audio_in_step() {
    let t = tracks(true);
    assert_eq!((t.width, t.height), (400, 288));
    let mut w = ClipWriter::new(Cursor::new(Vec::new()), t, Duration::from_secs(3)).expect("new");
    let base = 900_000; // the hub timeline is not at zero when a ring starts
    // Mid-GOP frames and audio before the keyframe are not in the clip.
    assert_eq!(
        w.push(&video(base - 9000, false)).expect("push"),
        Push::More
    );
    assert_eq!(
        w.push(&audio(base * 16 / 90 - 1024)).expect("push"),
        Push::More
    );
    let mut full_at = None;
    for i in 0..40u64 {
        let pts = base + i * 9000;
        let key = i % 20 == 0;
        if w.push(&video(pts, key)).expect("push") == Push::Full {
            full_at = Some(i);
            break;
        }
        // About 1.4 AAC frames per 100 ms video frame.
        w.push(&audio(base * 16 / 90 + i * 1440)).expect("push");
    }
    assert_eq!(full_at, Some(30), "3 s at 10 fps");
    let (out, summary) = w.finish().expect("finish");
    assert_eq!(summary.video_frames, 30);
    assert_eq!(summary.duration, Duration::from_secs(3));
    assert!((28..=30).contains(&summary.audio_frames), "{summary:?}");
    let data = out.into_inner();
    assert_eq!(summary.bytes, data.len() as u64);
    // One fragment per second (and per keyframe): 0–1, 1–2, 2–3 s.
    assert_eq!(count(&data, b"moof"), 3);
    assert_eq!(count(&data, b"trak"), 2);
    // mehd holds the longer track in ms (audio may end a little after the video).
    let mehd = data.windows(4).position(|w| w == b"mehd").expect("mehd");
    let ms = u64::from_be_bytes(data[mehd + 8..mehd + 16].try_into().expect("8 bytes"));
    assert!((3000..3100).contains(&ms), "{ms} ms");
    // The first sample is the keyframe, decode time 0.
    let tfdt = data.windows(4).position(|w| w == b"tfdt").expect("tfdt");
    assert_eq!(&data[tfdt + 8..tfdt + 16], &0u64.to_be_bytes());
}

#[test]
fn video_only_format_change_and_empty_clips() {
    let mut w = ClipWriter::new(
        Cursor::new(Vec::new()),
        tracks(false),
        Duration::from_secs(60),
    )
    .expect("new");
    w.push(&video(0, true)).expect("push");
    w.push(&audio(0)).expect("push"); // no audio track: ignored
    w.push(&video(9000, false)).expect("push");
    // A keyframe with another SPS ends the clip early.
    let mut other = video(18_000, true);
    if let Frame::Video(v) = &mut other {
        let v = Arc::make_mut(v);
        v.au.nals[0] = Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1f, 0xd9]);
    }
    assert_eq!(w.push(&other).expect("push"), Push::Full);
    assert_eq!(w.push(&video(27_000, false)).expect("push"), Push::Full);
    let (out, summary) = w.finish().expect("finish");
    assert_eq!((summary.video_frames, summary.audio_frames), (2, 0));
    assert_eq!(summary.duration, Duration::from_millis(200));
    let data = out.into_inner();
    assert_eq!(count(&data, b"trak"), 1);

    // Nothing but P-frames: no clip.
    let mut w = ClipWriter::new(
        Cursor::new(Vec::new()),
        tracks(true),
        Duration::from_secs(5),
    )
    .expect("new");
    w.push(&video(0, false)).expect("push");
    assert!(matches!(w.finish(), Err(ClipError::Empty)));
    // A keyframe without parameter sets cannot describe the track.
    let bare = AccessUnit {
        timestamp: 0,
        nals: vec![Bytes::from_static(&[0x65, 1])],
        keyframe: true,
    };
    assert!(matches!(
        ClipTracks::from_keyframe(&bare, None),
        Err(ClipError::NoParameterSets)
    ));
}

#[test]
fn a_discontinuity_waits_for_the_next_keyframe() {
    let mut w = ClipWriter::new(
        Cursor::new(Vec::new()),
        tracks(false),
        Duration::from_secs(60),
    )
    .expect("new");
    w.push(&video(0, true)).expect("push");
    w.push(&video(9000, false)).expect("push");
    w.push(&Frame::Discontinuity).expect("push");
    // The new call's P-frames reference pictures the clip never had.
    w.push(&video(40_000, false)).expect("push");
    w.push(&video(49_000, true)).expect("push");
    let (_, summary) = w.finish().expect("finish");
    assert_eq!(summary.video_frames, 3);
}
