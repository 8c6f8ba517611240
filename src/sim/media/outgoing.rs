//! One outgoing RTP stream of the simulator (RFC 3550 §5.1, §6.4.1): sequence/timestamp/SSRC,
//! SRTP protection, the loss/reorder/stop faults, and its SRTCP Sender Reports to RTP port + 1.
//! Payload formats (H.264, Speex) are the callers' business.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use tokio::net::UdpSocket;

use super::{MediaError, srtp_session};
use crate::proto::rtp::{RtpHeader, rtcp};
use crate::proto::srtp::{SdesKey, SrtpSession};
use crate::sim::stats::Faults;

pub(super) struct StreamParams<'a> {
    pub medium: &'static str,
    pub rtp_socket: Arc<UdpSocket>,
    pub rtcp_socket: Arc<UdpSocket>,
    /// The bridge's RTP address; its RTCP is on port + 1.
    pub remote: SocketAddr,
    pub payload_type: u8,
    pub clock_rate: u32,
    pub key: &'a SdesKey,
    pub faults: Arc<Faults>,
    /// Cleared while the negotiated direction says the unit does not send on this stream.
    pub enabled: Arc<AtomicBool>,
}

pub(super) struct RtpStream {
    medium: &'static str,
    rtp_socket: Arc<UdpSocket>,
    rtcp_socket: Arc<UdpSocket>,
    rtp_dest: SocketAddr,
    rtcp_dest: SocketAddr,
    srtp: SrtpSession,
    faults: Arc<Faults>,
    enabled: Arc<AtomicBool>,
    payload_type: u8,
    ssrc: u32,
    sequence: u16,
    timestamp_base: u32,
    clock_rate: u32,
    started: Instant,
    packets_sent: u32,
    octets_sent: u32,
    /// A packet held back by the reorder fault, sent right after the next one.
    held: Option<Bytes>,
}

impl RtpStream {
    pub fn new(p: StreamParams<'_>) -> Result<Self, MediaError> {
        let rtcp_port = p.remote.port().wrapping_add(1);
        Ok(Self {
            medium: p.medium,
            srtp: srtp_session(p.medium, p.key)?,
            rtp_socket: p.rtp_socket,
            rtcp_socket: p.rtcp_socket,
            rtp_dest: p.remote,
            rtcp_dest: SocketAddr::new(p.remote.ip(), rtcp_port),
            faults: p.faults,
            enabled: p.enabled,
            payload_type: p.payload_type,
            // Random SSRC and initial sequence/timestamp (RFC 3550 §5.1), as the device does.
            ssrc: rand::random(),
            sequence: rand::random(),
            timestamp_base: rand::random(),
            clock_rate: p.clock_rate,
            started: Instant::now(),
            packets_sent: 0,
            octets_sent: 0,
            held: None,
        })
    }

    /// Sends one RTP packet whose timestamp is `ts_offset` clock ticks after the stream start.
    /// Returns whether the packet went through SRTP (false when media is stopped or on error).
    pub async fn send_rtp(&mut self, payload: &[u8], marker: bool, ts_offset: u32) -> bool {
        if self.faults.media_stopped() || !self.enabled.load(Ordering::Relaxed) {
            return false;
        }
        let header = RtpHeader {
            marker,
            payload_type: self.payload_type,
            sequence: self.sequence,
            timestamp: self.timestamp_base.wrapping_add(ts_offset),
            ssrc: self.ssrc,
        };
        self.sequence = self.sequence.wrapping_add(1);
        // Protect in sequence order; the faults then act on the wire, like a lossy network.
        let protected = match self.srtp.protect_rtp(&header.to_packet(payload)) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(medium = self.medium, error = %e, "simulator: SRTP protect failed");
                return false;
            }
        };
        self.packets_sent = self.packets_sent.wrapping_add(1);
        self.octets_sent = self.octets_sent.wrapping_add(payload.len() as u32);
        if percent_hit(self.faults.loss_percent()) {
            return true;
        }
        if let Some(held) = self.held.take() {
            send(&self.rtp_socket, self.rtp_dest, self.medium, &protected).await;
            send(&self.rtp_socket, self.rtp_dest, self.medium, &held).await;
        } else if percent_hit(self.faults.reorder_percent()) {
            self.held = Some(protected);
        } else {
            send(&self.rtp_socket, self.rtp_dest, self.medium, &protected).await;
        }
        true
    }

    /// Sends an SRTCP Sender Report for the current instant.
    pub async fn send_sender_report(&mut self) {
        if self.faults.media_stopped() || !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        let ticks = self.started.elapsed().as_secs_f64() * f64::from(self.clock_rate);
        // RTP timestamps wrap modulo 2^32 (RFC 3550 §5.1).
        let rtp_now = self.timestamp_base.wrapping_add(ticks as u64 as u32);
        let sr = rtcp::sender_report(
            self.ssrc,
            rtcp::ntp_timestamp(SystemTime::now()),
            rtp_now,
            self.packets_sent,
            self.octets_sent,
            &[],
        );
        match self.srtp.protect_rtcp(&sr) {
            Ok(p) => {
                if let Err(e) = self.rtcp_socket.send_to(&p, self.rtcp_dest).await {
                    tracing::debug!(medium = self.medium, dest = %self.rtcp_dest, error = %e, "simulator: RTCP send failed");
                }
            }
            Err(e) => {
                tracing::warn!(medium = self.medium, error = %e, "simulator: SRTCP protect failed")
            }
        }
    }
}

