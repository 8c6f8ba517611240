//! Doorbell rings (c300x-protocol.md §7): an INVITE to `alluser` (or to us) on our flow gets
//! 100 + 180 with a To tag, never a 200 by itself; `early_media` (183 with our SDP: the silent
//! preview), CANCEL (rsipstack answers 200 + 487; its `Reason` tells an answer elsewhere, RFC
//! 3326), our timeout (480), `reject_ring` (`ring_reject_code`) and `answer_ring` (200 with our
//! SDP and GRUU Contact). Every way a ring ends — answered included — sends exactly one
//! `RingEvent::Ended`; a ring that ends unanswered also ends its early media (`NotAnswered`).

use std::sync::Arc;
use std::time::SystemTime;

use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, StatusCode};
use rsipstack::transaction::Transaction;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::agent::{Session, reply};
use super::call::{AnsweredCall, CallSignals, EndReason, watch_dialog};
use super::{IncomingRing, RingEndReason, RingEnded, RingEvent, SipError};

/// Whether a CANCEL's `Reason` header(s) say the call was answered elsewhere: `SIP;cause=200`
/// (RFC 3326 §2; flexisip writes `text="Call completed elsewhere"`). Liberal: either is enough.
pub fn completed_elsewhere(reason: &str) -> bool {
    reason.split(',').any(|one| {
        let mut parts = one.split(';').map(str::trim);
        let protocol = parts.next().unwrap_or_default();
        let mut cause_200 = false;
        let mut text_elsewhere = false;
        for p in parts {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let v = v.trim().trim_matches('"');
            if k.trim().eq_ignore_ascii_case("cause") {
                cause_200 = v == "200";
            } else if k.trim().eq_ignore_ascii_case("text") {
                text_elsewhere = v.to_ascii_lowercase().contains("elsewhere");
            }
        }
        (protocol.eq_ignore_ascii_case("SIP") && cause_200) || text_elsewhere
    })
}

/// A ring we answered 180 to and that is still pending.
pub(super) struct Ring {
    dialog: InviteDialog,
    signals: Arc<CallSignals>,
    offer: String,
    /// `answer_ring` sent 200: the dialog now belongs to the call.
    answered: bool,
    /// We sent 183 with SDP (the preview); a second one is not sent.
    previewed: bool,
    /// Nobody answered or cancelled by then: 480 (the session's timer, no task per ring).
    pub deadline: Instant,
}

