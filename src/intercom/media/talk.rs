//! A call's talk input (c300x-protocol.md §5, §9 talkback row, §10): encoded 20 ms Speex frames
//! come in through a `TalkSink`; the audio task's 20 ms clock takes one per tick from the
//! `TalkQueue` (a small jitter buffer, ≤ 100 ms) in place of the silence packet, so talk
//! continues the silence stream's SSRC, sequence and timestamps (+160 per frame). Pure here:
//! the queue and the delay histogram take `now`; the socket is the audio task's.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

/// Frames a sink may have in flight towards the audio task (the queue bounds the delay).
pub(super) const TALK_CHANNEL: usize = 32;
/// At most this many frames wait (100 ms): a new one pushes the oldest out.
pub const MAX_QUEUED: usize = 5;
/// A talk spurt starts once two frames wait…
const PREFILL: usize = 2;
/// …or once its first frame has waited this long (one frame time).
const PREFILL_WAIT: Duration = Duration::from_millis(20);
/// Ticks without a frame (silence sent) before a spurt counts as over; the next frame then starts
/// a new spurt (marker bit, prefill again).
const HANGOVER_TICKS: u32 = 3;
/// The queue shrinks by a frame when at least this many frames stayed queued after every send
/// for [`TRIM_WINDOW`] ticks (the depth an episode of jitter left behind is not kept for good).
const TRIM_DEPTH: usize = 2;
const TRIM_WINDOW: u32 = 50;
/// Ticks that send [`END_OF_TALK`] after a spurt, before the silence keep-alives.
const END_TICKS: u32 = 3;
/// A Speex NB frame of digital silence (mode 1, as libspeex's VBR encoder codes zeros). Sent
/// after a talk spurt: libspeex — the unit's decoder — answers the 1-byte mode-0 keep-alive
/// with comfort noise at the level of the last excitation, so after talk the panel would hiss
/// (−35 dBFS, measured here, for as long as the call lasts); these frames bring its decoder
/// back to silence first.
pub const END_OF_TALK: [u8; 6] = [0x0e, 0x9d, 0x66, 0x00, 0x01, 0xef];
/// The delay histogram's resolution and range (1 ms buckets up to 1 s, then one overflow bucket).
const DELAY_BUCKETS: usize = 1_000;

/// One 20 ms Speex narrowband frame for the intercom, and when its first sample reached the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TalkFrame {
    pub speex: Bytes,
    pub captured: Instant,
}

/// Why a frame did not reach the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TalkSendError {
    #[error("the call's talk input is full")]
    Full,
    #[error("the call's media has ended")]
    Closed,
}

/// Where a talker's frames enter one call; cheap to clone. Never blocks.
#[derive(Debug, Clone)]
pub struct TalkSink {
    tx: mpsc::Sender<TalkFrame>,
}

impl TalkSink {
    /// A sink and the receiving end a call's audio task (or a test's fake call) reads.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<TalkFrame>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx }, rx)
    }

    pub fn send(&self, frame: TalkFrame) -> Result<(), TalkSendError> {
        self.tx.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => TalkSendError::Full,
            mpsc::error::TrySendError::Closed(_) => TalkSendError::Closed,
        })
    }

    /// Whether the call's audio task is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// What the audio task sends on a 20 ms tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tick {
    /// A talk frame; `marker` on the first of a spurt (RFC 3551 §4.1).
    Talk { frame: TalkFrame, marker: bool },
    /// [`END_OF_TALK`], digital silence: after a spurt, and on a tick inside one that found no
    /// frame (a late producer) — never the keep-alive there, whose comfort noise at the last
    /// excitation's level would hiss in the gap.
    EndOfTalk,
    /// The keep-alive silence frame.
    Silence,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spurt {
    /// No talk: silence keep-alives.
    Idle,
    /// Frames arrived; waiting for the prefill.
    Filling,
    /// Sending a frame per tick; `dry` ticks in a row found the queue empty.
    Playing { dry: u32, first: bool },
    /// The spurt is over: `left` more ticks of [`END_OF_TALK`].
    Ending { left: u32 },
}

