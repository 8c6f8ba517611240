//! The bridge's SIP user agent towards the C300X (c300x-protocol.md §2–§8): one task owns the
//! SIP flow (REGISTER, view calls, doorbell rings, MESSAGE commands); everyone else holds a
//! cheap `SipHandle`. The only module in the crate that touches rsipstack; nothing here knows SDP.
//!
//! How rsipstack 0.7.14 is used, and what is worked around here (copy to ARCHITECTURE.md):
//! - One rsipstack `Endpoint` per flow generation (`flow.rs`): after a dropped connection or a
//!   failed REGISTER the whole endpoint (transport layer, dialogs, `Registration`) is thrown away
//!   and rebuilt, so nothing can advertise the old local port (the stack's `Registration` keeps
//!   the Via `received`/`rport` of its last answer as the Contact address and reuses it).
//! - We dial the TCP connection ourselves and hand it to the transport layer; the stream idle
//!   close (300 s by default) is switched off (`set_stream_idle_timeout(ZERO)`), and this task
//!   writes the RFC 5626 `\r\n\r\n` keep-alive every 15 s (rsipstack never sends any). The
//!   connection's cancel token tells us when rsipstack's reader saw it close.
//! - A `DomainResolver` maps the SIP domain to the intercom's address, so Request-URIs keep the
//!   domain (as flexisip wants) while packets go to `intercom_host:port` on our one flow.
//! - A `MessageInspector` rewrites the Contact of everything we send: rsipstack's Contact has no
//!   user part, no `+sip.instance` and (for answers) no `;gr=` GRUU; a Contact `Uri` cannot carry
//!   header parameters, so the full string is put in at the last moment instead.
//! - `Credential { username: <user> }` is always passed (even with no password): without it
//!   rsipstack's REGISTER has no user part in To/From. A challenge with an empty password fails.
//! - Call-ID host is our advertise IP (`EndpointOption::callid_suffix`, default `restsend.com`).
//! - rsipstack has no helper for an out-of-dialog MESSAGE or OPTIONS: `request.rs` builds the
//!   request and its client transaction itself (with digest retry on 401/407).
//! - Incoming re-INVITE on an established call: answered 200 with our last SDP, unchanged
//!   (c300x-protocol.md §6; rsipstack hands it to us as `DialogState::Updated`).
//! - A malformed message on the TCP stream makes rsipstack's reader fail and close the flow
//!   (its codec cannot resynchronise); we then reconnect and re-REGISTER like after any drop.
//!   Unparseable UDP datagrams are dropped by rsipstack. Neither panics.
//! - rsipstack logs every message at INFO (`rsipstack::transport`); filter it in tracing setup.
//! - It writes `transport=TCP` in upper case (legal, left alone).

mod agent;
mod call;
mod flow;
mod request;
mod ring;

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, SipTransport};

pub use call::{AnsweredCall, EndReason, ViewCall};

/// What the SIP user agent needs from the configuration. Tests build it directly.
#[derive(Debug, Clone)]
pub struct SipSettings {
    /// Intercom host name or IP (flexisip's plain SIP transport, c300x-protocol.md §1.2).
    pub intercom_host: String,
    pub intercom_port: u16,
    pub transport: SipTransport,
    /// The flexisip domain (`<id>.bs.iotleg.com`).
    pub domain: String,
    /// Our SIP user (added to flexisip's users.db and alluser route).
    pub user: String,
    /// Digest password, used only when flexisip challenges (no trusted-hosts entry).
    pub password: Option<String>,
    /// The IP we put in Contact and Call-ID; `None` = the local address towards the intercom.
    pub advertise_address: Option<IpAddr>,
    /// The user agent the unit answers as (`c300x`; `c100x` on a C100X).
    pub unit_user: String,
    /// Requested registration lifetime, seconds (refreshed at 80 % of what is granted).
    pub register_expires: u32,
    /// How long an INVITE may wait for its final response.
    pub invite_timeout: Duration,
    /// How long MESSAGE, OPTIONS and REGISTER may wait for their final response.
    pub request_timeout: Duration,
    /// A BYE that takes longer counts as done (c300x-protocol.md §6).
    pub bye_timeout: Duration,
    /// RFC 5626 double-CRLF keep-alive period on the TCP flow.
    pub keepalive_interval: Duration,
    /// A doorbell ring nobody answers or cancels is dropped after this (the unit gives up ~30 s).
    pub ring_timeout: Duration,
    /// Reconnect delays after a drop or a failed REGISTER; the last one repeats.
    pub backoff: Vec<Duration>,
}

