//! OpenWebNet (OWN) frames carried in SIP MESSAGE bodies (c300x-protocol.md §8): builders for the
//! commands the bridge sends (door lock, staircase light, answering machine, indoor ringer) and a
//! tolerant reader of the bodies the unit sends back, incl. the `GetAswmStatus!` reply and the
//! ringer state. No SIP, no sockets here.

use std::time::{Duration, SystemTime};

/// The main entrance panel's lock (`W = 2 + address`, address 0; §8).
pub const MAIN_DOOR: u8 = 20;
/// The staircase light actuator every source uses.
pub const STAIRCASE_LIGHT: u8 = 10;
/// Asks the unit for the answering-machine status; it replies with a MESSAGE of its own.
pub const ASWM_STATUS_REQUEST: &str = "GetAswmStatus!";
/// Asks the indoor unit for its ringer state; it answers `*#8**33*<0 muted|1 ringing>##` (over
/// local OWN; over SIP MESSAGE unverified).
pub const RINGER_STATUS_REQUEST: &str = "*#8**33##";
/// The start of the unit's answering-machine status reply.
const ASWM_STATUS_PREFIX: &str = "*#8**40*";
/// How much of an odd body an error quotes.
const QUOTE_LEN: usize = 60;

/// Mutes (`true`: `*#8**#33*0##`) or unmutes (`*#8**#33*1##`) the indoor unit's ringer.
pub fn ringer(muted: bool) -> String {
    format!("*#8**#33*{}##", u8::from(!muted))
}

/// Opens the lock `where_` (press); follow with [`release`] after the pulse.
pub fn unlock(where_: u8) -> String {
    format!("*8*19*{where_}##")
}

/// Ends the unlock pulse of lock `where_`.
pub fn release(where_: u8) -> String {
    format!("*8*20*{where_}##")
}

pub fn staircase_light_on() -> String {
    format!("*8*21*{STAIRCASE_LIGHT}##")
}

pub fn staircase_light_off() -> String {
    format!("*8*22*{STAIRCASE_LIGHT}##")
}

/// Switches the answering machine on (`*8*91##`) or off (`*8*92##`).
pub fn voicemail(on: bool) -> String {
    if on { "*8*91##" } else { "*8*92##" }.to_owned()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnError {
    #[error("OWN body is not an answering-machine status (`*#8**40*…##`): `{0}`")]
    NotAswmStatus(String),
    #[error("answering-machine status lacks the closing `##`: `{0}`")]
    Unterminated(String),
    #[error("answering-machine status: no {field} flag in `{body}`")]
    MissingFlag { field: &'static str, body: String },
    #[error("answering-machine status: {field} flag is `{value}`, expected 0 or 1")]
    BadFlag { field: &'static str, value: String },
}

/// One recorded message listed after the status frame: four `|`-separated fields, the third
/// being its Unix time. What the other three mean is not documented, so they are kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoicemailEntry {
    pub fields: [String; 4],
    /// The third field as a time; `None` when it is not a number of seconds.
    pub at: Option<SystemTime>,
}

/// The unit's reply to [`ASWM_STATUS_REQUEST`]:
/// `*#8**40*<aswm 0|1>*<welcome 0|1>*…##` then `;`-separated [`VoicemailEntry`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AswmStatus {
    /// The answering machine is on.
    pub enabled: bool,
    /// The welcome message is on.
    pub welcome: bool,
    /// The undocumented fields after the two flags (e.g. `1176`, `0`, `2`), verbatim.
    pub extra: Vec<String>,
    pub messages: Vec<VoicemailEntry>,
}

fn quote(body: &str) -> String {
    let end = body
        .char_indices()
        .nth(QUOTE_LEN)
        .map_or(body.len(), |(i, _)| i);
    body[..end].to_owned()
}

impl AswmStatus {
    /// Parses the reply body. Entries that do not have four fields (e.g. the empty one after a
    /// trailing `;`) are skipped, like koush/scrypted does; only a bad status frame is an error.
    pub fn parse(body: &str) -> Result<Self, OwnError> {
        let body = body.trim();
        let (head, entries) = body.split_once(';').unwrap_or((body, ""));
        let head = head.trim();
        let rest = head
            .strip_prefix(ASWM_STATUS_PREFIX)
            .ok_or_else(|| OwnError::NotAswmStatus(quote(body)))?;
        let inner = rest
            .strip_suffix("##")
            .ok_or_else(|| OwnError::Unterminated(quote(body)))?;
        let mut fields = inner.split('*');
        let mut flag = |field: &'static str| match fields.next() {
            Some("0") => Ok(false),
            Some("1") => Ok(true),
            Some("") | None => Err(OwnError::MissingFlag {
                field,
                body: quote(body),
            }),
            Some(other) => Err(OwnError::BadFlag {
                field,
                value: quote(other),
            }),
        };
        let enabled = flag("answering machine")?;
        let welcome = flag("welcome message")?;
        Ok(Self {
            enabled,
            welcome,
            extra: fields.map(str::to_owned).collect(),
            messages: entries
                .split(';')
                .filter_map(VoicemailEntry::parse)
                .collect(),
        })
    }
}

