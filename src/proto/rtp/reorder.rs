//! RTP reorder buffer keyed by the 16-bit sequence number (RFC 3550 §5.1, wrap-around per
//! Appendix A.1): holds up to N packets or T of time, releases in order, counts gaps as lost,
//! drops duplicates and late packets, resets on a confirmed sender restart. Pure: `now` comes in.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Default capacity: 32 packets (a 400x288 keyframe is ~20 packets on the C300X).
pub const DEFAULT_CAPACITY: usize = 32;
/// Default hold time for a packet waiting behind a gap.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_millis(50);
/// Packets further behind than this are a restart candidate, not a late packet (RFC 3550 A.1).
pub const MAX_MISORDER: i32 = 100;
/// Packets further ahead than this are a restart candidate, not a gap (RFC 3550 A.1).
pub const MAX_DROPOUT: i32 = 3000;

/// A packet released in order, with the number of sequence numbers given up just before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released<T> {
    pub seq: u16,
    /// Sequence numbers skipped (lost) between the previous released packet and this one.
    pub lost_before: u32,
    pub item: T,
}

/// What `push` did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Released or buffered.
    Accepted,
    /// Already buffered: dropped.
    Duplicate,
    /// Behind the release point (already released or given up): dropped.
    Late,
    /// Far from the expected sequence: held until the next packet confirms a restart.
    Probation,
    /// The packet confirmed a restart: the buffer was flushed and restarted at the new sequence.
    Reset,
}

/// Counters since creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReorderStats {
    pub released: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub late: u64,
    pub resets: u64,
    /// Probation packets that were never confirmed (stray far-off packets).
    pub discarded: u64,
}

struct Slot<T> {
    arrived: Instant,
    seq: u16,
    item: T,
}

/// The reorder buffer; `T` is whatever travels with the packet.
pub struct ReorderBuffer<T> {
    capacity: usize,
    max_delay: Duration,
    /// Extended (never wrapping) sequence number expected next; `None` before the first packet.
    next: Option<u64>,
    slots: BTreeMap<u64, Slot<T>>,
    /// A far-off packet waiting for its successor to confirm a sender restart.
    probation: Option<Slot<T>>,
    ready: VecDeque<Released<T>>,
    /// Losses to attach to the next released packet.
    pending_lost: u32,
    stats: ReorderStats,
}

impl<T> Default for ReorderBuffer<T> {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY, DEFAULT_MAX_DELAY)
    }
}

impl<T> ReorderBuffer<T> {
    /// `capacity` is raised to at least 1.
    pub fn new(capacity: usize, max_delay: Duration) -> Self {
        Self {
            capacity: capacity.max(1),
            max_delay,
            next: None,
            slots: BTreeMap::new(),
            probation: None,
            ready: VecDeque::new(),
            pending_lost: 0,
            stats: ReorderStats::default(),
        }
    }

    pub fn stats(&self) -> ReorderStats {
        self.stats
    }

    /// Packets waiting behind a gap.
    pub fn buffered(&self) -> usize {
        self.slots.len()
    }

    /// Takes one packet. Released packets are then available from [`Self::pop`].
    pub fn push(&mut self, now: Instant, seq: u16, item: T) -> Pushed {
        let Some(next) = self.next else {
            self.restart_at(seq);
            self.insert(now, seq, item);
            return Pushed::Accepted;
        };
        let delta = i32::from(seq.wrapping_sub(next as u16) as i16);
        if !(-MAX_MISORDER..MAX_DROPOUT).contains(&delta) {
            return self.probation(now, seq, item);
        }
        // A normal packet ends any probation: the far-off one was a stray.
        if self.probation.take().is_some() {
            self.stats.discarded += 1;
        }
        if delta < 0 {
            self.stats.late += 1;
            return Pushed::Late;
        }
        let ext = next + delta as u64;
        if self.slots.contains_key(&ext) {
            self.stats.duplicates += 1;
            return Pushed::Duplicate;
        }
        // Keep the window at `capacity`: give up on the oldest gaps to make room.
        let window_start = (ext + 1).saturating_sub(self.capacity as u64);
        if window_start > next {
            self.skip_to(window_start);
        }
        self.insert(now, seq, item);
        Pushed::Accepted
    }

    /// The next released packet, oldest first.
    pub fn pop(&mut self) -> Option<Released<T>> {
        self.ready.pop_front()
    }

