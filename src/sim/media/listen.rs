//! The unit's loudspeaker: the bridge's call audio (keep-alives or talk: c300x-protocol.md §5,
//! §9, §10) decoded with libspeex through FFmpeg, the decoder of the unit's Linphone (FFmpeg's
//! native `speex` decoder drifts on steady tones: a 1 kHz tone coded CBR decodes at 10× full
//! scale after 3 s, measured here), and measured: voiced frames, dominant frequency (Goertzel),
//! level, and whether the stream keeps one SSRC and a +160-per-packet clock.

use ffmpeg::util::frame;
use ffmpeg_next as ffmpeg;

use super::MediaError;

/// Speex narrowband: 8 kHz, 20 ms frames.
const RATE: f32 = 8_000.0;
const FRAME: u32 = 160;
/// A frame whose RMS is above this (about −40 dBFS) is voiced.
pub const VOICED_RMS: f32 = 328.0;
/// Goertzel bank: 100..=3900 Hz in 20 Hz steps, over blocks of 400 voiced samples (50 ms).
const LOW_HZ: u32 = 100;
const STEP_HZ: u32 = 20;
const BINS: usize = 191;
const BLOCK: usize = 400;

/// What the loudspeaker heard on one call so far.
#[derive(Debug, Clone)]
pub struct Hearing {
    /// Payloads decoded, and those the decoder refused.
    pub decoded: u64,
    pub decode_errors: u64,
    /// Decoded frames above [`VOICED_RMS`], of coded frames (the bridge's voice).
    pub voiced_frames: u64,
    /// The 1-byte silence keep-alives (`0x00`) among the payloads.
    pub keepalives: u64,
    /// Keep-alives that decoded above [`VOICED_RMS`]: libspeex rings on from the last voiced
    /// frame through them (after a spurt, or where a late talk frame left a gap). Not voiced:
    /// the bridge sent no voice there.
    pub keepalives_ringing: u64,
    /// Packets with the RTP marker set (talk spurt starts).
    pub markers: u64,
    /// Packets that broke the stream: another SSRC, a sequence gap, or a timestamp step other
    /// than 160 per packet.
    pub discontinuities: u64,
    /// Sum of the voiced frames' RMS (for their mean level).
    voiced_rms_sum: f64,
    /// Summed Goertzel power per bin over the voiced blocks.
    power: Vec<f64>,
    block: Vec<f32>,
    last: Option<(u32, u16, u32)>,
}

impl Default for Hearing {
    fn default() -> Self {
        Self {
            decoded: 0,
            decode_errors: 0,
            voiced_frames: 0,
            keepalives: 0,
            keepalives_ringing: 0,
            markers: 0,
            discontinuities: 0,
            voiced_rms_sum: 0.0,
            power: vec![0.0; BINS],
            block: Vec::with_capacity(BLOCK),
            last: None,
        }
    }
}

impl Hearing {
    /// The strongest frequency of the voiced audio, in Hz (`None` before any voiced block).
    pub fn dominant_hz(&self) -> Option<u32> {
        let (bin, power) = self
            .power
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))?;
        (*power > 0.0).then(|| LOW_HZ + STEP_HZ * bin as u32)
    }

    /// The mean RMS of the voiced frames in dB below full scale (16-bit), rounded.
    pub fn voiced_dbfs(&self) -> Option<i32> {
        (self.voiced_frames > 0).then(|| {
            let rms = self.voiced_rms_sum / self.voiced_frames as f64;
            (20.0 * (rms / 32_768.0).log10()).round() as i32
        })
    }

    /// One packet's header, for the continuity and marker counts.
    pub fn on_header(&mut self, ssrc: u32, seq: u16, timestamp: u32, marker: bool) {
        if marker {
            self.markers += 1;
        }
        if let Some((s, q, t)) = self.last {
            let step = seq.wrapping_sub(q);
            let expected = t.wrapping_add(FRAME.wrapping_mul(u32::from(step)));
            if s != ssrc || step != 1 || timestamp != expected {
                self.discontinuities += 1;
            }
        }
        self.last = Some((ssrc, seq, timestamp));
    }

    /// One decoded 20 ms frame (f32 in −1..1 scaled to 16-bit).
    pub fn on_frame(&mut self, samples: &[f32]) {
        if samples.is_empty() {
            return;
        }
        let rms = rms(samples);
        if rms < VOICED_RMS {
            return;
        }
        self.voiced_frames += 1;
        self.voiced_rms_sum += f64::from(rms);
        for s in samples {
            self.block.push(*s);
            if self.block.len() == BLOCK {
                self.analyse_block();
                self.block.clear();
            }
        }
    }

    /// Goertzel power of each bin over a Hann-windowed block.
    fn analyse_block(&mut self) {
        let n = self.block.len() as f32;
        let windowed: Vec<f32> = self
            .block
            .iter()
            .enumerate()
            .map(|(i, s)| s * (0.5 - 0.5 * (std::f32::consts::TAU * i as f32 / n).cos()))
            .collect();
        for (bin, power) in self.power.iter_mut().enumerate() {
            let hz = (LOW_HZ + STEP_HZ * bin as u32) as f32;
            let coeff = 2.0 * (std::f32::consts::TAU * hz / RATE).cos();
            let (mut s1, mut s2) = (0.0f32, 0.0f32);
            for x in &windowed {
                let s0 = x + coeff * s1 - s2;
                s2 = s1;
                s1 = s0;
            }
            *power += f64::from(s1 * s1 + s2 * s2 - coeff * s1 * s2);
        }
    }
}

