//! The unit's side of a call's life over real sockets: it hangs up a call that gets no RTP from
//! the bridge (§5), and a ring answered with 200 + SDP gets its ACK, SRTP and, at the end, a BYE.

use std::time::Duration;

use c300x_bridge::sim::sip::message::uri_of;
use c300x_bridge::sim::{RingState, SimStats};

use crate::sim_ring::sim_with;
use crate::sim_sip::registered;
use crate::sip_peer::{DOMAIN, view_offer};

const T: Duration = Duration::from_secs(5);

/// The unit hangs up (BYE) a call when nothing arrives from the bridge's media (§5).
#[tokio::test]
async fn no_rtp_from_the_bridge_makes_the_unit_hang_up() {
    let sim = sim_with(|c| c.no_rtp_timeout = Duration::from_millis(800)).await;
    let mut p = registered(&sim, false).await;
    let sdp = view_offer(
        "127.0.0.1",
        crate::rig::rtp_pair(),
        (110, 96),
        Some("20"),
        true,
    );
    let inv = p.out_of_dialog("INVITE", "silent-1", "application/sdp", &sdp);
    p.send(&inv).await;
    let (_, ok) = p.final_response(inv.cseq().0).await.expect("200");
    assert_eq!(ok.code(), Some(200));
    let ack = p.in_dialog("ACK", &inv, &ok, inv.cseq().0);
    p.send(&ack).await;
    let started = std::time::Instant::now();
    let (_, bye) = p
        .recv_until(T, |m| m.method() == Some("BYE"))
        .await
        .expect("BYE from the unit");
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "hung up too early: {:?}",
        started.elapsed()
    );
    assert_eq!(bye.call_id(), "silent-1");
    p.send(&p.answer(&bye, 200, "OK", None)).await;
    assert_eq!(SimStats::get(&sim.stats().byes_sent), 1);
    assert_eq!(SimStats::get(&sim.stats().active_calls), 0);
}

/// Answering a ring with 200 + SDP: the unit ACKs to our Contact and starts SRTP towards us.
#[tokio::test]
async fn answered_ring_gets_ack_and_media() {
    let sim = sim_with(|_| {}).await;
    let mut p = registered(&sim, false).await;
    let mut ring = sim.ring(20).await.expect("ring");
    let (_, inv) = p
        .recv_until(T, |m| m.method() == Some("INVITE"))
        .await
        .expect("INVITE");
    let offer = String::from_utf8_lossy(&inv.body).into_owned();
    assert!(offer.contains("m=audio ") && offer.contains("m=video ") && !offer.contains("DEVADDR"));
    let rtp = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let vport = rtp.local_addr().expect("addr").port();
    // Audio goes nowhere in particular; video to our socket. PTs mirror the offer (96 / 97).
    let answer = view_offer("127.0.0.1", (vport + 10, vport), (96, 97), None, true)
        .replace("a=nortpproxy:yes\r\n", "");
    let mut ok = p.answer(&inv, 200, "OK", Some("a1"));
    ok.push("Contact", p.contact())
        .set_body("application/sdp", answer);
    p.send(&ok).await;
    let (_, ack) = p
        .recv_until(T, |m| m.method() == Some("ACK"))
        .await
        .expect("ACK");
    assert_eq!(
        ack.uri(),
        Some(format!("sip:ha@{};transport=tcp", p.local).as_str())
    );
    assert_eq!(
        ring.wait_for(T, |s| s == RingState::Answered).await,
        Some(RingState::Answered)
    );
    assert_eq!(SimStats::get(&sim.stats().active_calls), 1);
    let mut buf = [0u8; 2048];
    let (n, _) = tokio::time::timeout(T, rtp.recv_from(&mut buf))
        .await
        .expect("SRTP arrives")
        .expect("recv");
    assert!(
        n > 12 + 10 && buf[0] >> 6 == 2 && buf[1] & 0x7f == 97,
        "RTP v2 with PT 97"
    );
    assert_eq!(sim.hang_up_all().await.expect("hang up"), 1);
    let (_, bye) = p
        .recv_until(T, |m| m.method() == Some("BYE"))
        .await
        .expect("BYE");
    assert_eq!(
        uri_of(bye.header("To").expect("to")),
        format!("sip:alluser@{DOMAIN}")
    );
}
