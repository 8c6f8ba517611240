//! The session's state table, clock-free: the request bytes ffmpeg, GStreamer (captured from
//! them, tests/corpus/rtsp_clients) and retina (from its source) send, replayed through
//! `parse_inbound` as the driver does, with a stub driver answering joins, UDP binds and PLAY.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::proto::rtsp::{Inbound, parse_inbound};

fn desc(audio: bool) -> StreamDescription {
    StreamDescription {
        sps: vec![0x67, 0x42, 0xc0, 0x1f],
        pps: vec![0x68, 0xce, 0x3c, 0x80],
        profile_level_id: [0x42, 0xc0, 0x1f],
        audio: audio.then(|| AudioDescription {
            sample_rate: 16000,
            channels: 1,
            config_hex: "1408".into(),
        }),
    }
}

fn config(secrets: Secrets) -> Arc<ServerConfig> {
    Arc::new(ServerConfig {
        secrets,
        ..ServerConfig::new(vec!["doorbell".into(), "garden".into()])
    })
}

fn admin() -> Secrets {
    Secrets {
        user: Some(("admin".into(), "s3cret".into())),
        api_token: None,
    }
}

/// What came out, in order, with the driver's answers folded in.
#[derive(Debug, Default)]
struct Log {
    statuses: Vec<(String, u16)>,
    joins: Vec<String>,
    releases: usize,
    tracks: Vec<(TrackKind, TrackSink)>,
    plays: usize,
    pauses: usize,
    closed: Option<CloseReason>,
    responses: Vec<Response>,
}

struct Harness {
    s: ServerSession,
    now: Instant,
    log: Log,
    audio: bool,
    join_fails: bool,
    udp_fails: bool,
    params: Vec<(TrackKind, RtpParams)>,
    method: String,
}

impl Harness {
    fn new(secrets: Secrets) -> Self {
        let now = Instant::now();
        Self {
            s: ServerSession::new(config(secrets), now, 7),
            now,
            log: Log::default(),
            audio: true,
            join_fails: false,
            udp_fails: false,
            params: Vec::new(),
            method: String::new(),
        }
    }

    /// Runs every action, answering the ones that need the driver.
    fn drain(&mut self) {
        while let Some(a) = self.s.poll_action() {
            let answer = match a {
                Action::Respond { response, .. } => {
                    self.log.statuses.push((self.method.clone(), response.status));
                    self.log.responses.push(response);
                    None
                }
                Action::Join { panel } => {
                    self.log.joins.push(panel);
                    Some(if self.join_fails {
                        Input::JoinFailed {
                            status: 503,
                            reason: "no video".into(),
                        }
                    } else {
                        Input::Joined(desc(self.audio))
                    })
                }
                Action::Release => {
                    self.log.releases += 1;
                    self.params.clear();
                    None
                }
                Action::BindUdp { .. } => Some(if self.udp_fails {
                    Input::UdpFailed {
                        reason: "no free port".into(),
                    }
                } else {
                    Input::UdpBound {
                        server: (20100, 20101),
                    }
                }),
                Action::AddTrack { kind, sink, rtp } => {
                    self.log.tracks.push((kind, sink));
                    self.params.retain(|(k, _)| *k != kind);
                    self.params.push((kind, rtp));
                    None
                }
                Action::Play => {
                    self.log.plays += 1;
                    let infos = self
                        .params
                        .iter()
                        .map(|(kind, p)| PlayInfo {
                            kind: *kind,
                            seq: p.seq,
                            rtptime: Some(p.ts_base),
                        })
                        .collect();
                    Some(Input::Playing(infos))
                }
                Action::Pause => {
                    self.log.pauses += 1;
                    None
                }
                Action::Close(r) => {
                    self.log.closed = Some(r);
                    None
                }
            };
            if let Some(input) = answer {
                self.s.handle(self.now, input);
            }
        }
    }