impl SipSettings {
    /// Defaults for everything the configuration does not name.
    pub fn new(intercom_host: impl Into<String>, intercom_port: u16, domain: &str) -> Self {
        Self {
            intercom_host: intercom_host.into(),
            intercom_port,
            transport: SipTransport::Tcp,
            domain: domain.to_owned(),
            user: "c300x-bridge".to_owned(),
            password: None,
            advertise_address: None,
            unit_user: "c300x".to_owned(),
            register_expires: 300,
            invite_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            bye_timeout: Duration::from_secs(3),
            keepalive_interval: Duration::from_secs(15),
            ring_timeout: Duration::from_secs(45),
            backoff: [1, 2, 5, 10, 30].map(Duration::from_secs).to_vec(),
        }
    }

    /// From the validated configuration; `intercom_host` and `sip_domain` must be set.
    pub fn from_config(cfg: &Config) -> Result<Self, SipError> {
        let host = cfg
            .intercom_host
            .clone()
            .ok_or(SipError::Config("intercom_host is not set"))?;
        let domain = cfg
            .sip_domain
            .as_deref()
            .ok_or(SipError::Config("sip_domain is not set"))?;
        let mut s = Self::new(host, cfg.intercom_sip_port, domain);
        s.transport = cfg.sip_transport;
        s.user = cfg.sip_user.clone();
        s.password = cfg.sip_password.as_ref().map(|p| p.expose().to_owned());
        s.advertise_address = cfg.advertise_address;
        Ok(s)
    }
}

/// Errors of the SIP user agent, with the Call-ID where there is one.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SipError {
    #[error("SIP configuration: {0}")]
    Config(&'static str),
    #[error("SIP: not connected to the intercom")]
    NotConnected,
    #[error("SIP {call_id}: rejected with {code} {reason}")]
    Rejected {
        code: u16,
        reason: String,
        call_id: String,
    },
    #[error("SIP {call_id}: no final response in time")]
    Timeout { call_id: String },
    #[error("SIP {call_id}: cancelled before the answer")]
    Cancelled { call_id: String },
    #[error("SIP: no pending ring with Call-ID {call_id}")]
    NoSuchRing { call_id: String },
    #[error("SIP {call_id}: {detail}")]
    Stack { call_id: String, detail: String },
    #[error("SIP user agent has stopped")]
    Stopped,
}

/// The registration as the rest of the bridge sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationState {
    Unregistered,
    Registering,
    Registered { expires: u32, since: SystemTime },
    Failed { reason: String },
}

/// A doorbell INVITE on our flow (c300x-protocol.md §7); we answered 100 + 180 only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingRing {
    pub call_id: String,
    /// The From header (normally `<sip:c300x@<domain>>;tag=…`).
    pub from: String,
    pub offer_sdp: String,
    pub at: SystemTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingEndReason {
    /// The unit sent CANCEL without saying why (answered elsewhere, or nobody answered).
    Cancelled,
    /// The unit sent CANCEL with `Reason: SIP;cause=200` ("Call completed elsewhere",
    /// RFC 3326): another phone or the indoor unit took the call.
    AnsweredElsewhere,
    /// Nobody answered or cancelled within `ring_timeout`; we sent 480.
    Timeout,
    /// We rejected it (`reject_ring`).
    Rejected,
    /// The flow dropped while ringing.
    ConnectionLost,
    /// We answered it (`answer_ring` sent 200): the call goes on, the ringing is over.
    Answered,
    /// `answer_ring` could not send the 200 (the ring was already gone at the stack).
    AnswerFailed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingEnded {
    pub call_id: String,
    pub reason: RingEndReason,
}

/// Doorbell events, in order, on one broadcast channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingEvent {
    Incoming(IncomingRing),
    Ended(RingEnded),
}

