//! One RTSP connection's driver (RFC 2326 §10): one task reads requests and interleaved RTCP,
//! feeds them to the sans-IO `proto::rtsp::server::ServerSession`, carries out its actions
//! (hub join, UDP ports, tracks, play, talk) and writes RTP of the playout. The backchannel's RTP
//! (interleaved or on its UDP port) goes to `talk.rs`. A slow reader only slows itself (the hub
//! drops its frames; writes time out). Returns why the connection ended.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf as _, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::session::{Outgoing, Playout, Sink, UdpSink, description};
use super::talk::{self, TalkIn, TalkSource};
use super::udp::{self, UdpPair};
use crate::media::hub::{Frame, HubError, ViewerKind};
use crate::proto::rtsp::server::{Action, CloseReason, Input, ServerSession, TrackKind, TrackSink};
use crate::proto::rtsp::{Inbound, parse_inbound};
use crate::servers::limits::Permit;

/// A write that takes longer than this means the reader is gone or stuck: close.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often RTCP SRs go out and UDP keep-alives are looked at.
/// At most this many queued frames rendered into one write.
const MAX_FRAMES_PER_WRITE: usize = 64;
const TICK: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("RTSP {peer}: {source}")]
    Io {
        peer: SocketAddr,
        source: std::io::Error,
    },
    #[error("RTSP {peer}: write timed out")]
    WriteTimeout { peer: SocketAddr },
    #[error(transparent)]
    TalkEnded(#[from] talk::TalkEnded),
}

