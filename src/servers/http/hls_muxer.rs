//! The HLS muxer: hub frames in, the fMP4 init segment, LL-HLS parts (~0.5 s, closed before
//! they would pass the part target) and 1 s segments (cut at IDRs) out, plus the playlist facts.
//! It asks for the IDR that ends each segment one frame (or the last answer's delay) ahead (the
//! caller sends the PLI), so a segment closes 1 s after its first keyframe instead of at the
//! intercom's 2 s GOP.
//! Pure: no clock, no I/O; `hls_session` drives it and serves what it holds.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use crate::media::hub::{AudioFrame, Frame, StreamInfo, VideoFrame};
use crate::proto::fmp4::{self, AudioTrack, Sample, TrackRun, VideoTrack};
use crate::proto::h264::{NAL_AUD, NAL_PPS, NAL_SPS, nal_type};
use crate::proto::hls::{PartInfo, Playlist, SegmentInfo};

/// Part target, seconds and 90 kHz ticks.
pub const PART_TARGET: f64 = 0.5;
const PART_TARGET_TICKS: u64 = 45_000;
/// The target duration announced, seconds: segments end at the IDR asked for ~1 s after their
/// first one. It grows (as RFC 8216 rounding demands) only if the intercom ignores the requests.
pub const TARGET: u32 = 1;
/// Complete segments listed in the playlist, and kept for late downloads.
const LISTED: usize = 6;
const KEPT: usize = 10;
/// Complete segments whose parts are still listed.
const PARTS_FOR_LAST: usize = 2;

pub struct Part {
    pub data: Bytes,
    pub ticks: u64,
    pub independent: bool,
}

pub struct Segment {
    pub msn: u64,
    pub parts: Vec<Part>,
    pub complete: bool,
    pub discontinuity: bool,
    start_pts: u64,
    end_pts: u64,
}

impl Segment {
    pub fn bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.parts.iter().map(|p| p.data.len()).sum());
        for p in &self.parts {
            out.extend_from_slice(&p.data);
        }
        out.into()
    }
}

#[derive(Default)]
struct OpenPart {
    video: Vec<Arc<VideoFrame>>,
    audio: Vec<Arc<AudioFrame>>,
    independent: bool,
}

/// Frames in, init segment + parts + segments out. Pure: no clock, no I/O.
#[derive(Default)]
pub struct Muxer {
    pub init: Option<Bytes>,
    sps: Bytes,
    pub segments: VecDeque<Segment>,
    open: Option<OpenPart>,
    next_msn: u64,
    sequence: u32,
    target: u32,
    discontinuity_sequence: u64,
    pending_discontinuity: bool,
    waiting_idr: bool,
    last_frame_ticks: u64,
    /// The segment an IDR was asked for, and the pts of the frame that asked.
    idr_asked: Option<(u64, u64)>,
    /// How long the last answer took (request → IDR, 90 kHz; 0 until one came): requests go
    /// out that much ahead of the target, so a slow unit still closes segments at ~1 s.
    answer_lag: u64,
    /// The first segment was dropped once for outgrowing the target (see `push_video`).
    dropped_first: bool,
    pub error: Option<String>,
}

impl Muxer {
    pub fn new(info: &StreamInfo) -> Result<Self, fmp4::Fmp4Error> {
        let asc = info.audio.as_ref().and_then(|a| a.to_bytes().ok());
        let audio = match (&info.audio, &asc) {
            (Some(a), Some(bytes)) => Some(AudioTrack {
                asc: bytes,
                sample_rate: a.sample_rate,
                channels: u16::from(a.channels),
            }),
            _ => None,
        };
        let video = VideoTrack {
            sps: &info.sps,
            pps: &info.pps,
            width: info.video.width,
            height: info.video.height,
        };
        Ok(Self {
            init: Some(fmp4::init_segment(&video, audio.as_ref())?.into()),
            sps: info.sps.clone(),
            target: TARGET,
            waiting_idr: true,
            last_frame_ticks: 9000,
            ..Self::default()
        })
    }

