//! The shared test rig: one port allocator for the whole test binary (no hand-picked ports),
//! one `eventually`, and one builder for the usual set-up — a simulator, the bridge's
//! `Intercom` registered with it, and one stream hub per panel.

use std::net::{TcpListener, UdpSocket};
use std::sync::Mutex;
use std::time::Duration;

use c300x_bridge::config::{Config, Panel};
use c300x_bridge::intercom::Intercom;
use c300x_bridge::media::hub::{HubSettings, StreamHub};
use c300x_bridge::sim::{SimConfig, SimStats, Simulator};
use tokio_util::sync::CancellationToken;

/// Ports handed out here: below Linux's ephemeral range (32768+), so the kernel never picks
/// them for an outgoing connection, and away from anything the bridge listens on by default.
const FIRST: u16 = 20_000;
const LAST: u16 = 32_000;

/// The next port to try; starts at a spot that depends on the process, so two test binaries
/// running at once (other worktrees) begin far apart.
static NEXT: Mutex<Option<u16>> = Mutex::new(None);

fn free(port: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", port)).is_ok() && TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// `n` consecutive free ports (UDP and TCP on 127.0.0.1), the first one even (RTP pairs);
/// returns `(first, last)`. Every block is handed out once per process.
pub fn ports(n: u16) -> (u16, u16) {
    let n = n.max(2);
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    let mut at = next.unwrap_or_else(|| {
        let spread = (std::process::id() % 40) as u16;
        FIRST + spread * ((LAST - FIRST) / 40)
    });
    for _ in 0..((LAST - FIRST) / 2) {
        at += at % 2;
        if at + n > LAST {
            at = FIRST;
        }
        let block = at..at + n;
        at += n;
        if block.clone().all(free) {
            *next = Some(at);
            return (block.start, block.end - 1);
        }
    }
    panic!("no {n} free ports in {FIRST}..{LAST}");
}

/// An audio and a video RTP port (even, each with its RTCP port free) for an SDP offer.
pub fn rtp_pair() -> (u16, u16) {
    let (first, _) = ports(4);
    (first, first + 2)
}

/// One free TCP port (for a server the test cannot hand a listener to, e.g. the binary).
pub fn tcp_port() -> u16 {
    ports(2).0
}

/// Polls `cond` every 20 ms until it holds; fails the test naming `what` after `timeout`.
/// Uses tokio's clock, so it also works (and costs nothing) under a paused clock.
pub async fn eventually(what: &str, timeout: Duration, cond: impl Fn() -> bool) {
    let end = tokio::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A bridge configuration pointing at `sim`, with an RTP range of its own.
pub fn config_for(sim: &Simulator) -> Config {
    let (min, max) = ports(20);
    Config {
        intercom_host: Some(sim.sip_addr().ip().to_string()),
        intercom_sip_port: sim.sip_addr().port(),
        sip_domain: Some(sim.domain().to_owned()),
        rtp_port_min: min,
        rtp_port_max: max,
        ..Config::default()
    }
}

/// The bridge's intercom for `cfg`, registered.
pub async fn intercom(cfg: &Config) -> (Intercom, CancellationToken) {
    let stop = CancellationToken::new();
    let intercom = Intercom::start(cfg, stop.clone())
        .await
        .expect("intercom starts");
    crate::intercom_sip::registered(intercom.sip()).await;
    (intercom, stop)
}

/// Hub settings with short timers, for tests that wait for them on the real clock.
pub fn quick_hub() -> HubSettings {
    HubSettings {
        linger: Duration::from_millis(800),
        start_timeout: Duration::from_secs(8),
        no_rtp_timeout: Duration::from_secs(2),
        retry_backoff: Duration::from_millis(200),
        ..HubSettings::default()
    }
}

/// Builds a [`Rig`]; every part has a default.
pub struct RigBuilder {
    sim: SimConfig,
    hub: HubSettings,
    panels: Vec<Panel>,
    hubs: bool,
}

impl RigBuilder {
    pub fn sim(mut self, f: impl FnOnce(&mut SimConfig)) -> Self {
        f(&mut self.sim);
        self
    }

    pub fn hub(mut self, settings: HubSettings) -> Self {
        self.hub = settings;
        self
    }

    /// No stream hubs (tests of the intercom alone).
    pub fn no_hubs(mut self) -> Self {
        self.hubs = false;
        self
    }

    pub async fn start(self) -> Rig {
        let sim = Simulator::start(self.sim).await.expect("simulator starts");
        let cfg = Config {
            panels: self.panels,
            ..config_for(&sim)
        };
        let (intercom, stop) = intercom(&cfg).await;
        let hubs = if self.hubs {
            cfg.panels
                .iter()
                .map(|p| {
                    StreamHub::start(p.clone(), intercom.clone(), self.hub.clone(), stop.clone())
                })
                .collect()
        } else {
            Vec::new()
        };
        Rig {
            sim,
            intercom,
            hubs,
            stop,
        }
    }
}

/// A simulator, the bridge's registered intercom and its hubs; everything stops on drop.
pub struct Rig {
    pub sim: Simulator,
    pub intercom: Intercom,
    pub hubs: Vec<StreamHub>,
    pub stop: CancellationToken,
}

impl Rig {
    pub fn builder() -> RigBuilder {
        RigBuilder {
            sim: SimConfig::default(),
            hub: quick_hub(),
            panels: vec![Panel {
                name: "doorbell".into(),
                devaddr: 20,
            }],
            hubs: true,
        }
    }

    /// The first panel's hub ("doorbell", DEVADDR 20).
    pub fn hub(&self) -> &StreamHub {
        &self.hubs[0]
    }

    /// One simulator counter.
    pub fn stat(&self, f: impl Fn(&SimStats) -> &std::sync::atomic::AtomicU64) -> u64 {
        f(&self.sim.stats()).load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