struct Conn {
    shared: Arc<Shared>,
    peer: SocketAddr,
    local_ip: IpAddr,
    writer: OwnedWriteHalf,
    session: ServerSession,
    playout: Option<Playout>,
    /// The backchannel's talk, from its SETUP on.
    talk: Option<TalkIn>,
    /// Ports bound for a UDP track, until the session adds it.
    pending_udp: Option<UdpPair>,
    /// Frames to send right after the PLAY answer.
    backlog: Vec<Frame>,
    /// The frames of one write (kept for its capacity).
    batch: Vec<Frame>,
    /// The last client RTCP over UDP already counted as a keep-alive.
    rtcp_seen: Option<Instant>,
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

/// Serves one connection until it ends; the reason goes into `/metrics`.
pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    permit: &Permit,
) -> &'static str {
    let local_ip = stream
        .local_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let (mut reader, writer) = stream.into_split();
    let session = ServerSession::new(shared.server.clone(), Instant::now(), rand::random());
    let mut conn = Conn {
        shared,
        peer,
        local_ip,
        writer,
        session,
        playout: None,
        talk: None,
        pending_udp: None,
        backlog: Vec::new(),
        batch: Vec::with_capacity(MAX_FRAMES_PER_WRITE),
        rtcp_seen: None,
        shutdown,
    };
    tracing::debug!(%peer, "RTSP connection");
    let mut buf = BytesMut::with_capacity(4096);
    let mut tick = tokio::time::interval(TICK);
    // Made once, not per wake-up (a wake per frame per viewer: re-registering a timer and two
    // cancellation waiters every time showed in the profile at 100 readers, BENCHMARKS.md).
    let stop = conn.shutdown.clone().cancelled_owned();
    let evicted = permit.evicted().clone().cancelled_owned();
    let session_timer = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(stop, evicted, session_timer);
    let mut armed: Option<tokio::time::Instant> = None;
    let result: Result<&'static str, ConnError> = async {
        loop {
            if let Some(reason) = conn.run_actions().await? {
                return Ok(reason.as_str());
            }
            enum Ev {
                Read(std::io::Result<usize>),
                Frame(Option<Frame>),
                Timeout,
                Tick,
                TalkRtp(std::io::Result<(Vec<u8>, SocketAddr)>),
                TalkClosed(crate::media::hub::TalkError),
                Stop,
                Evicted,
            }
            let deadline = conn
                .session
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            let talk_sock = conn.talk.as_ref().and_then(|t| match &t.source {
                TalkSource::Udp(pair) => Some(pair.rtp.clone()),
                TalkSource::None | TalkSource::Interleaved(_) => None,
            });
            let ev = {
                let talk_rtp = async move {
                    let Some(sock) = talk_sock else {
                        return std::future::pending().await;
                    };
                    let mut b = vec![0u8; 2048];
                    let (n, from) = sock.recv_from(&mut b).await?;
                    b.truncate(n);
                    Ok((b, from))
                };
                let frames = async {
                    match conn.playout.as_mut().filter(|p| p.playing) {
                        Some(p) => p.viewer.frames.recv().await,
                        None => std::future::pending().await,
                    }
                };
                // The hub ends a talk on privacy, a failed call or shutdown: so does the session.
                let talk_closed = async {
                    match conn.talk.as_mut() {
                        Some(t) => t.talker.closed().await,
                        None => std::future::pending().await,
                    }
                };
                if let Some(d) = deadline
                    && armed != Some(d)
                {
                    session_timer.as_mut().reset(d);
                    armed = Some(d);
                }
                tokio::select! {
                    () = &mut stop => Ev::Stop,
                    () = &mut evicted => Ev::Evicted,
                    r = reader.read_buf(&mut buf) => Ev::Read(r),
                    f = frames => Ev::Frame(f),
                    () = &mut session_timer, if deadline.is_some() => {
                        armed = None;
                        Ev::Timeout
                    }
                    _ = tick.tick() => Ev::Tick,
                    r = talk_rtp => Ev::TalkRtp(r),
                    e = talk_closed => Ev::TalkClosed(e),
                }
            };
            match ev {
                Ev::Stop => return Ok("shutdown"),
                Ev::Evicted => return Ok("evicted"),
                Ev::Read(Err(source)) => return Err(ConnError::Io { peer, source }),
                Ev::Read(Ok(0)) => return Ok("client"),
                Ev::Read(Ok(_)) => {
                    if let Some(reason) = conn.on_bytes(&mut buf, permit).await? {
                        return Ok(reason.as_str());
                    }
                }
                Ev::Frame(None) => {
                    tracing::info!(%peer, "RTSP: the hub ended the stream; closing");
                    return Ok("stream_ended");
                }
                Ev::Frame(Some(frame)) => conn.send_queued(frame).await?,
                Ev::Timeout => conn.session.handle_timeout(Instant::now()),
                Ev::Tick => conn.on_tick().await?,
                Ev::TalkClosed(e) => {
                    tracing::info!(%peer, "RTSP backchannel: {e}; closing");
                    return Ok("stream_ended");
                }
                // ICMP errors and strangers' datagrams are not the session's business.
                Ev::TalkRtp(Err(_)) => {}
                Ev::TalkRtp(Ok((packet, from))) => {
                    if from.ip() == peer.ip()
                        && let Some(t) = conn.talk.as_mut()
                    {
                        t.on_rtp(peer, &packet)?;
                        conn.session.handle(Instant::now(), Input::KeepAlive);
                    }
                }
            }
        }
    }
    .await;
    let reason = result.unwrap_or_else(|e| {
        tracing::debug!("{e}");
        "client"
    });
    if let Some(id) = conn.session.session_id() {
        tracing::info!(%peer, session = %id, reason, "RTSP session ends (connection closed)");
    } else {
        tracing::debug!(%peer, reason, "RTSP connection closed");
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.writer.shutdown()).await;
    reason
}

