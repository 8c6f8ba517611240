//! The server side of one RTSP connection as a sans-IO state machine (RFC 2326 §A.1, server):
//! Init → Ready → Playing ⇄ Paused, and back to Init on TEARDOWN. Requests and the driver's
//! completions go in (`handle`); responses and actions come out (`poll_action`): join or release
//! a hub viewer, bind UDP ports, add a track, play, pause, close. Deadlines (first request,
//! idle connection, session keep-alive) come from `poll_timeout`. `servers::rtsp::conn` drives it.
//! The ONVIF backchannel (`Require` tags, the talk it takes) is in `backchannel.rs`.

mod backchannel;
mod describe;
mod io;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::response::PUBLIC;
use super::transport::{self, ClientTransport, ServerTransport};
use super::{Method, Request, Response};
use crate::proto::auth::{self, NonceState};

pub use describe::{AudioDescription, StreamDescription};
pub use io::{
    Action, CloseReason, Input, Phase, PlayInfo, RtpParams, ServerConfig, TrackKind, TrackSink,
};

/// What a request URI names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    panel: String,
    control: Option<String>,
    audio: bool,
    /// The request carries `Require: www.onvif.org/ver20/backchannel`.
    backchannel: bool,
    /// `rtsp://host:port/<panel>/`: the Content-Base and the prefix of track URLs.
    base: String,
}

struct Lease {
    panel: String,
    desc: StreamDescription,
}

struct Session {
    id: String,
    phase: Phase,
    tracks: Vec<(TrackKind, RtpParams)>,
    last_seen: Instant,
}

/// A request waiting for the driver.
enum Awaiting {
    Describe(Target),
    Setup(Target, TrackKind, ClientTransport),
    SetupUdp(TrackKind, (u16, u16)),
    Play(String),
    /// The backchannel's SETUP waits for the panel's talk.
    Talk(ClientTransport),
}

pub struct ServerSession {
    cfg: Arc<ServerConfig>,
    rng: u64,
    nonce: String,
    opened: Instant,
    got_request: bool,
    last_activity: Instant,
    auth_failures: u32,
    /// Requests whose `Authorization` was checked: (wrong, right) — the driver reports changes
    /// to the wrong-password throttle (a 401 to a request without credentials counts in neither).
    credentials: (u32, u32),
    lease: Option<Lease>,
    session: Option<Session>,
    /// A DESCRIBE on this connection offered the backchannel.
    backchannel_offered: bool,
    /// The driver holds the panel's talk for the backchannel track.
    talking: bool,
    awaiting: Option<(u32, Awaiting)>,
    actions: VecDeque<Action>,
    closed: bool,
}

impl ServerSession {
    /// A new connection at `now`; `seed` feeds the session id, nonce and RTP numbering.
    pub fn new(cfg: Arc<ServerConfig>, now: Instant, seed: u64) -> Self {
        let mut s = Self {
            cfg,
            rng: seed,
            nonce: String::new(),
            opened: now,
            got_request: false,
            last_activity: now,
            auth_failures: 0,
            credentials: (0, 0),
            lease: None,
            session: None,
            backchannel_offered: false,
            talking: false,
            awaiting: None,
            actions: VecDeque::new(),
            closed: false,
        };
        s.nonce = format!("{:016x}{:016x}", s.next_u64(), s.next_u64());
        s
    }

    /// splitmix64: deterministic for tests, unpredictable with a random seed.
    fn next_u64(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn phase(&self) -> Phase {
        self.session.as_ref().map_or(Phase::Init, |s| s.phase)
    }

    pub fn session_id(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.id.as_str())
    }