/// A MESSAGE the intercom sent us (e.g. the `*#8**40*…##` answer to `GetAswmStatus!`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMessage {
    pub from: String,
    pub body: String,
    pub at: SystemTime,
}

pub(crate) enum Command {
    Invite {
        devaddr: u8,
        offer: String,
        reply: oneshot::Sender<Result<ViewCall, SipError>>,
        /// Fires when the caller gave up (its future was dropped).
        gave_up: CancellationToken,
    },
    AnswerRing {
        call_id: String,
        answer: String,
        reply: oneshot::Sender<Result<AnsweredCall, SipError>>,
    },
    RejectRing {
        call_id: String,
        code: u16,
        reply: oneshot::Sender<Result<(), SipError>>,
    },
    EarlyMedia {
        call_id: String,
        sdp: String,
        reply: oneshot::Sender<Result<watch::Receiver<Option<EndReason>>, SipError>>,
    },
    Message {
        body: String,
        reply: oneshot::Sender<Result<(), SipError>>,
    },
    Options {
        reply: oneshot::Sender<Result<u16, SipError>>,
    },
}

/// The cheap, cloneable door to the SIP task.
#[derive(Clone)]
pub struct SipHandle {
    cmd: mpsc::Sender<Command>,
    registration: watch::Receiver<RegistrationState>,
    rings: broadcast::Sender<RingEvent>,
    messages: broadcast::Sender<IncomingMessage>,
    stop: CancellationToken,
    done: watch::Receiver<bool>,
}

/// Cancels `token` when dropped: tells the SIP task the caller gave up on an INVITE.
struct GiveUpGuard(CancellationToken);

impl Drop for GiveUpGuard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl SipHandle {
    pub fn registration(&self) -> watch::Receiver<RegistrationState> {
        self.registration.clone()
    }

    /// Doorbell rings and their ends, from now on.
    pub fn rings(&self) -> broadcast::Receiver<RingEvent> {
        self.rings.subscribe()
    }

    /// MESSAGEs from the intercom, from now on.
    pub fn messages(&self) -> broadcast::Receiver<IncomingMessage> {
        self.messages.subscribe()
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, SipError>>) -> Command,
    ) -> Result<T, SipError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(make(tx))
            .await
            .map_err(|_| SipError::Stopped)?;
        rx.await.map_err(|_| SipError::Stopped)?
    }

    /// A view call: INVITE `sip:<unit>@<domain>` with `sdp_offer` (which must carry
    /// `a=DEVADDR:<devaddr>`). Dropping the returned future before it resolves CANCELs the
    /// INVITE (and ACK + BYE if a 200 still arrives).
    pub async fn invite(&self, devaddr: u8, sdp_offer: String) -> Result<ViewCall, SipError> {
        let gave_up = CancellationToken::new();
        let _guard = GiveUpGuard(gave_up.clone());
        self.ask(|reply| Command::Invite {
            devaddr,
            offer: sdp_offer,
            reply,
            gave_up,
        })
        .await
    }

    /// Answers a pending ring with 200 + `answer_sdp` and waits for the ACK.
    pub async fn answer_ring(
        &self,
        call_id: &str,
        answer_sdp: String,
    ) -> Result<AnsweredCall, SipError> {
        self.ask(|reply| Command::AnswerRing {
            call_id: call_id.to_owned(),
            answer: answer_sdp,
            reply,
        })
        .await
    }

    /// Refuses a pending ring (486 Busy Here).
    pub async fn reject_ring(&self, call_id: &str) -> Result<(), SipError> {
        self.reject_ring_with(call_id, 486).await
    }

    /// Refuses a pending ring with `code` (a 4xx–6xx; `ring_reject_code`).
    pub async fn reject_ring_with(&self, call_id: &str, code: u16) -> Result<(), SipError> {
        self.ask(|reply| Command::RejectRing {
            call_id: call_id.to_owned(),
            code,
            reply,
        })
        .await
    }

    /// `183 Session Progress` with `sdp` on a pending ring (the silent preview, c300x-protocol.md
    /// §7): the unit may stream early media while every other phone keeps ringing. Returns the
    /// ring's end signal: `NotAnswered` once it ends without our 200 (CANCEL, timeout, reject).
    pub async fn early_media(
        &self,
        call_id: &str,
        sdp: String,
    ) -> Result<watch::Receiver<Option<EndReason>>, SipError> {
        self.ask(|reply| Command::EarlyMedia {
            call_id: call_id.to_owned(),
            sdp,
            reply,
        })
        .await
    }

    /// Out-of-dialog MESSAGE to the unit with a text/plain body (an OWN frame); Ok on 2xx.
    pub async fn message(&self, body: &str) -> Result<(), SipError> {
        self.ask(|reply| Command::Message {
            body: body.to_owned(),
            reply,
        })
        .await
    }

    /// OPTIONS to the unit; the final status code.
    pub async fn options(&self) -> Result<u16, SipError> {
        self.ask(|reply| Command::Options { reply }).await
    }

    /// BYE on open calls, un-REGISTER, close; returns when the task has finished (each step
    /// has its own budget: BYE 3 s, un-REGISTER 2 s; callers add an overall bound).
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let mut done = self.done.clone();
        let _ = done.wait_for(|d| *d).await;
    }

    /// Resolves when the SIP task has ended: `Ok` after a requested stop, `Err` when it died
    /// (a panic) — for the bridge's supervision.
    pub async fn stopped(&self) -> Result<(), String> {
        let mut done = self.done.clone();
        match done.wait_for(|d| *d).await {
            Ok(_) => Ok(()),
            Err(_) => Err("the SIP task panicked".to_owned()),
        }
    }
}

