//! The task that owns one medium's RTP + RTCP sockets: unprotects what the intercom sends,
//! reorders it and forwards it; sends our keep-alive (silence every 20 ms for audio, replaced by
//! talk frames while someone talks: `talk.rs`), an RR every 1 s, and for video PLIs until a
//! keyframe arrives (c300x-protocol.md §4.3, §5, §9; RFC 4585 §6.3.1).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::pacing::{
    FirstPicture, MAX_DRAIN, POLL_INTERVAL, SILENCE_INTERVAL, redrain_at, ticks_due,
};
use super::ports::PortPair;
use super::reception::Reception;
use super::talk::{self, TalkFrame, TalkQueue, Tick};
use super::{MediaKind, MediaPacket, Shared, StreamCounters, add};
use crate::proto::h264;
use crate::proto::rtp::reorder::{Pushed, ReorderBuffer};
use crate::proto::rtp::rtcp::{self, RtcpPacket};
use crate::proto::rtp::{RtpHeader, RtpPacket};
use crate::proto::srtp::SrtpSession;

const MAX_DATAGRAM: usize = 2048;
/// A Speex NB frame in sub-mode 0 ("silence", 5 bits 0) padded with zero bits: the 1-byte
/// payload memphi2/ha-bticino-c300x sends and the unit accepts (§5).
const SPEEX_SILENCE: [u8; 1] = [0x00];
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
const PLI_REPEAT: Duration = Duration::from_millis(500);
/// How long a new call's video may take to bring its first keyframe before we ask for one. The
/// unit (and the simulator) start a call with an IDR; a PLI sent at once on top of it restarted
/// the encoder: two IDRs back to back, the second one late, in most calls.
const FIRST_KEYFRAME_GRACE: Duration = Duration::from_millis(400);
const AUDIO_CLOCK: u32 = 8_000;
const VIDEO_CLOCK: u32 = 90_000;
/// The Speex timestamp step of one 20 ms frame at 8 kHz (§10).
const SILENCE_TS_STEP: u32 = 160;
/// SDES CNAME in our compound RTCP (RFC 3550 §6.1 wants one in every compound packet).
const CNAME: &[u8] = b"c300x-bridge";
const PT_SDES: u8 = 202;

pub(super) struct Params {
    pub kind: MediaKind,
    pub pair: PortPair,
    pub rtp_dest: SocketAddr,
    pub rtcp_dest: SocketAddr,
    pub payload_type: u8,
    /// Unprotects the intercom's packets (its answer key).
    pub rx: SrtpSession,
    /// Protects ours (our offered key).
    pub tx: SrtpSession,
    /// Audio: the talk frames that replace the silence (`None` for video).
    pub talk: Option<mpsc::Receiver<TalkFrame>>,
}

pub(super) struct StreamTask {
    p: Params,
    shared: Arc<Shared>,
    out: mpsc::Sender<MediaPacket>,
    keyframe_request: Arc<Notify>,
    reorder: ReorderBuffer<MediaPacket>,
    reception: Reception,
    /// The intercom's SSRC on this medium, from its first authentic packet.
    remote_ssrc: Option<u32>,
    /// Our SSRC, sequence and timestamp for silence and reports (RFC 3550 §5.1: random).
    ssrc: u32,
    seq: u16,
    ts: u32,
    /// Video: when the next PLI is due while no keyframe has arrived since the last request.
    next_pli: Option<Instant>,
    /// Video: how far the call's first picture has come (drained fast until it is complete).
    first_picture: FirstPicture,
    /// The task's start: the fast drain for the first picture ends `FIRST_PICTURE_FAST` after.
    started: Instant,
    warned_auth: bool,
    /// Audio: talk frames waiting for their 20 ms tick.
    talk: TalkQueue,
    /// Audio: the 20 ms clock's last tick, as made up (see `MAX_CATCH_UP`).
    audio_clock: Option<Instant>,
}