// A free function: borrowing all of `self` across `.await` would need `RtpStream: Sync`,
// which the SRTP context is not.
async fn send(socket: &UdpSocket, dest: SocketAddr, medium: &'static str, packet: &[u8]) {
    if let Err(e) = socket.send_to(packet, dest).await {
        tracing::debug!(medium, %dest, error = %e, "simulator: RTP send failed");
    }
}

/// True with probability `percent`/100.
fn percent_hit(percent: u16) -> bool {
    percent > 0 && rand::random_range(0..100u16) < percent
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    async fn stream(faults: Arc<Faults>, key: &SdesKey) -> (RtpStream, UdpSocket) {
        let sink = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
        let own = Arc::new(UdpSocket::bind((LOCALHOST, 0)).await.expect("bind"));
        let s = RtpStream::new(StreamParams {
            medium: "test",
            rtp_socket: own.clone(),
            rtcp_socket: own,
            remote: sink.local_addr().expect("addr"),
            payload_type: 96,
            clock_rate: 90_000,
            key,
            faults,
            enabled: Arc::new(AtomicBool::new(true)),
        })
        .expect("stream");
        (s, sink)
    }

    async fn sequence_numbers(sink: &UdpSocket, key: &SdesKey, n: usize) -> Vec<u16> {
        let mut rx = SrtpSession::new(key).expect("ctx");
        let mut buf = [0u8; 2048];
        let mut out = Vec::new();
        for _ in 0..n {
            let (len, _) = sink.recv_from(&mut buf).await.expect("recv");
            let plain = rx.unprotect_rtp(&buf[..len]).expect("authentic");
            out.push(u16::from_be_bytes([plain[2], plain[3]]));
        }
        out
    }

    #[tokio::test]
    async fn reorder_fault_swaps_neighbours() {
        let faults = Arc::new(Faults::default());
        faults.reorder_percent.store(100, Ordering::Relaxed);
        let key = SdesKey::random();
        let (mut s, sink) = stream(faults, &key).await;
        for i in 0..4u32 {
            assert!(s.send_rtp(&[1, 2, 3], false, i * 3000).await);
        }
        let seqs = sequence_numbers(&sink, &key, 4).await;
        let base = s.sequence.wrapping_sub(4);
        let rel: Vec<u16> = seqs.iter().map(|q| q.wrapping_sub(base)).collect();
        assert_eq!(rel, [1, 0, 3, 2]);
    }

    #[tokio::test]
    async fn media_stopped_sends_nothing_and_keeps_sequence() {
        let faults = Arc::new(Faults::default());
        let key = SdesKey::random();
        let (mut s, sink) = stream(faults.clone(), &key).await;
        faults.media_stopped.store(true, Ordering::Relaxed);
        assert!(!s.send_rtp(&[1], true, 0).await);
        s.send_sender_report().await;
        faults.media_stopped.store(false, Ordering::Relaxed);
        assert!(s.send_rtp(&[2], true, 0).await);
        let seqs = sequence_numbers(&sink, &key, 1).await;
        assert_eq!(seqs[0], s.sequence.wrapping_sub(1));
        assert_eq!((s.packets_sent, s.octets_sent), (1, 1));
    }
}
