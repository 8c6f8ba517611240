//! The FFmpeg side of the transcoder: the native `speex` decoder (8 kHz mono), swresample
//! (f32 8 kHz → fltp at the AAC rate) and the native `aac` encoder (LC, 1024 samples/frame).
//! Safe ffmpeg-next API only, except reading the encoder's extradata (commented below).

use ffmpeg::ChannelLayout;
use ffmpeg::format::Sample;
use ffmpeg::format::sample::Type as SampleType;
use ffmpeg::software::resampling;
use ffmpeg::util::frame;
use ffmpeg_next as ffmpeg;

use super::{SPEEX_RATE, TranscodeError};

/// Samples handed to swresample at once (200 ms at 8 kHz), so its output frame has a fixed size.
const RESAMPLE_CHUNK: usize = 1_600;
/// Samples per AAC-LC frame.
pub(super) const AAC_FRAME: usize = 1_024;

fn ff(context: &'static str) -> impl FnOnce(ffmpeg::Error) -> TranscodeError {
    move |source| TranscodeError::Ffmpeg { context, source }
}

/// FFmpeg's native Speex decoder. Given a whole RTP payload it decodes every frame in it (up to
/// its terminator or the end of the bits), so one call may return 160 × n samples.
pub(super) struct SpeexDecoder {
    decoder: ffmpeg::decoder::Audio,
    frame: frame::Audio,
}

impl SpeexDecoder {
    pub(super) fn new() -> Result<Self, TranscodeError> {
        // By name: `libspeex` also decodes Speex, and the brief is the native one.
        let codec =
            ffmpeg::decoder::find_by_name("speex").ok_or(TranscodeError::NoCodec("speex"))?;
        let mut opts = ffmpeg::Dictionary::new();
        // Without a Speex header (RTP has none) the decoder takes mode and channels from these.
        opts.set("ar", &SPEEX_RATE.to_string());
        opts.set("ac", "1");
        let decoder = ffmpeg::codec::context::Context::new_with_codec(codec)
            .decoder()
            .open_as_with(codec, opts)
            .map_err(ff("open the speex decoder"))?
            .audio()
            .map_err(ff("speex decoder is not audio"))?;
        Ok(Self {
            decoder,
            frame: frame::Audio::empty(),
        })
    }

    /// Appends the decoded samples (f32, 8 kHz mono) of one payload to `out`; returns how many.
    /// An error means the payload is corrupt; `out` is then left as it was.
    pub(super) fn decode(&mut self, payload: &[u8], out: &mut Vec<f32>) -> Result<usize, String> {
        // An empty packet would put the decoder in draining mode for good.
        if payload.is_empty() {
            return Err("empty payload".into());
        }
        let start = out.len();
        let packet = ffmpeg::Packet::copy(payload);
        if let Err(e) = self.decoder.send_packet(&packet) {
            self.decoder.flush();
            return Err(e.to_string());
        }
        loop {
            match self.decoder.receive_frame(&mut self.frame) {
                Ok(()) => {
                    if let Err(e) = append_mono_f32(&self.frame, out) {
                        out.truncate(start);
                        return Err(e);
                    }
                }
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::error::EAGAIN => break,
                Err(e) => {
                    out.truncate(start);
                    self.decoder.flush();
                    return Err(e.to_string());
                }
            }
        }
        Ok(out.len() - start)
    }
}

/// Copies the first channel of a decoded frame as f32.
fn append_mono_f32(frame: &frame::Audio, out: &mut Vec<f32>) -> Result<(), String> {
    let n = frame.samples();
    if n == 0 {
        return Ok(());
    }
    let stride = match frame.format() {
        Sample::F32(SampleType::Planar) | Sample::I16(SampleType::Planar) => 1,
        _ => usize::from(frame.channels().max(1)),
    };
    match frame.format() {
        Sample::F32(_) => out.extend(frame.plane::<f32>(0).iter().step_by(stride).take(n)),
        Sample::I16(_) => out.extend(
            frame
                .plane::<i16>(0)
                .iter()
                .step_by(stride)
                .take(n)
                .map(|&s| f32::from(s) / 32_768.0),
        ),
        other => return Err(format!("unexpected decoder sample format {other:?}")),
    }
    Ok(())
}

