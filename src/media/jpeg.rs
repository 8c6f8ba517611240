//! H.264 → JPEG with FFmpeg: the `h264` decoder, swscale to full-range YUV, the `mjpeg` encoder,
//! and the generated "no image yet" placeholder. Used by MJPEG and snapshots (streaming.md §7).
//! Blocking calls: run them on a thread of their own or in `spawn_blocking`, never on the runtime.

use bytes::Bytes;
use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::util::frame;
use ffmpeg_next as ffmpeg;

#[derive(Debug, thiserror::Error)]
pub enum JpegError {
    #[error("FFmpeg has no {0} codec")]
    NoCodec(&'static str),
    #[error("{context}: {source}")]
    Ffmpeg {
        context: &'static str,
        #[source]
        source: ffmpeg::Error,
    },
    #[error("the keyframe decoded to no picture")]
    NoPicture,
}

fn ff(context: &'static str) -> impl FnOnce(ffmpeg::Error) -> JpegError {
    move |source| JpegError::Ffmpeg { context, source }
}

/// JPEG quality 1–100 (mapped onto the MJPEG encoder's fixed quantiser 31–2).
pub const DEFAULT_QUALITY: u8 = 80;

fn qscale(quality: u8) -> i32 {
    let q = i32::from(quality.clamp(1, 100));
    2 + (100 - q) * 29 / 99
}

/// A stateful H.264 decoder fed whole access units in Annex B form.
pub struct H264Decoder {
    decoder: ffmpeg::decoder::Video,
    picture: frame::Video,
}

impl H264Decoder {
    pub fn new() -> Result<Self, JpegError> {
        super::init_ffmpeg();
        let codec =
            ffmpeg::decoder::find(ffmpeg::codec::Id::H264).ok_or(JpegError::NoCodec("h264"))?;
        let mut opts = ffmpeg::Dictionary::new();
        // One thread: frame threading would hold pictures back by a frame per thread.
        opts.set("threads", "1");
        opts.set("flags", "low_delay");
        let decoder = ffmpeg::codec::context::Context::new_with_codec(codec)
            .decoder()
            .open_as_with(codec, opts)
            .map_err(ff("open the h264 decoder"))?
            .video()
            .map_err(ff("h264 decoder is not video"))?;
        Ok(Self {
            decoder,
            picture: frame::Video::empty(),
        })
    }

    /// Decodes one access unit; the picture it completes, if any. A corrupt unit is an error
    /// and the decoder stays usable (it recovers at the next IDR).
    pub fn decode(&mut self, annexb: &[u8]) -> Result<Option<&frame::Video>, JpegError> {
        if annexb.is_empty() {
            return Ok(None);
        }
        self.decoder
            .send_packet(&ffmpeg::Packet::copy(annexb))
            .map_err(ff("h264 send_packet"))?;
        self.receive()
    }

    /// Ends the stream and returns the last picture still held by the decoder.
    pub fn finish(&mut self) -> Result<Option<&frame::Video>, JpegError> {
        self.decoder.send_eof().map_err(ff("h264 send_eof"))?;
        self.receive()
    }

    fn receive(&mut self) -> Result<Option<&frame::Video>, JpegError> {
        let mut got = false;
        // `avcodec_receive_frame` empties the frame it is given even when it has nothing, so
        // receive into a scratch frame and keep the last good one.
        let mut scratch = frame::Video::empty();
        loop {
            match self.decoder.receive_frame(&mut scratch) {
                Ok(()) => {
                    std::mem::swap(&mut self.picture, &mut scratch);
                    got = true;
                }
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::error::EAGAIN => break,
                Err(ffmpeg::Error::Eof) => break,
                Err(e) => return Err(ff("h264 receive_frame")(e)),
            }
        }
        Ok(got.then_some(&self.picture))
    }
}

/// Encodes decoded pictures as baseline JPEG; reopens itself when the picture size changes.
pub struct JpegEncoder {
    quality: u8,
    state: Option<EncoderState>,
    packet: ffmpeg::Packet,
    pts: i64,
}

struct EncoderState {
    size: (u32, u32, Pixel),
    scaler: scaling::Context,
    scaled: frame::Video,
    encoder: ffmpeg::encoder::Video,
}

impl JpegEncoder {
    pub fn new(quality: u8) -> Self {
        super::init_ffmpeg();
        Self {
            quality,
            state: None,
            packet: ffmpeg::Packet::empty(),
            pts: 0,
        }
    }

    fn open(&self, w: u32, h: u32, format: Pixel) -> Result<EncoderState, JpegError> {
        let codec =
            ffmpeg::encoder::find(ffmpeg::codec::Id::MJPEG).ok_or(JpegError::NoCodec("mjpeg"))?;
        let mut enc = ffmpeg::codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()
            .map_err(ff("mjpeg encoder context"))?;
        enc.set_width(w);
        enc.set_height(h);
        enc.set_format(Pixel::YUVJ420P);
        enc.set_time_base((1, 90_000));
        let q = qscale(self.quality);
        enc.set_qmin(q);
        enc.set_qmax(q);
        enc.set_bit_rate(50_000_000);
        let encoder = enc
            .open_as_with(codec, ffmpeg::Dictionary::new())
            .map_err(ff("open the mjpeg encoder"))?;
        let scaler = scaling::Context::get(
            format,
            w,
            h,
            Pixel::YUVJ420P,
            w,
            h,
            scaling::Flags::BILINEAR,
        )
        .map_err(ff("create the scaler"))?;
        Ok(EncoderState {
            size: (w, h, format),
            scaler,
            scaled: frame::Video::empty(),
            encoder,
        })
    }

