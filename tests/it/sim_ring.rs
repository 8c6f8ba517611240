//! The simulator's doorbell extras over real sockets, with hand-driven SIP peers standing in for
//! the bridge and a phone: early media after a 183 with SDP (keys per c300x-protocol.md §4.3,
//! other forks keep ringing, stop on CANCEL / 200 elsewhere), the answered call keeping the
//! stream and counting our audio, the refuse-early-media fault, and several panels (DEVADDR in the
//! ring, one picture per panel, view calls per DEVADDR). The ringer frames: `sim_ringer.rs`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use c300x_bridge::media::jpeg::H264Decoder;
use c300x_bridge::proto::h264::{AccessUnit, Depacketizer};
use c300x_bridge::proto::rtp::RtpPacket;
use c300x_bridge::proto::srtp::{SdesKey, SrtpSession};
use c300x_bridge::sim::sip::message::Message;
use c300x_bridge::sim::{
    EarlyMedia, RingHandle, RingState, SimConfig, SimError, SimPanel, SimStats, Simulator,
};
use tokio::net::UdpSocket;

use crate::sim_media::bind_pair;
use crate::sip_peer::{Peer, view_offer};

const T: Duration = Duration::from_secs(5);

pub async fn sim_with(f: impl FnOnce(&mut SimConfig)) -> Simulator {
    let mut cfg = SimConfig::default();
    f(&mut cfg);
    Simulator::start(cfg).await.expect("simulator starts")
}

pub async fn registered(sim: &Simulator, user: &str) -> Peer {
    let mut p = Peer::tcp(sim.sip_addr(), user).await;
    let reg = p.register(300);
    p.send(&reg).await;
    let (_, res) = p.final_response(reg.cseq().0).await.expect("REGISTER");
    assert_eq!(res.code(), Some(200));
    p
}

async fn invite(p: &mut Peer) -> Message {
    p.recv_until(T, |m| m.method() == Some("INVITE"))
        .await
        .expect("ring INVITE")
        .1
}

/// The media side of one fork: RTP/RTCP pairs for audio and video and its own SDES keys.
struct Fork {
    audio: (UdpSocket, UdpSocket),
    video: (UdpSocket, UdpSocket),
    audio_key: SdesKey,
    video_key: SdesKey,
}

impl Fork {
    async fn new() -> Self {
        Self {
            audio: bind_pair().await,
            video: bind_pair().await,
            audio_key: SdesKey::random(),
            video_key: SdesKey::random(),
        }
    }

    fn ports(&self) -> (u16, u16) {
        let port = |s: &UdpSocket| s.local_addr().expect("addr").port();
        (port(&self.audio.0), port(&self.video.0))
    }

    /// An answer to the ring offer (PTs 96/97 mirrored): audio `audio_dir`, video `recvonly`.
    fn answer(&self, audio_dir: &str) -> String {
        let (a, v) = self.ports();
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {a} RTP/SAVP 96\r\na=rtpmap:96 speex/8000\r\n\
             a=crypto:1 AES_CM_128_HMAC_SHA1_80 {}\r\na={audio_dir}\r\n\
             m=video {v} RTP/SAVP 97\r\na=rtpmap:97 H264/90000\r\n\
             a=crypto:1 AES_CM_128_HMAC_SHA1_80 {}\r\na=recvonly\r\n",
            self.audio_key.to_inline(),
            self.video_key.to_inline()
        )
    }
}

/// `response` to the ring INVITE with our SDP and Contact.
fn with_sdp(p: &Peer, inv: &Message, code: u16, reason: &str, tag: &str, sdp: String) -> Message {
    let mut r = p.answer(inv, code, reason, Some(tag));
    r.push("Contact", p.contact())
        .set_body("application/sdp", sdp);
    r
}