/// swresample 8 kHz f32 → AAC rate fltp, then the AAC-LC encoder, 1024 samples at a time.
pub(super) struct AacEncoder {
    resampler: resampling::Context,
    resampled: frame::Audio,
    capacity: usize,
    encoder: ffmpeg::encoder::Audio,
    packet: ffmpeg::Packet,
    rate: u32,
    /// Resampled samples waiting for a full AAC frame.
    pending: Vec<f32>,
    /// Frames sent to the encoder (its input pts, in samples).
    sent: i64,
    extradata: Option<Vec<u8>>,
}

impl AacEncoder {
    pub(super) fn new(rate: u32, bitrate: u32) -> Result<Self, TranscodeError> {
        let resampler = resampling::Context::get(
            Sample::F32(SampleType::Packed),
            ChannelLayout::MONO,
            SPEEX_RATE,
            Sample::F32(SampleType::Planar),
            ChannelLayout::MONO,
            rate,
        )
        .map_err(ff("create the resampler"))?;
        let capacity = RESAMPLE_CHUNK * rate.div_ceil(SPEEX_RATE) as usize + 256;
        let resampled = frame::Audio::new(
            Sample::F32(SampleType::Planar),
            capacity,
            ChannelLayout::MONO,
        );

        let codec = ffmpeg::encoder::find_by_name("aac").ok_or(TranscodeError::NoCodec("aac"))?;
        let mut enc = ffmpeg::codec::context::Context::new_with_codec(codec)
            .encoder()
            .audio()
            .map_err(ff("aac encoder context"))?;
        enc.set_rate(rate as i32);
        enc.set_format(Sample::F32(SampleType::Planar));
        enc.set_channel_layout(ChannelLayout::MONO);
        enc.set_bit_rate(bitrate as usize);
        enc.set_time_base((1, rate as i32));
        let mut opts = ffmpeg::Dictionary::new();
        opts.set("ac", "1");
        opts.set("profile", "aac_low");
        // Speech from an 8 kHz intercom: the fast coder without noise substitution or temporal
        // noise shaping costs a seventh of FFmpeg's default (twoloop) per second of audio
        // (BENCHMARKS.md, `cargo bench --bench micro -- audio`), every call, whoever listens.
        opts.set("aac_coder", "fast");
        opts.set("aac_pns", "0");
        opts.set("aac_tns", "0");
        // An 8 kHz source holds nothing above 4 kHz: coding only up to there halves the
        // quantizer search again (test `the_top_of_the_speex_band_comes_through`).
        opts.set("cutoff", &(SPEEX_RATE / 2).to_string());
        let encoder = enc
            .open_as_with(codec, opts)
            .map_err(ff("open the aac encoder"))?;
        let extradata = encoder_extradata(&encoder);
        Ok(Self {
            resampler,
            resampled,
            capacity,
            encoder,
            packet: ffmpeg::Packet::empty(),
            rate,
            pending: Vec::with_capacity(AAC_FRAME * 2),
            sent: 0,
            extradata,
        })
    }

    /// The AudioSpecificConfig FFmpeg wrote (with its explicit "no SBR" extension), if any.
    pub(super) fn extradata(&self) -> Option<&[u8]> {
        self.extradata.as_deref()
    }

