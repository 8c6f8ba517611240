//! The stream hub's on-demand rules against the simulator (streaming.md §1): no viewer, no call;
//! one call for many viewers; linger then BYE; re-INVITE on silence and on a remote BYE; the
//! maximum call length; a slow viewer never slows a fast one; the privacy switch; and 200
//! random joins and leaves that leave no call and no lease behind.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use c300x_bridge::media::hub::{Frame, HubError, HubSettings, HubState, Viewer, ViewerKind};
use c300x_bridge::sim::{RingState, SimConfig, SimStats, Simulator};

use crate::intercom_calls::next_ring;
use crate::rig::{Rig, eventually};

const T: Duration = Duration::from_secs(15);

fn quick() -> HubSettings {
    crate::rig::quick_hub()
}

async fn setup(sim_cfg: SimConfig, settings: HubSettings) -> Rig {
    Rig::builder()
        .sim(|c| *c = sim_cfg)
        .hub(settings)
        .start()
        .await
}

fn get(sim: &Simulator, f: impl Fn(&SimStats) -> &std::sync::atomic::AtomicU64) -> u64 {
    f(&sim.stats()).load(Ordering::SeqCst)
}

/// The next video frame (skipping audio and discontinuities).
async fn next_video(
    v: &mut Viewer,
) -> Option<std::sync::Arc<c300x_bridge::media::hub::VideoFrame>> {
    loop {
        match tokio::time::timeout(T, v.frames.recv()).await.ok()?? {
            Frame::Video(f) => return Some(f),
            _ => continue,
        }
    }
}

#[tokio::test]
async fn no_viewer_no_call_even_while_snapshots_are_read() {
    let rig = setup(SimConfig::default(), quick()).await;
    let (sim, hub) = (&rig.sim, rig.hub());
    for _ in 0..20 {
        assert!(hub.last_keyframe().is_none());
        assert!(hub.stream_info().is_none());
        assert_eq!(hub.status().state, HubState::Idle);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(sim, |s| &s.invites_received), 0);
}

#[tokio::test]
async fn one_viewer_one_call_starting_with_a_keyframe() {
    let rig = setup(SimConfig::default(), quick()).await;
    let (sim, hub) = (&rig.sim, rig.hub());
    let mut v = hub.join(ViewerKind::Rtsp).await.expect("join");
    assert_eq!((v.info.video.width, v.info.video.height), (400, 288));
    assert!(v.info.audio.is_some(), "AAC config known");
    let first = next_video(&mut v).await.expect("video");
    assert!(first.au.keyframe, "a viewer starts at a keyframe");
    let second = next_video(&mut v).await.expect("video");
    assert!(second.pts > first.pts);
    let status = hub.status();
    assert_eq!((status.state, status.viewers), (HubState::Live, 1));
    assert!(status.call_id.is_some() && status.width == Some(400));
    assert_eq!(get(sim, |s| &s.invites_received), 1);
    assert!(
        hub.last_keyframe().is_some(),
        "snapshots get the newest keyframe"
    );
    drop(v);
}

#[tokio::test]
async fn ten_viewers_share_one_call() {
    let rig = setup(SimConfig::default(), quick()).await;
    let (sim, hub) = (&rig.sim, rig.hub());
    let joins = (0..10).map(|_| {
        let hub = hub.clone();
        tokio::spawn(async move { hub.join(ViewerKind::Hls).await })
    });
    let mut viewers = Vec::new();
    for j in joins {
        viewers.push(j.await.expect("task").expect("join"));
    }
    for v in viewers.iter_mut() {
        assert!(next_video(v).await.is_some_and(|f| f.au.keyframe));
    }
    assert_eq!(get(sim, |s| &s.invites_received), 1);
    assert_eq!(get(sim, |s| &s.active_calls), 1);
    assert_eq!(hub.status().viewers, 10);
}

#[tokio::test]
async fn bye_after_the_linger_not_before_and_a_returning_viewer_reuses_the_call() {
    let settings = HubSettings {
        linger: Duration::from_millis(1500),
        ..quick()
    };
    let rig = setup(SimConfig::default(), settings).await;
    let (sim, hub) = (&rig.sim, rig.hub());
    let v = hub.join(ViewerKind::Mjpeg).await.expect("join");
    drop(v);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(get(sim, |s| &s.active_calls), 1, "still lingering");
    assert_eq!(hub.status().state, HubState::Lingering);
    // Back within the linger: same call, frames at once.
    let mut v = hub.join(ViewerKind::Mjpeg).await.expect("rejoin");
    assert!(next_video(&mut v).await.is_some_and(|f| f.au.keyframe));
    assert_eq!(get(sim, |s| &s.invites_received), 1);
    let left = Instant::now();
    drop(v);
    eventually("BYE after the linger", T, || {
        get(sim, |s| &s.active_calls) == 0
    })
    .await;
    assert!(
        left.elapsed() >= Duration::from_millis(1400),
        "BYE came too early: {:?}",
        left.elapsed()
    );
    assert_eq!(get(sim, |s| &s.byes_received), 1);
    eventually("idle", T, || hub.status().state == HubState::Idle).await;
    let status = hub.status();
    assert_eq!(
        status.calls_ended,
        [("linger", 1)],
        "ended by the linger, counted once"
    );
    assert!(
        status.call_seconds >= 2.0,
        "call lasted {} s",
        status.call_seconds
    );
    assert_eq!(status.srtp_failures, 0);
}

