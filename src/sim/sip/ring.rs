//! Doorbell rings (c300x-protocol.md §7): the unit INVITEs `alluser`, flexisip forks it to every
//! registered contact on its own flow; nobody answering for `ring_timeout` (about 30 s on the real
//! unit) ends in CANCEL. With several panels the INVITE's SDP says which one rang (session-level
//! `a=DEVADDR`, our choice: the real unit's carrier is unknown, §12 Q6). Responses, early media
//! and the answer are in `early.rs`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::sync::{oneshot, watch};

use super::core::{ALLOW, Core, Internal, USER_AGENT, branch, instance, tag};
use super::message::Message;
use super::transport::Flow;
use crate::proto::srtp::SdesKey;
use crate::sim::SimError;
use crate::sim::media::{BoundMedia, MediaEnd, MediaPlan, MediaSession};
use crate::sim::sdp;
use crate::sim::stats::{CallMediaCounters, SimStats};

/// What happened to a ring, as seen by the unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingState {
    /// INVITEs sent, no provisional response yet.
    Calling,
    /// A fork answered 180 (or 183).
    Ringing,
    /// A fork answered 200: the call is up with media.
    Answered,
    /// Nobody answered in time (or the test cancelled it): CANCEL sent.
    Cancelled,
    /// Every fork refused; the last final status.
    Rejected(u16),
}

/// The early media of a ring (a fork answered 183 with SDP), as a test sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EarlyMedia {
    /// No fork has sent a usable 183 with SDP (yet), or the unit ignores them.
    None,
    /// The unit streams to the fork whose 183 carried `to_tag`; video goes to `video`.
    Streaming { to_tag: String, video: SocketAddr },
    /// Stopped: CANCEL (timeout), another fork answered or that fork gave up. When the same fork
    /// answers, the stream simply continues as the call (and this says `Ended`).
    Ended,
}

/// Lets a test follow one ring.
#[derive(Debug, Clone)]
pub struct RingHandle {
    pub call_id: String,
    pub forks: usize,
    state: watch::Receiver<RingState>,
    early: watch::Receiver<EarlyMedia>,
}

impl RingHandle {
    pub fn state(&self) -> RingState {
        *self.state.borrow()
    }

    pub fn early_media(&self) -> EarlyMedia {
        self.early.borrow().clone()
    }

    /// Waits until the early media matches `pred`, up to `timeout`.
    pub async fn wait_early_media(
        &mut self,
        timeout: std::time::Duration,
        pred: impl Fn(&EarlyMedia) -> bool,
    ) -> Option<EarlyMedia> {
        let fut = self.early.wait_for(|e| pred(e));
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(e)) => Some(e.clone()),
            _ => None,
        }
    }

    /// Waits until the ring reaches a state matching `pred`, up to `timeout`.
    pub async fn wait_for(
        &mut self,
        timeout: std::time::Duration,
        pred: impl Fn(RingState) -> bool,
    ) -> Option<RingState> {
        let fut = self.state.wait_for(|s| pred(*s));
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(s)) => Some(*s),
            _ => None,
        }
    }
}

pub(crate) struct Fork {
    pub flow: Flow,
    pub invite: Message,
    /// A final response came (or we CANCELled after another fork answered).
    pub done: bool,
}

/// Early media running towards one fork.
pub(crate) struct Early {
    pub fork: usize,
    pub session: MediaSession,
    pub ended: oneshot::Receiver<MediaEnd>,
    /// What the 183 negotiated; an identical 200 keeps this session.
    pub plan: MediaPlan,
}

pub(crate) struct Ring {
    pub forks: Vec<Fork>,
    pub state: watch::Sender<RingState>,
    pub early_tx: watch::Sender<EarlyMedia>,
    /// The ports of the offer: early media and the answered call both use them.
    pub bound: BoundMedia,
    /// The offer's keys (audio, video): they protect what the unit sends (§4.3).
    pub keys: (SdesKey, SdesKey),
    /// The panel's name, drawn into the picture.
    pub label: Option<String>,
    pub counters: Arc<CallMediaCounters>,
    pub early: Option<Early>,
    pub from: String,
    pub cancelled: bool,
}

impl Ring {
    /// Stops the early media, if any (the unit stops streaming when the ring ends).
    pub fn stop_early(&mut self) {
        if let Some(early) = self.early.take() {
            early.session.stop();
            self.early_tx.send_replace(EarlyMedia::Ended);
        }
    }
}