    /// Takes one frame; returns true when an IDR should be asked for now: the open segment
    /// reaches the target at the next frame (the intercom's GOP is longer than our target).
    pub fn push(&mut self, frame: &Frame) -> bool {
        match frame {
            Frame::Video(v) => return self.push_video(v),
            Frame::Audio(a) => {
                if let Some(open) = self.open.as_mut() {
                    open.audio.push(a.clone());
                }
            }
            Frame::Discontinuity => {
                if let Some(end) = self.last_pts().map(|p| p + self.last_frame_ticks) {
                    self.close_part(end);
                }
                self.close_segment();
                self.pending_discontinuity = true;
                self.waiting_idr = true;
            }
        }
        false
    }

    fn last_pts(&self) -> Option<u64> {
        self.open.as_ref()?.video.last().map(|v| v.pts)
    }

    fn push_video(&mut self, v: &Arc<VideoFrame>) -> bool {
        if self.waiting_idr && !v.au.keyframe {
            return false;
        }
        if let Some(last) = self.last_pts() {
            self.last_frame_ticks = v.pts.saturating_sub(last).clamp(1, 90_000);
        }
        if v.au.keyframe {
            if let Some(sps) = v.au.nals.iter().find(|n| nal_type(n) == NAL_SPS)
                && *sps != self.sps
            {
                self.error = Some("the picture format changed; reload the stream".into());
                return false;
            }
            if let Some((msn, at)) = self.idr_asked
                && self
                    .segments
                    .back()
                    .is_none_or(|s| s.msn == msn && !s.complete)
            {
                // The answer (or the unit's own IDR after the request: either way, how far
                // ahead to ask next time), at most half a target; also after the first segment
                // was dropped for a late answer, so the next one asks early enough.
                self.answer_lag = v
                    .pts
                    .saturating_sub(at)
                    .min(u64::from(self.target) * 45_000);
            }
            self.close_part(v.pts);
            self.close_segment();
            self.waiting_idr = false;
            let discontinuity = std::mem::take(&mut self.pending_discontinuity);
            self.segments.push_back(Segment {
                msn: self.next_msn,
                parts: Vec::new(),
                complete: false,
                discontinuity,
                start_pts: v.pts,
                end_pts: v.pts,
            });
            self.next_msn += 1;
            self.open = Some(OpenPart {
                independent: true,
                ..OpenPart::default()
            });
        } else {
            if self.first_segment_outgrown(v.pts) {
                // Started from a GOP the hub had cached (a warm join) or an IDR request that was
                // not answered in time: it would raise the target for the whole session. Drop
                // it once and start at the IDR already asked for.
                self.dropped_first = true;
                self.open = None;
                self.segments.pop_back();
                self.waiting_idr = true;
                return false;
            }
            if let Some(first) = self.open.as_ref().and_then(|o| o.video.first())
                // Close the part before this frame would take it past the part target.
                && v.pts.saturating_sub(first.pts) + self.last_frame_ticks > PART_TARGET_TICKS
            {
                self.close_part(v.pts);
                self.open = Some(OpenPart::default());
            }
        }
        if let Some(open) = self.open.as_mut() {
            open.video.push(v.clone());
        }
        // Ask once per segment, so that the answer (the next frame at best: the simulator; the
        // last answer's delay if longer) lands at the target, with half a frame of slack.
        let target_ticks = u64::from(self.target) * 90_000;
        let ahead = self.answer_lag.max(self.last_frame_ticks) + self.last_frame_ticks / 2;
        match self.segments.back() {
            Some(s)
                if !s.complete
                    && self.idr_asked.is_none_or(|(msn, _)| msn != s.msn)
                    && v.pts.saturating_sub(s.start_pts) + ahead >= target_ticks =>
            {
                self.idr_asked = Some((s.msn, v.pts));
                true
            }
            _ => false,
        }
    }

    /// Whether the session's first segment, still open, can no longer close within the target
    /// (its duration would round above it) now that the frame at `pts` came without an IDR.
    /// Only once per session: if the intercom ignores IDR requests, the target grows instead.
    fn first_segment_outgrown(&self, pts: u64) -> bool {
        let Some(s) = self.segments.back() else {
            return false;
        };
        let limit = u64::from(self.target) * 90_000 + 45_000;
        !self.dropped_first
            && self.segments.len() == 1
            && !s.complete
            && !s.discontinuity
            && pts.saturating_sub(s.start_pts) + self.last_frame_ticks >= limit
    }