/// The two sockets of a medium.
#[derive(Clone, Copy)]
enum Port {
    Rtp,
    Rtcp,
}

/// What woke the task.
enum Wake {
    Cancelled,
    Poll,
    Silence,
    Talk(Option<TalkFrame>),
    Report,
    Pli,
    KeyframeRequest,
    Reorder,
}

impl StreamTask {
    pub(super) fn new(
        p: Params,
        shared: Arc<Shared>,
        out: mpsc::Sender<MediaPacket>,
        keyframe_request: Arc<Notify>,
    ) -> Self {
        let clock = match p.kind {
            MediaKind::Audio => AUDIO_CLOCK,
            MediaKind::Video => VIDEO_CLOCK,
        };
        let next_pli = (p.kind == MediaKind::Video).then(|| Instant::now() + FIRST_KEYFRAME_GRACE);
        let first_picture = match p.kind {
            MediaKind::Video => FirstPicture::Waiting,
            MediaKind::Audio => FirstPicture::Complete,
        };
        Self {
            p,
            shared,
            out,
            keyframe_request,
            reorder: ReorderBuffer::default(),
            reception: Reception::new(clock),
            remote_ssrc: None,
            ssrc: rand::random(),
            seq: rand::random(),
            ts: rand::random(),
            next_pli,
            first_picture,
            started: Instant::now(),
            warned_auth: false,
            talk: TalkQueue::default(),
            audio_clock: None,
        }
    }

    fn counters(&self) -> &StreamCounters {
        self.shared.counters(self.p.kind)
    }