/// The keys of the ring INVITE's offer (audio, video): what the unit encrypts with (§4.3).
fn offer_keys(inv: &Message) -> (SdesKey, SdesKey) {
    let body = String::from_utf8_lossy(&inv.body).into_owned();
    let mut keys = body
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a=crypto:1 AES_CM_128_HMAC_SHA1_80 "))
        .map(|k| SdesKey::from_inline(k).expect("key"));
    (
        keys.next().expect("audio key"),
        keys.next().expect("video key"),
    )
}

/// The next datagram within `wait`.
async fn recv(socket: &UdpSocket, wait: Duration) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 2048];
    let (n, _) = tokio::time::timeout(wait, socket.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    buf.truncate(n);
    Some(buf)
}

/// Polls `f` every 20 ms until it gives a value; fails the test after `timeout`.
async fn eventually<T>(what: &str, timeout: Duration, f: impl Fn() -> Option<T>) -> T {
    let end = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads the RTP arriving within `window`; returns the SSRCs seen and the count.
async fn read_for(
    socket: &UdpSocket,
    srtp: &mut SrtpSession,
    window: Duration,
) -> (Vec<u32>, usize) {
    let end = tokio::time::Instant::now() + window;
    let (mut ssrcs, mut n) = (Vec::new(), 0);
    loop {
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        let Some(p) = recv(socket, left).await else {
            break;
        };
        let plain = srtp
            .unprotect_rtp(&p)
            .expect("authentic with the offer's key");
        let ssrc = RtpPacket::parse(&plain).expect("rtp").header.ssrc;
        if !ssrcs.contains(&ssrc) {
            ssrcs.push(ssrc);
        }
        n += 1;
    }
    (ssrcs, n)
}

/// Reads what is queued until the stream pauses (the video sends every 100 ms, so 400 ms of
/// quiet means it stopped), within 5 s; then nothing more may come.
async fn stops(socket: &UdpSocket) {
    let end = tokio::time::Instant::now() + T;
    while recv(socket, Duration::from_millis(400)).await.is_some() {
        assert!(tokio::time::Instant::now() < end, "the stream did not stop");
    }
    assert!(recv(socket, Duration::from_millis(600)).await.is_none());
}

async fn streaming(ring: &mut RingHandle) -> EarlyMedia {
    ring.wait_early_media(T, |e| matches!(e, EarlyMedia::Streaming { .. }))
        .await
        .expect("early media starts")
}

#[tokio::test]
async fn sim_early_media_goes_to_the_183_while_other_forks_ring_until_cancel() {
    let sim = sim_with(|c| c.ring_timeout = Duration::from_millis(4000)).await;
    let mut bridge = registered(&sim, "bridge").await;
    let mut phone = registered(&sim, "phone").await;
    let mut ring = sim.ring(20).await.expect("ring");
    assert_eq!(ring.forks, 2);
    let inv = invite(&mut bridge).await;
    let phone_inv = invite(&mut phone).await;
    let (_, video_key) = offer_keys(&inv);
    let fork = Fork::new().await;
    bridge
        .send(&bridge.answer(&inv, 180, "Ringing", Some("b1")))
        .await;
    let preview = with_sdp(
        &bridge,
        &inv,
        183,
        "Session Progress",
        "b1",
        fork.answer("inactive"),
    );
    bridge.send(&preview).await;
    let early = streaming(&mut ring).await;
    assert_eq!(
        early,
        EarlyMedia::Streaming {
            to_tag: "b1".into(),
            video: SocketAddr::from(([127, 0, 0, 1], fork.ports().1)),
        }
    );
    assert_eq!(ring.state(), RingState::Ringing);
    // Video arrives, encrypted with the key of the INVITE's offer (§4.3 early media, inbound).
    let first = recv(&fork.video.0, T).await.expect("early video");
    let mut video_rx = SrtpSession::new(&video_key).expect("ctx");
    let plain = video_rx.unprotect_rtp(&first).expect("offer key decrypts");
    assert_eq!(
        RtpPacket::parse(&plain).expect("rtp").header.payload_type,
        97
    );
    // Audio is `inactive` in the 183: the unit sends none (RFC 3264 §6.1).
    assert!(
        recv(&fork.audio.0, Duration::from_millis(400))
            .await
            .is_none()
    );
    // The phone keeps ringing: nothing was sent to it since its INVITE.
    assert!(phone.recv(Duration::from_millis(300)).await.is_none());
    assert_eq!(SimStats::get(&sim.stats().early_media_started), 1);
    // The ring times out: CANCEL to both forks, and the early media stops.
    for p in [&mut bridge, &mut phone] {
        let (_, cancel) = p
            .recv_until(T, |m| m.method() == Some("CANCEL"))
            .await
            .expect("CANCEL after the ring timeout");
        p.send(&p.answer(&cancel, 200, "OK", None)).await;
    }
    bridge
        .send(&bridge.answer(&inv, 487, "Request Terminated", Some("b1")))
        .await;
    phone
        .send(&phone.answer(&phone_inv, 487, "Request Terminated", Some("p1")))
        .await;
    assert_eq!(
        ring.wait_early_media(T, |e| *e == EarlyMedia::Ended).await,
        Some(EarlyMedia::Ended)
    );
    stops(&fork.video.0).await;
    assert_eq!(
        ring.wait_for(T, |s| s == RingState::Cancelled).await,
        Some(RingState::Cancelled)
    );
}

#[tokio::test]
async fn sim_answer_after_early_media_keeps_the_stream_and_counts_our_audio() {
    let sim = sim_with(|_| {}).await;
    let mut bridge = registered(&sim, "bridge").await;
    let mut phone = registered(&sim, "phone").await;
    let mut ring = sim.ring(20).await.expect("ring");
    let inv = invite(&mut bridge).await;
    let _ = invite(&mut phone).await;
    let (audio_key, video_key) = offer_keys(&inv);
    let fork = Fork::new().await;
    let preview = with_sdp(
        &bridge,
        &inv,
        183,
        "Session Progress",
        "b1",
        fork.answer("inactive"),
    );
    bridge.send(&preview).await;
    streaming(&mut ring).await;
    let mut video_rx = SrtpSession::new(&video_key).expect("ctx");
    let (early_ssrcs, n) = read_for(&fork.video.0, &mut video_rx, Duration::from_millis(300)).await;
    assert!(n > 0 && early_ssrcs.len() == 1, "early video: {n} packets");
    let before = sim.stats().call_media(inv.call_id()).expect("counters");
    assert_eq!(
        before.audio_packets, 0,
        "we sent no audio during the preview"
    );
    // Answer: same addresses and keys, audio now sendrecv.
    let ok = with_sdp(&bridge, &inv, 200, "OK", "b1", fork.answer("sendrecv"));
    bridge.send(&ok).await;
    bridge
        .recv_until(T, |m| m.method() == Some("ACK"))
        .await
        .expect("ACK");
    assert_eq!(
        ring.wait_for(T, |s| s == RingState::Answered).await,
        Some(RingState::Answered)
    );
    phone
        .recv_until(T, |m| m.method() == Some("CANCEL"))
        .await
        .expect("the phone stops ringing");
    // The unit now sends audio (offer key) and the video stream goes on with the same SSRC.
    let audio = recv(&fork.audio.0, T)
        .await
        .expect("audio after the answer");
    let mut audio_rx = SrtpSession::new(&audio_key).expect("ctx");
    audio_rx
        .unprotect_rtp(&audio)
        .expect("offer key decrypts audio");
    let (ssrcs, _) = read_for(&fork.video.0, &mut video_rx, Duration::from_millis(300)).await;
    assert_eq!(ssrcs, early_ssrcs, "the early stream continues as the call");
    // Our talkback: SRTP with the key of our answer, counted per call.
    let mut tx = SrtpSession::new(&fork.audio_key).expect("ctx");
    let sim_audio = SocketAddr::from(([127, 0, 0, 1], sim_ports(&inv).0));
    for i in 0..10u16 {
        let header = c300x_bridge::proto::rtp::RtpHeader {
            marker: false,
            payload_type: 96,
            sequence: i,
            timestamp: u32::from(i) * 160,
            ssrc: 0x1234,
        };
        let packet = tx
            .protect_rtp(&header.to_packet(&[7u8; 20]))
            .expect("protect");
        fork.audio
            .0
            .send_to(&packet, sim_audio)
            .await
            .expect("send");
    }
    let media = eventually("10 audio packets counted", T, || {
        sim.stats()
            .call_media(inv.call_id())
            .filter(|m| m.audio_packets == 10)
    })
    .await;
    assert_eq!(media.audio_bytes, 200);
    assert_eq!(SimStats::get(&sim.stats().active_calls), 1);
}

/// The ports of the unit's offer (audio, video).
fn sim_ports(inv: &Message) -> (u16, u16) {
    let body = String::from_utf8_lossy(&inv.body).into_owned();
    let port = |kind: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("m={kind} ")))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .expect("m= port")
    };
    (port("audio"), port("video"))
}