impl Core {
    pub(super) async fn ring(&mut self, devaddr: u8) -> Result<RingHandle, SimError> {
        let targets: Vec<(String, Flow)> = self
            .bindings
            .iter()
            .filter(|b| b.user != "c300x")
            .map(|b| (b.contact.clone(), b.flow.clone()))
            .collect();
        let targets: Vec<_> = targets.into_iter().filter(|(_, f)| f.alive()).collect();
        if targets.is_empty() {
            return Err(SimError::NobodyRegistered);
        }
        let label = self
            .panel_label(Some(&devaddr.to_string()))
            .map_err(|()| SimError::UnknownPanel(devaddr))?;
        // Only with several panels is there something to tell apart.
        let carried = (self.cfg.panels.len() > 1).then_some(devaddr);
        let ip: IpAddr = self.local.ip();
        let bound = BoundMedia::bind(ip).await.map_err(SimError::Io)?;
        let (ak, vk) = (SdesKey::random(), SdesKey::random());
        let offer = sdp::ring_offer(
            ip,
            u64::from(rand::random::<u32>()),
            (bound.ports.audio, bound.ports.video),
            (&ak, &vk),
            carried,
        );
        let call_id = format!("{:016x}@{}", rand::random::<u64>(), ip);
        let from = format!("<sip:c300x@{}>;tag={}", self.domain(), tag());
        let mut forks = Vec::new();
        for (contact, flow) in targets {
            let mut inv = Message::request("INVITE", &contact);
            let via = format!(
                "SIP/2.0/{} {}:{};branch={};rport",
                flow.via_transport(),
                self.local.ip(),
                self.local.port(),
                branch()
            );
            let rr = format!(
                "<sip:{}:{};transport={t};lr>, <sip:127.0.0.1:5060;transport={t};lr>",
                self.local.ip(),
                self.local.port(),
                t = flow.transport()
            );
            inv.push("Via", via)
                .push("Record-Route", rr)
                .push("Max-Forwards", "69")
                .push("From", from.clone())
                .push("To", format!("<sip:alluser@{}>", self.domain()))
                .push("Call-ID", call_id.clone())
                .push("CSeq", "20 INVITE")
                .push(
                    "Contact",
                    format!(
                        "<sip:c300x@127.0.0.1:{};transport={}>;+sip.instance=\"{}\"",
                        40000 + rand::random::<u16>() % 20000,
                        flow.transport(),
                        instance()
                    ),
                )
                .push("User-Agent", USER_AGENT)
                .push("Supported", "replaces, outbound")
                .push("Allow", ALLOW)
                .set_body("application/sdp", offer.clone());
            flow.send(&inv);
            forks.push(Fork {
                flow,
                invite: inv,
                done: false,
            });
        }
        SimStats::bump(&self.stats.rings_sent);
        tracing::info!(devaddr, %call_id, forks = forks.len(), "sim: doorbell ring");
        let (tx, rx) = watch::channel(RingState::Calling);
        let (early_tx, early) = watch::channel(EarlyMedia::None);
        let handle = RingHandle {
            call_id: call_id.clone(),
            forks: forks.len(),
            state: rx,
            early,
        };
        self.rings.insert(
            call_id.clone(),
            Ring {
                forks,
                state: tx,
                early_tx,
                bound,
                keys: (ak, vk),
                label,
                counters: self.stats.call_counters(&call_id),
                early: None,
                from,
                cancelled: false,
            },
        );
        let (itx, timeout) = (self.internal.clone(), self.cfg.ring_timeout);
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let _ = itx.send(Internal::RingTimeout { call_id });
        });
        Ok(handle)
    }

    /// Nobody answered: CANCEL every fork still pending (RFC 3261 §9.1).
    pub(super) fn ring_timeout(&mut self, call_id: &str) {
        self.cancel_ring(call_id, None);
    }

    /// CANCEL every fork still pending, with a `Reason` header when given.
    pub(super) fn cancel_ring(&mut self, call_id: &str, reason: Option<&str>) {
        let Some(ring) = self.rings.get_mut(call_id) else {
            return;
        };
        if ring.cancelled {
            // The bridge never finished the CANCELled transactions; give up on them.
            let _ = ring.state.send(RingState::Cancelled);
            self.rings.remove(call_id);
            return;
        }
        ring.cancelled = true;
        ring.stop_early();
        for f in ring.forks.iter().filter(|f| !f.done) {
            let mut cancel = cancel_for(&f.invite);
            if let Some(r) = reason {
                cancel.push("Reason", r);
            }
            f.flow.send(&cancel);
        }
        let _ = ring.state.send(RingState::Cancelled);
        let (tx, id) = (self.internal.clone(), call_id.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            let _ = tx.send(Internal::RingTimeout { call_id: id });
        });
    }
}

/// What flexisip writes on the CANCELs to the other forks once one answered (RFC 3326).
pub(super) const COMPLETED_ELSEWHERE: &str = "SIP;cause=200;text=\"Call completed elsewhere\"";

/// CANCEL for a pending INVITE: same Request-URI, top Via (branch), From, To, Call-ID, CSeq number.
pub(super) fn cancel_for(invite: &Message) -> Message {
    let mut c = Message::request("CANCEL", invite.uri().unwrap_or_default());
    let (n, _) = invite.cseq();
    c.push("Via", invite.header("Via").unwrap_or_default())
        .push("Max-Forwards", "70")
        .push("From", invite.header("From").unwrap_or_default())
        .push("To", invite.header("To").unwrap_or_default())
        .push("Call-ID", invite.call_id())
        .push("CSeq", format!("{n} CANCEL"))
        .push("User-Agent", USER_AGENT);
    c
}

/// ACK for a final response (RFC 3261 §17.1.1.3 for non-2xx: same branch; §13.2.2.4 for 2xx:
/// a new transaction to the Contact of the 200).
pub(super) fn ack_for(
    invite: &Message,
    res: &Message,
    non_2xx: bool,
    local: &std::net::SocketAddr,
    flow: &Flow,
) -> Message {
    let (n, _) = invite.cseq();
    let target = if non_2xx {
        invite.uri().unwrap_or_default().to_owned()
    } else {
        let c = super::message::uri_of(res.header("Contact").unwrap_or_default());
        if c.is_empty() {
            invite.uri().unwrap_or_default().to_owned()
        } else {
            c.to_owned()
        }
    };
    let via = if non_2xx {
        invite.header("Via").unwrap_or_default().to_owned()
    } else {
        format!(
            "SIP/2.0/{} {}:{};branch={};rport",
            flow.via_transport(),
            local.ip(),
            local.port(),
            branch()
        )
    };
    let mut ack = Message::request("ACK", &target);
    ack.push("Via", via)
        .push("Max-Forwards", "70")
        .push("From", invite.header("From").unwrap_or_default())
        .push("To", res.header("To").unwrap_or_default())
        .push("Call-ID", invite.call_id())
        .push("CSeq", format!("{n} ACK"));
    ack
}
