//! The media half of one RTSP connection: the hub `Viewer` it holds (its lease), the tracks set
//! up, and RTP for them (RFC 6184 H.264, RFC 3640 AAC-hbr) with the SSRC, initial sequence and
//! timestamp the protocol session chose (RTP time = initial + hub pts, so continuous across
//! re-INVITEs) and RTCP SRs. Sockets for UDP tracks come from `udp.rs`; requests are
//! `proto::rtsp::server`'s, driven by `conn.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::net::UdpSocket;

use super::udp::UdpPair;
use crate::media::hub::{Frame, StreamInfo, Viewer};
use crate::proto::aac::rfc3640_payload;
use crate::proto::h264::{NAL_PPS, NAL_SPS, Packetizer, lead_in, nal_type};
use crate::proto::rtp::RtpHeader;
use crate::proto::rtp::rtcp::{ntp_timestamp, sender_report};
use crate::proto::rtsp::response::write_interleaved;
use crate::proto::rtsp::server::{
    AudioDescription, PlayInfo, RtpParams, StreamDescription, TrackKind,
};

/// RTP state of one track toward one viewer.
#[derive(Debug)]
pub(super) struct RtpTrack {
    pub ssrc: u32,
    pub seq: u16,
    ts_base: u32,
    pt: u8,
    clock: u32,
    packets: u32,
    octets: u32,
    /// RTP time of the last packet sent and when: the SR maps `now` from it.
    last: Option<(u32, Instant)>,
}

impl RtpTrack {
    pub fn new(p: RtpParams) -> Self {
        Self {
            ssrc: p.ssrc,
            seq: p.seq,
            ts_base: p.ts_base,
            pt: p.payload_type,
            clock: p.clock,
            packets: 0,
            octets: 0,
            last: None,
        }
    }

    pub fn rtp_time(&self, pts: u64) -> u32 {
        // Wrapping on purpose: RTP time is modulo 2^32 (RFC 3550 §5.1).
        self.ts_base.wrapping_add(pts as u32)
    }

    fn packet(&mut self, pts: u64, marker: bool, payload: &[u8]) -> Vec<u8> {
        let timestamp = self.rtp_time(pts);
        let header = RtpHeader {
            marker,
            payload_type: self.pt,
            sequence: self.seq,
            timestamp,
            ssrc: self.ssrc,
        };
        self.seq = self.seq.wrapping_add(1);
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload.len() as u32);
        self.last = Some((timestamp, Instant::now()));
        header.to_packet(payload)
    }

    /// An SR (RFC 3550 §6.4.1) once something was sent: `now` in NTP and in RTP time.
    fn sender_report(&self) -> Option<Vec<u8>> {
        let (ts, at) = self.last?;
        let elapsed = at.elapsed();
        let ticks = (elapsed.as_micros() * u128::from(self.clock) / 1_000_000) as u32;
        Some(sender_report(
            self.ssrc,
            ntp_timestamp(SystemTime::now()),
            ts.wrapping_add(ticks),
            self.packets,
            self.octets,
            &[],
        ))
    }
}

/// Where a track's packets go.
#[derive(Debug)]
pub(super) enum Sink {
    Interleaved { rtp: u8, rtcp: u8 },
    Udp(UdpSink),
}

#[derive(Debug)]
pub(super) struct UdpSink {
    pub pair: UdpPair,
    pub client_rtp: SocketAddr,
    pub client_rtcp: SocketAddr,
}

#[derive(Debug)]
pub(super) struct Track {
    pub rtp: RtpTrack,
    pub sink: Sink,
}

/// Bytes for the RTSP connection and datagrams for UDP tracks, produced by one frame.
#[derive(Default)]
pub(super) struct Outgoing {
    pub tcp: Vec<u8>,
    pub udp: Vec<(Arc<UdpSocket>, SocketAddr, Vec<u8>)>,
}

impl Outgoing {
    fn push(&mut self, sink: &Sink, rtcp: bool, packet: Vec<u8>) {
        match sink {
            Sink::Interleaved { rtp, rtcp: rtcp_ch } => {
                write_interleaved(&mut self.tcp, if rtcp { *rtcp_ch } else { *rtp }, &packet);
            }
            Sink::Udp(u) => {
                let (sock, to) = if rtcp {
                    (u.pair.rtcp.clone(), u.client_rtcp)
                } else {
                    (u.pair.rtp.clone(), u.client_rtp)
                };
                self.udp.push((sock, to, packet));
            }
        }
    }
}

/// What the protocol session needs to know of a joined hub's stream.
pub(super) fn description(info: &StreamInfo) -> StreamDescription {
    StreamDescription {
        sps: info.sps.to_vec(),
        pps: info.pps.to_vec(),
        profile_level_id: info.video.profile_level_id,
        audio: info.audio.as_ref().and_then(|a| {
            Some(AudioDescription {
                sample_rate: a.sample_rate,
                channels: a.channels,
                config_hex: a.config_hex().ok()?,
            })
        }),
    }
}

pub(super) struct Playout {
    pub viewer: Viewer,
    pub video: Option<Track>,
    pub audio: Option<Track>,
    pub playing: bool,
    /// After PLAY (and PAUSE), frames wait for the next keyframe so decoders can start.
    pub need_keyframe: bool,
    /// The next keyframe is this reader's first (after PLAY or PAUSE): a lead-in goes first
    /// (`proto::h264::leadin`: FFmpeg's parser loses the first picture's timestamp).
    lead_in_due: bool,
    packetizer: Packetizer,
}

