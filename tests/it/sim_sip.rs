//! The simulator's SIP behaviour over real sockets: registrar, digest, MESSAGE recording, the
//! view-call INVITE checks and the captured 200 OK shape, ACK/BYE routing, CANCEL, rings
//! (the unit's side of a call's life: `sim_answer.rs`).

use std::time::Duration;

use c300x_bridge::sim::sip::message::{Message, param, uri_of};
use c300x_bridge::sim::{RingState, SimStats, Simulator};
use md5::{Digest as _, Md5};

use crate::sim_ring::sim_with;
use crate::sip_peer::{DOMAIN, Peer, view_offer};

const T: Duration = Duration::from_secs(5);

/// A registered peer "ha" on TCP or UDP.
pub async fn registered(sim: &Simulator, udp: bool) -> Peer {
    let mut p = if udp {
        Peer::udp(sim.sip_addr(), "ha").await
    } else {
        Peer::tcp(sim.sip_addr(), "ha").await
    };
    let reg = p.register(300);
    p.send(&reg).await;
    let (_, res) = p
        .final_response(reg.cseq().0)
        .await
        .expect("REGISTER answered");
    assert_eq!(res.code(), Some(200));
    p
}

#[tokio::test]
async fn register_grants_expires_and_lists_the_binding() {
    let sim = sim_with(|_| {}).await;
    let mut p = Peer::tcp(sim.sip_addr(), "ha").await;
    let reg = p.register(300);
    p.send(&reg).await;
    let (text, res) = p.final_response(reg.cseq().0).await.expect("answer");
    assert!(text.starts_with("SIP/2.0 200 "), "{text}");
    let contact = res.header("Contact").expect("Contact in 200");
    assert_eq!(uri_of(contact), format!("sip:ha@{};transport=tcp", p.local));
    let expires: u32 = param(contact, "expires")
        .and_then(|e| e.parse().ok())
        .expect("expires");
    assert!((299..=300).contains(&expires), "{expires}");
    // rport/received filled in on the top Via (RFC 3581).
    let via = res.header("Via").expect("via");
    assert!(
        via.contains(&format!("rport={}", p.local.port())) && via.contains("received=127.0.0.1"),
        "{via}"
    );
    let regs = sim.registrations().await.expect("list");
    assert_eq!(regs.len(), 1);
    assert_eq!((regs[0].user.as_str(), regs[0].source), ("ha", p.local));
    assert_eq!(SimStats::get(&sim.stats().registrations), 1);
    // Expires: 0 removes it.
    let unreg = p.register(0);
    p.send(&unreg).await;
    p.final_response(unreg.cseq().0).await.expect("answer");
    assert!(sim.registrations().await.expect("list").is_empty());
}

#[tokio::test]
async fn register_for_another_domain_is_forbidden() {
    let sim = sim_with(|c| c.domain = "7654321.bs.iotleg.com".to_owned()).await;
    let mut p = Peer::tcp(sim.sip_addr(), "ha").await;
    let reg = p.register(300);
    p.send(&reg).await;
    let (_, res) = p.final_response(reg.cseq().0).await.expect("answer");
    assert_eq!(res.code(), Some(403));
}

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

