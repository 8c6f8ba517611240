//! `HubMachine`: the on-demand call lifecycle of one panel (streaming.md §1.2) as a pure state
//! machine in the style of `proto/` — `handle(now, input)`, `poll_action()`, `poll_timeout()`;
//! no tokio, no sockets, no frames (`task.rs` drives it, `fanout.rs` moves the frames).
//!
//! Phases: `Idle` → `Placing{source}` → `Live{call}` ⇄ `Lingering{call, until}` → `Idle`; a failed
//! start → `Backoff{until}`; `Stopped` after shutdown. A call has a `CallSource`: a view call we
//! place, a ring the user answered (not ended by the linger, not cancelled when viewers leave),
//! or a ring's silent preview (lasts as long as the ring; answering it keeps the same media).
//! The doorbell's transitions (ring, preview, answer, snapshot call) are in `machine/ring.rs`.
//! Inputs: joins/leaves/admissions of viewers, the privacy switch, answer/hang-up commands, the
//! call coming up/failing/ending, packets and the first keyframe, timers. Actions: place, cancel,
//! hang up (with a `CallEnd` reason), request a keyframe, refuse a joiner, close the viewers.
//! Recovery: a call the intercom ends while viewers remain is replaced at once, up to
//! `QUICK_ENDS_IN_A_ROW` short calls in a row (then `Backoff`); the count restarts when a call
//! lasts `STABLE_CALL` or the hub goes idle.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::{CallEnd, HubSettings};

mod ring;
mod status;

pub use ring::{PREVIEW_START, SNAPSHOT_CALL};
pub use status::{Call, CallSource, Phase};

/// A call that lasted this long was working: the next remote end starts a new count.
pub const STABLE_CALL: Duration = Duration::from_secs(10);
/// Short calls the intercom may end in a row, each replaced at once; the next one backs off
/// (every INVITE switches the outdoor camera on and clicks its relay).
pub const QUICK_ENDS_IN_A_ROW: u32 = 5;

/// Why a joiner is turned away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    StreamingDisabled,
    StartTimeout,
    CallFailed(String),
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A viewer asks for frames; it waits for a keyframe (the driver holds its reply).
    Join {
        viewer: u64,
    },
    /// The fan-out gave a waiting joiner its first frames (from a keyframe).
    Admitted {
        viewer: u64,
    },
    /// A viewer or waiting joiner is gone.
    Leave {
        viewer: u64,
    },
    /// The privacy switch: `false` refuses viewers and ends the call.
    AllowStreaming(bool),
    /// The user answers the ring `call_id` on this panel.
    AnswerRing {
        call_id: String,
    },
    /// A doorbell ring on this panel: preview it (`preview`: early media), or else place a short
    /// view call for its picture (`snapshot_call`).
    Ring {
        call_id: String,
        preview: bool,
        snapshot_call: bool,
    },
    /// The ring's picture is taken: a snapshot call nobody watches ends now.
    RingPicture,
    /// The user hangs up; viewers that remain get a new view call.
    HangUp,
    /// The call asked for by `Action::Place` is up.
    CallUp {
        call_id: String,
    },
    /// The call asked for by `Action::Place` could not be set up.
    CallFailed {
        reason: String,
    },
    /// RTP from the live call.
    Packet,
    /// The live call's first keyframe.
    Video,
    /// The live call ended without us (remote BYE, flow lost, media task gone).
    CallEnded {
        reason: CallEnd,
    },
    /// A deadline from `poll_timeout` may have passed.
    Timer,
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Place(CallSource),
    /// Drop the call being placed (the INVITE is CANCELled).
    CancelPlacing,
    /// End the live call (BYE unless the intercom already ended it); counted under `reason`.
    HangUp(CallEnd),
    /// Ask the intercom for an IDR now.
    RequestKeyframe,
    /// Turn a waiting joiner away.
    Reject {
        viewer: u64,
        refusal: Refusal,
    },
    /// End every admitted viewer's stream.
    CloseViewers,
    /// Refuse an answer request (the hub is stopped).
    RefuseAnswer {
        call_id: String,
    },
    /// Answer the previewed ring on the running call: 200 with the same media, no gap.
    AnswerLive {
        call_id: String,
    },
}

