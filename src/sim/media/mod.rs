//! The simulator's media for one call (view call, ring early media, answered ring): SRTP H.264 +
//! Speex to the bridge, SRTCP sender reports, the receive side (the bridge's RTP/RTCP: keep-alive,
//! PLI, per-call counters; `listen.rs` decodes and measures its audio). c300x-protocol.md §4–§5,
//! §7, §10: RTCP on RTP + 1, no mux, one SRTP context per direction per medium. Tasks: one receive
//! task, one sender task per medium, one encoder thread per medium (ffmpeg off the runtime).

mod audio;
mod font;
mod listen;
mod outgoing;
mod receive;
mod video;

pub use audio::SpeechEncoder;
pub use listen::{Hearing, VOICED_RMS};
pub use video::PatternEncoder;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::proto::srtp::{SdesKey, SrtpError, SrtpSession};
use crate::sim::stats::{CallMediaCounters, Faults, SimStats};

use outgoing::{RtpStream, StreamParams};

/// Attempts at finding a free even/odd port pair before giving up.
const PORT_PAIR_ATTEMPTS: usize = 64;

/// RTP ports the simulator announces in its answer; RTCP is RTP + 1 (no `a=rtcp`, no mux).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaPorts {
    pub audio: u16,
    pub video: u16,
}

/// UDP sockets bound before the 200 OK is sent, so the answer can carry their ports. Cloning
/// shares the sockets (a ring's early media and its answered call use the same ones).
#[derive(Clone)]
pub struct BoundMedia {
    pub ports: MediaPorts,
    sockets: MediaSockets,
}

/// The four sockets of one call.
#[derive(Clone)]
struct MediaSockets {
    audio_rtp: Arc<UdpSocket>,
    audio_rtcp: Arc<UdpSocket>,
    video_rtp: Arc<UdpSocket>,
    video_rtcp: Arc<UdpSocket>,
}

impl BoundMedia {
    /// Binds four UDP sockets on `ip`: audio RTP (even port), audio RTCP (+1), video RTP (even),
    /// video RTCP (+1). Ports are ephemeral, like the real unit's (e.g. 28836 and 5788).
    pub async fn bind(ip: IpAddr) -> std::io::Result<Self> {
        let (audio_rtp, audio_rtcp) = bind_pair(ip).await?;
        let (video_rtp, video_rtcp) = bind_pair(ip).await?;
        let ports = MediaPorts {
            audio: audio_rtp.local_addr()?.port(),
            video: video_rtp.local_addr()?.port(),
        };
        Ok(Self {
            ports,
            sockets: MediaSockets {
                audio_rtp: Arc::new(audio_rtp),
                audio_rtcp: Arc::new(audio_rtcp),
                video_rtp: Arc::new(video_rtp),
                video_rtcp: Arc::new(video_rtcp),
            },
        })
    }
}

/// An RTP socket on an even ephemeral port and its RTCP socket on the next (odd) port.
async fn bind_pair(ip: IpAddr) -> std::io::Result<(UdpSocket, UdpSocket)> {
    for _ in 0..PORT_PAIR_ATTEMPTS {
        let first = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        let port = first.local_addr()?.port();
        // Keep `first` bound while trying its partner, so no one else takes it meanwhile.
        let pair = if port % 2 == 0 {
            match port.checked_add(1) {
                Some(odd) => UdpSocket::bind(SocketAddr::new(ip, odd))
                    .await
                    .ok()
                    .map(|rtcp| (first, rtcp)),
                None => None,
            }
        } else {
            UdpSocket::bind(SocketAddr::new(ip, port - 1))
                .await
                .ok()
                .map(|rtp| (rtp, first))
        };
        if let Some(pair) = pair {
            return Ok(pair);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no free even/odd UDP port pair on {ip} after {PORT_PAIR_ATTEMPTS} attempts"),
    ))
}