    /// The panel whose hub this connection holds a viewer of.
    pub fn panel(&self) -> Option<&str> {
        self.lease.as_ref().map(|l| l.panel.as_str())
    }

    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// How many requests so far presented wrong and right credentials.
    pub fn credentials(&self) -> (u32, u32) {
        self.credentials
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When `handle_timeout` must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        if !self.got_request {
            return Some(self.opened + self.cfg.first_request_timeout);
        }
        Some(match &self.session {
            Some(s) => s.last_seen + self.cfg.session_timeout,
            None => self.last_activity + self.cfg.idle_timeout,
        })
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.poll_timeout() else {
            return;
        };
        if now < deadline {
            return;
        }
        let reason = if !self.got_request {
            CloseReason::FirstRequestTimeout
        } else if self.session.is_some() {
            CloseReason::SessionTimeout
        } else {
            CloseReason::IdleTimeout
        };
        self.close(reason);
    }

    fn close(&mut self, reason: CloseReason) {
        if !self.closed {
            self.closed = true;
            self.actions.push_back(Action::Close(reason));
        }
    }

    fn respond(&mut self, cseq: u32, response: Response) {
        self.actions.push_back(Action::Respond {
            cseq: Some(cseq),
            response,
        });
    }

    pub fn handle(&mut self, now: Instant, input: Input) {
        if self.closed {
            return;
        }
        match input {
            Input::Request(req) => self.on_request(now, req),
            Input::Malformed { error, cseq } => {
                self.actions.push_back(Action::Respond {
                    cseq,
                    response: Response::new(400).text(&error),
                });
                self.close(CloseReason::BadRequest);
            }
            Input::KeepAlive => {
                self.last_activity = now;
                if let Some(s) = self.session.as_mut() {
                    s.last_seen = now;
                }
            }
            completion => self.on_completion(now, completion),
        }
    }

    fn on_request(&mut self, now: Instant, req: Request) {
        self.got_request = true;
        self.last_activity = now;
        let cseq = req.cseq;
        if self.awaiting.is_some() {
            // The driver feeds one request at a time; this is a driver bug, not the client's.
            self.respond(cseq, Response::new(500).text("a request is still pending"));
            return;
        }
        if req.method != Method::Options && !self.authorized(&req) {
            self.auth_failures += 1;
            let [digest, basic] = auth::header::challenges(&self.nonce, false);
            let r = Response::new(401)
                .header("WWW-Authenticate", digest)
                .header("WWW-Authenticate", basic);
            self.respond(cseq, r);
            if self.auth_failures >= self.cfg.max_auth_failures {
                self.close(CloseReason::AuthFailures);
            }
            return;
        }
        // A Session header naming another session is an error for every method (§12.37).
        if req.method != Method::Options
            && let Some(id) = req.session()
            && self.session.as_ref().is_none_or(|s| s.id != id)
        {
            self.respond(cseq, Response::new(454).text("unknown session"));
            return;
        }
        if let Err(r) = backchannel::required(&req) {
            return self.respond(cseq, r);
        }
        if let Some(s) = self.session.as_mut() {
            s.last_seen = now;
        }
        match req.method {
            Method::Options => self.respond(cseq, Response::new(200).header("Public", PUBLIC)),
            Method::GetParameter | Method::SetParameter => self.respond(cseq, Response::new(200)),
            Method::Describe => self.describe(cseq, &req),
            Method::Setup => self.setup(cseq, &req),
            Method::Play => self.play(cseq, &req),
            Method::Pause => self.pause(cseq),
            Method::Teardown => self.teardown(cseq),
            Method::Announce | Method::Record | Method::Redirect => self.respond(
                cseq,
                Response::new(405)
                    .header("Allow", PUBLIC)
                    .text("this server only plays"),
            ),
            Method::Other(m) => self.respond(
                cseq,
                Response::new(501).text(&format!("method {m} is not implemented")),
            ),
        }
    }

    fn authorized(&mut self, req: &Request) -> bool {
        if !self.cfg.secrets.required() {
            return true;
        }
        let nonce = |n: &str| {
            if auth::header::constant_time_eq(n.as_bytes(), self.nonce.as_bytes()) {
                NonceState::Fresh
            } else {
                NonceState::Unknown
            }
        };
        let checked = auth::header::check(
            req.header("Authorization"),
            req.method.as_str(),
            &self.cfg.secrets,
            nonce,
        );
        match checked {
            Ok(_) => {
                self.auth_failures = 0;
                self.credentials.1 += 1;
            }
            Err(auth::Failure::Wrong) => self.credentials.0 += 1,
            Err(_) => {}
        }
        checked.is_ok()
    }