/// libspeex's decoder through FFmpeg, narrowband mono, no Speex header (RTP carries none).
pub(super) struct Loudspeaker {
    decoder: ffmpeg::decoder::Audio,
    frame: frame::Audio,
    samples: Vec<f32>,
}

impl Loudspeaker {
    pub(super) fn new() -> Result<Self, MediaError> {
        super::audio::init_ffmpeg();
        let codec =
            ffmpeg::decoder::find_by_name("libspeex").ok_or(MediaError::NoDecoder("libspeex"))?;
        let mut opts = ffmpeg::Dictionary::new();
        opts.set("ar", "8000");
        opts.set("ac", "1");
        let decoder = ffmpeg::codec::context::Context::new_with_codec(codec)
            .decoder()
            .open_as_with(codec, opts)
            .map_err(MediaError::ffmpeg("open the libspeex decoder"))?
            .audio()
            .map_err(MediaError::ffmpeg("libspeex decoder is not audio"))?;
        Ok(Self {
            decoder,
            frame: frame::Audio::empty(),
            samples: Vec::with_capacity(FRAME as usize),
        })
    }

    /// Decodes one RTP payload into `hearing`.
    pub(super) fn hear(&mut self, payload: &[u8], hearing: &mut Hearing) {
        let keepalive = payload == [0x00];
        if keepalive {
            hearing.keepalives += 1;
        }
        if payload.is_empty()
            || self
                .decoder
                .send_packet(&ffmpeg::Packet::copy(payload))
                .is_err()
        {
            hearing.decode_errors += 1;
            self.decoder.flush();
            return;
        }
        hearing.decoded += 1;
        while self.decoder.receive_frame(&mut self.frame).is_ok() {
            self.samples.clear();
            let n = self.frame.samples();
            match self.frame.format() {
                ffmpeg::format::Sample::F32(_) => self
                    .samples
                    .extend(self.frame.plane::<f32>(0)[..n].iter().map(|s| s * 32_768.0)),
                ffmpeg::format::Sample::I16(_) => self.samples.extend(
                    self.frame.plane::<i16>(0)[..n]
                        .iter()
                        .map(|s| f32::from(*s)),
                ),
                _ => {}
            }
            if !keepalive {
                hearing.on_frame(&self.samples);
            } else if rms(&self.samples) >= VOICED_RMS {
                hearing.keepalives_ringing += 1;
            }
        }
    }
}

/// Root mean square of 16-bit-scaled samples (0 for none).
fn rms(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|s| s * s).sum::<f32>() / samples.len() as f32).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f32, amplitude: f32, frames: usize) -> Vec<Vec<f32>> {
        (0..frames)
            .map(|f| {
                (0..FRAME as usize)
                    .map(|i| {
                        let t = (f * FRAME as usize + i) as f32 / RATE;
                        amplitude * (std::f32::consts::TAU * hz * t).sin()
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn voiced_frames_and_dominant_frequency() {
        let mut h = Hearing::default();
        assert_eq!(h.dominant_hz(), None);
        for f in tone(1_000.0, 8_000.0, 50) {
            h.on_frame(&f);
        }
        for f in tone(440.0, 100.0, 50) {
            h.on_frame(&f); // below the threshold: not voiced, not analysed
        }
        assert_eq!(h.voiced_frames, 50);
        assert_eq!(h.dominant_hz(), Some(1_000));
        // 8000 peak = RMS 5657 = −15 dBFS.
        assert_eq!(h.voiced_dbfs(), Some(-15));
        let mut h = Hearing::default();
        for f in tone(730.0, 3_000.0, 20) {
            h.on_frame(&f);
        }
        let hz = h.dominant_hz().expect("voiced");
        assert!(hz.abs_diff(730) <= 10, "{hz}");
    }

    #[test]
    fn continuity_of_the_stream() {
        let mut h = Hearing::default();
        h.on_header(7, 65_535, 4_294_967_200, false);
        h.on_header(7, 0, 64, true); // wraps of both: fine
        h.on_header(7, 1, 224, false);
        assert_eq!((h.discontinuities, h.markers), (0, 1));
        h.on_header(7, 3, 544, false); // a lost packet
        h.on_header(7, 4, 900, false); // a clock jump
        h.on_header(8, 5, 1060, false); // another SSRC
        assert_eq!(h.discontinuities, 3);
    }
}