    /// Feeds a request as a client would send it, echoing our session id and answering our
    /// Digest challenge with `creds` when given.
    fn request(&mut self, mut req: Request, creds: Option<(&str, &str)>) -> u16 {
        if req.session().is_some() {
            let id = self.s.session_id().unwrap_or("none").to_owned();
            for (n, v) in req.headers.iter_mut() {
                if n.eq_ignore_ascii_case("Session") {
                    *v = id.clone();
                }
            }
        }
        if let Some((user, pass)) = creds {
            req.headers.retain(|(n, _)| !n.eq_ignore_ascii_case("Authorization"));
            let uri = req.uri.as_ref().map_or("*".to_owned(), |u| u.to_string());
            let nonce = self.s.nonce().to_owned();
            let ha1 = crate::proto::auth::header::md5_hex(&format!("{user}:c300x-bridge:{pass}"));
            let ha2 = crate::proto::auth::header::md5_hex(&format!("{}:{uri}", req.method.as_str()));
            let resp = crate::proto::auth::header::md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
            req.headers.push((
                "Authorization".into(),
                format!("Digest username=\"{user}\", realm=\"c300x-bridge\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\""),
            ));
        }
        self.method = req.method.as_str().to_owned();
        let before = self.log.statuses.len();
        self.s.handle(self.now, Input::Request(req));
        self.drain();
        self.log.statuses.get(before).map_or(0, |(_, s)| *s)
    }

    fn raw(&mut self, text: &str) -> u16 {
        let (inbound, _) = parse_inbound(text.as_bytes()).expect("valid").expect("whole");
        match inbound {
            Inbound::Request(r) => self.request(r, None),
            other => panic!("not a request: {other:?}"),
        }
    }

    /// Replays a capture; `creds` answers challenges (the captured Authorization is replaced).
    fn replay(&mut self, bytes: &[u8], creds: Option<(&str, &str)>) {
        let mut buf = bytes.to_vec();
        while let Some((inbound, used)) = parse_inbound(&buf).expect("clients send valid RTSP") {
            buf.drain(..used);
            match inbound {
                Inbound::Request(r) => {
                    let has_auth = r.header("Authorization").is_some();
                    self.request(r, creds.filter(|_| has_auth));
                }
                Inbound::Data { .. } => self.s.handle(self.now, Input::KeepAlive),
                Inbound::Ignored => {}
            }
        }
        assert!(buf.is_empty(), "the capture ends with a whole message");
    }

    fn codes(&self) -> Vec<String> {
        self.log
            .statuses
            .iter()
            .map(|(m, s)| format!("{m} {s}"))
            .collect()
    }
}

