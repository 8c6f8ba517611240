//! The hub's frame path, and nothing else: decrypted packets of the live call → depacketizer /
//! Speex→AAC → continuous timestamps → GOP cache → each viewer's bounded queue (a full queue
//! drops and waits for the next keyframe; nobody else is slowed). Joiners wait here for a
//! keyframe; ring taps (the recorder) get the same frames without counting as viewers; while a
//! source sends no audio (a ring preview) silent AAC keeps every output's audio track going.
//! Whether a call runs, and which, is decided by `machine.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Instant, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot, watch};

use super::gop::{GopCache, Timeline};
use super::{
    AudioFrame, Command, Frame, FrameSink, HubError, HubSnapshot, HubStatus, StreamInfo,
    VideoFrame, Viewer, ViewerKind, ViewerLease,
};
use crate::intercom::media::{MediaKind, MediaPacket};
use crate::media::transcode::{AacSettings, SpeexToAac};
use crate::proto::h264::Depacketizer;

/// Shortest time between two loss-triggered keyframe requests.
const PLI_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);
/// Frames kept for late joiners (a 2 s GOP at 10 fps with audio is about 50).
const GOP_FRAMES: usize = 1000;
/// Audio frames held back for the viewers until the next picture (or until this many wait): a
/// viewer then wakes and writes once per picture (≈ 10/s) instead of per frame (≈ 26/s), for
/// ≤ 130 ms more audio latency — the picture it is played with comes no sooner.
const MAX_HELD_AUDIO: usize = 2;
/// The longest stretch of silence filled at once (a video stall beyond is not bridged).
const MAX_SILENCE_90K: u64 = 10 * 90_000;

/// A ring's frame sink; it starts at a keyframe.
struct Tap {
    sink: Box<dyn FrameSink>,
    started: bool,
}

/// The frame counters: written per frame, read only when someone asks (API, metrics), so a
/// frame never wakes a status follower.
#[derive(Debug, Default)]
pub struct HubCounters {
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    frames_dropped: AtomicU64,
    /// Video frames in the last second; `u32::MAX` = no call.
    fps: AtomicU32,
    /// Microseconds since the Unix epoch of the newest keyframe; 0 = none yet.
    last_keyframe_us: AtomicU64,
    pub(super) srtp_failures: AtomicU64,
}

impl HubCounters {
    pub(super) fn snapshot(&self, status: HubStatus) -> HubSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let fps = self.fps.load(Ordering::Relaxed);
        let kf = get(&self.last_keyframe_us);
        HubSnapshot {
            status,
            frames_in: get(&self.frames_in),
            frames_out: get(&self.frames_out),
            frames_dropped: get(&self.frames_dropped),
            fps: (fps != 0 && fps != u32::MAX).then_some(fps as f32),
            last_keyframe: (kf != 0).then(|| UNIX_EPOCH + std::time::Duration::from_micros(kf)),
            srtp_failures: get(&self.srtp_failures),
        }
    }

    pub(super) fn set_fps(&self, fps: Option<u32>) {
        self.fps.store(fps.unwrap_or(u32::MAX), Ordering::Relaxed);
    }
}

/// A joiner waiting for a keyframe, with the reply that makes it a viewer.
pub(super) struct Joiner {
    pub id: u64,
    pub kind: ViewerKind,
    pub reply: oneshot::Sender<Result<Viewer, HubError>>,
}

struct Slot {
    kind: ViewerKind,
    tx: mpsc::Sender<Frame>,
    /// After a drop, skip to the next keyframe so the decoder never sees a hole.
    waiting_keyframe: bool,
    dropped: u64,
}

/// What a packet (or a join) did, for the driver to tell the machine.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// The call's first keyframe.
    pub first_keyframe: bool,
    /// Joiners that got their first frames.
    pub admitted: Vec<u64>,
    /// Viewers whose receiver is gone (or a joiner that gave up before its reply).
    pub gone: Vec<u64>,
    /// The picture was lost: ask the intercom for an IDR.
    pub want_keyframe: bool,
}

/// Per call: when it started on the wire, whether it has video, the last loss-PLI.
struct CallFrames {
    first_packet: Option<Instant>,
    keyframe_seen: bool,
    last_pli: Option<Instant>,
}

