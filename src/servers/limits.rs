//! Connection admission shared by the RTSP and HTTP servers: a per-IP cap (the Home Assistant
//! ingress proxy is exempt: it carries every HA user) and a total cap. At the total cap the
//! oldest connection that is still idle (no request yet, or an RTSP one holding no stream) is
//! evicted for the newcomer, so idle connections cannot lock real clients out; only when none is
//! idle is the newcomer refused. An address that keeps presenting wrong credentials is refused
//! for a while (`proto::auth::throttle`; a connection reports them through its [`Permit`]). Also
//! the counters `/metrics` shows.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::access::INGRESS_PEER;
use crate::proto::auth::throttle::Throttle;

/// How many connections a server takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// All peers together (`max_connections`).
    pub total: usize,
    /// One peer address (`max_connections_per_ip`); 0 = no per-IP cap.
    pub per_ip: usize,
    /// Wrong credentials one address may present within [`Throttle::WINDOW`] before it is
    /// refused for [`Throttle::BLOCK`]; 0 = no throttle.
    pub auth_failures: u32,
}

impl Default for Caps {
    fn default() -> Self {
        Self {
            total: 256,
            per_ip: 64,
            auth_failures: Throttle::LIMIT,
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerIp,
    /// Too many wrong credentials from this address lately; it may try again after this long.
    Throttled(Duration),
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Total => "total_cap",
            Self::PerIp => "per_ip_cap",
            Self::Throttled(_) => "auth_throttle",
        }
    }
}

/// Reasons a server closes a connection, for `c300x_connections_closed_total{reason}`.
pub const CLOSE_REASONS: [&str; 10] = [
    "client",
    "evicted",
    "stream_ended",
    "error",
    "first_request_timeout",
    "idle_timeout",
    "session_timeout",
    "bad_request",
    "auth_failures",
    "shutdown",
];

/// One server's counters.
#[derive(Debug, Default)]
pub struct ConnStats {
    pub accepted: AtomicU64,
    pub active: AtomicU64,
    pub refused_total: AtomicU64,
    pub refused_per_ip: AtomicU64,
    pub refused_throttled: AtomicU64,
    closed: [AtomicU64; CLOSE_REASONS.len()],
    /// HTTP requests answered 401 / 413 (RTSP counts its 401s too).
    pub unauthorized: AtomicU64,
    pub too_large: AtomicU64,
    /// Talk (issue 17): sessions that got the panel's talk (RTSP backchannel, HTTP push-to-talk),
    /// and requests refused because someone else talked or no call could be had.
    pub talk_sessions: AtomicU64,
    pub talk_busy: AtomicU64,
    pub talk_failed: AtomicU64,
}