#[tokio::test]
async fn digest_challenge_then_success() {
    let sim = sim_with(|_| {}).await;
    sim.require_digest(Some(("ha".to_owned(), "secret".to_owned())))
        .expect("set");
    let mut p = Peer::tcp(sim.sip_addr(), "ha").await;
    let reg = p.register(300);
    p.send(&reg).await;
    let (_, res) = p.final_response(reg.cseq().0).await.expect("answer");
    assert_eq!(res.code(), Some(401));
    let ch = res.header("WWW-Authenticate").expect("challenge");
    assert!(
        ch.starts_with("Digest ") && ch.contains(&format!("realm=\"{DOMAIN}\"")),
        "{ch}"
    );
    let nonce = ch
        .split("nonce=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("nonce");
    let uri = format!("sip:{DOMAIN}");
    let ha1 = md5_hex(&format!("ha:{DOMAIN}:secret"));
    let ha2 = md5_hex(&format!("REGISTER:{uri}"));
    let resp = md5_hex(&format!("{ha1}:{nonce}:00000001:abcd:auth:{ha2}"));
    for (password_ok, expected) in [(false, 401), (true, 200)] {
        let mut again = p.register(300);
        let r = if password_ok {
            resp.clone()
        } else {
            "0".repeat(32)
        };
        again.push(
            "Authorization",
            format!("Digest username=\"ha\", realm=\"{DOMAIN}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{r}\", algorithm=MD5, cnonce=\"abcd\", qop=auth, nc=00000001"),
        );
        p.send(&again).await;
        let (_, res) = p.final_response(again.cseq().0).await.expect("answer");
        assert_eq!(res.code(), Some(expected));
    }
}

#[tokio::test]
async fn options_and_unknown_methods() {
    let sim = sim_with(|_| {}).await;
    let mut p = Peer::tcp(sim.sip_addr(), "ha").await;
    let o = p.out_of_dialog("OPTIONS", "opt-1", "", "");
    p.send(&o).await;
    let (_, res) = p.final_response(o.cseq().0).await.expect("answer");
    assert_eq!(res.code(), Some(200));
    assert!(res.header("Allow").is_some_and(|a| a.contains("MESSAGE")));
    let x = p.out_of_dialog("PUBLISH", "pub-1", "", "");
    p.send(&x).await;
    assert_eq!(
        p.final_response(x.cseq().0).await.expect("answer").1.code(),
        Some(501)
    );
}

#[tokio::test]
async fn message_frames_are_recorded_in_order_with_times() {
    let sim = sim_with(|_| {}).await;
    let mut p = registered(&sim, false).await;
    for body in ["*8*19*20##", "*8*20*20##"] {
        let m = p.out_of_dialog("MESSAGE", &format!("msg-{body}"), "text/plain", body);
        p.send(&m).await;
        let (_, res) = p.final_response(m.cseq().0).await.expect("answer");
        assert_eq!(res.code(), Some(200));
    }
    let msgs = sim.stats().messages();
    assert_eq!(
        msgs.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["*8*19*20##", "*8*20*20##"]
    );
    assert_eq!(msgs[0].from, "ha");
    assert!(msgs[0].at <= msgs[1].at);
    // GetAswmStatus! makes the unit send us a MESSAGE on our registration.
    let m = p.out_of_dialog("MESSAGE", "aswm-1", "text/plain", "GetAswmStatus!");
    p.send(&m).await;
    let (_, status) = p
        .recv_until(T, |m| m.method() == Some("MESSAGE"))
        .await
        .expect("status MESSAGE");
    assert!(
        String::from_utf8_lossy(&status.body).starts_with("*#8**40*0*"),
        "{:?}",
        status.body
    );
    let ok = p.answer(&status, 200, "OK", Some("x"));
    p.send(&ok).await;
}

#[tokio::test]
async fn invite_without_devaddr_is_busy_and_without_crypto_not_acceptable() {
    let sim = sim_with(|_| {}).await;
    let mut p = Peer::tcp(sim.sip_addr(), "ha").await;
    for (devaddr, crypto, code) in [(None, true, 486), (Some("20"), false, 488)] {
        let sdp = view_offer(
            "127.0.0.1",
            crate::rig::rtp_pair(),
            (110, 96),
            devaddr,
            crypto,
        );
        let inv = p.out_of_dialog("INVITE", &format!("rej-{code}"), "application/sdp", &sdp);
        p.send(&inv).await;
        let (_, trying) = p.recv(T).await.expect("100");
        assert_eq!(trying.code(), Some(100));
        let (_, res) = p.final_response(inv.cseq().0).await.expect("final");
        assert_eq!(res.code(), Some(code));
        // RFC 3261: ACK the non-2xx final response.
        let ack = p.in_dialog("ACK", &inv, &res, inv.cseq().0);
        p.send(&ack).await;
    }
    assert_eq!(SimStats::get(&sim.stats().invites_rejected), 2);
    assert_eq!(SimStats::get(&sim.stats().calls_total), 0);
}

#[tokio::test]
async fn rejection_fault_applies_to_the_next_invite_only() {
    let sim = sim_with(|_| {}).await;
    sim.faults()
        .reject_next_invite
        .store(503, std::sync::atomic::Ordering::SeqCst);
    let mut p = Peer::tcp(sim.sip_addr(), "ha").await;
    let sdp = view_offer(
        "127.0.0.1",
        crate::rig::rtp_pair(),
        (110, 96),
        Some("20"),
        true,
    );
    let inv = p.out_of_dialog("INVITE", "fault-1", "application/sdp", &sdp);
    p.send(&inv).await;
    assert_eq!(
        p.final_response(inv.cseq().0)
            .await
            .expect("final")
            .1
            .code(),
        Some(503)
    );
    let inv2 = p.out_of_dialog("INVITE", "fault-2", "application/sdp", &sdp);
    p.send(&inv2).await;
    let (_, ok) = p.final_response(inv2.cseq().0).await.expect("final");
    assert_eq!(ok.code(), Some(200));
    let bye = p.in_dialog("BYE", &inv2, &ok, inv2.cseq().0 + 1);
    p.send(&bye).await;
}

/// The 200 OK has the real unit's shape (c300x-protocol.md §4.2), and ACK/BYE through the
/// route set on the same connection end the call.
#[tokio::test]
async fn view_call_200_ok_shape_and_routed_ack_bye() {
    let sim = sim_with(|_| {}).await;
    let port = sim.sip_addr().port();
    let mut p = registered(&sim, false).await;
    // Unusual PTs prove they are mirrored from the offer.
    let sdp = view_offer(
        "127.0.0.1",
        crate::rig::rtp_pair(),
        (98, 99),
        Some("20"),
        true,
    );
    let inv = p.out_of_dialog("INVITE", "view-1", "application/sdp", &sdp);
    p.send(&inv).await;
    let (_, trying) = p.recv(T).await.expect("100");
    assert_eq!(trying.code(), Some(100));
    let (_, ringing) = p.recv(T).await.expect("180");
    assert_eq!(ringing.code(), Some(180));
    let (text, ok) = p.final_response(inv.cseq().0).await.expect("200");
    assert_eq!(ok.code(), Some(200), "{text}");
    let names: Vec<&str> = ok.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[..2], ["Via", "Record-Route"], "{text}");
    assert_eq!(
        ok.header("Record-Route"),
        Some(
            format!(
                "<sip:127.0.0.1:5060;transport=tcp;lr>, <sip:127.0.0.1:{port};transport=tcp;lr>"
            )
            .as_str()
        )
    );
    let contact = ok.header("Contact").expect("contact");
    assert!(
        contact.starts_with("<sip:c300x@127.0.0.1:")
            && contact.contains(";transport=tcp;verified>;+sip.instance=\"<urn:uuid:"),
        "{contact}"
    );
    assert_eq!(ok.header("User-Agent"), Some("Unknown (belle-sip/1.6.3)"));
    assert_eq!(ok.header("Supported"), Some("replaces, outbound"));
    assert_eq!(ok.header("Content-Type"), Some("application/sdp"));
    let to_tag = param(ok.header("To").expect("To"), "tag").expect("To tag");
    assert_eq!(
        param(ringing.header("To").expect("To"), "tag"),
        Some(to_tag)
    );
    let body = String::from_utf8(ok.body.clone()).expect("sdp text");
    for needle in [
        "o=c300x ",
        "\r\ns=Talk\r\n",
        "c=IN IP4 127.0.0.1\r\n",
        " RTP/SAVP 98\r\na=rtpmap:98 speex/8000\r\na=fmtp:98 vbr=on\r\n",
        " RTP/SAVP 99\r\na=rtpmap:99 H264/90000\r\na=fmtp:99 profile-level-id=42801F\r\na=sendonly\r\n",
    ] {
        assert!(body.contains(needle), "missing {needle:?} in\n{body}");
    }
    assert!(
        !body.contains("packetization-mode")
            && !body.contains("sprop-parameter-sets")
            && !body.contains("rtcp")
    );
    assert_eq!(
        body.matches("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:")
            .count(),
        2
    );
    assert_eq!(SimStats::get(&sim.stats().active_calls), 1);

    let ack = p.in_dialog("ACK", &inv, &ok, inv.cseq().0);
    p.send(&ack).await;
    let bye = p.in_dialog("BYE", &inv, &ok, inv.cseq().0 + 1);
    p.send(&bye).await;
    let (_, bye_ok) = p.final_response(bye.cseq().0).await.expect("BYE answered");
    assert_eq!(bye_ok.code(), Some(200));
    assert_eq!(SimStats::get(&sim.stats().active_calls), 0);
    let seen = sim.stats().in_dialog();
    assert_eq!(
        seen.iter().map(|r| r.method.as_str()).collect::<Vec<_>>(),
        ["ACK", "BYE"]
    );
    for r in &seen {
        assert!(r.same_flow, "{r:?}");
        assert_eq!(r.uri, uri_of(contact));
        assert_eq!(
            r.routes,
            [
                format!("<sip:127.0.0.1:{port};transport=tcp;lr>"),
                "<sip:127.0.0.1:5060;transport=tcp;lr>".to_owned()
            ]
        );
    }
}