impl VoicemailEntry {
    fn parse(entry: &str) -> Option<Self> {
        let mut it = entry.trim().split('|').map(str::to_owned);
        let fields = [it.next()?, it.next()?, it.next()?, it.next()?];
        if it.next().is_some() {
            return None;
        }
        let at = fields[2]
            .trim()
            .parse::<u64>()
            .ok()
            .and_then(|secs| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs)));
        Some(Self { fields, at })
    }
}

/// What a MESSAGE body says, as far as the bridge cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Unlock {
        where_: u8,
    },
    Release {
        where_: u8,
    },
    StaircaseLight {
        on: bool,
        where_: u8,
    },
    Voicemail {
        on: bool,
    },
    AswmStatusRequest,
    AswmStatus(AswmStatus),
    /// `*#8**#33*<0|1>##`: mute / unmute the indoor ringer.
    Ringer {
        muted: bool,
    },
    /// `*#8**33##`
    RingerStatusRequest,
    /// `*#8**33*<0|1>##`: the unit's ringer state (0 = muted).
    RingerStatus {
        muted: bool,
    },
    /// Starts like a status reply but is not a valid one.
    BadAswmStatus(OwnError),
    /// `*#*1##`
    Ack,
    /// `*#*0##`
    Nack,
    /// Anything else, trimmed and verbatim.
    Other(String),
}