impl Conn {
    /// Feeds every complete message in `buf`, one at a time with its actions carried out. A
    /// connection is busy (not evictable) from its request on while it holds a stream.
    async fn on_bytes(
        &mut self,
        buf: &mut BytesMut,
        permit: &Permit,
    ) -> Result<Option<CloseReason>, ConnError> {
        loop {
            let input = match parse_inbound(buf) {
                Ok(None) => return Ok(None),
                Ok(Some((inbound, used))) => {
                    buf.advance(used);
                    match inbound {
                        Inbound::Request(req) => {
                            tracing::debug!(peer = %self.peer, method = req.method.as_str(), uri = ?req.uri.as_ref().map(|u| u.as_str()), "RTSP request");
                            Input::Request(req)
                        }
                        // RTCP receiver reports and backchannel RTP count as keep-alive.
                        Inbound::Data { channel, payload } => {
                            if let Some(t) = self.talk.as_mut().filter(|t| t.is_channel(channel)) {
                                t.on_rtp(self.peer, &payload)?;
                            }
                            Input::KeepAlive
                        }
                        Inbound::Ignored => continue,
                    }
                }
                Err(e) => {
                    tracing::info!(peer = %self.peer, "RTSP: {e}; 400 and close");
                    let cseq = sniff_cseq(buf);
                    buf.clear();
                    Input::Malformed {
                        error: e.to_string(),
                        cseq,
                    }
                }
            };
            if matches!(input, Input::Request(_)) {
                permit.set_idle(false);
            }
            let (wrong, right) = self.session.credentials();
            self.session.handle(Instant::now(), input);
            let mut closed = self.run_actions().await?;
            if self.playout.is_none() {
                permit.set_idle(true);
            }
            let after = self.session.credentials();
            if after.1 > right {
                permit.auth_ok();
            }
            if after.0 > wrong && permit.auth_failed() {
                // This address is refused from now on; its other connections end by themselves.
                closed = closed.or(Some(CloseReason::AuthFailures));
            }
            if let Some(reason) = closed {
                return Ok(Some(reason));
            }
        }
    }

    /// Carries out what the session asked for; `Some` when it closed the connection.
    async fn run_actions(&mut self) -> Result<Option<CloseReason>, ConnError> {
        while let Some(action) = self.session.poll_action() {
            match action {
                Action::Respond { cseq, response } => {
                    if response.status == 401 {
                        self.shared
                            .admission
                            .stats()
                            .unauthorized
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::info!(peer = %self.peer, "RTSP: 401");
                    }
                    self.write(&response.to_bytes(cseq)).await?;
                    if !self.backlog.is_empty() {
                        let backlog = std::mem::take(&mut self.backlog);
                        self.send_frames(&backlog).await?;
                    }
                }
                Action::Join { panel } => {
                    let input = self.join(&panel).await;
                    self.session.handle(Instant::now(), input);
                }
                Action::Release => {
                    if self.playout.take().is_some() {
                        tracing::info!(peer = %self.peer, "RTSP viewer released");
                    }
                    self.pending_udp = None;
                    if self.talk.take().is_some() {
                        tracing::info!(peer = %self.peer, "RTSP backchannel: talk released");
                    }
                }
                Action::Talk { panel } => {
                    let input = self.talk(&panel).await;
                    self.session.handle(Instant::now(), input);
                }
                Action::BindUdp { kind } => {
                    let input = match udp::bind_pair(self.local_ip, &self.shared.settings.udp_ports)
                    {
                        Ok(pair) => {
                            let server = pair.ports;
                            self.pending_udp = Some(pair);
                            Input::UdpBound { server }
                        }
                        Err(e) => {
                            tracing::warn!(peer = %self.peer, ?kind, "RTSP SETUP: {e}");
                            Input::UdpFailed {
                                reason: e.to_string(),
                            }
                        }
                    };
                    self.session.handle(Instant::now(), input);
                }
                Action::AddTrack { kind, sink, rtp } => {
                    if kind == TrackKind::Backchannel {
                        self.add_talk_source(sink);
                        continue;
                    }
                    let sink = match sink {
                        TrackSink::Interleaved { rtp, rtcp } => Sink::Interleaved { rtp, rtcp },
                        TrackSink::Udp { client, .. } => match self.pending_udp.take() {
                            Some(pair) => Sink::Udp(UdpSink {
                                pair,
                                client_rtp: SocketAddr::new(self.peer.ip(), client.0),
                                client_rtcp: SocketAddr::new(self.peer.ip(), client.1),
                            }),
                            None => continue,
                        },
                    };
                    if let Some(p) = self.playout.as_mut() {
                        p.add_track(kind, sink, rtp);
                    }
                }
                Action::Play => {
                    let (infos, backlog) = match self.playout.as_mut() {
                        Some(p) => p.play(),
                        None => (Vec::new(), Vec::new()),
                    };
                    self.backlog = backlog;
                    self.session.handle(Instant::now(), Input::Playing(infos));
                }
                Action::Pause => {
                    if let Some(p) = self.playout.as_mut() {
                        p.pause();
                    }
                }
                Action::Close(reason) => {
                    tracing::info!(peer = %self.peer, reason = reason.as_str(), "RTSP connection closed by the server");
                    return Ok(Some(reason));
                }
            }
        }
        Ok(None)
    }

