//! The bodies of the fuzz targets, one function per target over arbitrary bytes, shared by the
//! cargo-fuzz binaries (`fuzz/`) and the stable-Rust fallback (`tests/it/fuzz_fallback.rs`) so
//! both check the same properties. Each must never panic on any input; the asserts inside are
//! the properties (round trips, progress, invariants). Not part of the bridge's API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::proto::auth::{Attempt, Policy, Secrets, query};
use crate::proto::h264::{Depacketizer, Limits, NAL_PPS, NAL_SPS, nal_type};
use crate::proto::openwebnet::{self, Frame as OwnFrame};
use crate::proto::rtsp::server::{
    Action, AudioDescription, Input, PlayInfo, ServerConfig, ServerSession, StreamDescription,
};
use crate::proto::rtsp::{Inbound, parse_inbound, transport};
use crate::proto::sdp::{LocalMedia, parse_remote, ring_answer};
use crate::proto::srtp::{SdesKey, SrtpSession};

/// A target's body.
pub type Target = fn(&[u8]);

/// Every target by name, as `cargo fuzz run <name>` knows it.
pub const TARGETS: &[(&str, Target)] = &[
    ("sdp_answer", sdp_answer),
    ("sip_message", sip_message),
    ("openwebnet", openwebnet),
    ("bridge_sip", bridge_sip),
    ("depacketizer", depacketizer),
    ("rtsp_request", rtsp_request),
    ("rtsp_session", rtsp_session),
    ("srtp_unprotect", srtp_unprotect),
    ("http_query", http_query),
];

/// `proto::sdp::parse_remote`; our answer to anything it accepts parses back the same.
pub fn sdp_answer(data: &[u8]) {
    let Ok(remote) = parse_remote(data) else {
        return;
    };
    let local = LocalMedia {
        ip: std::net::IpAddr::from([192, 168, 1, 10]),
        audio_port: 20000,
        video_port: 20002,
        audio_key: SdesKey::from_bytes(&[1; 30]).expect("30 bytes"),
        video_key: SdesKey::from_bytes(&[2; 30]).expect("30 bytes"),
    };
    for audio_active in [true, false] {
        let answer = ring_answer(1, &local, &remote, audio_active);
        let back = parse_remote(answer.as_bytes()).expect("our own answer parses");
        assert_eq!(
            (back.audio.pt, back.video.pt),
            (remote.audio.pt, remote.video.pt)
        );
        assert_eq!(
            (back.audio.crypto_tag, back.video.crypto_tag),
            (remote.audio.crypto_tag, remote.video.crypto_tag)
        );
        assert_eq!(
            (back.audio.key, back.video.key),
            (local.audio_key.clone(), local.video_key.clone())
        );
    }
}