    fn resolve(&self, req: &Request) -> Result<Target, Response> {
        let Some(uri) = req.uri.as_ref() else {
            return Err(Response::new(400).text("no URI"));
        };
        let path = uri.path().trim_matches('/');
        let (panel, control) = match path.split_once('/') {
            Some((p, c)) => (p, Some(c.trim_matches('/'))),
            None => (path, None),
        };
        if !self.cfg.panels.iter().any(|p| p == panel) {
            return Err(Response::new(404).text(&format!("no panel {panel:?}")));
        }
        let audio = !uri
            .query_pairs()
            .any(|(k, v)| k == "audio" && matches!(&*v, "0" | "false" | "no" | "off"));
        let mut base = uri.clone();
        base.set_query(None);
        base.set_fragment(None);
        let _ = base.set_username("");
        let _ = base.set_password(None);
        base.set_path(&format!("/{panel}/"));
        Ok(Target {
            panel: panel.to_owned(),
            control: control.filter(|c| !c.is_empty()).map(str::to_owned),
            audio,
            backchannel: backchannel::required(req).unwrap_or(false),
            base: base.to_string(),
        })
    }

    /// Whether this connection may use `panel`: one panel per connection while a session exists.
    fn other_panel(&self, panel: &str) -> bool {
        self.session.is_some() && self.lease.as_ref().is_some_and(|l| l.panel != panel)
    }

    /// Makes sure the viewer is `panel`'s; `false` means a Join was asked for (wait for it).
    fn ensure_lease(&mut self, panel: &str) -> bool {
        if self.lease.as_ref().is_some_and(|l| l.panel == panel) {
            return true;
        }
        if self.lease.take().is_some() {
            self.talking = false;
            self.actions.push_back(Action::Release);
        }
        self.actions.push_back(Action::Join {
            panel: panel.to_owned(),
        });
        false
    }

    fn describe(&mut self, cseq: u32, req: &Request) {
        let t = match self.resolve(req) {
            Ok(t) => t,
            Err(r) => return self.respond(cseq, r),
        };
        if self.other_panel(&t.panel) {
            return self.respond(cseq, one_panel());
        }
        if self.ensure_lease(&t.panel) {
            self.describe_joined(cseq, &t);
        } else {
            self.awaiting = Some((cseq, Awaiting::Describe(t)));
        }
    }

    fn describe_joined(&mut self, cseq: u32, t: &Target) {
        let sdp_id = self.next_u64() >> 1;
        let Some(lease) = self.lease.as_ref() else {
            return self.respond(cseq, Response::new(500).text("lost the stream lease"));
        };
        let mut body = lease.desc.sdp(sdp_id, &t.panel, t.audio);
        if t.backchannel {
            body.push_str(&super::sdp::backchannel_section());
            self.backchannel_offered = true;
        }
        let r = Response::new(200)
            .header("Content-Base", t.base.clone())
            .body("application/sdp", body);
        self.respond(cseq, r);
    }

    fn setup(&mut self, cseq: u32, req: &Request) {
        let t = match self.resolve(req) {
            Ok(t) => t,
            Err(r) => return self.respond(cseq, r),
        };
        let kind = t.control.as_deref().and_then(TrackKind::from_control);
        // The backchannel exists for clients that asked for it (DESCRIBE or this SETUP).
        let offered = self.backchannel_offered || t.backchannel;
        let Some(kind) = kind.filter(|k| *k != TrackKind::Backchannel || offered) else {
            let msg = format!(
                "no track {:?}; SETUP {} or {}",
                t.control,
                TrackKind::Video.control(),
                TrackKind::Audio.control()
            );
            return self.respond(cseq, Response::new(404).text(&msg));
        };
        if self.other_panel(&t.panel) {
            return self.respond(cseq, one_panel());
        }
        let client = match transport::choose(req.header("Transport")) {
            Ok(c) => c,
            Err(e) => return self.respond(cseq, Response::new(461).text(&e.to_string())),
        };
        if self.ensure_lease(&t.panel) {
            self.setup_joined(cseq, kind, client);
        } else {
            self.awaiting = Some((cseq, Awaiting::Setup(t, kind, client)));
        }
    }