    /// Joins the panel's hub (this may start a call) and reports to the session.
    async fn join(&mut self, panel: &str) -> Input {
        let Some(hub) = self.shared.hubs.get(panel).cloned() else {
            return Input::JoinFailed {
                status: 404,
                reason: format!("no panel {panel:?}"),
            };
        };
        let started = Instant::now();
        let r = tokio::select! {
            r = hub.join(ViewerKind::Rtsp) => r,
            _ = self.shutdown.cancelled() => Err(HubError::Stopped { panel: panel.to_owned() }),
        };
        match r {
            Ok(viewer) => {
                tracing::debug!(peer = %self.peer, panel, ms = started.elapsed().as_millis() as u64, "RTSP viewer joined");
                let desc = description(&viewer.info);
                self.playout = Some(Playout::new(viewer, self.shared.settings.mtu));
                Input::Joined(desc)
            }
            Err(e) => {
                tracing::warn!(peer = %self.peer, "RTSP: {e}; 503");
                Input::JoinFailed {
                    status: 503,
                    reason: e.to_string(),
                }
            }
        }
    }

    /// Takes the panel's talk for a backchannel SETUP.
    async fn talk(&mut self, panel: &str) -> Input {
        let Some(hub) = self.shared.hubs.get(panel).cloned() else {
            return Input::TalkFailed {
                status: 404,
                reason: format!("no panel {panel:?}"),
            };
        };
        let (talk, input) = tokio::select! {
            r = talk::take(&hub, self.peer, self.shared.admission.stats()) => r,
            _ = self.shutdown.cancelled() => (None, Input::TalkFailed {
                status: 503,
                reason: "shutting down".to_owned(),
            }),
        };
        self.talk = talk;
        input
    }

    fn add_talk_source(&mut self, sink: TrackSink) {
        let Some(t) = self.talk.as_mut() else {
            return;
        };
        t.source = match sink {
            TrackSink::Interleaved { rtp, .. } => TalkSource::Interleaved(rtp),
            TrackSink::Udp { .. } => match self.pending_udp.take() {
                Some(pair) => TalkSource::Udp(pair),
                None => TalkSource::None,
            },
        };
    }

    /// Sender reports, and client RTCP over UDP as keep-alive.
    async fn on_tick(&mut self) -> Result<(), ConnError> {
        let Some(p) = self.playout.as_ref() else {
            return Ok(());
        };
        if let Some(seen) = p.last_rtcp()
            && self.rtcp_seen.is_none_or(|s| seen > s)
        {
            self.rtcp_seen = Some(seen);
            self.session.handle(Instant::now(), Input::KeepAlive);
        }
        if p.playing {
            let mut out = Outgoing::default();
            p.sender_reports(&mut out);
            self.flush(out).await?;
        }
        Ok(())
    }

    /// Sends `first` and what else is queued in one write: one wake-up and one syscall for the
    /// hub's burst (the audio it held back comes with the next picture).
    async fn send_queued(&mut self, first: Frame) -> Result<(), ConnError> {
        let mut batch = std::mem::take(&mut self.batch);
        batch.push(first);
        if let Some(p) = self.playout.as_mut() {
            while batch.len() < MAX_FRAMES_PER_WRITE {
                match p.viewer.frames.try_recv() {
                    Ok(f) => batch.push(f),
                    Err(_) => break,
                }
            }
        }
        let sent = self.send_frames(&batch).await;
        batch.clear();
        self.batch = batch;
        sent
    }

    async fn send_frames(&mut self, frames: &[Frame]) -> Result<(), ConnError> {
        let Some(p) = self.playout.as_mut() else {
            return Ok(());
        };
        let mut out = Outgoing::default();
        for f in frames {
            p.render(f, &mut out);
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
}
