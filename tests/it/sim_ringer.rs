//! The simulator's indoor-ringer OWN frames over SIP MESSAGE (c300x-protocol.md §8): mute, unmute
//! and the state query answered by a MESSAGE as over local OWN, and the no-reply fault.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::sim_ring::{registered, sim_with};
use crate::sip_peer::Peer;

const T: Duration = Duration::from_secs(5);

/// The next MESSAGE the unit sends us, answered 200; its body.
async fn message_to_us(p: &mut Peer, wait: Duration) -> Option<String> {
    let (_, m) = p
        .recv_until(wait, |m| m.method() == Some("MESSAGE"))
        .await?;
    p.send(&p.answer(&m, 200, "OK", None)).await;
    Some(String::from_utf8_lossy(&m.body).into_owned())
}

async fn own(p: &mut Peer, body: &str) {
    let m = p.out_of_dialog(
        "MESSAGE",
        &format!("own-{}", rand::random::<u32>()),
        "text/plain",
        body,
    );
    p.send(&m).await;
    let (_, res) = p
        .final_response(m.cseq().0)
        .await
        .expect("MESSAGE answered");
    assert_eq!(res.code(), Some(200));
}

#[tokio::test]
async fn sim_ringer_frames_mute_unmute_and_report_like_local_own() {
    let sim = sim_with(|_| {}).await;
    let mut p = registered(&sim, "bridge").await;
    own(&mut p, "*#8**33##").await;
    assert_eq!(
        message_to_us(&mut p, T).await.as_deref(),
        Some("*#8**33*1##")
    );
    own(&mut p, "*#8**#33*0##").await;
    assert!(sim.stats().ringer_muted());
    own(&mut p, "*#8**33##").await;
    assert_eq!(
        message_to_us(&mut p, T).await.as_deref(),
        Some("*#8**33*0##")
    );
    // Someone unmutes it on the unit itself: the next query says so.
    sim.stats().ringer_muted.store(false, Ordering::SeqCst);
    own(&mut p, "*#8**33##").await;
    assert_eq!(
        message_to_us(&mut p, T).await.as_deref(),
        Some("*#8**33*1##")
    );
    // A unit that ignores ringer frames over SIP: 200, no change, no reply.
    sim.faults().ringer_no_reply.store(true, Ordering::SeqCst);
    own(&mut p, "*#8**#33*0##").await;
    own(&mut p, "*#8**33##").await;
    assert!(!sim.stats().ringer_muted());
    assert!(
        message_to_us(&mut p, Duration::from_millis(500))
            .await
            .is_none()
    );
    let bodies = sim.stats().message_bodies();
    assert_eq!(bodies.iter().filter(|b| b.contains("33")).count(), 6);
}