#[tokio::test]
async fn one_view_call_per_devaddr_and_cancel_before_answer() {
    let sim = sim_with(|c| c.answer_delay = Duration::from_millis(1500)).await;
    let mut p = Peer::tcp(sim.sip_addr(), "ha").await;
    let sdp = view_offer(
        "127.0.0.1",
        crate::rig::rtp_pair(),
        (110, 96),
        Some("20"),
        true,
    );
    let first = p.out_of_dialog("INVITE", "busy-1", "application/sdp", &sdp);
    p.send(&first).await;
    p.recv_until(T, |m| m.code() == Some(180))
        .await
        .expect("180");
    let second = p.out_of_dialog("INVITE", "busy-2", "application/sdp", &sdp);
    p.send(&second).await;
    assert_eq!(
        p.final_response(second.cseq().0)
            .await
            .expect("final")
            .1
            .code(),
        Some(486)
    );
    // Another panel is free.
    let other = view_offer(
        "127.0.0.1",
        crate::rig::rtp_pair(),
        (110, 96),
        Some("21"),
        true,
    );
    let third = p.out_of_dialog("INVITE", "busy-3", "application/sdp", &other);
    p.send(&third).await;
    p.recv_until(T, |m| m.code() == Some(180) && m.call_id() == "busy-3")
        .await
        .expect("180");
    // CANCEL the first: 200 for the CANCEL, 487 for the INVITE.
    let (n, _) = first.cseq();
    let mut cancel = Message::request("CANCEL", first.uri().expect("uri"));
    cancel
        .push("Via", first.header("Via").expect("via"))
        .push("From", first.header("From").expect("from"))
        .push("To", first.header("To").expect("to"))
        .push("Call-ID", "busy-1")
        .push("CSeq", format!("{n} CANCEL"));
    p.send(&cancel).await;
    let (_, c_ok) = p
        .recv_until(T, |m| m.cseq().1 == "CANCEL")
        .await
        .expect("CANCEL answered");
    assert_eq!(c_ok.code(), Some(200));
    let (_, terminated) = p
        .recv_until(T, |m| {
            m.call_id() == "busy-1" && m.code().is_some_and(|c| c >= 300)
        })
        .await
        .expect("487");
    assert_eq!(terminated.code(), Some(487));
    // The cancelled call never gets a 200; the other one does.
    let (_, ok3) = p
        .final_response(third.cseq().0)
        .await
        .expect("200 for panel 21");
    assert_eq!((ok3.code(), ok3.call_id()), (Some(200), "busy-3"));
    assert_eq!(SimStats::get(&sim.stats().calls_total), 1);
    assert_eq!(sim.hang_up_all().await.expect("hang up"), 1);
    let (_, bye) = p
        .recv_until(T, |m| m.method() == Some("BYE"))
        .await
        .expect("BYE from the unit");
    assert_eq!(
        bye.uri(),
        Some(format!("sip:ha@{};transport=tcp", p.local).as_str())
    );
    assert_eq!(bye.call_id(), "busy-3");
    assert_eq!(
        param(bye.header("From").expect("from"), "tag"),
        param(ok3.header("To").expect("to"), "tag")
    );
    assert_eq!(SimStats::get(&sim.stats().active_calls), 0);
}

