//! The ring's silent preview end to end at the SIP and media level, against the simulator: 180
//! then 183 with our SDP and never a 200 by itself; early media decrypted with the offer's keys
//! in the hub; a viewer during the ring starts at once and no view INVITE is placed; answering
//! keeps the same media and our audio starts; CANCEL with or without `Reason`; reject codes.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use c300x_bridge::intercom::sip::{RingEndReason, RingEvent};
use c300x_bridge::media::hub::{RingRequest, ViewerKind};
use c300x_bridge::sim::{EarlyMedia, RingState, SimStats};

use crate::intercom_calls::next_ring;
use crate::rig::{Rig, eventually};

const T: Duration = Duration::from_secs(10);

async fn next_end(rings: &mut tokio::sync::broadcast::Receiver<RingEvent>) -> RingEndReason {
    loop {
        match tokio::time::timeout(T, rings.recv())
            .await
            .expect("ring end in time")
            .expect("ring channel open")
        {
            RingEvent::Ended(e) => return e.reason,
            RingEvent::Incoming(_) => continue,
        }
    }
}

fn preview(ring: c300x_bridge::intercom::sip::IncomingRing) -> RingRequest {
    RingRequest {
        ring,
        preview: true,
        snapshot_call: false,
        tap: None,
    }
}

#[tokio::test]
async fn a_previewed_ring_streams_to_viewers_without_a_view_call_and_is_answered_on_the_same_media()
{
    let rig = Rig::builder().start().await;
    let (sim, hub) = (&rig.sim, rig.hub());
    let mut rings = rig.intercom.sip().rings();
    let mut ring = sim.ring(20).await.expect("ring");
    let incoming = next_ring(&mut rings).await;
    hub.ring(preview(incoming.clone()));
    let early = ring
        .wait_early_media(T, |e| matches!(e, EarlyMedia::Streaming { .. }))
        .await;
    assert!(early.is_some(), "the unit streams after our 183");
    assert_eq!(ring.state(), RingState::Ringing, "a 183 is no answer");
    eventually("the preview's first keyframe", T, || {
        hub.last_keyframe().is_some()
    })
    .await;
    // A viewer opening the camera now starts from the cached keyframe.
    let asked = Instant::now();
    let mut v = hub.join(ViewerKind::Rtsp).await.expect("joined");
    let first = v.frames.recv().await.expect("a frame");
    let waited = asked.elapsed();
    assert!(
        matches!(&first, c300x_bridge::media::hub::Frame::Video(f) if f.au.keyframe),
        "starts with a keyframe"
    );
    eprintln!("viewer during the ring: first IDR after {waited:?}");
    assert_eq!(rig.stat(|s| &s.invites_received), 0, "no view INVITE");
    assert_eq!(hub.status().call_source, Some("ring_preview"));
    let call_id = incoming.call_id.clone();
    let audio_before = sim
        .stats()
        .call_media(&call_id)
        .map_or(0, |m| m.audio_packets);
    assert_eq!(audio_before, 0, "audio is inactive during the preview");
    hub.answer_ring(incoming).await.expect("answered");
    assert_eq!(
        ring.wait_for(T, |s| s == RingState::Answered).await,
        Some(RingState::Answered)
    );
    assert_eq!(next_end(&mut rings).await, RingEndReason::Answered);
    assert_eq!(hub.status().call_source, Some("answered_ring"));
    eventually("our audio reaches the unit", T, || {
        sim.stats()
            .call_media(&call_id)
            .is_some_and(|m| m.audio_packets > 10)
    })
    .await;
    // The same media goes on: frames keep coming without a discontinuity.
    let mut video = 0;
    while video < 5 {
        match tokio::time::timeout(T, v.frames.recv()).await {
            Ok(Some(c300x_bridge::media::hub::Frame::Video(_))) => video += 1,
            Ok(Some(c300x_bridge::media::hub::Frame::Discontinuity)) => {
                panic!("answering must not restart the media")
            }
            Ok(Some(_)) => {}
            other => panic!("no frames after the answer: {other:?}"),
        }
    }
    assert_eq!(rig.stat(|s| &s.invites_received), 0);
    hub.hang_up();
    eventually("BYE reached the unit", T, || {
        SimStats::get(&sim.stats().byes_received) == 1
    })
    .await;
}

#[tokio::test]
async fn cancel_with_reason_is_answered_elsewhere_and_without_it_just_cancelled() {
    let rig = Rig::builder().start().await;
    let (sim, hub) = (&rig.sim, rig.hub());
    let mut rings = rig.intercom.sip().rings();
    let mut ring = sim.ring(20).await.expect("ring");
    hub.ring(preview(next_ring(&mut rings).await));
    ring.wait_early_media(T, |e| matches!(e, EarlyMedia::Streaming { .. }))
        .await
        .expect("early media");
    eventually("preview live", T, || hub.status().call_id.is_some()).await;
    sim.answer_elsewhere().expect("cancel");
    assert_eq!(next_end(&mut rings).await, RingEndReason::AnsweredElsewhere);
    eventually("the preview ended with the ring", T, || {
        hub.status().call_id.is_none()
    })
    .await;
    assert_eq!(hub.status().calls_ended, [("ring_ended", 1)]);
    // A plain CANCEL (the unit gave up).
    let _ring = sim.ring(20).await.expect("ring");
    hub.ring(preview(next_ring(&mut rings).await));
    eventually("preview live", T, || hub.status().call_id.is_some()).await;
    sim.cancel_rings().expect("cancel");
    assert_eq!(next_end(&mut rings).await, RingEndReason::Cancelled);
    assert_eq!(SimStats::get(&sim.stats().calls_total), 0, "never a 200");
}

#[tokio::test]
async fn a_reject_sends_the_configured_code() {
    let rig = Rig::builder().no_hubs().start().await;
    let mut rings = rig.intercom.sip().rings();
    let mut ring = rig.sim.ring(20).await.expect("ring");
    let incoming = next_ring(&mut rings).await;
    rig.intercom
        .sip()
        .reject_ring_with(&incoming.call_id, 603)
        .await
        .expect("rejected");
    assert_eq!(
        ring.wait_for(T, |s| matches!(s, RingState::Rejected(_)))
            .await,
        Some(RingState::Rejected(603))
    );
    assert_eq!(next_end(&mut rings).await, RingEndReason::Rejected);
    assert_eq!(
        rig.sim.stats().early_media_started.load(Ordering::SeqCst),
        0
    );
}