pub(super) struct Fanout {
    panel: String,
    queue: usize,
    audio: Option<AacSettings>,
    lease_tx: mpsc::UnboundedSender<Command>,
    info_tx: watch::Sender<Option<StreamInfo>>,
    keyframe_tx: watch::Sender<Option<Arc<VideoFrame>>>,
    counters: Arc<HubCounters>,
    depack: Depacketizer,
    transcoder: Option<SpeexToAac>,
    timeline: Timeline,
    gop: GopCache,
    call: Option<CallFrames>,
    waiting: Vec<Joiner>,
    viewers: HashMap<u64, Slot>,
    video_frames: u32,
    size: Option<(u32, u32)>,
    changed: bool,
    taps: Vec<Tap>,
    /// Audio frames not yet given to the viewers (see `MAX_HELD_AUDIO`).
    held: Vec<Frame>,
    /// `Some` while the source sends no audio: the hub timeline (90 kHz) up to which silence
    /// was encoded (`Some(None)` until the first video frame).
    silence: Option<Option<u64>>,
}

impl Fanout {
    pub fn new(
        panel: String,
        queue: usize,
        audio: Option<AacSettings>,
        lease_tx: mpsc::UnboundedSender<Command>,
        info_tx: watch::Sender<Option<StreamInfo>>,
        keyframe_tx: watch::Sender<Option<Arc<VideoFrame>>>,
        counters: Arc<HubCounters>,
    ) -> Self {
        let rate = audio.map_or(16_000, |a| a.sample_rate);
        Self {
            panel,
            queue: queue.max(8),
            audio,
            lease_tx,
            info_tx,
            keyframe_tx,
            counters,
            depack: Depacketizer::new(),
            transcoder: None,
            timeline: Timeline::new(rate),
            gop: GopCache::new(GOP_FRAMES),
            call: None,
            waiting: Vec::new(),
            viewers: HashMap::new(),
            video_frames: 0,
            size: None,
            changed: false,
            taps: Vec::new(),
            held: Vec::with_capacity(MAX_HELD_AUDIO),
            silence: None,
        }
    }

