//! The simulator's SIP brain: one task owns all state (registrations, calls, rings) and handles
//! every message, API command and timer in order. This file: dispatch, REGISTER, OPTIONS,
//! MESSAGE and the response helpers; view calls live in `view.rs`, doorbell rings in `ring.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::auth;
use super::message::{Message, param, uri_hostport, uri_of, uri_user};
use super::transport::Flow;
use crate::sim::SimConfig;
use crate::sim::stats::{Faults, SimStats};

pub(super) const USER_AGENT: &str = "Unknown (belle-sip/1.6.3)";
pub(super) const ALLOW: &str =
    "INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO, UPDATE";
/// Longest registration the registrar grants.
const MAX_EXPIRES: u32 = 3600;

/// A registered contact (RFC 3261 §10), bound to the flow it registered on (RFC 5626).
#[derive(Debug, Clone)]
pub struct Binding {
    pub user: String,
    pub contact: String,
    pub expires_at: Instant,
    pub flow: Flow,
}

/// What the test-facing API asks of the core.
pub(crate) enum Command {
    Ring {
        devaddr: u8,
        reply: oneshot::Sender<Result<super::ring::RingHandle, crate::sim::SimError>>,
    },
    CancelRings,
    AnswerElsewhere,
    HangUpAll {
        reply: oneshot::Sender<usize>,
    },
    Restart,
    SetDigest(Option<(String, String)>),
    Registrations(oneshot::Sender<Vec<(String, String, SocketAddr)>>),
}

/// Timers and media ends, fed back into the same loop.
pub(crate) enum Internal {
    Answer { call_id: String },
    RingTimeout { call_id: String },
    MediaEnded { call_id: String },
}

pub(crate) struct Core {
    pub cfg: SimConfig,
    /// The address flexisip listens on: `<IC>:<port>` in Record-Route and Via.
    pub local: SocketAddr,
    pub stats: Arc<SimStats>,
    pub faults: Arc<Faults>,
    pub bindings: Vec<Binding>,
    pub calls: HashMap<String, super::view::Call>,
    pub rings: HashMap<String, super::ring::Ring>,
    pub digest: Option<(String, String)>,
    pub nonces: Vec<String>,
    /// Last response per (Call-ID, CSeq, method): answers retransmitted requests (UDP).
    pub sent: HashMap<(String, u32, String), Message>,
    pub internal: mpsc::UnboundedSender<Internal>,
    pub conns: Arc<std::sync::Mutex<CancellationToken>>,
    /// Answering machine (voicemail) state, toggled by `*8*91##` / `*8*92##`.
    pub aswm: bool,
    pub registered_tx: watch::Sender<usize>,
}

pub(super) fn tag() -> String {
    format!("{:08x}", rand::random::<u32>())
}

pub(super) fn branch() -> String {
    format!("z9hG4bK{:016x}", rand::random::<u64>())
}

