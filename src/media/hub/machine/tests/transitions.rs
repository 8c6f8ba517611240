//! Every phase transition of `HubMachine`, one row each: from a set-up phase, feed inputs at
//! given times, expect exactly these actions, this phase and this published state.

use super::*;

pub(super) struct Row {
    from: From,
    steps: Vec<(u64, Input)>,
    actions: Vec<Action>,
    to: &'static str,
    state: HubState,
}

pub(super) fn row(
    from: From,
    steps: Vec<(u64, Input)>,
    actions: Vec<Action>,
    to: &'static str,
    state: HubState,
) -> Row {
    Row {
        from,
        steps,
        actions,
        to,
        state,
    }
}

#[test]
fn every_phase_transition() {
    use Action::*;
    use HubState as S;
    let s = 1000; // one second, in ms
    let rows = vec![
        // Idle
        row(
            From::Idle,
            vec![(s, join(1))],
            vec![Place(view())],
            "placing view",
            S::Starting,
        ),
        row(
            From::Idle,
            vec![(s, answer())],
            vec![Place(ring())],
            "placing ring",
            S::Starting,
        ),
        row(From::Idle, vec![(s, Input::Timer)], vec![], "idle", S::Idle),
        row(
            From::Idle,
            vec![(s, Input::Shutdown)],
            vec![],
            "stopped",
            S::Idle,
        ),
        row(
            From::Idle,
            vec![(s, Input::HangUp)],
            vec![],
            "idle",
            S::Idle,
        ),
        row(
            From::PrivacyOn,
            vec![(s, join(1))],
            vec![reject(1, Refusal::StreamingDisabled)],
            "idle",
            S::Idle,
        ),
        row(
            From::PrivacyOn,
            vec![(s, Input::AllowStreaming(true)), (s, join(1))],
            vec![Place(view())],
            "placing view",
            S::Starting,
        ),
        // Placing a view call
        row(
            From::PlacingView,
            vec![(s, up("c1"))],
            vec![],
            "live view",
            S::Starting,
        ),
        row(
            From::PlacingView,
            vec![(
                s,
                Input::CallFailed {
                    reason: "486 Busy".into(),
                },
            )],
            vec![reject(1, Refusal::CallFailed("486 Busy".into()))],
            "backoff",
            S::Failed,
        ),
        row(
            From::PlacingView,
            vec![(s, leave(1))],
            vec![CancelPlacing],
            "idle",
            S::Idle,
        ),
        row(
            From::PlacingView,
            vec![(s, join(2))],
            vec![],
            "placing view",
            S::Starting,
        ),
        row(
            From::PlacingView,
            vec![(10 * s, Input::Timer)],
            vec![reject(1, Refusal::StartTimeout), CancelPlacing],
            "backoff",
            S::Failed,
        ),
        row(
            From::PlacingView,
            vec![(s, answer())],
            vec![CancelPlacing, Place(ring())],
            "placing ring",
            S::Starting,
        ),
        row(
            From::PlacingView,
            vec![(s, Input::AllowStreaming(false))],
            vec![reject(1, Refusal::StreamingDisabled), CancelPlacing],
            "idle",
            S::Idle,
        ),
        row(
            From::PlacingView,
            vec![(s, Input::Shutdown)],
            vec![reject(1, Refusal::Stopped), CancelPlacing],
            "stopped",
            S::Idle,
        ),
        // Placing an answered ring: nobody watching never cancels it (issue 11, fault 3)
        row(
            From::PlacingRing,
            vec![(s, up("ring-1"))],
            vec![],
            "live ring",
            S::Starting,
        ),
        row(
            From::PlacingRing,
            vec![(s, join(1)), (2 * s, leave(1))],
            vec![],
            "placing ring",
            S::Starting,
        ),
        row(
            From::PlacingRing,
            vec![(s, join(1)), (11 * s, Input::Timer)],
            vec![reject(1, Refusal::StartTimeout)],
            "placing ring",
            S::Starting,
        ),
        row(
            From::PlacingRing,
            vec![(
                s,
                Input::CallFailed {
                    reason: "no ACK".into(),
                },
            )],
            vec![],
            "backoff",
            S::Failed,
        ),
        // A live view call
        row(
            From::LiveViewNoVideo,
            vec![(s, Input::Video)],
            vec![],
            "live view",
            S::Live,
        ),
        row(
            From::LiveView,
            vec![(s, join(2))],
            vec![RequestKeyframe],
            "live view",
            S::Live,
        ),
        row(
            From::LiveView,
            vec![(s, leave(1))],
            vec![],
            "lingering",
            S::Lingering,
        ),
        row(
            From::LiveView,
            vec![(s, Input::Packet), (5 * s, Input::Timer)],
            vec![],
            "live view",
            S::Live,
        ),
        row(
            From::LiveView,
            vec![(s, Input::Packet), (6 * s, Input::Timer)],
            vec![HangUp(CallEnd::NoRtp), Place(view())],
            "placing view",
            S::Starting,
        ),
        row(
            From::LiveView,
            vec![(300 * s, Input::Packet), (301 * s, Input::Timer)],
            vec![HangUp(CallEnd::MaxCall), Place(view())],
            "placing view",
            S::Starting,
        ),
        row(
            From::LiveView,
            vec![(s, ended(CallEnd::RemoteBye))],
            vec![HangUp(CallEnd::RemoteBye), Place(view())],
            "placing view",
            S::Starting,
        ),
        row(
            From::LiveView,
            vec![(s, ended(CallEnd::MediaDied))],
            vec![HangUp(CallEnd::MediaDied), Place(view())],
            "placing view",
            S::Starting,
        ),
        row(
            From::LiveView,
            vec![(s, Input::HangUp)],
            vec![HangUp(CallEnd::LocalHangUp), Place(view())],
            "placing view",
            S::Starting,
        ),
        row(
            From::LiveView,
            vec![(s, answer())],
            vec![HangUp(CallEnd::RingAnswered), Place(ring())],
            "placing ring",
            S::Starting,
        ),
        row(
            From::LiveView,
            vec![(s, Input::AllowStreaming(false))],
            vec![CloseViewers, HangUp(CallEnd::Privacy)],
            "idle",
            S::Idle,
        ),
        row(
            From::LiveView,
            vec![(s, Input::Shutdown)],
            vec![CloseViewers, HangUp(CallEnd::Shutdown)],
            "stopped",
            S::Idle,
        ),
        row(
            From::LiveViewNoVideo,
            vec![(10 * s, Input::Timer)],
            vec![
                reject(1, Refusal::StartTimeout),
                HangUp(CallEnd::StartTimeout),
            ],
            "backoff",
            S::Failed,
        ),
        row(
            From::LiveView,
            vec![(s, up("stray"))],
            vec![HangUp(CallEnd::Unwanted)],
            "live view",
            S::Live,
        ),
        // A live answered ring: no linger, not ended when a joiner gives up (fault 3)
        row(
            From::LiveRing,
            vec![(s, leave(1)), (60 * s, Input::Timer)],
            vec![],
            "live ring",
            S::Live,
        ),
        row(
            From::LiveRingWaiting,
            vec![(11 * s, Input::Timer)],
            vec![reject(1, Refusal::StartTimeout)],
            "live ring",
            S::Starting,
        ),
        row(
            From::LiveRing,
            vec![(s, ended(CallEnd::RemoteBye))],
            vec![HangUp(CallEnd::RemoteBye), Place(view())],
            "placing view",
            S::Starting,
        ),
        row(
            From::LiveRing,
            vec![(s, leave(1)), (2 * s, ended(CallEnd::RemoteBye))],
            vec![HangUp(CallEnd::RemoteBye)],
            "idle",
            S::Idle,
        ),
        row(
            From::LiveRing,
            vec![(s, Input::HangUp)],
            vec![HangUp(CallEnd::LocalHangUp), Place(view())],
            "placing view",
            S::Starting,
        ),
        // Lingering
        row(
            From::Lingering,
            vec![(2 * s, join(2))],
            vec![RequestKeyframe],
            "live view",
            S::Live,
        ),
        row(
            From::Lingering,
            vec![(15 * s, Input::Timer)],
            vec![],
            "lingering",
            S::Lingering,
        ),
        row(
            From::Lingering,
            vec![(16 * s, Input::Timer)],
            vec![HangUp(CallEnd::Linger)],
            "idle",
            S::Idle,
        ),
        row(
            From::Lingering,
            vec![(2 * s, ended(CallEnd::RemoteBye))],
            vec![HangUp(CallEnd::RemoteBye)],
            "idle",
            S::Idle,
        ),
        row(
            From::Lingering,
            vec![(2 * s, Input::HangUp)],
            vec![HangUp(CallEnd::LocalHangUp)],
            "idle",
            S::Idle,
        ),
        row(
            From::Lingering,
            vec![(2 * s, answer())],
            vec![HangUp(CallEnd::RingAnswered), Place(ring())],
            "placing ring",
            S::Starting,
        ),
        row(
            From::Lingering,
            vec![(2 * s, Input::Shutdown)],
            vec![HangUp(CallEnd::Shutdown)],
            "stopped",
            S::Idle,
        ),
        // Backoff
        row(
            From::BackoffWaiting,
            vec![(5 * s, Input::Timer)],
            vec![],
            "backoff",
            S::Failed,
        ),
        row(
            From::BackoffWaiting,
            vec![(6 * s, Input::Timer)],
            vec![Place(view())],
            "placing view",
            S::Starting,
        ),
        row(
            From::Backoff,
            vec![(6 * s, Input::Timer)],
            vec![],
            "idle",
            S::Idle,
        ),
        row(
            From::Backoff,
            vec![(2 * s, join(3))],
            vec![],
            "backoff",
            S::Failed,
        ),
        row(
            From::Backoff,
            vec![(2 * s, answer())],
            vec![Place(ring())],
            "placing ring",
            S::Starting,
        ),
        row(
            From::BackoffWaiting,
            vec![(2 * s, Input::Shutdown)],
            vec![reject(2, Refusal::Stopped)],
            "stopped",
            S::Idle,
        ),
        // Stopped
        row(
            From::Stopped,
            vec![(s, join(1))],
            vec![reject(1, Refusal::Stopped)],
            "stopped",
            S::Idle,
        ),
        row(
            From::Stopped,
            vec![(s, answer())],
            vec![RefuseAnswer {
                call_id: "ring-1".into(),
            }],
            "stopped",
            S::Idle,
        ),
    ];
    check(rows);
}

/// Runs every row and reports all that fail.
pub(super) fn check(rows: Vec<Row>) {
    let mut failures = Vec::new();
    for (i, r) in rows.into_iter().enumerate() {
        let mut rig = setup(r.from);
        let what = format!("row {i}: {:?} + {:?}", r.from, r.steps);
        let actions = rig.steps(r.steps);
        if actions != r.actions || rig.kind() != r.to || rig.m.state() != r.state {
            failures.push(format!(
                "{what}\n  want {:?} → {} ({:?})\n  got  {actions:?} → {} ({:?})",
                r.actions,
                r.to,
                r.state,
                rig.kind(),
                rig.m.state()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