    pub(super) async fn run(mut self, cancel: CancellationToken) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut silence = tokio::time::interval(SILENCE_INTERVAL);
        silence.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut report = tokio::time::interval(REPORT_INTERVAL);
        report.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let is_audio = self.p.kind == MediaKind::Audio;
        let is_video = !is_audio;
        let mut talk_rx = self.p.talk.take();
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut busy_at: Option<Instant> = None;
        loop {
            let reorder_at = self.reorder.poll_timeout().map(Instant::from_std);
            let pli_at = self.next_pli;
            let wake = tokio::select! {
                () = cancel.cancelled() => Wake::Cancelled,
                _ = poll.tick(), if is_video => Wake::Poll,
                () = sleep_until(busy_at), if busy_at.is_some() => Wake::Poll,
                _ = silence.tick(), if is_audio => Wake::Silence,
                f = recv_talk(&mut talk_rx), if talk_rx.is_some() => Wake::Talk(f),
                _ = report.tick() => Wake::Report,
                () = sleep_until(pli_at), if is_video && pli_at.is_some() => Wake::Pli,
                () = self.keyframe_request.notified(), if is_video => Wake::KeyframeRequest,
                () = sleep_until(reorder_at), if reorder_at.is_some() => Wake::Reorder,
            };
            match wake {
                Wake::Cancelled => break,
                Wake::Poll => busy_at = self.drain(&mut buf),
                Wake::Silence => {
                    busy_at = self.drain(&mut buf);
                    for _ in 0..ticks_due(&mut self.audio_clock, Instant::now()) {
                        self.send_audio_tick();
                    }
                }
                Wake::Talk(Some(frame)) => {
                    self.talk.push(Instant::now().into_std(), frame);
                    self.shared.set_talk_counts(self.talk.counts());
                }
                // Every sink is gone (the call's media handle was dropped).
                Wake::Talk(None) => talk_rx = None,
                Wake::Report => self.send_report(false),
                Wake::Pli => self.send_report(true),
                Wake::KeyframeRequest => {
                    self.next_pli = Some(Instant::now());
                }
                Wake::Reorder => {
                    self.reorder.handle_timeout(Instant::now().into_std());
                    self.forward_released();
                }
            }
        }
        self.reorder.flush();
        self.forward_released();
        tracing::debug!(medium = %self.p.kind, port = self.p.pair.port(), "call media task ended");
    }

    /// Takes every datagram waiting on the RTP and the RTCP port (at most `MAX_DRAIN` from
    /// each); after a busy drain, when to drain again before the next tick.
    fn drain(&mut self, buf: &mut [u8]) -> Option<Instant> {
        let rtp = self.drain_socket(Port::Rtp, buf);
        let rtcp = self.drain_socket(Port::Rtcp, buf);
        redrain_at(
            Instant::now(),
            rtp.max(rtcp),
            self.first_picture,
            self.started,
        )
    }

    fn drain_socket(&mut self, port: Port, buf: &mut [u8]) -> usize {
        let mut taken = 0;
        while taken < MAX_DRAIN {
            let socket = match port {
                Port::Rtp => &self.p.pair.rtp,
                Port::Rtcp => &self.p.pair.rtcp,
            };
            match socket.recv_from(buf) {
                Ok((n, _)) => {
                    taken += 1;
                    let datagram = buf.get(..n).unwrap_or_default();
                    match port {
                        Port::Rtp => self.on_rtp_port(datagram),
                        Port::Rtcp => self.on_rtcp(datagram),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // ICMP errors can surface on recv; the socket stays usable: next tick.
                Err(e) => {
                    tracing::debug!(medium = %self.p.kind, error = %e, "media recv");
                    break;
                }
            }
        }
        taken
    }

    fn on_rtp_port(&mut self, datagram: &[u8]) {
        match datagram {
            // STUN (RFC 7983: first byte 0..=3) from a hole-punching peer: not media.
            [first, ..] if *first < 4 => {}
            // RTCP on the RTP port (RFC 5761 §4: PT 192..=223) is tolerated.
            [_, pt, ..] if (192..=223).contains(pt) => self.on_rtcp(datagram),
            _ => self.on_rtp(datagram),
        }
    }

    fn on_rtp(&mut self, datagram: &[u8]) {
        let arrival = SystemTime::now();
        let now = Instant::now().into_std();
        let plain = match self.p.rx.unprotect_rtp(datagram) {
            Ok(p) => p,
            Err(e) => return self.auth_failed("SRTP", &e),
        };
        let Ok(packet) = RtpPacket::parse(&plain) else {
            add(&self.counters().malformed, 1);
            return;
        };
        let h = packet.header;
        let payload = plain.slice_ref(packet.payload);
        let c = self.counters();
        add(&c.packets, 1);
        add(&c.bytes, payload.len() as u64);
        self.shared.touch(now);
        if self.remote_ssrc != Some(h.ssrc) {
            if let Some(old) = self.remote_ssrc {
                tracing::info!(medium = %self.p.kind, old, new = h.ssrc, "intercom changed SSRC");
                self.reorder.reset();
                self.forward_released();
            }
            self.remote_ssrc = Some(h.ssrc);
            if self.p.kind == MediaKind::Video {
                self.shared.set_video_ssrc(h.ssrc);
            }
        }
        self.reception.on_rtp(now, h.ssrc, h.sequence, h.timestamp);
        let item = MediaPacket {
            kind: self.p.kind,
            seq: h.sequence,
            timestamp: h.timestamp,
            marker: h.marker,
            ssrc: h.ssrc,
            payload_type: h.payload_type,
            payload,
            arrival,
        };
        match self.reorder.push(now, h.sequence, item) {
            Pushed::Duplicate | Pushed::Late => add(&self.counters().dropped_late, 1),
            Pushed::Accepted | Pushed::Probation | Pushed::Reset => {}
        }
        self.forward_released();
    }

    fn forward_released(&mut self) {
        let lost_total = self.reorder.stats().lost;
        let c = self.shared.counters(self.p.kind);
        let already = c.lost.load(Ordering::Relaxed);
        if lost_total > already {
            add(&c.lost, lost_total - already);
        }
        while let Some(released) = self.reorder.pop() {
            let packet = released.item;
            let keyframe =
                packet.kind == MediaKind::Video && h264::starts_keyframe(&packet.payload);
            self.first_picture = self.first_picture.next(keyframe, packet.marker);
            if keyframe {
                add(&self.shared.keyframes_seen, 1);
                if self.next_pli.take().is_some() {
                    tracing::debug!("keyframe arrived; PLI repeat stops");
                }
            }
            match self.out.try_send(packet) {
                Ok(()) => add(&c.forwarded, 1),
                Err(_) => add(&c.queue_drops, 1),
            }
        }
    }

    fn on_rtcp(&mut self, datagram: &[u8]) {
        if datagram.first().is_some_and(|b| *b < 4) {
            return; // STUN
        }
        let plain = match self.p.rx.unprotect_rtcp(datagram) {
            Ok(p) => p,
            Err(e) => return self.auth_failed("SRTCP", &e),
        };
        add(&self.counters().rtcp_packets, 1);
        let now = Instant::now().into_std();
        for packet in rtcp::parse_compound(&plain) {
            match packet {
                Ok(RtcpPacket::SenderReport { ntp, .. }) => {
                    self.reception.on_sender_report(now, ntp);
                }
                Ok(_) => {}
                Err(e) => {
                    add(&self.counters().malformed, 1);
                    tracing::debug!(medium = %self.p.kind, error = %e, "malformed RTCP from intercom");
                }
            }
        }
    }

    fn auth_failed(&mut self, what: &'static str, e: &crate::proto::srtp::SrtpError) {
        add(&self.counters().srtp_failures, 1);
        if !std::mem::replace(&mut self.warned_auth, true) {
            tracing::warn!(
                medium = %self.p.kind,
                port = self.p.pair.port(),
                error = %e,
                "{what} from the intercom failed authentication (wrong key or stray packet); dropping such packets"
            );
        }
    }

    /// The 20 ms audio tick: the next talk frame if someone talks, else the silence keep-alive;
    /// either way the same SSRC, the next sequence number and timestamp + 160.
    fn send_audio_tick(&mut self) {
        if self.shared.audio_muted.load(Ordering::Relaxed) {
            // A ring's silent preview (our 183 said `a=inactive`): nothing is sent. Time passes
            // for the receiver's jitter buffer; the sequence does not (no loss).
            self.ts = self.ts.wrapping_add(SILENCE_TS_STEP);
            return;
        }
        let tick = self.talk.tick(Instant::now().into_std());
        let (payload, marker, captured) = match &tick {
            Tick::Talk { frame, marker } => (&frame.speex[..], *marker, Some(frame.captured)),
            Tick::EndOfTalk => (&talk::END_OF_TALK[..], false, None),
            Tick::Silence => (&SPEEX_SILENCE[..], false, None),
        };
        let header = RtpHeader {
            marker,
            payload_type: self.p.payload_type,
            sequence: self.seq,
            timestamp: self.ts,
            ssrc: self.ssrc,
        };
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(SILENCE_TS_STEP);
        match self.p.tx.protect_rtp(&header.to_packet(payload)) {
            Ok(packet) => {
                if send(&self.p.pair.rtp, self.p.rtp_dest, &packet) {
                    add(&self.counters().rtp_sent, 1);
                    if let Some(captured) = captured {
                        let now = Instant::now().into_std();
                        self.shared
                            .record_talk_delay(now.saturating_duration_since(captured));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(medium = %self.p.kind, error = %e, "SRTP protect of audio failed")
            }
        }
        if captured.is_some() || self.talk.counts() != self.shared.talk_counts() {
            self.shared.set_talk_counts(self.talk.counts());
        }
    }

    /// An SRTCP compound RR + SDES, with a PLI appended when `pli` is set.
    fn send_report(&mut self, pli: bool) {
        let now = Instant::now();
        let blocks: Vec<_> = self
            .reception
            .report_block(now.into_std())
            .into_iter()
            .collect();
        let mut compound = rtcp::receiver_report(self.ssrc, &blocks);
        compound.extend_from_slice(&sdes_cname(self.ssrc, CNAME));
        if pli {
            // Media SSRC 0 until the intercom's is known; the unit still answers with an IDR.
            compound.extend_from_slice(&rtcp::pli(self.ssrc, self.remote_ssrc.unwrap_or(0)));
            self.next_pli = Some(now + PLI_REPEAT);
        }
        let packet = match self.p.tx.protect_rtcp(&compound) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(medium = %self.p.kind, error = %e, "SRTCP protect failed");
                return;
            }
        };
        if send(&self.p.pair.rtcp, self.p.rtcp_dest, &packet) {
            add(&self.counters().rtcp_sent, 1);
            if pli {
                add(&self.shared.plis_sent, 1);
            }
        }
    }
}

/// The next talk frame; `None` once every sink is gone. Only polled while `rx` is `Some`.
async fn recv_talk(rx: &mut Option<mpsc::Receiver<TalkFrame>>) -> Option<TalkFrame> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Our RTP (silence, talk) or RTCP on its non-blocking socket: a full send buffer drops the
/// packet, as a router would.
fn send(socket: &std::net::UdpSocket, dest: SocketAddr, packet: &[u8]) -> bool {
    match socket.send_to(packet, dest) {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(%dest, error = %e, "media send failed");
            false
        }
    }
}

