//! The simulator's camera: a synthetic 400x288 picture (moving pattern + frame counter) encoded
//! with libx264 Baseline, 10 fps, IDR every 2 s or on PLI, SPS/PPS in-band before every IDR
//! (c300x-protocol.md §10), packetized per RFC 6184 and sent as 90 kHz RTP. Encoding runs on
//! its own thread so it never blocks the tokio runtime.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ffmpeg::format::Pixel;
use ffmpeg::util::frame;
use ffmpeg::util::picture;
use ffmpeg_next as ffmpeg;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::outgoing::RtpStream;
use super::{MediaError, font};
use crate::proto::h264::{self, NAL_IDR, NAL_PPS, NAL_SPS, Packetizer, split_annexb};
use crate::sim::stats::SimStats;

pub(super) const CLOCK_RATE: u32 = 90_000;
pub(super) const WIDTH: u32 = 400;
pub(super) const HEIGHT: u32 = 288;
const FPS: u32 = 10;
/// GOP of 2 s.
const KEYINT: u32 = 20;
const BIT_RATE: usize = 300_000;
const SR_INTERVAL: Duration = Duration::from_secs(1);

/// One encoded access unit, Annex-B, with its frame number (pts in 1/FPS units).
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    pub index: u64,
    pub annexb: Vec<u8>,
}