#[tokio::test]
async fn sim_200_elsewhere_moves_the_media_and_refusal_fault_ignores_183() {
    let sim = sim_with(|_| {}).await;
    let mut bridge = registered(&sim, "bridge").await;
    let mut phone = registered(&sim, "phone").await;
    let mut ring = sim.ring(20).await.expect("ring");
    let inv = invite(&mut bridge).await;
    let phone_inv = invite(&mut phone).await;
    let fork = Fork::new().await;
    bridge
        .send(&with_sdp(
            &bridge,
            &inv,
            183,
            "Session Progress",
            "b1",
            fork.answer("inactive"),
        ))
        .await;
    streaming(&mut ring).await;
    recv(&fork.video.0, T)
        .await
        .expect("early video to the bridge");
    // The phone answers: the bridge's fork is CANCELled and the media goes to the phone.
    let phone_media = Fork::new().await;
    let ok = with_sdp(
        &phone,
        &phone_inv,
        200,
        "OK",
        "p1",
        phone_media.answer("sendrecv"),
    );
    phone.send(&ok).await;
    bridge
        .recv_until(T, |m| m.method() == Some("CANCEL"))
        .await
        .expect("CANCEL to the previewing fork");
    assert_eq!(
        ring.wait_early_media(T, |e| *e == EarlyMedia::Ended).await,
        Some(EarlyMedia::Ended)
    );
    stops(&fork.video.0).await;
    recv(&phone_media.video.0, T)
        .await
        .expect("video to the phone");

    // A unit that does not do early media: the 183 only rings.
    sim.faults()
        .refuse_early_media
        .store(true, Ordering::SeqCst);
    let mut ring = sim.ring(20).await.expect("ring");
    let inv = invite(&mut bridge).await;
    let _ = invite(&mut phone).await;
    let fork = Fork::new().await;
    bridge
        .send(&with_sdp(
            &bridge,
            &inv,
            183,
            "Session Progress",
            "b2",
            fork.answer("inactive"),
        ))
        .await;
    assert_eq!(
        ring.wait_for(T, |s| s == RingState::Ringing).await,
        Some(RingState::Ringing)
    );
    eventually("the 183 refused", T, || {
        (SimStats::get(&sim.stats().early_media_refused) == 1).then_some(())
    })
    .await;
    assert!(
        recv(&fork.video.0, Duration::from_millis(500))
            .await
            .is_none()
    );
    assert_eq!(ring.early_media(), EarlyMedia::None);
}

