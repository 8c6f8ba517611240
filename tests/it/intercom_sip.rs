//! The bridge's SIP user agent (`intercom::sip`) against the C300X simulator over real sockets:
//! REGISTER (TCP, UDP, digest, refresh, restart), view calls (ACK/BYE routing, rejections,
//! remote BYE, CANCEL), doorbell rings (CANCEL, answer, an answer whose ACK never comes),
//! MESSAGE both ways, OPTIONS, garbage.

use std::time::Duration;

use c300x_bridge::config::SipTransport;
use c300x_bridge::intercom::sip::{
    self, EndReason, RegistrationState, RingEndReason, RingEvent, SipError, SipHandle, SipSettings,
};
use c300x_bridge::sim::sip::message::{Frame, next_frame, split_list, uri_of};
use c300x_bridge::sim::{RingState, SimConfig, SimStats, Simulator};
use tokio_util::sync::CancellationToken;

use crate::sip_peer::{DOMAIN, view_offer};

const T: Duration = Duration::from_secs(5);

async fn sim_with(f: impl FnOnce(&mut SimConfig)) -> Simulator {
    let mut cfg = SimConfig::default();
    f(&mut cfg);
    Simulator::start(cfg).await.expect("simulator starts")
}

fn settings(sim: &Simulator) -> SipSettings {
    let mut s = SipSettings::new("127.0.0.1", sim.sip_addr().port(), DOMAIN);
    s.user = "ha".to_owned();
    s.invite_timeout = Duration::from_secs(5);
    s.request_timeout = Duration::from_secs(2);
    s.keepalive_interval = Duration::from_millis(500);
    s.backoff = vec![Duration::from_millis(200), Duration::from_millis(500)];
    s
}

/// Waits until the agent's registration state satisfies `want`; fails the test naming `what`.
async fn reaches(
    h: &SipHandle,
    what: &str,
    want: impl Fn(&RegistrationState) -> bool,
) -> RegistrationState {
    let mut rx = h.registration();
    let r = tokio::time::timeout(T, rx.wait_for(|s| want(s)))
        .await
        .is_ok();
    let state = rx.borrow().clone();
    assert!(r, "not {what}: {state:?}");
    state
}

/// Waits until the agent is registered (used by every test that needs a working bridge).
pub async fn registered(h: &SipHandle) -> RegistrationState {
    reaches(h, "registered", |s| {
        matches!(s, RegistrationState::Registered { .. })
    })
    .await
}

async fn failed(h: &SipHandle) -> RegistrationState {
    reaches(h, "failed", |s| {
        matches!(s, RegistrationState::Failed { .. })
    })
    .await
}

async fn start(s: SipSettings) -> SipHandle {
    let h = sip::start(s, CancellationToken::new());
    registered(&h).await;
    h
}

fn offer() -> String {
    view_offer(
        "127.0.0.1",
        crate::rig::rtp_pair(),
        (110, 96),
        Some("20"),
        true,
    )
}

#[tokio::test]
async fn registers_over_tcp_with_our_contact() {
    let sim = sim_with(|_| {}).await;
    let h = start(settings(&sim)).await;
    let regs = sim.registrations().await.expect("list");
    assert_eq!(regs.len(), 1, "{regs:?}");
    assert_eq!(regs[0].user, "ha");
    let c = &regs[0].contact;
    assert!(
        c.starts_with(&format!("sip:ha@127.0.0.1:{}", regs[0].source.port()))
            && c.to_ascii_lowercase().contains("transport=tcp"),
        "{c}"
    );
    h.shutdown().await;
    // Un-REGISTER on shutdown.
    assert!(sim.registrations().await.expect("list").is_empty());
    assert_eq!(*h.registration().borrow(), RegistrationState::Unregistered);
}

