//! Talk through the hub driver with the fake intercom on tokio's paused clock: a talker on an
//! idle panel places a view call and is admitted once it is live; one talker at a time; its
//! frames follow a call restart; the privacy switch ends it; a talker that gave up, or left,
//! frees the panel; an answered ring carries talk.

use std::time::Instant;

use super::*;
use crate::media::hub::{TalkError, TalkState, Talker};
use crate::media::talk::TalkInput;
use crate::proto::g711::Law;

/// Starts talking in the background (the hub answers once the call is live).
fn talk(hub: &StreamHub) -> JoinHandle<Result<Talker, TalkError>> {
    let hub = hub.clone();
    tokio::spawn(async move { hub.talk().await })
}

/// Pushes `n` 20 ms PCMA payloads; returns the frames that went into a call.
fn say(t: &mut Talker, n: usize) -> usize {
    (0..n)
        .map(|_| {
            t.push_at(
                Instant::now(),
                TalkInput::G711 {
                    law: Law::A,
                    payload: &[0xd5; 160],
                },
            )
            .expect("push")
        })
        .sum()
}

/// A talker on call 1, which came up for it.
async fn talking(fake: &Fake, hub: &StreamHub) -> (Talker, Ctl) {
    let t = talk(hub);
    after(150).await;
    assert_eq!(hub.talk_state(), TalkState::Waiting);
    let mut call = fake.call(1);
    call.keyframe().await;
    let talker = t.await.expect("task").expect("talking");
    (talker, call)
}

#[tokio::test(start_paused = true)]
async fn a_talker_on_an_idle_panel_places_a_view_call_and_a_second_is_refused() {
    let fake = Fake::default();
    let (hub, _stop, _task) = hub(&fake);
    let (mut t, _call) = talking(&fake, &hub).await;
    assert_eq!(
        fake.placed(),
        ["view:20"],
        "the talker's lease placed the call"
    );
    assert_eq!(hub.status().state, HubState::Live);
    assert_eq!(
        hub.talk_state(),
        TalkState::Talking {
            call_id: Some("call-1".into())
        }
    );
    assert_eq!(t.call_id().as_deref(), Some("call-1"));
    assert_eq!(say(&mut t, 10), 10);
    assert_eq!(fake.talk_frames(1), 10);
    // A second talker, even while the first talks: refused, and no second call.
    let err = hub.talk().await.expect_err("busy");
    assert!(
        matches!(err, TalkError::Busy { ref panel } if panel == "doorbell"),
        "{err}"
    );
    assert_eq!(fake.placed().len(), 1);
    // A viewer still joins the same call.
    let v = hub.join(ViewerKind::Rtsp).await.expect("viewer");
    assert_eq!(hub.status().viewers, 1);
    drop(v);
    // The talker leaves: the panel is free; the call lingers, then ends.
    drop(t);
    after(10).await;
    assert_eq!(hub.talk_state(), TalkState::Free);
    assert_eq!(hub.status().state, HubState::Lingering);
    after(10_000).await;
    assert_eq!(fake.hung_up(), ["call-1"]);
}

#[tokio::test(start_paused = true)]
async fn the_talk_follows_a_call_restart_and_pauses_in_between() {
    let fake = Fake::default();
    let (hub, _stop, _task) = hub(&fake);
    let (mut t, call) = talking(&fake, &hub).await;
    assert_eq!(say(&mut t, 3), 3);
    call.ended.send_replace(Some(EndReason::RemoteBye));
    after(10).await;
    // Placing the next call: nowhere to send, the audio is dropped.
    assert_eq!(t.call_id(), None);
    assert_eq!(hub.talk_state(), TalkState::Talking { call_id: None });
    assert_eq!(say(&mut t, 5), 0);
    after(150).await;
    let mut call2 = fake.call(2);
    call2.keyframe().await;
    after(10).await;
    assert_eq!(t.call_id().as_deref(), Some("call-2"));
    assert_eq!(say(&mut t, 4), 4);
    assert_eq!((fake.talk_frames(1), fake.talk_frames(2)), (3, 4));
    assert_eq!(t.counts().inputs_paused, 5);
    assert_eq!(t.counts().frames_sent, 7);
}

#[tokio::test(start_paused = true)]
async fn privacy_ends_the_talk_and_refuses_new_talkers() {
    let fake = Fake::default();
    let (hub, _stop, _task) = hub(&fake);
    let (mut t, _call) = talking(&fake, &hub).await;
    hub.allow_streaming(false);
    let err = tokio::time::timeout(Duration::from_secs(1), t.closed())
        .await
        .expect("closed at once");
    assert!(
        matches!(err, TalkError::Hub(HubError::StreamingDisabled { .. })),
        "{err}"
    );
    let push = t.push_at(
        Instant::now(),
        TalkInput::Pcm16 {
            rate: 48_000,
            samples: &[0; 960],
        },
    );
    assert!(matches!(push, Err(TalkError::Hub(_))));
    assert_eq!(hub.talk_state(), TalkState::Free);
    assert_eq!(fake.hung_up(), ["call-1"]);
    let err = hub.talk().await.expect_err("privacy");
    assert!(
        matches!(err, TalkError::Hub(HubError::StreamingDisabled { .. })),
        "{err}"
    );
    assert_eq!(
        fake.placed().len(),
        1,
        "no call placed for a refused talker"
    );
}

#[tokio::test(start_paused = true)]
async fn a_talker_that_gives_up_while_waiting_frees_the_panel() {
    let fake = Fake::default();
    let (hub, _stop, _task) = hub(&fake);
    let waiting = talk(&hub);
    after(50).await;
    assert_eq!(hub.talk_state(), TalkState::Waiting);
    waiting.abort();
    after(10).await;
    assert_eq!(hub.talk_state(), TalkState::Free);
    // The call being placed for it is cancelled (nobody wants it) and a new talker can come.
    let (_t, _call) = {
        let t = talk(&hub);
        after(150).await;
        let n = fake.placed().len();
        let mut call = fake.call(n);
        call.keyframe().await;
        (t.await.expect("task").expect("talking"), call)
    };
    assert!(matches!(
        hub.talk_state(),
        TalkState::Talking { call_id: Some(_) }
    ));
}

#[tokio::test(start_paused = true)]
async fn no_video_within_the_start_timeout_refuses_the_talker_like_a_viewer() {
    let fake = Fake::default();
    let (hub, _stop, _task) = hub(&fake);
    let err = hub.talk().await.expect_err("no keyframe ever");
    assert!(
        matches!(err, TalkError::Hub(HubError::StartTimeout { secs: 10, .. })),
        "{err}"
    );
    assert_eq!(hub.talk_state(), TalkState::Free);
}

#[tokio::test(start_paused = true)]
async fn an_answered_ring_carries_the_talk() {
    let fake = Fake::default();
    let (hub, _stop, _task) = hub(&fake);
    let (mut t, _call) = talking(&fake, &hub).await;
    let ring = IncomingRing {
        call_id: "ring-1".into(),
        from: "<sip:c300x@example>".into(),
        offer_sdp: String::new(),
        at: SystemTime::now(),
    };
    hub.answer_ring(ring).await.expect("answered");
    assert_eq!(fake.hung_up(), ["call-1"], "the view call made way");
    after(10).await;
    assert_eq!(t.call_id().as_deref(), Some("call-2"));
    assert_eq!(hub.status().call_source, Some("answered_ring"));
    assert_eq!(say(&mut t, 2), 2);
    assert_eq!(fake.talk_frames(2), 2);
}
