//! The muxer fed by a pretend camera: 10 fps, a natural IDR every `gop` frames and, when it
//! honours them, an IDR at the frame after each request (as the unit and the simulator answer a
//! PLI); AAC frames interleaved by time. Asserts on segments, parts, the target and requests.

use std::time::SystemTime;

use super::*;
use crate::media::transcode::AacFrame;
use crate::proto::aac::AudioSpecificConfig;
use crate::proto::h264::testdata::{PPS, SPS};
use crate::proto::h264::{AccessUnit, SpsInfo};

fn muxer() -> Muxer {
    let info = StreamInfo {
        sps: Bytes::from_static(SPS),
        pps: Bytes::from_static(PPS),
        video: SpsInfo::parse(SPS).expect("sps"),
        audio: Some(AudioSpecificConfig::aac_lc(16_000, 1)),
    };
    Muxer::new(&info).expect("muxer")
}

/// Frame `n` at 10 fps, an IDR (with SPS/PPS) when `key`.
fn video(n: u64, key: bool) -> Frame {
    let mut nals = Vec::new();
    if key {
        nals.extend([Bytes::from_static(SPS), Bytes::from_static(PPS)]);
    }
    nals.push(Bytes::from(vec![
        if key { 0x65 } else { 0x41 },
        0x88,
        n as u8,
    ]));
    Frame::Video(Arc::new(VideoFrame {
        pts: 90_000 + n * 9000,
        au: AccessUnit {
            timestamp: (n * 9000) as u32,
            nals,
            keyframe: key,
        },
        received: SystemTime::now(),
    }))
}

fn audio(n: u64) -> Frame {
    Frame::Audio(Arc::new(AudioFrame {
        pts: 16_000 + n * 1024,
        frame: AacFrame {
            pts: n * 1024,
            duration: 1024,
            data: Bytes::from_static(&[0x21, 0x10, 0x04]),
        },
    }))
}

/// The intercom's encoder as the muxer sees it.
struct Cam {
    next: u64,
    gop: u64,
    honours: bool,
    /// Frames from a request to its IDR (1: the next frame).
    lag: u64,
    /// The frame an answer is due at.
    due: Option<u64>,
    /// IDR requests the muxer made.
    requests: usize,
}

impl Cam {
    fn new(gop: u64, honours: bool) -> Self {
        Self {
            next: 0,
            gop,
            honours,
            lag: 1,
            due: None,
            requests: 0,
        }
    }

    /// Feeds `frames` frames (and the audio of their time) to `m`.
    fn feed(&mut self, m: &mut Muxer, frames: u64) {
        for _ in 0..frames {
            let n = self.next;
            let answer = self.honours && self.due.is_some_and(|d| d <= n);
            let key = n.is_multiple_of(self.gop) || answer;
            if key {
                self.due = None;
            }
            if m.push(&video(n, key)) {
                self.requests += 1;
                self.due = Some(n + self.lag);
            }
            let mut a = n * 9000 / 5760;
            while a * 5760 < (n + 1) * 9000 {
                if a * 5760 >= n * 9000 {
                    m.push(&audio(a));
                }
                a += 1;
            }
            self.next += 1;
        }
    }

    /// Frames that would have come while nobody watched: skipped (a discontinuity, a cache).
    fn skip(&mut self, frames: u64) {
        self.next += frames;
    }
}

fn durations(m: &Muxer) -> Vec<f64> {
    let pl = m.playlist();
    pl.segments
        .iter()
        .filter(|s| s.complete)
        .map(|s| s.duration)
        .collect()
}

#[test]
fn one_idr_request_per_segment_makes_full_one_second_segments() {
    let mut m = muxer();
    assert!(
        m.init
            .as_ref()
            .is_some_and(|i| i.windows(4).any(|w| w == b"mp4a"))
    );
    // The unit's own GOP is 2 s; each request is made on frame 9 of a segment.
    let mut cam = Cam::new(20, true);
    cam.feed(&mut m, 9);
    assert_eq!((cam.requests, m.complete_segments()), (0, 0));
    cam.feed(&mut m, 1);
    assert_eq!(cam.requests, 1, "asked on the segment's last frame");
    cam.feed(&mut m, 1);
    assert_eq!(m.complete_segments(), 1, "closed by the IDR at 1.0 s");
    cam.feed(&mut m, 39);
    assert_eq!(cam.requests, 5);
    assert_eq!(durations(&m), vec![1.0; 4]);
    let pl = m.playlist();
    assert_eq!(pl.target_duration, 1);
    let msns: Vec<u64> = pl.segments.iter().map(|s| s.msn).collect();
    assert_eq!(msns, vec![0, 1, 2, 3, 4]);
    for s in pl.segments.iter().filter(|s| s.complete) {
        assert_eq!(s.parts.len(), 2, "{s:?}");
        assert!(s.parts[0].independent && !s.parts[1].independent);
        assert!(s.parts.iter().all(|p| p.duration <= PART_TARGET + 1e-9));
    }
    let seg = m.segment(1).expect("segment 1").bytes();
    assert_eq!(&seg[4..8], b"moof");
    assert_eq!(seg.windows(4).filter(|w| w == b"moof").count(), 2);
    // Parameter sets live in avcC, not in the samples.
    assert!(!seg.windows(SPS.len()).any(|w| w == SPS));
    assert!(!pl.segments[4].complete);
    let text = pl.render();
    assert!(text.contains("#EXT-X-TARGETDURATION:1\n"), "{text}");
    assert!(text.contains("#EXTINF:1.000,\nseg0.m4s\n"), "{text}");
    assert!(text.contains("#EXT-X-PRELOAD-HINT"));
}