#[tokio::test]
async fn silence_from_the_intercom_brings_a_new_call() {
    let rig = setup(SimConfig::default(), quick()).await;
    let (sim, hub) = (&rig.sim, rig.hub());
    let mut v = hub.join(ViewerKind::Rtsp).await.expect("join");
    next_video(&mut v).await.expect("video");
    sim.faults().media_stopped.store(true, Ordering::SeqCst);
    eventually("BYE for the silent call", T, || {
        get(sim, |s| &s.byes_received) == 1
    })
    .await;
    sim.faults().media_stopped.store(false, Ordering::SeqCst);
    eventually("a new INVITE", T, || get(sim, |s| &s.invites_received) == 2).await;
    // The viewer stays and gets a discontinuity, then frames of the new call.
    let mut saw_break = false;
    let deadline = Instant::now() + T;
    loop {
        assert!(Instant::now() < deadline, "no frames after the new call");
        match tokio::time::timeout(T, v.frames.recv())
            .await
            .expect("frame in time")
            .expect("open")
        {
            Frame::Discontinuity => saw_break = true,
            Frame::Video(f) if saw_break => {
                assert!(f.au.keyframe);
                break;
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn remote_bye_reinvites_with_viewers_and_not_without() {
    // A long linger: the test sees the hub lingering however slowly it is scheduled.
    let settings = HubSettings {
        linger: Duration::from_secs(30),
        ..quick()
    };
    let rig = setup(SimConfig::default(), settings).await;
    let (sim, hub) = (&rig.sim, rig.hub());
    let mut v = hub.join(ViewerKind::Rtsp).await.expect("join");
    next_video(&mut v).await.expect("video");
    assert_eq!(sim.hang_up_all().await.expect("bye"), 1);
    eventually("re-INVITE", T, || {
        get(sim, |s| &s.active_calls) == 1 && get(sim, |s| &s.invites_received) == 2
    })
    .await;
    // The new call is live once video flows again (a viewer leaving before that aborts the
    // starting call instead of lingering).
    while hub.status().state != HubState::Live {
        next_video(&mut v).await.expect("video after the re-INVITE");
    }
    // Without viewers (lingering), a remote BYE is the end.
    drop(v);
    eventually("lingering", T, || hub.status().state == HubState::Lingering).await;
    assert_eq!(sim.hang_up_all().await.expect("bye"), 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(get(sim, |s| &s.invites_received), 2);
    assert_eq!(get(sim, |s| &s.active_calls), 0);
    assert_eq!(hub.status().state, HubState::Idle);
}

#[tokio::test]
async fn maximum_call_length_ends_the_call_and_viewers_get_a_new_one() {
    let settings = HubSettings {
        max_call: Duration::from_secs(2),
        ..quick()
    };
    let rig = setup(SimConfig::default(), settings).await;
    let (sim, hub) = (&rig.sim, rig.hub());
    let mut v = hub.join(ViewerKind::Rtsp).await.expect("join");
    next_video(&mut v).await.expect("video");
    eventually("a second call after max_call", T, || {
        get(sim, |s| &s.invites_received) >= 2
    })
    .await;
    assert!(get(sim, |s| &s.byes_received) >= 1);
    eventually("the second call is up", T, || {
        get(sim, |s| &s.active_calls) == 1
    })
    .await;
}

#[tokio::test]
async fn a_slow_viewer_loses_frames_and_never_slows_a_fast_one() {
    let settings = HubSettings {
        viewer_queue: 8,
        ..quick()
    };
    let rig = setup(SimConfig::default(), settings).await;
    let (_sim, hub) = (&rig.sim, rig.hub());
    let _slow = hub.join(ViewerKind::Rtsp).await.expect("slow");
    let mut fast = hub.join(ViewerKind::Rtsp).await.expect("fast");
    let mut last = Instant::now();
    let mut worst = Duration::ZERO;
    let mut frames = 0;
    let end = Instant::now() + Duration::from_secs(4);
    while Instant::now() < end {
        if next_video(&mut fast).await.is_some() {
            frames += 1;
            worst = worst.max(last.elapsed());
            last = Instant::now();
        }
    }
    println!("fast viewer: {frames} video frames in 4 s, worst gap {worst:?}");
    assert!(frames >= 30, "fast viewer got {frames} frames");
    assert!(worst < Duration::from_millis(600), "worst gap {worst:?}");
    assert!(
        hub.status().frames_dropped > 0,
        "the slow viewer's drops are counted"
    );
}

#[tokio::test]
async fn privacy_switch_refuses_viewers_and_ends_the_call() {
    let rig = setup(SimConfig::default(), quick()).await;
    let (sim, hub) = (&rig.sim, rig.hub());
    let mut v = hub.join(ViewerKind::Hls).await.expect("join");
    next_video(&mut v).await.expect("video");
    hub.allow_streaming(false);
    eventually("call ended", T, || get(sim, |s| &s.active_calls) == 0).await;
    // The open viewer's stream ends.
    let end = tokio::time::timeout(T, async { while v.frames.recv().await.is_some() {} }).await;
    assert!(end.is_ok(), "viewer stream closed");
    assert!(matches!(
        hub.join(ViewerKind::Hls).await,
        Err(HubError::StreamingDisabled { .. })
    ));
    hub.allow_streaming(true);
    assert!(hub.join(ViewerKind::Hls).await.is_ok());
}

#[tokio::test]
async fn no_video_within_the_start_timeout_is_a_clear_error_and_no_call_remains() {
    let settings = HubSettings {
        start_timeout: Duration::from_secs(1),
        ..quick()
    };
    let rig = setup(SimConfig::default(), settings).await;
    let (sim, hub) = (&rig.sim, rig.hub());
    sim.faults().media_stopped.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let err = hub.join(ViewerKind::Rtsp).await.err().expect("times out");
    assert!(
        matches!(err, HubError::StartTimeout { secs: 1, .. }),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    eventually("the silent call is hung up", T, || {
        get(sim, |s| &s.active_calls) == 0
    })
    .await;
}

#[tokio::test]
async fn an_answered_ring_feeds_the_viewers_without_a_second_call() {
    let rig = setup(SimConfig::default(), quick()).await;
    let (sim, hub, intercom) = (&rig.sim, rig.hub(), &rig.intercom);
    let mut rings = intercom.sip().rings();
    let mut ring = sim.ring(20).await.expect("ring");
    let incoming = next_ring(&mut rings).await;
    assert_eq!(
        ring.wait_for(T, |s| s == RingState::Ringing).await,
        Some(RingState::Ringing)
    );
    hub.answer_ring(incoming).await.expect("answered");
    assert_eq!(
        ring.wait_for(T, |s| s == RingState::Answered).await,
        Some(RingState::Answered)
    );
    let mut v = hub.join(ViewerKind::Rtsp).await.expect("join");
    assert!(next_video(&mut v).await.is_some_and(|f| f.au.keyframe));
    assert_eq!(
        get(sim, |s| &s.invites_received),
        0,
        "no view call was placed"
    );
    // The answered call outlives the linger: it is the user's conversation.
    drop(v);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(get(sim, |s| &s.active_calls), 1);
    hub.hang_up();
    eventually("hung up", T, || get(sim, |s| &s.active_calls) == 0).await;
}

#[tokio::test]
async fn two_hundred_random_joins_and_leaves_leave_nothing_behind() {
    let settings = HubSettings {
        linger: Duration::from_millis(300),
        ..quick()
    };
    let sim_cfg = SimConfig {
        answer_delay: Duration::from_millis(10),
        ..SimConfig::default()
    };
    let rig = setup(sim_cfg, settings).await;
    let (sim, hub) = (&rig.sim, rig.hub());
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let hub = hub.clone();
        tasks.push(tokio::spawn(async move {
            let hold = Duration::from_millis((i * 37) % 90);
            let v = hub.join(ViewerKind::Other).await;
            tokio::time::sleep(hold).await;
            drop(v);
        }));
        tokio::time::sleep(Duration::from_millis((i * 13) % 40)).await;
    }
    for t in tasks {
        t.await.expect("task");
    }
    eventually("no viewers", T, || hub.status().viewers == 0).await;
    eventually("no call", T, || get(sim, |s| &s.active_calls) == 0).await;
    eventually("idle", T, || hub.status().state == HubState::Idle).await;
    println!("200 joins used {} calls", get(sim, |s| &s.invites_received));
}

#[tokio::test]
async fn packet_loss_brings_keyframe_requests_and_viewers_keep_going() {
    let rig = setup(SimConfig::default(), quick()).await;
    let (sim, hub) = (&rig.sim, rig.hub());
    let mut v = hub.join(ViewerKind::Rtsp).await.expect("join");
    next_video(&mut v).await.expect("video");
    let plis_before = get(sim, |s| &s.plis_received);
    sim.faults().loss_percent.store(10, Ordering::SeqCst);
    let end = Instant::now() + Duration::from_secs(4);
    let (mut frames, mut keyframes) = (0, 0);
    while Instant::now() < end {
        if let Some(f) = next_video(&mut v).await {
            frames += 1;
            keyframes += usize::from(f.au.keyframe);
        }
    }
    println!("with 10 % loss: {frames} whole pictures, {keyframes} keyframes in 4 s");
    assert!(keyframes >= 1 && frames >= keyframes);
    assert!(
        get(sim, |s| &s.plis_received) > plis_before,
        "the hub asked for IDRs after loss"
    );
    assert_eq!(
        get(sim, |s| &s.invites_received),
        1,
        "loss is not a reason for a new call"
    );
}
