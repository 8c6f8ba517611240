//! Speex (RFC 5574, narrowband 8 kHz, 20 ms per packet) → AAC-LC mono, in-process with FFmpeg.
//! Owns the continuous AAC timeline: lost packets become silence, late ones are dropped, corrupt
//! ones are counted and replaced by silence. No RTP parsing, no packetizing (see `proto::aac`).

mod codec;
mod timeline;

use bytes::Bytes;
use ffmpeg_next as ffmpeg;

use crate::proto::aac::{AudioSpecificConfig, SAMPLES_PER_FRAME};
use codec::{AacEncoder, SpeexDecoder};
use timeline::{Placement, Timeline};

/// The Speex narrowband rate, also its RTP clock rate (RFC 5574 §3.1).
pub const SPEEX_RATE: u32 = 8_000;
/// One 20 ms Speex frame at 8 kHz.
pub const SPEEX_FRAME_SAMPLES: u32 = 160;
/// AAC output rates offered (all have an AAC sampling-frequency index).
pub const AAC_RATES: [u32; 6] = [8_000, 16_000, 24_000, 32_000, 44_100, 48_000];

#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    #[error("AAC sample rate {0} Hz not supported (use one of {AAC_RATES:?})")]
    UnsupportedRate(u32),
    #[error("AAC bitrate {0} b/s out of range (8000..=320000)")]
    UnsupportedBitrate(u32),
    #[error("FFmpeg has no {0} codec")]
    NoCodec(&'static str),
    #[error("FFmpeg: {context}: {source}")]
    Ffmpeg {
        context: &'static str,
        source: ffmpeg::Error,
    },
    #[error("the transcoder was flushed; make a new one")]
    Finished,
}

/// AAC-LC output settings (mono).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacSettings {
    /// One of [`AAC_RATES`].
    pub sample_rate: u32,
    /// Target bitrate in bits per second.
    pub bitrate: u32,
}

impl Default for AacSettings {
    fn default() -> Self {
        Self {
            sample_rate: 16_000,
            bitrate: 32_000,
        }
    }
}

/// One AAC access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacFrame {
    /// In samples at the output rate, continuous from 0 (step 1024). The first frame holds the
    /// encoder's priming (1024 samples), as FFmpeg emits it; no edit list is implied.
    pub pts: u64,
    /// Always 1024.
    pub duration: u32,
    /// A raw AAC access unit (no ADTS).
    pub data: Bytes,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TranscodeStats {
    /// Every payload handed to [`SpeexToAac::push`].
    pub packets_in: u64,
    pub frames_out: u64,
    /// Silence inserted, in 8 kHz samples: gaps from lost packets plus one packet
    /// ([`SPEEX_FRAME_SAMPLES`]) for each corrupt payload.
    pub concealed_samples: u64,
    /// Payloads FFmpeg's decoder rejected (each replaced by one packet of silence).
    pub decode_errors: u64,
    /// Duplicate or late packets dropped.
    pub late_dropped: u64,
    /// Timestamp jumps beyond 1 s treated as a sender restart (no fill; pts stays continuous).
    pub restarts: u64,
}

/// Speex RTP payloads in, AAC-LC access units out, with a hole-free timeline.
pub struct SpeexToAac {
    settings: AacSettings,
    decoder: SpeexDecoder,
    encoder: AacEncoder,
    timeline: Timeline,
    asc: AudioSpecificConfig,
    /// 8 kHz samples of the current packet (decoded or silence); reused.
    pcm: Vec<f32>,
    stats: TranscodeStats,
    finished: bool,
}

