//! Wrong-password throttle (DOCS "Access"): an address that presents wrong credentials
//! [`Throttle::LIMIT`] times within [`Throttle::WINDOW`] is refused for [`Throttle::BLOCK`],
//! on every connection to that server. A right password clears the address's count, so a client
//! that is challenged (401) and then answers never adds up. Pure: `now` in, a verdict out; the
//! table is bounded ([`Throttle::MAX_ADDRESSES`]) so a flood of addresses cannot grow memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// One address's record.
#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    /// The first failure of the current window.
    since: Instant,
    blocked_until: Option<Instant>,
}

/// Failed logins per address, and the addresses refused for now.
#[derive(Debug)]
pub struct Throttle {
    addrs: HashMap<IpAddr, Entry>,
    limit: u32,
    window: Duration,
    block: Duration,
    max_addresses: usize,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(Self::LIMIT, Self::WINDOW, Self::BLOCK, Self::MAX_ADDRESSES)
    }
}

impl Throttle {
    /// Wrong credentials tolerated within [`Self::WINDOW`].
    pub const LIMIT: u32 = 10;
    pub const WINDOW: Duration = Duration::from_secs(600);
    /// How long an address stays refused once it passed the limit.
    pub const BLOCK: Duration = Duration::from_secs(600);
    /// Addresses tracked at once; past it, new addresses are not tracked (memory stays bounded).
    pub const MAX_ADDRESSES: usize = 4096;

    pub fn new(limit: u32, window: Duration, block: Duration, max_addresses: usize) -> Self {
        Self {
            addrs: HashMap::new(),
            limit: limit.max(1),
            window,
            block,
            max_addresses,
        }
    }

    /// `Some(time left)` while `ip` is refused.
    pub fn blocked(&self, now: Instant, ip: IpAddr) -> Option<Duration> {
        let until = self.addrs.get(&ip)?.blocked_until?;
        (until > now).then(|| until - now)
    }

    /// `ip` presented wrong credentials; `true` when this failure blocks it.
    pub fn failed(&mut self, now: Instant, ip: IpAddr) -> bool {
        if !self.addrs.contains_key(&ip) && self.addrs.len() >= self.max_addresses {
            self.forget_expired(now);
            if self.addrs.len() >= self.max_addresses {
                return false;
            }
        }
        let e = self.addrs.entry(ip).or_insert(Entry {
            failures: 0,
            since: now,
            blocked_until: None,
        });
        if e.blocked_until.is_some_and(|u| u > now) {
            return false;
        }
        if e.blocked_until.is_some() || now.saturating_duration_since(e.since) >= self.window {
            *e = Entry {
                failures: 0,
                since: now,
                blocked_until: None,
            };
        }
        e.failures += 1;
        if e.failures >= self.limit {
            e.blocked_until = Some(now + self.block);
            return true;
        }
        false
    }

    /// `ip` presented right credentials: its count starts again (a block in force stays).
    pub fn succeeded(&mut self, now: Instant, ip: IpAddr) {
        if self.blocked(now, ip).is_none() {
            self.addrs.remove(&ip);
        }
    }

    /// Addresses tracked now (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.addrs.len()
    }

    fn forget_expired(&mut self, now: Instant) {
        let (window, block) = (self.window, self.block);
        self.addrs.retain(|_, e| match e.blocked_until {
            Some(until) => until > now,
            None => now.saturating_duration_since(e.since) < window.max(block),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 168, 1, n])
    }

    #[test]
    fn the_limit_within_the_window_blocks_for_the_block_time() {
        let t0 = Instant::now();
        let mut t = Throttle::new(3, 60 * S, 120 * S, 16);
        assert!(!t.failed(t0, ip(1)));
        assert!(!t.failed(t0 + S, ip(1)));
        assert_eq!(t.blocked(t0 + S, ip(1)), None);
        assert!(t.failed(t0 + 2 * S, ip(1)), "the third failure blocks");
        assert_eq!(t.blocked(t0 + 2 * S, ip(1)), Some(120 * S));
        assert_eq!(t.blocked(t0 + 100 * S, ip(1)), Some(22 * S));
        assert_eq!(t.blocked(t0 + 2 * S, ip(2)), None, "other addresses pass");
        // A right password during the block does not lift it.
        t.succeeded(t0 + 3 * S, ip(1));
        assert!(t.blocked(t0 + 3 * S, ip(1)).is_some());
        // Failures while blocked do not extend it; after it, the count starts again.
        assert!(!t.failed(t0 + 50 * S, ip(1)));
        assert_eq!(t.blocked(t0 + 122 * S, ip(1)), None);
        assert!(!t.failed(t0 + 123 * S, ip(1)));
        assert!(!t.failed(t0 + 124 * S, ip(1)));
        assert!(t.failed(t0 + 125 * S, ip(1)));
    }

    #[test]
    fn failures_spread_past_the_window_and_right_passwords_do_not_add_up() {
        let t0 = Instant::now();
        let mut t = Throttle::new(3, 60 * S, 120 * S, 16);
        // Two failures, then the window passes: the next two start a new count.
        t.failed(t0, ip(1));
        t.failed(t0 + S, ip(1));
        assert!(!t.failed(t0 + 61 * S, ip(1)));
        assert!(!t.failed(t0 + 62 * S, ip(1)));
        assert_eq!(t.blocked(t0 + 62 * S, ip(1)), None);
        // A challenged client (401, then the right answer) many times over: never blocked.
        for i in 0..100 {
            let now = t0 + 100 * S + i * S / 10;
            t.failed(now, ip(2));
            t.succeeded(now, ip(2));
        }
        assert_eq!(t.blocked(t0 + 111 * S, ip(2)), None);
    }

    #[test]
    fn the_table_is_bounded_and_expired_entries_make_room() {
        let t0 = Instant::now();
        let mut t = Throttle::new(2, 60 * S, 60 * S, 4);
        for n in 1..=4 {
            t.failed(t0, ip(n));
        }
        // Full: a fifth address is not tracked, so it is never blocked, and memory stays put.
        assert!(!t.failed(t0, ip(5)));
        assert!(!t.failed(t0, ip(5)));
        assert_eq!(t.tracked(), 4);
        assert_eq!(t.blocked(t0, ip(5)), None);
        // Once the old windows expire they make room.
        assert!(!t.failed(t0 + 61 * S, ip(5)));
        assert!(t.failed(t0 + 62 * S, ip(5)));
        assert_eq!(t.tracked(), 1);
    }
}
