//! The doorbell's transitions of `HubMachine` (issue 16): a ring starts a silent preview (early
//! media, `CallSource::RingPreview`) or, without one, a short view call for its picture; viewers
//! joining meanwhile share it (no view INVITE); answering a live preview keeps the same media
//! (`Action::AnswerLive`); a preview that ends — ring over, no media — falls back to a view call
//! while viewers remain (or the picture is still missing), else the hub idles.

use std::time::{Duration, Instant};

use super::{Action, CallSource, HubMachine, Phase};
use crate::media::hub::CallEnd;

/// A preview without its first keyframe after this long brings none (the unit ignores 183s
/// or sends nothing): it is ended and the fallback runs.
pub const PREVIEW_START: Duration = Duration::from_secs(3);
/// A snapshot call (no preview, `ring_snapshot_call`) is wanted at most this long.
pub const SNAPSHOT_CALL: Duration = Duration::from_secs(8);

impl HubMachine {
    pub(super) fn on_ring(
        &mut self,
        now: Instant,
        call_id: String,
        preview: bool,
        snapshot_call: bool,
    ) {
        if matches!(self.phase, Phase::Stopped) || !self.allowed {
            return;
        }
        match self.phase {
            Phase::Idle | Phase::Backoff { .. } => {
                if preview {
                    self.place(
                        now,
                        CallSource::RingPreview {
                            call_id,
                            snapshot_call,
                        },
                    );
                } else if snapshot_call {
                    self.snapshot_until = Some(now + SNAPSHOT_CALL);
                    self.place_view(now);
                }
            }
            // A call runs or is on its way: the ring's frames come from it (one call per panel).
            Phase::Placing { .. } | Phase::Live(_) | Phase::Lingering { .. } | Phase::Stopped => {}
        }
    }

    pub(super) fn on_answer(&mut self, now: Instant, call_id: String) {
        self.snapshot_until = None;
        match &mut self.phase {
            Phase::Stopped => {
                self.actions.push_back(Action::RefuseAnswer { call_id });
                return;
            }
            // The preview of this very ring: answer it on the running media, no gap.
            Phase::Live(call) if call.source.ring_call_id() == Some(call_id.as_str()) => {
                if matches!(call.source, CallSource::RingPreview { .. }) {
                    call.source = CallSource::AnsweredRing {
                        call_id: call_id.clone(),
                    };
                    self.changed = true;
                    self.actions.push_back(Action::AnswerLive { call_id });
                } else {
                    // Already answered: nothing more to do.
                    self.actions.push_back(Action::RefuseAnswer { call_id });
                }
                return;
            }
            // One call per panel: the answered ring replaces whatever runs or is being placed.
            Phase::Live(_) | Phase::Lingering { .. } => self.end_call(now, CallEnd::RingAnswered),
            Phase::Placing { .. } => self.actions.push_back(Action::CancelPlacing),
            Phase::Idle | Phase::Backoff { .. } => {}
        }
        self.place(now, CallSource::AnsweredRing { call_id });
    }

    /// No preview for this ring after all: a view call for the viewers, or for the picture when
    /// `snapshot_call`; else idle.
    pub(super) fn preview_fallback(&mut self, now: Instant, snapshot_call: bool) {
        if snapshot_call && self.allowed {
            self.snapshot_until = Some(now + SNAPSHOT_CALL);
        }
        if self.wanted() {
            self.place_view(now);
        } else {
            self.set_phase(Phase::Idle);
        }
    }

    /// The snapshot call has served (picture taken, or its time is up): with nobody watching,
    /// it ends at once (no linger: nobody will come back for it).
    pub(super) fn snapshot_done(&mut self, now: Instant) {
        if self.snapshot_until.take().is_none() {
            return;
        }
        self.changed = true;
        if self.wanted() || !self.allowed {
            return;
        }
        match &self.phase {
            Phase::Placing { source, .. } if source.is_view() => {
                self.actions.push_back(Action::CancelPlacing);
                self.set_phase(Phase::Idle);
            }
            Phase::Live(call) if call.source.is_view() => {
                self.end_call(now, CallEnd::RingSnapshot);
                self.set_phase(Phase::Idle);
            }
            _ => {}
        }
    }

    /// The doorbell's deadlines; true when one fired (the phase changed).
    pub(super) fn ring_deadlines(&mut self, now: Instant) -> bool {
        if self.snapshot_until.is_some_and(|t| t <= now) {
            self.snapshot_done(now);
            return true;
        }
        if let Phase::Live(call) = &self.phase
            && let CallSource::RingPreview { snapshot_call, .. } = call.source
            && !call.video
            && call.since + PREVIEW_START <= now
        {
            self.last_error = Some(format!(
                "no early media within {} s of our 183",
                PREVIEW_START.as_secs()
            ));
            self.end_call(now, CallEnd::NoEarlyMedia);
            self.preview_fallback(now, snapshot_call);
            return true;
        }
        false
    }
}