fn capture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/corpus/rtsp_clients/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn real_clients_play_and_tear_down() {
    for (file, expect_codes, udp, pauses) in [
        ("ffmpeg-tcp.bin", vec!["OPTIONS 200", "DESCRIBE 200", "SETUP 200", "SETUP 200", "PLAY 200", "TEARDOWN 200"], false, 0),
        ("ffmpeg-udp.bin", vec!["OPTIONS 200", "DESCRIBE 200", "SETUP 200", "SETUP 200", "PLAY 200", "TEARDOWN 200"], true, 0),
        ("gst-tcp.bin", vec!["OPTIONS 200", "DESCRIBE 200", "SETUP 200", "SETUP 200", "PLAY 200"], false, 0),
        ("gst-udp.bin", vec!["OPTIONS 200", "DESCRIBE 200", "SETUP 200", "SETUP 200", "PLAY 200", "PAUSE 200", "TEARDOWN 200"], true, 1),
        ("retina-tcp.txt", vec!["DESCRIBE 200", "SETUP 200", "SETUP 200", "PLAY 200", "OPTIONS 200", "GET_PARAMETER 200", "TEARDOWN 200"], false, 0),
    ] {
        let mut h = Harness::new(Secrets::default());
        h.replay(&capture(file), None);
        assert_eq!(h.codes(), expect_codes, "{file}");
        assert_eq!(h.log.joins, vec!["doorbell".to_owned()], "{file}: one join");
        assert_eq!(h.log.plays, 1, "{file}");
        assert_eq!(h.log.pauses, pauses, "{file}");
        assert_eq!(h.log.tracks.len(), 2, "{file}");
        for (kind, sink) in &h.log.tracks {
            match (udp, sink, kind) {
                (false, TrackSink::Interleaved { rtp: 0, rtcp: 1 }, TrackKind::Video)
                | (false, TrackSink::Interleaved { rtp: 2, rtcp: 3 }, TrackKind::Audio)
                | (true, TrackSink::Udp { server: (20100, 20101), .. }, _) => {}
                other => panic!("{file}: {other:?}"),
            }
        }
        let torn_down = expect_codes.last().is_some_and(|c| c.starts_with("TEARDOWN"));
        assert_eq!(h.log.releases, usize::from(torn_down), "{file}");
        let want = if torn_down { Phase::Init } else { Phase::Playing };
        assert_eq!(h.s.phase(), want, "{file}");
        assert_eq!(h.log.closed, None, "{file}");
        // The DESCRIBE answer and the PLAY answer carry what clients need.
        let describe = h.log.responses.iter().find(|r| r.body.starts_with(b"v=0")).expect("sdp");
        let text = String::from_utf8_lossy(&describe.body);
        assert!(text.contains("m=video") && text.contains("m=audio"), "{file}: {text}");
        assert!(describe.headers.iter().any(|(n, v)| n == "Content-Base" && v.ends_with("/doorbell/")));
        let play = h.log.responses.iter().find(|r| r.headers.iter().any(|(n, _)| n == "RTP-Info")).expect("play");
        let info = &play.headers.iter().find(|(n, _)| n == "RTP-Info").expect("info").1;
        assert!(info.contains("/doorbell/trackID=0;seq=") && info.contains("trackID=1;seq="), "{info}");
    }
}

#[test]
fn digest_clients_get_a_challenge_first_and_no_call_before_it_is_answered() {
    for (file, expect) in [
        ("ffmpeg-auth.bin", vec!["OPTIONS 200", "DESCRIBE 401", "DESCRIBE 200", "SETUP 200", "SETUP 200", "PLAY 200", "TEARDOWN 200"]),
        ("gst-auth.bin", vec!["OPTIONS 200", "DESCRIBE 401", "DESCRIBE 200", "SETUP 200", "SETUP 200", "PLAY 200"]),
    ] {
        let mut h = Harness::new(admin());
        h.replay(&capture(file), Some(("admin", "s3cret")));
        assert_eq!(h.codes(), expect, "{file}");
        assert_eq!(h.log.joins.len(), 1, "{file}");
        let challenge = &h.log.responses[1];
        assert_eq!(challenge.headers.iter().filter(|(n, _)| n == "WWW-Authenticate").count(), 2);
    }
    // Wrong credentials: 401 for everything, never a join, closed after ten tries.
    let mut h = Harness::new(admin());
    h.replay(&capture("ffmpeg-auth.bin"), Some(("admin", "wrong")));
    assert!(h.log.joins.is_empty());
    assert!(h.codes()[1..].iter().all(|c| c.ends_with(" 401")), "{:?}", h.codes());
    let mut h = Harness::new(admin());
    for _ in 0..10 {
        assert_eq!(h.raw("DESCRIBE rtsp://h/doorbell RTSP/1.0\r\nCSeq: 1\r\n\r\n"), 401);
    }
    assert_eq!(h.log.closed, Some(CloseReason::AuthFailures));
    assert!(h.log.joins.is_empty());
}