/// What the offer/answer exchange decided, from the simulator's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPlan {
    /// The bridge's address from the offer's `c=` line.
    pub remote_ip: IpAddr,
    /// The bridge's audio/video RTP ports from the offer's `m=` lines (RTCP = port + 1).
    pub remote_audio_port: u16,
    pub remote_video_port: u16,
    /// Payload types mirrored from the offer.
    pub audio_pt: u8,
    pub video_pt: u8,
    /// The simulator's own keys (its answer): they protect simulator -> bridge RTP/RTCP.
    pub local_audio_key: SdesKey,
    pub local_video_key: SdesKey,
    /// The bridge's offered keys: they unprotect bridge -> simulator RTP/RTCP.
    pub remote_audio_key: SdesKey,
    pub remote_video_key: SdesKey,
    /// Hang up when nothing authentic arrives from the bridge on any media port for this long.
    pub no_rtp_timeout: Duration,
}

/// Why a media session ended on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEnd {
    /// Nothing arrived from the bridge for `no_rtp_timeout`: the SIP side sends BYE.
    NoRtpFromBridge,
}

/// Errors inside the media tasks; they are logged, never propagated as panics.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("SRTP context for {medium}: {source}")]
    Srtp {
        medium: &'static str,
        source: SrtpError,
    },
    #[error("ffmpeg has no {0} encoder")]
    NoEncoder(&'static str),
    #[error("ffmpeg has no {0} decoder")]
    NoDecoder(&'static str),
    #[error("ffmpeg {what}: {source}")]
    Ffmpeg {
        what: &'static str,
        source: ffmpeg_next::Error,
    },
}

impl MediaError {
    pub(crate) fn ffmpeg(what: &'static str) -> impl FnOnce(ffmpeg_next::Error) -> Self {
        move |source| Self::Ffmpeg { what, source }
    }
}

/// How a session behaves beyond the negotiated plan. `Default` is a view call: both media sent,
/// no label, the no-RTP hang-up armed.
#[derive(Debug, Clone)]
pub struct MediaOptions {
    /// Drawn into the test pattern (the panel's name), so each panel gives its own picture.
    pub label: Option<String>,
    /// Whether the unit sends audio / video (RFC 3264 §6.1: not to a stream the answer made
    /// `inactive` or `sendonly`).
    pub send_audio: bool,
    pub send_video: bool,
    /// Whether `no_rtp_timeout` ends the session. Off during early media: the bridge's 183 has
    /// audio `inactive` and need not send anything; the ring timeout governs instead.
    pub no_rtp_hangup: bool,
    /// Where the bridge's packets on this call are counted.
    pub counters: Option<Arc<CallMediaCounters>>,
}

impl Default for MediaOptions {
    fn default() -> Self {
        Self {
            label: None,
            send_audio: true,
            send_video: true,
            no_rtp_hangup: true,
            counters: None,
        }
    }
}

/// What can change while a session runs (early media becoming the answered call).
pub(crate) struct MediaControl {
    pub send_audio: Arc<AtomicBool>,
    pub send_video: Arc<AtomicBool>,
    pub no_rtp_hangup: watch::Sender<bool>,
}

/// A running media session; dropping it (or `stop`) ends all its tasks.
pub struct MediaSession {
    /// Cancels everything: receive task, senders, encoder threads.
    session: CancellationToken,
    control: MediaControl,
}

impl MediaSession {
    /// Starts sending and receiving, as for a view call. Must be called inside a tokio runtime
    /// (the sockets of `bound` already belong to one).
    pub fn start(
        bound: BoundMedia,
        plan: MediaPlan,
        stats: Arc<SimStats>,
        faults: Arc<Faults>,
    ) -> (Self, oneshot::Receiver<MediaEnd>) {
        Self::start_with(bound, plan, MediaOptions::default(), stats, faults)
    }

    /// [`MediaSession::start`] with the ring-specific options (label, directions, timer).
    pub fn start_with(
        bound: BoundMedia,
        plan: MediaPlan,
        options: MediaOptions,
        stats: Arc<SimStats>,
        faults: Arc<Faults>,
    ) -> (Self, oneshot::Receiver<MediaEnd>) {
        let (end_tx, end_rx) = oneshot::channel();
        let session = CancellationToken::new();
        // Senders stop on their own after a no-RTP timeout; the receive side runs until stop.
        let sending = session.child_token();
        let force_idr = Arc::new(AtomicBool::new(false));
        let (hangup_tx, hangup_rx) = watch::channel(options.no_rtp_hangup);
        let control = MediaControl {
            send_audio: Arc::new(AtomicBool::new(options.send_audio)),
            send_video: Arc::new(AtomicBool::new(options.send_video)),
            no_rtp_hangup: hangup_tx,
        };
        let s = bound.sockets;
        let senders = Senders {
            plan: &plan,
            stats: &stats,
            faults: &faults,
            cancel: &sending,
            force_idr: &force_idr,
            control: &control,
            label: options.label.clone(),
        };
        if let Err(e) = start_senders(&s, senders) {
            tracing::error!(error = %e, "simulator media: cannot start senders");
            sending.cancel();
        }
        let counters = options.counters.unwrap_or_default();
        match receive::Receiver::new(&s, &plan, stats, counters, force_idr) {
            Ok(rx) => {
                tokio::spawn(rx.run(
                    plan.no_rtp_timeout,
                    hangup_rx,
                    session.clone(),
                    sending,
                    end_tx,
                ));
            }
            Err(e) => tracing::error!(error = %e, "simulator media: cannot start receiver"),
        }
        (Self { session, control }, end_rx)
    }

    /// Changes what the unit sends (e.g. audio starts when a previewed ring is answered).
    pub fn set_sending(&self, audio: bool, video: bool) {
        self.control.send_audio.store(audio, Ordering::SeqCst);
        self.control.send_video.store(video, Ordering::SeqCst);
    }

    /// Arms (or disarms) the no-RTP hang-up; arming restarts its timer.
    pub fn set_no_rtp_hangup(&self, armed: bool) {
        self.control.no_rtp_hangup.send_replace(armed);
    }

    /// Ends the session: stops sending, closes the sockets.
    pub fn stop(self) {
        self.session.cancel();
    }
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        self.session.cancel();
    }
}