/// Counters of the talk input of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Frames handed to the queue.
    pub received: u64,
    /// Frames sent to the intercom.
    pub sent: u64,
    /// Frames pushed out because 100 ms were already waiting (a producer faster than 20 ms).
    pub overflow: u64,
    /// Ticks inside a spurt that found no frame (digital silence sent instead: a late producer).
    pub underruns: u64,
    /// Talk spurts started.
    pub spurts: u64,
    /// Frames dropped to shrink a queue that stayed deeper than needed for a second.
    pub trimmed: u64,
}

/// The jitter buffer between a talker and the 20 ms clock: frames queue (≤ [`MAX_QUEUED`]), a
/// spurt starts after a short prefill, one frame leaves per tick.
#[derive(Debug)]
pub(super) struct TalkQueue {
    frames: VecDeque<(TalkFrame, Instant)>,
    spurt: Spurt,
    counts: QueueCounts,
    /// The smallest depth after a send in the current trim window, and the window's ticks.
    min_depth: usize,
    window: u32,
}

impl Default for TalkQueue {
    fn default() -> Self {
        Self {
            frames: VecDeque::with_capacity(MAX_QUEUED + 1),
            spurt: Spurt::Idle,
            counts: QueueCounts::default(),
            min_depth: usize::MAX,
            window: 0,
        }
    }
}

impl TalkQueue {
    /// A frame from the talker, arriving at `now`.
    pub fn push(&mut self, now: Instant, frame: TalkFrame) {
        self.counts.received += 1;
        self.frames.push_back((frame, now));
        if self.frames.len() > MAX_QUEUED {
            self.frames.pop_front();
            self.counts.overflow += 1;
        }
        if matches!(self.spurt, Spurt::Idle | Spurt::Ending { .. }) {
            self.spurt = Spurt::Filling;
        }
    }

    /// The 20 ms clock ticked at `now`: what to send.
    pub fn tick(&mut self, now: Instant) -> Tick {
        if self.spurt == Spurt::Filling {
            let waited = self
                .frames
                .front()
                .is_some_and(|(_, at)| now.saturating_duration_since(*at) >= PREFILL_WAIT);
            if self.frames.len() >= PREFILL || waited {
                self.counts.spurts += 1;
                self.spurt = Spurt::Playing {
                    dry: 0,
                    first: true,
                };
            }
        }
        if let Spurt::Ending { left } = self.spurt {
            self.spurt = match left {
                0 | 1 => Spurt::Idle,
                n => Spurt::Ending { left: n - 1 },
            };
            return Tick::EndOfTalk;
        }
        let Spurt::Playing { dry, first } = self.spurt else {
            return Tick::Silence;
        };
        match self.frames.pop_front() {
            Some((frame, _)) => {
                self.counts.sent += 1;
                self.trim();
                self.spurt = Spurt::Playing {
                    dry: 0,
                    first: false,
                };
                Tick::Talk {
                    frame,
                    marker: first,
                }
            }
            None if dry + 1 >= HANGOVER_TICKS => {
                self.spurt = Spurt::Ending {
                    left: END_TICKS - 1,
                };
                Tick::EndOfTalk
            }
            None => {
                self.counts.underruns += 1;
                self.spurt = Spurt::Playing {
                    dry: dry + 1,
                    first,
                };
                Tick::EndOfTalk
            }
        }
    }

    pub fn counts(&self) -> QueueCounts {
        self.counts
    }

    /// After a send: a window in which the queue never fell below [`TRIM_DEPTH`] ends with one
    /// frame less (the oldest waiting), 20 ms less delay from then on.
    fn trim(&mut self) {
        self.min_depth = self.min_depth.min(self.frames.len());
        self.window += 1;
        if self.window < TRIM_WINDOW {
            return;
        }
        if self.min_depth >= TRIM_DEPTH {
            self.frames.pop_front();
            self.counts.trimmed += 1;
        }
        self.min_depth = usize::MAX;
        self.window = 0;
    }
}

