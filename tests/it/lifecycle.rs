//! The call lifecycle faults of issue 11, each against the simulator: hang-ups by the intercom
//! recovered every time (not once per process), the keyframe that admits a joiner reaching the
//! viewers already watching, an answered ring surviving a joiner that gives up, and the ring
//! ending for every listener when it is answered.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use c300x_bridge::intercom::sip::RingEvent;
use c300x_bridge::media::hub::{
    Frame, HubError, HubSettings, HubState, VideoFrame, Viewer, ViewerKind,
};
use c300x_bridge::sim::RingState;

use crate::intercom_calls::next_ring;
use crate::rig::{Rig, eventually, quick_hub};

const T: Duration = Duration::from_secs(15);

/// The next video frame (skipping audio and discontinuities).
async fn next_video(v: &mut Viewer) -> Arc<VideoFrame> {
    loop {
        match tokio::time::timeout(T, v.frames.recv())
            .await
            .expect("a frame in time")
            .expect("the viewer's stream is open")
        {
            Frame::Video(f) => return f,
            _ => continue,
        }
    }
}

/// Frames up to the next call's start (`Discontinuity`), then that call's first video frame.
async fn first_video_of_next_call(v: &mut Viewer) -> Arc<VideoFrame> {
    loop {
        match tokio::time::timeout(T, v.frames.recv())
            .await
            .expect("a frame in time")
            .expect("the viewer's stream is open (it was not dropped)")
        {
            Frame::Discontinuity => return next_video(v).await,
            _ => continue,
        }
    }
}

/// The intercom hangs up; the viewer must see the next call's keyframe. Returns the time from
/// the BYE's answer to that keyframe.
async fn hang_up_and_recover(rig: &Rig, v: &mut Viewer) -> Duration {
    assert_eq!(rig.sim.hang_up_all().await.expect("BYE"), 1);
    let t = Instant::now();
    let f = first_video_of_next_call(v).await;
    assert!(f.au.keyframe, "the new call starts at a keyframe");
    t.elapsed()
}

#[tokio::test]
async fn three_intercom_hang_ups_in_a_row_are_each_recovered() {
    let rig = Rig::builder().start().await;
    let mut v = rig.hub().join(ViewerKind::Rtsp).await.expect("join");
    next_video(&mut v).await;
    for n in 1..=3u64 {
        let took = hang_up_and_recover(&rig, &mut v).await;
        println!("intercom hang-up {n}: video at the viewer again after {took:?}");
        assert_eq!(rig.stat(|s| &s.invites_received), n + 1);
    }
    let status = rig.hub().status();
    assert_eq!(status.state, HubState::Live);
    assert_eq!(status.viewers, 1, "the viewer was never dropped");
    assert!(
        status.calls_ended.contains(&("remote_bye", 3)),
        "{status:?}"
    );
}

#[tokio::test]
async fn a_hang_up_after_a_linger_ended_call_is_again_the_first() {
    let rig = Rig::builder().start().await;
    let hub = rig.hub();
    let mut v = hub.join(ViewerKind::Rtsp).await.expect("join");
    next_video(&mut v).await;
    hang_up_and_recover(&rig, &mut v).await;
    drop(v);
    eventually("the linger ended the call", T, || {
        rig.stat(|s| &s.active_calls) == 0 && hub.status().state == HubState::Idle
    })
    .await;
    // A new viewer session: the intercom's hang-up is recovered as if it were the first.
    let mut v = hub.join(ViewerKind::Hls).await.expect("join again");
    next_video(&mut v).await;
    let took = hang_up_and_recover(&rig, &mut v).await;
    println!("hang-up in a new session: video again after {took:?}");
    assert_eq!(rig.stat(|s| &s.invites_received), 4);
}

#[tokio::test]
async fn viewers_watching_through_a_call_restart_get_the_keyframe_that_admits_a_joiner() {
    let rig = Rig::builder().start().await;
    let hub = rig.hub();
    let mut first = hub.join(ViewerKind::Rtsp).await.expect("first");
    let mut second = hub.join(ViewerKind::Hls).await.expect("second");
    next_video(&mut first).await;
    next_video(&mut second).await;
    assert_eq!(rig.sim.hang_up_all().await.expect("BYE"), 1);
    eventually("the hub places the next call", T, || {
        hub.status().state == HubState::Starting
    })
    .await;
    // The third viewer joins while the new call is being set up: it waits for its keyframe.
    let third = {
        let hub = hub.clone();
        tokio::spawn(async move { hub.join(ViewerKind::Mjpeg).await })
    };
    let k1 = first_video_of_next_call(&mut first).await;
    let k2 = first_video_of_next_call(&mut second).await;
    let mut third = third.await.expect("task").expect("third");
    let k3 = next_video(&mut third).await;
    assert!(k3.au.keyframe, "the joiner starts at a keyframe");
    for (name, k) in [("first", &k1), ("second", &k2)] {
        assert!(
            k.au.keyframe,
            "the {name} viewer's first frame of the new call is not a keyframe (pts {}, the \
             joiner's keyframe is pts {}): its decoder sees a corrupt picture for a GOP",
            k.pts, k3.pts
        );
    }
    assert_eq!(k1.pts, k3.pts, "the same keyframe admitted the joiner");
    assert_eq!(k2.pts, k3.pts);
}

#[tokio::test]
async fn an_answered_ring_is_not_ended_when_a_waiting_viewer_gives_up() {
    let settings = HubSettings {
        start_timeout: Duration::from_secs(1),
        ..quick_hub()
    };
    let rig = Rig::builder().hub(settings).start().await;
    let hub = rig.hub();
    rig.sim.faults().media_stopped.store(true, Ordering::SeqCst);
    let mut rings = rig.intercom.sip().rings();
    let mut ring = rig.sim.ring(20).await.expect("ring");
    let incoming = next_ring(&mut rings).await;
    hub.answer_ring(incoming).await.expect("answered");
    assert_eq!(
        ring.wait_for(T, |s| s == RingState::Answered).await,
        Some(RingState::Answered)
    );
    // No video (the unit sends none): the joiner gives up after the start timeout...
    let err = hub.join(ViewerKind::Rtsp).await.err().expect("times out");
    assert!(matches!(err, HubError::StartTimeout { .. }), "{err}");
    // ...but the answered call is the user's conversation: it stays up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        rig.stat(|s| &s.active_calls),
        1,
        "the answered call was hung up"
    );
    assert_eq!(rig.stat(|s| &s.byes_received), 0);
    hub.hang_up();
    eventually("hung up", T, || rig.stat(|s| &s.active_calls) == 0).await;
}

#[tokio::test]
async fn answering_a_ring_ends_it_for_every_listener() {
    let rig = Rig::builder().start().await;
    let mut rings = rig.intercom.sip().rings();
    let _ring = rig.sim.ring(20).await.expect("ring");
    let incoming = next_ring(&mut rings).await;
    assert!(rig.intercom.events().ringing().is_some());
    rig.hub()
        .answer_ring(incoming.clone())
        .await
        .expect("answered");
    // Everyone following the rings (MQTT's `ringing`, the status page) hears that it ended.
    let ended = tokio::time::timeout(T, async {
        loop {
            match rings.recv().await {
                Ok(RingEvent::Ended(e)) if e.call_id == incoming.call_id => return e,
                Ok(_) => continue,
                Err(e) => panic!("ring events: {e}"),
            }
        }
    })
    .await
    .expect("a ring-ended event for the answered ring");
    println!("ring ended: {:?}", ended.reason);
    assert!(rig.intercom.events().ringing().is_none());
}
