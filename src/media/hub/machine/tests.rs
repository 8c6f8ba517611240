//! Clock-free tests of `HubMachine`: the harness (time is `t0 + ms`, setups for every phase), the
//! remote-hang-up recovery rule, the deadlines `poll_timeout` reports, the status read side.
//! The table of every phase transition is in `tests/transitions.rs`.

use std::time::{Duration, Instant};

use super::*;
use crate::media::hub::{CallEnd, HubSettings, HubState};

mod ring;
mod transitions;

const DEVADDR: u8 = 20;

fn view() -> CallSource {
    CallSource::View { devaddr: DEVADDR }
}

fn ring() -> CallSource {
    CallSource::AnsweredRing {
        call_id: "ring-1".into(),
    }
}

/// Defaults, with round numbers: linger 15 s, start 10 s, no RTP 5 s, backoff 5 s, max 300 s.
fn settings() -> HubSettings {
    HubSettings {
        linger: Duration::from_secs(15),
        start_timeout: Duration::from_secs(10),
        max_call: Duration::from_secs(300),
        no_rtp_timeout: Duration::from_secs(5),
        retry_backoff: Duration::from_secs(5),
        ..HubSettings::default()
    }
}

struct Rig {
    m: HubMachine,
    t0: Instant,
}

impl Rig {
    fn new() -> Self {
        Self {
            m: HubMachine::new(DEVADDR, &settings()),
            t0: Instant::now(),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// Feeds `input` at `ms` and returns the actions it produced.
    fn step(&mut self, ms: u64, input: Input) -> Vec<Action> {
        let now = self.at(ms);
        self.m.handle(now, input);
        std::iter::from_fn(|| self.m.poll_action()).collect()
    }

    fn steps(&mut self, steps: Vec<(u64, Input)>) -> Vec<Action> {
        steps
            .into_iter()
            .flat_map(|(ms, i)| self.step(ms, i))
            .collect()
    }

    fn kind(&self) -> &'static str {
        match self.m.phase() {
            Phase::Idle => "idle",
            Phase::Placing { source, .. } if source.is_view() => "placing view",
            Phase::Placing {
                source: CallSource::RingPreview { .. },
                ..
            } => "placing preview",
            Phase::Placing { .. } => "placing ring",
            Phase::Live(c) if c.source.is_view() => "live view",
            Phase::Live(Call {
                source: CallSource::RingPreview { .. },
                ..
            }) => "live preview",
            Phase::Live(_) => "live ring",
            Phase::Lingering { .. } => "lingering",
            Phase::Backoff { .. } => "backoff",
            Phase::Stopped => "stopped",
        }
    }
}

fn join(viewer: u64) -> Input {
    Input::Join { viewer }
}
fn admitted(viewer: u64) -> Input {
    Input::Admitted { viewer }
}
fn leave(viewer: u64) -> Input {
    Input::Leave { viewer }
}
fn up(id: &str) -> Input {
    Input::CallUp { call_id: id.into() }
}
fn answer() -> Input {
    Input::AnswerRing {
        call_id: "ring-1".into(),
    }
}
fn preview(snapshot_call: bool) -> CallSource {
    CallSource::RingPreview {
        call_id: "ring-1".into(),
        snapshot_call,
    }
}
fn ring_in(preview: bool, snapshot_call: bool) -> Input {
    Input::Ring {
        call_id: "ring-1".into(),
        preview,
        snapshot_call,
    }
}
fn ended(reason: CallEnd) -> Input {
    Input::CallEnded { reason }
}
fn reject(viewer: u64, refusal: Refusal) -> Action {
    Action::Reject { viewer, refusal }
}

/// Where each row starts; every setup ends at t0 + 1 s at the latest.
#[derive(Debug, Clone, Copy)]
enum From {
    Idle,
    /// Viewer 1 waits for a view call being placed.
    PlacingView,
    /// The user answers a ring; nobody watches.
    PlacingRing,
    /// Viewer 1 watches a view call with video.
    LiveView,
    /// Viewer 1 waits on a view call that has no video yet.
    LiveViewNoVideo,
    /// An answered ring is up, viewer 1 waits for its video.
    LiveRingWaiting,
    /// An answered ring is up, viewer 1 watches.
    LiveRing,
    /// Viewer 1 left a view call at 1 s.
    Lingering,
    /// The view call for viewer 1 failed at 1 s; viewer 2 joined since.
    BackoffWaiting,
    /// A view call failed at 1 s; nobody waits.
    Backoff,
    Stopped,
    PrivacyOn,
    /// A ring is being previewed (183 under way); nobody watches. `snapshot_call` off.
    PlacingPreview,
    /// The same with `ring_snapshot_call` on.
    PlacingPreviewSnap,
    /// The preview is up with video; viewer 1 watches.
    LivePreview,
    /// The preview is up with video; nobody watches.
    LivePreviewAlone,
    /// The preview is up, no video yet, `ring_snapshot_call` on.
    LivePreviewNoVideo,
    /// No preview: the snapshot call is up with video, nobody watches.
    LiveSnapshot,
}

fn setup(from: From) -> Rig {
    let mut r = Rig::new();
    let live = vec![
        (0, join(1)),
        (500, up("c1")),
        (600, Input::Video),
        (600, admitted(1)),
    ];
    let steps = match from {
        From::Idle => vec![],
        From::PlacingView => vec![(0, join(1))],
        From::PlacingRing => vec![(0, answer())],
        From::LiveView => live,
        From::LiveViewNoVideo => vec![(0, join(1)), (500, up("c1"))],
        From::LiveRingWaiting => vec![(0, answer()), (500, up("ring-1")), (600, join(1))],
        From::LiveRing => vec![
            (0, answer()),
            (500, up("ring-1")),
            (600, join(1)),
            (700, Input::Video),
            (700, admitted(1)),
        ],
        From::Lingering => [live, vec![(1000, leave(1))]].concat(),
        From::BackoffWaiting => vec![
            (0, join(1)),
            (
                1000,
                Input::CallFailed {
                    reason: "486".into(),
                },
            ),
            (1000, join(2)),
        ],
        From::Backoff => vec![
            (0, join(1)),
            (
                1000,
                Input::CallFailed {
                    reason: "486".into(),
                },
            ),
        ],
        From::Stopped => vec![(0, Input::Shutdown)],
        From::PrivacyOn => vec![(0, Input::AllowStreaming(false))],
        From::PlacingPreview => vec![(0, ring_in(true, false))],
        From::PlacingPreviewSnap => vec![(0, ring_in(true, true))],
        From::LivePreview => vec![
            (0, ring_in(true, false)),
            (400, up("ring-1")),
            (500, Input::Video),
            (600, join(1)),
            (600, admitted(1)),
        ],
        From::LivePreviewAlone => vec![
            (0, ring_in(true, false)),
            (400, up("ring-1")),
            (500, Input::Video),
        ],
        From::LivePreviewNoVideo => vec![(0, ring_in(true, true)), (400, up("ring-1"))],
        From::LiveSnapshot => vec![
            (0, ring_in(false, true)),
            (400, up("c1")),
            (500, Input::Video),
        ],
    };
    r.steps(steps);
    r
}

/// Issue 11, fault 1: every remote hang-up is recovered, not only the first of the process.
#[test]
fn remote_hang_ups_are_recovered_every_time_and_counted() {
    let mut r = setup(From::LiveView);
    for n in 1..=3u64 {
        let t = n * 2000;
        let a = r.step(t, ended(CallEnd::RemoteBye));
        assert_eq!(
            a,
            [Action::HangUp(CallEnd::RemoteBye), Action::Place(view())],
            "hang-up {n}"
        );
        r.steps(vec![(t + 500, up("again")), (t + 600, Input::Video)]);
        assert_eq!(r.m.state(), HubState::Live);
    }
    assert_eq!(r.m.calls_ended(), [(CallEnd::RemoteBye, 3)]);
    assert_eq!(r.m.calls_started(), 4);
    // The call ends by the linger; a new viewer's first hang-up is again the first.
    r.steps(vec![(10_000, leave(1)), (26_000, Input::Timer)]);
    assert_eq!(r.kind(), "idle");
    r.steps(vec![
        (30_000, join(2)),
        (30_500, up("new")),
        (30_600, Input::Video),
        (30_600, admitted(2)),
    ]);
    let a = r.step(31_000, ended(CallEnd::RemoteBye));
    assert_eq!(
        a,
        [Action::HangUp(CallEnd::RemoteBye), Action::Place(view())]
    );
}

#[test]
fn short_calls_ended_by_the_intercom_back_off_after_five_in_a_row_and_stable_ones_reset() {
    let mut r = setup(From::LiveView);
    let mut t = 1000;
    for n in 1..=QUICK_ENDS_IN_A_ROW {
        let a = r.step(t, ended(CallEnd::RemoteBye));
        assert!(a.contains(&Action::Place(view())), "end {n}: {a:?}");
        r.step(t + 100, up("again"));
        t += 1000;
    }
    let a = r.step(t, ended(CallEnd::RemoteBye));
    assert_eq!(a, [Action::HangUp(CallEnd::RemoteBye)]);
    assert_eq!(r.kind(), "backoff");
    assert!(
        r.m.last_error()
            .is_some_and(|e| e.contains("6 calls in a row"))
    );
    // The viewer is kept; after the backoff a new call comes.
    let a = r.step(t + 5000, Input::Timer);
    assert_eq!(a, [Action::Place(view())]);
    // A call that lasted STABLE_CALL starts the count again.
    r.step(t + 5100, up("stable"));
    let a = r.step(
        t + 5100 + STABLE_CALL.as_millis() as u64,
        ended(CallEnd::RemoteBye),
    );
    assert!(a.contains(&Action::Place(view())), "{a:?}");
}

#[test]
fn poll_timeout_names_the_next_deadline() {
    let r = setup(From::Idle);
    assert_eq!(r.m.poll_timeout(), None);
    let r = setup(From::PlacingView);
    assert_eq!(r.m.poll_timeout(), Some(r.at(10_000)), "start timeout");
    let mut r = setup(From::LiveView);
    assert_eq!(
        r.m.poll_timeout(),
        Some(r.at(500 + 5000)),
        "no RTP since the call came up"
    );
    r.step(2000, Input::Packet);
    assert_eq!(r.m.poll_timeout(), Some(r.at(7000)), "moved by the packet");
    let r = setup(From::Lingering);
    assert_eq!(r.m.poll_timeout(), Some(r.at(16_000)), "linger");
    let r = setup(From::Backoff);
    assert_eq!(r.m.poll_timeout(), Some(r.at(6000)), "backoff");
    let r = setup(From::LiveRing);
    assert_eq!(
        r.m.poll_timeout(),
        Some(r.at(500 + 5000)),
        "an answered ring with a viewer"
    );
}

#[test]
fn status_fields_follow_the_phase_and_change_only_on_transitions() {
    let mut r = setup(From::LiveView);
    assert!(r.m.take_changed());
    assert_eq!(r.m.call().map(|c| c.call_id.as_str()), Some("c1"));
    assert_eq!(r.m.source(), Some(&view()));
    assert_eq!((r.m.watching(), r.m.waiting()), (1, 0));
    for ms in 700..800 {
        r.step(ms, Input::Packet);
    }
    assert!(!r.m.take_changed(), "packets are not transitions");
    r.step(900, Input::HangUp);
    assert!(r.m.take_changed());
    assert_eq!(r.m.last_end().map(|(e, _)| e), Some(CallEnd::LocalHangUp));
    assert!(
        (r.m.call_seconds() - 0.4).abs() < 1e-9,
        "{}",
        r.m.call_seconds()
    );
}
