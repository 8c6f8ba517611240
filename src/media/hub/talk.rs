//! Talk in the hub (issue 17): one talker per panel (`TalkFloor`, in the hub task) and the
//! `Talker` handle that encodes its audio into the live call. A talker holds a viewer lease (on an
//! idle panel it places a view call) and is admitted once the call is live. Talk is a property
//! of the live call — a view call or an answered ring, never a ring's preview (audio `inactive`);
//! the route follows call restarts and pauses while no such call is up.

use std::time::Instant;

use tokio::sync::{oneshot, watch};

use super::calls::HubCall;
use super::machine::{CallSource, HubMachine, Phase};
use super::{HubError, HubState, ViewerLease};
use crate::intercom::media::{TalkSendError, TalkSink};
use crate::media::talk::{TalkAudioError, TalkEncoder, TalkInput};
use crate::proto::g711::Law;
use crate::proto::sdp::SpeexVbr;

/// Why talking is refused or over. `Busy` is what the servers answer with RTSP 453 / HTTP 409.
#[derive(Debug, thiserror::Error)]
pub enum TalkError {
    /// Someone else holds the panel's talk ("TalkBusy").
    #[error("panel {panel}: someone else is talking")]
    Busy { panel: String },
    /// The hub refused the lease or ended it (privacy switch, start timeout, failed call,
    /// shutdown).
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error("talk audio: {0}")]
    Audio(#[from] TalkAudioError),
    /// An RTP payload type the talk path does not decode (static 0 = PCMU and 8 = PCMA only).
    #[error("talk audio: RTP payload type {0} is not PCMU (0) or PCMA (8)")]
    PayloadType(u8),
}

/// One panel's talk, as the status page and MQTT show it (`StreamHub::talk_state`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TalkState {
    /// Nobody talks.
    #[default]
    Free,
    /// A talker waits for the call to come up.
    Waiting,
    /// A talker holds the panel; `call_id` is the call its voice goes to (`None` while the call
    /// restarts, or while it is a ring's preview).
    Talking { call_id: Option<String> },
}

/// Where the hub tells a talker to send its frames.
#[derive(Debug, Clone)]
pub(super) enum Route {
    /// No call that carries talk right now: frames are dropped.
    Paused,
    Call {
        call_id: String,
        sink: TalkSink,
        vbr: SpeexVbr,
    },
    /// The hub ended the talk.
    Closed(HubError),
}

/// What a talker did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TalkerCounts {
    /// Speex frames handed to a call.
    pub frames_sent: u64,
    /// Frames with no call to go to (a restart, a preview), or refused by a full call input.
    pub frames_dropped: u64,
    /// Input pieces ignored while paused.
    pub inputs_paused: u64,
}

/// The right to talk into one panel's call; dropping it ends the talk (silence resumes) and, as
/// for a viewer, starts the linger when nobody else watches.
pub struct Talker {
    panel: String,
    route: watch::Receiver<Route>,
    encoder: TalkEncoder,
    counts: TalkerCounts,
    paused: bool,
    _lease: ViewerLease,
}

impl std::fmt::Debug for Talker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Talker")
            .field("panel", &self.panel)
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl Talker {
    pub(super) fn new(
        panel: String,
        route: watch::Receiver<Route>,
        encoder: TalkEncoder,
        lease: ViewerLease,
    ) -> Self {
        Self {
            panel,
            route,
            encoder,
            counts: TalkerCounts::default(),
            paused: false,
            _lease: lease,
        }
    }

    /// Audio that arrived now; see [`Self::push_at`].
    pub fn push(&mut self, input: TalkInput<'_>) -> Result<usize, TalkError> {
        self.push_at(Instant::now(), input)
    }

    /// An RTP payload of the ONVIF backchannel: static PT 0 (PCMU) or 8 (PCMA).
    pub fn push_rtp(&mut self, payload_type: u8, payload: &[u8]) -> Result<usize, TalkError> {
        let law = Law::from_static_pt(payload_type).ok_or(TalkError::PayloadType(payload_type))?;
        self.push(TalkInput::G711 { law, payload })
    }

    /// Encodes audio that arrived at `now` and sends the completed 20 ms frames into the live
    /// call; returns how many went. While no call carries talk the audio is dropped (`Ok(0)`);
    /// once the hub ended the talk, every push is an error (the server closes its side).
    pub fn push_at(&mut self, now: Instant, input: TalkInput<'_>) -> Result<usize, TalkError> {
        let route = self.route.borrow().clone();
        let (sink, vbr) = match route {
            Route::Closed(e) => return Err(e.into()),
            Route::Paused => {
                self.counts.inputs_paused += 1;
                if !std::mem::replace(&mut self.paused, true) {
                    // What waits would be stale when the next call comes.
                    self.encoder.clear();
                }
                return Ok(0);
            }
            Route::Call { sink, vbr, .. } => (sink, vbr),
        };
        self.paused = false;
        self.encoder.set_vbr(vbr)?;
        let mut sent = 0;
        for frame in self.encoder.push(now, input)? {
            match sink.send(frame) {
                Ok(()) => sent += 1,
                Err(TalkSendError::Full | TalkSendError::Closed) => self.counts.frames_dropped += 1,
            }
        }
        self.counts.frames_sent += sent as u64;
        Ok(sent)
    }

    /// The call the voice goes to now (`None` while paused).
    pub fn call_id(&self) -> Option<String> {
        match &*self.route.borrow() {
            Route::Call { call_id, .. } => Some(call_id.clone()),
            Route::Paused | Route::Closed(_) => None,
        }
    }

    pub fn counts(&self) -> TalkerCounts {
        self.counts
    }

    pub fn panel(&self) -> &str {
        &self.panel
    }

    /// Resolves when the hub ends this talk (privacy switch, failed call, shutdown), with the
    /// reason; a server selects on it to close the talker's session.
    pub async fn closed(&mut self) -> TalkError {
        let panel = self.panel.clone();
        match self.route.wait_for(|r| matches!(r, Route::Closed(_))).await {
            Ok(r) => match &*r {
                Route::Closed(e) => TalkError::Hub(e.clone()),
                Route::Paused | Route::Call { .. } => TalkError::Hub(HubError::Stopped { panel }),
            },
            Err(_) => TalkError::Hub(HubError::Stopped { panel }),
        }
    }
}

