//! One RTSP connection (RFC 2326 §10): one task reads requests and interleaved RTCP, answers,
//! and writes RTP of its session. DESCRIBE takes a hub lease and holds the answer until the
//! stream is known; a malformed request gets 400 and the connection closes. A slow reader only
//! slows itself (the hub drops its frames; writes time out).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf as _, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::session::{Outgoing, RtpTrack, Session, Sink, Track, UdpSink};
use super::udp;
use crate::media::hub::{Frame, HubError, StreamHub, Viewer, ViewerKind};
use crate::proto::rtsp::auth::{self, Credentials};
use crate::proto::rtsp::response::PUBLIC;
use crate::proto::rtsp::sdp::{self, AUDIO_CONTROL, AUDIO_PT, VIDEO_CONTROL, VIDEO_PT};
use crate::proto::rtsp::transport::{self, ClientTransport, ServerTransport};
use crate::proto::rtsp::{Inbound, Method, Request, Response, parse_inbound};

/// A write that takes longer than this means the reader is gone or stuck: close.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often timeouts are checked; RTCP SRs go out every `SR_EVERY` ticks.
const TICK: Duration = Duration::from_secs(1);
const SR_EVERY: u32 = 5;

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("RTSP {peer}: {source}")]
    Io {
        peer: SocketAddr,
        source: std::io::Error,
    },
    #[error("RTSP {peer}: write timed out")]
    WriteTimeout { peer: SocketAddr },
}

/// A DESCRIBE's lease, waiting for SETUP.
struct Pending {
    panel: String,
    viewer: Viewer,
    since: Instant,
}

/// The answer to one request and what to do after it.
struct Reply {
    response: Response,
    close: bool,
    /// Frames to send right after the PLAY answer.
    backlog: Vec<Frame>,
}

impl From<Response> for Reply {
    fn from(response: Response) -> Self {
        Self {
            response,
            close: false,
            backlog: Vec::new(),
        }
    }
}

struct Conn {
    shared: Arc<Shared>,
    peer: SocketAddr,
    local_ip: IpAddr,
    nonce: String,
    writer: OwnedWriteHalf,
    pending: Option<Pending>,
    session: Option<Session>,
    last_activity: Instant,
    shutdown: CancellationToken,
}

/// Best-effort CSeq of bytes that did not parse, so even a 400 can be matched by the client.
pub(super) fn sniff_cseq(bytes: &[u8]) -> Option<u32> {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(8192)]);
    text.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case("CSeq")
            .then(|| v.trim().parse().ok())?
    })
}

pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let local_ip = stream
        .local_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let (mut reader, writer) = stream.into_split();
    let mut conn = Conn {
        shared,
        peer,
        local_ip,
        nonce: format!("{:032x}", rand::random::<u128>()),
        writer,
        pending: None,
        session: None,
        last_activity: Instant::now(),
        shutdown,
    };
    tracing::debug!(%peer, "RTSP connection");
    let mut buf = BytesMut::with_capacity(4096);
    let mut tick = tokio::time::interval(TICK);
    let mut ticks = 0u32;
    let result: Result<(), ConnError> = async {
        loop {
            enum Ev {
                Read(std::io::Result<usize>),
                Frame(Option<Frame>),
                Tick,
                Stop,
            }
            let ev = {
                let frames = async {
                    match conn.session.as_mut().filter(|s| s.playing) {
                        Some(s) => s.viewer.frames.recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = conn.shutdown.cancelled() => Ev::Stop,
                    r = reader.read_buf(&mut buf) => Ev::Read(r),
                    f = frames => Ev::Frame(f),
                    _ = tick.tick() => Ev::Tick,
                }
            };
            match ev {
                Ev::Stop => return Ok(()),
                Ev::Read(Err(source)) => return Err(ConnError::Io { peer, source }),
                Ev::Read(Ok(0)) => return Ok(()),
                Ev::Read(Ok(_)) => {
                    if !conn.on_bytes(&mut buf).await? {
                        return Ok(());
                    }
                }
                Ev::Frame(None) => {
                    tracing::info!(%peer, "RTSP: the hub ended the stream; closing");
                    return Ok(());
                }
                Ev::Frame(Some(frame)) => conn.send_frames(std::slice::from_ref(&frame)).await?,
                Ev::Tick => {
                    ticks = ticks.wrapping_add(1);
                    if !conn.on_tick(ticks.is_multiple_of(SR_EVERY)).await? {
                        return Ok(());
                    }
                }
            }
        }
    }
    .await;
    if let Err(e) = result {
        tracing::debug!("{e}");
    }
    if let Some(s) = conn.session.take() {
        tracing::info!(%peer, session = %s.id, panel = %s.panel, "RTSP session ends (connection closed)");
    }
    let _ = conn.writer.shutdown().await;
}