    /// Writes the open part (its last frame lasts until `end_pts`) into the open segment.
    fn close_part(&mut self, end_pts: u64) {
        let Some(open) = self.open.take() else { return };
        let Some(first) = open.video.first() else {
            return;
        };
        let avcc: Vec<Vec<u8>> = open.video.iter().map(|v| sample_avcc(v)).collect();
        let mut video = Vec::with_capacity(open.video.len());
        for (i, v) in open.video.iter().enumerate() {
            let next = open.video.get(i + 1).map_or(end_pts, |n| n.pts);
            video.push(Sample {
                data: &avcc[i],
                duration: next.saturating_sub(v.pts).clamp(1, 900_000) as u32,
                keyframe: v.au.keyframe,
            });
        }
        let mut runs = vec![TrackRun {
            track_id: fmp4::VIDEO_TRACK,
            base_decode_time: first.pts,
            samples: video,
        }];
        if let Some(a0) = open.audio.first() {
            runs.push(TrackRun {
                track_id: fmp4::AUDIO_TRACK,
                base_decode_time: a0.pts,
                samples: open
                    .audio
                    .iter()
                    .map(|a| Sample {
                        data: &a.frame.data,
                        duration: a.frame.duration,
                        keyframe: true,
                    })
                    .collect(),
            });
        }
        self.sequence = self.sequence.wrapping_add(1);
        let data = fmp4::fragment(self.sequence, &runs).into();
        let ticks = end_pts.saturating_sub(first.pts);
        if let Some(seg) = self.segments.back_mut().filter(|s| !s.complete) {
            seg.parts.push(Part {
                data,
                ticks,
                independent: open.independent,
            });
            seg.end_pts = end_pts;
        }
    }

    fn close_segment(&mut self) {
        let Some(seg) = self.segments.back_mut().filter(|s| !s.complete) else {
            return;
        };
        seg.complete = true;
        if seg.parts.is_empty() {
            self.segments.pop_back();
            return;
        }
        let secs = (seg.end_pts - seg.start_pts) as f64 / 90_000.0;
        self.target = self.target.max(secs.round() as u32);
        while self.segments.iter().filter(|s| s.complete).count() > KEPT {
            if let Some(old) = self.segments.pop_front()
                && old.discontinuity
            {
                self.discontinuity_sequence += 1;
            }
        }
    }

    pub fn complete_segments(&self) -> usize {
        self.segments.iter().filter(|s| s.complete).count()
    }

    pub fn target_duration(&self) -> u32 {
        self.target
    }

    pub fn playlist(&self) -> Playlist {
        let skip = self.complete_segments().saturating_sub(LISTED);
        let mut disc_seq = self.discontinuity_sequence;
        let mut segments = Vec::new();
        for (i, s) in self.segments.iter().enumerate() {
            if i < skip {
                disc_seq += u64::from(s.discontinuity);
                continue;
            }
            segments.push(SegmentInfo {
                msn: s.msn,
                duration: (s.end_pts - s.start_pts) as f64 / 90_000.0,
                parts: s
                    .parts
                    .iter()
                    .map(|p| PartInfo {
                        duration: p.ticks as f64 / 90_000.0,
                        independent: p.independent,
                    })
                    .collect(),
                complete: s.complete,
                discontinuity: s.discontinuity,
            });
        }
        Playlist {
            target_duration: self.target,
            part_target: PART_TARGET,
            discontinuity_sequence: disc_seq,
            segments,
            parts_for_last: PARTS_FOR_LAST,
        }
    }

    pub fn segment(&self, msn: u64) -> Option<&Segment> {
        self.segments.iter().find(|s| s.msn == msn)
    }

    /// The newest segment number (open or complete).
    pub fn newest_msn(&self) -> Option<u64> {
        self.segments.back().map(|s| s.msn)
    }
}

/// AVCC sample without the parameter sets and delimiters already carried by `avcC`.
fn sample_avcc(v: &VideoFrame) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.au.byte_len() + 4 * v.au.nals.len());
    for nal in
        v.au.nals
            .iter()
            .filter(|n| !matches!(nal_type(n), NAL_SPS | NAL_PPS | NAL_AUD))
    {
        out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        out.extend_from_slice(nal);
    }
    out
}

#[cfg(test)]
mod tests;
