//! Established calls (c300x-protocol.md §4–§6): the outgoing view-call INVITE (final response,
//! CANCEL when the caller gives up, typed rejections), the handles `ViewCall` / `AnsweredCall`
//! with `hangup()` (BYE through the route set, 3 s budget) and the per-dialog watcher that sees
//! remote BYE, answers in-dialog re-INVITE (our last SDP, unchanged) and OPTIONS/INFO/NOTIFY.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver};
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, Method, StatusCode, StatusCodeKind};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::SipError;
use super::agent::Internal;

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The intercom sent BYE (answered 200).
    RemoteBye,
    /// We hung up (`hangup()`, or the handle was dropped).
    LocalHangup,
    /// The SIP connection dropped (or was replaced) under the call.
    ConnectionLost,
    /// The SIP task shut down.
    Shutdown,
    /// The dialog timed out (e.g. no ACK to our 200).
    Timeout,
    /// A ring (early media after our 183) ended without our 200: CANCEL, timeout or reject.
    NotAnswered,
}

/// What the watcher and the session share about one dialog.
pub(super) struct CallSignals {
    pub ended: watch::Sender<Option<EndReason>>,
    pub confirmed: watch::Sender<bool>,
    pub local_hangup: AtomicBool,
    /// Our SDP in this call (offer or answer), repeated on an incoming re-INVITE.
    pub local_sdp: std::sync::Mutex<String>,
}

impl CallSignals {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            ended: watch::channel(None).0,
            confirmed: watch::channel(false).0,
            local_hangup: AtomicBool::new(false),
            local_sdp: std::sync::Mutex::new(String::new()),
        })
    }

    /// Records the first end reason only.
    pub fn end(&self, reason: EndReason) {
        self.ended.send_if_modified(|v| {
            if v.is_none() {
                *v = Some(reason);
                true
            } else {
                false
            }
        });
    }

    pub fn set_local_sdp(&self, sdp: &str) {
        if let Ok(mut s) = self.local_sdp.lock() {
            *s = sdp.to_owned();
        }
    }

    fn local_sdp(&self) -> String {
        self.local_sdp.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn is_ended(&self) -> bool {
        self.ended.borrow().is_some()
    }
}

/// The part shared by `ViewCall` and `AnsweredCall`: hang-up and the end signal.
struct CallControl {
    dialog: InviteDialog,
    signals: Arc<CallSignals>,
    bye_timeout: Duration,
    hung_up: bool,
    /// The SIP session that owns the flow: it sends the BYE of a dropped call in its own task.
    session: mpsc::UnboundedSender<Internal>,
}

impl CallControl {
    async fn hangup(&mut self) {
        self.hung_up = true;
        if self.signals.is_ended() {
            return;
        }
        self.signals.local_hangup.store(true, Ordering::SeqCst);
        bye(&self.dialog, self.bye_timeout).await;
        self.signals.end(EndReason::LocalHangup);
    }

    async fn ended(&self) -> EndReason {
        let mut rx = self.signals.ended.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(v) => v.unwrap_or(EndReason::ConnectionLost),
            Err(_) => EndReason::ConnectionLost,
        }
    }
}

impl Drop for CallControl {
    fn drop(&mut self) {
        // A call nobody holds must not stay up: the camera and its light stay on (§11). The
        // session sends the BYE in a task it owns (gone with the flow, when the call is too).
        if self.hung_up || self.signals.is_ended() {
            return;
        }
        let _ = self.session.send(Internal::Abandoned {
            dialog: self.dialog.clone(),
            signals: self.signals.clone(),
        });
    }
}

/// BYE (or CANCEL while early); failing or slow counts as done (c300x-protocol.md §6).
pub(super) async fn bye(dialog: &InviteDialog, limit: Duration) {
    match tokio::time::timeout(limit, dialog.hangup()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::info!(call_id = %dialog.id().call_id, "BYE failed (call ends anyway): {e}")
        }
        Err(_) => {
            tracing::info!(call_id = %dialog.id().call_id, "BYE unanswered in {limit:?}; call ends anyway")
        }
    }
}

