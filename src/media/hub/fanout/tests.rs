//! The frame path on crafted H.264 packets, without a call or a clock: viewers start at a
//! keyframe, the keyframe that admits a joiner reaches everyone already watching (issue 11,
//! fault 2), a call restart is marked, a full queue drops until the next keyframe, audio waits
//! for the next picture (never lost, never twice).

use super::*;
use crate::intercom::media::MediaKind;
use bytes::Bytes;

use crate::proto::h264::testdata::{PPS, SPS};

/// A camera sending single-NAL RTP packets at 10 fps.
struct Cam {
    seq: u16,
    ts: u32,
}

impl Cam {
    fn packet(&mut self, marker: bool, payload: &[u8]) -> MediaPacket {
        self.seq = self.seq.wrapping_add(1);
        MediaPacket {
            kind: MediaKind::Video,
            seq: self.seq,
            timestamp: self.ts,
            marker,
            ssrc: 7,
            payload_type: 96,
            payload: Bytes::copy_from_slice(payload),
            arrival: std::time::SystemTime::now(),
        }
    }

    fn keyframe(&mut self) -> Vec<MediaPacket> {
        self.ts += 9000;
        vec![
            self.packet(false, SPS),
            self.packet(false, PPS),
            self.packet(true, &[0x65, 0x88, 0x84, 0x21]),
        ]
    }

    fn p_frame(&mut self) -> Vec<MediaPacket> {
        self.ts += 9000;
        vec![self.packet(true, &[0x41, 0x9a, 0x02, 0x03])]
    }
}

fn fanout(queue: usize) -> Fanout {
    fanout_with(queue, None)
}

fn fanout_with(queue: usize, audio: Option<AacSettings>) -> Fanout {
    let (lease_tx, _) = mpsc::unbounded_channel();
    Fanout::new(
        "doorbell".into(),
        queue,
        audio,
        lease_tx,
        watch::channel(None).0,
        watch::channel(None).0,
        Arc::new(HubCounters::default()),
    )
}

fn send(f: &mut Fanout, packets: Vec<MediaPacket>) -> Outcome {
    let mut all = Outcome::default();
    // One instant per burst: the first frame's wall-clock offset is exactly 0.
    let now = Instant::now();
    for p in packets {
        let o = f.push(now, p);
        all.first_keyframe |= o.first_keyframe;
        all.admitted.extend(o.admitted);
        all.gone.extend(o.gone);
    }
    all
}

fn joiner(f: &mut Fanout, id: u64) -> oneshot::Receiver<Result<Viewer, HubError>> {
    let (reply, rx) = oneshot::channel();
    f.join(Joiner {
        id,
        kind: ViewerKind::Rtsp,
        reply,
    });
    rx
}

/// `K`/`P` with pts, `D` for a discontinuity, `A` audio with pts.
fn label(f: &Frame) -> String {
    match f {
        Frame::Video(v) if v.au.keyframe => format!("K{}", v.pts),
        Frame::Video(v) => format!("P{}", v.pts),
        Frame::Audio(a) => format!("A{}", a.pts),
        Frame::Discontinuity => "D".into(),
    }
}

/// What a viewer has queued, as [`label`]s.
fn drain(v: &mut Viewer) -> Vec<String> {
    std::iter::from_fn(|| v.frames.try_recv().ok())
        .map(|f| label(&f))
        .collect()
}

/// A ring tap that writes down every frame it gets, at once.
struct Recorded(Arc<std::sync::Mutex<Vec<String>>>);

impl FrameSink for Recorded {
    fn push(&mut self, frame: Frame) -> bool {
        self.0.lock().expect("lock").push(label(&frame));
        true
    }
}

fn viewer(rx: &mut oneshot::Receiver<Result<Viewer, HubError>>) -> Viewer {
    rx.try_recv().expect("admitted").expect("a viewer")
}

#[test]
fn viewers_watching_through_a_restart_get_the_keyframe_that_admits_a_joiner() {
    let mut f = fanout(64);
    let mut cam = Cam { seq: 100, ts: 0 };
    f.start_call(false);
    let out = send(&mut f, cam.keyframe());
    assert!(out.first_keyframe);
    let (mut r1, mut r2) = (joiner(&mut f, 1), joiner(&mut f, 2));
    assert_eq!(
        f.admit_waiting().admitted,
        [1, 2],
        "a keyframe is cached: at once"
    );
    let (mut v1, mut v2) = (viewer(&mut r1), viewer(&mut r2));
    send(&mut f, cam.p_frame());
    assert_eq!(drain(&mut v1), ["K0", "P9000"]);
    assert_eq!(drain(&mut v2), ["K0", "P9000"]);

    // The call restarts (remote BYE, no RTP, max call); a third viewer joins meanwhile.
    f.end_call();
    f.start_call(false);
    let mut r3 = joiner(&mut f, 3);
    assert!(
        f.admit_waiting().admitted.is_empty(),
        "no keyframe of this call yet"
    );
    let mut cam = Cam { seq: 5000, ts: 777 };
    let out = send(&mut f, cam.keyframe());
    assert_eq!(out.admitted, [3]);
    let mut v3 = viewer(&mut r3);
    let k = "K18000"; // the last frame (9000) + the 100 ms gap left between calls
    assert_eq!(drain(&mut v3), [k]);
    assert_eq!(
        drain(&mut v1),
        ["D", k],
        "the first viewer got the admitting keyframe"
    );
    assert_eq!(
        drain(&mut v2),
        ["D", k],
        "the second viewer got the admitting keyframe"
    );
}

