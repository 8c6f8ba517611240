//! The ring clip: hub frames (H.264 access units as they came, AAC) into one MP4 file — a
//! fragmented MP4 (valid ISO BMFF, plays everywhere), video copied without re-encoding and
//! starting at a keyframe, audio aligned to it, cut at the clip length. The init segment is
//! written first with placeholder durations and rewritten in place at the end with the real ones
//! (`mvhd`/`tkhd`/`mdhd`/`mehd`), so players and ffprobe know the length. Blocking `Write + Seek`.

use std::io::{Seek, SeekFrom, Write};
use std::time::Duration;

use bytes::Bytes;

use crate::media::hub::{AudioFrame, Frame, VideoFrame};
use crate::proto::aac::AudioSpecificConfig;
use crate::proto::fmp4::{self, AudioTrack, Durations, Fmp4Error, Sample, TrackRun, VideoTrack};
use crate::proto::h264::{AccessUnit, NAL_AUD, NAL_PPS, NAL_SPS, SpsInfo, nal_type};

/// A fragment is closed at every keyframe and at least every second.
const FRAGMENT_90K: u64 = 90_000;
/// The last frame's duration when nothing follows it (the C300X runs at about 10 fps).
const DEFAULT_FRAME_90K: u64 = 9_000;

#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    #[error("clip file: {0}")]
    Io(#[from] std::io::Error),
    #[error("clip: {0}")]
    Mp4(#[from] Fmp4Error),
    #[error("clip: the keyframe has no SPS/PPS, or its SPS does not parse")]
    NoParameterSets,
    #[error("clip: no video frame was written")]
    Empty,
}

/// What the file's tracks are: the H.264 parameter sets and size, and the AAC config if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClipTracks {
    pub sps: Bytes,
    pub pps: Bytes,
    pub width: u32,
    pub height: u32,
    pub audio: Option<AudioSpecificConfig>,
}

impl ClipTracks {
    /// From a keyframe carrying SPS and PPS in-band (every keyframe the hub passes on does).
    pub fn from_keyframe(
        au: &AccessUnit,
        audio: Option<AudioSpecificConfig>,
    ) -> Result<Self, ClipError> {
        let find = |t: u8| au.nals.iter().find(|n| nal_type(n) == t).cloned();
        let (Some(sps), Some(pps)) = (find(NAL_SPS), find(NAL_PPS)) else {
            return Err(ClipError::NoParameterSets);
        };
        let info = SpsInfo::parse(&sps).map_err(|_| ClipError::NoParameterSets)?;
        Ok(Self {
            sps,
            pps,
            width: info.width,
            height: info.height,
            audio,
        })
    }
}

/// Whether the writer wants more frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    More,
    /// The clip reached its length (or the picture format changed): call `finish`.
    Full,
}

/// What a finished clip holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipSummary {
    /// Video duration (first keyframe to the end of the last frame).
    pub duration: Duration,
    pub video_frames: u64,
    pub audio_frames: u64,
    pub bytes: u64,
}

struct PendingVideo {
    rel: u64,
    avcc: Vec<u8>,
    keyframe: bool,
}

struct PendingAudio {
    rel: u64,
    data: Bytes,
    duration: u32,
}

pub struct ClipWriter<W: Write + Seek> {
    out: W,
    tracks: ClipTracks,
    asc: Option<[u8; 2]>,
    init_len: usize,
    limit_90k: u64,
    /// Hub pts of the first keyframe: time zero of the clip.
    start_90k: Option<u64>,
    waiting_keyframe: bool,
    video: Vec<PendingVideo>,
    audio: Vec<PendingAudio>,
    last_frame_90k: u64,
    video_end: u64,
    audio_end: u64,
    /// Clip time (samples) of the first audio written: the track's duration is its span (a
    /// track may start after the video, e.g. the silence of a ring preview).
    audio_start: Option<u64>,
    sequence: u32,
    video_frames: u64,
    audio_frames: u64,
    bytes: u64,
    full: bool,
}

