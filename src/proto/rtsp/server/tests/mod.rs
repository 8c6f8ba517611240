//! The session's state table, clock-free: the request bytes ffmpeg, GStreamer (captured from
//! them, tests/corpus/rtsp_clients) and retina (from its source) send, replayed through
//! `parse_inbound` as the driver does, with a stub driver answering joins, UDP binds and PLAY.

use std::sync::Arc;
use std::time::Instant;

mod backchannel;
mod clients;
mod states;

use super::*;
pub(super) use crate::proto::auth::Secrets;
use crate::proto::rtsp::{Inbound, parse_inbound};

pub(super) fn desc(audio: bool) -> StreamDescription {
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

pub(super) fn config(secrets: Secrets) -> Arc<ServerConfig> {
    Arc::new(ServerConfig {
        secrets,
        ..ServerConfig::new(vec!["doorbell".into(), "garden".into()])
    })
}

pub(super) fn admin() -> Secrets {
    Secrets {
        user: Some(("admin".into(), "s3cret".into())),
        api_token: None,
    }
}

/// What came out, in order, with the driver's answers folded in.
#[derive(Debug, Default)]
pub(super) struct Log {
    pub(super) statuses: Vec<(String, u16)>,
    pub(super) joins: Vec<String>,
    pub(super) talks: Vec<String>,
    pub(super) releases: usize,
    pub(super) tracks: Vec<(TrackKind, TrackSink)>,
    pub(super) plays: usize,
    pub(super) pauses: usize,
    pub(super) closed: Option<CloseReason>,
    pub(super) responses: Vec<Response>,
}

pub(super) struct Harness {
    pub(super) s: ServerSession,
    pub(super) now: Instant,
    pub(super) log: Log,
    pub(super) audio: bool,
    pub(super) join_fails: bool,
    pub(super) udp_fails: bool,
    /// Someone else holds the panel's talk: a backchannel SETUP gets 453.
    pub(super) talk_busy: bool,
    params: Vec<(TrackKind, RtpParams)>,
    method: String,
}

impl Harness {
    pub(super) fn new(secrets: Secrets) -> Self {
        let now = Instant::now();
        Self {
            s: ServerSession::new(config(secrets), now, 7),
            now,
            log: Log::default(),
            audio: true,
            join_fails: false,
            udp_fails: false,
            talk_busy: false,
            params: Vec::new(),
            method: String::new(),
        }
    }

    /// Runs every action, answering the ones that need the driver.
    pub(super) fn drain(&mut self) {
        while let Some(a) = self.s.poll_action() {
            let answer = match a {
                Action::Respond { response, .. } => {
                    self.log
                        .statuses
                        .push((self.method.clone(), response.status));
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
                Action::Talk { panel } => {
                    self.log.talks.push(panel);
                    Some(if self.talk_busy {
                        Input::TalkFailed {
                            status: 453,
                            reason: "someone else is talking".into(),
                        }
                    } else {
                        Input::Talking
                    })
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
    pub(super) fn request(&mut self, mut req: Request, creds: Option<(&str, &str)>) -> u16 {
        if req.session().is_some() {
            let id = self.s.session_id().unwrap_or("none").to_owned();
            for (n, v) in req.headers.iter_mut() {
                if n.eq_ignore_ascii_case("Session") {
                    *v = id.clone();
                }
            }
        }
        if let Some((user, pass)) = creds {
            req.headers
                .retain(|(n, _)| !n.eq_ignore_ascii_case("Authorization"));
            let uri = req.uri.as_ref().map_or("*".to_owned(), |u| u.to_string());
            let nonce = self.s.nonce().to_owned();
            let ha1 = crate::proto::auth::header::md5_hex(&format!("{user}:c300x-bridge:{pass}"));
            let ha2 =
                crate::proto::auth::header::md5_hex(&format!("{}:{uri}", req.method.as_str()));
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

    pub(super) fn raw(&mut self, text: &str) -> u16 {
        let (inbound, _) = parse_inbound(text.as_bytes())
            .expect("valid")
            .expect("whole");
        match inbound {
            Inbound::Request(r) => self.request(r, None),
            other => panic!("not a request: {other:?}"),
        }
    }

    /// Replays a capture; `creds` answers challenges (the captured Authorization is replaced).
    pub(super) fn replay(&mut self, bytes: &[u8], creds: Option<(&str, &str)>) {
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

    pub(super) fn codes(&self) -> Vec<String> {
        self.log
            .statuses
            .iter()
            .map(|(m, s)| format!("{m} {s}"))
            .collect()
    }
}

pub(super) fn capture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/corpus/rtsp_clients/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}