impl Conn {
    /// Handles every complete message in `buf`; `false` closes the connection.
    async fn on_bytes(&mut self, buf: &mut BytesMut) -> Result<bool, ConnError> {
        loop {
            match parse_inbound(buf) {
                Ok(None) => return Ok(true),
                Ok(Some((inbound, used))) => {
                    buf.advance(used);
                    match inbound {
                        Inbound::Request(req) => {
                            self.last_activity = Instant::now();
                            let cseq = req.cseq;
                            let reply = self.handle(req).await;
                            self.write(&reply.response.to_bytes(Some(cseq))).await?;
                            if reply.close {
                                return Ok(false);
                            }
                            if !reply.backlog.is_empty() {
                                self.send_frames(&reply.backlog).await?;
                            }
                        }
                        // RTCP receiver reports over TCP count as keep-alive.
                        Inbound::Data { .. } => {
                            self.last_activity = Instant::now();
                            if let Some(s) = self.session.as_mut() {
                                s.last_request = Instant::now();
                            }
                        }
                        Inbound::Ignored => {}
                    }
                }
                Err(e) => {
                    tracing::info!(peer = %self.peer, "RTSP: {e}; 400 and close");
                    let reply = Response::new(400).text(&e.to_string());
                    self.write(&reply.to_bytes(sniff_cseq(buf))).await?;
                    return Ok(false);
                }
            }
        }
    }

