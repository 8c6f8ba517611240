//! View calls as the unit answers them (c300x-protocol.md §4–§6): INVITE checks (486 without
//! DEVADDR, for a DEVADDR no configured panel has, or when that panel is busy; 488 without
//! SDES), 100/180/200 with the captured 200 OK
//! shape (Record-Route, loopback Contact, belle-sip User-Agent), ACK, BYE either way, CANCEL,
//! re-INVITE (200 with the unchanged answer), and the hang-up when no RTP arrives from us.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::core::{ALLOW, Core, Internal, USER_AGENT, instance, response, tag};
use super::message::{Message, param, uri_of, uri_user};
use super::transport::Flow;
use crate::proto::srtp::SdesKey;
use crate::sim::media::{BoundMedia, MediaOptions, MediaPlan, MediaSession};
use crate::sim::sdp::{self, OfferError, PeerSdp};
use crate::sim::stats::{InDialogRequest, SimStats};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallState {
    /// 180 sent, waiting for the answer delay.
    Early,
    /// 200 sent (view call) or received (doorbell); media running.
    Established,
}

/// One dialog with the bridge: a view call (bridge is UAC) or an answered ring (we are UAC).
pub(crate) struct Call {
    pub state: CallState,
    pub flow: Flow,
    /// The request that created the dialog (our INVITE for rings, theirs for view calls).
    pub invite: Message,
    /// Our side of the dialog (`From`/`To` header value with our tag).
    pub local_party: String,
    /// Their side (with their tag).
    pub remote_party: String,
    /// Their Contact URI: the target of our in-dialog requests.
    pub remote_target: String,
    pub local_cseq: u32,
    pub devaddr: Option<String>,
    /// The SDP we answered with (repeated on re-INVITE).
    pub local_sdp: String,
    pub pending: Option<(BoundMedia, MediaPlan, MediaOptions)>,
    pub media: Option<MediaSession>,
    pub contact: String,
}

impl Call {
    pub fn established(&self) -> bool {
        self.state == CallState::Established
    }
}

