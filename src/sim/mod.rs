//! A C300X simulator: flexisip (registrar/proxy) plus the unit's answering side, following
//! c300x-protocol.md including its quirks. Used by the tests, the benchmarks and `demo`.
//! `Simulator` is the handle: start it on port 0, read `stats()`, flip `faults()`, `ring()`.

pub mod frames;
pub mod media;
pub mod sdp;
pub mod sip;
pub mod stats;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use sip::ring::{EarlyMedia, RingHandle, RingState};
pub use stats::{CallMedia, Faults, InDialogRequest, ReceivedMessage, SimStats};

use sip::core::{Command, Core};

/// How the simulated intercom behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The flexisip domain (`<id>.bs.iotleg.com` on a real unit).
    pub domain: String,
    /// Where SIP (TCP and UDP, same port) listens; port 0 picks a free one.
    pub bind: SocketAddr,
    /// Time between 180 Ringing and 200 OK for a view call.
    pub answer_delay: Duration,
    /// The unit hangs up a call when nothing arrives from the bridge's media for this long.
    pub no_rtp_timeout: Duration,
    /// An unanswered doorbell ring is CANCELled after this long (about 30 s on the unit).
    pub ring_timeout: Duration,
    /// Require Digest auth (user, password), like a flexisip without trusted-hosts.
    pub digest: Option<(String, String)>,
    /// The entrance panels. Empty: one anonymous panel that answers any DEVADDR and draws no
    /// name. Otherwise each panel's name is drawn into its picture, a view call must name one
    /// of them (486 otherwise), and with two or more every ring INVITE says which panel rang
    /// (session-level `a=DEVADDR:<n>` in its SDP; see `sip::ring`).
    pub panels: Vec<SimPanel>,
}

/// One entrance panel of the simulated installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimPanel {
    /// Drawn into the test pattern, so each panel gives its own picture.
    pub name: String,
    /// The address in `a=DEVADDR` (20 is the main panel, c300x-protocol.md §11).
    pub devaddr: u8,
}