/// Starts the encoder thread; it ends when `cancel` fires or the receiver is dropped.
pub(super) fn spawn_encoder(
    force_idr: Arc<AtomicBool>,
    cancel: CancellationToken,
    label: Option<String>,
) -> mpsc::Receiver<EncodedFrame> {
    let (tx, rx) = mpsc::channel(8);
    let spawned = std::thread::Builder::new()
        .name("sim-h264".into())
        .spawn(move || {
            if let Err(e) = encode_loop(&tx, &force_idr, &cancel, label) {
                tracing::error!(error = %e, "simulator video encoder stopped");
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "simulator: cannot spawn the video encoder thread");
    }
    rx
}

/// The simulator's camera without the clock: frame `n` of the test pattern (with an optional
/// label, e.g. the panel's name) encoded as the unit would. Blocking (libx264); tests use it to
/// get real H.264 without a call.
pub struct PatternEncoder {
    encoder: ffmpeg::encoder::Video,
    packet: ffmpeg::Packet,
    label: Option<String>,
}

impl PatternEncoder {
    pub fn new(label: Option<String>) -> Result<Self, MediaError> {
        Ok(Self {
            encoder: open_encoder()?,
            packet: ffmpeg::Packet::empty(),
            label,
        })
    }

    /// Frames per second of the pattern (RTP timestamps step by 90000 / FPS).
    pub const FPS: u32 = FPS;

    /// Encodes picture `index`; `idr` forces an IDR (as a PLI does). Returns the access units
    /// the encoder completed (one per picture: x264 runs with zero latency).
    pub fn encode(&mut self, index: u64, idr: bool) -> Result<Vec<EncodedFrame>, MediaError> {
        // A fresh frame each time: the encoder may still reference the previous buffer.
        let mut picture = frame::Video::new(Pixel::YUV420P, WIDTH, HEIGHT);
        draw(&mut picture, index, self.label.as_deref());
        picture.set_pts(Some(index as i64));
        if idr {
            picture.set_kind(picture::Type::I);
        }
        self.encoder
            .send_frame(&picture)
            .map_err(MediaError::ffmpeg("libx264 send_frame"))?;
        let mut out = Vec::new();
        while self.encoder.receive_packet(&mut self.packet).is_ok() {
            let Some(data) = self.packet.data() else {
                continue;
            };
            out.push(EncodedFrame {
                index: self.packet.pts().map_or(index, |p| p.max(0) as u64),
                annexb: data.to_vec(),
            });
        }
        Ok(out)
    }
}

fn open_encoder() -> Result<ffmpeg::encoder::Video, MediaError> {
    super::audio::init_ffmpeg();
    let codec = ffmpeg::encoder::find_by_name("libx264").ok_or(MediaError::NoEncoder("libx264"))?;
    let mut enc = ffmpeg::codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(MediaError::ffmpeg("video encoder context"))?;
    enc.set_width(WIDTH);
    enc.set_height(HEIGHT);
    enc.set_format(Pixel::YUV420P);
    enc.set_time_base((1, FPS as i32));
    enc.set_frame_rate(Some((FPS as i32, 1)));
    enc.set_gop(KEYINT);
    enc.set_max_b_frames(0);
    enc.set_bit_rate(BIT_RATE);
    let mut opts = ffmpeg::Dictionary::new();
    opts.set("preset", "veryfast");
    opts.set("tune", "zerolatency");
    opts.set("profile", "baseline");
    // A picture typed I becomes an IDR (not just a recovery point): PLI needs a real IDR.
    opts.set("forced-idr", "1");
    opts.set(
        "x264-params",
        "keyint=20:min-keyint=20:scenecut=0:repeat-headers=1:level=3.1:threads=1",
    );
    enc.open_as_with(codec, opts)
        .map_err(MediaError::ffmpeg("open libx264"))
}

fn encode_loop(
    tx: &mpsc::Sender<EncodedFrame>,
    force_idr: &AtomicBool,
    cancel: &CancellationToken,
    label: Option<String>,
) -> Result<(), MediaError> {
    let mut enc = PatternEncoder::new(label)?;
    let start = Instant::now();
    let frame_time = Duration::from_secs(1) / FPS;
    for index in 0u64.. {
        // Real-time pacing against an absolute schedule, so the rate does not drift.
        let due = start + frame_time * (index as u32);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if cancel.is_cancelled() || tx.is_closed() {
            return Ok(());
        }
        for frame in enc.encode(index, force_idr.swap(false, Ordering::SeqCst))? {
            if tx.blocking_send(frame).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Draws frame `n`: diagonal luma stripes moving right, a bouncing box, drifting chroma bands,
/// the frame number as seven-segment digits (no drawtext filter needed) and, when given, a
/// label (the panel's name) on a plate at the bottom.
fn draw(picture: &mut frame::Video, n: u64, label: Option<&str>) {
    let (w, h) = (WIDTH as usize, HEIGHT as usize);
    let shift = (n * 4) as usize;
    let stride = picture.stride(0);
    let luma = picture.data_mut(0);
    for y in 0..h {
        for x in 0..w {
            let v = ((x + y / 2 + shift) % 64) * 2 + 48;
            if let Some(p) = luma.get_mut(y * stride + x) {
                *p = v as u8;
            }
        }
    }
    // A 48x48 white box bouncing horizontally.
    let span = (w - 48) as u64;
    let pos = (n * 8) % (2 * span);
    let bx = if pos < span { pos } else { 2 * span - pos } as usize;
    fill(luma, stride, bx, 180, 48, 48, 235);
    // Frame counter: black plate with six white digits.
    fill(luma, stride, 8, 8, 6 * 20 + 8, 36, 16);
    let mut value = n;
    for i in (0..6).rev() {
        draw_digit(luma, stride, 12 + i * 20, 12, (value % 10) as u8);
        value /= 10;
    }
    if let Some(text) = label.filter(|t| !t.is_empty()) {
        draw_label(luma, stride, text);
    }
    for plane in 1..3 {
        let stride = picture.stride(plane);
        let chroma = picture.data_mut(plane);
        for y in 0..h / 2 {
            for x in 0..w / 2 {
                let band = ((x + (n as usize) * (plane + 1)) / 25) % 4;
                if let Some(p) = chroma.get_mut(y * stride + x) {
                    *p = 128u8.wrapping_add(band as u8 * 16).wrapping_sub(24);
                }
            }
        }
    }
}

/// The label in white on a black plate along the bottom edge, as large as fits (up to 4x).
fn draw_label(luma: &mut [u8], stride: usize, text: &str) {
    let (w, h) = (WIDTH as usize, HEIGHT as usize);
    let chars = text.chars().count().max(1);
    let scale = ((w - 24) / (chars * font::ADVANCE)).clamp(1, 4);
    let (text_w, text_h) = (chars * font::ADVANCE * scale, font::GLYPH_H * scale);
    let y = h - text_h - 16;
    fill(
        luma,
        stride,
        8,
        y - 6,
        (text_w + 10).min(w - 16),
        text_h + 12,
        16,
    );
    font::draw_text(luma, (stride, w - 8), (14, y), scale, text, 235);
}

fn fill(plane: &mut [u8], stride: usize, x0: usize, y0: usize, w: usize, h: usize, value: u8) {
    for y in y0..y0 + h {
        for x in x0..x0 + w {
            if let Some(p) = plane.get_mut(y * stride + x) {
                *p = value;
            }
        }
    }
}

/// Seven-segment digit, 16x28 pixels, segments 3 px thick.
fn draw_digit(plane: &mut [u8], stride: usize, x: usize, y: usize, digit: u8) {
    // Bits: a b c d e f g (top, top-right, bottom-right, bottom, bottom-left, top-left, middle).
    const SEGMENTS: [u8; 10] = [
        0b111_1110, 0b011_0000, 0b110_1101, 0b111_1001, 0b011_0011, 0b101_1011, 0b101_1111,
        0b111_0000, 0b111_1111, 0b111_1011,
    ];
    let bits = SEGMENTS[usize::from(digit % 10)];
    let on = |seg: u8| bits & (1 << (6 - seg)) != 0;
    let white = 235;
    let rects = [
        (0, 0, 16, 3),   // a
        (13, 0, 3, 14),  // b
        (13, 14, 3, 14), // c
        (0, 25, 16, 3),  // d
        (0, 14, 3, 14),  // e
        (0, 0, 3, 14),   // f
        (0, 13, 16, 3),  // g
    ];
    for (seg, (dx, dy, w, h)) in rects.into_iter().enumerate() {
        if on(seg as u8) {
            fill(plane, stride, x + dx, y + dy, w, h, white);
        }
    }
}

/// Sends encoded frames as RTP and a Sender Report every second, until cancelled.
pub(super) async fn run_sender(
    mut stream: RtpStream,
    mut frames: mpsc::Receiver<EncodedFrame>,
    stats: Arc<SimStats>,
    cancel: CancellationToken,
) {
    let packetizer = Packetizer::default();
    let mut parameter_sets: (Option<Vec<u8>>, Option<Vec<u8>>) = (None, None);
    let mut reports = tokio::time::interval(SR_INTERVAL);
    reports.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = reports.tick() => stream.send_sender_report().await,
            frame = frames.recv() => {
                let Some(frame) = frame else {
                    tracing::warn!("simulator video: encoder gone, no more video");
                    cancel.cancelled().await;
                    return;
                };
                let nals = access_unit(&frame.annexb, &mut parameter_sets);
                let is_idr = nals.iter().any(|n| h264::nal_type(n) == NAL_IDR);
                let ts = (frame.index as u32).wrapping_mul(CLOCK_RATE / FPS);
                let mut sent = false;
                for p in packetizer.packetize(&nals) {
                    sent |= stream.send_rtp(&p.data, p.marker, ts).await;
                }
                if is_idr && sent {
                    SimStats::bump(&stats.idrs_sent);
                }
            }
        }
    }
}

/// The NAL units of one access unit, with the last SPS/PPS put in front of an IDR that came
/// without them (x264 repeats them already; this keeps the §10 promise regardless).
fn access_unit(annexb: &[u8], cache: &mut (Option<Vec<u8>>, Option<Vec<u8>>)) -> Vec<Vec<u8>> {
    let mut nals: Vec<Vec<u8>> = split_annexb(annexb)
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    let has = |t: u8, nals: &[Vec<u8>]| nals.iter().any(|n| h264::nal_type(n) == t);
    for n in &nals {
        match h264::nal_type(n) {
            NAL_SPS => cache.0 = Some(n.clone()),
            NAL_PPS => cache.1 = Some(n.clone()),
            _ => {}
        }
    }
    if has(NAL_IDR, &nals)
        && !(has(NAL_SPS, &nals) && has(NAL_PPS, &nals))
        && let (Some(sps), Some(pps)) = (&cache.0, &cache.1)
    {
        let at = nals
            .iter()
            .position(|n| h264::nal_type(n) == NAL_IDR)
            .unwrap_or(0);
        nals.splice(at..at, [sps.clone(), pps.clone()]);
    }
    nals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepends_cached_parameter_sets_to_a_bare_idr() {
        let mut cache = (None, None);
        let first = [0, 0, 0, 1, 0x67, 1, 0, 0, 1, 0x68, 2, 0, 0, 1, 0x65, 3];
        assert_eq!(access_unit(&first, &mut cache).len(), 3);
        let bare = [0, 0, 1, 0x06, 9, 0, 0, 1, 0x65, 4];
        assert_eq!(
            access_unit(&bare, &mut cache),
            vec![vec![0x06, 9], vec![0x67, 1], vec![0x68, 2], vec![0x65, 4]]
        );
        let p = [0, 0, 1, 0x41, 5];
        assert_eq!(access_unit(&p, &mut cache), vec![vec![0x41, 5]]);
    }

    #[test]
    fn draws_counter_and_moving_pattern() {
        let mut a = frame::Video::new(Pixel::YUV420P, WIDTH, HEIGHT);
        let mut b = frame::Video::new(Pixel::YUV420P, WIDTH, HEIGHT);
        draw(&mut a, 1, None);
        draw(&mut b, 2, None);
        assert_ne!(a.data(0), b.data(0));
        // Digit "1" lights segments b and c only: top-left corner of the last digit stays dark.
        let stride = a.stride(0);
        let last_digit_x = 12 + 5 * 20;
        assert_eq!(a.data(0)[13 * stride + last_digit_x], 16);
        assert_eq!(a.data(0)[13 * stride + last_digit_x + 14], 235);
    }

    #[test]
    fn two_labels_give_two_pictures() {
        let mut plain = frame::Video::new(Pixel::YUV420P, WIDTH, HEIGHT);
        let mut front = frame::Video::new(Pixel::YUV420P, WIDTH, HEIGHT);
        let mut gate = frame::Video::new(Pixel::YUV420P, WIDTH, HEIGHT);
        draw(&mut plain, 7, None);
        draw(&mut front, 7, Some("front"));
        draw(&mut gate, 7, Some("gate"));
        // Visible pixels only: the rows' alignment padding is never drawn.
        let rows = |f: &frame::Video, ys: std::ops::Range<usize>| -> Vec<u8> {
            let stride = f.stride(0);
            ys.flat_map(|y| f.data(0)[y * stride..y * stride + WIDTH as usize].to_vec())
                .collect()
        };
        assert!(rows(&plain, 230..288) != rows(&front, 230..288));
        assert!(rows(&front, 230..288) != rows(&gate, 230..288));
        // The top (counter, stripes) is the same picture.
        assert!(rows(&front, 0..100) == rows(&gate, 0..100));
        // A long name is scaled down, not cut off or out of bounds.
        draw(&mut gate, 7, Some(&"x".repeat(32)));
    }
}