#[test]
fn a_slow_unit_is_asked_earlier_after_its_first_answer() {
    // The unit answers 0.3 s after a request: the first segment is 1.2 s, then requests go out
    // 0.3 s ahead and segments are 1 s again.
    let mut m = muxer();
    let mut cam = Cam::new(1000, true);
    cam.lag = 3;
    cam.feed(&mut m, 43);
    assert_eq!(durations(&m), vec![1.2, 1.0, 1.0, 1.0]);
    assert_eq!(m.target_duration(), 1);
    assert_eq!(
        cam.requests, 4,
        "on frames 9, 19, 29 and 39: 0.3 s ahead from the second"
    );
}

#[test]
fn a_first_answer_too_late_for_the_target_is_dropped_and_measured() {
    // 0.6 s from request to IDR: the first segment cannot round to 1 s and is dropped; the next
    // request goes out 0.5 s ahead (the most), so segments are 1.1 s and the target stays 1.
    let mut m = muxer();
    let mut cam = Cam::new(1000, true);
    cam.lag = 6;
    cam.feed(&mut m, 15 + 11 + 11 + 1);
    assert_eq!(durations(&m), vec![1.1, 1.1]);
    assert_eq!(m.playlist().segments[0].msn, 1);
    assert_eq!(m.target_duration(), 1);
}

#[test]
fn a_late_answer_still_rounds_to_the_target() {
    // The IDR comes three frames after the request (1.2 s): the segment keeps its place and
    // the target stays 1 (1.2 rounds to 1).
    let mut m = muxer();
    let mut cam = Cam::new(12, false);
    cam.feed(&mut m, 25);
    assert_eq!(durations(&m), vec![1.2, 1.2]);
    assert_eq!(m.target_duration(), 1);
    assert_eq!(cam.requests, 2);
}

#[test]
fn a_cached_gop_too_long_for_the_target_is_dropped_once() {
    // A warm join: the hub's cache hands over 1.5 s of an old GOP at once; the answer to the
    // request made on it arrives after. The old GOP would make a 1.6 s segment (target 2).
    let mut m = muxer();
    let mut cam = Cam::new(1000, false);
    cam.feed(&mut m, 15);
    assert_eq!(cam.requests, 1);
    assert_eq!(
        m.newest_msn(),
        None,
        "dropped: it cannot round to 1 s any more"
    );
    cam.skip(985); // the next IDR (the answer)
    let mut cam2 = Cam {
        honours: true,
        ..cam
    };
    cam2.feed(&mut m, 21);
    // The answer seemed 99 s late (the cache's age): the next request goes out the most ahead
    // (0.5 s), once, making one short segment; then the measured one frame.
    assert_eq!(durations(&m), vec![0.6, 1.0]);
    assert_eq!(m.playlist().segments[0].msn, 1);
    assert_eq!(m.target_duration(), 1);

    // 1.2 s cached: kept, the first playlist comes as soon as the answer arrives.
    let mut m = muxer();
    let mut cam = Cam::new(12, false);
    cam.feed(&mut m, 13);
    assert_eq!(durations(&m), vec![1.2]);
    assert_eq!(m.target_duration(), 1);
}

#[test]
fn a_unit_that_ignores_requests_gets_its_gop_as_the_target() {
    // Requests go unanswered and the GOP is 6 s: the first segment is dropped once (it cannot
    // round to 1 s), then segments follow the GOP and the target grows to fit them.
    let mut m = muxer();
    let mut cam = Cam::new(60, false);
    cam.feed(&mut m, 121);
    assert_eq!(cam.requests, 2, "one per segment, not per frame");
    assert_eq!(durations(&m), vec![6.0]);
    assert_eq!(m.target_duration(), 6);
}

#[test]
fn a_discontinuity_waits_for_the_next_idr_and_is_marked() {
    let mut m = muxer();
    let mut cam = Cam::new(20, true);
    cam.feed(&mut m, 25);
    assert_eq!(m.newest_msn(), Some(2));
    m.push(&Frame::Discontinuity);
    let mut stale = Cam {
        honours: false,
        ..cam
    };
    stale.feed(&mut m, 10); // frames 25..35, no IDR among these: dropped
    assert_eq!(m.newest_msn(), Some(2));
    let mut cam = Cam {
        honours: true,
        ..stale
    };
    cam.skip(5);
    cam.feed(&mut m, 21); // from the natural IDR at 40
    let pl = m.playlist();
    let marks: Vec<bool> = pl.segments.iter().map(|s| s.discontinuity).collect();
    assert_eq!(marks, vec![false, false, false, true, false, false]);
    assert!(pl.render().contains("#EXT-X-DISCONTINUITY\n"));
    assert_eq!(m.target_duration(), 1);
}

#[test]
fn old_segments_are_dropped_and_the_playlist_lists_six() {
    let mut m = muxer();
    Cam::new(20, true).feed(&mut m, 10 * 14 + 1);
    assert_eq!(m.complete_segments(), KEPT);
    assert!(m.segment(3).is_none() && m.segment(4).is_some());
    let pl = m.playlist();
    assert_eq!(pl.segments.iter().filter(|s| s.complete).count(), LISTED);
}
