//! The doorbell's rows of the transition table (issue 16): a ring's preview or snapshot call,
//! viewers sharing the preview, its end falling back to a view call, answering it on the same
//! media, the preview that brings no video. Same harness as `transitions.rs`.

use super::transitions::{check, row};
use super::*;

#[test]
fn every_doorbell_transition() {
    use Action::*;
    use HubState as S;
    let s = 1000; // one second, in ms
    let rows = vec![
        row(
            From::Idle,
            vec![(s, ring_in(true, false))],
            vec![Place(preview(false))],
            "placing preview",
            S::Starting,
        ),
        row(
            From::Idle,
            vec![(s, ring_in(false, true))],
            vec![Place(view())],
            "placing view",
            S::Starting,
        ),
        row(
            From::Idle,
            vec![(s, ring_in(false, false))],
            vec![],
            "idle",
            S::Idle,
        ),
        row(
            From::PrivacyOn,
            vec![(s, ring_in(true, true))],
            vec![],
            "idle",
            S::Idle,
        ),
        row(
            From::LiveView,
            vec![(s, ring_in(true, false))],
            vec![],
            "live view",
            S::Live,
        ),
        row(
            From::PlacingPreview,
            vec![(s, up("ring-1"))],
            vec![],
            "live preview",
            S::Starting,
        ),
        row(
            From::PlacingPreview,
            vec![(s, join(1)), (2 * s, leave(1))],
            vec![],
            "placing preview",
            S::Starting,
        ),
        row(
            From::PlacingPreview,
            vec![(
                s,
                Input::CallFailed {
                    reason: "no such ring".into(),
                },
            )],
            vec![],
            "idle",
            S::Idle,
        ),
        row(
            From::PlacingPreviewSnap,
            vec![(
                s,
                Input::CallFailed {
                    reason: "no such ring".into(),
                },
            )],
            vec![Place(view())],
            "placing view",
            S::Starting,
        ),
        row(
            From::PlacingPreview,
            vec![(s, join(1)), (s, answer())],
            vec![CancelPlacing, Place(ring())],
            "placing ring",
            S::Starting,
        ),
        row(
            From::LivePreview,
            vec![(s, leave(1)), (60 * s, Input::Timer)],
            vec![],
            "live preview",
            S::Live,
        ),
        row(
            From::LivePreview,
            vec![(s, answer())],
            vec![AnswerLive {
                call_id: "ring-1".into(),
            }],
            "live ring",
            S::Live,
        ),
        row(
            From::LivePreview,
            vec![(s, ended(CallEnd::RingEnded))],
            vec![HangUp(CallEnd::RingEnded), Place(view())],
            "placing view",
            S::Starting,
        ),
        row(
            From::LivePreviewAlone,
            vec![(s, ended(CallEnd::RingEnded))],
            vec![HangUp(CallEnd::RingEnded)],
            "idle",
            S::Idle,
        ),
        row(
            From::LivePreview,
            vec![(s, Input::HangUp)],
            vec![HangUp(CallEnd::LocalHangUp), Place(view())],
            "placing view",
            S::Starting,
        ),
        row(
            From::LivePreviewAlone,
            vec![(s, Input::AllowStreaming(false))],
            vec![HangUp(CallEnd::Privacy)],
            "idle",
            S::Idle,
        ),
        row(
            From::LivePreviewNoVideo,
            vec![(3 * s, Input::Timer)],
            vec![],
            "live preview",
            S::Starting,
        ),
        row(
            From::LivePreviewNoVideo,
            vec![(3400, Input::Timer)],
            vec![HangUp(CallEnd::NoEarlyMedia), Place(view())],
            "placing view",
            S::Starting,
        ),
        row(
            From::LiveSnapshot,
            vec![(s, Input::RingPicture)],
            vec![HangUp(CallEnd::RingSnapshot)],
            "idle",
            S::Idle,
        ),
        row(
            From::LiveSnapshot,
            vec![(s, join(1)), (s, Input::RingPicture)],
            vec![RequestKeyframe],
            "live view",
            S::Live,
        ),
        row(
            From::LiveSnapshot,
            vec![(8400, Input::Timer)],
            vec![HangUp(CallEnd::RingSnapshot)],
            "idle",
            S::Idle,
        ),
    ];
    check(rows);
}