impl std::fmt::Debug for SpeexToAac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeexToAac")
            .field("settings", &self.settings)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl SpeexToAac {
    pub fn new(settings: AacSettings) -> Result<Self, TranscodeError> {
        if !AAC_RATES.contains(&settings.sample_rate) {
            return Err(TranscodeError::UnsupportedRate(settings.sample_rate));
        }
        if !(8_000..=320_000).contains(&settings.bitrate) {
            return Err(TranscodeError::UnsupportedBitrate(settings.bitrate));
        }
        super::init_ffmpeg();
        let decoder = SpeexDecoder::new()?;
        let encoder = AacEncoder::new(settings.sample_rate, settings.bitrate)?;
        let fallback = AudioSpecificConfig::aac_lc(settings.sample_rate, 1);
        let asc = match encoder.extradata().map(AudioSpecificConfig::parse) {
            Some(Ok(asc)) => asc,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "aac encoder extradata unreadable; using settings");
                fallback
            }
            None => fallback,
        };
        Ok(Self {
            settings,
            decoder,
            encoder,
            timeline: Timeline::default(),
            asc,
            pcm: Vec::with_capacity(timeline::MAX_FILL as usize + 1_024),
            stats: TranscodeStats::default(),
            finished: false,
        })
    }

    pub fn settings(&self) -> AacSettings {
        self.settings
    }

    /// The stream's AudioSpecificConfig (for SDP `config=` and fMP4 `esds`), read from the
    /// encoder's extradata when FFmpeg provides it.
    pub fn audio_specific_config(&self) -> AudioSpecificConfig {
        self.asc
    }

    /// One Speex RTP payload with its RTP timestamp (8 kHz clock). Returns the AAC frames
    /// completed. Input problems (loss, duplicates, garbage) never fail; only FFmpeg itself can.
    pub fn push(
        &mut self,
        rtp_timestamp: u32,
        payload: &[u8],
    ) -> Result<Vec<AacFrame>, TranscodeError> {
        if self.finished {
            return Err(TranscodeError::Finished);
        }
        self.stats.packets_in += 1;
        let placement = self.timeline.place(rtp_timestamp);
        self.pcm.clear();
        let trim = match placement {
            Placement::Drop => {
                self.stats.late_dropped += 1;
                return Ok(Vec::new());
            }
            Placement::Start { restart } => {
                if restart {
                    self.stats.restarts += 1;
                    tracing::debug!(rtp_timestamp, "speex timestamp jump: restart");
                }
                0
            }
            Placement::Next { fill, trim } => {
                self.pcm.resize(fill as usize, 0.0);
                self.stats.concealed_samples += u64::from(fill);
                trim as usize
            }
        };
        let head = self.pcm.len();
        let decoded = match self.decoder.decode(payload, &mut self.pcm) {
            Ok(0) => Err("no samples".to_owned()),
            other => other,
        };
        let decoded = match decoded {
            Ok(n) => n,
            Err(reason) => {
                self.stats.decode_errors += 1;
                tracing::debug!(rtp_timestamp, len = payload.len(), %reason, "corrupt speex payload");
                self.pcm.resize(head + SPEEX_FRAME_SAMPLES as usize, 0.0);
                self.stats.concealed_samples += u64::from(SPEEX_FRAME_SAMPLES);
                SPEEX_FRAME_SAMPLES as usize
            }
        };
        let samples = u32::try_from(decoded).unwrap_or(u32::MAX);
        self.timeline.commit(rtp_timestamp, samples, placement);
        // Overlap with what the previous packet already produced: keep the RTP clock, not it.
        let cut = trim.min(decoded);
        self.pcm.drain(head..head + cut);
        let mut units = Vec::new();
        self.encoder.push(&self.pcm, &mut units)?;
        Ok(self.stamp(units))
    }

    /// `samples` of silence (at 8 kHz) on the AAC timeline, without a Speex packet: for a source
    /// that sends no audio (a ring's preview with audio `a=inactive`), so every output keeps an
    /// audio track. The Speex timeline is untouched: real audio later starts afresh.
    pub fn silence(&mut self, samples: u32) -> Result<Vec<AacFrame>, TranscodeError> {
        if self.finished {
            return Err(TranscodeError::Finished);
        }
        self.pcm.clear();
        self.pcm.resize(samples as usize, 0.0);
        let mut units = Vec::new();
        self.encoder.push(&self.pcm, &mut units)?;
        Ok(self.stamp(units))
    }

    /// Encodes what is buffered (the last frame may be short) and drains the encoder. The
    /// transcoder accepts no more input afterwards.
    pub fn flush(&mut self) -> Result<Vec<AacFrame>, TranscodeError> {
        if self.finished {
            return Ok(Vec::new());
        }
        self.finished = true;
        let mut units = Vec::new();
        self.encoder.finish(&mut units)?;
        Ok(self.stamp(units))
    }

    pub fn stats(&self) -> TranscodeStats {
        self.stats
    }

    fn stamp(&mut self, units: Vec<Bytes>) -> Vec<AacFrame> {
        units
            .into_iter()
            .map(|data| {
                let pts = self.stats.frames_out * u64::from(SAMPLES_PER_FRAME);
                self.stats.frames_out += 1;
                AacFrame {
                    pts,
                    duration: SAMPLES_PER_FRAME,
                    data,
                }
            })
            .collect()
    }
}
