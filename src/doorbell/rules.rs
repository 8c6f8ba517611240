//! The doorbell's two judgements, pure: which panel rang (from the ring INVITE's SDP) and how a
//! ring ended as the user sees it (answered here or elsewhere, missed, rejected) from what SIP
//! saw. What the real unit sends is partly unverified (c300x-protocol.md §7, §12 Q6): DOCS.md.

use std::time::Duration;

use super::RingOutcome;
use crate::config::Panel;
use crate::intercom::sip::RingEndReason;

/// A plain CANCEL (no `Reason`) earlier than this after the INVITE is taken as answered
/// elsewhere: the unit itself gives up after about 30 s (c300x-protocol.md §7), and a visitor
/// cannot take a panel's ring back. Later ones are missed rings.
pub const MISSED_AFTER: Duration = Duration::from_secs(25);

/// The session-level `a=DEVADDR:<n>` of a ring offer (before the first `m=`), if any.
pub fn offer_devaddr(offer_sdp: &str) -> Option<u8> {
    offer_sdp
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("m="))
        .find_map(|l| {
            let (name, value) = l.strip_prefix("a=")?.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("DEVADDR")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
}

/// Which configured panel rang: the one whose DEVADDR the offer names (`true`: attributed);
/// otherwise the first panel (`false`: the INVITE did not say, or named an unknown panel).
/// `None` only when no panel is configured.
pub fn attribute(offer_sdp: &str, panels: &[Panel]) -> Option<(usize, bool)> {
    let named = offer_devaddr(offer_sdp)
        .and_then(|d| panels.iter().position(|p| p.devaddr == d))
        .map(|i| (i, true));
    named.or_else(|| (!panels.is_empty()).then_some((0, false)))
}

/// How a ring ended for the user. `elapsed`: from the INVITE to its end.
pub fn outcome(reason: RingEndReason, elapsed: Duration, missed_after: Duration) -> RingOutcome {
    match reason {
        RingEndReason::Answered => RingOutcome::AnsweredHere,
        RingEndReason::AnsweredElsewhere => RingOutcome::AnsweredElsewhere,
        RingEndReason::Cancelled if elapsed < missed_after => RingOutcome::AnsweredElsewhere,
        RingEndReason::Rejected => RingOutcome::Rejected,
        RingEndReason::Cancelled
        | RingEndReason::Timeout
        | RingEndReason::ConnectionLost
        | RingEndReason::AnswerFailed => RingOutcome::Missed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panels() -> Vec<Panel> {
        vec![
            Panel {
                name: "front".into(),
                devaddr: 20,
            },
            Panel {
                name: "gate".into(),
                devaddr: 21,
            },
        ]
    }

    #[test]
    fn a_ring_goes_to_the_panel_its_offer_names_else_to_the_first() {
        let with = |d: &str| {
            format!(
                "v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\na=DEVADDR:{d}\r\nm=audio 4000 RTP/SAVP 96\r\na=DEVADDR:20\r\n"
            )
        };
        assert_eq!(attribute(&with("21"), &panels()), Some((1, true)));
        assert_eq!(attribute(&with("20"), &panels()), Some((0, true)));
        // Unknown panel, none, garbage, or only at media level: the first, unattributed.
        assert_eq!(attribute(&with("33"), &panels()), Some((0, false)));
        assert_eq!(attribute(&with("x"), &panels()), Some((0, false)));
        let media_only = "v=0\r\nm=audio 4000 RTP/SAVP 96\r\na=DEVADDR:21\r\n";
        assert_eq!(attribute(media_only, &panels()), Some((0, false)));
        assert_eq!(attribute("", &panels()), Some((0, false)));
        assert_eq!(attribute(&with("21"), &[]), None);
        assert_eq!(offer_devaddr("a=devaddr: 22\r\n"), Some(22));
    }

    #[test]
    fn how_a_ring_ended_for_the_user() {
        let s = Duration::from_secs;
        let m = MISSED_AFTER;
        use RingEndReason as R;
        use RingOutcome as O;
        assert_eq!(outcome(R::Answered, s(3), m), O::AnsweredHere);
        assert_eq!(
            outcome(R::AnsweredElsewhere, s(29), m),
            O::AnsweredElsewhere
        );
        assert_eq!(outcome(R::Cancelled, s(5), m), O::AnsweredElsewhere);
        assert_eq!(outcome(R::Cancelled, s(30), m), O::Missed);
        assert_eq!(outcome(R::Timeout, s(45), m), O::Missed);
        assert_eq!(outcome(R::Rejected, s(2), m), O::Rejected);
        assert_eq!(outcome(R::ConnectionLost, s(2), m), O::Missed);
        assert_eq!(outcome(R::AnswerFailed, s(2), m), O::Missed);
    }
}