    /// One JPEG for `picture` (any size and pixel format the scaler knows).
    pub fn encode(&mut self, picture: &frame::Video) -> Result<Bytes, JpegError> {
        let key = (picture.width(), picture.height(), picture.format());
        if self.state.as_ref().is_none_or(|s| s.size != key) {
            self.state = Some(self.open(key.0, key.1, key.2)?);
        }
        let Some(state) = self.state.as_mut() else {
            return Err(JpegError::NoPicture);
        };
        state
            .scaler
            .run(picture, &mut state.scaled)
            .map_err(ff("scale to yuvj420p"))?;
        state.scaled.set_pts(Some(self.pts));
        self.pts += 1;
        state
            .encoder
            .send_frame(&state.scaled)
            .map_err(ff("mjpeg send_frame"))?;
        let mut out = None;
        loop {
            match state.encoder.receive_packet(&mut self.packet) {
                Ok(()) => {
                    if let Some(d) = self.packet.data() {
                        out = Some(Bytes::copy_from_slice(d));
                    }
                }
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::error::EAGAIN => break,
                Err(ffmpeg::Error::Eof) => break,
                Err(e) => return Err(ff("mjpeg receive_packet")(e)),
            }
        }
        out.ok_or(JpegError::NoPicture)
    }
}

/// Decodes one keyframe (Annex B, SPS/PPS included) into a JPEG: what a cached snapshot needs.
pub fn keyframe_to_jpeg(annexb: &[u8], quality: u8) -> Result<Bytes, JpegError> {
    let mut decoder = H264Decoder::new()?;
    let mut encoder = JpegEncoder::new(quality);
    if let Some(p) = decoder.decode(annexb)? {
        return encoder.encode(p);
    }
    match decoder.finish()? {
        Some(p) => encoder.encode(p),
        None => Err(JpegError::NoPicture),
    }
}

/// 5x7 glyphs for the placeholder text, one row per byte (bit 4 = leftmost column).
fn glyph(c: char) -> [u8; 7] {
    match c {
        'N' => [0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x11],
        'O' => [0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e],
        'I' => [0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e],
        'M' => [0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11],
        'A' => [0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11],
        'G' => [0x0e, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0f],
        'E' => [0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f],
        'Y' => [0x11, 0x11, 0x0a, 0x04, 0x04, 0x04, 0x04],
        'T' => [0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        _ => [0; 7],
    }
}

/// A dark grey picture of `width` x `height` with "NO IMAGE YET" in the middle, as JPEG.
pub fn placeholder(width: u32, height: u32) -> Result<Bytes, JpegError> {
    const TEXT: &str = "NO IMAGE YET";
    let (w, h) = (width.clamp(64, 4096) & !1, height.clamp(32, 4096) & !1);
    let mut picture = frame::Video::new(Pixel::YUV420P, w, h);
    let (wu, hu) = (w as usize, h as usize);
    let cols = TEXT.chars().count() * 6;
    let scale = (wu * 8 / 10 / cols).clamp(1, 8);
    let (x0, y0) = (
        wu.saturating_sub(cols * scale) / 2,
        hu.saturating_sub(7 * scale) / 2,
    );
    let stride = picture.stride(0);
    let luma = picture.data_mut(0);
    for y in 0..hu {
        for x in 0..wu {
            let (gx, gy) = ((x.wrapping_sub(x0)) / scale, (y.wrapping_sub(y0)) / scale);
            let on = x >= x0 && y >= y0 && gy < 7 && gx < cols && {
                let c = TEXT.chars().nth(gx / 6).unwrap_or(' ');
                let col = gx % 6;
                col < 5 && glyph(c)[gy] & (0x10 >> col) != 0
            };
            if let Some(p) = luma.get_mut(y * stride + x) {
                *p = if on { 220 } else { 48 };
            }
        }
    }
    for plane in 1..3 {
        picture.data_mut(plane).fill(128);
    }
    JpegEncoder::new(DEFAULT_QUALITY).encode(&picture)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_is_a_jpeg_of_the_asked_size() {
        let jpeg = placeholder(400, 288).expect("placeholder");
        assert_eq!(&jpeg[..2], &[0xff, 0xd8]);
        assert_eq!(&jpeg[jpeg.len() - 2..], &[0xff, 0xd9]);
        // Decode it back with FFmpeg's mjpeg decoder to check the size.
        let codec = ffmpeg::decoder::find(ffmpeg::codec::Id::MJPEG).expect("mjpeg decoder");
        let mut dec = ffmpeg::codec::context::Context::new_with_codec(codec)
            .decoder()
            .video()
            .expect("video");
        dec.send_packet(&ffmpeg::Packet::copy(&jpeg)).expect("send");
        let mut f = frame::Video::empty();
        dec.receive_frame(&mut f).expect("frame");
        assert_eq!((f.width(), f.height()), (400, 288));
    }

    #[test]
    fn quality_maps_onto_the_quantiser_range() {
        assert_eq!(qscale(100), 2);
        assert_eq!(qscale(1), 31);
        assert_eq!(qscale(0), 31);
        assert!(qscale(DEFAULT_QUALITY) < 10);
    }

    #[test]
    fn garbage_is_an_error_or_no_picture_not_a_panic() {
        let mut d = H264Decoder::new().expect("decoder");
        let _ = d.decode(&[0, 0, 0, 1, 0x65, 0xff, 0x00, 0x12]);
        assert!(keyframe_to_jpeg(&[0, 0, 0, 1, 0x41, 1, 2, 3], 80).is_err());
    }
}
