//! The simulator's receive side: every datagram on the four media ports is unprotected with the
//! bridge's key (its offer, or its answer to a ring: c300x-protocol.md §4.3), counted (globally
//! and per call), scanned for PLIs (RFC 4585 §6.3.1); audio goes to `listen.rs`. Owns the no-RTP
//! timer that ends the call (§5), when armed. STUN (RFC 7983 first byte 0..=3) is ignored, as
//! the unit's ICE-less stack would.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::listen::Loudspeaker;
use super::{MediaEnd, MediaError, MediaPlan, MediaSockets, srtp_session};
use crate::proto::rtp::rtcp::parse_compound;
use crate::proto::rtp::{RtcpPacket, RtpPacket};
use crate::proto::srtp::SrtpSession;
use crate::sim::stats::{CallMediaCounters, SimStats};

const MAX_DATAGRAM: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Medium {
    Audio,
    Video,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Port {
    Rtp,
    Rtcp,
}

pub(super) struct Receiver {
    audio_rtp: Arc<UdpSocket>,
    audio_rtcp: Arc<UdpSocket>,
    video_rtp: Arc<UdpSocket>,
    video_rtcp: Arc<UdpSocket>,
    audio_srtp: SrtpSession,
    video_srtp: SrtpSession,
    stats: Arc<SimStats>,
    counters: Arc<CallMediaCounters>,
    force_idr: Arc<AtomicBool>,
    /// Decodes the bridge's Speex (`None` if FFmpeg could not open it: logged once).
    speaker: Option<Loudspeaker>,
}

impl Receiver {
    pub fn new(
        s: &MediaSockets,
        plan: &MediaPlan,
        stats: Arc<SimStats>,
        counters: Arc<CallMediaCounters>,
        force_idr: Arc<AtomicBool>,
    ) -> Result<Self, MediaError> {
        Ok(Self {
            audio_rtp: s.audio_rtp.clone(),
            audio_rtcp: s.audio_rtcp.clone(),
            video_rtp: s.video_rtp.clone(),
            video_rtcp: s.video_rtcp.clone(),
            audio_srtp: srtp_session("audio (from bridge)", &plan.remote_audio_key)?,
            video_srtp: srtp_session("video (from bridge)", &plan.remote_video_key)?,
            stats,
            counters,
            force_idr,
            speaker: Loudspeaker::new()
                .inspect_err(|e| tracing::warn!(error = %e, "simulator: bridge audio not decoded"))
                .ok(),
        })
    }

    /// Receives until `session` is cancelled. While `armed`, `no_rtp_timeout` without an
    /// authentic packet reports [`MediaEnd::NoRtpFromBridge`] once and cancels `sending`.
    pub async fn run(
        mut self,
        no_rtp_timeout: Duration,
        mut armed: watch::Receiver<bool>,
        session: CancellationToken,
        sending: CancellationToken,
        end: oneshot::Sender<MediaEnd>,
    ) {
        let mut end = Some(end);
        let mut deadline = Instant::now() + no_rtp_timeout;
        let (mut b1, mut b2, mut b3, mut b4) = (
            [0u8; MAX_DATAGRAM],
            [0u8; MAX_DATAGRAM],
            [0u8; MAX_DATAGRAM],
            [0u8; MAX_DATAGRAM],
        );
        // Clone the socket handles so the loop can borrow `self` mutably for SRTP state.
        let (ar, ac, vr, vc) = (
            self.audio_rtp.clone(),
            self.audio_rtcp.clone(),
            self.video_rtp.clone(),
            self.video_rtcp.clone(),
        );
        let mut watching = true;
        loop {
            let hangup = *armed.borrow();
            let (medium, port, received) = tokio::select! {
                () = session.cancelled() => return,
                changed = armed.changed(), if watching => {
                    // Arming starts a fresh timer; a dropped control means "keep as is".
                    watching = changed.is_ok();
                    deadline = Instant::now() + no_rtp_timeout;
                    continue;
                }
                () = tokio::time::sleep_until(deadline), if end.is_some() && hangup => {
                    if let Some(tx) = end.take() {
                        tracing::info!(?no_rtp_timeout, "simulator: no RTP from the bridge, ending media");
                        sending.cancel();
                        let _ = tx.send(MediaEnd::NoRtpFromBridge);
                    }
                    continue;
                }
                r = ar.recv_from(&mut b1) => (Medium::Audio, Port::Rtp, r.map(|(n, _)| &b1[..n])),
                r = ac.recv_from(&mut b2) => (Medium::Audio, Port::Rtcp, r.map(|(n, _)| &b2[..n])),
                r = vr.recv_from(&mut b3) => (Medium::Video, Port::Rtp, r.map(|(n, _)| &b3[..n])),
                r = vc.recv_from(&mut b4) => (Medium::Video, Port::Rtcp, r.map(|(n, _)| &b4[..n])),
            };
            match received {
                Ok(datagram) => {
                    if self.handle(medium, port, datagram) {
                        deadline = Instant::now() + no_rtp_timeout;
                    }
                }
                // ICMP errors surface here on some systems; the socket stays usable.
                Err(e) => tracing::debug!(?medium, ?port, error = %e, "simulator: media recv"),
            }
        }
    }

    /// Handles one datagram; returns whether it was authentic.
    fn handle(&mut self, medium: Medium, port: Port, datagram: &[u8]) -> bool {
        let Some(&first) = datagram.first() else {
            return false;
        };
        if first < 4 {
            return false; // STUN
        }
        // RFC 5761 §4: RTCP packet types 192..=223 in the second byte; tolerate muxed RTCP.
        let is_rtcp =
            port == Port::Rtcp || datagram.get(1).is_some_and(|pt| (192..=223).contains(pt));
        let srtp = match medium {
            Medium::Audio => &mut self.audio_srtp,
            Medium::Video => &mut self.video_srtp,
        };
        if !is_rtcp {
            return match srtp.unprotect_rtp(datagram) {
                Ok(plain) => {
                    SimStats::bump(&self.stats.rtp_from_bridge);
                    self.count_rtp(medium, &plain);
                    true
                }
                Err(e) => {
                    SimStats::bump(&self.stats.srtp_auth_failures);
                    tracing::debug!(?medium, error = %e, "simulator: SRTP from bridge rejected");
                    false
                }
            };
        }
        let rtcp = match srtp.unprotect_rtcp(datagram) {
            Ok(rtcp) => rtcp,
            Err(e) => {
                SimStats::bump(&self.stats.srtp_auth_failures);
                tracing::debug!(?medium, error = %e, "simulator: SRTCP from bridge rejected");
                return false;
            }
        };
        SimStats::bump(&self.stats.rtcp_from_bridge);
        SimStats::bump(&self.counters.rtcp_packets);
        for packet in parse_compound(&rtcp) {
            match packet {
                Ok(RtcpPacket::Pli { .. }) => {
                    SimStats::bump(&self.stats.plis_received);
                    if medium == Medium::Video {
                        self.force_idr.store(true, Ordering::SeqCst);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(?medium, error = %e, "simulator: malformed RTCP from bridge");
                    break;
                }
            }
        }
        true
    }

    /// Per-call counts; audio bytes are the RTP payload (Speex frames), header and padding off.
    fn count_rtp(&mut self, medium: Medium, plain: &[u8]) {
        match medium {
            Medium::Audio => {
                SimStats::bump(&self.counters.audio_packets);
                let packet = RtpPacket::parse(plain).ok();
                let payload = packet.as_ref().map_or(&[][..], |p| p.payload);
                self.counters
                    .audio_bytes
                    .fetch_add(payload.len() as u64, Ordering::SeqCst);
                if let (Some(p), Ok(mut hearing)) = (&packet, self.counters.hearing.lock()) {
                    let h = p.header;
                    hearing.on_header(h.ssrc, h.sequence, h.timestamp, h.marker);
                    if let Some(speaker) = self.speaker.as_mut() {
                        speaker.hear(payload, &mut hearing);
                    }
                }
            }
            Medium::Video => SimStats::bump(&self.counters.video_packets),
        }
    }
}