impl Frame {
    /// Classifies a MESSAGE body; never fails, unknown bodies are [`Frame::Other`].
    pub fn parse(body: &str) -> Self {
        let body = body.trim();
        if body == ASWM_STATUS_REQUEST {
            return Self::AswmStatusRequest;
        }
        if body.starts_with(ASWM_STATUS_PREFIX) {
            return match AswmStatus::parse(body) {
                Ok(status) => Self::AswmStatus(status),
                Err(e) => Self::BadAswmStatus(e),
            };
        }
        let Some(inner) = body.strip_prefix('*').and_then(|b| b.strip_suffix("##")) else {
            return Self::Other(body.to_owned());
        };
        let parts: Vec<&str> = inner.split('*').collect();
        let where_ = |w: &str| w.parse::<u8>().ok();
        let frame = match parts.as_slice() {
            ["8", "19", w] => where_(w).map(|where_| Self::Unlock { where_ }),
            ["8", "20", w] => where_(w).map(|where_| Self::Release { where_ }),
            ["8", "21", w] => where_(w).map(|where_| Self::StaircaseLight { on: true, where_ }),
            ["8", "22", w] => where_(w).map(|where_| Self::StaircaseLight { on: false, where_ }),
            ["8", "91"] => Some(Self::Voicemail { on: true }),
            ["8", "92"] => Some(Self::Voicemail { on: false }),
            ["#8", "", "#33", v @ ("0" | "1")] => Some(Self::Ringer { muted: *v == "0" }),
            ["#8", "", "33"] => Some(Self::RingerStatusRequest),
            ["#8", "", "33", v @ ("0" | "1")] => Some(Self::RingerStatus { muted: *v == "0" }),
            ["#", "1"] => Some(Self::Ack),
            ["#", "0"] => Some(Self::Nack),
            _ => None,
        };
        frame.unwrap_or_else(|| Self::Other(body.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_write_the_documented_frames() {
        assert_eq!(unlock(MAIN_DOOR), "*8*19*20##");
        assert_eq!(release(MAIN_DOOR), "*8*20*20##");
        assert_eq!(unlock(21), "*8*19*21##");
        assert_eq!(release(22), "*8*20*22##");
        assert_eq!(staircase_light_on(), "*8*21*10##");
        assert_eq!(staircase_light_off(), "*8*22*10##");
        assert_eq!(voicemail(true), "*8*91##");
        assert_eq!(voicemail(false), "*8*92##");
        assert_eq!(ASWM_STATUS_REQUEST, "GetAswmStatus!");
        assert_eq!(ringer(true), "*#8**#33*0##");
        assert_eq!(ringer(false), "*#8**#33*1##");
        assert_eq!(RINGER_STATUS_REQUEST, "*#8**33##");
    }

    #[test]
    fn ringer_frames_and_the_state_reply() {
        assert_eq!(Frame::parse(&ringer(true)), Frame::Ringer { muted: true });
        assert_eq!(Frame::parse(&ringer(false)), Frame::Ringer { muted: false });
        assert_eq!(
            Frame::parse(RINGER_STATUS_REQUEST),
            Frame::RingerStatusRequest
        );
        assert_eq!(
            Frame::parse("*#8**33*0##\r\n"),
            Frame::RingerStatus { muted: true }
        );
        assert_eq!(
            Frame::parse("*#8**33*1##"),
            Frame::RingerStatus { muted: false }
        );
        for odd in ["*#8**33*2##", "*#8**#33##", "*#8*33*1##"] {
            assert_eq!(Frame::parse(odd), Frame::Other(odd.to_owned()), "{odd}");
        }
    }

    #[test]
    fn frames_round_trip_through_the_classifier() {
        assert_eq!(Frame::parse(&unlock(20)), Frame::Unlock { where_: 20 });
        assert_eq!(Frame::parse(&release(21)), Frame::Release { where_: 21 });
        assert_eq!(
            Frame::parse(&staircase_light_on()),
            Frame::StaircaseLight {
                on: true,
                where_: 10
            }
        );
        assert_eq!(
            Frame::parse(&staircase_light_off()),
            Frame::StaircaseLight {
                on: false,
                where_: 10
            }
        );
        assert_eq!(Frame::parse("*8*91##\r\n"), Frame::Voicemail { on: true });
        assert_eq!(
            Frame::parse(&voicemail(false)),
            Frame::Voicemail { on: false }
        );
        assert_eq!(
            Frame::parse(" GetAswmStatus!\r\n"),
            Frame::AswmStatusRequest
        );
        assert_eq!(Frame::parse("*#*1##"), Frame::Ack);
        assert_eq!(Frame::parse("*#*0##"), Frame::Nack);
    }

    #[test]
    fn unknown_or_odd_bodies_are_other() {
        for body in [
            "",
            "*",
            "##",
            "*##",
            "*8*19*300##",
            "*8*19*20",
            "*8*19*20##*8*20*20##",
            "*#8**37*1##",
            "hello",
            "*8*19**##",
            "é*8*19*20##",
        ] {
            assert_eq!(
                Frame::parse(body),
                Frame::Other(body.trim().to_owned()),
                "{body:?}"
            );
        }
    }

    #[test]
    fn parses_the_status_reply_with_messages() {
        let body = "*#8**40*1*0*1176*0*2##;1|msg_001.wav|1700000000|0;2|msg_002.wav|1700000600|1;";
        let s = AswmStatus::parse(body).expect("valid");
        assert!(s.enabled && !s.welcome);
        assert_eq!(s.extra, ["1176", "0", "2"]);
        assert_eq!(s.messages.len(), 2);
        assert_eq!(s.messages[0].fields[1], "msg_001.wav");
        assert_eq!(
            s.messages[1].at,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_600))
        );
        assert_eq!(Frame::parse(body), Frame::AswmStatus(s));
    }

    #[test]
    fn status_reply_without_messages_and_the_scrypted_capture() {
        // The exact prefix koush/scrypted matches on, and the one c300x-controller logs.
        let s = AswmStatus::parse("*#8**40*0*0*1176*0*2##").expect("valid");
        assert!(!s.enabled && !s.welcome && s.messages.is_empty());
        let s = AswmStatus::parse("*#8**40*0*1*0153*1*25##").expect("valid");
        assert!(!s.enabled && s.welcome);
        let s = AswmStatus::parse("*#8**40*1*1##").expect("valid");
        assert!(s.enabled && s.welcome && s.extra.is_empty());
    }

    #[test]
    fn odd_entries_are_skipped_or_have_no_time() {
        let body =
            "*#8**40*1*1*0*0*0##;a|b|c;1|2|not-a-time|4;;1|2|3|4|5;x|y|99999999999999999999|z";
        let s = AswmStatus::parse(body).expect("valid");
        assert_eq!(s.messages.len(), 2);
        assert_eq!(s.messages[0].at, None);
        assert_eq!(s.messages[1].at, None);
    }

    #[test]
    fn bad_status_replies_have_typed_errors() {
        assert_eq!(
            AswmStatus::parse("*8*91##"),
            Err(OwnError::NotAswmStatus("*8*91##".into()))
        );
        assert_eq!(
            AswmStatus::parse("*#8**40*1*0*1176"),
            Err(OwnError::Unterminated("*#8**40*1*0*1176".into()))
        );
        assert_eq!(
            AswmStatus::parse("*#8**40*1##"),
            Err(OwnError::MissingFlag {
                field: "welcome message",
                body: "*#8**40*1##".into()
            })
        );
        assert_eq!(
            AswmStatus::parse("*#8**40*2*0##"),
            Err(OwnError::BadFlag {
                field: "answering machine",
                value: "2".into()
            })
        );
        assert_eq!(
            Frame::parse("*#8**40*x*0##"),
            Frame::BadAswmStatus(OwnError::BadFlag {
                field: "answering machine",
                value: "x".into()
            })
        );
    }
}