impl<W: Write + Seek> ClipWriter<W> {
    /// Writes the init segment (placeholder durations) and waits for a keyframe. `length`: the
    /// clip stops there.
    pub fn new(mut out: W, tracks: ClipTracks, length: Duration) -> Result<Self, ClipError> {
        let asc = tracks.audio.as_ref().and_then(|a| a.to_bytes().ok());
        let init = init(&tracks, asc.as_ref(), Durations::default())?;
        out.write_all(&init)?;
        Ok(Self {
            out,
            init_len: init.len(),
            asc,
            tracks,
            limit_90k: (length.as_micros() as u64).saturating_mul(9) / 100,
            start_90k: None,
            waiting_keyframe: true,
            video: Vec::new(),
            audio: Vec::new(),
            last_frame_90k: DEFAULT_FRAME_90K,
            video_end: 0,
            audio_end: 0,
            audio_start: None,
            sequence: 0,
            video_frames: 0,
            audio_frames: 0,
            bytes: init.len() as u64,
            full: false,
        })
    }

    pub fn push(&mut self, frame: &Frame) -> Result<Push, ClipError> {
        if self.full {
            return Ok(Push::Full);
        }
        match frame {
            Frame::Video(v) => self.push_video(v),
            Frame::Audio(a) => {
                self.push_audio(a);
                Ok(Push::More)
            }
            Frame::Discontinuity => {
                // A new call: its first frames may reference pictures we never had.
                let end = self.video.last().map(|v| v.rel + self.last_frame_90k);
                if let Some(end) = end {
                    self.flush(end)?;
                }
                self.waiting_keyframe = true;
                Ok(Push::More)
            }
        }
    }

    fn push_video(&mut self, v: &VideoFrame) -> Result<Push, ClipError> {
        if self.waiting_keyframe && !v.au.keyframe {
            return Ok(Push::More);
        }
        if v.au.keyframe
            && let Some(sps) = v.au.nals.iter().find(|n| nal_type(n) == NAL_SPS)
            && *sps != self.tracks.sps
        {
            tracing::info!("ring clip: the picture format changed; ending the clip early");
            self.full = true;
            return Ok(Push::Full);
        }
        let start = *self.start_90k.get_or_insert(v.pts);
        let rel = v.pts.saturating_sub(start);
        if rel >= self.limit_90k {
            self.full = true;
            return Ok(Push::Full);
        }
        if let Some(last) = self.video.last() {
            self.last_frame_90k = rel.saturating_sub(last.rel).clamp(1, FRAGMENT_90K);
        }
        let span = self.video.first().map(|f| rel.saturating_sub(f.rel));
        if v.au.keyframe || span.is_some_and(|s| s >= FRAGMENT_90K) {
            self.flush(rel)?;
        }
        self.waiting_keyframe = false;
        self.video.push(PendingVideo {
            rel,
            avcc: sample_avcc(&v.au),
            keyframe: v.au.keyframe,
        });
        Ok(Push::More)
    }

    fn push_audio(&mut self, a: &AudioFrame) {
        let (Some(start), Some(rate)) = (self.start_90k, self.audio_rate()) else {
            return; // no video yet, or no audio track
        };
        let Some(rel) = a.pts.checked_sub(start * rate / 90_000) else {
            return; // before the clip's first keyframe
        };
        if rel * 90_000 / rate >= self.limit_90k {
            return;
        }
        self.audio.push(PendingAudio {
            rel,
            data: a.frame.data.clone(),
            duration: a.frame.duration,
        });
    }

    fn audio_rate(&self) -> Option<u64> {
        self.asc
            .and(self.tracks.audio.map(|a| u64::from(a.sample_rate)))
    }