impl Session<'_> {
    pub(super) fn on_ring(&mut self, mut tx: Transaction) {
        let req = &tx.original;
        let call_id = match req.call_id_header() {
            Ok(c) => c.value().to_owned(),
            Err(_) => return,
        };
        let from = req
            .from_header()
            .map(|f| f.value().to_owned())
            .unwrap_or_default();
        let offer = String::from_utf8_lossy(&req.body).into_owned();
        let (state_tx, state_rx) = self.flow.dialogs.new_dialog_state_channel();
        let contact = rsipstack::sip::Uri::try_from(self.flow.contact_uri.as_str()).ok();
        let dialog = match self.flow.dialogs.get_or_create_server_invite(
            &tx,
            state_tx,
            Some(self.flow.credential.clone()),
            contact,
        ) {
            Ok(d) => d,
            Err(e) => {
                tracing::info!(%call_id, "unusable INVITE: {e}");
                self.tasks
                    .spawn(async move { reply(&mut tx, StatusCode::BadRequest).await });
                return;
            }
        };
        // The dialog drives the INVITE server transaction: 100 now, our responses, CANCEL, ACK.
        let mut driver = dialog.clone();
        let id = call_id.clone();
        self.tasks.spawn(async move {
            if let Err(e) = driver.handle(&mut tx).await {
                tracing::debug!(call_id = %id, "ring transaction: {e}");
            }
        });
        if let Err(e) = dialog.ringing(
            Some(vec![Header::Supported("replaces, outbound, gruu".into())]),
            None,
        ) {
            tracing::info!(%call_id, "cannot send 180: {e}");
        }
        let signals = CallSignals::new();
        watch_dialog(
            call_id.clone(),
            state_rx,
            signals.clone(),
            self.internal_tx.clone(),
        );
        tracing::info!(%call_id, %from, "doorbell ring");
        self.rings.insert(
            call_id.clone(),
            Ring {
                dialog,
                signals,
                offer: offer.clone(),
                answered: false,
                previewed: false,
                deadline: Instant::now() + self.agent.s.ring_timeout,
            },
        );
        let _ = self.agent.rings.send(RingEvent::Incoming(IncomingRing {
            call_id,
            from,
            offer_sdp: offer,
            at: SystemTime::now(),
        }));
    }

    /// The earliest ring deadline (for the session's timer).
    pub(super) fn next_ring_deadline(&self) -> Option<Instant> {
        self.rings
            .values()
            .filter(|r| !r.answered)
            .map(|r| r.deadline)
            .min()
    }

    /// Times out every ring whose deadline has passed.
    pub(super) fn ring_deadlines(&mut self) {
        let now = Instant::now();
        let late: Vec<String> = self
            .rings
            .iter()
            .filter(|(_, r)| !r.answered && r.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in late {
            self.ring_timeout(&id);
        }
    }

    /// Removes a pending ring and tells the listeners why it ended.
    pub(super) fn end_ring(&mut self, call_id: &str, reason: RingEndReason) {
        let cancel_reason = self
            .flow
            .cancel_reasons
            .lock()
            .ok()
            .and_then(|mut m| m.remove(call_id));
        if let Some(ring) = self.rings.remove(call_id) {
            let reason = match (reason, cancel_reason) {
                (RingEndReason::Cancelled, Some(r)) if completed_elsewhere(&r) => {
                    RingEndReason::AnsweredElsewhere
                }
                (reason, _) => reason,
            };
            if !ring.answered {
                self.flow.dialogs.remove_dialog(&ring.dialog.id());
                // The preview's media stops with the ring.
                ring.signals.end(EndReason::NotAnswered);
            }
            tracing::info!(%call_id, ?reason, "ring ended");
            let _ = self.agent.rings.send(RingEvent::Ended(RingEnded {
                call_id: call_id.to_owned(),
                reason,
            }));
        }
    }

    pub(super) fn ring_timeout(&mut self, call_id: &str) {
        let Some(ring) = self.rings.get(call_id) else {
            return;
        };
        if let Err(e) = ring
            .dialog
            .reject(Some(StatusCode::TemporarilyUnavailable), None)
        {
            tracing::debug!(%call_id, "480 to the ring: {e}");
        }
        self.end_ring(call_id, RingEndReason::Timeout);
    }

    /// 183 with our SDP (c300x-protocol.md §7); the ring's end signal for the preview's media.
    pub(super) fn early_media(
        &mut self,
        call_id: &str,
        sdp: String,
    ) -> Result<tokio::sync::watch::Receiver<Option<EndReason>>, SipError> {
        let ring = self
            .rings
            .get_mut(call_id)
            .filter(|r| !r.answered)
            .ok_or_else(|| SipError::NoSuchRing {
                call_id: call_id.to_owned(),
            })?;
        if !ring.previewed {
            ring.dialog
                .ringing(
                    Some(vec![
                        Header::ContentType("application/sdp".into()),
                        Header::Supported("replaces, outbound, gruu".into()),
                    ]),
                    Some(sdp.into_bytes()),
                )
                .map_err(|e| SipError::Stack {
                    call_id: call_id.to_owned(),
                    detail: e.to_string(),
                })?;
            ring.previewed = true;
            tracing::info!(%call_id, "doorbell ring: 183 with our SDP (silent preview)");
        }
        Ok(ring.signals.ended.subscribe())
    }

    /// Refuses a pending ring with `code` (any 4xx–6xx; what the unit makes of it is unverified).
    pub(super) fn reject_ring(&mut self, call_id: &str, code: u16) -> Result<(), SipError> {
        let ring = self
            .rings
            .get(call_id)
            .ok_or_else(|| SipError::NoSuchRing {
                call_id: call_id.to_owned(),
            })?;
        let code = if (400..700).contains(&code) {
            code
        } else {
            486
        };
        ring.dialog
            .reject(Some(StatusCode::from(code)), None)
            .map_err(|e| SipError::Stack {
                call_id: call_id.to_owned(),
                detail: e.to_string(),
            })?;
        self.end_ring(call_id, RingEndReason::Rejected);
        Ok(())
    }

    /// 200 with our SDP; the reply waits (in a task) for the ACK. The ring ends at the 200
    /// (`Answered`: the other phones stop ringing) or when the 200 cannot be sent
    /// (`AnswerFailed`); an ACK that never comes ends the call with a BYE, not a stuck ring.
    pub(super) fn answer_ring(
        &mut self,
        call_id: String,
        answer: String,
        reply: oneshot::Sender<Result<AnsweredCall, SipError>>,
    ) {
        let Some(ring) = self.rings.get_mut(&call_id) else {
            let _ = reply.send(Err(SipError::NoSuchRing { call_id }));
            return;
        };
        let accepted = ring.dialog.accept(
            Some(vec![
                Header::ContentType("application/sdp".into()),
                Header::Supported("replaces, outbound, gruu".into()),
            ]),
            Some(answer.clone().into_bytes()),
        );
        if let Err(e) = accepted {
            self.end_ring(&call_id, RingEndReason::AnswerFailed);
            let _ = reply.send(Err(SipError::Stack {
                call_id,
                detail: e.to_string(),
            }));
            return;
        }
        ring.answered = true;
        let (dialog, signals, offer) = (
            ring.dialog.clone(),
            ring.signals.clone(),
            ring.offer.clone(),
        );
        self.end_ring(&call_id, RingEndReason::Answered);
        // Re-INVITEs inside this call get our answer again.
        signals.set_local_sdp(&answer);
        self.calls
            .insert(call_id.clone(), (dialog.clone(), signals.clone()));
        let wait = self.agent.s.invite_timeout;
        let bye_timeout = self.agent.s.bye_timeout;
        let internal = self.internal_tx.clone();
        self.tasks.spawn(async move {
            let mut confirmed = signals.confirmed.subscribe();
            let mut ended = signals.ended.subscribe();
            let outcome = tokio::select! {
                r = confirmed.wait_for(|c| *c) => r.is_ok(),
                _ = ended.wait_for(Option::is_some) => false,
                _ = tokio::time::sleep(wait) => false,
            };
            let r = if outcome {
                Ok(AnsweredCall::new(
                    call_id,
                    offer,
                    dialog,
                    signals,
                    bye_timeout,
                    internal,
                ))
            } else {
                if !signals.is_ended() {
                    tracing::info!(%call_id, "no ACK to our 200: BYE");
                    signals
                        .local_hangup
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                    super::call::bye(&dialog, bye_timeout).await;
                    signals.end(super::call::EndReason::Timeout);
                }
                Err(SipError::Timeout { call_id })
            };
            if let Err(Ok(call)) = reply.send(r) {
                call.hangup().await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::completed_elsewhere;

    #[test]
    fn reason_of_a_cancel_answered_elsewhere() {
        assert!(completed_elsewhere(
            "SIP;cause=200;text=\"Call completed elsewhere\""
        ));
        assert!(completed_elsewhere("sip ; cause=200"));
        assert!(completed_elsewhere(
            "Q.850;cause=16;text=\"x\", SIP;cause=200"
        ));
        assert!(completed_elsewhere(
            "Q.850;cause=26;text=\"completed elsewhere\""
        ));
        assert!(!completed_elsewhere(
            "SIP;cause=487;text=\"Request Terminated\""
        ));
        assert!(!completed_elsewhere("Q.850;cause=200"));
        assert!(!completed_elsewhere(""));
    }
}