impl Core {
    pub(super) async fn on_invite(&mut self, flow: &Flow, req: &Message) {
        let call_id = req.call_id().to_owned();
        if let Some(call) = self.calls.get(&call_id) {
            // In-dialog re-INVITE: same media, same keys (document: c300x-protocol.md §6).
            if param(req.header("To").unwrap_or_default(), "tag").is_some() {
                let mut res = response(req, flow, 200, "Ok", None);
                res.push("Contact", call.contact.clone())
                    .push("User-Agent", USER_AGENT)
                    .push("Supported", "replaces, outbound")
                    .set_body("application/sdp", call.local_sdp.clone());
                self.reply(req, flow, res);
                return;
            }
        }
        flow.send(&response(req, flow, 100, "Trying", None));
        SimStats::bump(&self.stats.invites_received);
        let target = uri_user(req.uri().unwrap_or_default())
            .unwrap_or_default()
            .to_owned();
        if target != "c300x" {
            return self.reject(req, flow, 404, "Not Found");
        }
        if !self.authorized(flow, req, false) {
            return;
        }
        if let Some(code) = self.faults.take_reject_code() {
            return self.reject(req, flow, code, reason_for(code));
        }
        let offer = PeerSdp::parse(&req.body);
        let (audio, video) = match offer.check_view_offer() {
            Ok(m) => m,
            Err(OfferError::NoDevaddr) => return self.reject(req, flow, 486, "Busy Here"),
            Err(OfferError::NotAcceptable(why)) => {
                tracing::info!(%call_id, "sim: 488 for the offer: {why}");
                return self.reject(req, flow, 488, "Not Acceptable Here");
            }
        };
        let devaddr = offer.devaddr.clone();
        // Each configured panel has its own picture; an address no panel has gets 486, as a
        // numeric DEVADDR reportedly does on a C100X (§11; unverified on the C300X).
        let label = match self.panel_label(devaddr.as_deref()) {
            Ok(label) => label,
            Err(()) => {
                tracing::info!(%call_id, ?devaddr, "sim: no panel with that DEVADDR");
                return self.reject(req, flow, 486, "Busy Here");
            }
        };
        if self
            .calls
            .values()
            .any(|c| c.devaddr.is_some() && c.devaddr == devaddr)
        {
            return self.reject(req, flow, 486, "Busy Here");
        }
        let (Some(remote_ip), Some(ak), Some(vk)) = (
            video.ip.or(audio.ip),
            audio.crypto.as_ref().map(|c| c.key.clone()),
            video.crypto.as_ref().map(|c| c.key.clone()),
        ) else {
            return self.reject(req, flow, 488, "Not Acceptable Here");
        };
        let bound = match BoundMedia::bind(self.local.ip()).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("sim: cannot bind media ports: {e}");
                return self.reject(req, flow, 500, "Server Internal Error");
            }
        };
        let (local_ak, local_vk) = (SdesKey::random(), SdesKey::random());
        let sess: u32 = rand::random();
        let local_sdp = sdp::view_answer(
            self.local.ip(),
            u64::from(sess),
            (audio, bound.ports.audio, &local_ak),
            (video, bound.ports.video, &local_vk),
        );
        let plan = MediaPlan {
            remote_ip,
            remote_audio_port: audio.port,
            remote_video_port: video.port,
            audio_pt: audio.pt.unwrap_or(110),
            video_pt: video.pt.unwrap_or(96),
            local_audio_key: local_ak,
            local_video_key: local_vk,
            remote_audio_key: ak,
            remote_video_key: vk,
            no_rtp_timeout: self.cfg.no_rtp_timeout,
        };
        let local_tag = tag();
        let to = req.header("To").unwrap_or_default();
        // The unit's Linphone sits behind flexisip on loopback, on an ephemeral port.
        let contact = format!(
            "<sip:c300x@127.0.0.1:{};transport={};verified>;+sip.instance=\"{}\"",
            40000 + rand::random::<u16>() % 20000,
            flow.transport(),
            instance()
        );
        let call = Call {
            state: CallState::Early,
            flow: flow.clone(),
            invite: req.clone(),
            local_party: format!("{to};tag={local_tag}"),
            remote_party: req.header("From").unwrap_or_default().to_owned(),
            remote_target: uri_of(req.header("Contact").unwrap_or_default()).to_owned(),
            local_cseq: 100,
            devaddr,
            local_sdp,
            pending: Some((
                bound,
                plan,
                MediaOptions {
                    label,
                    counters: Some(self.stats.call_counters(&call_id)),
                    ..MediaOptions::default()
                },
            )),
            media: None,
            contact,
        };
        let mut ringing = response(req, flow, 180, "Ringing", Some(&local_tag));
        ringing
            .push("Record-Route", self.record_route(flow))
            .push("Contact", call.contact.clone())
            .push("User-Agent", USER_AGENT);
        flow.send(&ringing);
        self.calls.insert(call_id.clone(), call);
        let delay = self.cfg.answer_delay;
        let tx = self.internal.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Internal::Answer { call_id });
        });
    }

    fn reject(&mut self, req: &Message, flow: &Flow, code: u16, reason: &str) {
        SimStats::bump(&self.stats.invites_rejected);
        let mut res = response(req, flow, code, reason, Some(&tag()));
        res.push("User-Agent", USER_AGENT);
        self.reply(req, flow, res);
    }

    /// The answer delay is over: 200 OK in the captured shape (c300x-protocol.md §4.2), media on.
    pub(super) fn answer_view_call(&mut self, call_id: &str) {
        let rr = match self.calls.get(call_id) {
            Some(c) if c.state == CallState::Early => self.record_route(&c.flow),
            _ => return,
        };
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let local_tag = param(&call.local_party, "tag")
            .unwrap_or_default()
            .to_owned();
        let mut ok = response(&call.invite, &call.flow, 200, "Ok", Some(&local_tag));
        // Record-Route goes right after Via, as in the capture.
        let vias = ok.headers.iter().filter(|(n, _)| n == "Via").count();
        ok.headers.insert(vias, ("Record-Route".to_owned(), rr));
        ok.push("Contact", call.contact.clone())
            .push("User-Agent", USER_AGENT)
            .push("Supported", "replaces, outbound")
            .push("Allow", ALLOW)
            .set_body("application/sdp", call.local_sdp.clone());
        let invite = call.invite.clone();
        let flow = call.flow.clone();
        call.state = CallState::Established;
        if let Some((bound, plan, options)) = call.pending.take() {
            let (media, ended) = MediaSession::start_with(
                bound,
                plan,
                options,
                self.stats.clone(),
                self.faults.clone(),
            );
            call.media = Some(media);
            let tx = self.internal.clone();
            let id = call_id.to_owned();
            tokio::spawn(async move {
                if ended.await.is_ok() {
                    let _ = tx.send(Internal::MediaEnded { call_id: id });
                }
            });
        }
        SimStats::bump(&self.stats.calls_total);
        SimStats::bump(&self.stats.active_calls);
        self.reply(&invite, &flow, ok);
    }

    fn note_in_dialog(&self, flow: &Flow, req: &Message) {
        let same_flow = self
            .calls
            .get(req.call_id())
            .is_some_and(|c| c.flow.id == flow.id && c.flow.peer == flow.peer);
        if let Ok(mut v) = self.stats.in_dialog.lock() {
            v.push(InDialogRequest {
                method: req.method().unwrap_or_default().to_owned(),
                uri: req.uri().unwrap_or_default().to_owned(),
                routes: req.header_values("Route"),
                call_id: req.call_id().to_owned(),
                same_flow,
            });
        }
    }

    pub(super) fn on_ack(&mut self, flow: &Flow, req: &Message) {
        if self.calls.contains_key(req.call_id()) {
            self.note_in_dialog(flow, req);
        }
    }

    pub(super) fn on_bye(&mut self, flow: &Flow, req: &Message) {
        if !self.calls.contains_key(req.call_id()) {
            return self.simple(req, flow, 481, "Call/Transaction Does Not Exist");
        }
        self.note_in_dialog(flow, req);
        SimStats::bump(&self.stats.byes_received);
        self.end_call(req.call_id());
        let res = response(req, flow, 200, "Ok", None);
        self.reply(req, flow, res);
    }

    pub(super) fn on_cancel(&mut self, flow: &Flow, req: &Message) {
        let call_id = req.call_id().to_owned();
        let early = self
            .calls
            .get(&call_id)
            .is_some_and(|c| c.state == CallState::Early);
        if !early {
            return self.simple(req, flow, 481, "Call/Transaction Does Not Exist");
        }
        self.simple(req, flow, 200, "Ok");
        if let Some(call) = self.calls.remove(&call_id) {
            let tag = param(&call.local_party, "tag")
                .unwrap_or_default()
                .to_owned();
            let res = response(&call.invite, flow, 487, "Request Terminated", Some(&tag));
            let invite = call.invite.clone();
            self.reply(&invite, flow, res);
        }
    }

    /// Ends a call locally: media off, counters down. Returns whether it was established.
    pub(crate) fn end_call(&mut self, call_id: &str) -> bool {
        let Some(mut call) = self.calls.remove(call_id) else {
            return false;
        };
        if let Some(m) = call.media.take() {
            m.stop();
        }
        if call.established() {
            self.stats.active_calls.fetch_sub(1, Ordering::SeqCst);
        }
        call.established()
    }

    /// The unit hangs up: BYE to the bridge's Contact on the dialog's flow, then ends the call.
    pub(super) fn hang_up(&mut self, call_id: &str) -> bool {
        let via = match self.calls.get(call_id) {
            Some(c) if c.established() => self.via(&c.flow),
            _ => return false,
        };
        let Some(call) = self.calls.get_mut(call_id) else {
            return false;
        };
        call.local_cseq += 1;
        let mut bye = Message::request("BYE", &call.remote_target);
        bye.push("Via", via)
            .push("Max-Forwards", "70")
            .push("From", call.local_party.clone())
            .push("To", call.remote_party.clone())
            .push("Call-ID", call_id)
            .push("CSeq", format!("{} BYE", call.local_cseq))
            .push("User-Agent", USER_AGENT);
        call.flow.send(&bye);
        SimStats::bump(&self.stats.byes_sent);
        self.end_call(call_id)
    }

    /// Drops expired entries that no longer matter (called on every loop turn).
    pub(crate) fn housekeeping(&mut self) {
        let now = Instant::now();
        self.bindings.retain(|b| b.expires_at > now);
    }
}

fn reason_for(code: u16) -> &'static str {
    match code {
        403 => "Forbidden",
        404 => "Not Found",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        603 => "Decline",
        _ => "Rejected",
    }
}