    fn setup_joined(&mut self, cseq: u32, kind: TrackKind, client: ClientTransport) {
        let has_audio = self.lease.as_ref().is_some_and(|l| l.desc.audio.is_some());
        if kind == TrackKind::Audio && !has_audio {
            return self.respond(cseq, Response::new(404).text("this stream has no audio"));
        }
        if kind == TrackKind::Backchannel && !self.talking {
            let Some(panel) = self.lease.as_ref().map(|l| l.panel.clone()) else {
                return self.respond(cseq, Response::new(500).text("lost the stream lease"));
            };
            self.actions.push_back(Action::Talk { panel });
            self.awaiting = Some((cseq, Awaiting::Talk(client)));
            return;
        }
        self.setup_transport(cseq, kind, client);
    }

    fn setup_transport(&mut self, cseq: u32, kind: TrackKind, client: ClientTransport) {
        match client {
            ClientTransport::Interleaved { channels } => {
                let (rtp, rtcp) = channels.unwrap_or(kind.default_channels());
                self.finish_setup(cseq, kind, TrackSink::Interleaved { rtp, rtcp });
            }
            ClientTransport::Udp {
                rtp_port,
                rtcp_port,
            } => {
                self.actions.push_back(Action::BindUdp { kind });
                let wait = Awaiting::SetupUdp(kind, (rtp_port, rtcp_port));
                self.awaiting = Some((cseq, wait));
            }
        }
    }

    fn finish_setup(&mut self, cseq: u32, kind: TrackKind, sink: TrackSink) {
        let Some(clock) = self.lease.as_ref().map(|l| l.desc.clock(kind)) else {
            return self.respond(cseq, Response::new(500).text("lost the stream lease"));
        };
        if self.session.is_none() {
            let id = format!("{:016X}", self.next_u64());
            self.session = Some(Session {
                id,
                phase: Phase::Ready,
                tracks: Vec::new(),
                last_seen: self.last_activity,
            });
        }
        let r = self.next_u64();
        let rtp = RtpParams {
            ssrc: r as u32,
            seq: (r >> 32) as u16,
            ts_base: self.next_u64() as u32,
            payload_type: match kind {
                TrackKind::Video => super::sdp::VIDEO_PT,
                TrackKind::Audio => super::sdp::AUDIO_PT,
                TrackKind::Backchannel => 0,
            },
            clock,
        };
        let answer = match sink {
            TrackSink::Interleaved { rtp, rtcp } => ServerTransport::Interleaved { rtp, rtcp },
            TrackSink::Udp { client, server } => ServerTransport::Udp { client, server },
        };
        let timeout = self.cfg.session_timeout.as_secs();
        let Some(s) = self.session.as_mut() else {
            return;
        };
        s.tracks.retain(|(k, _)| *k != kind);
        s.tracks.push((kind, rtp));
        let session_header = format!("{};timeout={timeout}", s.id);
        self.actions.push_back(Action::AddTrack { kind, sink, rtp });
        self.respond(
            cseq,
            Response::new(200)
                .header("Transport", answer.header_value(rtp.ssrc))
                .header("Session", session_header),
        );
    }

