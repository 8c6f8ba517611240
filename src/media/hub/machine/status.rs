//! The read side of `HubMachine`: its phases and call sources, and what the published status
//! derives from them (state, call, counts, ended calls). Transitions are in `machine.rs`.

use std::time::{Duration, Instant};

use super::HubMachine;
use crate::config::Panel;
use crate::media::hub::{CallEnd, HubState, HubStatus};

/// Where the hub's call comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallSource {
    /// A view call we place: INVITE with `a=DEVADDR`.
    View { devaddr: u8 },
    /// A doorbell ring the user answered (200 with our SDP), by its Call-ID.
    AnsweredRing { call_id: String },
    /// A ring's silent preview: early media after our 183 (audio inactive), by its Call-ID.
    /// It lasts as long as the ring; `snapshot_call`: when it brings no picture, a short view
    /// call is placed for one (`ring_snapshot_call`).
    RingPreview {
        call_id: String,
        snapshot_call: bool,
    },
}

impl CallSource {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::View { .. } => "view",
            Self::AnsweredRing { .. } => "answered_ring",
            Self::RingPreview { .. } => "ring_preview",
        }
    }

    /// The ring this call belongs to (answered or previewed).
    pub fn ring_call_id(&self) -> Option<&str> {
        match self {
            Self::View { .. } => None,
            Self::AnsweredRing { call_id } | Self::RingPreview { call_id, .. } => Some(call_id),
        }
    }

    /// Only view calls exist for the viewers: the linger ends them, a leaving joiner cancels them.
    pub(super) fn is_view(&self) -> bool {
        matches!(self, Self::View { .. })
    }
}

/// The call that is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub source: CallSource,
    pub call_id: String,
    pub since: Instant,
    pub last_packet: Instant,
    /// The first keyframe arrived: viewers can start.
    pub video: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// No call, none wanted.
    Idle,
    /// Asked the intercom for a call (INVITE under way, or the ring's 200 waiting for its ACK).
    Placing { source: CallSource, since: Instant },
    /// A call feeds the hub: someone watches, or it is an answered ring.
    Live(Call),
    /// A view call nobody watches any more: BYE at `until` unless a viewer comes back.
    Lingering { call: Call, until: Instant },
    /// A start failed; the next INVITE not before `until` (joiners wait).
    Backoff { until: Instant },
    /// Shut down: every join is refused.
    Stopped,
}

impl HubMachine {
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The state the status shows.
    pub fn state(&self) -> HubState {
        match &self.phase {
            Phase::Idle | Phase::Stopped => HubState::Idle,
            Phase::Placing { .. } => HubState::Starting,
            Phase::Live(c) if c.video => HubState::Live,
            Phase::Live(_) => HubState::Starting,
            Phase::Lingering { .. } => HubState::Lingering,
            Phase::Backoff { .. } => HubState::Failed,
        }
    }

    /// The call that is up (live or lingering).
    pub fn call(&self) -> Option<&Call> {
        match &self.phase {
            Phase::Live(c) | Phase::Lingering { call: c, .. } => Some(c),
            _ => None,
        }
    }

    /// Where the call being placed or running comes from.
    pub fn source(&self) -> Option<&CallSource> {
        match &self.phase {
            Phase::Placing { source, .. } => Some(source),
            _ => self.call().map(|c| &c.source),
        }
    }

    pub fn start_timeout(&self) -> Duration {
        self.start_timeout
    }

    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// Admitted viewers (not the joiners still waiting).
    pub fn watching(&self) -> usize {
        self.viewers.values().filter(|w| w.is_none()).count()
    }

    pub fn waiting(&self) -> usize {
        self.viewers.len() - self.watching()
    }

    pub fn calls_started(&self) -> u64 {
        self.calls_started
    }

    pub fn calls_ended(&self) -> &[(CallEnd, u64)] {
        &self.calls_ended
    }

    pub fn call_seconds(&self) -> f64 {
        self.call_seconds
    }

    pub fn last_end(&self) -> Option<(CallEnd, Instant)> {
        self.last_end
    }

    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// True once after anything the status shows has changed.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }
}

impl HubStatus {
    /// A panel's status before anything happened: idle, streaming allowed, no calls.
    pub(crate) fn initial(panel: &Panel) -> Self {
        Self {
            panel: panel.name.clone(),
            devaddr: panel.devaddr,
            state: HubState::Idle,
            streaming_allowed: true,
            viewers: 0,
            viewers_by_kind: Vec::new(),
            call_id: None,
            call_since: None,
            call_source: None,
            calls_started: 0,
            width: None,
            height: None,
            last_error: None,
            calls_ended: Vec::new(),
            last_end: None,
            call_seconds: 0.0,
        }
    }
}
