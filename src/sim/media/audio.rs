//! The simulator's microphone: a speech-like signal (a gliding voiced tone with syllable-rate
//! envelope) encoded as Speex narrowband 8 kHz, one 20 ms frame (160 samples) per RTP packet
//! (RFC 5574; c300x-protocol.md §10). Encoding runs on its own thread, paced in real time.

use std::f32::consts::TAU;
use std::sync::Once;
use std::time::{Duration, Instant};

use ffmpeg::ChannelLayout;
use ffmpeg::format::Sample;
use ffmpeg::format::sample::Type as SampleType;
use ffmpeg::util::frame;
use ffmpeg_next as ffmpeg;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::MediaError;
use super::outgoing::RtpStream;

pub(super) const CLOCK_RATE: u32 = 8_000;
/// 20 ms at 8 kHz.
pub(super) const FRAME_SAMPLES: usize = 160;
const FRAME_TIME: Duration = Duration::from_millis(20);
const SR_INTERVAL: Duration = Duration::from_secs(1);

/// Quiets ffmpeg's own logging (x264 prints its settings at info level) once per process.
pub(super) fn init_ffmpeg() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if let Err(e) = ffmpeg::init() {
            tracing::warn!(error = %e, "ffmpeg init");
        }
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Error);
    });
}

/// One Speex packet and the number of the 20 ms frame it carries.
pub(super) struct EncodedAudio {
    index: u64,
    data: Vec<u8>,
}

pub(super) fn spawn_encoder(cancel: CancellationToken) -> mpsc::Receiver<EncodedAudio> {
    let (tx, rx) = mpsc::channel(16);
    let spawned = std::thread::Builder::new()
        .name("sim-speex".into())
        .spawn(move || {
            if let Err(e) = encode_loop(&tx, &cancel) {
                tracing::error!(error = %e, "simulator audio encoder stopped");
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "simulator: cannot spawn the audio encoder thread");
    }
    rx
}

fn open_encoder() -> Result<ffmpeg::encoder::Audio, MediaError> {
    init_ffmpeg();
    let codec =
        ffmpeg::encoder::find_by_name("libspeex").ok_or(MediaError::NoEncoder("libspeex"))?;
    let mut enc = ffmpeg::codec::context::Context::new_with_codec(codec)
        .encoder()
        .audio()
        .map_err(MediaError::ffmpeg("audio encoder context"))?;
    enc.set_rate(CLOCK_RATE as i32);
    enc.set_format(Sample::I16(SampleType::Packed));
    enc.set_channel_layout(ChannelLayout::MONO);
    enc.set_time_base((1, CLOCK_RATE as i32));
    let mut opts = ffmpeg::Dictionary::new();
    opts.set("frames_per_packet", "1");
    opts.set("ac", "1");
    enc.open_as_with(codec, opts)
        .map_err(MediaError::ffmpeg("open libspeex"))
}

/// The simulator's microphone without the clock: 20 ms Speex packets of the speech-like signal,
/// one per call. Blocking (libspeex); tests use it to get real Speex without a call.
pub struct SpeechEncoder {
    encoder: ffmpeg::encoder::Audio,
    packet: ffmpeg::Packet,
    voice: Voice,
    index: u64,
}

impl SpeechEncoder {
    pub fn new() -> Result<Self, MediaError> {
        Ok(Self {
            encoder: open_encoder()?,
            packet: ffmpeg::Packet::empty(),
            voice: Voice::default(),
            index: 0,
        })
    }

    /// Encodes the next 20 ms (160 samples at 8 kHz); returns the packets completed.
    pub fn encode_next(&mut self) -> Result<Vec<Vec<u8>>, MediaError> {
        let mut samples = frame::Audio::new(
            Sample::I16(SampleType::Packed),
            FRAME_SAMPLES,
            ChannelLayout::MONO,
        );
        samples.set_rate(CLOCK_RATE);
        let bytes = samples.data_mut(0);
        for chunk in bytes.chunks_exact_mut(2).take(FRAME_SAMPLES) {
            chunk.copy_from_slice(&self.voice.next_sample().to_ne_bytes());
        }
        samples.set_pts(Some((self.index * FRAME_SAMPLES as u64) as i64));
        self.index += 1;
        self.encoder
            .send_frame(&samples)
            .map_err(MediaError::ffmpeg("libspeex send_frame"))?;
        let mut out = Vec::new();
        while self.encoder.receive_packet(&mut self.packet).is_ok() {
            if let Some(data) = self.packet.data() {
                out.push(data.to_vec());
            }
        }
        Ok(out)
    }
}

fn encode_loop(
    tx: &mpsc::Sender<EncodedAudio>,
    cancel: &CancellationToken,
) -> Result<(), MediaError> {
    let mut enc = SpeechEncoder::new()?;
    let start = Instant::now();
    let mut sent = 0u64;
    for index in 0u64.. {
        let due = start + FRAME_TIME * (index as u32);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if cancel.is_cancelled() || tx.is_closed() {
            return Ok(());
        }
        for data in enc.encode_next()? {
            let out = EncodedAudio { index: sent, data };
            sent += 1;
            if tx.blocking_send(out).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// A voiced, speech-like source: pitch gliding around 150 Hz, a few harmonics, and a 3 Hz
/// syllable envelope that never goes fully silent.
#[derive(Default)]
struct Voice {
    n: u64,
    phase: f32,
}

impl Voice {
    fn next_sample(&mut self) -> i16 {
        let t = self.n as f32 / CLOCK_RATE as f32;
        self.n += 1;
        let pitch = 150.0 + 30.0 * (TAU * 0.7 * t).sin();
        self.phase = (self.phase + TAU * pitch / CLOCK_RATE as f32) % TAU;
        let harmonics: f32 = [
            (1.0, 1.0),
            (2.0, 0.6),
            (3.0, 0.45),
            (5.0, 0.25),
            (8.0, 0.15),
        ]
        .iter()
        .map(|(k, a)| a * (self.phase * k).sin())
        .sum();
        let envelope = 0.35 + 0.65 * (TAU * 3.0 * t).sin().abs();
        (harmonics / 2.45 * envelope * 12_000.0) as i16
    }
}

/// Sends Speex packets as RTP (timestamp +160 each) and a Sender Report every second.
pub(super) async fn run_sender(
    mut stream: RtpStream,
    mut packets: mpsc::Receiver<EncodedAudio>,
    cancel: CancellationToken,
) {
    let mut reports = tokio::time::interval(SR_INTERVAL);
    reports.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = reports.tick() => stream.send_sender_report().await,
            packet = packets.recv() => {
                let Some(packet) = packet else {
                    tracing::warn!("simulator audio: encoder gone, no more audio");
                    cancel.cancelled().await;
                    return;
                };
                let ts = (packet.index as u32).wrapping_mul(FRAME_SAMPLES as u32);
                // Speex frames are independent: no marker needed (RFC 5574 §3.3 sets it only
                // after silence).
                stream.send_rtp(&packet.data, false, ts).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voice_is_loud_and_varied() {
        let mut v = Voice::default();
        let s: Vec<f64> = (0..8000).map(|_| f64::from(v.next_sample())).collect();
        let rms = (s.iter().map(|x| x * x).sum::<f64>() / s.len() as f64).sqrt();
        assert!(rms > 1500.0, "rms {rms}");
        assert!(s.iter().all(|x| x.abs() < 32_000.0));
    }
}