#[tokio::test]
async fn registers_over_udp() {
    let sim = sim_with(|_| {}).await;
    let mut s = settings(&sim);
    s.transport = SipTransport::Udp;
    let h = start(s).await;
    let regs = sim.registrations().await.expect("list");
    assert_eq!(regs.len(), 1, "{regs:?}");
    assert!(regs[0].contact.contains("transport=udp"), "{:?}", regs[0]);
    // MESSAGE over UDP too.
    h.message("*8*19*20##").await.expect("MESSAGE 200");
    h.shutdown().await;
}

#[tokio::test]
async fn digest_with_right_password_registers_and_wrong_one_fails() {
    let sim = sim_with(|c| c.digest = Some(("ha".to_owned(), "secret".to_owned()))).await;
    let mut s = settings(&sim);
    s.password = Some("secret".to_owned());
    let h = start(s.clone()).await;
    h.message("*8*19*20##").await.expect("MESSAGE after 407");
    h.shutdown().await;

    s.password = Some("wrong".to_owned());
    let h = sip::start(s, CancellationToken::new());
    failed(&h).await;
    h.shutdown().await;
}

#[tokio::test]
async fn view_call_acks_and_byes_through_the_route_set() {
    let sim = sim_with(|_| {}).await;
    let h = start(settings(&sim)).await;
    let call = h.invite(20, offer()).await.expect("200");
    assert!(call.answer_sdp.contains("m=video"), "{}", call.answer_sdp);
    assert!(call.call_id.ends_with("@127.0.0.1"), "{}", call.call_id);
    let stats = sim.stats();
    assert_eq!(SimStats::get(&stats.active_calls), 1);
    let call_id = call.call_id.clone();
    call.hangup().await;
    assert_eq!(SimStats::get(&stats.byes_received), 1);
    assert_eq!(SimStats::get(&stats.active_calls), 0);
    let seen: Vec<_> = stats
        .in_dialog()
        .into_iter()
        .filter(|r| r.call_id == call_id)
        .collect();
    let methods: Vec<&str> = seen.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["ACK", "BYE"], "{seen:?}");
    let rr = [
        "<sip:127.0.0.1:5060;transport=tcp;lr>".to_owned(),
        format!("<sip:{};transport=tcp;lr>", sim.sip_addr()),
    ];
    for r in &seen {
        assert!(r.same_flow, "{r:?}");
        assert!(
            r.uri.starts_with("sip:c300x@127.0.0.1:") && r.uri.contains("verified"),
            "{r:?}"
        );
        let routes: Vec<String> = r
            .routes
            .iter()
            .flat_map(|v| split_list(v))
            .map(|v| uri_of(&v).to_ascii_lowercase())
            .collect();
        let want: Vec<String> = rr
            .iter()
            .rev()
            .map(|v| uri_of(v).to_ascii_lowercase())
            .collect();
        assert_eq!(routes, want, "{r:?}");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn rejections_surface_as_typed_errors() {
    let sim = sim_with(|_| {}).await;
    let h = start(settings(&sim)).await;
    let no_devaddr = view_offer("127.0.0.1", crate::rig::rtp_pair(), (110, 96), None, true);
    let no_crypto = view_offer(
        "127.0.0.1",
        crate::rig::rtp_pair(),
        (110, 96),
        Some("20"),
        false,
    );
    for (sdp, want) in [(no_devaddr, 486), (no_crypto, 488)] {
        match h.invite(20, sdp).await {
            Err(SipError::Rejected { code, .. }) => assert_eq!(code, want),
            other => panic!("expected {want}, got {other:?}"),
        }
    }
    sim.faults()
        .reject_next_invite
        .store(503, std::sync::atomic::Ordering::SeqCst);
    match h.invite(20, offer()).await {
        Err(SipError::Rejected { code: 503, .. }) => {}
        other => panic!("expected 503, got {other:?}"),
    }
    assert_eq!(SimStats::get(&sim.stats().active_calls), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn remote_bye_ends_the_view_call() {
    let sim = sim_with(|_| {}).await;
    let h = start(settings(&sim)).await;
    let call = h.invite(20, offer()).await.expect("200");
    assert_eq!(sim.hang_up_all().await.expect("sim"), 1);
    let why = tokio::time::timeout(T, call.ended()).await.expect("ended");
    assert_eq!(why, EndReason::RemoteBye);
    assert_eq!(SimStats::get(&sim.stats().active_calls), 0);
    // Hanging up an ended call sends nothing more.
    call.hangup().await;
    assert_eq!(SimStats::get(&sim.stats().byes_received), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn giving_up_before_the_answer_cancels() {
    let sim = sim_with(|c| c.answer_delay = Duration::from_secs(2)).await;
    let h = start(settings(&sim)).await;
    let r = tokio::time::timeout(Duration::from_millis(300), h.invite(20, offer())).await;
    assert!(r.is_err(), "answered too early");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let stats = sim.stats();
    assert_eq!(SimStats::get(&stats.active_calls), 0);
    assert_eq!(SimStats::get(&stats.calls_total), 0);
    // The user agent still works afterwards.
    let call = h.invite(20, offer()).await.expect("200");
    call.hangup().await;
    h.shutdown().await;
}

#[tokio::test]
async fn registration_is_refreshed() {
    let sim = sim_with(|_| {}).await;
    let mut s = settings(&sim);
    s.register_expires = 2;
    let h = start(s).await;
    let first = SimStats::get(&sim.stats().registrations);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let later = SimStats::get(&sim.stats().registrations);
    assert!(later >= first + 2, "{first} -> {later}");
    h.shutdown().await;
}

#[tokio::test]
async fn reregisters_after_intercom_restart() {
    let sim = sim_with(|_| {}).await;
    let h = start(settings(&sim)).await;
    let before = sim.registrations().await.expect("list");
    let call = h.invite(20, offer()).await.expect("200");
    sim.restart().expect("restart");
    let why = tokio::time::timeout(T, call.ended()).await.expect("ended");
    assert_eq!(why, EndReason::ConnectionLost);
    // The restart is asynchronous: wait for a binding from a new connection.
    let t0 = std::time::Instant::now();
    let after = loop {
        let now = sim.registrations().await.expect("list");
        if now.len() == 1 && now[0].source != before[0].source {
            break now;
        }
        assert!(t0.elapsed() < T, "not re-registered: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(sim.wait_registrations(1, T).await);
    assert!(
        after[0]
            .contact
            .contains(&format!(":{}", after[0].source.port())),
        "{after:?}"
    );
    registered(&h).await;
    h.message("*8*19*20##")
        .await
        .expect("MESSAGE after restart");
    h.shutdown().await;
}

async fn next_ring(rx: &mut tokio::sync::broadcast::Receiver<RingEvent>) -> RingEvent {
    tokio::time::timeout(T, rx.recv())
        .await
        .expect("ring event in time")
        .expect("channel open")
}

#[tokio::test]
async fn ring_is_announced_and_follows_the_units_cancel() {
    let sim = sim_with(|c| c.ring_timeout = Duration::from_secs(1)).await;
    let h = start(settings(&sim)).await;
    let mut rings = h.rings();
    let mut ring = sim.ring(20).await.expect("ring");
    let RingEvent::Incoming(inc) = next_ring(&mut rings).await else {
        panic!("expected Incoming");
    };
    assert_eq!(inc.call_id, ring.call_id);
    assert!(inc.from.contains("c300x@"), "{}", inc.from);
    assert!(inc.offer_sdp.contains("m=audio"), "{}", inc.offer_sdp);
    assert!(
        ring.wait_for(T, |s| s == RingState::Ringing)
            .await
            .is_some(),
        "{:?}",
        ring.state()
    );
    let ended = next_ring(&mut rings).await;
    assert_eq!(
        ended,
        RingEvent::Ended(sip::RingEnded {
            call_id: inc.call_id.clone(),
            reason: RingEndReason::Cancelled,
        })
    );
    assert!(
        ring.wait_for(T, |s| s == RingState::Cancelled)
            .await
            .is_some()
    );
    h.shutdown().await;
}

fn answer_sdp() -> String {
    let key = |seed: u8| {
        c300x_bridge::proto::srtp::SdesKey::from_bytes(&[seed; 30])
            .expect("30 bytes")
            .to_inline()
    };
    format!(
        "v=0\r\no=- 7 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 42000 RTP/SAVP 96\r\na=rtpmap:96 speex/8000\r\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 {}\r\n\
         m=video 42002 RTP/SAVP 97\r\na=rtpmap:97 H264/90000\r\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 {}\r\na=recvonly\r\n",
        key(3),
        key(4)
    )
}

#[tokio::test]
async fn answering_a_ring_establishes_the_call() {
    let sim = sim_with(|_| {}).await;
    let h = start(settings(&sim)).await;
    let mut rings = h.rings();
    let mut ring = sim.ring(20).await.expect("ring");
    let RingEvent::Incoming(inc) = next_ring(&mut rings).await else {
        panic!("expected Incoming");
    };
    let call = h
        .answer_ring(&inc.call_id, answer_sdp())
        .await
        .expect("answered");
    assert_eq!(call.offer_sdp, inc.offer_sdp);
    assert!(
        ring.wait_for(T, |s| s == RingState::Answered)
            .await
            .is_some(),
        "{:?}",
        ring.state()
    );
    assert_eq!(SimStats::get(&sim.stats().active_calls), 1);
    call.hangup().await;
    assert_eq!(SimStats::get(&sim.stats().active_calls), 0);
    // Unknown rings are refused with a typed error.
    assert!(matches!(
        h.reject_ring("nope").await,
        Err(SipError::NoSuchRing { .. })
    ));
    h.shutdown().await;
}

/// A TCP proxy between the bridge and the simulator that drops every ACK the simulator sends:
/// a unit whose ACK to our 200 never arrives.
async fn ack_eating_proxy(sim: std::net::SocketAddr) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (bridge, _) = listener.accept().await.expect("the bridge connects");
        let unit = tokio::net::TcpStream::connect(sim).await.expect("sim");
        let (mut from_bridge, mut to_bridge) = bridge.into_split();
        let (mut from_unit, mut to_unit) = unit.into_split();
        tokio::spawn(async move { tokio::io::copy(&mut from_bridge, &mut to_unit).await });
        let (mut buf, mut chunk) = (Vec::new(), vec![0u8; 16 * 1024]);
        while let Ok(n @ 1..) = from_unit.read(&mut chunk).await {
            buf.extend_from_slice(&chunk[..n]);
            while let Ok(Some(frame)) = next_frame(&mut buf) {
                let bytes = match frame {
                    Frame::Message(m) if m.starts_with(b"ACK ") => continue,
                    Frame::Message(m) => m,
                    Frame::Ping => b"\r\n\r\n".to_vec(),
                    Frame::Pong => b"\r\n".to_vec(),
                };
                if to_bridge.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        }
    });
    addr
}

/// Issue 11, fault 4: when the ACK to our 200 never comes, the ring does not stay "ringing"
/// (it ended at the 200), the answer fails with a timeout, and the half-open call gets a BYE.
#[tokio::test]
async fn a_ring_answered_without_an_ack_ends_and_its_call_gets_a_bye() {
    let sim = sim_with(|_| {}).await;
    let proxy = ack_eating_proxy(sim.sip_addr()).await;
    let mut s = settings(&sim);
    s.intercom_port = proxy.port();
    s.invite_timeout = Duration::from_secs(1);
    s.keepalive_interval = Duration::from_secs(15);
    let h = start(s).await;
    let mut rings = h.rings();
    let _ring = sim.ring(20).await.expect("ring");
    let RingEvent::Incoming(inc) = next_ring(&mut rings).await else {
        panic!("expected Incoming");
    };
    let err = h
        .answer_ring(&inc.call_id, answer_sdp())
        .await
        .expect_err("no ACK: no call");
    assert!(matches!(err, SipError::Timeout { .. }), "{err}");
    assert_eq!(
        next_ring(&mut rings).await,
        RingEvent::Ended(sip::RingEnded {
            call_id: inc.call_id.clone(),
            reason: RingEndReason::Answered,
        }),
        "the ring ended, once"
    );
    crate::rig::eventually("the BYE for the half-open call", T, || {
        SimStats::get(&sim.stats().byes_received) == 1
    })
    .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rings.recv())
            .await
            .is_err(),
        "no second ring end"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn rejecting_a_ring() {
    let sim = sim_with(|_| {}).await;
    let h = start(settings(&sim)).await;
    let mut rings = h.rings();
    let mut ring = sim.ring(20).await.expect("ring");
    let RingEvent::Incoming(inc) = next_ring(&mut rings).await else {
        panic!("expected Incoming");
    };
    h.reject_ring(&inc.call_id).await.expect("rejected");
    assert!(
        ring.wait_for(T, |s| matches!(s, RingState::Rejected(486)))
            .await
            .is_some(),
        "{:?}",
        ring.state()
    );
    h.shutdown().await;
}

#[tokio::test]
async fn messages_both_ways_and_options() {
    let sim = sim_with(|_| {}).await;
    let h = start(settings(&sim)).await;
    let mut inbox = h.messages();
    h.message("*8*19*20##").await.expect("unlock");
    assert!(
        sim.stats()
            .message_bodies()
            .contains(&"*8*19*20##".to_owned())
    );
    h.message("GetAswmStatus!").await.expect("status query");
    let m = tokio::time::timeout(T, inbox.recv())
        .await
        .expect("reply in time")
        .expect("open");
    assert!(m.body.starts_with("*#8**40*"), "{m:?}");
    assert_eq!(h.options().await, Ok(200));
    h.shutdown().await;
}

#[tokio::test]
async fn garbage_from_the_peer_never_crashes() {
    // UDP: datagrams of junk to our SIP port are dropped; the agent keeps working.
    let sim = sim_with(|_| {}).await;
    let mut s = settings(&sim);
    s.transport = SipTransport::Udp;
    let h = start(s).await;
    let regs = sim.registrations().await.expect("list");
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    for junk in [
        &b"\xff\xfe\x00garbage"[..],
        b"INVITE sip:x SIP/2.0\r\n\r\n",
        b"SIP/2.0 99999 Nope\r\nVia: x\r\n\r\n",
        b"MESSAGE sip:ha@x SIP/2.0\r\nContent-Length: 99999\r\n\r\nabc",
    ] {
        sock.send_to(junk, regs[0].source).await.expect("send");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.message("*8*19*20##").await.expect("still works");
    h.shutdown().await;

    // TCP: an "intercom" that answers with junk; the agent reports Failed and retries.
    let fake = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = fake.local_addr().expect("addr").port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut c, _)) = fake.accept().await {
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf).await;
            let _ = c
                .write_all(b"SIP/2.0 200 OK\r\nContent-Length: zz\r\n\r\n\xff\x00\r\n\r\n")
                .await;
        }
    });
    let mut s = SipSettings::new("127.0.0.1", port, DOMAIN);
    s.request_timeout = Duration::from_millis(500);
    s.backoff = vec![Duration::from_millis(100)];
    let h = sip::start(s, CancellationToken::new());
    failed(&h).await;
    assert!(matches!(
        h.options().await,
        Err(SipError::NotConnected | SipError::Timeout { .. } | SipError::Stack { .. })
    ));
    h.shutdown().await;
}