    /// Resamples `pcm` (8 kHz) and encodes every complete AAC frame; `out` gets the raw AUs.
    pub(super) fn push(
        &mut self,
        pcm: &[f32],
        out: &mut Vec<bytes::Bytes>,
    ) -> Result<(), TranscodeError> {
        for chunk in pcm.chunks(RESAMPLE_CHUNK) {
            let mut input = frame::Audio::new(
                Sample::F32(SampleType::Packed),
                chunk.len(),
                ChannelLayout::MONO,
            );
            input.set_rate(SPEEX_RATE);
            input.plane_mut::<f32>(0)[..chunk.len()].copy_from_slice(chunk);
            self.resampled.set_samples(self.capacity);
            self.resampler
                .run(&input, &mut self.resampled)
                .map_err(ff("resample"))?;
            self.take_resampled();
            self.encode_full_frames(out)?;
        }
        Ok(())
    }

    /// Drains the resampler and the encoder (last frame may be short). Ends the stream.
    pub(super) fn finish(&mut self, out: &mut Vec<bytes::Bytes>) -> Result<(), TranscodeError> {
        loop {
            self.resampled.set_samples(self.capacity);
            self.resampler
                .flush(&mut self.resampled)
                .map_err(ff("drain the resampler"))?;
            if self.resampled.samples() == 0 {
                break;
            }
            self.take_resampled();
        }
        self.encode_full_frames(out)?;
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.send(&rest, out)?;
        }
        self.encoder.send_eof().map_err(ff("aac send_eof"))?;
        self.receive(out)
    }

    fn take_resampled(&mut self) {
        let n = self.resampled.samples();
        self.pending
            .extend_from_slice(&self.resampled.plane::<f32>(0)[..n]);
    }

    fn encode_full_frames(&mut self, out: &mut Vec<bytes::Bytes>) -> Result<(), TranscodeError> {
        let mut done = 0;
        while self.pending.len() - done >= AAC_FRAME {
            let block: [f32; AAC_FRAME] = {
                let mut b = [0.0; AAC_FRAME];
                b.copy_from_slice(&self.pending[done..done + AAC_FRAME]);
                b
            };
            self.send(&block, out)?;
            done += AAC_FRAME;
        }
        self.pending.drain(..done);
        Ok(())
    }

    fn send(&mut self, samples: &[f32], out: &mut Vec<bytes::Bytes>) -> Result<(), TranscodeError> {
        // A fresh frame each time: the encoder keeps a reference to what it is given.
        let mut frame = frame::Audio::new(
            Sample::F32(SampleType::Planar),
            samples.len(),
            ChannelLayout::MONO,
        );
        frame.set_rate(self.rate);
        frame.plane_mut::<f32>(0)[..samples.len()].copy_from_slice(samples);
        frame.set_pts(Some(self.sent));
        self.sent += samples.len() as i64;
        self.encoder
            .send_frame(&frame)
            .map_err(ff("aac send_frame"))?;
        self.receive(out)
    }

    fn receive(&mut self, out: &mut Vec<bytes::Bytes>) -> Result<(), TranscodeError> {
        loop {
            match self.encoder.receive_packet(&mut self.packet) {
                Ok(()) => {
                    if let Some(data) = self.packet.data() {
                        out.push(bytes::Bytes::copy_from_slice(data));
                    }
                }
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::error::EAGAIN => {
                    return Ok(());
                }
                Err(ffmpeg::Error::Eof) => return Ok(()),
                Err(e) => return Err(ff("aac receive_packet")(e)),
            }
        }
    }
}

/// Reads `AVCodecContext.extradata` after `avcodec_open2`: ffmpeg-next has no safe accessor.
fn encoder_extradata(encoder: &ffmpeg::encoder::Audio) -> Option<Vec<u8>> {
    #[allow(unsafe_code)]
    // SAFETY: the context is open and owned by `encoder` for this whole call; FFmpeg sets
    // `extradata`/`extradata_size` during open and leaves them alone until the context is freed;
    // a null pointer or a non-positive size is handled before building the slice.
    let data = unsafe {
        let ctx = encoder.as_ptr();
        let ptr = (*ctx).extradata;
        let len = usize::try_from((*ctx).extradata_size).unwrap_or(0);
        if ptr.is_null() || len == 0 {
            None
        } else {
            Some(std::slice::from_raw_parts(ptr, len).to_vec())
        }
    };
    data
}