impl ConnStats {
    /// Counts a close; unknown reasons count as `client`.
    pub fn closed(&self, reason: &str) {
        let i = CLOSE_REASONS.iter().position(|r| *r == reason).unwrap_or(0);
        self.closed[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn closed_by(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        CLOSE_REASONS
            .iter()
            .zip(&self.closed)
            .map(|(r, n)| (*r, n.load(Ordering::Relaxed)))
    }

    pub fn refused(&self) -> [(&'static str, u64); 3] {
        [
            (
                Refused::Total.as_str(),
                self.refused_total.load(Ordering::Relaxed),
            ),
            (
                Refused::PerIp.as_str(),
                self.refused_per_ip.load(Ordering::Relaxed),
            ),
            (
                Refused::Throttled(Duration::ZERO).as_str(),
                self.refused_throttled.load(Ordering::Relaxed),
            ),
        ]
    }
}

/// Both servers' counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub rtsp: ConnStats,
    pub http: ConnStats,
}

/// Admits connections for one server.
#[derive(Debug, Clone)]
pub struct Admission {
    caps: Caps,
    stats: Arc<ServerStats>,
    which: Which,
    open: Arc<Mutex<Open>>,
    /// `None` when `caps.auth_failures` is 0.
    throttle: Option<Arc<Mutex<Throttle>>>,
}

#[derive(Debug, Clone, Copy)]
enum Which {
    Rtsp,
    Http,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
    next_id: u64,
    /// Idle connections, oldest first: their ids and how to close them.
    idle: VecDeque<(u64, CancellationToken)>,
}

impl Open {
    fn forget_idle(&mut self, id: u64) {
        self.idle.retain(|(i, _)| *i != id);
    }
}

/// Held while a connection is open; dropping it frees the slot.
#[derive(Debug)]
pub struct Permit {
    ip: IpAddr,
    id: u64,
    evict: CancellationToken,
    admission: Admission,
}

impl Permit {
    /// Fires when the server evicts this (idle) connection for a newcomer.
    pub fn evicted(&self) -> &CancellationToken {
        &self.evict
    }

    /// Marks the connection busy (`false`: not evictable) or idle again (`true`).
    pub fn set_idle(&self, idle: bool) {
        let mut open = self.admission.lock();
        open.forget_idle(self.id);
        if idle && !self.evict.is_cancelled() {
            open.idle.push_back((self.id, self.evict.clone()));
        }
    }
}

impl Permit {
    /// This connection presented wrong credentials; `true` when that blocks its address.
    pub fn auth_failed(&self) -> bool {
        let Some(mut throttle) = self.admission.throttle(self.ip) else {
            return false;
        };
        let blocked = throttle.failed(Instant::now(), self.ip);
        drop(throttle);
        if blocked {
            tracing::warn!(
                peer = %self.ip,
                limit = self.admission.caps.auth_failures,
                minutes = Throttle::BLOCK.as_secs() / 60,
                "wrong credentials too often: this address is refused for a while"
            );
        }
        blocked
    }

    /// This connection presented right credentials: its address's count starts again.
    pub fn auth_ok(&self) {
        if let Some(mut throttle) = self.admission.throttle(self.ip) {
            throttle.succeeded(Instant::now(), self.ip);
        }
    }

    /// `Some(time left)` while this connection's address is refused.
    pub fn throttled(&self) -> Option<Duration> {
        self.admission.throttled(self.ip)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.admission.lock();
        open.forget_idle(self.id);
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.by_ip.remove(&self.ip);
            }
        }
        self.admission
            .stats()
            .active
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    pub fn rtsp(caps: Caps, stats: Arc<ServerStats>) -> Self {
        Self::new(caps, stats, Which::Rtsp)
    }

    pub fn http(caps: Caps, stats: Arc<ServerStats>) -> Self {
        Self::new(caps, stats, Which::Http)
    }

    fn new(caps: Caps, stats: Arc<ServerStats>, which: Which) -> Self {
        Self {
            caps,
            stats,
            which,
            open: Arc::default(),
            throttle: (caps.auth_failures > 0).then(|| {
                Arc::new(Mutex::new(Throttle::new(
                    caps.auth_failures,
                    Throttle::WINDOW,
                    Throttle::BLOCK,
                    Throttle::MAX_ADDRESSES,
                )))
            }),
        }
    }

    /// This server's counters.
    pub fn stats(&self) -> &ConnStats {
        match self.which {
            Which::Rtsp => &self.stats.rtsp,
            Which::Http => &self.stats.http,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The throttle that applies to `ip`: none for the ingress proxy or when it is off.
    fn throttle(&self, ip: IpAddr) -> Option<std::sync::MutexGuard<'_, Throttle>> {
        let throttle = self.throttle.as_ref().filter(|_| ip != INGRESS_PEER)?;
        Some(throttle.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// `Some(time left)` while `ip` is refused for wrong credentials (never the ingress proxy).
    pub fn throttled(&self, ip: IpAddr) -> Option<Duration> {
        self.throttle(ip)?.blocked(Instant::now(), ip)
    }

    /// A slot for a connection from `ip` (it starts idle), or why not.
    pub fn admit(&self, ip: IpAddr) -> Result<Permit, Refused> {
        let stats = self.stats();
        if let Some(left) = self.throttled(ip) {
            stats.refused_throttled.fetch_add(1, Ordering::Relaxed);
            return Err(Refused::Throttled(left));
        }
        let mut open = self.lock();
        let refused = if self.caps.per_ip > 0
            && ip != INGRESS_PEER
            && open.by_ip.get(&ip).copied().unwrap_or(0) >= self.caps.per_ip
        {
            Some(Refused::PerIp)
        } else if open.total >= self.caps.total {
            // Make room by closing the oldest idle connection, if there is one.
            match open.idle.pop_front() {
                Some((_, evict)) => {
                    evict.cancel();
                    None
                }
                None => Some(Refused::Total),
            }
        } else {
            None
        };
        if let Some(r) = refused {
            let counter = match r {
                Refused::Total => &stats.refused_total,
                Refused::PerIp => &stats.refused_per_ip,
                Refused::Throttled(_) => &stats.refused_throttled,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            return Err(r);
        }
        open.total += 1;
        *open.by_ip.entry(ip).or_default() += 1;
        open.next_id += 1;
        let (id, evict) = (open.next_id, CancellationToken::new());
        open.idle.push_back((id, evict.clone()));
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        stats.active.fetch_add(1, Ordering::Relaxed);
        Ok(Permit {
            ip,
            id,
            evict,
            admission: self.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_eviction_of_idle_connections_and_the_ingress_exemption() {
        let stats = Arc::new(ServerStats::default());
        let a = Admission::rtsp(
            Caps {
                total: 4,
                per_ip: 2,
                auth_failures: 0,
            },
            stats.clone(),
        );
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        let p1 = a.admit(ip(1)).expect("1");
        let p2 = a.admit(ip(1)).expect("2");
        assert_eq!(a.admit(ip(1)).err(), Some(Refused::PerIp));
        let p3 = a.admit(INGRESS_PEER).expect("ingress");
        let p4 = a.admit(INGRESS_PEER).expect("ingress is not capped per IP");
        for p in [&p1, &p2, &p3] {
            p.set_idle(false);
        }
        // Full: the oldest idle connection (p4) makes room; p1..p3 are busy.
        let p5 = a.admit(ip(2)).expect("evicts an idle one");
        assert!(p4.evicted().is_cancelled() && !p1.evicted().is_cancelled());
        drop(p4);
        p5.set_idle(false);
        assert_eq!(a.admit(ip(3)).err(), Some(Refused::Total), "nobody idle");
        // A connection idle again (an RTSP TEARDOWN) can be evicted again.
        p2.set_idle(true);
        let _p6 = a.admit(ip(3)).expect("evicts p2");
        assert!(p2.evicted().is_cancelled());
        drop(p2);
        drop(p1);
        let _p7 = a.admit(ip(1)).expect("slot freed");
        assert_eq!(stats.rtsp.accepted.load(Ordering::Relaxed), 7);
        assert_eq!(stats.rtsp.active.load(Ordering::Relaxed), 4);
        assert_eq!(
            stats.rtsp.refused(),
            [("total_cap", 1), ("per_ip_cap", 1), ("auth_throttle", 0)]
        );
        assert_eq!(stats.http.accepted.load(Ordering::Relaxed), 0);
        stats.rtsp.closed("idle_timeout");
        stats.rtsp.closed("whatever");
        let closed: Vec<_> = stats.rtsp.closed_by().filter(|(_, n)| *n > 0).collect();
        assert_eq!(closed, [("client", 1), ("idle_timeout", 1)]);
        let unlimited = Admission::http(
            Caps {
                total: 10,
                per_ip: 0,
                auth_failures: 0,
            },
            stats,
        );
        let held: Vec<_> = (0..10)
            .map(|_| unlimited.admit(ip(9)).expect("no per-IP cap"))
            .collect();
        assert_eq!(held.len(), 10);
    }

    #[test]
    fn wrong_credentials_from_an_address_refuse_its_new_connections() {
        let stats = Arc::new(ServerStats::default());
        let a = Admission::rtsp(Caps::default(), stats.clone());
        let (bad, good) = (IpAddr::from([10, 0, 0, 7]), IpAddr::from([10, 0, 0, 8]));
        let p = a.admit(bad).expect("first");
        for i in 1..Throttle::LIMIT {
            assert!(!p.auth_failed(), "failure {i} does not block yet");
        }
        assert!(p.auth_failed(), "the limit blocks");
        assert!(p.throttled().is_some(), "the open connection sees it too");
        match a.admit(bad) {
            Err(Refused::Throttled(left)) => {
                assert!(left <= Throttle::BLOCK && left > Duration::ZERO)
            }
            other => panic!("expected a throttled refusal, got {other:?}"),
        }
        let _g = a.admit(good).expect("other addresses pass");
        // The ingress proxy carries every HA user: never throttled.
        let i = a.admit(INGRESS_PEER).expect("ingress");
        for _ in 0..2 * Throttle::LIMIT {
            assert!(!i.auth_failed());
        }
        assert!(a.admit(INGRESS_PEER).is_ok());
        assert_eq!(stats.rtsp.refused()[2], ("auth_throttle", 1));
    }
}