/// Mouth-to-SRTP delays (a frame's first sample reaching the bridge → its SRTP packet sent), in
/// 1 ms buckets.
#[derive(Debug, Clone)]
pub(super) struct DelayHistogram {
    buckets: Vec<u64>,
    count: u64,
    max: Duration,
}

impl Default for DelayHistogram {
    fn default() -> Self {
        Self {
            buckets: vec![0; DELAY_BUCKETS + 1],
            count: 0,
            max: Duration::ZERO,
        }
    }
}

impl DelayHistogram {
    pub fn record(&mut self, delay: Duration) {
        let ms = usize::try_from(delay.as_millis()).unwrap_or(usize::MAX);
        if let Some(b) = self.buckets.get_mut(ms.min(DELAY_BUCKETS)) {
            *b += 1;
        }
        self.count += 1;
        self.max = self.max.max(delay);
    }

    /// The delay below which `q` (0..=1) of the frames were sent, to the millisecond (upper
    /// edge of its bucket); `None` before the first frame.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (ms, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank && ms < DELAY_BUCKETS {
                return Some(Duration::from_millis(ms as u64 + 1).min(self.max));
            }
        }
        Some(self.max)
    }

    pub fn max(&self) -> Option<Duration> {
        (self.count > 0).then_some(self.max)
    }
}

/// The talk side of one call's media stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TalkStats {
    pub queue: QueueCounts,
    /// Mouth-to-SRTP delay of the frames sent so far: median, 95th percentile, maximum.
    pub delay_median: Option<Duration>,
    pub delay_p95: Option<Duration>,
    pub delay_max: Option<Duration>,
}

