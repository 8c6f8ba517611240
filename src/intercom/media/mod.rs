//! The bridge's media side of one call with the C300X: port pairs, SRTP receive (key from the
//! intercom's answer) with reordering, and what we send (silence or talk, RR, PLI; key we
//! offered) — c300x-protocol.md §4.2–§5, §9, §10. One task per socket pair; depacketizing and
//! Speex encoding are not here (talk frames arrive encoded through a `TalkSink`).

mod pacing;
mod ports;
mod reception;
mod stream;
mod talk;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::proto::srtp::{SdesKey, SrtpError, SrtpSession};

pub use ports::{CallSockets, PortLease, PortPair, PortPool};
pub use talk::{MAX_QUEUED, QueueCounts, TalkFrame, TalkSendError, TalkSink, TalkStats};

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error(
        "no free RTP/RTCP port pair on {ip} in rtp_port_min..=rtp_port_max ({min}..={max}): \
         {in_use} pairs used by calls, {busy_elsewhere} held by other programs; \
         widen rtp_port_min/rtp_port_max (a call needs 4 ports)"
    )]
    PortsExhausted {
        ip: IpAddr,
        min: u16,
        max: u16,
        in_use: usize,
        busy_elsewhere: usize,
    },
    #[error("binding UDP {addr} for RTP/RTCP: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("UDP port {port}: {source}")]
    Socket { port: u16, source: std::io::Error },
    #[error("SRTP context for {medium} {direction} (peer {peer}): {source}")]
    Srtp {
        medium: MediaKind,
        direction: &'static str,
        peer: SocketAddr,
        source: SrtpError,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
}

impl std::fmt::Display for MediaKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Audio => "audio",
            Self::Video => "video",
        })
    }
}

/// One decrypted RTP packet from the intercom, in sequence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPacket {
    pub kind: MediaKind,
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub ssrc: u32,
    pub payload_type: u8,
    /// The RTP payload (padding removed); for video an RFC 6184 payload.
    pub payload: Bytes,
    /// When the datagram arrived (before reordering). Gaps show as jumps in `seq`.
    pub arrival: SystemTime,
}

/// What the SIP layer learnt from the offer/answer, in the form the media side needs.
#[derive(Debug, Clone)]
pub struct RemoteEndpoint {
    pub ip: IpAddr,
    pub audio_rtp: u16,
    pub audio_rtcp: u16,
    pub video_rtp: u16,
    pub video_rtcp: u16,
    /// Payload types from the answer (they mirror the offer: 110/96 or 98/98 seen).
    pub audio_pt: u8,
    pub video_pt: u8,
    /// The intercom's answer keys: they unprotect what the intercom sends.
    pub audio_rx_key: SdesKey,
    pub video_rx_key: SdesKey,
    /// Our offered keys: they protect what we send (silence, RR, PLI).
    pub audio_tx_key: SdesKey,
    pub video_tx_key: SdesKey,
}

/// Counters of one medium.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamStats {
    /// Authentic RTP packets received (before reordering) and their payload bytes.
    pub packets: u64,
    pub bytes: u64,
    pub rtcp_packets: u64,
    /// Datagrams that failed SRTP/SRTCP authentication (wrong key, garbage, replay).
    pub srtp_failures: u64,
    /// Authentic but unparsable RTP/RTCP.
    pub malformed: u64,
    /// Sequence numbers the reorder buffer gave up on.
    pub lost: u64,
    /// Duplicate or too-late packets dropped by the reorder buffer.
    pub dropped_late: u64,
    /// Packets dropped because the `out` queue was full or closed.
    pub queue_drops: u64,
    /// Packets handed to `out`.
    pub forwarded: u64,
    /// SRTP packets (silence) and SRTCP reports we sent.
    pub rtp_sent: u64,
    pub rtcp_sent: u64,
}

/// A snapshot of one call's media counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MediaStats {
    pub audio: StreamStats,
    pub video: StreamStats,
    pub plis_sent: u64,
    /// Keyframe starts (IDR or SPS) seen in the video.
    pub keyframes_seen: u64,
    /// Last authentic RTP packet from the intercom.
    pub last_packet_at: Option<Instant>,
    /// The intercom's video SSRC, learnt from its first video packet.
    pub video_ssrc: Option<u32>,
    /// What talkers sent into this call, and how long their frames took.
    pub talk: TalkStats,
}

impl MediaStats {
    pub fn srtp_failures(&self) -> u64 {
        self.audio.srtp_failures + self.video.srtp_failures
    }
    pub fn lost(&self) -> u64 {
        self.audio.lost + self.video.lost
    }
    pub fn queue_drops(&self) -> u64 {
        self.audio.queue_drops + self.video.queue_drops
    }
}

