//! The talk path's encoder (issue 17; c300x-protocol.md §9 talkback row, §10): what a talker
//! sends — 16-bit PCM at any rate (the browser's microphone) or G.711 μ-law/A-law RTP payloads
//! (an ONVIF backchannel) — becomes 8 kHz (swresample), then 20 ms Speex narrowband frames
//! (libspeex, the call's `vbr` mode), each stamped with when its first sample arrived. No RTP,
//! no clock: the call's audio task (`intercom::media`) paces and sends the frames.

mod codec;

use std::collections::VecDeque;
use std::time::Instant;

use ffmpeg_next as ffmpeg;

use crate::intercom::media::TalkFrame;
use crate::proto::g711::Law;
use crate::proto::sdp::SpeexVbr;

use codec::{Downsampler, SpeexEncoder};

/// Speex narrowband's rate (and the intercom's audio RTP clock).
pub const SPEEX_RATE: u32 = 8_000;
/// One 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;
/// PCM rates a talker may send (the browser's AudioContext runs at 44.1 or 48 kHz).
pub const PCM_RATES: std::ops::RangeInclusive<u32> = 8_000..=192_000;

#[derive(Debug, thiserror::Error)]
pub enum TalkAudioError {
    #[error("talk audio at {0} Hz is not supported (8000..=192000 Hz, 16-bit mono)")]
    Rate(u32),
    #[error("FFmpeg has no {0} codec")]
    NoCodec(&'static str),
    #[error("FFmpeg: {context}: {source}")]
    Ffmpeg {
        context: &'static str,
        source: ffmpeg::Error,
    },
}

/// One piece of a talker's audio, as it arrived.
#[derive(Debug, Clone, Copy)]
pub enum TalkInput<'a> {
    /// 16-bit signed mono PCM at `rate` Hz (the WebSocket push-to-talk).
    Pcm16 { rate: u32, samples: &'a [i16] },
    /// One G.711 RTP payload, 8 kHz (the RTSP backchannel: PT 0 PCMU, PT 8 PCMA).
    G711 { law: Law, payload: &'a [u8] },
}

/// Counters of one encoder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncoderCounts {
    /// Input samples taken (at their own rate).
    pub samples_in: u64,
    /// 20 ms Speex frames produced.
    pub frames: u64,
    /// Speex bytes produced.
    pub bytes: u64,
}

/// PCM or G.711 in, 20 ms Speex NB frames out. Blocking work (FFmpeg), about a tenth of a
/// millisecond per frame; safe to call from a task.
pub struct TalkEncoder {
    speex: SpeexEncoder,
    resampler: Option<Downsampler>,
    /// 8 kHz samples waiting for a full frame.
    pending: Vec<i16>,
    /// For each input piece still (partly) in `pending`: how many of its samples are left there,
    /// and when it arrived.
    arrivals: VecDeque<(usize, Instant)>,
    scratch: Vec<i16>,
    counts: EncoderCounts,
}

impl TalkEncoder {
    pub fn new(vbr: SpeexVbr) -> Result<Self, TalkAudioError> {
        Ok(Self {
            speex: SpeexEncoder::new(vbr)?,
            resampler: None,
            pending: Vec::with_capacity(FRAME_SAMPLES * 4),
            arrivals: VecDeque::new(),
            scratch: Vec::new(),
            counts: EncoderCounts::default(),
        })
    }

    /// The rate mode of the frames produced.
    pub fn vbr(&self) -> SpeexVbr {
        self.speex.vbr()
    }

    /// Switches the Speex rate mode (a new call may ask for another); a new encoder, the
    /// samples waiting stay.
    pub fn set_vbr(&mut self, vbr: SpeexVbr) -> Result<(), TalkAudioError> {
        if vbr != self.speex.vbr() {
            self.speex = SpeexEncoder::new(vbr)?;
        }
        Ok(())
    }

    /// Takes one piece of audio that arrived at `now`; returns the frames it completed, each
    /// stamped with the arrival of its first sample.
    pub fn push(
        &mut self,
        now: Instant,
        input: TalkInput<'_>,
    ) -> Result<Vec<TalkFrame>, TalkAudioError> {
        let before = self.pending.len();
        match input {
            TalkInput::G711 { law, payload } => {
                self.counts.samples_in += payload.len() as u64;
                law.decode_into(payload, &mut self.pending);
            }
            TalkInput::Pcm16 { rate, samples } => {
                if !PCM_RATES.contains(&rate) {
                    return Err(TalkAudioError::Rate(rate));
                }
                self.counts.samples_in += samples.len() as u64;
                if rate == SPEEX_RATE {
                    self.pending.extend_from_slice(samples);
                } else {
                    let resampler = match self.resampler.take() {
                        Some(r) if r.rate() == rate => r,
                        _ => Downsampler::new(rate)?,
                    };
                    let resampler = self.resampler.insert(resampler);
                    self.scratch.clear();
                    resampler.run(samples, &mut self.scratch)?;
                    self.pending.extend_from_slice(&self.scratch);
                }
            }
        }
        let added = self.pending.len() - before;
        if added > 0 {
            self.arrivals.push_back((added, now));
        }
        self.encode_full_frames(now)
    }

    /// Forgets samples waiting for a full frame (the talker paused: they would be stale).
    pub fn clear(&mut self) {
        self.pending.clear();
        self.arrivals.clear();
    }

    pub fn counts(&self) -> EncoderCounts {
        self.counts
    }

