//! The SIP task: connects (bounded, raced with stop; with backoff), REGISTERs and refreshes at
//! 80 % of the granted Expires, keeps the flow alive, runs commands from `SipHandle`, and
//! dispatches what the intercom sends (c300x-protocol.md §3, §6–§8). Every task it starts lives
//! in the flow's `JoinSet` and ends with it. Doorbell specifics live in `ring.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::dialog::registration::Registration;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, StatusCode, StatusCodeKind};
use rsipstack::transaction::Transaction;
use rsipstack::transport::SipAddr;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::call::{self, CallSignals, EndReason, Outgoing};
use super::flow::Flow;
use super::request::OutOfDialog;
use super::ring::Ring;
use super::{
    Command, IncomingMessage, RegistrationState, RingEndReason, RingEvent, SipError, SipSettings,
};

/// Events from spawned per-call tasks back into the session.
pub(super) enum Internal {
    CallUp {
        call_id: String,
        dialog: InviteDialog,
        signals: Arc<CallSignals>,
    },
    DialogEnded {
        call_id: String,
        was_confirmed: bool,
        cancelled: bool,
    },
    /// A call handle was dropped while the call was up: BYE it.
    Abandoned {
        dialog: InviteDialog,
        signals: Arc<CallSignals>,
    },
}

/// How one flow generation ended.
enum FlowEnd {
    Shutdown,
    /// Connection lost or REGISTER failed; `registered` says whether it ever worked.
    Lost {
        reason: String,
        registered: bool,
    },
}

pub(super) struct Agent {
    pub s: SipSettings,
    /// `+sip.instance` UUID, stable for the process (RFC 5626).
    pub instance: String,
    pub cmd: mpsc::Receiver<Command>,
    pub reg: watch::Sender<RegistrationState>,
    pub rings: broadcast::Sender<RingEvent>,
    pub messages: broadcast::Sender<IncomingMessage>,
    pub stop: CancellationToken,
}

fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// One UUID per process: the same device across reconnects.
fn process_instance() -> String {
    static INSTANCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    INSTANCE.get_or_init(uuid_v4).clone()
}

fn refuse(cmd: Command, e: SipError) {
    match cmd {
        Command::Invite { reply, .. } => drop(reply.send(Err(e))),
        Command::AnswerRing { reply, .. } => drop(reply.send(Err(e))),
        Command::RejectRing { reply, .. } => drop(reply.send(Err(e))),
        Command::EarlyMedia { reply, .. } => drop(reply.send(Err(e))),
        Command::Message { reply, .. } => drop(reply.send(Err(e))),
        Command::Options { reply } => drop(reply.send(Err(e))),
    }
}

impl Agent {
    pub fn new(
        s: SipSettings,
        cmd: mpsc::Receiver<Command>,
        reg: watch::Sender<RegistrationState>,
        rings: broadcast::Sender<RingEvent>,
        messages: broadcast::Sender<IncomingMessage>,
        stop: CancellationToken,
    ) -> Self {
        Self {
            s,
            instance: process_instance(),
            cmd,
            reg,
            rings,
            messages,
            stop,
        }
    }

    pub async fn run(mut self) {
        let mut failures = 0usize;
        loop {
            if self.stop.is_cancelled() {
                break;
            }
            self.reg.send_replace(RegistrationState::Registering);
            // An intercom that is off never answers the TCP SYN: bound the connect, and let a
            // shutdown interrupt it (the OS would wait minutes).
            let budget = self.s.request_timeout;
            let connected = tokio::select! {
                _ = self.stop.cancelled() => break,
                r = tokio::time::timeout(budget, Flow::connect(&self.s, &self.instance)) => r,
            };
            let end = match connected {
                Ok(Ok(flow)) => Session::new(&mut self, flow).run().await,
                Ok(Err(reason)) => FlowEnd::Lost {
                    reason,
                    registered: false,
                },
                Err(_) => FlowEnd::Lost {
                    reason: format!(
                        "no connection to {}:{} within {budget:?}",
                        self.s.intercom_host, self.s.intercom_port
                    ),
                    registered: false,
                },
            };
            match end {
                FlowEnd::Shutdown => break,
                FlowEnd::Lost { reason, registered } => {
                    tracing::warn!("SIP: {reason}; reconnecting");
                    self.reg.send_replace(RegistrationState::Failed { reason });
                    if registered {
                        failures = 0;
                    }
                }
            }
            let delay = self
                .s
                .backoff
                .get(failures)
                .or(self.s.backoff.last())
                .copied()
                .unwrap_or(Duration::from_secs(1));
            failures += 1;
            let until = Instant::now() + delay;
            loop {
                tokio::select! {
                    _ = self.stop.cancelled() => break,
                    _ = tokio::time::sleep_until(until) => break,
                    Some(c) = self.cmd.recv() => refuse(c, SipError::NotConnected),
                }
            }
        }
        self.reg.send_replace(RegistrationState::Unregistered);
        tracing::info!("SIP user agent stopped");
    }
}