#[derive(Debug, Default)]
pub(crate) struct StreamCounters {
    packets: AtomicU64,
    bytes: AtomicU64,
    rtcp_packets: AtomicU64,
    srtp_failures: AtomicU64,
    malformed: AtomicU64,
    lost: AtomicU64,
    dropped_late: AtomicU64,
    queue_drops: AtomicU64,
    forwarded: AtomicU64,
    rtp_sent: AtomicU64,
    rtcp_sent: AtomicU64,
}

impl StreamCounters {
    fn snapshot(&self) -> StreamStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StreamStats {
            packets: g(&self.packets),
            bytes: g(&self.bytes),
            rtcp_packets: g(&self.rtcp_packets),
            srtp_failures: g(&self.srtp_failures),
            malformed: g(&self.malformed),
            lost: g(&self.lost),
            dropped_late: g(&self.dropped_late),
            queue_drops: g(&self.queue_drops),
            forwarded: g(&self.forwarded),
            rtp_sent: g(&self.rtp_sent),
            rtcp_sent: g(&self.rtcp_sent),
        }
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// State shared between the two media tasks and the `CallMedia` handle.
#[derive(Debug)]
pub(crate) struct Shared {
    epoch: Instant,
    audio: StreamCounters,
    video: StreamCounters,
    plis_sent: AtomicU64,
    keyframes_seen: AtomicU64,
    /// Microseconds since `epoch` + 1 of the last authentic RTP packet; 0 = none yet.
    last_packet: AtomicU64,
    /// `1 << 32 | ssrc` once known; 0 = unknown.
    video_ssrc: AtomicU64,
    /// No audio RTP from us (a ring's silent preview: our 183 said `a=inactive`); RTCP goes on.
    audio_muted: AtomicBool,
    /// The audio task's talk queue counters and delays (updated only while someone talks).
    talk: Mutex<(QueueCounts, talk::DelayHistogram)>,
}

impl Shared {
    fn counters(&self, kind: MediaKind) -> &StreamCounters {
        match kind {
            MediaKind::Audio => &self.audio,
            MediaKind::Video => &self.video,
        }
    }

    fn touch(&self, now: Instant) {
        let micros = now.saturating_duration_since(self.epoch).as_micros();
        let v = u64::try_from(micros).unwrap_or(u64::MAX - 1) + 1;
        self.last_packet.fetch_max(v, Ordering::Relaxed);
    }

    fn set_video_ssrc(&self, ssrc: u32) {
        self.video_ssrc
            .store((1 << 32) | u64::from(ssrc), Ordering::Relaxed);
    }

    fn set_talk_counts(&self, counts: QueueCounts) {
        if let Ok(mut t) = self.talk.lock() {
            t.0 = counts;
        }
    }

    fn talk_counts(&self) -> QueueCounts {
        self.talk.lock().map(|t| t.0).unwrap_or_default()
    }

    fn record_talk_delay(&self, delay: Duration) {
        if let Ok(mut t) = self.talk.lock() {
            t.1.record(delay);
        }
    }

    fn snapshot(&self) -> MediaStats {
        let last = self.last_packet.load(Ordering::Relaxed);
        let ssrc = self.video_ssrc.load(Ordering::Relaxed);
        let talk = self
            .talk
            .lock()
            .map(|t| TalkStats::new(t.0, &t.1))
            .unwrap_or_default();
        MediaStats {
            audio: self.audio.snapshot(),
            video: self.video.snapshot(),
            plis_sent: self.plis_sent.load(Ordering::Relaxed),
            keyframes_seen: self.keyframes_seen.load(Ordering::Relaxed),
            last_packet_at: (last != 0)
                .then(|| self.epoch + std::time::Duration::from_micros(last - 1)),
            video_ssrc: (ssrc != 0).then_some(ssrc as u32),
            talk,
        }
    }
}

/// The running media of one call. Dropping it (or [`CallMedia::stop`]) ends both tasks; their
/// sockets close and the ports return to the pool.
#[derive(Debug)]
pub struct CallMedia {
    cancel: CancellationToken,
    shared: Arc<Shared>,
    keyframe: Arc<Notify>,
    tasks: Vec<JoinHandle<()>>,
    audio_port: u16,
    video_port: u16,
    talk: TalkSink,
}

impl CallMedia {
    /// Starts the audio and video tasks (inside a tokio runtime). Received packets go to `out`
    /// with `try_send`: a full queue drops (counted), never blocks a socket task.
    pub fn start(
        sockets: CallSockets,
        remote: RemoteEndpoint,
        out: mpsc::Sender<MediaPacket>,
    ) -> Result<Self, MediaError> {
        Self::start_with(sockets, remote, out, true)
    }