    fn encode_full_frames(&mut self, now: Instant) -> Result<Vec<TalkFrame>, TalkAudioError> {
        let mut frames = Vec::with_capacity(self.pending.len() / FRAME_SAMPLES);
        let mut done = 0;
        while self.pending.len() - done >= FRAME_SAMPLES {
            let mut block = [0i16; FRAME_SAMPLES];
            block.copy_from_slice(&self.pending[done..done + FRAME_SAMPLES]);
            let captured = self.consume_arrivals(FRAME_SAMPLES).unwrap_or(now);
            for speex in self.speex.encode(&block)? {
                self.counts.frames += 1;
                self.counts.bytes += speex.len() as u64;
                frames.push(TalkFrame { speex, captured });
            }
            done += FRAME_SAMPLES;
        }
        self.pending.drain(..done);
        Ok(frames)
    }

    /// Takes `n` samples off the arrival list; returns when the first of them arrived.
    fn consume_arrivals(&mut self, mut n: usize) -> Option<Instant> {
        let first = self.arrivals.front().map(|(_, at)| *at);
        while n > 0 {
            let Some((left, _)) = self.arrivals.front_mut() else {
                break;
            };
            if *left > n {
                *left -= n;
                break;
            }
            n -= *left;
            self.arrivals.pop_front();
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn tone(rate: u32, hz: f32, n: usize, offset: usize) -> Vec<i16> {
        (offset..offset + n)
            .map(|i| {
                let t = i as f32 / rate as f32;
                ((std::f32::consts::TAU * hz * t).sin() * 10_000.0) as i16
            })
            .collect()
    }

    #[test]
    fn pcm_at_48_khz_in_small_pieces_gives_one_frame_per_20_ms_stamped_with_its_first_sample() {
        let mut enc = TalkEncoder::new(SpeexVbr::On).expect("encoder");
        let t0 = Instant::now();
        let mut frames = Vec::new();
        // 1 s in AudioWorklet-sized pieces of 128 samples (2.67 ms), each arriving on time.
        let mut offset = 0;
        while offset < 48_000 {
            let at = t0 + Duration::from_micros(offset as u64 * 1_000_000 / 48_000);
            let piece = tone(48_000, 1_000.0, 128, offset);
            let input = TalkInput::Pcm16 {
                rate: 48_000,
                samples: &piece,
            };
            frames.extend(enc.push(at, input).expect("push"));
            offset += 128;
        }
        // swresample keeps a few samples back; all but the last frame are out.
        assert!((48..=50).contains(&frames.len()), "{} frames", frames.len());
        for (i, f) in frames.iter().enumerate() {
            let start = t0 + Duration::from_millis(20 * i as u64);
            let off = f.captured.duration_since(start);
            assert!(off < Duration::from_millis(4), "frame {i}: {off:?}");
        }
        let c = enc.counts();
        assert_eq!(c.samples_in, 48_000);
        assert_eq!(c.frames, frames.len() as u64);
        // Every frame is a real Speex frame (VBR: 46 bytes at the onset, then 10 for a steady
        // tone), never the 1-byte silence.
        assert!(frames.iter().all(|f| f.speex.len() >= 10));
        assert!(
            frames.iter().any(|f| f.speex.len() > 20),
            "VBR spends more at the onset"
        );
    }

    #[test]
    fn g711_payloads_of_20_ms_give_one_frame_each() {
        for law in [Law::Mu, Law::A] {
            let mut enc = TalkEncoder::new(SpeexVbr::Off).expect("encoder");
            let t0 = Instant::now();
            for i in 0..10u32 {
                let at = t0 + Duration::from_millis(20 * u64::from(i));
                let frames = enc
                    .push(
                        at,
                        TalkInput::G711 {
                            law,
                            payload: &[0x55; 160],
                        },
                    )
                    .expect("push");
                assert_eq!(frames.len(), 1);
                assert_eq!(frames[0].captured, at);
            }
            // A 30 ms payload: one frame now (stamped with this payload), 10 ms wait.
            let at = t0 + Duration::from_secs(1);
            let frames = enc
                .push(
                    at,
                    TalkInput::G711 {
                        law,
                        payload: &[0xd5; 240],
                    },
                )
                .expect("push");
            assert_eq!(frames.len(), 1);
            let later = at + Duration::from_millis(30);
            let frames = enc
                .push(
                    later,
                    TalkInput::G711 {
                        law,
                        payload: &[0xd5; 80],
                    },
                )
                .expect("push");
            assert_eq!(frames.len(), 1);
            assert_eq!(
                frames[0].captured, at,
                "its first sample came with the earlier payload"
            );
        }
    }

    #[test]
    fn bad_rate_is_refused_and_vbr_can_change() {
        let mut enc = TalkEncoder::new(SpeexVbr::On).expect("encoder");
        let err = enc
            .push(
                Instant::now(),
                TalkInput::Pcm16 {
                    rate: 4_000,
                    samples: &[0; 10],
                },
            )
            .expect_err("4 kHz");
        assert!(err.to_string().contains("4000 Hz"), "{err}");
        enc.set_vbr(SpeexVbr::Vad).expect("vad");
        assert_eq!(enc.vbr(), SpeexVbr::Vad);
        let frames = enc
            .push(
                Instant::now(),
                TalkInput::Pcm16 {
                    rate: 16_000,
                    samples: &tone(16_000, 500.0, 640, 0),
                },
            )
            .expect("push");
        assert!(!frames.is_empty());
    }
}