impl Playout {
    pub fn new(viewer: Viewer, mtu: usize) -> Self {
        Self {
            viewer,
            video: None,
            audio: None,
            playing: false,
            need_keyframe: true,
            lead_in_due: true,
            packetizer: Packetizer::new(mtu.saturating_sub(12)),
        }
    }

    pub fn add_track(&mut self, kind: TrackKind, sink: Sink, rtp: RtpParams) {
        let track = Some(Track {
            rtp: RtpTrack::new(rtp),
            sink,
        });
        match kind {
            TrackKind::Video => self.video = track,
            TrackKind::Audio => self.audio = track,
            // The backchannel's RTP comes in; `talk.rs` holds it.
            TrackKind::Backchannel => {}
        }
    }

    /// The newest RTCP from a UDP client (keep-alives).
    pub fn last_rtcp(&self) -> Option<Instant> {
        [&self.video, &self.audio]
            .into_iter()
            .flatten()
            .filter_map(|t| match &t.sink {
                Sink::Udp(u) => u.pair.last_rtcp(),
                Sink::Interleaved { .. } => None,
            })
            .max()
    }

    /// Starts sending: the frames to send first (from the newest keyframe) and where each
    /// track stands, for `RTP-Info`.
    pub fn play(&mut self) -> (Vec<PlayInfo>, Vec<Frame>) {
        let backlog = if self.playing {
            Vec::new()
        } else {
            self.take_backlog()
        };
        self.playing = true;
        let first_video = backlog.iter().find_map(|f| match f {
            Frame::Video(v) => Some(v.pts),
            _ => None,
        });
        // Audio and video pts share an origin in the hub; with no audio queued yet, the
        // audio time of the first picture is announced (retina insists on an rtptime).
        let audio_rate = self.audio.as_ref().map_or(1, |t| u64::from(t.rtp.clock));
        let first_audio = backlog
            .iter()
            .find_map(|f| match f {
                Frame::Audio(a) => Some(a.pts),
                _ => None,
            })
            .or_else(|| first_video.map(|v| v * audio_rate / 90_000));
        let infos = [
            (TrackKind::Video, &self.video, first_video),
            (TrackKind::Audio, &self.audio, first_audio),
        ]
        .into_iter()
        .filter_map(|(kind, track, first)| {
            let t = track.as_ref()?;
            Some(PlayInfo {
                kind,
                seq: t.rtp.seq,
                rtptime: first.map(|pts| t.rtp.rtp_time(pts)),
            })
        })
        .collect();
        (infos, backlog)
    }

    pub fn pause(&mut self) {
        self.playing = false;
        self.need_keyframe = true;
        self.lead_in_due = true;
    }
    /// Drains what is queued and keeps the frames from the newest keyframe on, so PLAY starts
    /// with a decodable picture and no stale backlog.
    pub fn take_backlog(&mut self) -> Vec<Frame> {
        let mut queued = Vec::new();
        while let Ok(f) = self.viewer.frames.try_recv() {
            queued.push(f);
        }
        let wants_video = self.video.is_some();
        let start = queued
            .iter()
            .rposition(|f| matches!(f, Frame::Video(v) if v.au.keyframe));
        match start {
            Some(i) => {
                self.need_keyframe = false;
                queued.split_off(i)
            }
            None if !wants_video => {
                self.need_keyframe = false;
                queued
            }
            None => {
                self.need_keyframe = true;
                Vec::new()
            }
        }
    }

    /// RTP packets of one frame for the tracks set up.
    pub fn render(&mut self, frame: &Frame, out: &mut Outgoing) {
        match frame {
            Frame::Video(v) => {
                let Some(track) = self.video.as_mut() else {
                    return;
                };
                if self.need_keyframe {
                    if !v.au.keyframe {
                        return;
                    }
                    self.need_keyframe = false;
                }
                if v.au.keyframe && std::mem::take(&mut self.lead_in_due) {
                    let nal_of = |t: u8| v.au.nals.iter().find(|n| nal_type(n) == t);
                    let lead = match (nal_of(NAL_SPS), nal_of(NAL_PPS)) {
                        (Some(sps), Some(pps)) => lead_in(sps, pps),
                        _ => lead_in(&self.viewer.info.sps, &self.viewer.info.pps),
                    };
                    if let Some(nal) = lead {
                        // One tick before the keyframe: a picture of its own to FFmpeg.
                        let packet = track.rtp.packet(v.pts.saturating_sub(1), true, &nal);
                        out.push(&track.sink, false, packet);
                    }
                }
                for p in self.packetizer.packetize(&v.au.nals) {
                    let packet = track.rtp.packet(v.pts, p.marker, &p.data);
                    out.push(&track.sink, false, packet);
                }
            }
            Frame::Audio(a) => {
                if self.need_keyframe && self.video.is_some() {
                    return;
                }
                let Some(track) = self.audio.as_mut() else {
                    return;
                };
                let Ok(payload) = rfc3640_payload(&[&a.frame.data]) else {
                    return;
                };
                let packet = track.rtp.packet(a.pts, true, &payload);
                out.push(&track.sink, false, packet);
            }
            Frame::Discontinuity => {}
        }
    }

    /// Sender reports of every track that has sent something.
    pub fn sender_reports(&self, out: &mut Outgoing) {
        for track in [&self.video, &self.audio].into_iter().flatten() {
            if let Some(sr) = track.rtp.sender_report() {
                out.push(&track.sink, true, sr);
            }
        }
    }
}