    /// [`Self::start`], with our audio RTP off when `send_audio` is false (a silent preview);
    /// [`Self::set_audio_sending`] turns it on once the call is answered.
    pub fn start_with(
        sockets: CallSockets,
        remote: RemoteEndpoint,
        out: mpsc::Sender<MediaPacket>,
        send_audio: bool,
    ) -> Result<Self, MediaError> {
        let CallSockets { audio, video, .. } = sockets;
        let (audio_port, video_port) = (audio.port(), video.port());
        let (talk, talk_rx) = TalkSink::channel(talk::TALK_CHANNEL);
        let ctx = |medium, direction, port, key: &SdesKey| {
            SrtpSession::new(key).map_err(|source| MediaError::Srtp {
                medium,
                direction,
                peer: SocketAddr::new(remote.ip, port),
                source,
            })
        };
        let audio_params = stream::Params {
            kind: MediaKind::Audio,
            pair: audio,
            rtp_dest: SocketAddr::new(remote.ip, remote.audio_rtp),
            rtcp_dest: SocketAddr::new(remote.ip, remote.audio_rtcp),
            payload_type: remote.audio_pt,
            rx: ctx(
                MediaKind::Audio,
                "rx",
                remote.audio_rtp,
                &remote.audio_rx_key,
            )?,
            tx: ctx(
                MediaKind::Audio,
                "tx",
                remote.audio_rtp,
                &remote.audio_tx_key,
            )?,
            talk: Some(talk_rx),
        };
        let video_params = stream::Params {
            kind: MediaKind::Video,
            pair: video,
            rtp_dest: SocketAddr::new(remote.ip, remote.video_rtp),
            rtcp_dest: SocketAddr::new(remote.ip, remote.video_rtcp),
            payload_type: remote.video_pt,
            rx: ctx(
                MediaKind::Video,
                "rx",
                remote.video_rtp,
                &remote.video_rx_key,
            )?,
            tx: ctx(
                MediaKind::Video,
                "tx",
                remote.video_rtp,
                &remote.video_tx_key,
            )?,
            talk: None,
        };
        let cancel = CancellationToken::new();
        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            audio: StreamCounters::default(),
            video: StreamCounters::default(),
            plis_sent: AtomicU64::new(0),
            keyframes_seen: AtomicU64::new(0),
            last_packet: AtomicU64::new(0),
            video_ssrc: AtomicU64::new(0),
            audio_muted: AtomicBool::new(!send_audio),
            talk: Mutex::default(),
        });
        let keyframe = Arc::new(Notify::new());
        let tasks = [audio_params, video_params]
            .into_iter()
            .map(|p| {
                let task =
                    stream::StreamTask::new(p, shared.clone(), out.clone(), keyframe.clone());
                tokio::spawn(task.run(cancel.clone()))
            })
            .collect();
        tracing::debug!(audio_port, video_port, peer = %remote.ip, "call media started");
        Ok(Self {
            cancel,
            shared,
            keyframe,
            tasks,
            audio_port,
            video_port,
            talk,
        })
    }

    /// Where talk frames for this call go (encoded 20 ms Speex NB; see `media::talk`). Frames
    /// replace the silence keep-alive while they come; the silence resumes when they stop.
    pub fn talk_sink(&self) -> TalkSink {
        self.talk.clone()
    }

    /// Sends a PLI now and repeats it every 500 ms until a keyframe arrives (§5).
    pub fn request_keyframe(&self) {
        self.keyframe.notify_one();
    }

    pub fn stats(&self) -> MediaStats {
        self.shared.snapshot()
    }

    /// Starts (or stops) our audio RTP: silence now, talkback later.
    pub fn set_audio_sending(&self, on: bool) {
        self.shared.audio_muted.store(!on, Ordering::Relaxed);
    }

    pub fn audio_port(&self) -> u16 {
        self.audio_port
    }

    pub fn video_port(&self) -> u16 {
        self.video_port
    }

    /// Ends both tasks; the ports are free a moment later (see [`Self::shutdown`] to wait).
    pub fn stop(self) {
        self.cancel.cancel();
    }

    /// Ends both tasks and waits until their sockets are closed and the ports are back.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        for task in std::mem::take(&mut self.tasks) {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "call media task ended abnormally");
            }
        }
    }
}

impl Drop for CallMedia {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