pub(super) fn instance() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!(
        "<urn:uuid:{}-{}-{}-{}-{}>",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A response to `req` (RFC 3261 §8.2.6): Via(s), From, To (+ tag), Call-ID, CSeq copied.
pub(super) fn response(
    req: &Message,
    flow: &Flow,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
) -> Message {
    let mut res = Message::response(code, reason);
    for (i, via) in req.header_values("Via").into_iter().enumerate() {
        // RFC 3581: fill in rport/received on the top Via, as flexisip does.
        let via = if i == 0 && param(&via, "rport") == Some("") {
            let filled: Vec<String> = via
                .split(';')
                .map(|p| {
                    if p.trim().eq_ignore_ascii_case("rport") {
                        format!("rport={}", flow.peer.port())
                    } else {
                        p.to_owned()
                    }
                })
                .collect();
            format!("{};received={}", filled.join(";"), flow.peer.ip())
        } else {
            via
        };
        res.push("Via", via);
    }
    res.push("From", req.header("From").unwrap_or_default());
    let to = req.header("To").unwrap_or_default();
    match to_tag {
        Some(t) if param(to, "tag").is_none() => res.push("To", format!("{to};tag={t}")),
        _ => res.push("To", to),
    };
    res.push("Call-ID", req.call_id());
    res.push("CSeq", req.header("CSeq").unwrap_or_default());
    res
}

impl Core {
    pub fn domain(&self) -> &str {
        &self.cfg.domain
    }

    /// The label drawn for panel `devaddr`: `Ok(None)` without configured panels (any address
    /// goes), the panel's name when one has that address, `Err` when none has.
    pub fn panel_label(&self, devaddr: Option<&str>) -> Result<Option<String>, ()> {
        if self.cfg.panels.is_empty() {
            return Ok(None);
        }
        let wanted = devaddr
            .and_then(|d| d.trim().parse::<u8>().ok())
            .ok_or(())?;
        self.cfg
            .panels
            .iter()
            .find(|p| p.devaddr == wanted)
            .map(|p| Some(p.name.clone()))
            .ok_or(())
    }

    /// `<sip:<IC>:<port>;transport=..;lr>`, the external Record-Route entry.
    pub fn record_route(&self, flow: &Flow) -> String {
        format!(
            "<sip:127.0.0.1:5060;transport={t};lr>, <sip:{}:{};transport={t};lr>",
            self.local.ip(),
            self.local.port(),
            t = flow.transport()
        )
    }

    pub fn via(&self, flow: &Flow) -> String {
        format!(
            "SIP/2.0/{} {}:{};branch={};rport",
            flow.via_transport(),
            self.local.ip(),
            self.local.port(),
            branch()
        )
    }

    /// Sends a response and remembers it for retransmissions of the same request.
    pub fn reply(&mut self, req: &Message, flow: &Flow, res: Message) {
        let (n, m) = req.cseq();
        flow.send(&res);
        if res.code().is_some_and(|c| c >= 200) {
            if self.sent.len() > 512 {
                self.sent.clear();
            }
            self.sent.insert((req.call_id().to_owned(), n, m), res);
        }
    }

    pub fn simple(&mut self, req: &Message, flow: &Flow, code: u16, reason: &str) {
        let res = response(req, flow, code, reason, Some(&tag()));
        self.reply(req, flow, res);
    }

    pub async fn handle(&mut self, flow: Flow, msg: Message) {
        tracing::trace!(peer = %flow.peer, "sim receives:\n{}", String::from_utf8_lossy(&msg.to_bytes()));
        let Some(method) = msg.method().map(str::to_owned) else {
            self.on_response(&flow, &msg);
            return;
        };
        // A retransmission of a request we already answered gets the same answer (RFC 3261 §17.2).
        let (n, m) = msg.cseq();
        if method != "ACK"
            && let Some(prev) = self.sent.get(&(msg.call_id().to_owned(), n, m))
        {
            flow.send(prev);
            return;
        }
        match method.as_str() {
            "REGISTER" => self.on_register(&flow, &msg),
            "OPTIONS" => {
                let mut res = response(&msg, &flow, 200, "OK", Some(&tag()));
                res.push("Allow", ALLOW)
                    .push("Accept", "application/sdp, text/plain")
                    .push("Supported", "replaces, outbound")
                    .push("User-Agent", USER_AGENT);
                self.reply(&msg, &flow, res);
            }
            "MESSAGE" => self.on_message(&flow, &msg),
            "INVITE" => self.on_invite(&flow, &msg).await,
            "ACK" => self.on_ack(&flow, &msg),
            "BYE" => self.on_bye(&flow, &msg),
            "CANCEL" => self.on_cancel(&flow, &msg),
            "NOTIFY" | "INFO" => self.simple(&msg, &flow, 200, "OK"),
            _ => {
                let mut res = response(&msg, &flow, 501, "Not Implemented", Some(&tag()));
                res.push("Allow", ALLOW);
                self.reply(&msg, &flow, res);
            }
        }
    }

    /// Digest check when a test turned it on. Returns false after sending the challenge.
    pub fn authorized(&mut self, flow: &Flow, req: &Message, registrar: bool) -> bool {
        let Some((user, pass)) = self.digest.clone() else {
            return true;
        };
        let header = if registrar {
            "Authorization"
        } else {
            "Proxy-Authorization"
        };
        let method = req.method().unwrap_or_default().to_owned();
        let realm = self.cfg.domain.clone();
        if let Some(value) = req.header(header) {
            let nonces = &self.nonces;
            if auth::verify(value, &method, &user, &pass, &realm, |n| {
                nonces.iter().any(|x| x == n)
            }) {
                return true;
            }
        }
        let nonce = format!("{:032x}", rand::random::<u128>());
        self.nonces.push(nonce.clone());
        if self.nonces.len() > 64 {
            self.nonces.remove(0);
        }
        let (code, reason, h) = if registrar {
            (401, "Unauthorized", "WWW-Authenticate")
        } else {
            (407, "Proxy Authentication Required", "Proxy-Authenticate")
        };
        let mut res = response(req, flow, code, reason, Some(&tag()));
        res.push(h, auth::challenge(&realm, &nonce));
        self.reply(req, flow, res);
        false
    }

    fn on_register(&mut self, flow: &Flow, req: &Message) {
        let to = uri_of(req.header("To").unwrap_or_default()).to_owned();
        let host = uri_hostport(&to)
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        if !host.eq_ignore_ascii_case(self.domain()) {
            // flexisip refuses domains it does not serve.
            return self.simple(req, flow, 403, "Domain forbidden");
        }
        let Some(user) = uri_user(&to).map(str::to_owned) else {
            return self.simple(req, flow, 400, "Missing user in To");
        };
        if !self.authorized(flow, req, true) {
            return;
        }
        let header_expires = req
            .header("Expires")
            .and_then(|e| e.trim().parse::<u32>().ok());
        let now = Instant::now();
        self.bindings.retain(|b| b.expires_at > now);
        for contact in req.header_values("Contact") {
            if contact.trim() == "*" {
                if header_expires == Some(0) {
                    self.bindings.retain(|b| b.user != user);
                }
                continue;
            }
            let uri = uri_of(&contact).to_owned();
            let expires = param(&contact, "expires")
                .and_then(|e| e.parse::<u32>().ok())
                .or(header_expires)
                .unwrap_or(MAX_EXPIRES)
                .min(MAX_EXPIRES);
            self.bindings
                .retain(|b| !(b.user == user && b.contact == uri));
            if expires > 0 {
                self.bindings.push(Binding {
                    user: user.clone(),
                    contact: uri,
                    expires_at: now + Duration::from_secs(expires.into()),
                    flow: flow.clone(),
                });
                SimStats::bump(&self.stats.registrations);
            }
        }
        let mut res = response(req, flow, 200, "Ok", Some(&tag()));
        for b in self.bindings.iter().filter(|b| b.user == user) {
            let left = b.expires_at.saturating_duration_since(now).as_secs();
            res.push("Contact", format!("<{}>;expires={left}", b.contact));
        }
        res.push("Server", "flexisip/1.0.13 (sofia-sip-nta/2.0)");
        self.reply(req, flow, res);
        let _ = self.registered_tx.send(self.bindings.len());
    }

    /// The live bindings of `user` (expired and dead-flow ones skipped).
    pub fn bindings_of<'a>(&'a self, user: &'a str) -> impl Iterator<Item = &'a Binding> + 'a {
        let now = Instant::now();
        self.bindings
            .iter()
            .filter(move |b| b.user == user && b.expires_at > now && b.flow.alive())
    }

    fn on_message(&mut self, flow: &Flow, req: &Message) {
        let target = uri_user(req.uri().unwrap_or_default())
            .unwrap_or_default()
            .to_owned();
        if target != "c300x" {
            return self.simple(req, flow, 404, "Not Found");
        }
        if !self.authorized(flow, req, false) {
            return;
        }
        let from_user = uri_user(uri_of(req.header("From").unwrap_or_default()))
            .unwrap_or_default()
            .to_owned();
        let body = String::from_utf8_lossy(&req.body).trim().to_owned();
        self.stats.record_message(&from_user, &body);
        self.simple(req, flow, 200, "Ok");
        self.on_own_frame(&from_user, &body);
    }

    fn on_response(&mut self, flow: &Flow, res: &Message) {
        let (_, method) = res.cseq();
        if method == "INVITE" && self.rings.contains_key(res.call_id()) {
            self.on_ring_response(flow, res);
        }
        // Responses to our BYE, MESSAGE and CANCEL need no action.
    }

    pub fn on_internal(&mut self, ev: Internal) {
        match ev {
            Internal::Answer { call_id } => self.answer_view_call(&call_id),
            Internal::RingTimeout { call_id } => self.ring_timeout(&call_id),
            Internal::MediaEnded { call_id } => {
                tracing::info!(%call_id, "sim: no RTP from the bridge; hanging up");
                self.hang_up(&call_id);
            }
        }
    }

    pub async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Ring { devaddr, reply } => {
                let _ = reply.send(self.ring(devaddr).await);
            }
            Command::CancelRings => {
                let ids: Vec<String> = self.rings.keys().cloned().collect();
                for id in ids {
                    self.ring_timeout(&id);
                }
            }
            Command::AnswerElsewhere => {
                let ids: Vec<String> = self.rings.keys().cloned().collect();
                for id in ids {
                    self.cancel_ring(&id, Some(super::ring::COMPLETED_ELSEWHERE));
                }
            }
            Command::HangUpAll { reply } => {
                let ids: Vec<String> = self.calls.keys().cloned().collect();
                let n = ids.iter().filter(|id| self.hang_up(id)).count();
                let _ = reply.send(n);
            }
            Command::Restart => self.restart(),
            Command::SetDigest(d) => self.digest = d,
            Command::Registrations(reply) => {
                let now = Instant::now();
                let list = self
                    .bindings
                    .iter()
                    .filter(|b| b.expires_at > now && b.flow.alive())
                    .map(|b| (b.user.clone(), b.contact.clone(), b.flow.peer))
                    .collect();
                let _ = reply.send(list);
            }
        }
    }

    /// A reboot: registrations, calls and connections are gone, nobody is told.
    fn restart(&mut self) {
        tracing::info!("sim: restart (registrations, calls and connections dropped)");
        self.bindings.clear();
        for (_, call) in self.calls.drain() {
            if call.established() {
                self.stats
                    .active_calls
                    .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        self.rings.clear();
        self.sent.clear();
        if let Ok(mut t) = self.conns.lock() {
            t.cancel();
            *t = CancellationToken::new();
        }
        let _ = self.registered_tx.send(0);
    }
}