/// What the two senders share.
struct Senders<'a> {
    plan: &'a MediaPlan,
    stats: &'a Arc<SimStats>,
    faults: &'a Arc<Faults>,
    cancel: &'a CancellationToken,
    force_idr: &'a Arc<AtomicBool>,
    control: &'a MediaControl,
    label: Option<String>,
}

fn start_senders(s: &MediaSockets, p: Senders<'_>) -> Result<(), MediaError> {
    let Senders {
        plan,
        stats,
        faults,
        cancel: sending,
        force_idr,
        control,
        label,
    } = p;
    let audio = RtpStream::new(StreamParams {
        medium: "audio",
        rtp_socket: s.audio_rtp.clone(),
        rtcp_socket: s.audio_rtcp.clone(),
        remote: SocketAddr::new(plan.remote_ip, plan.remote_audio_port),
        payload_type: plan.audio_pt,
        clock_rate: audio::CLOCK_RATE,
        key: &plan.local_audio_key,
        faults: faults.clone(),
        enabled: control.send_audio.clone(),
    })?;
    let video = RtpStream::new(StreamParams {
        medium: "video",
        rtp_socket: s.video_rtp.clone(),
        rtcp_socket: s.video_rtcp.clone(),
        remote: SocketAddr::new(plan.remote_ip, plan.remote_video_port),
        payload_type: plan.video_pt,
        clock_rate: video::CLOCK_RATE,
        key: &plan.local_video_key,
        faults: faults.clone(),
        enabled: control.send_video.clone(),
    })?;
    let audio_frames = audio::spawn_encoder(sending.clone());
    tokio::spawn(audio::run_sender(audio, audio_frames, sending.clone()));
    let video_frames = video::spawn_encoder(force_idr.clone(), sending.clone(), label);
    tokio::spawn(video::run_sender(
        video,
        video_frames,
        stats.clone(),
        sending.clone(),
    ));
    Ok(())
}

/// A fresh SRTP context, with the medium named in the error.
fn srtp_session(medium: &'static str, key: &SdesKey) -> Result<SrtpSession, MediaError> {
    SrtpSession::new(key).map_err(|source| MediaError::Srtp { medium, source })
}