    /// All released packets, oldest first.
    pub fn drain(&mut self) -> std::collections::vec_deque::Drain<'_, Released<T>> {
        self.ready.drain(..)
    }

    /// When [`Self::handle_timeout`] should run next: the oldest buffered packet's deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.slots
            .values()
            .map(|s| s.arrived)
            .min()
            .map(|t| t + self.max_delay)
    }

    /// Gives up on gaps older than the hold time and releases what follows them.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(deadline) = self.poll_timeout() {
            if deadline > now {
                break;
            }
            let Some(&first) = self.slots.keys().next() else {
                break;
            };
            self.skip_to(first);
        }
    }

    /// Releases everything buffered (gaps counted as lost), e.g. at the end of a call.
    pub fn flush(&mut self) {
        while let Some(&first) = self.slots.keys().next() {
            self.skip_to(first);
        }
    }

    /// Forgets the sequence state (e.g. a new SSRC); buffered packets are released first.
    pub fn reset(&mut self) {
        self.flush();
        self.next = None;
        if self.probation.take().is_some() {
            self.stats.discarded += 1;
        }
    }

    fn probation(&mut self, now: Instant, seq: u16, item: T) -> Pushed {
        match self.probation.take() {
            Some(held) if held.seq.wrapping_add(1) == seq => {
                self.stats.resets += 1;
                self.flush();
                self.restart_at(held.seq);
                self.insert(held.arrived, held.seq, held.item);
                self.insert(now, seq, item);
                Pushed::Reset
            }
            old => {
                if old.is_some() {
                    self.stats.discarded += 1;
                }
                self.probation = Some(Slot {
                    arrived: now,
                    seq,
                    item,
                });
                Pushed::Probation
            }
        }
    }

    fn restart_at(&mut self, seq: u16) {
        // Start well above zero so that late packets never underflow the extended number.
        self.next = Some((1u64 << 32) + u64::from(seq));
        self.pending_lost = 0;
    }

    /// Stores a packet in the window and releases the in-order run at the head.
    fn insert(&mut self, arrived: Instant, seq: u16, item: T) {
        let Some(next) = self.next else {
            return;
        };
        let delta = u64::from(seq.wrapping_sub(next as u16));
        self.slots.insert(next + delta, Slot { arrived, seq, item });
        self.release_run();
    }

    /// Moves the release point forward to `target`, counting missing numbers as lost.
    fn skip_to(&mut self, target: u64) {
        let Some(mut next) = self.next else {
            return;
        };
        while next < target {
            match self.slots.remove(&next) {
                Some(slot) => self.release(slot),
                None => {
                    self.stats.lost += 1;
                    self.pending_lost = self.pending_lost.saturating_add(1);
                }
            }
            next += 1;
        }
        self.next = Some(next);
        self.release_run();
    }

    fn release_run(&mut self) {
        let Some(mut next) = self.next else {
            return;
        };
        while let Some(slot) = self.slots.remove(&next) {
            self.release(slot);
            next += 1;
        }
        self.next = Some(next);
    }

    fn release(&mut self, slot: Slot<T>) {
        self.stats.released += 1;
        self.ready.push_back(Released {
            seq: slot.seq,
            lost_before: std::mem::take(&mut self.pending_lost),
            item: slot.item,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(b: &mut ReorderBuffer<u16>) -> Vec<u16> {
        b.drain().map(|r| r.item).collect()
    }

    fn push_all(b: &mut ReorderBuffer<u16>, now: Instant, list: &[u16]) {
        for &s in list {
            b.push(now, s, s);
        }
    }

    #[test]
    fn in_order_passes_straight_through() {
        let now = Instant::now();
        let mut b = ReorderBuffer::default();
        push_all(&mut b, now, &[10, 11, 12, 13]);
        assert_eq!(seqs(&mut b), [10, 11, 12, 13]);
        assert_eq!(b.poll_timeout(), None);
        assert_eq!(b.stats().released, 4);
        assert_eq!(b.stats().lost, 0);
    }

    #[test]
    fn swapped_pair_is_put_back_in_order() {
        let now = Instant::now();
        let mut b = ReorderBuffer::default();
        push_all(&mut b, now, &[1, 3]);
        assert_eq!(seqs(&mut b), [1]);
        assert_eq!(b.poll_timeout(), Some(now + DEFAULT_MAX_DELAY));
        b.push(now, 2, 2);
        assert_eq!(seqs(&mut b), [2, 3]);
        assert_eq!(b.stats().lost, 0);
        assert_eq!(b.buffered(), 0);
    }

    #[test]
    fn gap_is_given_up_after_the_hold_time_and_counted() {
        let t0 = Instant::now();
        let mut b = ReorderBuffer::default();
        push_all(&mut b, t0, &[100, 103]);
        b.push(t0 + Duration::from_millis(10), 104, 104);
        assert_eq!(seqs(&mut b), [100]);
        b.handle_timeout(t0 + Duration::from_millis(49));
        assert_eq!(b.pop(), None);
        b.handle_timeout(t0 + DEFAULT_MAX_DELAY);
        let out: Vec<_> = b.drain().collect();
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].seq, out[0].lost_before), (103, 2));
        assert_eq!((out[1].seq, out[1].lost_before), (104, 0));
        assert_eq!(b.stats().lost, 2);
        // The late packet now arrives: dropped.
        assert_eq!(b.push(t0, 101, 101), Pushed::Late);
        assert_eq!(b.stats().late, 1);
    }

    #[test]
    fn full_window_gives_up_the_oldest_gap() {
        let now = Instant::now();
        let mut b = ReorderBuffer::new(4, DEFAULT_MAX_DELAY);
        push_all(&mut b, now, &[0, 2, 3, 4]);
        assert_eq!(seqs(&mut b), [0]);
        b.push(now, 5, 5); // window 2..=5 holds it: 1 is given up
        assert_eq!(seqs(&mut b), [2, 3, 4, 5]);
        assert_eq!(b.stats().lost, 1);
        // A packet far beyond the window (but below MAX_DROPOUT) gives up 6..=16 at once and
        // waits for 17..=19 until the hold time.
        b.push(now, 20, 20);
        assert_eq!(seqs(&mut b), [] as [u16; 0]);
        assert_eq!(b.stats().lost, 1 + 11);
        b.handle_timeout(now + DEFAULT_MAX_DELAY);
        assert_eq!(seqs(&mut b), [20]);
        assert_eq!(b.stats().lost, 1 + 14);
    }

    #[test]
    fn wraps_from_65535_to_0() {
        let now = Instant::now();
        let mut b = ReorderBuffer::default();
        push_all(&mut b, now, &[65534, 0, 65535, 1]);
        assert_eq!(seqs(&mut b), [65534, 65535, 0, 1]);
        assert_eq!(b.stats().lost, 0);
        // Late packet from before the wrap.
        assert_eq!(b.push(now, 65533, 65533), Pushed::Late);
        // Gap across the wrap.
        let mut c = ReorderBuffer::default();
        push_all(&mut c, now, &[65535, 1]);
        c.handle_timeout(now + DEFAULT_MAX_DELAY);
        let out: Vec<_> = c.drain().map(|r| (r.seq, r.lost_before)).collect();
        assert_eq!(out, [(65535, 0), (1, 1)]);
    }

    #[test]
    fn duplicates_are_dropped() {
        let now = Instant::now();
        let mut b = ReorderBuffer::default();
        push_all(&mut b, now, &[5, 7]);
        assert_eq!(b.push(now, 7, 7), Pushed::Duplicate);
        assert_eq!(b.push(now, 5, 5), Pushed::Late); // already released
        b.push(now, 6, 6);
        assert_eq!(seqs(&mut b), [5, 6, 7]);
        assert_eq!(b.stats().duplicates, 1);
    }

    #[test]
    fn confirmed_jump_resets_stray_packet_does_not() {
        let now = Instant::now();
        let mut b = ReorderBuffer::default();
        push_all(&mut b, now, &[1000, 1001, 1003]);
        assert_eq!(seqs(&mut b), [1000, 1001]);
        // A single stray far-off packet is held, then discarded when normal packets continue.
        assert_eq!(b.push(now, 30000, 30000), Pushed::Probation);
        b.push(now, 1002, 1002);
        assert_eq!(seqs(&mut b), [1002, 1003]);
        assert_eq!(b.stats().discarded, 1);
        b.push(now, 1005, 1005);
        // Sender restart: two consecutive far-off packets; the buffered 1005 is flushed first.
        assert_eq!(b.push(now, 40000, 40000), Pushed::Probation);
        assert_eq!(b.push(now, 40001, 40001), Pushed::Reset);
        assert_eq!(seqs(&mut b), [1005, 40000, 40001]);
        b.push(now, 40002, 40002);
        assert_eq!(seqs(&mut b), [40002]);
        assert_eq!(b.stats().resets, 1);
        assert_eq!(b.stats().lost, 1); // 1004
        // Backwards restart (far behind) works the same way.
        push_all(&mut b, now, &[10, 11]);
        assert_eq!(seqs(&mut b), [10, 11]);
        assert_eq!(b.stats().resets, 2);
    }

    #[test]
    fn reset_and_flush_release_everything() {
        let now = Instant::now();
        let mut b = ReorderBuffer::default();
        push_all(&mut b, now, &[1, 4, 3]);
        b.reset();
        assert_eq!(seqs(&mut b), [1, 3, 4]);
        // After reset any sequence starts fresh.
        b.push(now, 9000, 9000);
        assert_eq!(seqs(&mut b), [9000]);
    }

    #[test]
    fn arbitrary_input_never_panics_and_keeps_bounds() {
        let now = Instant::now();
        let mut b = ReorderBuffer::new(8, Duration::from_millis(5));
        let mut x: u32 = 12345;
        for i in 0..20_000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let seq = (x >> 16) as u16;
            b.push(now + Duration::from_micros(u64::from(i)), seq, seq);
            assert!(b.buffered() <= 8);
            b.handle_timeout(now + Duration::from_micros(u64::from(i)));
            b.drain().for_each(drop);
        }
    }
}