/// Depacketizes SRTP video from `socket` until the first keyframe.
async fn first_keyframe(socket: &UdpSocket, key: &SdesKey) -> AccessUnit {
    let mut srtp = SrtpSession::new(key).expect("ctx");
    let mut depack = Depacketizer::new();
    loop {
        let p = recv(socket, T).await.expect("video");
        let plain = srtp.unprotect_rtp(&p).expect("authentic");
        let rtp = RtpPacket::parse(&plain).expect("rtp");
        let h = rtp.header;
        for au in depack.push(h.sequence, h.timestamp, h.marker, rtp.payload) {
            if au.keyframe {
                return au;
            }
        }
    }
}

/// Luma inside the name plate (x 10..110, y 242..274: where every name is drawn) of a keyframe.
fn label_area(au: &AccessUnit) -> Vec<u8> {
    let mut dec = H264Decoder::new().expect("decoder");
    let pic = match dec.decode(&au.to_annexb()).expect("decode") {
        Some(p) => p.clone(),
        None => dec.finish().expect("finish").expect("picture").clone(),
    };
    assert_eq!((pic.width(), pic.height()), (400, 288));
    let stride = pic.stride(0);
    (242..274)
        .flat_map(|y| pic.data(0)[y * stride + 10..y * stride + 110].to_vec())
        .collect()
}