#[tokio::test]
async fn ring_reaches_the_registered_flow_then_cancel_after_timeout() {
    let sim = sim_with(|c| c.ring_timeout = Duration::from_millis(800)).await;
    let mut p = registered(&sim, false).await;
    let mut ring = sim.ring(20).await.expect("ring");
    assert_eq!(ring.forks, 1);
    let (_, inv) = p
        .recv_until(T, |m| m.method() == Some("INVITE"))
        .await
        .expect("INVITE on our flow");
    assert_eq!(
        inv.uri(),
        Some(format!("sip:ha@{};transport=tcp", p.local).as_str())
    );
    assert_eq!(
        uri_of(inv.header("To").expect("to")),
        format!("sip:alluser@{DOMAIN}")
    );
    assert_eq!(
        uri_of(inv.header("From").expect("from")),
        format!("sip:c300x@{DOMAIN}")
    );
    assert!(String::from_utf8_lossy(&inv.body).contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80"));
    p.send(&p.answer(&inv, 180, "Ringing", Some("b1"))).await;
    assert_eq!(
        ring.wait_for(T, |s| s == RingState::Ringing).await,
        Some(RingState::Ringing)
    );
    let (_, cancel) = p
        .recv_until(T, |m| m.method() == Some("CANCEL"))
        .await
        .expect("CANCEL after timeout");
    assert_eq!(
        param(cancel.header("Via").expect("via"), "branch"),
        param(inv.header("Via").expect("via"), "branch")
    );
    p.send(&p.answer(&cancel, 200, "OK", Some("b1"))).await;
    p.send(&p.answer(&inv, 487, "Request Terminated", Some("b1")))
        .await;
    let (_, ack) = p
        .recv_until(T, |m| m.method() == Some("ACK"))
        .await
        .expect("ACK for the 487");
    assert_eq!(ack.cseq().1, "ACK");
    assert_eq!(ring.state(), RingState::Cancelled);
}

#[tokio::test]
async fn ring_with_nobody_registered_is_an_error() {
    let sim = sim_with(|_| {}).await;
    assert!(sim.ring(20).await.is_err());
}

#[tokio::test]
async fn udp_register_and_call() {
    let sim = sim_with(|_| {}).await;
    let mut p = registered(&sim, true).await;
    let sdp = view_offer(
        "127.0.0.1",
        crate::rig::rtp_pair(),
        (110, 96),
        Some("20"),
        true,
    );
    let inv = p.out_of_dialog("INVITE", "udp-1", "application/sdp", &sdp);
    p.send(&inv).await;
    let (_, ok) = p.final_response(inv.cseq().0).await.expect("200");
    assert_eq!(ok.code(), Some(200));
    assert!(
        ok.header("Record-Route")
            .is_some_and(|r| r.contains("transport=udp"))
    );
    // A retransmitted INVITE gets the same final answer, not a second call.
    p.send(&inv).await;
    let (_, again) = p.final_response(inv.cseq().0).await.expect("200 again");
    assert_eq!(again.header("To"), ok.header("To"));
    assert_eq!(SimStats::get(&sim.stats().calls_total), 1);
    let bye = p.in_dialog("BYE", &inv, &ok, inv.cseq().0 + 1);
    p.send(&bye).await;
    assert_eq!(
        p.final_response(bye.cseq().0)
            .await
            .expect("BYE ok")
            .1
            .code(),
        Some(200)
    );
}

#[tokio::test]
async fn restart_drops_registrations_and_connections() {
    let sim = sim_with(|_| {}).await;
    let mut p = registered(&sim, false).await;
    assert_eq!(sim.registrations().await.expect("list").len(), 1);
    sim.restart().expect("restart");
    assert!(p.recv(T).await.is_none(), "connection should close");
    assert!(sim.registrations().await.expect("list").is_empty());
    // A new connection registers again.
    let _p2 = registered(&sim, false).await;
    assert!(sim.wait_registrations(1, T).await);
}

#[tokio::test]
async fn garbage_does_not_hurt_other_connections() {
    let sim = sim_with(|_| {}).await;
    let mut bad = Peer::tcp(sim.sip_addr(), "x").await;
    bad.send_raw(b"GARBAGE\r\n\r\n").await;
    bad.send_raw(b"INVITE sip:x SIP/2.0\r\nContent-Length: 99999999\r\n\r\n")
        .await;
    let mut udp = Peer::udp(sim.sip_addr(), "y").await;
    udp.send_raw(&[0xff; 300]).await;
    let mut good = registered(&sim, false).await;
    let o = good.out_of_dialog("OPTIONS", "after-garbage", "", "");
    good.send(&o).await;
    assert_eq!(
        good.final_response(o.cseq().0)
            .await
            .expect("answer")
            .1
            .code(),
        Some(200)
    );
}