/// One flow generation: its endpoint, registration, calls and rings.
pub(super) struct Session<'a> {
    pub agent: &'a mut Agent,
    pub flow: Flow,
    pub calls: HashMap<String, (InviteDialog, Arc<CallSignals>)>,
    pub rings: HashMap<String, Ring>,
    pub internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    /// Everything this flow started (calls being placed, requests, BYEs): aborted with it.
    pub tasks: JoinSet<()>,
    registration: Option<Registration>,
    registered: bool,
}

impl<'a> Session<'a> {
    fn new(agent: &'a mut Agent, flow: Flow) -> Self {
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        Self {
            agent,
            flow,
            calls: HashMap::new(),
            rings: HashMap::new(),
            internal_tx,
            internal_rx,
            tasks: JoinSet::new(),
            registration: None,
            registered: false,
        }
    }

    fn lost(&self, reason: impl Into<String>) -> FlowEnd {
        FlowEnd::Lost {
            reason: reason.into(),
            registered: self.registered,
        }
    }

    async fn run(mut self) -> FlowEnd {
        let end = self.serve().await;
        let why = match end {
            FlowEnd::Shutdown => EndReason::Shutdown,
            FlowEnd::Lost { .. } => EndReason::ConnectionLost,
        };
        if matches!(end, FlowEnd::Shutdown) {
            self.shut_down().await;
        }
        for (_, (_, signals)) in self.calls.drain() {
            signals.end(why);
        }
        let ids: Vec<String> = self.rings.keys().cloned().collect();
        for id in ids {
            self.end_ring(&id, RingEndReason::ConnectionLost);
        }
        self.flow.close();
        end
    }

    async fn serve(&mut self) -> FlowEnd {
        let stop = self.agent.stop.clone();
        let first = tokio::select! {
            _ = stop.cancelled() => return FlowEnd::Shutdown,
            r = self.register() => r,
        };
        let mut refresh_at = match first {
            Ok(at) => at,
            Err(reason) => return self.lost(reason),
        };
        let period = self.agent.s.keepalive_interval;
        let mut keepalive = tokio::time::interval_at(Instant::now() + period, period);
        let closed = self.flow.closed_signal();
        loop {
            let ring_deadline = self.next_ring_deadline();
            tokio::select! {
                _ = stop.cancelled() => return FlowEnd::Shutdown,
                _ = sleep_until(ring_deadline) => self.ring_deadlines(),
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
                _ = closed.cancelled() => return self.lost("connection to the intercom lost"),
                _ = tokio::time::sleep_until(refresh_at) => match self.register().await {
                    Ok(at) => refresh_at = at,
                    Err(reason) => return self.lost(reason),
                },
                _ = keepalive.tick() => {
                    if let Err(e) = self.flow.keepalive().await {
                        return self.lost(e);
                    }
                }
                Some(c) = self.agent.cmd.recv() => self.on_command(c).await,
                Some(tx) = self.flow.incoming.recv() => self.on_incoming(tx).await,
                Some(ev) = self.internal_rx.recv() => self.on_internal(ev),
            }
        }
    }

    /// REGISTER (or refresh); the time of the next refresh.
    async fn register(&mut self) -> Result<Instant, String> {
        let s = &self.agent.s;
        let server = rsipstack::sip::Uri::try_from(format!("sip:{}", s.domain).as_str())
            .map_err(|e| format!("bad domain {}: {e}", s.domain))?;
        let reg = self.registration.get_or_insert_with(|| {
            let mut r = Registration::new(
                self.flow.endpoint.clone(),
                Some(self.flow.credential.clone()),
            );
            r.call_id = self.flow.new_call_id().into();
            if let Ok(uri) = rsipstack::sip::Uri::try_from(self.flow.contact_uri.as_str()) {
                r.contact = Some(rsipstack::sip::typed::Contact {
                    display_name: None,
                    uri,
                    params: vec![],
                });
            }
            r
        });
        let resp = tokio::time::timeout(
            s.request_timeout,
            reg.register(server, Some(s.register_expires)),
        )
        .await
        .map_err(|_| "REGISTER: no answer".to_owned())?
        .map_err(|e| format!("REGISTER: {e}"))?;
        if resp.status_code.kind() != StatusCodeKind::Successful {
            return Err(format!("REGISTER rejected: {}", resp.status_code));
        }
        let expires = reg.expires().max(1);
        self.registered = true;
        self.agent.reg.send_replace(RegistrationState::Registered {
            expires,
            since: SystemTime::now(),
        });
        tracing::debug!(expires, "registered with the intercom");
        let refresh = Duration::from_millis(u64::from(expires) * 800);
        Ok(Instant::now() + refresh)
    }

