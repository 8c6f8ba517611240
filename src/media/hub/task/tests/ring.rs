//! The driver's doorbell side on the paused clock with the fake intercom: a ring's preview feeds
//! viewers and the ring's tap with no view call; its end falls back to a view call for the
//! viewers left; answering keeps the same call (no second placement, no discontinuity); a
//! preview without video falls back to a snapshot call that ends with the picture; silent AAC
//! while the preview sends no audio.

use super::*;
use crate::media::hub::machine::{PREVIEW_START, SNAPSHOT_CALL};
use crate::media::hub::{FrameSink, RingRequest};
use crate::media::transcode::AacSettings;

/// A ring tap that records what it got, and whether the hub let it go.
#[derive(Clone, Default)]
struct Tap(Arc<Mutex<(Vec<&'static str>, bool)>>);

struct TapSink(Tap);

impl FrameSink for TapSink {
    fn push(&mut self, frame: Frame) -> bool {
        let kind = match frame {
            Frame::Video(v) if v.au.keyframe => "K",
            Frame::Video(_) => "P",
            Frame::Audio(_) => "A",
            Frame::Discontinuity => "D",
        };
        if let Ok(mut t) = self.0.0.lock() {
            t.0.push(kind);
        }
        true
    }
}

impl Drop for TapSink {
    fn drop(&mut self) {
        if let Ok(mut t) = self.0.0.lock() {
            t.1 = true;
        }
    }
}

impl Tap {
    fn video(&self) -> Vec<&'static str> {
        let t = self.0.lock().expect("tap");
        t.0.iter().copied().filter(|k| *k != "A").collect()
    }
    fn audio(&self) -> usize {
        self.0
            .lock()
            .expect("tap")
            .0
            .iter()
            .filter(|k| **k == "A")
            .count()
    }
    fn dropped(&self) -> bool {
        self.0.lock().expect("tap").1
    }
}

fn incoming() -> IncomingRing {
    IncomingRing {
        call_id: "ring-1".into(),
        from: "<sip:c300x@example>".into(),
        offer_sdp: String::new(),
        at: SystemTime::now(),
    }
}

fn ring(hub: &StreamHub, preview: bool, snapshot_call: bool) -> Tap {
    let tap = Tap::default();
    hub.ring(RingRequest {
        ring: incoming(),
        preview,
        snapshot_call,
        tap: Some(Box::new(TapSink(tap.clone()))),
    });
    tap
}

#[tokio::test(start_paused = true)]
async fn a_preview_feeds_viewers_and_the_tap_without_a_view_call_then_falls_back() {
    let fake = Fake::default();
    let (hub, _stop, _task) = hub(&fake);
    let tap = ring(&hub, true, false);
    after(150).await;
    assert_eq!(fake.placed(), ["preview:ring-1"]);
    assert_eq!(hub.status().call_source, Some("ring_preview"));
    let mut call = fake.call(1);
    call.keyframe().await;
    call.p_frame().await;
    after(10).await;
    assert_eq!(tap.video(), ["K", "P"]);
    // A viewer opening the camera now starts from the cached keyframe, at once.
    let mut v = hub.join(ViewerKind::Hls).await.expect("joined");
    assert_eq!(frames(&mut v), ["K", "P"]);
    call.p_frame().await;
    after(10).await;
    assert_eq!(frames(&mut v), ["P"]);
    assert_eq!(fake.placed(), ["preview:ring-1"], "no view call");
    // The ring ends (CANCEL): the viewer gets a view call; the preview had no dialog to end.
    call.ended.send_replace(Some(EndReason::NotAnswered));
    after(150).await;
    assert_eq!(fake.placed(), ["preview:ring-1", "view:20"]);
    assert!(fake.hung_up().is_empty());
    assert_eq!(hub.status().calls_ended, [("ring_ended", 1)]);
    assert_eq!(hub.status().call_source, Some("view"));
    drop(v);
    after(10_200).await;
    assert_eq!(hub.status().state, HubState::Idle);
    assert!(tap.dropped(), "an idle hub lets the ring's tap go");
}

#[tokio::test(start_paused = true)]
async fn a_preview_nobody_watches_idles_when_the_ring_ends() {
    let fake = Fake::default();
    let (hub, _stop, _task) = hub(&fake);
    let tap = ring(&hub, true, false);
    after(150).await;
    let mut call = fake.call(1);
    call.keyframe().await;
    after(60_000).await;
    assert_eq!(
        hub.status().state,
        HubState::Live,
        "no linger for a preview"
    );
    call.ended.send_replace(Some(EndReason::NotAnswered));
    after(10).await;
    assert_eq!(hub.status().state, HubState::Idle);
    assert_eq!(fake.placed(), ["preview:ring-1"]);
    assert!(tap.dropped());
}

#[tokio::test(start_paused = true)]
async fn answering_the_preview_keeps_the_same_call_and_media() {
    let fake = Fake::default();
    let (hub, _stop, _task) = hub(&fake);
    let _tap = ring(&hub, true, false);
    after(150).await;
    let mut call = fake.call(1);
    call.keyframe().await;
    let mut v = hub.join(ViewerKind::Rtsp).await.expect("joined");
    assert_eq!(frames(&mut v), ["K"]);
    hub.answer_ring(incoming()).await.expect("answered");
    assert_eq!(fake.placed(), ["preview:ring-1"], "no second call");
    assert_eq!(fake.with(|s| s.answered.clone()), ["call-1"]);
    let s = hub.status();
    assert_eq!(s.call_source, Some("answered_ring"));
    assert_eq!(s.call_id.as_deref(), Some("call-1"));
    call.p_frame().await;
    after(10).await;
    assert_eq!(frames(&mut v), ["P"], "no discontinuity, no gap");
    drop(v);
    after(60_000).await;
    assert!(
        fake.hung_up().is_empty(),
        "an answered ring does not linger away"
    );
    hub.hang_up();
    after(10).await;
    assert_eq!(fake.hung_up(), ["call-1"]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_answer_ends_the_preview_and_the_viewer_gets_a_view_call() {
    let fake = Fake::default();
    let (hub, _stop, _task) = hub(&fake);
    let _tap = ring(&hub, true, false);
    after(150).await;
    let mut call = fake.call(1);
    call.keyframe().await;
    let _v = hub.join(ViewerKind::Rtsp).await.expect("joined");
    fake.with(|s| s.answer_fails = Some("no ACK".into()));
    let err = hub.answer_ring(incoming()).await.expect_err("fails");
    assert!(err.to_string().contains("no ACK"), "{err}");
    after(150).await;
    assert_eq!(hub.status().calls_ended, [("answer_failed", 1)]);
    assert_eq!(fake.placed(), ["preview:ring-1", "view:20"]);
}

#[tokio::test(start_paused = true)]
async fn without_preview_video_a_snapshot_call_gets_the_picture_and_ends() {
    let fake = Fake::default();
    let (hub, _stop, _task) = hub(&fake);
    let tap = ring(&hub, true, true);
    after(150).await;
    assert_eq!(fake.placed(), ["preview:ring-1"]);
    // The unit ignores our 183: no early media.
    after(PREVIEW_START.as_millis() as u64 + 100).await;
    assert_eq!(fake.placed(), ["preview:ring-1", "view:20"]);
    assert_eq!(hub.status().calls_ended, [("no_early_media", 1)]);
    after(50).await;
    let mut call = fake.call(2);
    call.keyframe().await;
    after(10).await;
    assert_eq!(tap.video(), ["K"]);
    hub.ring_picture_taken();
    after(10).await;
    assert_eq!(
        fake.hung_up(),
        ["call-1", "call-2"],
        "the silent preview's media stopped; no linger for a snapshot call"
    );
    let s = hub.status();
    assert_eq!(s.state, HubState::Idle);
    assert_eq!(s.calls_ended, [("no_early_media", 1), ("ring_snapshot", 1)]);
    assert!(tap.dropped());
}

#[tokio::test(start_paused = true)]
async fn no_preview_and_no_snapshot_call_places_nothing() {
    let fake = Fake::default();
    let (hub, _stop, _task) = hub(&fake);
    let tap = ring(&hub, false, false);
    after(1_000).await;
    assert!(fake.placed().is_empty());
    assert!(tap.dropped(), "nothing will come: the tap ends at once");
    let tap = ring(&hub, false, true);
    after(150).await;
    assert_eq!(fake.placed(), ["view:20"]);
    // No picture within the snapshot call's time: it ends anyway.
    after(SNAPSHOT_CALL.as_millis() as u64).await;
    assert_eq!(fake.hung_up(), ["call-1"]);
    assert!(tap.dropped());
}

#[tokio::test(start_paused = true)]
async fn a_preview_without_audio_gets_silent_aac_until_it_is_answered() {
    let fake = Fake::default();
    let stop = CancellationToken::new();
    let panel = Panel {
        name: "doorbell".into(),
        devaddr: 20,
    };
    let settings = HubSettings {
        audio: Some(AacSettings::default()),
        ..settings()
    };
    let (hub, task) = StreamHub::new(panel, fake.clone(), settings, stop.clone());
    let _task = tokio::spawn(task);
    let tap = ring(&hub, true, false);
    after(150).await;
    let mut call = fake.call(1);
    call.keyframe().await;
    for _ in 0..20 {
        after(100).await;
        call.p_frame().await;
    }
    after(10).await;
    // 2 s of video at 16 kHz is 31 AAC frames; the encoder holds back one or two.
    let silent = tap.audio();
    assert!((27..=32).contains(&silent), "{silent} silent AAC frames");
    let info = hub.stream_info().expect("stream info");
    assert!(info.audio.is_some(), "the audio track is announced");
    hub.answer_ring(incoming()).await.expect("answered");
    let before = tap.audio();
    for _ in 0..10 {
        after(100).await;
        call.p_frame().await;
    }
    after(10).await;
    assert!(
        tap.audio() <= before + 1,
        "answered: the intercom's audio from now on, no more silence"
    );
}