/// Whether a call from `source` carries our voice (a ring's preview has audio `inactive`).
fn carries_talk(source: &CallSource) -> bool {
    matches!(
        source,
        CallSource::View { .. } | CallSource::AnsweredRing { .. }
    )
}

/// The one talker of a panel, as the hub task keeps it.
struct Holder {
    id: u64,
    /// Until admitted: the reply that hands the talker its route.
    reply: Option<oneshot::Sender<Result<watch::Receiver<Route>, TalkError>>>,
    route: watch::Sender<Route>,
    /// The call the route points at.
    routed: Option<String>,
}

/// The hub task's side of talk: who holds the panel, and where its route points.
pub(super) struct TalkFloor {
    panel: String,
    holder: Option<Holder>,
    state: watch::Sender<TalkState>,
}

impl TalkFloor {
    pub(super) fn new(panel: String, state: watch::Sender<TalkState>) -> Self {
        Self {
            panel,
            holder: None,
            state,
        }
    }

    /// A talk request; `true` if `id` now holds the floor (the driver then joins it as a
    /// viewer), `false` if it was refused as busy (already answered).
    pub(super) fn request(
        &mut self,
        id: u64,
        reply: oneshot::Sender<Result<watch::Receiver<Route>, TalkError>>,
    ) -> bool {
        if self.holder.is_some() {
            let _ = reply.send(Err(TalkError::Busy {
                panel: self.panel.clone(),
            }));
            return false;
        }
        self.holder = Some(Holder {
            id,
            reply: Some(reply),
            route: watch::channel(Route::Paused).0,
            routed: None,
        });
        self.publish();
        true
    }

    /// The talker's lease is gone: the floor is free.
    pub(super) fn leave(&mut self, id: u64) {
        if self.holder.as_ref().is_some_and(|h| h.id == id) {
            self.holder = None;
            self.publish();
        }
    }

    /// The machine turned a waiting viewer away: if it is the talker, it gets `err`.
    pub(super) fn reject(&mut self, id: u64, err: &HubError) {
        if self.holder.as_ref().is_some_and(|h| h.id == id)
            && let Some(h) = self.holder.take()
        {
            if let Some(reply) = h.reply {
                let _ = reply.send(Err(TalkError::Hub(err.clone())));
            }
            self.publish();
        }
    }

    /// The machine closed every admitted viewer: an admitted talker's route closes with `err`.
    pub(super) fn close(&mut self, err: HubError) {
        if self.holder.as_ref().is_some_and(|h| h.reply.is_none())
            && let Some(h) = self.holder.take()
        {
            h.route.send_replace(Route::Closed(err));
            self.publish();
        }
    }

    /// After every event: admits a waiting talker once the call is live (returns its id for the
    /// machine's `Admitted`), and points the route at the live call if it carries talk.
    pub(super) fn sync<C: HubCall>(
        &mut self,
        machine: &HubMachine,
        live: Option<&C>,
    ) -> Option<u64> {
        let h = self.holder.as_mut()?;
        let call = machine.call().filter(|c| carries_talk(&c.source));
        let target = call
            .zip(live)
            .filter(|(c, l)| c.call_id == l.call_id())
            .and_then(|(c, l)| {
                l.talk_sink()
                    .map(|(sink, vbr)| (c.call_id.clone(), sink, vbr))
            });
        let mut changed = false;
        if h.routed.as_deref() != target.as_ref().map(|t| t.0.as_str()) {
            h.routed = target.as_ref().map(|t| t.0.clone());
            h.route.send_replace(match target {
                Some((call_id, sink, vbr)) => Route::Call { call_id, sink, vbr },
                None => Route::Paused,
            });
            changed = true;
        }
        let mut admitted = None;
        if machine.state() == HubState::Live
            && let Some(reply) = h.reply.take()
        {
            if reply.send(Ok(h.route.subscribe())).is_ok() {
                admitted = Some(h.id);
            }
            // A requester that gave up has dropped its lease: its Leave frees the floor.
            changed = true;
        }
        if changed {
            self.publish();
        }
        admitted
    }

    fn publish(&self) {
        let state = match &self.holder {
            None => TalkState::Free,
            Some(h) if h.reply.is_some() => TalkState::Waiting,
            Some(h) => TalkState::Talking {
                call_id: h.routed.clone(),
            },
        };
        self.state.send_if_modified(|cur| {
            let changed = *cur != state;
            *cur = state;
            changed
        });
    }
}

/// The error an admitted talker gets when the machine closes the viewers: the reason is in the
/// machine's state (`CloseViewers` carries none).
pub(super) fn close_reason(machine: &HubMachine, panel: &str) -> HubError {
    let panel = panel.to_owned();
    if matches!(machine.phase(), Phase::Stopped) {
        HubError::Stopped { panel }
    } else if !machine.allowed() {
        HubError::StreamingDisabled { panel }
    } else {
        HubError::CallFailed {
            panel,
            reason: machine
                .last_error()
                .unwrap_or("the call ended and could not be replaced")
                .to_owned(),
        }
    }
}