#[test]
fn a_full_queue_drops_until_the_next_keyframe_and_a_dropped_receiver_is_gone() {
    let mut f = fanout(8);
    let mut cam = Cam { seq: 1, ts: 0 };
    f.start_call(false);
    send(&mut f, cam.keyframe());
    let (mut r1, mut r2) = (joiner(&mut f, 1), joiner(&mut f, 2));
    f.admit_waiting();
    let (mut slow, fast) = (viewer(&mut r1), viewer(&mut r2));
    drop(fast.frames);
    let mut gone = Vec::new();
    for _ in 0..12 {
        gone.extend(send(&mut f, cam.p_frame()).gone);
    }
    assert_eq!(gone, [2], "the dropped receiver is reported once");
    let got = drain(&mut slow);
    assert_eq!(got.len(), 8, "the queue held 8: {got:?}");
    send(&mut f, cam.p_frame());
    assert!(
        drain(&mut slow).is_empty(),
        "after a drop: nothing until a keyframe"
    );
    send(&mut f, cam.keyframe());
    assert!(drain(&mut slow)[0].starts_with('K'));
    let snap = f.counters.snapshot(crate::media::hub::HubStatus::initial(
        &crate::config::Panel {
            name: "doorbell".into(),
            devaddr: 20,
        },
    ));
    assert_eq!(
        snap.frames_dropped, 1,
        "the frame that did not fit; then it waits: {snap:?}"
    );
}

#[test]
fn packets_without_a_call_are_ignored_and_joiners_wait() {
    let mut f = fanout(8);
    let mut cam = Cam { seq: 1, ts: 0 };
    let mut r = joiner(&mut f, 1);
    let out = send(&mut f, cam.keyframe());
    assert!(!out.first_keyframe && out.admitted.is_empty());
    assert!(r.try_recv().is_err(), "still waiting");
    f.reject(
        1,
        HubError::Stopped {
            panel: "doorbell".into(),
        },
    );
    assert!(matches!(r.try_recv(), Ok(Err(HubError::Stopped { .. }))));
}

#[test]
fn a_joiner_that_gave_up_before_its_keyframe_is_reported_gone() {
    let mut f = fanout(8);
    let mut cam = Cam { seq: 1, ts: 0 };
    f.start_call(false);
    let (r1, mut r2) = (joiner(&mut f, 1), joiner(&mut f, 2));
    drop(r1);
    let out = send(&mut f, cam.keyframe());
    assert_eq!((out.admitted, out.gone), (vec![2], vec![1]));
    assert_eq!(f.viewers(), 1);
    assert!(r2.try_recv().is_ok());
}

#[test]
fn viewers_get_audio_with_the_next_picture_in_order_never_twice() {
    let mut f = fanout_with(256, Some(AacSettings::default()));
    let mut cam = Cam { seq: 1, ts: 0 };
    // A silent preview: the hub makes AAC silence up to each picture, after it.
    f.start_call(true);
    let tap = Arc::new(std::sync::Mutex::new(Vec::new()));
    f.add_tap(Box::new(Recorded(tap.clone())));
    send(&mut f, cam.keyframe());
    let mut r1 = joiner(&mut f, 1);
    f.admit_waiting();
    let mut v1 = viewer(&mut r1);
    let mut second = None;
    let mut all1 = drain(&mut v1);
    for i in 0..12 {
        send(&mut f, cam.p_frame());
        let queued = drain(&mut v1);
        all1.extend(queued.iter().cloned());
        // Each burst: held audio, then the picture; at most MAX_HELD_AUDIO - 1 left behind.
        let last_picture = queued.iter().rposition(|l| l.starts_with('P'));
        let trailing = last_picture.map_or(queued.len(), |p| queued.len() - p - 1);
        assert!(
            trailing == 0 || trailing >= MAX_HELD_AUDIO,
            "burst {i}: {queued:?}"
        );
        if i == 5 {
            // A joiner admitted from the cache mid-GOP while audio is held back.
            let mut r2 = joiner(&mut f, 2);
            assert_eq!(f.admit_waiting().admitted, [2]);
            second = Some(viewer(&mut r2));
        }
    }
    f.end_call();
    let everything = tap.lock().expect("lock").clone();
    assert!(
        everything.iter().filter(|l| l.starts_with('A')).count() >= 10,
        "silence was made: {everything:?}"
    );
    // The tap got each frame at once; the viewers the same frames, in the same order, once.
    let mut v2 = second.expect("second viewer");
    all1.extend(drain(&mut v1));
    assert_eq!(everything.first().map(String::as_str), Some("K0"));
    assert_eq!(all1, everything, "held audio is released at the call's end");
    assert_eq!(
        drain(&mut v2),
        everything,
        "a joiner from the cache: each audio frame once"
    );
}