    /// Timeouts and sender reports; `false` closes the connection.
    async fn on_tick(&mut self, send_sr: bool) -> Result<bool, ConnError> {
        let timeout = self.shared.settings.session_timeout;
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.since.elapsed() > timeout)
        {
            tracing::info!(peer = %self.peer, "RTSP: DESCRIBE without SETUP timed out; lease released");
            self.pending = None;
        }
        if let Some(s) = &self.session
            && s.last_seen().elapsed() > timeout
        {
            tracing::info!(peer = %self.peer, session = %s.id, "RTSP session timed out");
            self.session = None;
            return Ok(false);
        }
        if self.session.is_none() && self.last_activity.elapsed() > timeout {
            return Ok(false);
        }
        if send_sr && let Some(s) = self.session.as_ref().filter(|s| s.playing) {
            let mut out = Outgoing::default();
            s.sender_reports(&mut out);
            self.flush(out).await?;
        }
        Ok(true)
    }

    async fn send_frames(&mut self, frames: &[Frame]) -> Result<(), ConnError> {
        let Some(s) = self.session.as_mut() else {
            return Ok(());
        };
        let mut out = Outgoing::default();
        for f in frames {
            s.render(f, &mut out);
        }
        self.flush(out).await
    }

    async fn flush(&mut self, out: Outgoing) -> Result<(), ConnError> {
        if !out.tcp.is_empty() {
            self.write(&out.tcp).await?;
        }
        for (sock, to, packet) in out.udp {
            // A lost datagram is UDP's business; a send error (no route) is not fatal either.
            let _ = sock.send_to(&packet, to).await;
        }
        Ok(())
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        let peer = self.peer;
        match tokio::time::timeout(WRITE_TIMEOUT, self.writer.write_all(bytes)).await {
            Ok(r) => r.map_err(|source| ConnError::Io { peer, source }),
            Err(_) => Err(ConnError::WriteTimeout { peer }),
        }
    }

    async fn handle(&mut self, req: Request) -> Reply {
        tracing::debug!(peer = %self.peer, method = req.method.as_str(), uri = ?req.uri.as_ref().map(|u| u.as_str()), "RTSP request");
        if req.method != Method::Options
            && let Some(challenge) = self.unauthorized(&req)
        {
            return challenge.into();
        }
        // A Session header naming another session is an error for every method (§12.37).
        if let Some(id) = req.session()
            && self.session.as_ref().is_none_or(|s| s.id != id)
            && req.method != Method::Options
        {
            return Response::new(454).text("unknown session").into();
        }
        if let Some(s) = self.session.as_mut() {
            s.last_request = Instant::now();
        }
        match req.method {
            Method::Options => Response::new(200).header("Public", PUBLIC).into(),
            Method::GetParameter | Method::SetParameter => Response::new(200).into(),
            Method::Describe => self.describe(&req).await,
            Method::Setup => self.setup(&req).await,
            Method::Play => self.play(&req),
            Method::Pause => self.pause(&req),
            Method::Teardown => self.teardown(&req),
            Method::Announce | Method::Record | Method::Redirect => Response::new(405)
                .header("Allow", PUBLIC)
                .text("this server only plays")
                .into(),
            Method::Other(m) => Response::new(501)
                .text(&format!("method {m} is not implemented"))
                .into(),
        }
    }

    /// `Some(401)` when auth is configured and the request does not prove it.
    fn unauthorized(&self, req: &Request) -> Option<Response> {
        let user = self.shared.settings.user.as_ref()?;
        let creds = Credentials {
            user: user.clone(),
            password: self.shared.settings.password.clone().unwrap_or_default(),
        };
        if auth::check(
            req.header("Authorization"),
            req.method.as_str(),
            &creds,
            &self.nonce,
        ) {
            return None;
        }
        tracing::info!(peer = %self.peer, method = req.method.as_str(), "RTSP: 401");
        let [digest, basic] = auth::challenges(&self.nonce);
        Some(
            Response::new(401)
                .header("WWW-Authenticate", digest)
                .header("WWW-Authenticate", basic),
        )
    }

    fn resolve(&self, req: &Request) -> Result<Target, Reply> {
        let Some(uri) = req.uri.as_ref() else {
            return Err(Response::new(400).text("no URI").into());
        };
        let path = uri.path().trim_matches('/');
        let (panel, control) = match path.split_once('/') {
            Some((p, c)) => (p, Some(c.trim_matches('/'))),
            None => (path, None),
        };
        let Some(hub) = self.shared.hubs.get(panel) else {
            return Err(Response::new(404)
                .text(&format!("no panel {panel:?}"))
                .into());
        };
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
            hub: hub.clone(),
            panel: panel.to_owned(),
            control: control.filter(|c| !c.is_empty()).map(str::to_owned),
            audio,
            base: base.to_string(),
        })
    }

    /// The viewer this connection already holds for `panel`, or a new one (which may start a call).
    async fn viewer_info(&mut self, t: &Target) -> Result<crate::media::hub::StreamInfo, Reply> {
        if let Some(s) = self.session.as_ref().filter(|s| s.panel == t.panel) {
            return Ok(s.viewer.info.clone());
        }
        if let Some(p) = self.pending.as_ref().filter(|p| p.panel == t.panel) {
            return Ok(p.viewer.info.clone());
        }
        let viewer = self.join(&t.hub).await?;
        let info = viewer.info.clone();
        self.pending = Some(Pending {
            panel: t.panel.clone(),
            viewer,
            since: Instant::now(),
        });
        Ok(info)
    }

    async fn join(&self, hub: &StreamHub) -> Result<Viewer, Reply> {
        let started = Instant::now();
        let r = tokio::select! {
            r = hub.join(ViewerKind::Rtsp) => r,
            _ = self.shutdown.cancelled() => Err(HubError::Stopped { panel: hub.panel().name.clone() }),
        };
        match r {
            Ok(v) => {
                tracing::debug!(peer = %self.peer, panel = %hub.panel().name, ms = started.elapsed().as_millis() as u64, "RTSP viewer joined");
                Ok(v)
            }
            Err(e) => {
                tracing::warn!(peer = %self.peer, "RTSP: {e}; 503");
                Err(Response::new(503).text(&e.to_string()).into())
            }
        }
    }

    async fn describe(&mut self, req: &Request) -> Reply {
        let t = match self.resolve(req) {
            Ok(t) => t,
            Err(r) => return r,
        };
        let info = match self.viewer_info(&t).await {
            Ok(i) => i,
            Err(r) => return r,
        };
        let config_hex = info.audio.as_ref().and_then(|a| a.config_hex().ok());
        let audio = match (&info.audio, &config_hex, t.audio) {
            (Some(a), Some(hex), true) => Some(sdp::AudioTrack {
                sample_rate: a.sample_rate,
                channels: a.channels,
                config_hex: hex,
            }),
            _ => None,
        };
        let video = sdp::VideoTrack {
            sps: &info.sps,
            pps: &info.pps,
            profile_level_id: info.video.profile_level_id,
        };
        let body = sdp::describe(
            rand::random::<u32>().into(),
            &t.panel,
            &video,
            audio.as_ref(),
        );
        Response::new(200)
            .header("Content-Base", t.base)
            .body("application/sdp", body)
            .into()
    }

    async fn setup(&mut self, req: &Request) -> Reply {
        let t = match self.resolve(req) {
            Ok(t) => t,
            Err(r) => return r,
        };
        let is_video = match t.control.as_deref() {
            Some(VIDEO_CONTROL) => true,
            Some(AUDIO_CONTROL) => false,
            other => {
                return Response::new(404)
                    .text(&format!(
                        "no track {other:?}; SETUP {VIDEO_CONTROL} or {AUDIO_CONTROL}"
                    ))
                    .into();
            }
        };
        if self.session.as_ref().is_some_and(|s| s.panel != t.panel) {
            return Response::new(459)
                .text("one session per connection, for one panel")
                .into();
        }
        let client = match transport::choose(req.header("Transport")) {
            Ok(c) => c,
            Err(e) => return Response::new(461).text(&e.to_string()).into(),
        };
        let info = match self.viewer_info(&t).await {
            Ok(i) => i,
            Err(r) => return r,
        };
        if !is_video && info.audio.is_none() {
            return Response::new(404).text("this stream has no audio").into();
        }
        let (sink, answer) = match client {
            ClientTransport::Interleaved { channels } => {
                let (rtp, rtcp) = channels.unwrap_or(if is_video { (0, 1) } else { (2, 3) });
                (
                    Sink::Interleaved { rtp, rtcp },
                    ServerTransport::Interleaved { rtp, rtcp },
                )
            }
            ClientTransport::Udp {
                rtp_port,
                rtcp_port,
            } => {
                let settings = &self.shared.settings;
                let pair = match udp::bind_pair(self.local_ip, &settings.udp_ports) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(peer = %self.peer, "RTSP SETUP: {e}");
                        return Response::new(461).text(&format!("{e}; use TCP")).into();
                    }
                };
                let answer = ServerTransport::Udp {
                    client: (rtp_port, rtcp_port),
                    server: pair.ports,
                };
                let sink = Sink::Udp(UdpSink {
                    pair,
                    client_rtp: SocketAddr::new(self.peer.ip(), rtp_port),
                    client_rtcp: SocketAddr::new(self.peer.ip(), rtcp_port),
                });
                (sink, answer)
            }
        };
        if self.session.is_none() {
            let Some(p) = self.pending.take() else {
                return Response::new(500).text("lost the stream lease").into();
            };
            let id = format!("{:016X}", rand::random::<u64>());
            tracing::info!(peer = %self.peer, session = %id, panel = %p.panel, "RTSP session starts");
            self.session = Some(Session::new(
                id,
                p.panel,
                p.viewer,
                self.shared.settings.mtu,
            ));
        }
        let Some(s) = self.session.as_mut() else {
            return Response::new(500).into();
        };
        let rtp = if is_video {
            RtpTrack::new(VIDEO_PT, 90_000)
        } else {
            RtpTrack::new(
                AUDIO_PT,
                info.audio.as_ref().map_or(8000, |a| a.sample_rate),
            )
        };
        let header = answer.header_value(rtp.ssrc);
        let track = Some(Track { rtp, sink });
        if is_video {
            s.video = track;
        } else {
            s.audio = track;
        }
        let timeout = self.shared.settings.session_timeout.as_secs();
        Response::new(200)
            .header("Transport", header)
            .header("Session", format!("{};timeout={timeout}", s.id))
            .into()
    }

    fn play(&mut self, req: &Request) -> Reply {
        let base = match self.resolve(req) {
            Ok(t) => t.base,
            Err(r) => return r,
        };
        let Some(s) = self.session.as_mut() else {
            return Response::new(454)
                .text("PLAY needs a session (SETUP first)")
                .into();
        };
        if s.video.is_none() && s.audio.is_none() {
            return Response::new(455).text("no track set up").into();
        }
        let backlog = if s.playing {
            Vec::new()
        } else {
            s.take_backlog()
        };
        s.playing = true;
        let mut info = Vec::new();
        let first_video = backlog.iter().find_map(|f| match f {
            Frame::Video(v) => Some(v.pts),
            _ => None,
        });
        // Audio and video pts share an origin in the hub; with no audio queued yet, the
        // audio time of the first picture is announced (retina insists on an rtptime).
        let audio_rate = s.audio.as_ref().map_or(1, |t| u64::from(t.rtp.clock()));
        let first_audio = backlog
            .iter()
            .find_map(|f| match f {
                Frame::Audio(a) => Some(a.pts),
                _ => None,
            })
            .or_else(|| first_video.map(|v| v * audio_rate / 90_000));
        for (track, control, first) in [
            (&s.video, VIDEO_CONTROL, first_video),
            (&s.audio, AUDIO_CONTROL, first_audio),
        ] {
            let Some(track) = track else { continue };
            let mut item = format!("url={base}{control};seq={}", track.rtp.seq);
            if let Some(pts) = first {
                item.push_str(&format!(";rtptime={}", track.rtp.rtp_time(pts)));
            }
            info.push(item);
        }
        let timeout = self.shared.settings.session_timeout.as_secs();
        Reply {
            response: Response::new(200)
                .header("Session", format!("{};timeout={timeout}", s.id))
                .header("Range", "npt=0.000-")
                .header("RTP-Info", info.join(",")),
            close: false,
            backlog,
        }
    }

    fn pause(&mut self, _req: &Request) -> Reply {
        let Some(s) = self.session.as_mut() else {
            return Response::new(454).into();
        };
        s.playing = false;
        s.need_keyframe = true;
        Response::new(200).header("Session", s.id.clone()).into()
    }

    fn teardown(&mut self, _req: &Request) -> Reply {
        match self.session.take() {
            Some(s) => {
                tracing::info!(peer = %self.peer, session = %s.id, "RTSP session torn down");
                Response::new(200).into()
            }
            None if self.pending.take().is_some() => Response::new(200).into(),
            None => Response::new(454).into(),
        }
    }
}

/// What a request URI names.
struct Target {
    hub: StreamHub,
    panel: String,
    control: Option<String>,
    audio: bool,
    /// `rtsp://host:port/<panel>/`: the Content-Base and the prefix of track URLs.
    base: String,
}
