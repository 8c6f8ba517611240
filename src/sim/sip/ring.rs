//! Doorbell rings (c300x-protocol.md §7): the unit INVITEs `alluser`, flexisip forks it to every
//! registered contact on its own flow; the first 200 wins (ACK, media, CANCEL the other forks),
//! and nobody answering for `ring_timeout` (about 30 s on the real unit) ends in CANCEL.

use std::net::IpAddr;

use tokio::sync::watch;

use super::core::{ALLOW, Core, Internal, USER_AGENT, branch, instance, tag};
use super::message::{Message, param, uri_of};
use super::transport::Flow;
use super::view::{Call, CallState};
use crate::proto::srtp::SdesKey;
use crate::sim::SimError;
use crate::sim::media::{BoundMedia, MediaPlan, MediaSession};
use crate::sim::sdp::{self, PeerSdp};
use crate::sim::stats::SimStats;

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

/// Lets a test follow one ring.
#[derive(Debug, Clone)]
pub struct RingHandle {
    pub call_id: String,
    pub forks: usize,
    state: watch::Receiver<RingState>,
}

impl RingHandle {
    pub fn state(&self) -> RingState {
        *self.state.borrow()
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
    flow: Flow,
    invite: Message,
    done: bool,
}

pub(crate) struct Ring {
    forks: Vec<Fork>,
    state: watch::Sender<RingState>,
    media: Option<(BoundMedia, SdesKey, SdesKey)>,
    from: String,
    cancelled: bool,
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
        let ip: IpAddr = self.local.ip();
        let bound = BoundMedia::bind(ip).await.map_err(SimError::Io)?;
        let (ak, vk) = (SdesKey::random(), SdesKey::random());
        let offer = sdp::ring_offer(
            ip,
            u64::from(rand::random::<u32>()),
            (bound.ports.audio, bound.ports.video),
            (&ak, &vk),
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
        let handle = RingHandle {
            call_id: call_id.clone(),
            forks: forks.len(),
            state: rx,
        };
        self.rings.insert(
            call_id.clone(),
            Ring {
                forks,
                state: tx,
                media: Some((bound, ak, vk)),
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

    pub(super) fn on_ring_response(&mut self, flow: &Flow, res: &Message) {
        let call_id = res.call_id().to_owned();
        let top_branch = res
            .header("Via")
            .and_then(|v| param(v, "branch"))
            .unwrap_or_default()
            .to_owned();
        let Some(ring) = self.rings.get_mut(&call_id) else {
            return;
        };
        let Some(idx) = ring.forks.iter().position(|f| {
            f.invite.header("Via").and_then(|v| param(v, "branch")) == Some(top_branch.as_str())
        }) else {
            return;
        };
        let code = res.code().unwrap_or(0);
        if code < 200 {
            if code > 100 && *ring.state.borrow() == RingState::Calling {
                let _ = ring.state.send(RingState::Ringing);
            }
            return;
        }
        let fork = &mut ring.forks[idx];
        fork.done = true;
        let ack = ack_for(&fork.invite, res, code >= 300, &self.local, flow);
        flow.send(&ack);
        if code >= 300 {
            if ring.forks.iter().all(|f| f.done) {
                let end = if ring.cancelled {
                    RingState::Cancelled
                } else {
                    RingState::Rejected(code)
                };
                let _ = ring.state.send(end);
                self.rings.remove(&call_id);
            }
            return;
        }
        // 2xx: the first one wins; the unit's media starts towards the bridge's answer.
        let answer = PeerSdp::parse(&res.body);
        let Some((bound, ak, vk)) = ring.media.take() else {
            return; // a second 200 from another fork: already answered
        };
        let plan = match answer.check_answer() {
            Ok((a, v)) => match (a.ip.or(v.ip), &a.crypto, &v.crypto) {
                (Some(ip), Some(ac), Some(vc)) => Some(MediaPlan {
                    remote_ip: ip,
                    remote_audio_port: a.port,
                    remote_video_port: v.port,
                    audio_pt: a.pt.unwrap_or(96),
                    video_pt: v.pt.unwrap_or(97),
                    local_audio_key: ak,
                    local_video_key: vk,
                    remote_audio_key: ac.key.clone(),
                    remote_video_key: vc.key.clone(),
                    no_rtp_timeout: self.cfg.no_rtp_timeout,
                }),
                _ => None,
            },
            Err(e) => {
                tracing::warn!(%call_id, "sim: unusable answer to the ring: {e}");
                None
            }
        };
        let invite = ring.forks[idx].invite.clone();
        let others: Vec<(Flow, Message)> = ring
            .forks
            .iter_mut()
            .filter(|f| !f.done)
            .map(|f| {
                f.done = true;
                (f.flow.clone(), cancel_for(&f.invite))
            })
            .collect();
        let _ = ring.state.send(RingState::Answered);
        let from = ring.from.clone();
        self.rings.remove(&call_id);
        for (f, c) in &others {
            f.send(c);
        }
        let media = plan.map(|plan| {
            let (m, ended) =
                MediaSession::start(bound, plan, self.stats.clone(), self.faults.clone());
            let tx = self.internal.clone();
            let id = call_id.clone();
            tokio::spawn(async move {
                if ended.await.is_ok() {
                    let _ = tx.send(Internal::MediaEnded { call_id: id });
                }
            });
            m
        });
        SimStats::bump(&self.stats.active_calls);
        self.calls.insert(
            call_id,
            Call {
                state: CallState::Established,
                flow: flow.clone(),
                invite: invite.clone(),
                local_party: from,
                remote_party: res.header("To").unwrap_or_default().to_owned(),
                remote_target: uri_of(res.header("Contact").unwrap_or_default()).to_owned(),
                local_cseq: 20,
                devaddr: None,
                local_sdp: String::from_utf8_lossy(&invite.body).into_owned(),
                pending: None,
                media,
                contact: invite.header("Contact").unwrap_or_default().to_owned(),
            },
        );
    }

    /// Nobody answered: CANCEL every fork still pending (RFC 3261 §9.1).
    pub(super) fn ring_timeout(&mut self, call_id: &str) {
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
        for f in ring.forks.iter().filter(|f| !f.done) {
            f.flow.send(&cancel_for(&f.invite));
        }
        let _ = ring.state.send(RingState::Cancelled);
        let (tx, id) = (self.internal.clone(), call_id.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            let _ = tx.send(Internal::RingTimeout { call_id: id });
        });
    }
}

/// CANCEL for a pending INVITE: same Request-URI, top Via (branch), From, To, Call-ID, CSeq number.
fn cancel_for(invite: &Message) -> Message {
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
fn ack_for(
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
        let c = uri_of(res.header("Contact").unwrap_or_default());
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