/// The lifecycle of one panel's hub.
pub struct HubMachine {
    devaddr: u8,
    linger: Duration,
    start_timeout: Duration,
    max_call: Duration,
    no_rtp_timeout: Duration,
    retry_backoff: Duration,
    phase: Phase,
    allowed: bool,
    /// A short view call for a ring's picture is wanted until then (`ring_snapshot_call`).
    snapshot_until: Option<Instant>,
    /// Viewer id → `Some(since)` while waiting for a keyframe, `None` once watching.
    viewers: BTreeMap<u64, Option<Instant>>,
    actions: VecDeque<Action>,
    quick_ends: u32,
    calls_started: u64,
    calls_ended: Vec<(CallEnd, u64)>,
    call_seconds: f64,
    last_end: Option<(CallEnd, Instant)>,
    last_error: Option<String>,
    changed: bool,
}

impl HubMachine {
    pub fn new(devaddr: u8, s: &HubSettings) -> Self {
        Self {
            devaddr,
            linger: s.linger,
            start_timeout: s.start_timeout,
            max_call: s.max_call,
            no_rtp_timeout: s.no_rtp_timeout,
            retry_backoff: s.retry_backoff,
            phase: Phase::Idle,
            allowed: true,
            snapshot_until: None,
            viewers: BTreeMap::new(),
            actions: VecDeque::new(),
            quick_ends: 0,
            calls_started: 0,
            calls_ended: Vec::new(),
            call_seconds: 0.0,
            last_end: None,
            last_error: None,
            changed: false,
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The earliest deadline; `handle(now, Input::Timer)` at or after it.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let waiting = self
            .viewers
            .values()
            .flatten()
            .map(|since| *since + self.start_timeout);
        let phase = match &self.phase {
            Phase::Lingering { call, until } => vec![*until, call.since + self.max_call],
            Phase::Live(call) => {
                let mut d = vec![call.since + self.max_call];
                if self.watching() > 0 {
                    d.push(call.last_packet + self.no_rtp_timeout);
                }
                if matches!(call.source, CallSource::RingPreview { .. }) && !call.video {
                    d.push(call.since + PREVIEW_START);
                }
                d
            }
            Phase::Backoff { until } => vec![*until],
            Phase::Idle | Phase::Placing { .. } | Phase::Stopped => Vec::new(),
        };
        waiting.chain(phase).chain(self.snapshot_until).min()
    }

    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Join { viewer } => self.on_join(now, viewer),
            Input::Admitted { viewer } => {
                if let Some(w) = self.viewers.get_mut(&viewer)
                    && w.is_some()
                {
                    *w = None;
                    self.changed = true;
                }
            }
            Input::Leave { viewer } => {
                if self.viewers.remove(&viewer).is_some() {
                    self.changed = true;
                    self.on_unwanted(now);
                }
            }
            Input::AllowStreaming(on) => self.on_allow(now, on),
            Input::AnswerRing { call_id } => self.on_answer(now, call_id),
            Input::Ring {
                call_id,
                preview,
                snapshot_call,
            } => self.on_ring(now, call_id, preview, snapshot_call),
            Input::RingPicture => self.snapshot_done(now),
            Input::HangUp => {
                if self.call().is_some() {
                    self.end_call(now, CallEnd::LocalHangUp);
                    self.after_end(now);
                }
            }
            Input::CallUp { call_id } => self.on_call_up(now, call_id),
            Input::CallFailed { reason } => match &self.phase {
                Phase::Placing {
                    source: CallSource::RingPreview { snapshot_call, .. },
                    ..
                } => {
                    // No preview (the ring is gone, or the 183 could not be sent): the viewers
                    // and the ring's picture get a view call instead; nobody is turned away.
                    let snapshot_call = *snapshot_call;
                    self.preview_fallback(now, snapshot_call);
                }
                Phase::Placing { .. } => self.fail(now, reason),
                _ => {}
            },
            Input::Packet => {
                if let Phase::Live(c) | Phase::Lingering { call: c, .. } = &mut self.phase {
                    c.last_packet = now;
                }
            }
            Input::Video => {
                if let Phase::Live(c) | Phase::Lingering { call: c, .. } = &mut self.phase
                    && !c.video
                {
                    c.video = true;
                    self.changed = true;
                }
            }
            Input::CallEnded { reason } => self.on_call_ended(now, reason),
            Input::Timer => self.on_timer(now),
            Input::Shutdown => self.on_shutdown(now),
        }
    }

    /// A call is wanted: someone watches or waits, or a ring's picture needs a snapshot call.
    pub(super) fn wanted(&self) -> bool {
        self.allowed && (!self.viewers.is_empty() || self.snapshot_until.is_some())
    }

    pub(super) fn set_phase(&mut self, phase: Phase) {
        if matches!(phase, Phase::Idle) {
            // A new viewer session starts afresh: its first remote hang-up is the first.
            self.quick_ends = 0;
        }
        self.phase = phase;
        self.changed = true;
    }

    pub(super) fn place(&mut self, now: Instant, source: CallSource) {
        self.calls_started += 1;
        self.actions.push_back(Action::Place(source.clone()));
        self.set_phase(Phase::Placing { source, since: now });
    }

    pub(super) fn place_view(&mut self, now: Instant) {
        self.place(
            now,
            CallSource::View {
                devaddr: self.devaddr,
            },
        );
    }

    fn on_join(&mut self, now: Instant, viewer: u64) {
        let refusal = match self.phase {
            Phase::Stopped => Some(Refusal::Stopped),
            _ if !self.allowed => Some(Refusal::StreamingDisabled),
            _ => None,
        };
        if let Some(refusal) = refusal {
            self.actions.push_back(Action::Reject { viewer, refusal });
            return;
        }
        self.viewers.insert(viewer, Some(now));
        self.changed = true;
        match &self.phase {
            Phase::Idle => self.place_view(now),
            Phase::Lingering { call, .. } => {
                let call = call.clone();
                if call.video {
                    self.actions.push_back(Action::RequestKeyframe);
                }
                self.set_phase(Phase::Live(call));
            }
            Phase::Live(call) if call.video => self.actions.push_back(Action::RequestKeyframe),
            Phase::Live(_) | Phase::Placing { .. } | Phase::Backoff { .. } | Phase::Stopped => {}
        }
    }

    /// Nobody wants the call any more (unless it is an answered ring, which is the user's).
    fn on_unwanted(&mut self, now: Instant) {
        if self.wanted() {
            return;
        }
        match &self.phase {
            Phase::Placing { source, .. } if source.is_view() => {
                self.actions.push_back(Action::CancelPlacing);
                self.set_phase(Phase::Idle);
            }
            Phase::Live(call) if call.source.is_view() => {
                let call = call.clone();
                self.set_phase(Phase::Lingering {
                    call,
                    until: now + self.linger,
                });
            }
            _ => {}
        }
    }

    fn on_allow(&mut self, now: Instant, on: bool) {
        if self.allowed == on {
            return;
        }
        self.allowed = on;
        self.changed = true;
        if on {
            return;
        }
        self.snapshot_until = None;
        self.drop_viewers(Refusal::StreamingDisabled);
        match self.phase {
            Phase::Placing { .. } => {
                self.actions.push_back(Action::CancelPlacing);
                self.set_phase(Phase::Idle);
            }
            Phase::Live(_) | Phase::Lingering { .. } => {
                self.end_call(now, CallEnd::Privacy);
                self.set_phase(Phase::Idle);
            }
            Phase::Idle | Phase::Backoff { .. } | Phase::Stopped => {}
        }
    }

    fn on_call_up(&mut self, now: Instant, call_id: String) {
        let Phase::Placing { source, .. } = &self.phase else {
            // Not asked for (any more): it must not stay up.
            self.count_end(now, now, CallEnd::Unwanted);
            self.actions.push_back(Action::HangUp(CallEnd::Unwanted));
            return;
        };
        let call = Call {
            source: source.clone(),
            call_id,
            since: now,
            last_packet: now,
            video: false,
        };
        self.last_error = None;
        if call.source.is_view() && !self.wanted() {
            self.set_phase(Phase::Lingering {
                call,
                until: now + self.linger,
            });
        } else {
            self.set_phase(Phase::Live(call));
        }
    }

    fn on_call_ended(&mut self, now: Instant, reason: CallEnd) {
        let Some(call) = self.call().cloned() else {
            return;
        };
        self.end_call(now, reason);
        if !self.wanted() {
            self.set_phase(Phase::Idle);
        } else if !call.source.is_view() {
            // An answered ring is over; the viewers still there get a view call.
            self.place_view(now);
        } else {
            if now.duration_since(call.since) >= STABLE_CALL {
                self.quick_ends = 0;
            }
            self.quick_ends += 1;
            if self.quick_ends <= QUICK_ENDS_IN_A_ROW {
                self.place_view(now);
            } else {
                self.last_error = Some(format!(
                    "the intercom ended {} calls in a row ({}); next try in {} s",
                    self.quick_ends,
                    reason.as_str(),
                    self.retry_backoff.as_secs_f32()
                ));
                self.set_phase(Phase::Backoff {
                    until: now + self.retry_backoff,
                });
            }
        }
    }

    fn on_timer(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .viewers
            .iter()
            .filter(|(_, w)| w.is_some_and(|since| since + self.start_timeout <= now))
            .map(|(id, _)| *id)
            .collect();
        if !late.is_empty() {
            for viewer in late {
                self.viewers.remove(&viewer);
                self.actions.push_back(Action::Reject {
                    viewer,
                    refusal: Refusal::StartTimeout,
                });
            }
            let secs = self.start_timeout.as_secs_f32();
            self.last_error = Some(format!("no video within {secs} s"));
            self.changed = true;
            if !self.wanted() {
                self.on_start_timeout(now);
            }
        }
        match &self.phase {
            Phase::Lingering { until, .. } if *until <= now => {
                self.end_call(now, CallEnd::Linger);
                self.set_phase(Phase::Idle);
                return;
            }
            Phase::Backoff { until } if *until <= now => {
                if self.wanted() {
                    self.place_view(now);
                } else {
                    self.set_phase(Phase::Idle);
                }
                return;
            }
            _ => {}
        }
        if self.ring_deadlines(now) {
            return;
        }
        let Some(call) = self.call() else { return };
        if call.since + self.max_call <= now {
            self.end_call(now, CallEnd::MaxCall);
            self.after_end(now);
        } else if matches!(self.phase, Phase::Live(_))
            && self.watching() > 0
            && call.last_packet + self.no_rtp_timeout <= now
        {
            self.end_call(now, CallEnd::NoRtp);
            self.after_end(now);
        }
    }

    /// The last waiting joiner gave up: a view call that never brought video is given up too
    /// (after a backoff); an answered ring stays (fault: it was aborted with the view call).
    fn on_start_timeout(&mut self, now: Instant) {
        let until = now + self.retry_backoff;
        match &self.phase {
            Phase::Placing { source, .. } if source.is_view() => {
                self.actions.push_back(Action::CancelPlacing);
                self.set_phase(Phase::Backoff { until });
            }
            Phase::Live(call) if call.source.is_view() && !call.video => {
                self.end_call(now, CallEnd::StartTimeout);
                self.set_phase(Phase::Backoff { until });
            }
            _ => self.on_unwanted(now),
        }
    }

    fn on_shutdown(&mut self, now: Instant) {
        self.snapshot_until = None;
        self.drop_viewers(Refusal::Stopped);
        match self.phase {
            Phase::Placing { .. } => self.actions.push_back(Action::CancelPlacing),
            Phase::Live(_) | Phase::Lingering { .. } => self.end_call(now, CallEnd::Shutdown),
            Phase::Idle | Phase::Backoff { .. } | Phase::Stopped => {}
        }
        self.set_phase(Phase::Stopped);
    }

    /// Refuses every waiting joiner and closes every admitted viewer.
    fn drop_viewers(&mut self, refusal: Refusal) {
        let mut close = false;
        for (viewer, waiting) in std::mem::take(&mut self.viewers) {
            if waiting.is_some() {
                self.actions.push_back(Action::Reject {
                    viewer,
                    refusal: refusal.clone(),
                });
            } else {
                close = true;
            }
        }
        if close {
            self.actions.push_back(Action::CloseViewers);
        }
        self.changed = true;
    }

    /// The start failed: joiners get the reason, viewers' streams end, next try after a backoff.
    fn fail(&mut self, now: Instant, reason: String) {
        self.drop_viewers(Refusal::CallFailed(reason.clone()));
        self.last_error = Some(reason);
        self.set_phase(Phase::Backoff {
            until: now + self.retry_backoff,
        });
    }

    /// Hangs up the current call (the phase is set by the caller).
    pub(super) fn end_call(&mut self, now: Instant, reason: CallEnd) {
        if let Some(since) = self.call().map(|c| c.since) {
            self.count_end(now, since, reason);
            self.actions.push_back(Action::HangUp(reason));
        }
    }

    fn count_end(&mut self, now: Instant, since: Instant, reason: CallEnd) {
        self.call_seconds += now.duration_since(since).as_secs_f64();
        match self.calls_ended.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.calls_ended.push((reason, 1)),
        }
        self.last_end = Some((reason, now));
        self.changed = true;
    }

    /// After we ended a call: viewers that remain get a new view call at once.
    pub(super) fn after_end(&mut self, now: Instant) {
        if self.wanted() {
            self.place_view(now);
        } else {
            self.set_phase(Phase::Idle);
        }
    }
}

#[cfg(test)]
mod tests;
