//! Doorbell rings (c300x-protocol.md §7): an INVITE to `alluser` (or to us) on our flow gets
//! 100 + 180 with a To tag, never a 200 by itself; CANCEL (rsipstack answers 200 + 487), our
//! timeout (480), `reject_ring` (486) and `answer_ring` (200 with our SDP and GRUU Contact).

use std::sync::Arc;
use std::time::SystemTime;

use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, StatusCode};
use rsipstack::transaction::Transaction;
use tokio::sync::oneshot;

use super::agent::{Internal, Session, reply};
use super::call::{AnsweredCall, CallSignals, watch_dialog};
use super::{IncomingRing, RingEndReason, RingEnded, RingEvent, SipError};

/// A ring we answered 180 to and that is still pending.
pub(super) struct Ring {
    dialog: InviteDialog,
    signals: Arc<CallSignals>,
    offer: String,
    /// `answer_ring` sent 200: the dialog now belongs to the call.
    answered: bool,
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
                tokio::spawn(async move { reply(&mut tx, StatusCode::BadRequest).await });
                return;
            }
        };
        // The dialog drives the INVITE server transaction: 100 now, our responses, CANCEL, ACK.
        let mut driver = dialog.clone();
        let id = call_id.clone();
        tokio::spawn(async move {
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
            },
        );
        let _ = self.agent.rings.send(RingEvent::Incoming(IncomingRing {
            call_id: call_id.clone(),
            from,
            offer_sdp: offer,
            at: SystemTime::now(),
        }));
        let (internal, timeout) = (self.internal_tx.clone(), self.agent.s.ring_timeout);
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let _ = internal.send(Internal::RingTimeout { call_id });
        });
    }

    /// Removes a pending ring and tells the listeners why it ended.
    pub(super) fn end_ring(&mut self, call_id: &str, reason: RingEndReason) {
        if let Some(ring) = self.rings.remove(call_id) {
            if !ring.answered {
                self.flow.dialogs.remove_dialog(&ring.dialog.id());
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

    pub(super) fn reject_ring(&mut self, call_id: &str) -> Result<(), SipError> {
        let ring = self
            .rings
            .get(call_id)
            .ok_or_else(|| SipError::NoSuchRing {
                call_id: call_id.to_owned(),
            })?;
        ring.dialog
            .reject(Some(StatusCode::BusyHere), None)
            .map_err(|e| SipError::Stack {
                call_id: call_id.to_owned(),
                detail: e.to_string(),
            })?;
        self.end_ring(call_id, RingEndReason::Rejected);
        Ok(())
    }

    /// 200 with our SDP; the reply waits (in a task) for the ACK.
    pub(super) fn answer_ring(
        &mut self,
        call_id: String,
        answer: String,
        reply: oneshot::Sender<Result<AnsweredCall, SipError>>,
    ) {
        let Some(mut ring) = self.rings.remove(&call_id) else {
            let _ = reply.send(Err(SipError::NoSuchRing { call_id }));
            return;
        };
        ring.answered = true;
        let accepted = ring.dialog.accept(
            Some(vec![
                Header::ContentType("application/sdp".into()),
                Header::Supported("replaces, outbound, gruu".into()),
            ]),
            Some(answer.clone().into_bytes()),
        );
        if let Err(e) = accepted {
            let _ = reply.send(Err(SipError::Stack {
                call_id,
                detail: e.to_string(),
            }));
            return;
        }
        // Re-INVITEs inside this call get our answer again.
        ring.signals.set_local_sdp(&answer);
        self.calls
            .insert(call_id.clone(), (ring.dialog.clone(), ring.signals.clone()));
        let wait = self.agent.s.invite_timeout;
        let bye_timeout = self.agent.s.bye_timeout;
        tokio::spawn(async move {
            let mut confirmed = ring.signals.confirmed.subscribe();
            let mut ended = ring.signals.ended.subscribe();
            let outcome = tokio::select! {
                r = confirmed.wait_for(|c| *c) => r.is_ok(),
                _ = ended.wait_for(Option::is_some) => false,
                _ = tokio::time::sleep(wait) => false,
            };
            let r = if outcome {
                Ok(AnsweredCall::new(
                    call_id,
                    ring.offer,
                    ring.dialog,
                    ring.signals,
                    bye_timeout,
                ))
            } else {
                Err(SipError::Timeout { call_id })
            };
            if let Err(Ok(call)) = reply.send(r) {
                call.hangup().await;
            }
        });
    }
}