#[test]
fn errors_by_state() {
    let mut h = Harness::new(Secrets::default());
    let url = "rtsp://127.0.0.1:8554/doorbell";
    let tcp = "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n";
    assert_eq!(h.raw(&format!("PLAY {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n")), 454);
    assert_eq!(h.raw(&format!("PAUSE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n")), 454);
    assert_eq!(h.raw(&format!("TEARDOWN {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n")), 454);
    assert_eq!(h.raw(&format!("GET_PARAMETER {url} RTSP/1.0\r\nCSeq: 1\r\nSession: X\r\n\r\n")), 454);
    assert_eq!(h.raw("DESCRIBE rtsp://h/nope RTSP/1.0\r\nCSeq: 1\r\n\r\n"), 404);
    assert_eq!(h.raw(&format!("SETUP {url}/trackID=7 RTSP/1.0\r\nCSeq: 1\r\n{tcp}\r\n")), 404);
    assert_eq!(h.raw(&format!("SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 1\r\nTransport: RTP/AVP;multicast\r\n\r\n")), 461);
    assert_eq!(h.raw(&format!("ANNOUNCE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n")), 405);
    assert_eq!(h.raw(&format!("FLY {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n")), 501);
    assert!(h.log.joins.is_empty(), "errors start no call");
    // SETUP without DESCRIBE joins; another panel on the same connection is refused.
    assert_eq!(h.raw(&format!("SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 2\r\n{tcp}\r\n")), 200);
    assert_eq!(h.s.phase(), Phase::Ready);
    assert_eq!(h.raw(&format!("SETUP rtsp://h/garden/trackID=0 RTSP/1.0\r\nCSeq: 3\r\n{tcp}\r\n")), 459);
    assert_eq!(h.raw("DESCRIBE rtsp://h/garden RTSP/1.0\r\nCSeq: 3\r\n\r\n"), 459);
    assert_eq!(h.raw(&format!("PAUSE {url} RTSP/1.0\r\nCSeq: 4\r\nSession: x\r\n\r\n")), 200);
    assert_eq!(h.s.phase(), Phase::Ready, "PAUSE in Ready stays Ready (§A.1)");
    assert_eq!(h.raw(&format!("PLAY {url} RTSP/1.0\r\nCSeq: 5\r\nSession: x\r\n\r\n")), 200);
    assert_eq!(h.raw(&format!("PAUSE {url} RTSP/1.0\r\nCSeq: 6\r\nSession: x\r\n\r\n")), 200);
    assert_eq!(h.s.phase(), Phase::Paused);
    assert_eq!(h.raw(&format!("PLAY {url} RTSP/1.0\r\nCSeq: 7\r\nSession: x\r\n\r\n")), 200);
    assert_eq!(h.s.phase(), Phase::Playing);
    assert_eq!(h.log.plays, 2);
    assert_eq!(h.raw(&format!("TEARDOWN {url} RTSP/1.0\r\nCSeq: 8\r\nSession: x\r\n\r\n")), 200);
    assert_eq!((h.s.phase(), h.log.releases), (Phase::Init, 1));
    // After a teardown another panel is fine.
    assert_eq!(h.raw("DESCRIBE rtsp://h/garden RTSP/1.0\r\nCSeq: 9\r\n\r\n"), 200);
    assert_eq!(h.log.joins, ["doorbell", "garden"]);
}