/// The simulator's SIP parser and TCP framer: a yielded frame always consumed bytes.
pub fn sip_message(data: &[u8]) {
    use crate::sim::sip::message::{Frame, Message, next_frame};
    let _ = Message::parse(data);
    let mut buf = data.to_vec();
    loop {
        let before = buf.len();
        match next_frame(&mut buf) {
            Ok(Some(frame)) => {
                assert!(buf.len() < before, "a frame without consuming bytes");
                if let Frame::Message(bytes) = frame {
                    let _ = Message::parse(&bytes);
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
}

/// OWN frames in MESSAGE bodies (commands, acks, the answering-machine status reply); the
/// frames the bridge writes classify as themselves.
pub fn openwebnet(data: &[u8]) {
    let body = String::from_utf8_lossy(data);
    let _ = OwnFrame::parse(&body);
    let _ = openwebnet::AswmStatus::parse(&body);
    if let Some(&w) = data.first() {
        assert_eq!(
            OwnFrame::parse(&openwebnet::unlock(w)),
            OwnFrame::Unlock { where_: w }
        );
    }
}

/// The bridge's own SIP input path (rsipstack's TCP framer and parser, and datagrams).
pub fn bridge_sip(data: &[u8]) {
    let _ = crate::intercom::sip::parse_datagram(data);
    let _ = crate::intercom::sip::decode_stream(data);
}

/// The H.264 depacketizer over packets cut from the input; AUs are well formed.
pub fn depacketizer(data: &[u8]) {
    // Small caps so the fuzzer reaches the over-cap paths too.
    let mut d = Depacketizer::with_limits(Limits {
        max_au_bytes: 8192,
        max_nal_bytes: 4096,
        max_au_nals: 32,
    });
    let mut rest = data;
    while let [s0, s1, t0, t1, t2, t3, m, len, tail @ ..] = rest {
        let take = usize::from(*len).min(tail.len());
        let (payload, after) = tail.split_at(take);
        rest = after;
        let seq = u16::from_be_bytes([*s0, *s1]);
        let ts = u32::from_be_bytes([*t0, *t1, *t2, *t3]);
        for au in d.push(seq, ts, m & 1 == 1, payload) {
            let annexb = au.to_annexb();
            assert!(!annexb.is_empty());
            assert_eq!(annexb.len(), au.byte_len() + 4 * au.nals.len());
            if au.keyframe {
                assert_eq!(annexb[..4], [0, 0, 0, 1]);
                assert_eq!(nal_type(&annexb[4..]), NAL_SPS);
                assert_eq!(au.nals.get(1).map(|p| nal_type(p)), Some(NAL_PPS));
            }
        }
    }
}

fn secrets() -> Secrets {
    Secrets {
        user: Some(("u".into(), "p".into())),
        api_token: Some("t".into()),
    }
}

/// RTSP framing, the Transport header and `Authorization` checks: progress is always made.
pub fn rtsp_request(data: &[u8]) {
    let mut rest = data;
    while let Ok(Some((inbound, used))) = parse_inbound(rest) {
        assert!(used > 0 && used <= rest.len());
        if let Inbound::Request(r) = &inbound {
            let _ = transport::choose(r.header("Transport"));
            let _ = crate::proto::auth::header::check(
                r.header("Authorization"),
                r.method.as_str(),
                &secrets(),
                |_| crate::proto::auth::NonceState::Fresh,
            );
        }
        rest = &rest[used..];
    }
}

/// The RTSP server session fed whatever the bytes frame into, with a driver that completes
/// every action; the first byte picks open or private, the second how time moves. Nothing
/// follows a Close, and every request is answered.
pub fn rtsp_session(data: &[u8]) {
    let (Some(&mode), Some(&step)) = (data.first(), data.get(1)) else {
        return;
    };
    let cfg = ServerConfig {
        secrets: if mode & 1 == 1 {
            secrets()
        } else {
            Secrets::default()
        },
        ..ServerConfig::new(vec!["doorbell".into(), "x".into()])
    };
    let mut now = Instant::now();
    let mut s = ServerSession::new(Arc::new(cfg), now, u64::from(mode));
    let mut rest = &data[2..];
    let mut closed = false;
    loop {
        let input = match parse_inbound(rest) {
            Ok(Some((inbound, used))) => {
                rest = &rest[used..];
                match inbound {
                    Inbound::Request(r) => Input::Request(r),
                    Inbound::Data { .. } => Input::KeepAlive,
                    Inbound::Ignored => continue,
                }
            }
            Ok(None) => break,
            Err(e) => {
                rest = &[];
                Input::Malformed {
                    error: e.to_string(),
                    cseq: None,
                }
            }
        };
        let is_request = matches!(input, Input::Request(_));
        now += Duration::from_millis(u64::from(step) * 100);
        s.handle_timeout(now);
        s.handle(now, input);
        let mut responses = 0;
        while let Some(a) = s.poll_action() {
            assert!(!closed, "an action after Close: {a:?}");
            let answer = match a {
                Action::Respond { .. } => {
                    responses += 1;
                    None
                }
                Action::Join { panel } => Some(if panel.len() % 2 == 0 {
                    Input::JoinFailed {
                        status: 503,
                        reason: "x".into(),
                    }
                } else {
                    Input::Joined(StreamDescription {
                        sps: vec![0x67, 0x42],
                        pps: vec![0x68],
                        profile_level_id: [0x42, 0, 0x1f],
                        audio: Some(AudioDescription {
                            sample_rate: 16000,
                            channels: 1,
                            config_hex: "1408".into(),
                        }),
                    })
                }),
                Action::BindUdp { .. } => Some(Input::UdpBound {
                    server: (20000, 20001),
                }),
                Action::Talk { panel } => Some(if panel.len() % 3 == 0 {
                    Input::TalkFailed {
                        status: 453,
                        reason: "busy".into(),
                    }
                } else {
                    Input::Talking
                }),
                Action::Play => Some(Input::Playing(vec![PlayInfo {
                    kind: crate::proto::rtsp::server::TrackKind::Video,
                    seq: 1,
                    rtptime: Some(2),
                }])),
                Action::Close(_) => {
                    closed = true;
                    None
                }
                Action::Release | Action::AddTrack { .. } | Action::Pause => None,
            };
            if let Some(i) = answer {
                s.handle(now, i);
            }
        }
        if is_request && !closed {
            assert_eq!(responses, 1, "one answer per request");
        }
        if closed {
            break;
        }
    }
}

/// SRTP/SRTCP unprotect on datagrams cut from the input (never a panic, never state for a
/// forged SSRC), and protect → unprotect of RTP built from it.
pub fn srtp_unprotect(data: &[u8]) {
    let key = SdesKey::from_bytes(&[7; 30]).expect("30 bytes");
    let mut rx = SrtpSession::new(&key).expect("context");
    let mut rest = data;
    while let [len, kind, tail @ ..] = rest {
        let take = usize::from(*len).min(tail.len());
        let (packet, after) = tail.split_at(take);
        rest = after;
        if kind & 1 == 0 {
            let _ = rx.unprotect_rtp(packet);
        } else {
            let _ = rx.unprotect_rtcp(packet);
        }
        if kind & 2 == 2 && packet.len() >= 12 {
            let mut rtp = packet.to_vec();
            rtp[0] = 0x80;
            // Fresh contexts both sides: a sender's rollover counter is its own history.
            let mut tx = SrtpSession::new(&key).expect("context");
            if let Ok(p) = tx.protect_rtp(&rtp) {
                let mut fresh = SrtpSession::new(&key).expect("context");
                assert_eq!(fresh.unprotect_rtp(&p).ok().as_deref(), Some(&rtp[..]));
            }
        }
    }
    assert_eq!(
        rx.known_ssrcs().1,
        0,
        "no SRTCP can authenticate without the key"
    );
}

/// The query parser, the HTTP access policy and signed URL checks on text cut from the input:
/// classification agrees with the handlers' parser, and a refused request stays refused.
pub fn http_query(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(5, '\n');
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("");
    let query_string = parts.next();
    let auth = parts.next();
    let token = parts.next();
    // Decoding never makes text longer (`%XX` → one byte or one replacement character).
    for piece in query_string.unwrap_or("").split('&') {
        assert!(query::decode(piece).len() <= piece.len(), "{piece:?}");
    }
    let _ = query::pairs(query_string.unwrap_or("")).count();
    let _ = query::single(query_string, "ttl");
    let live = query::flag(query_string, "live");
    let pol = Policy::new(secrets(), true);
    let attempt = Attempt {
        method,
        path,
        query: query_string,
        authorization: auth,
        url_token: token,
        ingress: false,
        now: 1_000_000,
    };
    let verdict = pol.decide(&attempt);
    // A public grant only ever covers a GET of a cached (not live) snapshot.
    if verdict == Ok(crate::proto::auth::Grant::Public) && !path.starts_with("/assets/") {
        assert_eq!(
            live,
            Ok(false),
            "public and live: {path:?} {query_string:?}"
        );
    }
    if let Some(t) = token {
        let _ = pol.signer.check_url_token(t, path, 1_000_000);
    }
    let _ = pol.signer.check_nonce(method, 1_000_000);
}