/// Starts the SIP task. It stops when `shutdown` is cancelled or `SipHandle::shutdown` is called.
pub fn start(settings: SipSettings, shutdown: CancellationToken) -> SipHandle {
    let (cmd_tx, cmd_rx) = mpsc::channel(32);
    let (reg_tx, reg_rx) = watch::channel(RegistrationState::Unregistered);
    let (rings, _) = broadcast::channel(32);
    let (messages, _) = broadcast::channel(64);
    let (done_tx, done_rx) = watch::channel(false);
    let stop = shutdown.child_token();
    let agent = agent::Agent::new(
        settings,
        cmd_rx,
        reg_tx,
        rings.clone(),
        messages.clone(),
        stop.clone(),
    );
    tokio::spawn(async move {
        crate::app::test_panic("sip");
        agent.run().await;
        let _ = done_tx.send(true);
    });
    SipHandle {
        cmd: cmd_tx,
        registration: reg_rx,
        rings,
        messages,
        stop,
        done: done_rx,
    }
}

/// What the bridge's SIP stack makes of bytes arriving on the intercom's TCP flow: the same
/// framer and parser rsipstack runs on every read. Each frame is `Ok(first line)` or the error
/// that would close the flow. Used by the fuzz target and the malformed-input corpus test.
pub fn decode_stream(bytes: &[u8]) -> Vec<Result<String, String>> {
    use tokio_util::codec::Decoder as _;
    let mut codec = rsipstack::transport::stream::SipCodec::new();
    let mut buf = bytes::BytesMut::from(bytes);
    let mut frames = Vec::new();
    // A frame always consumes input, so this ends; the cap only bounds pathological inputs.
    while frames.len() < 1024 {
        match codec.decode(&mut buf) {
            Ok(Some(item)) => frames.push(Ok(item
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned())),
            Ok(None) => break,
            Err(e) => {
                frames.push(Err(e.to_string()));
                break;
            }
        }
    }
    frames
}

/// What the bridge's SIP stack makes of one UDP datagram from the intercom.
pub fn parse_datagram(bytes: &[u8]) -> Result<String, String> {
    rsipstack::sip::SipMessage::try_from(bytes)
        .map(|m| m.to_string().lines().next().unwrap_or_default().to_owned())
        .map_err(|e| e.to_string())
}