impl SimPanel {
    pub fn new(name: &str, devaddr: u8) -> Self {
        Self {
            name: name.to_owned(),
            devaddr,
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            domain: "1234567.bs.iotleg.com".to_owned(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            answer_delay: Duration::from_millis(200),
            no_rtp_timeout: Duration::from_secs(30),
            ring_timeout: Duration::from_secs(30),
            digest: None,
            panels: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("simulator: nobody is registered to receive the ring")]
    NobodyRegistered,
    #[error("simulator: no panel has DEVADDR {0}")]
    UnknownPanel(u8),
    #[error("simulator: {0}")]
    Io(#[from] std::io::Error),
    #[error("simulator has stopped")]
    Stopped,
}

/// A registration as the simulator's registrar holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub user: String,
    pub contact: String,
    pub source: SocketAddr,
}

/// A running simulator. Dropping it stops everything.
pub struct Simulator {
    addr: SocketAddr,
    cfg: SimConfig,
    stats: Arc<SimStats>,
    faults: Arc<Faults>,
    cmd: mpsc::UnboundedSender<Command>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
    registered: watch::Receiver<usize>,
}

impl Simulator {
    /// Binds TCP and UDP on the same port and starts serving.
    pub async fn start(cfg: SimConfig) -> Result<Self, SimError> {
        let (tcp, udp) = bind_pair(cfg.bind).await?;
        let addr = tcp.local_addr()?;
        let stats = Arc::new(SimStats::default());
        let faults = Arc::new(Faults::default());
        let stop = CancellationToken::new();
        let conns = Arc::new(std::sync::Mutex::new(CancellationToken::new()));
        let (inbox_tx, mut inbox) = mpsc::unbounded_channel();
        let (internal_tx, mut internal) = mpsc::unbounded_channel();
        let (cmd_tx, mut cmd) = mpsc::unbounded_channel();
        let (registered_tx, registered) = watch::channel(0usize);
        let udp = Arc::new(udp);
        tokio::spawn(sip::transport::run_tcp(
            tcp,
            inbox_tx.clone(),
            stop.clone(),
            conns.clone(),
        ));
        tokio::spawn(sip::transport::run_udp(udp, inbox_tx, stop.clone()));
        let mut core = Core {
            cfg: cfg.clone(),
            local: addr,
            stats: stats.clone(),
            faults: faults.clone(),
            bindings: Vec::new(),
            calls: Default::default(),
            rings: Default::default(),
            digest: cfg.digest.clone(),
            nonces: Vec::new(),
            sent: Default::default(),
            internal: internal_tx,
            conns,
            aswm: false,
            registered_tx,
        };
        let loop_stop = stop.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = loop_stop.cancelled() => break,
                    Some((flow, parsed)) = inbox.recv() => match parsed {
                        Ok(msg) => core.handle(flow, msg).await,
                        Err(e) => tracing::debug!(peer = %flow.peer, "sim: ignoring bad SIP: {e}"),
                    },
                    Some(ev) = internal.recv() => core.on_internal(ev),
                    Some(c) = cmd.recv() => core.on_command(c).await,
                    _ = tick.tick() => core.housekeeping(),
                }
            }
            // Power off: media stops, nobody is told.
            let ids: Vec<String> = core.calls.keys().cloned().collect();
            for id in ids {
                core.end_call(&id);
            }
        });
        tracing::info!(%addr, domain = %cfg.domain, "C300X simulator listening (SIP over TCP and UDP)");
        Ok(Self {
            addr,
            cfg,
            stats,
            faults,
            cmd: cmd_tx,
            stop,
            task: Some(task),
            registered,
        })
    }

    pub fn sip_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn domain(&self) -> &str {
        &self.cfg.domain
    }

    pub fn stats(&self) -> Arc<SimStats> {
        self.stats.clone()
    }

    pub fn faults(&self) -> Arc<Faults> {
        self.faults.clone()
    }

    /// The config keys that point a bridge at this simulator.
    pub fn bridge_settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("intercom_host", self.addr.ip().to_string()),
            ("intercom_sip_port", self.addr.port().to_string()),
            ("sip_domain", self.cfg.domain.clone()),
        ]
    }

    fn send(&self, c: Command) -> Result<(), SimError> {
        self.cmd.send(c).map_err(|_| SimError::Stopped)
    }

    /// Presses the doorbell of panel `devaddr`: an INVITE to `alluser` reaches every registration.
    /// With panels configured, `devaddr` must be one of theirs.
    pub async fn ring(&self, devaddr: u8) -> Result<RingHandle, SimError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Ring { devaddr, reply: tx })?;
        rx.await.map_err(|_| SimError::Stopped)?
    }

    /// The unit gives up on every pending ring: CANCEL without a `Reason` (what its ring
    /// timeout sends; whether a real unit adds one is unverified).
    pub fn cancel_rings(&self) -> Result<(), SimError> {
        self.send(Command::CancelRings)
    }

    /// Someone answered on a phone the simulator does not model (the app, another SIP user):
    /// CANCEL every pending ring with `Reason: SIP;cause=200;text="Call completed elsewhere"`,
    /// as flexisip does towards the other forks (RFC 3326).
    pub fn answer_elsewhere(&self) -> Result<(), SimError> {
        self.send(Command::AnswerElsewhere)
    }

    /// "Hang up now": BYE on every established call. Returns how many were hung up.
    pub async fn hang_up_all(&self) -> Result<usize, SimError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::HangUpAll { reply: tx })?;
        rx.await.map_err(|_| SimError::Stopped)
    }

    /// A reboot: registrations, calls and TCP connections are dropped without a word.
    pub fn restart(&self) -> Result<(), SimError> {
        SimStats::bump(&self.stats.restarts);
        self.send(Command::Restart)
    }

    /// Turns Digest auth on (`Some((user, password))`) or off.
    pub fn require_digest(&self, creds: Option<(String, String)>) -> Result<(), SimError> {
        self.send(Command::SetDigest(creds))
    }

    pub async fn registrations(&self) -> Result<Vec<Registration>, SimError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Registrations(tx))?;
        let list = rx.await.map_err(|_| SimError::Stopped)?;
        Ok(list
            .into_iter()
            .map(|(user, contact, source)| Registration {
                user,
                contact,
                source,
            })
            .collect())
    }

    /// Waits until at least `n` bindings exist (or `timeout` passes).
    pub async fn wait_registrations(&self, n: usize, timeout: Duration) -> bool {
        let mut rx = self.registered.clone();
        tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stops serving and waits for the core to finish.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// TCP and UDP on one port (like flexisip's `sip:<IC>;maddr=<IC>`). With port 0, retries until
/// the UDP side of the kernel-chosen TCP port is free too.
async fn bind_pair(addr: SocketAddr) -> std::io::Result<(TcpListener, UdpSocket)> {
    let mut last = None;
    for _ in 0..20 {
        let tcp = TcpListener::bind(addr).await?;
        let port = tcp.local_addr()?.port();
        match UdpSocket::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(udp) => return Ok((tcp, udp)),
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free TCP+UDP port pair")))
}
