//! The OpenWebNet frames the simulated unit executes from a SIP MESSAGE body (c300x-protocol.md
//! §8): answering machine on/off and its status (`GetAswmStatus!` → a MESSAGE back), and the
//! indoor ringer: `*#8**#33*0##` mutes, `*#8**#33*1##` unmutes, `*#8**33##` asks, answered by a
//! MESSAGE `*#8**33*<0 muted|1 ringing>##` as the unit answers it over local OWN. That the real
//! unit does any of the ringer part over SIP is unverified (`Faults::ringer_no_reply`).

use std::sync::atomic::Ordering;

use super::core::{Binding, Core, USER_AGENT, tag};
use super::message::Message;

/// Mute the indoor unit's ringer.
pub const RINGER_MUTE: &str = "*#8**#33*0##";
/// Let it ring again.
pub const RINGER_UNMUTE: &str = "*#8**#33*1##";
/// Ask for the ringer state.
pub const RINGER_STATUS: &str = "*#8**33##";

/// The unit's status frame for the ringer: `0` muted, `1` ringing.
pub fn ringer_state_frame(muted: bool) -> String {
    format!("*#8**33*{}##", u8::from(!muted))
}

impl Core {
    /// Executes a MESSAGE body already answered with 200. Unknown frames are only recorded.
    pub(super) fn on_own_frame(&mut self, from_user: &str, body: &str) {
        match body {
            "*8*91##" => self.aswm = true,
            "*8*92##" => self.aswm = false,
            "GetAswmStatus!" => {
                let status = format!("*#8**40*{}*0*0*0*0##", u8::from(self.aswm));
                self.send_message_to(from_user, &status);
            }
            RINGER_MUTE | RINGER_UNMUTE | RINGER_STATUS if self.faults.ringer_no_reply() => {
                tracing::info!(body, "sim: ignoring a ringer frame (ringer_no_reply)");
            }
            RINGER_MUTE => self.stats.ringer_muted.store(true, Ordering::SeqCst),
            RINGER_UNMUTE => self.stats.ringer_muted.store(false, Ordering::SeqCst),
            RINGER_STATUS => {
                let state = ringer_state_frame(self.stats.ringer_muted());
                self.send_message_to(from_user, &state);
            }
            _ => {}
        }
    }

    /// A MESSAGE from `c300x` to every live registration of `user` (needs its registration, §8).
    fn send_message_to(&mut self, user: &str, body: &str) {
        let targets: Vec<Binding> = self.bindings_of(user).cloned().collect();
        for b in targets {
            let mut m = Message::request("MESSAGE", &b.contact);
            m.push("Via", self.via(&b.flow))
                .push("Max-Forwards", "70")
                .push(
                    "From",
                    format!("<sip:c300x@{}>;tag={}", self.domain(), tag()),
                )
                .push("To", format!("<sip:{user}@{}>", self.domain()))
                .push("Call-ID", format!("{:016x}", rand::random::<u64>()))
                .push("CSeq", "20 MESSAGE")
                .push("User-Agent", USER_AGENT)
                .set_body("text/plain", body.to_owned());
            b.flow.send(&m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ringer_state_frames_follow_the_own_table() {
        assert_eq!(ringer_state_frame(true), "*#8**33*0##");
        assert_eq!(ringer_state_frame(false), "*#8**33*1##");
    }
}