/// An SDES packet with one chunk: `ssrc`, CNAME item, END, padded to 32 bits (RFC 3550 §6.5).
fn sdes_cname(ssrc: u32, cname: &[u8]) -> Vec<u8> {
    let cname = &cname[..cname.len().min(255)];
    let mut chunk = ssrc.to_be_bytes().to_vec();
    chunk.push(1); // CNAME
    chunk.push(cname.len() as u8);
    chunk.extend_from_slice(cname);
    // At least one zero octet ends the item list, then pad to a word boundary.
    chunk.push(0);
    while !chunk.len().is_multiple_of(4) {
        chunk.push(0);
    }
    let mut out = vec![0x81, PT_SDES, 0, 0];
    out[2..4].copy_from_slice(&((chunk.len() / 4) as u16).to_be_bytes());
    out.extend_from_slice(&chunk);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframe_detection() {
        assert!(h264::starts_keyframe(&[0x65, 1, 2]));
        assert!(h264::starts_keyframe(&[0x67, 0x42]));
        assert!(!h264::starts_keyframe(&[0x68, 0xce])); // PPS alone
        assert!(!h264::starts_keyframe(&[0x41, 0x9a])); // P slice
        // STAP-A with SPS + PPS.
        assert!(h264::starts_keyframe(&[
            0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce
        ]));
        // STAP-A with PPS only, then a truncated size.
        assert!(!h264::starts_keyframe(&[
            0x78, 0, 2, 0x68, 0xce, 0, 9, 0x65
        ]));
        // FU-A start of an IDR; continuation of an IDR does not count.
        assert!(h264::starts_keyframe(&[0x7c, 0x85, 0]));
        assert!(!h264::starts_keyframe(&[0x7c, 0x05, 0]));
        assert!(!h264::starts_keyframe(&[0x7c]));
        assert!(!h264::starts_keyframe(&[]));
        assert!(!h264::starts_keyframe(&[0x78]));
    }

    #[test]
    fn sdes_cname_is_word_aligned_and_parses() {
        let sdes = sdes_cname(9, CNAME);
        assert_eq!(sdes.len() % 4, 0);
        assert_eq!(&sdes[..2], &[0x81, 202]);
        let mut compound = rtcp::receiver_report(9, &[]);
        compound.extend_from_slice(&sdes);
        compound.extend_from_slice(&rtcp::pli(9, 7));
        let parsed: Vec<_> = rtcp::parse_compound(&compound).collect();
        assert_eq!(parsed.len(), 3);
        assert_eq!(
            parsed[2],
            Ok(RtcpPacket::Pli {
                sender_ssrc: 9,
                media_ssrc: 7
            })
        );
    }
}