    fn play(&mut self, cseq: u32, req: &Request) {
        let base = match self.resolve(req) {
            Ok(t) => t.base,
            Err(r) => return self.respond(cseq, r),
        };
        let Some(s) = self.session.as_mut() else {
            let r = Response::new(454).text("PLAY needs a session (SETUP first)");
            return self.respond(cseq, r);
        };
        if s.tracks.is_empty() {
            return self.respond(cseq, Response::new(455).text("no track set up"));
        }
        s.phase = Phase::Playing;
        self.actions.push_back(Action::Play);
        self.awaiting = Some((cseq, Awaiting::Play(base)));
    }

    fn play_started(&mut self, cseq: u32, base: &str, infos: &[PlayInfo]) {
        let timeout = self.cfg.session_timeout.as_secs();
        let Some(s) = self.session.as_ref() else {
            return self.respond(cseq, Response::new(454));
        };
        let rtp_info: Vec<String> = [TrackKind::Video, TrackKind::Audio]
            .into_iter()
            .filter_map(|k| infos.iter().find(|i| i.kind == k))
            .map(|i| {
                let mut item = format!("url={base}{};seq={}", i.kind.control(), i.seq);
                if let Some(t) = i.rtptime {
                    item.push_str(&format!(";rtptime={t}"));
                }
                item
            })
            .collect();
        let r = Response::new(200)
            .header("Session", format!("{};timeout={timeout}", s.id))
            .header("Range", "npt=0.000-")
            .header("RTP-Info", rtp_info.join(","));
        self.respond(cseq, r);
    }

    fn pause(&mut self, cseq: u32) {
        let Some(s) = self.session.as_mut() else {
            return self.respond(cseq, Response::new(454));
        };
        if s.phase == Phase::Playing {
            s.phase = Phase::Paused;
        }
        let id = s.id.clone();
        self.actions.push_back(Action::Pause);
        self.respond(cseq, Response::new(200).header("Session", id));
    }

    fn teardown(&mut self, cseq: u32) {
        let had_session = self.session.take().is_some();
        let had_lease = self.lease.take().is_some();
        self.talking = false;
        if !(had_session || had_lease) {
            return self.respond(cseq, Response::new(454));
        }
        self.actions.push_back(Action::Release);
        self.respond(cseq, Response::new(200));
    }

    fn on_completion(&mut self, now: Instant, input: Input) {
        let Some((cseq, waiting)) = self.awaiting.take() else {
            return;
        };
        self.last_activity = now;
        match (waiting, input) {
            (Awaiting::Describe(t), Input::Joined(desc)) => {
                self.lease = Some(Lease {
                    panel: t.panel.clone(),
                    desc,
                });
                self.describe_joined(cseq, &t);
            }
            (Awaiting::Setup(t, kind, client), Input::Joined(desc)) => {
                self.lease = Some(Lease {
                    panel: t.panel.clone(),
                    desc,
                });
                self.setup_joined(cseq, kind, client);
            }
            (Awaiting::Describe(_) | Awaiting::Setup(..), Input::JoinFailed { status, reason }) => {
                self.respond(cseq, Response::new(status).text(&reason));
            }
            (Awaiting::SetupUdp(kind, client), Input::UdpBound { server }) => {
                self.finish_setup(cseq, kind, TrackSink::Udp { client, server });
            }
            (Awaiting::SetupUdp(..), Input::UdpFailed { reason }) => {
                self.respond(cseq, Response::new(461).text(&format!("{reason}; use TCP")));
            }
            (Awaiting::Play(base), Input::Playing(infos)) => self.play_started(cseq, &base, &infos),
            (Awaiting::Talk(client), Input::Talking) => {
                self.talking = true;
                self.setup_transport(cseq, TrackKind::Backchannel, client);
            }
            (Awaiting::Talk(_), Input::TalkFailed { status, reason }) => {
                self.respond(cseq, Response::new(status).text(&reason));
            }
            (_, other) => {
                let msg = format!("unexpected completion {other:?}");
                self.respond(cseq, Response::new(500).text(&msg));
            }
        }
    }
}

fn one_panel() -> Response {
    Response::new(459).text("one session per connection, for one panel")
}