/// A view call the intercom answered with 200 (and we ACKed).
pub struct ViewCall {
    pub call_id: String,
    /// The intercom's SDP answer (media ports, PTs, SDES keys).
    pub answer_sdp: String,
    control: CallControl,
}

/// A doorbell ring we answered with 200 (and the intercom ACKed).
pub struct AnsweredCall {
    pub call_id: String,
    /// The intercom's SDP offer from the ringing INVITE.
    pub offer_sdp: String,
    control: CallControl,
}

macro_rules! call_methods {
    ($t:ty) => {
        impl $t {
            /// BYE through the route set; returns within the BYE budget whatever happens.
            pub async fn hangup(mut self) {
                self.control.hangup().await;
            }

            /// Waits until the call ends (remote BYE, connection loss, shutdown).
            pub async fn ended(&self) -> EndReason {
                self.control.ended().await
            }

            /// `None` while the call is up.
            pub fn end_reason(&self) -> Option<EndReason> {
                *self.control.signals.ended.borrow()
            }

            /// A watch of the end reason, for `select!` loops elsewhere.
            pub fn ended_watch(&self) -> watch::Receiver<Option<EndReason>> {
                self.control.signals.ended.subscribe()
            }
        }

        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t))
                    .field("call_id", &self.call_id)
                    .field("ended", &self.end_reason())
                    .finish()
            }
        }
    };
}
call_methods!(ViewCall);
call_methods!(AnsweredCall);

impl AnsweredCall {
    pub(super) fn new(
        call_id: String,
        offer_sdp: String,
        dialog: InviteDialog,
        signals: Arc<CallSignals>,
        bye_timeout: Duration,
        session: mpsc::UnboundedSender<Internal>,
    ) -> Self {
        Self {
            call_id,
            offer_sdp,
            control: CallControl {
                dialog,
                signals,
                bye_timeout,
                hung_up: false,
                session,
            },
        }
    }
}

/// Follows one dialog's states until it ends: answers what arrives inside it, reports the end.
pub(super) fn watch_dialog(
    call_id: String,
    mut states: DialogStateReceiver,
    signals: Arc<CallSignals>,
    internal: mpsc::UnboundedSender<Internal>,
) {
    tokio::spawn(async move {
        while let Some(state) = states.recv().await {
            match state {
                DialogState::Confirmed(..) => {
                    signals.confirmed.send_replace(true);
                }
                DialogState::Updated(_, req, handle) => {
                    // In-dialog re-INVITE (or UPDATE): same media, same keys (§6).
                    let r = if req.method == Method::Invite {
                        handle
                            .respond(
                                StatusCode::OK,
                                Some(vec![Header::ContentType("application/sdp".into())]),
                                Some(signals.local_sdp().into_bytes()),
                            )
                            .await
                    } else {
                        handle.reply(StatusCode::OK).await
                    };
                    if r.is_err() {
                        tracing::debug!(%call_id, "re-INVITE transaction went away");
                    }
                }
                DialogState::Options(_, _, h)
                | DialogState::Info(_, _, h)
                | DialogState::Notify(_, _, h)
                | DialogState::Message(_, _, h) => {
                    let _ = h.reply(StatusCode::OK).await;
                }
                DialogState::Terminated(_, reason) => {
                    use rsipstack::dialog::dialog::TerminatedReason as T;
                    let was_confirmed = *signals.confirmed.borrow();
                    let end = if signals.local_hangup.load(Ordering::SeqCst) {
                        EndReason::LocalHangup
                    } else if !was_confirmed && matches!(reason, T::UacCancel | T::UasDecline) {
                        EndReason::NotAnswered
                    } else {
                        match reason {
                            T::Timeout => EndReason::Timeout,
                            _ => EndReason::RemoteBye,
                        }
                    };
                    let cancelled = matches!(reason, T::UacCancel);
                    signals.end(end);
                    let _ = internal.send(Internal::DialogEnded {
                        call_id: call_id.clone(),
                        was_confirmed,
                        cancelled,
                    });
                    break;
                }
                _ => {}
            }
        }
    });
}

