//! Where a Speex packet lands on the continuous 8 kHz timeline, from its RTP timestamp alone
//! (RFC 3550 §5.1, 32-bit wrap): silence to fill before it, samples to trim from its head,
//! late/duplicate packets to drop, jumps to treat as a restart. Pure; no codec here.

/// Longest gap filled with silence (1 s at 8 kHz); a longer jump is a sender restart.
pub(super) const MAX_FILL: u32 = 8_000;

/// What to do with a packet, decided before decoding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placement {
    /// The first packet, or a restart (jump beyond [`MAX_FILL`] either way): no fill.
    Start { restart: bool },
    /// In order: `fill` samples of silence first; drop `trim` samples from the packet's head
    /// (the previous packet decoded longer than its timestamp spacing).
    Next { fill: u32, trim: u32 },
    /// Duplicate or late (not newer than the last accepted packet): drop it undecoded.
    Drop,
}

#[derive(Debug, Default)]
pub(super) struct Timeline {
    /// Timestamp of the last accepted packet.
    last: Option<u32>,
    /// Timestamp right after the last sample produced.
    next: u32,
}

/// `a - b` on the 32-bit RTP clock, as a signed distance.
fn distance(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
}

impl Timeline {
    pub(super) fn place(&self, ts: u32) -> Placement {
        let Some(last) = self.last else {
            return Placement::Start { restart: false };
        };
        let since_last = distance(ts, last);
        if since_last <= 0 {
            return if -since_last > i64::from(MAX_FILL) {
                Placement::Start { restart: true }
            } else {
                Placement::Drop
            };
        }
        let gap = distance(ts, self.next);
        if gap > i64::from(MAX_FILL) {
            Placement::Start { restart: true }
        } else if gap >= 0 {
            Placement::Next {
                fill: gap as u32,
                trim: 0,
            }
        } else {
            Placement::Next {
                fill: 0,
                trim: (-gap) as u32,
            }
        }
    }

    /// Records an accepted packet at `ts` that decoded to `samples` samples.
    pub(super) fn commit(&mut self, ts: u32, samples: u32, placement: Placement) {
        let end = ts.wrapping_add(samples);
        let restart = matches!(placement, Placement::Start { .. });
        if restart || distance(end, self.next) > 0 {
            self.next = end;
        }
        self.last = Some(ts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(t: &mut Timeline, ts: u32, samples: u32) -> Placement {
        let p = t.place(ts);
        if p != Placement::Drop {
            t.commit(ts, samples, p);
        }
        p
    }

    #[test]
    fn in_order_loss_duplicate() {
        let mut t = Timeline::default();
        assert_eq!(
            accept(&mut t, 1000, 160),
            Placement::Start { restart: false }
        );
        assert_eq!(
            accept(&mut t, 1160, 160),
            Placement::Next { fill: 0, trim: 0 }
        );
        // Two packets lost.
        assert_eq!(
            accept(&mut t, 1640, 160),
            Placement::Next { fill: 320, trim: 0 }
        );
        assert_eq!(accept(&mut t, 1640, 160), Placement::Drop);
        assert_eq!(accept(&mut t, 1480, 160), Placement::Drop);
        assert_eq!(
            accept(&mut t, 1800, 160),
            Placement::Next { fill: 0, trim: 0 }
        );
    }

    #[test]
    fn wraps_at_32_bits() {
        let mut t = Timeline::default();
        let start = u32::MAX - 159 - 320;
        accept(&mut t, start, 160);
        assert_eq!(
            accept(&mut t, start + 160, 160),
            Placement::Next { fill: 0, trim: 0 }
        );
        assert_eq!(
            accept(&mut t, start + 320, 160),
            Placement::Next { fill: 0, trim: 0 }
        );
        assert_eq!(accept(&mut t, 0, 160), Placement::Next { fill: 0, trim: 0 });
        assert_eq!(
            accept(&mut t, 320, 160),
            Placement::Next { fill: 160, trim: 0 }
        );
        assert_eq!(accept(&mut t, u32::MAX - 159, 160), Placement::Drop);
    }

    #[test]
    fn long_jumps_restart() {
        let mut t = Timeline::default();
        accept(&mut t, 0, 160);
        assert_eq!(
            accept(&mut t, 160 + MAX_FILL, 160),
            Placement::Next {
                fill: MAX_FILL,
                trim: 0
            }
        );
        let next = 320 + MAX_FILL;
        assert_eq!(
            accept(&mut t, next + MAX_FILL + 1, 160),
            Placement::Start { restart: true }
        );
        assert_eq!(accept(&mut t, 5, 160), Placement::Start { restart: true });
        assert_eq!(
            accept(&mut t, 165, 160),
            Placement::Next { fill: 0, trim: 0 }
        );
    }

    #[test]
    fn overlong_packet_trims_the_next() {
        let mut t = Timeline::default();
        accept(&mut t, 0, 480); // e.g. garbage that decoded to three frames
        assert_eq!(
            accept(&mut t, 160, 160),
            Placement::Next { fill: 0, trim: 320 }
        );
        assert_eq!(
            accept(&mut t, 320, 160),
            Placement::Next { fill: 0, trim: 160 }
        );
        assert_eq!(
            accept(&mut t, 480, 160),
            Placement::Next { fill: 0, trim: 0 }
        );
    }
}