    fn out_of_dialog(&self) -> Result<OutOfDialog, SipError> {
        let s = &self.agent.s;
        let call_id = self.flow.new_call_id();
        let bad = |detail: String| SipError::Stack {
            call_id: call_id.clone(),
            detail,
        };
        Ok(OutOfDialog {
            endpoint: self.flow.endpoint.clone(),
            intercom: self.flow.intercom.clone(),
            local: SipAddr {
                r#type: self.flow.intercom.r#type,
                addr: self.flow.local.into(),
            },
            from: Flow::uri(&s.user, &s.domain).map_err(bad)?,
            target: Flow::uri(&s.unit_user, &s.domain).map_err(bad)?,
            call_id: call_id.clone(),
            credential: self.flow.credential.clone(),
            timeout: s.request_timeout,
        })
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Invite {
                devaddr,
                offer,
                reply,
                gave_up,
            } => match self.outgoing(devaddr, offer, gave_up) {
                Ok(o) => {
                    self.tasks.spawn(async move {
                        let r = call::place(o).await;
                        if let Err(Ok(call)) = reply.send(r) {
                            // The caller is gone: its call must not stay up.
                            call.hangup().await;
                        }
                    });
                }
                Err(e) => drop(reply.send(Err(e))),
            },
            Command::Message { body, reply } => match self.out_of_dialog() {
                Ok(req) => {
                    self.tasks.spawn(async move {
                        let call_id = req.call_id.clone();
                        let r = req
                            .send(Method::Message, Some(("text/plain", body)))
                            .await
                            .and_then(|resp| {
                                if resp.status_code.kind() == StatusCodeKind::Successful {
                                    Ok(())
                                } else {
                                    Err(SipError::Rejected {
                                        code: resp.status_code.code(),
                                        reason: resp.status_code.to_string(),
                                        call_id,
                                    })
                                }
                            });
                        let _ = reply.send(r);
                    });
                }
                Err(e) => drop(reply.send(Err(e))),
            },
            Command::Options { reply } => match self.out_of_dialog() {
                Ok(req) => {
                    self.tasks.spawn(async move {
                        let r = req.send(Method::Options, None).await;
                        let _ = reply.send(r.map(|resp| resp.status_code.code()));
                    });
                }
                Err(e) => drop(reply.send(Err(e))),
            },
            Command::AnswerRing {
                call_id,
                answer,
                reply,
            } => self.answer_ring(call_id, answer, reply),
            Command::RejectRing {
                call_id,
                code,
                reply,
            } => {
                let _ = reply.send(self.reject_ring(&call_id, code));
            }
            Command::EarlyMedia {
                call_id,
                sdp,
                reply,
            } => {
                let _ = reply.send(self.early_media(&call_id, sdp));
            }
        }
    }

    fn outgoing(
        &self,
        devaddr: u8,
        offer: String,
        gave_up: CancellationToken,
    ) -> Result<Outgoing, SipError> {
        let s = &self.agent.s;
        let call_id = self.flow.new_call_id();
        let bad = |detail: String| SipError::Stack {
            call_id: call_id.clone(),
            detail,
        };
        let contact = rsipstack::sip::Uri::try_from(self.flow.contact_uri.as_str())
            .map_err(|e| bad(e.to_string()))?;
        let option = InviteOption {
            caller: Flow::uri(&s.user, &s.domain).map_err(bad)?,
            callee: Flow::uri(&s.unit_user, &s.domain).map_err(bad)?,
            destination: Some(self.flow.intercom.clone()),
            content_type: Some("application/sdp".to_owned()),
            offer: Some(offer.into_bytes()),
            contact,
            credential: Some(self.flow.credential.clone()),
            headers: Some(vec![Header::Supported("replaces, outbound, gruu".into())]),
            call_id: Some(call_id.clone()),
            ..Default::default()
        };
        Ok(Outgoing {
            dialogs: self.flow.dialogs.clone(),
            option,
            call_id,
            devaddr,
            timeout: s.invite_timeout,
            bye_timeout: s.bye_timeout,
            gave_up,
            internal: self.internal_tx.clone(),
        })
    }

    async fn on_incoming(&mut self, mut tx: Transaction) {
        let method = tx.original.method;
        // Inside a dialog we know: rsipstack's dialog answers (BYE, ACK, re-INVITE, CANCEL…).
        if let Some(mut dialog) = self.flow.dialogs.match_dialog(&tx) {
            self.tasks.spawn(async move {
                if let Err(e) = dialog.handle(&mut tx).await {
                    tracing::debug!(%method, "in-dialog request: {e}");
                }
            });
            return;
        }
        let has_to_tag = tx
            .original
            .to_header()
            .ok()
            .and_then(|t| t.tag().ok().flatten())
            .is_some();
        match method {
            Method::Invite if !has_to_tag => self.on_ring(tx),
            Method::Message => {
                let from = tx
                    .original
                    .from_header()
                    .map(|f| f.value().to_owned())
                    .unwrap_or_default();
                let body = String::from_utf8_lossy(&tx.original.body).trim().to_owned();
                reply(&mut tx, StatusCode::OK).await;
                tracing::debug!(%from, %body, "MESSAGE from the intercom");
                let _ = self.agent.messages.send(IncomingMessage {
                    from,
                    body,
                    at: SystemTime::now(),
                });
            }
            Method::Options | Method::Notify | Method::Info => reply(&mut tx, StatusCode::OK).await,
            Method::Ack => {}
            Method::Invite | Method::Bye => {
                reply(&mut tx, StatusCode::CallTransactionDoesNotExist).await;
            }
            _ => reply(&mut tx, StatusCode::NotImplemented).await,
        }
    }

    fn on_internal(&mut self, ev: Internal) {
        match ev {
            Internal::CallUp {
                call_id,
                dialog,
                signals,
            } => {
                if !signals.is_ended() {
                    self.calls.insert(call_id, (dialog, signals));
                }
            }
            Internal::DialogEnded {
                call_id,
                was_confirmed,
                cancelled,
            } => {
                if let Some((dialog, _)) = self.calls.remove(&call_id) {
                    self.flow.dialogs.remove_dialog(&dialog.id());
                }
                if !was_confirmed && self.rings.contains_key(&call_id) {
                    let why = if cancelled {
                        RingEndReason::Cancelled
                    } else {
                        RingEndReason::Rejected
                    };
                    self.end_ring(&call_id, why);
                }
            }
            Internal::Abandoned { dialog, signals } => {
                let limit = self.agent.s.bye_timeout;
                self.tasks.spawn(async move {
                    signals
                        .local_hangup
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                    call::bye(&dialog, limit).await;
                    signals.end(EndReason::LocalHangup);
                });
            }
        }
    }

    /// BYE on open calls, then un-REGISTER (Expires 0), both with short budgets.
    async fn shut_down(&mut self) {
        let limit = self.agent.s.bye_timeout;
        let mut byes = tokio::task::JoinSet::new();
        for (_, (dialog, signals)) in self.calls.drain() {
            byes.spawn(async move {
                signals
                    .local_hangup
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                call::bye(&dialog, limit).await;
                signals.end(EndReason::Shutdown);
            });
        }
        while byes.join_next().await.is_some() {}
        let ids: Vec<String> = self.rings.keys().cloned().collect();
        for id in ids {
            self.reject_ring(&id, 486).ok();
        }
        if let (Some(reg), true) = (self.registration.as_mut(), self.registered)
            && let Ok(server) =
                rsipstack::sip::Uri::try_from(format!("sip:{}", self.agent.s.domain).as_str())
        {
            let r = tokio::time::timeout(Duration::from_secs(2), reg.register(server, Some(0)));
            if !matches!(r.await, Ok(Ok(_))) {
                tracing::info!("un-REGISTER got no answer");
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Answers a server transaction; a vanished peer is only worth a debug line.
pub(super) async fn reply(tx: &mut Transaction, code: StatusCode) {
    if let Err(e) = tx.reply(code).await {
        tracing::debug!("reply to {}: {e}", tx.original.method);
    }
}
