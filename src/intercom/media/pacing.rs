//! When a call's media task reads its sockets and sends its audio: the 20 ms tick, the early
//! drains (after a flood, while a new call's first keyframe comes) and the audio clock's
//! catch-up. Pure: the clock is an argument.

use std::time::Duration;

use tokio::time::Instant;

/// How often the RTP and RTCP sockets are drained (the audio task: on its silence tick).
/// Waking per datagram cost a thread wake-up each (≈ 110 per second per call, BENCHMARKS.md);
/// ≤ 20 ms in the kernel's buffer is nothing to a jitter buffer or a keyframe wait.
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// At most this many datagrams per drain, so a flood cannot hold the task.
pub(super) const MAX_DRAIN: usize = 512;
/// A drain that found this many datagrams (a flood, or a burst beyond any keyframe's) drains
/// again after `BUSY_POLL` instead of the next tick: the kernel's buffer (1–2 MB asked for in
/// `ports.rs`, ≈ 200 KB where refused) must not overflow between two drains and drop the
/// intercom's packets along with the forged ones.
pub(super) const BUSY_DRAIN: usize = 32;
pub(super) const BUSY_POLL: Duration = Duration::from_millis(2);
/// The Speex narrowband frame time (§10): the audio task sends one packet per tick.
pub(super) const SILENCE_INTERVAL: Duration = Duration::from_millis(20);
/// After a stall of the task, up to this many 20 ms ticks are made up at once (100 ms: what the
/// talk queue holds), so talk keeps real time instead of overflowing; a longer stall restarts
/// the clock.
pub(super) const MAX_CATCH_UP: u32 = 5;
/// How long a call's video is drained fast while its first keyframe is not complete.
pub(super) const FIRST_PICTURE_FAST: Duration = Duration::from_secs(3);

/// A new call's first keyframe: until its last packet is in (for at most `FIRST_PICTURE_FAST`),
/// the port is drained every `BUSY_POLL` instead of on the 20 ms tick, so the viewers waiting
/// for it (cold start) do not wait for the tick as well. Audio does not wait for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FirstPicture {
    Waiting,
    Started,
    Complete,
}

impl FirstPicture {
    /// After a packet (in sequence order): a keyframe's first packet starts it, the next
    /// packet with the marker bit (the end of that access unit) completes it.
    pub(super) fn next(self, keyframe_start: bool, marker: bool) -> Self {
        match self {
            Self::Waiting if keyframe_start && marker => Self::Complete,
            Self::Waiting if keyframe_start => Self::Started,
            Self::Started if marker => Self::Complete,
            other => other,
        }
    }
}

/// When to drain again before the next tick, after a drain that took `taken` datagrams from
/// its busier socket: soon after a flood, and while a new call's first picture is coming.
pub(super) fn redrain_at(
    now: Instant,
    taken: usize,
    first_picture: FirstPicture,
    started: Instant,
) -> Option<Instant> {
    let first = first_picture != FirstPicture::Complete
        && now.saturating_duration_since(started) < FIRST_PICTURE_FAST;
    (taken >= BUSY_DRAIN || first).then(|| now + BUSY_POLL)
}

/// How many 20 ms audio ticks are due at `now` (normally 1; more after a stall of the task, up
/// to `MAX_CATCH_UP`), advancing `clock` by as many; a longer stall restarts it at `now`.
pub(super) fn ticks_due(clock: &mut Option<Instant>, now: Instant) -> u32 {
    let step = SILENCE_INTERVAL;
    let due = clock.map_or(1, |last| {
        let elapsed = now.saturating_duration_since(last).as_micros();
        u32::try_from(elapsed / step.as_micros()).unwrap_or(u32::MAX)
    });
    match *clock {
        Some(last) if due <= MAX_CATCH_UP => {
            let n = due.max(1);
            *clock = Some(last + step * n);
            n
        }
        _ => {
            *clock = Some(now);
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audio_clock_makes_up_short_stalls_only() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut clock = None;
        let due: Vec<u32> = [0, 20, 39, 61, 140, 141, 500, 520]
            .into_iter()
            .map(|at| ticks_due(&mut clock, t0 + ms(at)))
            .collect();
        // A tick a little early still counts once; 61 → 140 is 80 ms: four; 141 → 500 restarts.
        assert_eq!(due, [1, 1, 1, 1, 4, 1, 1, 1]);
        assert_eq!(clock, Some(t0 + ms(520)));
    }

    #[test]
    fn the_first_picture_is_complete_at_the_end_of_the_first_keyframe() {
        use FirstPicture::{Complete, Started, Waiting};
        // (keyframe start, marker) per packet: a P-frame, an IDR in three packets, a P-frame.
        let packets = [
            (false, true),
            (true, false),
            (false, false),
            (false, true),
            (false, true),
        ];
        let states: Vec<_> = packets
            .iter()
            .scan(Waiting, |s, &(k, m)| {
                *s = s.next(k, m);
                Some(*s)
            })
            .collect();
        assert_eq!(states, [Waiting, Started, Started, Complete, Complete]);
        // A keyframe in one packet completes at once; nothing goes back.
        assert_eq!(Waiting.next(true, true), Complete);
        assert_eq!(Complete.next(true, false), Complete);
    }

    #[test]
    fn drains_again_soon_after_a_flood_and_while_the_first_picture_comes() {
        use FirstPicture::{Complete, Started, Waiting};
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let soon = |at: u64| Some(t0 + ms(at) + BUSY_POLL);
        // (now in ms, datagrams taken, first picture) → drain again at.
        let table = [
            (0, 0, Waiting, soon(0)),
            (100, 3, Started, soon(100)),
            (100, 3, Complete, None),
            (100, BUSY_DRAIN - 1, Complete, None),
            (100, BUSY_DRAIN, Complete, soon(100)),
            // A call whose video never comes is drained on the tick after 3 s.
            (2_999, 0, Waiting, soon(2_999)),
            (3_000, 0, Waiting, None),
            (3_000, MAX_DRAIN, Waiting, soon(3_000)),
        ];
        for (at, taken, first, want) in table {
            assert_eq!(
                redrain_at(t0 + ms(at), taken, first, t0),
                want,
                "at {at} ms, {taken} taken, {first:?}"
            );
        }
    }
}
