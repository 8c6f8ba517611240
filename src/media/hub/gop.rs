//! The hub's memory between frames: the GOP cache a late joiner starts from (keyframe first),
//! and the timeline that keeps timestamps continuous across calls (a new call continues where the
//! last one stopped, so viewers and muxers never see time go backwards).

use std::collections::VecDeque;
use std::time::Duration;

use super::Frame;

/// Frames since the last keyframe, bounded; empty until a keyframe arrives.
pub(super) struct GopCache {
    frames: VecDeque<Frame>,
    max: usize,
}

impl GopCache {
    pub fn new(max: usize) -> Self {
        Self {
            frames: VecDeque::new(),
            max,
        }
    }

    pub fn push(&mut self, frame: &Frame) {
        let keyframe = matches!(frame, Frame::Video(v) if v.au.keyframe);
        if keyframe {
            self.frames.clear();
        } else if self.frames.is_empty() {
            return; // nothing to start from yet
        }
        if self.frames.len() >= self.max {
            // A GOP longer than we keep: a joiner will wait for the next keyframe instead.
            self.frames.clear();
            return;
        }
        self.frames.push_back(frame.clone());
    }

    pub fn frames(&self) -> impl Iterator<Item = &Frame> {
        self.frames.iter()
    }

    pub fn has_keyframe(&self) -> bool {
        !self.frames.is_empty()
    }

    pub fn clear(&mut self) {
        self.frames.clear();
    }
}

/// Maps each call's RTP (video) and AAC (audio) timestamps onto one continuous timeline.
/// Video is in 90 kHz ticks, audio in samples at `audio_rate`.
pub(super) struct Timeline {
    audio_rate: u64,
    /// End of everything emitted so far, in 90 kHz ticks.
    end_90k: u64,
    /// Where the current call starts on the timeline (set by its first frame).
    call_start_90k: Option<u64>,
    video_base: Option<(u32, u64)>,
    audio_base: Option<(u64, u64)>,
    last_video: u64,
}

const FRAME_GUESS_90K: u64 = 9000; // 100 ms: the gap left between two calls

impl Timeline {
    pub fn new(audio_rate: u32) -> Self {
        Self {
            audio_rate: u64::from(audio_rate.max(1)),
            end_90k: 0,
            call_start_90k: None,
            video_base: None,
            audio_base: None,
            last_video: 0,
        }
    }

    /// A new call: the next frames rebase after what was already emitted.
    pub fn new_call(&mut self) {
        self.call_start_90k = None;
        self.video_base = None;
        self.audio_base = None;
    }

    fn call_start(&mut self) -> u64 {
        let gap = if self.end_90k == 0 {
            0
        } else {
            FRAME_GUESS_90K
        };
        *self.call_start_90k.get_or_insert(self.end_90k + gap)
    }

    /// Where `pts` (this call, 90 kHz) lies after the call's start on the timeline.
    pub fn since_call_start(&self, pts: u64) -> Duration {
        let start = self.call_start_90k.unwrap_or(pts);
        Duration::from_micros(pts.saturating_sub(start) * 1_000 / 90)
    }

    /// `since_call_start`: wall time from the call's first packet to this frame's arrival;
    /// used only for the first frame of each kind, to line audio and video up.
    pub fn video(&mut self, rtp_ts: u32, since_call_start: Duration) -> u64 {
        let start = self.call_start();
        let (base_rtp, base_pts) = *self
            .video_base
            .get_or_insert((rtp_ts, start + to_ticks(since_call_start, 90_000)));
        let delta = rtp_ts.wrapping_sub(base_rtp);
        // A timestamp "before" the base (reordering across the first frame) is clamped.
        let pts = if delta > u32::MAX / 2 {
            self.last_video
        } else {
            base_pts + u64::from(delta)
        };
        let pts = pts.max(self.last_video);
        self.last_video = pts;
        self.end_90k = self.end_90k.max(pts);
        pts
    }

    /// `aac_pts`: the transcoder's own sample count for this frame (continuous within a call).
    pub fn audio(&mut self, aac_pts: u64, duration: u32, since_call_start: Duration) -> u64 {
        let start = self.call_start();
        let rate = self.audio_rate;
        let (base_aac, base_pts) = *self.audio_base.get_or_insert((
            aac_pts,
            start * rate / 90_000 + to_ticks(since_call_start, rate),
        ));
        let pts = base_pts + aac_pts.saturating_sub(base_aac);
        let end = (pts + u64::from(duration)) * 90_000 / rate;
        self.end_90k = self.end_90k.max(end);
        pts
    }
}

fn to_ticks(d: Duration, rate: u64) -> u64 {
    (d.as_micros() as u64).saturating_mul(rate) / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_and_audio_continue_across_calls() {
        let mut t = Timeline::new(16_000);
        assert_eq!(t.video(1_000_000, Duration::ZERO), 0);
        assert_eq!(t.video(1_009_000, Duration::ZERO), 9000);
        assert_eq!(t.audio(0, 1024, Duration::ZERO), 0);
        assert_eq!(t.audio(1024, 1024, Duration::ZERO), 1024);
        t.new_call();
        // New RTP base far away; the call continues after the old end (the audio's, which
        // reaches 2048 samples = 11520 ticks) plus one frame gap.
        let v = t.video(5, Duration::ZERO);
        assert_eq!(v, 11_520 + 9000);
        let a = t.audio(0, 1024, Duration::ZERO);
        assert_eq!(a, v * 16_000 / 90_000);
    }

    #[test]
    fn rtp_wrap_and_reordering_never_go_backwards() {
        let mut t = Timeline::new(16_000);
        let a = t.video(u32::MAX - 4499, Duration::ZERO);
        let b = t.video(4500, Duration::ZERO);
        assert_eq!(b - a, 9000);
        let c = t.video(0, Duration::ZERO);
        assert_eq!(c, b, "an older timestamp is clamped, not negative");
    }

    #[test]
    fn late_first_video_is_placed_by_wall_clock() {
        let mut t = Timeline::new(16_000);
        assert_eq!(t.audio(0, 1024, Duration::ZERO), 0);
        assert_eq!(t.video(777, Duration::from_millis(300)), 27_000);
    }
}