impl TalkStats {
    pub(super) fn new(queue: QueueCounts, delays: &DelayHistogram) -> Self {
        Self {
            queue,
            delay_median: delays.quantile(0.5),
            delay_p95: delays.quantile(0.95),
            delay_max: delays.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn frame(n: u8, at: Instant) -> TalkFrame {
        TalkFrame {
            speex: Bytes::from(vec![n; 3]),
            captured: at,
        }
    }

    /// `Some((first byte, marker))` for a talk frame, `None` for silence.
    fn sent(t: Tick) -> Option<(u8, bool)> {
        match t {
            Tick::Talk { frame, marker } => Some((frame.speex[0], marker)),
            Tick::EndOfTalk | Tick::Silence => None,
        }
    }

    #[test]
    fn silence_until_talk_then_a_spurt_with_one_marker_then_silence_again() {
        let t0 = Instant::now();
        let mut q = TalkQueue::default();
        assert_eq!(q.tick(t0), Tick::Silence);
        // Frames every 20 ms, each arriving 5 ms before a tick.
        let mut out = Vec::new();
        for i in 0..6u8 {
            let at = t0 + 20 * MS * u32::from(i) + 15 * MS;
            q.push(at, frame(i, at));
            out.push(sent(q.tick(at + 5 * MS)));
        }
        // Prefill: the first frame waits one more tick (until it waited 20 ms or a second came).
        assert_eq!(out[0], None);
        assert_eq!(out[1], Some((0, true)));
        assert_eq!(
            &out[2..],
            [
                Some((1, false)),
                Some((2, false)),
                Some((3, false)),
                Some((4, false))
            ]
        );
        // The talker stops: the last queued frame, then digital silence (two hangover ticks, a
        // late frame could still come, and the end-of-talk ticks), then the keep-alive; a new
        // spurt after that.
        let mut now = t0 + 140 * MS;
        assert_eq!(sent(q.tick(now)), Some((5, false)));
        let mut ticks = Vec::new();
        for _ in 0..7 {
            now += 20 * MS;
            ticks.push(q.tick(now));
        }
        use Tick::{EndOfTalk as E, Silence as S};
        assert_eq!(ticks, [E, E, E, E, E, S, S]);
        q.push(now, frame(9, now));
        q.push(now, frame(10, now));
        assert_eq!(
            sent(q.tick(now + 20 * MS)),
            Some((9, true)),
            "new spurt, marker again"
        );
        let c = q.counts();
        assert_eq!((c.received, c.sent, c.spurts, c.overflow), (8, 7, 2, 0));
        assert_eq!(c.underruns, 2, "hangover ticks before the spurt ended");
    }

    #[test]
    fn a_queue_left_deep_by_jitter_shrinks_back() {
        let t0 = Instant::now();
        let mut q = TalkQueue::default();
        // A burst left four frames waiting; then one frame per tick, on time.
        for i in 0..4 {
            q.push(t0, frame(i, t0));
        }
        let mut out = Vec::new();
        for k in 0..150u32 {
            let now = t0 + 20 * MS * k;
            q.push(now, frame((4 + k) as u8, now));
            if let Some((n, _)) = sent(q.tick(now)) {
                out.push(n);
            }
        }
        // Depth after a send: 4, 4, …; each second one frame goes, until one is left waiting.
        assert_eq!(q.counts().trimmed, 3);
        assert_eq!(q.counts().underruns, 0);
        assert_eq!(q.frames.len(), 1, "one frame waits now, not four");
        assert_eq!(out.len(), 150);
        // The order never changes; the trimmed frames are the oldest waiting at the time.
        assert!(out.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn end_of_talk_is_a_narrowband_mode_1_frame() {
        // First bit 0: narrowband; next four: sub-mode 1 (43 bits, fits in 6 bytes).
        assert_eq!(END_OF_TALK[0] >> 7, 0);
        assert_eq!((END_OF_TALK[0] >> 3) & 0x0f, 1);
    }

    #[test]
    fn a_late_frame_is_an_underrun_not_a_new_spurt() {
        let t0 = Instant::now();
        let mut q = TalkQueue::default();
        q.push(t0, frame(0, t0));
        q.push(t0, frame(1, t0));
        assert_eq!(sent(q.tick(t0)), Some((0, true)));
        assert_eq!(sent(q.tick(t0 + 20 * MS)), Some((1, false)));
        assert_eq!(
            q.tick(t0 + 40 * MS),
            Tick::EndOfTalk,
            "digital silence in the gap, not the keep-alive's comfort noise"
        );
        q.push(t0 + 45 * MS, frame(2, t0));
        assert_eq!(
            sent(q.tick(t0 + 60 * MS)),
            Some((2, false)),
            "no prefill, no marker"
        );
        assert_eq!(q.counts().underruns, 1);
        assert_eq!(q.counts().spurts, 1);
    }

    #[test]
    fn never_more_than_100_ms_wait_the_oldest_go_first() {
        let t0 = Instant::now();
        let mut q = TalkQueue::default();
        // A burst of 9 frames at once (a stalled producer catching up).
        for i in 0..9 {
            q.push(t0, frame(i, t0));
        }
        assert_eq!(q.counts().overflow, 4);
        let got: Vec<_> = (0..6u32)
            .map(|k| sent(q.tick(t0 + 20 * MS * k)).map(|(n, _)| n))
            .collect();
        assert_eq!(got, [Some(4), Some(5), Some(6), Some(7), Some(8), None]);
    }

    #[test]
    fn histogram_quantiles() {
        let mut h = DelayHistogram::default();
        assert_eq!(h.quantile(0.5), None);
        for ms in 1..=100u64 {
            h.record(Duration::from_micros(ms * 1000 - 500));
        }
        assert_eq!(h.quantile(0.5), Some(Duration::from_millis(50)));
        assert_eq!(h.quantile(0.95), Some(Duration::from_millis(95)));
        assert_eq!(h.max(), Some(Duration::from_micros(99_500)));
        assert_eq!(h.quantile(1.0), Some(Duration::from_micros(99_500)));
        h.record(Duration::from_secs(5));
        assert_eq!(h.quantile(1.0), Some(Duration::from_secs(5)));
    }
}
