//! Reception statistics for our Receiver Reports (RFC 3550 §6.4.1, Appendix A.3 and A.8):
//! extended highest sequence, cumulative and fractional loss, interarrival jitter, LSR/DLSR.
//! Pure: arrival instants come in. (A candidate for `proto::rtp` once it has other users.)

use std::time::{Duration, Instant};

use crate::proto::rtp::ReportBlock;

/// A jump larger than this (either way) restarts the statistics (RFC 3550 A.1 MAX_DROPOUT).
const MAX_DROPOUT: i32 = 3000;

/// Reception state for one source (SSRC).
#[derive(Debug, Clone)]
pub(super) struct Reception {
    clock_rate: u32,
    source: Option<Source>,
    /// Middle 32 bits of the NTP time of the last Sender Report and when it arrived.
    last_sr: Option<(u32, Instant)>,
}

#[derive(Debug, Clone)]
struct Source {
    ssrc: u32,
    base_ext: u64,
    max_ext: u64,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Transit time of the previous packet, in clock units.
    transit: Option<i64>,
    /// Jitter scaled by 16 (A.8).
    jitter16: u64,
    epoch: Instant,
}

impl Reception {
    pub(super) fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            source: None,
            last_sr: None,
        }
    }

    /// Records one authentic RTP packet.
    pub(super) fn on_rtp(&mut self, now: Instant, ssrc: u32, seq: u16, timestamp: u32) {
        let restart = match &self.source {
            Some(s) if s.ssrc == ssrc => {
                let delta = i32::from(seq.wrapping_sub(s.max_ext as u16) as i16);
                !(-MAX_DROPOUT..=MAX_DROPOUT).contains(&delta)
            }
            _ => true,
        };
        if restart {
            let ext = (1u64 << 32) + u64::from(seq);
            self.source = Some(Source {
                ssrc,
                base_ext: ext,
                max_ext: ext,
                received: 0,
                expected_prior: 0,
                received_prior: 0,
                transit: None,
                jitter16: 0,
                epoch: now,
            });
        }
        let clock_rate = self.clock_rate;
        let Some(s) = self.source.as_mut() else {
            return;
        };
        let delta = i64::from(seq.wrapping_sub(s.max_ext as u16) as i16);
        if delta > 0 {
            s.max_ext = s.max_ext.saturating_add_signed(delta);
        }
        s.received += 1;
        let arrival = now.saturating_duration_since(s.epoch).as_secs_f64() * f64::from(clock_rate);
        let transit = (arrival as i64).wrapping_sub(i64::from(timestamp));
        if let Some(prev) = s.transit {
            // Timestamps wrap at 2^32; the difference of two transits is small in practice.
            let d = i64::from((transit.wrapping_sub(prev) as i32).unsigned_abs());
            let j = s.jitter16 as i64;
            s.jitter16 = (j + d - ((j + 8) >> 4)).max(0) as u64;
        }
        s.transit = Some(transit);
    }

    /// Records a Sender Report's NTP timestamp (for LSR/DLSR).
    pub(super) fn on_sender_report(&mut self, now: Instant, ntp: u64) {
        self.last_sr = Some(((ntp >> 16) as u32, now));
    }

    /// The report block for our next RR, or `None` before the first packet.
    pub(super) fn report_block(&mut self, now: Instant) -> Option<ReportBlock> {
        let s = self.source.as_mut()?;
        let expected = s.max_ext.saturating_sub(s.base_ext) + 1;
        let lost = expected.saturating_sub(s.received);
        let expected_interval = expected.saturating_sub(s.expected_prior);
        let received_interval = s.received.saturating_sub(s.received_prior);
        s.expected_prior = expected;
        s.received_prior = s.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = (lost_interval << 8)
            .checked_div(expected_interval)
            .map_or(0, |f| f.min(255) as u8);
        let (last_sr, delay_since_last_sr) = match self.last_sr {
            Some((lsr, at)) => (lsr, dlsr(now.saturating_duration_since(at))),
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc: s.ssrc,
            fraction_lost,
            cumulative_lost: lost.min(0x7f_ffff) as u32,
            highest_seq: s.max_ext as u32,
            jitter: (s.jitter16 >> 4) as u32,
            last_sr,
            delay_since_last_sr,
        })
    }
}

/// A delay in units of 1/65536 s.
fn dlsr(d: Duration) -> u32 {
    ((d.as_secs_f64() * 65536.0) as u64).min(u64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_loss_wrap_and_fraction() {
        let t = Instant::now();
        let mut r = Reception::new(8000);
        assert!(r.report_block(t).is_none());
        for (i, seq) in [65533u16, 65534, 0, 1, 3].into_iter().enumerate() {
            r.on_rtp(t, 7, seq, i as u32 * 160);
        }
        let b = r.report_block(t).expect("block");
        assert_eq!(b.ssrc, 7);
        // 65533..=3 across the wrap: 7 expected, 5 received.
        assert_eq!(b.cumulative_lost, 2);
        assert_eq!(u32::from(b.fraction_lost), (2u32 << 8) / 7);
        assert_eq!(b.highest_seq, (1 << 16) | 3);
        // Next interval: no loss.
        r.on_rtp(t, 7, 4, 1000);
        let b = r.report_block(t).expect("block");
        assert_eq!((b.fraction_lost, b.cumulative_lost), (0, 2));
    }

    #[test]
    fn jitter_and_dlsr() {
        let t = Instant::now();
        let mut r = Reception::new(8000);
        // Perfectly paced: 20 ms apart, 160 ticks apart.
        for i in 0..10u32 {
            r.on_rtp(
                t + Duration::from_millis(20 * u64::from(i)),
                1,
                i as u16,
                i * 160,
            );
        }
        let b = r.report_block(t).expect("block");
        assert!(b.jitter <= 1, "jitter {}", b.jitter);
        // One packet 10 ms late (80 ticks): J grows by about 80/16 = 5.
        r.on_rtp(t + Duration::from_millis(210), 1, 10, 10 * 160);
        let j = r.report_block(t).expect("block").jitter;
        assert!((4..=6).contains(&j), "jitter {j}");
        r.on_sender_report(t, 0x1122_3344_5566_7788);
        let b = r
            .report_block(t + Duration::from_millis(500))
            .expect("block");
        assert_eq!(b.last_sr, 0x3344_5566);
        assert_eq!(b.delay_since_last_sr, 32768);
    }

    #[test]
    fn new_ssrc_restarts() {
        let t = Instant::now();
        let mut r = Reception::new(90000);
        r.on_rtp(t, 1, 100, 0);
        r.on_rtp(t, 1, 105, 0);
        r.on_rtp(t, 2, 9, 0);
        let b = r.report_block(t).expect("block");
        assert_eq!((b.ssrc, b.cumulative_lost, b.highest_seq), (2, 0, 9));
    }
}