/// Everything an outgoing view call needs, prepared by the session.
pub(super) struct Outgoing {
    pub dialogs: Arc<rsipstack::dialog::dialog_layer::DialogLayer>,
    pub option: InviteOption,
    pub call_id: String,
    pub devaddr: u8,
    pub timeout: Duration,
    pub bye_timeout: Duration,
    pub gave_up: CancellationToken,
    pub internal: mpsc::UnboundedSender<Internal>,
}

/// Sends the INVITE and waits for its final response, the caller giving up, or the timeout.
/// On 200 the transaction has ACKed through the route set; the watcher takes over.
pub(super) async fn place(o: Outgoing) -> Result<ViewCall, SipError> {
    let call_id = o.call_id.clone();
    let offer = String::from_utf8_lossy(o.option.offer.as_deref().unwrap_or_default()).into_owned();
    let (state_tx, state_rx) = o.dialogs.new_dialog_state_channel();
    let stack_err = |e: rsipstack::Error| SipError::Stack {
        call_id: call_id.clone(),
        detail: e.to_string(),
    };
    let (dialog, task) = o
        .dialogs
        .do_invite_async(o.option, state_tx)
        .map_err(stack_err)?;
    let signals = CallSignals::new();
    signals.set_local_sdp(&offer);
    watch_dialog(
        call_id.clone(),
        state_rx,
        signals.clone(),
        o.internal.clone(),
    );
    tracing::info!(%call_id, devaddr = o.devaddr, "view call: INVITE sent");
    let outcome = tokio::select! {
        r = task => r,
        _ = tokio::time::sleep(o.timeout) => {
            tracing::info!(%call_id, "view call: no final response in {:?}; CANCEL", o.timeout);
            cancel(dialog);
            return Err(SipError::Timeout { call_id });
        }
        _ = o.gave_up.cancelled() => {
            tracing::info!(%call_id, "view call: caller gave up; CANCEL");
            cancel(dialog);
            return Err(SipError::Cancelled { call_id });
        }
    };
    let resp = match outcome {
        Ok(Ok((_, Some(resp)))) => resp,
        Ok(Ok((_, None))) => {
            return Err(SipError::Stack {
                call_id,
                detail: "INVITE ended without a final response".to_owned(),
            });
        }
        Ok(Err(e)) => return Err(stack_err(e)),
        Err(e) => {
            return Err(SipError::Stack {
                call_id,
                detail: format!("INVITE task failed: {e}"),
            });
        }
    };
    if resp.status_code.kind() != StatusCodeKind::Successful {
        let code = resp.status_code.code();
        let reason = resp.status_code.to_string();
        tracing::info!(%call_id, code, %reason, "view call rejected");
        return Err(SipError::Rejected {
            code,
            reason,
            call_id,
        });
    }
    signals.confirmed.send_replace(true);
    let answer_sdp = String::from_utf8_lossy(&resp.body).into_owned();
    let _ = o.internal.send(Internal::CallUp {
        call_id: call_id.clone(),
        dialog: dialog.clone(),
        signals: signals.clone(),
    });
    tracing::info!(%call_id, "view call established");
    Ok(ViewCall {
        call_id,
        answer_sdp,
        control: CallControl {
            dialog,
            signals,
            bye_timeout: o.bye_timeout,
            hung_up: false,
            session: o.internal,
        },
    })
}

/// CANCEL in the background; rsipstack ACKs and BYEs a 200 that still arrives (RFC 3261 §9.1).
fn cancel(dialog: InviteDialog) {
    tokio::spawn(async move {
        if let Err(e) = dialog.cancel().await {
            tracing::debug!(call_id = %dialog.id().call_id, "CANCEL: {e}");
        }
    });
}