    /// A new call feeds the viewers: timestamps continue after the last call's, decoders are
    /// told to expect a jump. `silent_audio`: the source sends no audio (a ring preview).
    pub fn start_call(&mut self, silent_audio: bool) {
        self.silence = silent_audio.then_some(None);
        self.timeline.new_call();
        self.depack.reset();
        self.gop.clear();
        self.release_held();
        self.transcoder = self.audio.and_then(|a| match SpeexToAac::new(a) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(panel = %self.panel, "audio off for this call: {e}");
                None
            }
        });
        self.call = Some(CallFrames {
            first_packet: None,
            keyframe_seen: false,
            last_pli: None,
        });
        self.broadcast(&Frame::Discontinuity);
        self.feed_taps(&Frame::Discontinuity);
    }

    /// The call is over: joiners now wait for the next call's keyframe. The transcoder goes
    /// too (FFmpeg's AAC encoder holds about 1 MB; the next call makes its own).
    pub fn end_call(&mut self) {
        self.release_held();
        self.gop.clear();
        self.call = None;
        self.silence = None;
        self.transcoder = None;
    }

    /// The source sends audio from now on (a previewed ring was answered): no more silence.
    pub fn audio_live(&mut self) {
        self.silence = None;
    }

    /// A ring's sink: it gets the cached GOP at once when there is one, else frames from the
    /// next keyframe; it is dropped once it wants no more.
    pub fn add_tap(&mut self, sink: Box<dyn FrameSink>) {
        let mut tap = Tap {
            sink,
            started: false,
        };
        if self.call.is_some() && self.gop.has_keyframe() {
            tap.started = true;
            for f in self.gop.frames() {
                if !tap.sink.push(f.clone()) {
                    return;
                }
            }
        }
        self.taps.push(tap);
    }

    /// Nothing more will come (the hub idles): the taps end.
    pub fn clear_taps(&mut self) {
        self.taps.clear();
    }

    pub fn has_taps(&self) -> bool {
        !self.taps.is_empty()
    }

    pub fn push(&mut self, now: Instant, p: MediaPacket) -> Outcome {
        let mut out = Outcome::default();
        let Some(call) = self.call.as_mut() else {
            return out;
        };
        let first = *call.first_packet.get_or_insert(now);
        let since = now.duration_since(first);
        match p.kind {
            MediaKind::Video => {
                let aus = self.depack.push(p.seq, p.timestamp, p.marker, &p.payload);
                // After loss the depacketizer waits for an IDR: ask for one (at most every 500 ms).
                if call.keyframe_seen
                    && self.depack.waiting_for_keyframe()
                    && call
                        .last_pli
                        .is_none_or(|t| now.duration_since(t) >= PLI_INTERVAL)
                {
                    call.last_pli = Some(now);
                    out.want_keyframe = true;
                }
                for au in aus {
                    let pts = self.timeline.video(au.timestamp, since);
                    let keyframe = au.keyframe;
                    let frame = Arc::new(VideoFrame {
                        pts,
                        au,
                        received: p.arrival,
                    });
                    if keyframe {
                        self.on_keyframe(&frame, &mut out);
                    }
                    self.video_frames += 1;
                    self.emit(Frame::Video(frame), &mut out);
                    self.fill_silence(pts, &mut out);
                }
            }
            MediaKind::Audio => {
                let Some(t) = self.transcoder.as_mut() else {
                    return out;
                };
                let frames = match t.push(p.timestamp, &p.payload) {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::debug!(panel = %self.panel, "audio transcode: {e}");
                        return out;
                    }
                };
                for f in frames {
                    let pts = self.timeline.audio(f.pts, f.duration, since);
                    self.emit(
                        Frame::Audio(Arc::new(AudioFrame { pts, frame: f })),
                        &mut out,
                    );
                }
            }
        }
        out
    }

    /// Silent AAC up to `video_pts` while the source sends no audio; it starts with the video.
    fn fill_silence(&mut self, video_pts: u64, out: &mut Outcome) {
        let (Some(fed), Some(t)) = (self.silence.as_mut(), self.transcoder.as_mut()) else {
            return;
        };
        let fed: &mut Option<u64> = fed;
        // After a long stall the silence restarts near the video instead of bridging it all.
        let from = (*fed.get_or_insert(video_pts)).max(video_pts.saturating_sub(MAX_SILENCE_90K));
        let samples = video_pts.saturating_sub(from) * 8_000 / 90_000;
        if samples == 0 {
            return;
        }
        *fed = Some(from + samples * 90_000 / 8_000);
        // The first silent frame lands where the silence began, not when the encoder gave it.
        let since = self.timeline.since_call_start(from);
        let frames = match t.silence(samples as u32) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(panel = %self.panel, "silent audio: {e}");
                return;
            }
        };
        for f in frames {
            let pts = self.timeline.audio(f.pts, f.duration, since);
            self.emit(
                Frame::Audio(Arc::new(AudioFrame { pts, frame: f })),
                &mut *out,
            );
        }
    }

    fn on_keyframe(&mut self, frame: &Arc<VideoFrame>, out: &mut Outcome) {
        let micros = frame
            .received
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        self.counters
            .last_keyframe_us
            .store(micros.max(1), Ordering::Relaxed);
        let _ = self.keyframe_tx.send(Some(frame.clone()));
        if let (Some(sps), Some(pps), Some(video)) =
            (self.depack.sps(), self.depack.pps(), self.depack.sps_info())
        {
            let size = Some((video.width, video.height));
            if self.size != size {
                self.size = size;
                self.changed = true;
            }
            let audio = self
                .transcoder
                .as_ref()
                .map(SpeexToAac::audio_specific_config);
            let info = StreamInfo {
                sps: sps.clone(),
                pps: pps.clone(),
                video: video.clone(),
                audio,
            };
            self.info_tx.send_if_modified(|cur| {
                let changed = cur.as_ref() != Some(&info);
                *cur = Some(info);
                changed
            });
        }
        if let Some(call) = self.call.as_mut()
            && !call.keyframe_seen
        {
            call.keyframe_seen = true;
            out.first_keyframe = true;
        }
    }

    fn emit(&mut self, frame: Frame, out: &mut Outcome) {
        self.counters.frames_in.fetch_add(1, Ordering::Relaxed);
        self.gop.push(&frame);
        self.feed_taps(&frame);
        if matches!(frame, Frame::Audio(_)) {
            self.held.push(frame);
            if self.held.len() >= MAX_HELD_AUDIO {
                self.release_held();
            }
            out.gone.extend(self.take_gone());
            return;
        }
        // The audio held back goes first (in the order it came), then the picture. Viewers
        // already watching get every frame, the keyframe that admits joiners included
        // (issue 11, fault 2: it used to go to the joiners only); joiners get the GOP cache,
        // which has the held audio too.
        self.release_held();
        self.broadcast(&frame);
        if matches!(&frame, Frame::Video(v) if v.au.keyframe) && !self.waiting.is_empty() {
            self.admit_ready(out);
        }
        out.gone.extend(self.take_gone());
    }

    /// A joiner waits for the next keyframe (or [`Self::admit_waiting`]).
    pub fn join(&mut self, joiner: Joiner) {
        self.waiting.push(joiner);
    }

    /// Admits the waiting joiners now if the GOP cache has a keyframe of the live call.
    pub fn admit_waiting(&mut self) -> Outcome {
        let mut out = Outcome::default();
        self.admit_ready(&mut out);
        out
    }

    /// Turns every waiting joiner into a viewer whose queue starts with the cached GOP
    /// (keyframe first), if there is a GOP and the stream parameters are known.
    fn admit_ready(&mut self, out: &mut Outcome) {
        if !self.gop.has_keyframe() {
            return;
        }
        // The cache has the held audio already: the viewers get it now, before a joiner
        // could get it twice.
        self.release_held();
        let Some(info) = self.info_tx.borrow().clone() else {
            return;
        };
        for j in std::mem::take(&mut self.waiting) {
            let (tx, frames) = mpsc::channel(self.queue);
            for f in self.gop.frames() {
                if tx.try_send(f.clone()).is_err() {
                    break;
                }
            }
            let lease = ViewerLease {
                id: j.id,
                hub: self.lease_tx.clone(),
            };
            let viewer = Viewer {
                frames,
                info: info.clone(),
                lease,
            };
            // A joiner that gave up meanwhile is gone (dropping the viewer here sends a Leave
            // too; the machine ignores the second).
            if j.reply.send(Ok(viewer)).is_err() {
                out.gone.push(j.id);
            } else {
                self.viewers.insert(
                    j.id,
                    Slot {
                        kind: j.kind,
                        tx,
                        waiting_keyframe: false,
                        dropped: 0,
                    },
                );
                self.changed = true;
                tracing::debug!(panel = %self.panel, viewer = j.id, kind = ?j.kind, viewers = self.viewers.len(), "viewer joined");
                out.admitted.push(j.id);
            }
        }
    }

    /// Turns a waiting joiner away with `err`.
    pub fn reject(&mut self, id: u64, err: HubError) {
        if let Some(i) = self.waiting.iter().position(|j| j.id == id) {
            let _ = self.waiting.swap_remove(i).reply.send(Err(err));
        }
    }

    pub fn leave(&mut self, id: u64) {
        self.waiting.retain(|j| j.id != id);
        if let Some(slot) = self.viewers.remove(&id) {
            self.changed = true;
            tracing::debug!(panel = %self.panel, viewer = id, dropped = slot.dropped, viewers = self.viewers.len(), "viewer left");
        }
    }

    /// Ends every viewer's stream (their leases still count until dropped).
    pub fn close_viewers(&mut self) {
        if !self.viewers.is_empty() {
            self.viewers.clear();
            self.changed = true;
        }
    }

    pub fn viewers(&self) -> usize {
        self.viewers.len()
    }

    pub fn viewers_by_kind(&self) -> Vec<(ViewerKind, usize)> {
        let mut by_kind: Vec<(ViewerKind, usize)> = Vec::new();
        for s in self.viewers.values() {
            match by_kind.iter_mut().find(|(k, _)| *k == s.kind) {
                Some((_, n)) => *n += 1,
                None => by_kind.push((s.kind, 1)),
            }
        }
        by_kind.sort_by_key(|(k, _)| *k as u8);
        by_kind
    }

    /// The video size, once a keyframe told it.
    pub fn size(&self) -> Option<(u32, u32)> {
        self.size
    }

    /// Video frames since the last take (the driver's once-a-second fps).
    pub fn take_video_frames(&mut self) -> u32 {
        std::mem::take(&mut self.video_frames)
    }

    /// True once after the viewers or the stream size changed.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    fn take_gone(&mut self) -> Vec<u64> {
        let gone: Vec<u64> = self
            .viewers
            .iter()
            .filter(|(_, s)| s.tx.is_closed())
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            self.viewers.remove(id);
            self.changed = true;
        }
        gone
    }

    /// Every tap gets the frame (from its first keyframe on); those that want no more go.
    fn feed_taps(&mut self, frame: &Frame) {
        if self.taps.is_empty() {
            return;
        }
        let keyframe = matches!(frame, Frame::Video(v) if v.au.keyframe);
        self.taps.retain_mut(|tap| {
            tap.started |= keyframe;
            !tap.started || tap.sink.push(frame.clone())
        });
    }

    fn release_held(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.held);
        for f in &held {
            self.broadcast(f);
        }
        self.held = held;
        self.held.clear();
    }

    /// Each viewer gets the frame through its own bounded queue; a full queue drops (counted)
    /// and makes that viewer wait for the next keyframe. Nobody else is slowed.
    fn broadcast(&mut self, frame: &Frame) {
        let keyframe = matches!(frame, Frame::Video(v) if v.au.keyframe);
        for (id, slot) in self.viewers.iter_mut() {
            if slot.waiting_keyframe && !keyframe {
                continue;
            }
            match slot.tx.try_send(frame.clone()) {
                Ok(()) => {
                    slot.waiting_keyframe = false;
                    self.counters.frames_out.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    if slot.dropped == 0 {
                        tracing::info!(panel = %self.panel, viewer = id, kind = ?slot.kind, "slow viewer: dropping frames until it catches up");
                    }
                    slot.dropped += 1;
                    slot.waiting_keyframe = true;
                    self.counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
                }
                // Found by `take_gone` after the frame.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