/// Mean absolute difference of two luma areas (compression noise stays far below 10).
fn mad(a: &[u8], b: &[u8]) -> f64 {
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.len().max(1) as f64
}

#[tokio::test]
async fn sim_several_panels_say_which_rang_and_draw_their_names() {
    let sim =
        sim_with(|c| c.panels = vec![SimPanel::new("front", 20), SimPanel::new("gate", 21)]).await;
    let mut bridge = registered(&sim, "bridge").await;
    assert!(matches!(
        sim.ring(23).await,
        Err(SimError::UnknownPanel(23))
    ));
    let mut pictures = Vec::new();
    for devaddr in [20u8, 21] {
        let mut ring = sim.ring(devaddr).await.expect("ring");
        let inv = invite(&mut bridge).await;
        let body = String::from_utf8_lossy(&inv.body).into_owned();
        let session_part = body.split("m=").next().expect("session part");
        assert!(
            session_part.contains(&format!("a=DEVADDR:{devaddr}\r\n")),
            "the ring says which panel rang: {body}"
        );
        let (_, video_key) = offer_keys(&inv);
        let fork = Fork::new().await;
        let tag = format!("t{devaddr}");
        bridge
            .send(&with_sdp(
                &bridge,
                &inv,
                183,
                "Session Progress",
                &tag,
                fork.answer("inactive"),
            ))
            .await;
        streaming(&mut ring).await;
        pictures.push(label_area(&first_keyframe(&fork.video.0, &video_key).await));
        sim.cancel_rings().expect("cancel");
    }
    let apart = mad(&pictures[0], &pictures[1]);
    assert!(
        apart > 20.0,
        "two panels, two pictures (difference {apart:.1})"
    );

    // View calls honour DEVADDR per panel: a known one is answered with its picture, an unknown
    // one gets 486.
    let video = bind_pair().await;
    let vport = video.0.local_addr().expect("addr").port();
    for (devaddr, want) in [("23", 486), ("21", 200)] {
        let sdp = view_offer(
            "127.0.0.1",
            (vport + 2, vport),
            (110, 96),
            Some(devaddr),
            true,
        );
        let inv = bridge.out_of_dialog(
            "INVITE",
            &format!("view-{devaddr}"),
            "application/sdp",
            &sdp,
        );
        bridge.send(&inv).await;
        let (_, res) = bridge.final_response(inv.cseq().0).await.expect("final");
        assert_eq!(res.code(), Some(want), "DEVADDR {devaddr}");
        if want == 200 {
            let body = String::from_utf8_lossy(&res.body).into_owned();
            let key = body
                .split("m=video")
                .nth(1)
                .and_then(|v| {
                    v.lines()
                        .find_map(|l| l.strip_prefix("a=crypto:1 AES_CM_128_HMAC_SHA1_80 "))
                })
                .map(|k| SdesKey::from_inline(k.trim()).expect("key"))
                .expect("video key in the 200");
            let view = label_area(&first_keyframe(&video.0, &key).await);
            let same = mad(&view, &pictures[1]);
            assert!(
                same < 10.0,
                "the gate's view call shows the gate ({same:.1})"
            );
            let ack = bridge.in_dialog("ACK", &inv, &res, inv.cseq().0);
            bridge.send(&ack).await;
        }
    }
}
