//! The FFmpeg side of the talk path: swresample (16-bit mono at the talker's rate → 8 kHz) and
//! the libspeex narrowband encoder, one 20 ms frame per packet, its rate mode from the call's
//! SDP (RFC 5574 §5 `vbr`). FFmpeg's libspeex wrapper switches VBR on with the `qscale` flag and
//! takes the VBR quality from `global_quality` (in units of `FF_QP2LAMBDA`); VAD goes with VBR.

use ffmpeg::ChannelLayout;
use ffmpeg::format::Sample;
use ffmpeg::format::sample::Type as SampleType;
use ffmpeg::software::resampling;
use ffmpeg::util::frame;
use ffmpeg_next as ffmpeg;

use super::{FRAME_SAMPLES, SPEEX_RATE, TalkAudioError};
use crate::proto::sdp::SpeexVbr;

/// Speex quality (0..=10), VBR and CBR alike: the top one (speech ≈ 24 kbit/s, nothing on a
/// LAN). Measured here: Speex's VBR analysis codes a steady sound as background noise — a 1 kHz
/// tone fed for 3 s decoded above −40 dBFS in 63 of 150 frames at quality 8 (6-byte frames,
/// RMS ≈ 150 after 0.4 s), in all 150 at quality 10 (10-byte frames, RMS ≈ 890); speech-like
/// input stays voiced at both (148/150).
const QUALITY: u32 = 10;
/// FFmpeg's `FF_QP2LAMBDA`: `global_quality` is a quality times this.
const QP2LAMBDA: u32 = 118;
/// Input samples resampled at once (100 ms at 48 kHz), so the output frame has a fixed size.
const RESAMPLE_CHUNK: usize = 4_800;

fn ff(context: &'static str) -> impl FnOnce(ffmpeg::Error) -> TalkAudioError {
    move |source| TalkAudioError::Ffmpeg { context, source }
}

/// libspeex narrowband through FFmpeg: 160 samples in, one packet (one frame) out.
pub(super) struct SpeexEncoder {
    encoder: ffmpeg::encoder::Audio,
    packet: ffmpeg::Packet,
    vbr: SpeexVbr,
    pts: i64,
}

impl SpeexEncoder {
    pub(super) fn new(vbr: SpeexVbr) -> Result<Self, TalkAudioError> {
        crate::media::init_ffmpeg();
        let codec =
            ffmpeg::encoder::find_by_name("libspeex").ok_or(TalkAudioError::NoCodec("libspeex"))?;
        let mut enc = ffmpeg::codec::context::Context::new_with_codec(codec)
            .encoder()
            .audio()
            .map_err(ff("libspeex encoder context"))?;
        enc.set_rate(SPEEX_RATE as i32);
        enc.set_format(Sample::I16(SampleType::Packed));
        enc.set_channel_layout(ChannelLayout::MONO);
        enc.set_time_base((1, SPEEX_RATE as i32));
        let mut opts = ffmpeg::Dictionary::new();
        opts.set("ac", "1");
        opts.set("frames_per_packet", "1");
        match vbr {
            SpeexVbr::On => {
                opts.set("flags", "+qscale");
                opts.set("global_quality", &(QUALITY * QP2LAMBDA).to_string());
            }
            SpeexVbr::Vad => {
                opts.set("vad", "1");
                opts.set("cbr_quality", &QUALITY.to_string());
            }
            SpeexVbr::Off => opts.set("cbr_quality", &QUALITY.to_string()),
        }
        let encoder = enc.open_as_with(codec, opts).map_err(ff("open libspeex"))?;
        Ok(Self {
            encoder,
            packet: ffmpeg::Packet::empty(),
            vbr,
            pts: 0,
        })
    }

    pub(super) fn vbr(&self) -> SpeexVbr {
        self.vbr
    }

    /// Encodes one 20 ms frame; libspeex answers each frame with its packet at once.
    pub(super) fn encode(
        &mut self,
        samples: &[i16; FRAME_SAMPLES],
    ) -> Result<Vec<bytes::Bytes>, TalkAudioError> {
        // A fresh frame each time: the encoder may keep a reference to what it is given.
        let mut input = frame::Audio::new(
            Sample::I16(SampleType::Packed),
            FRAME_SAMPLES,
            ChannelLayout::MONO,
        );
        input.set_rate(SPEEX_RATE);
        input.plane_mut::<i16>(0)[..FRAME_SAMPLES].copy_from_slice(samples);
        input.set_pts(Some(self.pts));
        self.pts += FRAME_SAMPLES as i64;
        self.encoder
            .send_frame(&input)
            .map_err(ff("libspeex send_frame"))?;
        let mut out = Vec::with_capacity(1);
        loop {
            match self.encoder.receive_packet(&mut self.packet) {
                Ok(()) => {
                    if let Some(data) = self.packet.data() {
                        out.push(bytes::Bytes::copy_from_slice(data));
                    }
                }
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::error::EAGAIN => break,
                Err(e) => return Err(ff("libspeex receive_packet")(e)),
            }
        }
        Ok(out)
    }
}

/// swresample from the talker's rate to 8 kHz, 16-bit mono both sides.
pub(super) struct Downsampler {
    rate: u32,
    context: resampling::Context,
    output: frame::Audio,
    capacity: usize,
}

impl Downsampler {
    pub(super) fn new(rate: u32) -> Result<Self, TalkAudioError> {
        let format = Sample::I16(SampleType::Packed);
        let context = resampling::Context::get(
            format,
            ChannelLayout::MONO,
            rate,
            format,
            ChannelLayout::MONO,
            SPEEX_RATE,
        )
        .map_err(ff("create the talk resampler"))?;
        // Output of one chunk plus what swresample may still hold from the previous one.
        let capacity = RESAMPLE_CHUNK * SPEEX_RATE.div_ceil(rate).max(1) as usize + 256;
        Ok(Self {
            rate,
            context,
            output: frame::Audio::new(format, capacity, ChannelLayout::MONO),
            capacity,
        })
    }

    pub(super) fn rate(&self) -> u32 {
        self.rate
    }

    /// Appends the 8 kHz samples for `input` (at `rate()`) to `out`.
    pub(super) fn run(&mut self, input: &[i16], out: &mut Vec<i16>) -> Result<(), TalkAudioError> {
        for chunk in input.chunks(RESAMPLE_CHUNK) {
            let mut frame = frame::Audio::new(
                Sample::I16(SampleType::Packed),
                chunk.len(),
                ChannelLayout::MONO,
            );
            frame.set_rate(self.rate);
            frame.plane_mut::<i16>(0)[..chunk.len()].copy_from_slice(chunk);
            self.output.set_samples(self.capacity);
            self.context
                .run(&frame, &mut self.output)
                .map_err(ff("resample talk audio"))?;
            let n = self.output.samples();
            out.extend_from_slice(&self.output.plane::<i16>(0)[..n]);
        }
        Ok(())
    }
}