#[test]
fn driver_failures_and_streams_without_audio() {
    let url = "rtsp://127.0.0.1:8554/doorbell";
    let mut h = Harness::new(Secrets::default());
    h.join_fails = true;
    assert_eq!(h.raw(&format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n")), 503);
    assert_eq!(h.s.panel(), None);
    let mut h = Harness::new(Secrets::default());
    h.udp_fails = true;
    let udp = "Transport: RTP/AVP;unicast;client_port=5000-5001\r\n";
    assert_eq!(h.raw(&format!("SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 1\r\n{udp}\r\n")), 461);
    assert_eq!(h.s.phase(), Phase::Init);
    let mut h = Harness::new(Secrets::default());
    h.audio = false;
    assert_eq!(h.raw(&format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n")), 200);
    assert!(!String::from_utf8_lossy(&h.log.responses[0].body).contains("m=audio"));
    let tcp = "Transport: RTP/AVP/TCP;unicast;interleaved=2-3\r\n";
    assert_eq!(h.raw(&format!("SETUP {url}/trackID=1 RTSP/1.0\r\nCSeq: 2\r\n{tcp}\r\n")), 404);
    // `?audio=0` leaves the audio track out of the SDP.
    let mut h = Harness::new(Secrets::default());
    assert_eq!(h.raw(&format!("DESCRIBE {url}?audio=0 RTSP/1.0\r\nCSeq: 1\r\n\r\n")), 200);
    assert!(!String::from_utf8_lossy(&h.log.responses[0].body).contains("m=audio"));
}

#[test]
fn deadlines_first_request_idle_and_session() {
    let s5 = Duration::from_secs(5);
    // Nothing sent: closed 5 s after the connection opened.
    let mut h = Harness::new(Secrets::default());
    let t0 = h.now;
    assert_eq!(h.s.poll_timeout(), Some(t0 + s5));
    h.s.handle_timeout(t0 + s5 - Duration::from_millis(1));
    h.drain();
    assert_eq!(h.log.closed, None);
    h.s.handle_timeout(t0 + s5);
    h.drain();
    assert_eq!(h.log.closed, Some(CloseReason::FirstRequestTimeout));
    assert_eq!(h.s.poll_timeout(), None);
    // One OPTIONS, then silence: the idle timeout.
    let mut h = Harness::new(Secrets::default());
    h.now += Duration::from_secs(2);
    h.raw("OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n");
    assert_eq!(h.s.poll_timeout(), Some(h.now + Duration::from_secs(30)));
    h.s.handle_timeout(h.now + Duration::from_secs(30));
    h.drain();
    assert_eq!(h.log.closed, Some(CloseReason::IdleTimeout));
    // A session: kept alive by RTCP (KeepAlive) and requests, closed 60 s after the last.
    let mut h = Harness::new(Secrets::default());
    h.replay(&capture("gst-tcp.bin"), None);
    assert_eq!(h.s.phase(), Phase::Playing);
    h.now += Duration::from_secs(50);
    h.s.handle(h.now, Input::KeepAlive);
    let deadline = h.s.poll_timeout().expect("deadline");
    assert_eq!(deadline, h.now + Duration::from_secs(60));
    h.s.handle_timeout(deadline - Duration::from_millis(1));
    h.drain();
    assert_eq!(h.log.closed, None);
    h.s.handle_timeout(deadline);
    h.drain();
    assert_eq!(h.log.closed, Some(CloseReason::SessionTimeout));
    // Nothing more happens once closed.
    h.raw("OPTIONS * RTSP/1.0\r\nCSeq: 9\r\n\r\n");
    assert_eq!(h.codes().last().map(String::as_str), Some("PLAY 200"));
}

#[test]
fn malformed_input_is_answered_400_then_closed() {
    let mut h = Harness::new(Secrets::default());
    h.s.handle(
        h.now,
        Input::Malformed {
            error: "malformed request: x".into(),
            cseq: Some(4),
        },
    );
    let (a, b) = (h.s.poll_action(), h.s.poll_action());
    assert!(matches!(a, Some(Action::Respond { cseq: Some(4), ref response }) if response.status == 400));
    assert_eq!(b, Some(Action::Close(CloseReason::BadRequest)));
}

#[test]
fn session_ids_nonces_and_ssrcs_follow_the_seed() {
    let cfg = config(Secrets::default());
    let a = ServerSession::new(cfg.clone(), Instant::now(), 1);
    let b = ServerSession::new(cfg.clone(), Instant::now(), 1);
    let c = ServerSession::new(cfg, Instant::now(), 2);
    assert_eq!(a.nonce(), b.nonce());
    assert_ne!(a.nonce(), c.nonce());
    assert_eq!(a.nonce().len(), 32);
    let mut h = Harness::new(Secrets::default());
    h.replay(&capture("ffmpeg-tcp.bin"), None);
    let ssrcs: Vec<u32> = h.log.responses.iter().filter_map(|r| {
        let t = &r.headers.iter().find(|(n, _)| n == "Transport")?.1;
        u32::from_str_radix(t.split("ssrc=").nth(1)?.split(';').next()?, 16).ok()
    }).collect();
    assert_eq!(ssrcs.len(), 2);
    assert_ne!(ssrcs[0], ssrcs[1]);
}