    /// Writes the pending video (its last frame lasting until `end`, clip time in 90 kHz) and
    /// the audio that starts before `end` as one fragment.
    fn flush(&mut self, end: u64) -> Result<(), ClipError> {
        if self.video.is_empty() {
            return Ok(());
        }
        let video: Vec<Sample> = self
            .video
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let next = self.video.get(i + 1).map_or(end, |n| n.rel);
                Sample {
                    data: &f.avcc,
                    duration: next.saturating_sub(f.rel).clamp(1, 900_000) as u32,
                    keyframe: f.keyframe,
                }
            })
            .collect();
        let mut runs = vec![TrackRun {
            track_id: fmp4::VIDEO_TRACK,
            base_decode_time: self.video[0].rel,
            samples: video,
        }];
        let rate = self.audio_rate().unwrap_or(1);
        let cut = self
            .audio
            .iter()
            .position(|a| a.rel * 90_000 / rate >= end)
            .unwrap_or(self.audio.len());
        if let Some(first) = self.audio.first().filter(|_| cut > 0) {
            runs.push(TrackRun {
                track_id: fmp4::AUDIO_TRACK,
                base_decode_time: first.rel,
                samples: self.audio[..cut]
                    .iter()
                    .map(|a| Sample {
                        data: &a.data,
                        duration: a.duration,
                        keyframe: true,
                    })
                    .collect(),
            });
        }
        self.sequence += 1;
        let fragment = fmp4::fragment(self.sequence, &runs);
        self.out.write_all(&fragment)?;
        self.bytes += fragment.len() as u64;
        self.video_frames += self.video.len() as u64;
        self.video_end = end;
        if let Some(first) = self.audio[..cut].first() {
            self.audio_start.get_or_insert(first.rel);
        }
        if let Some(last) = self.audio[..cut].last() {
            self.audio_end = last.rel + u64::from(last.duration);
        }
        self.audio_frames += cut as u64;
        self.video.clear();
        self.audio.drain(..cut);
        Ok(())
    }

    /// Writes what is pending, then the real durations into the init segment. Returns the
    /// output (flushed) and what the clip holds.
    pub fn finish(mut self) -> Result<(W, ClipSummary), ClipError> {
        if let Some(last) = self.video.last() {
            let end = last.rel + self.last_frame_90k;
            self.flush(end)?;
        }
        if self.video_frames == 0 {
            return Err(ClipError::Empty);
        }
        let durations = Durations {
            video_90k: self.video_end,
            audio_samples: self.audio_end - self.audio_start.unwrap_or(0).min(self.audio_end),
        };
        let init = init(&self.tracks, self.asc.as_ref(), durations)?;
        if init.len() != self.init_len {
            // Cannot happen (fixed-width fields); refuse rather than corrupt the file.
            return Err(ClipError::Mp4(Fmp4Error::TooLarge {
                what: "rewritten init segment",
                len: init.len(),
            }));
        }
        self.out.seek(SeekFrom::Start(0))?;
        self.out.write_all(&init)?;
        self.out.seek(SeekFrom::End(0))?;
        self.out.flush()?;
        let summary = ClipSummary {
            duration: Duration::from_micros(self.video_end * 100 / 9),
            video_frames: self.video_frames,
            audio_frames: self.audio_frames,
            bytes: self.bytes,
        };
        Ok((self.out, summary))
    }
}

fn init(
    tracks: &ClipTracks,
    asc: Option<&[u8; 2]>,
    durations: Durations,
) -> Result<Vec<u8>, Fmp4Error> {
    let video = VideoTrack {
        sps: &tracks.sps,
        pps: &tracks.pps,
        width: tracks.width,
        height: tracks.height,
    };
    let audio = match (&tracks.audio, asc) {
        (Some(a), Some(bytes)) => Some(AudioTrack {
            asc: bytes,
            sample_rate: a.sample_rate,
            channels: u16::from(a.channels),
        }),
        _ => None,
    };
    fmp4::init_segment_with_durations(&video, audio.as_ref(), durations)
}

/// An AVCC sample without the parameter sets and delimiters (they live in `avcC`).
fn sample_avcc(au: &AccessUnit) -> Vec<u8> {
    let mut out = Vec::with_capacity(au.byte_len() + 4 * au.nals.len());
    for nal in au
        .nals
        .iter()
        .filter(|n| !matches!(nal_type(n), NAL_SPS | NAL_PPS | NAL_AUD))
    {
        out.extend_from_slice(&u32::try_from(nal.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(nal);
    }
    out
}

#[cfg(test)]
mod tests;
