//! The simulator's media for one view call: SRTP H.264 + Speex to the bridge, SRTCP sender
//! reports, and the receive side that decrypts the bridge's RTP/RTCP (keep-alive, PLI).
//! Follows c300x-protocol.md §4–§5 and §10. (Interface fixed; implementation in progress.)

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::proto::srtp::SdesKey;
use crate::sim::stats::{Faults, SimStats};

/// RTP ports the simulator announces in its answer; RTCP is RTP + 1 (no `a=rtcp`, no mux).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaPorts {
    pub audio: u16,
    pub video: u16,
}

/// UDP sockets bound before the 200 OK is sent, so the answer can carry their ports.
pub struct BoundMedia {
    pub ports: MediaPorts,
}

impl BoundMedia {
    /// Binds four UDP sockets on `ip`: audio RTP (even port), audio RTCP (+1), video RTP (even),
    /// video RTCP (+1). Ports are ephemeral, like the real unit's (e.g. 28836 and 5788).
    pub async fn bind(_ip: IpAddr) -> std::io::Result<Self> {
        todo!()
    }
}

/// What the offer/answer exchange decided, from the simulator's point of view.
#[derive(Debug, Clone)]
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

/// A running media session; dropping it (or `stop`) ends all its tasks.
pub struct MediaSession {}

impl MediaSession {
    pub fn start(
        _bound: BoundMedia,
        _plan: MediaPlan,
        _stats: Arc<SimStats>,
        _faults: Arc<Faults>,
    ) -> (Self, oneshot::Receiver<MediaEnd>) {
        todo!()
    }

    /// Ends the session: stops sending, closes the sockets.
    pub fn stop(self) {}
}
