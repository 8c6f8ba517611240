//! The ONVIF backchannel of one RTSP connection (issue 17): the panel's `Talker` the SETUP took,
//! and where the client's RTP arrives — an interleaved channel of the connection or the RTP port
//! of a UDP pair. Each packet's G.711 payload (PT 0 PCMU, PT 8 PCMA) goes to the talker, which
//! encodes it into the live call. `conn.rs` reads the sockets and hands packets here.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use super::udp::UdpPair;
use crate::media::hub::{StreamHub, TalkError, Talker};
use crate::proto::rtp::RtpPacket;
use crate::proto::rtsp::server::Input;
use crate::servers::limits::ConnStats;

/// Where the backchannel's RTP comes in.
#[derive(Debug)]
pub(super) enum TalkSource {
    /// Not set up yet (the talk is held from the SETUP's start).
    None,
    Interleaved(u8),
    Udp(UdpPair),
}

/// The talk one connection holds.
pub(super) struct TalkIn {
    pub talker: Talker,
    pub source: TalkSource,
    /// Packets that were not RTP or not G.711 (logged once).
    rejected: u64,
}

/// The backchannel's audio ended the talk: the hub closed it (privacy, failed call, shutdown).
#[derive(Debug, thiserror::Error)]
#[error("RTSP {peer}: talk ended: {source}")]
pub(super) struct TalkEnded {
    pub peer: SocketAddr,
    pub source: TalkError,
}

/// Takes `hub`'s talk for a backchannel SETUP: 453 when someone else talks, 503 when the call
/// cannot be had (as for a viewer's join).
pub(super) async fn take(
    hub: &StreamHub,
    peer: SocketAddr,
    stats: &ConnStats,
) -> (Option<TalkIn>, Input) {
    match hub.talk().await {
        Ok(talker) => {
            stats.talk_sessions.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%peer, panel = talker.panel(), "RTSP backchannel: talking");
            let t = TalkIn {
                talker,
                source: TalkSource::None,
                rejected: 0,
            };
            (Some(t), Input::Talking)
        }
        Err(e) => {
            let (status, counter) = if matches!(e, TalkError::Busy { .. }) {
                (453, &stats.talk_busy)
            } else {
                (503, &stats.talk_failed)
            };
            counter.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%peer, "RTSP backchannel refused: {e}; {status}");
            let failed = Input::TalkFailed {
                status,
                reason: e.to_string(),
            };
            (None, failed)
        }
    }
}

impl TalkIn {
    /// Whether interleaved data on `channel` is the backchannel's RTP.
    pub fn is_channel(&self, channel: u8) -> bool {
        matches!(self.source, TalkSource::Interleaved(c) if c == channel)
    }

    /// One RTP packet from the client; `Err` when the hub ended the talk.
    pub fn on_rtp(&mut self, peer: SocketAddr, packet: &[u8]) -> Result<(), TalkEnded> {
        let pushed = match RtpPacket::parse(packet) {
            Ok(p) => self.talker.push_rtp(p.header.payload_type, p.payload),
            Err(e) => {
                self.reject(peer, &e.to_string());
                return Ok(());
            }
        };
        match pushed {
            Ok(_) => Ok(()),
            Err(e @ (TalkError::PayloadType(_) | TalkError::Audio(_))) => {
                self.reject(peer, &e.to_string());
                Ok(())
            }
            Err(source) => Err(TalkEnded { peer, source }),
        }
    }

    fn reject(&mut self, peer: SocketAddr, why: &str) {
        if self.rejected == 0 {
            tracing::info!(%peer, "RTSP backchannel: packet ignored: {why}");
        }
        self.rejected += 1;
    }
}
