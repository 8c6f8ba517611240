//! The unit's side of a ring's responses (c300x-protocol.md §7): 180 rings on; a 1xx with SDP
//! (the bridge's 183 silent preview) starts early media towards that fork while every other fork
//! keeps ringing; the first 200 wins (ACK, CANCEL the other forks, the media becomes the call);
//! a fork's final error stops its early media. Keys per §4.3: the unit protects what it sends with
//! the keys of its INVITE offer and unprotects the bridge's packets with the 183/200 answer's.

use super::core::{Core, Internal};
use super::message::{Message, param, uri_of};
use super::ring::{COMPLETED_ELSEWHERE, Early, EarlyMedia, Ring, RingState, ack_for, cancel_for};
use super::transport::Flow;
use super::view::{Call, CallState};
use crate::sim::media::{MediaOptions, MediaPlan, MediaSession};
use crate::sim::sdp::{PeerMedia, PeerSdp};
use crate::sim::stats::SimStats;

/// The bridge's answer (183 or 200) read into a plan, and whether the unit sends audio / video
/// (RFC 3264 §6.1: nothing on a stream the answer made `inactive` or `sendonly`).
struct Answer {
    plan: MediaPlan,
    send_audio: bool,
    send_video: bool,
}

fn unit_sends(m: &PeerMedia) -> bool {
    matches!(m.direction.as_str(), "sendrecv" | "recvonly")
}

impl Ring {
    fn read_answer(&self, res: &Message, no_rtp_timeout: std::time::Duration) -> Option<Answer> {
        let answer = PeerSdp::parse(&res.body);
        let (a, v) = match answer.check_answer() {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(
                    call_id = res.call_id(),
                    "sim: unusable answer to the ring: {e}"
                );
                return None;
            }
        };
        let (Some(ip), Some(ac), Some(vc)) = (v.ip.or(a.ip), &a.crypto, &v.crypto) else {
            return None;
        };
        Some(Answer {
            plan: MediaPlan {
                remote_ip: ip,
                remote_audio_port: a.port,
                remote_video_port: v.port,
                audio_pt: a.pt.unwrap_or(96),
                video_pt: v.pt.unwrap_or(97),
                local_audio_key: self.keys.0.clone(),
                local_video_key: self.keys.1.clone(),
                remote_audio_key: ac.key.clone(),
                remote_video_key: vc.key.clone(),
                no_rtp_timeout,
            },
            send_audio: unit_sends(a),
            send_video: unit_sends(v),
        })
    }

    fn options(&self, answer: &Answer, no_rtp_hangup: bool) -> MediaOptions {
        MediaOptions {
            label: self.label.clone(),
            send_audio: answer.send_audio,
            send_video: answer.send_video,
            no_rtp_hangup,
            counters: Some(self.counters.clone()),
        }
    }
}

/// A 1xx carries SDP when it has a body that looks like one (be liberal: any 101–199).
fn has_sdp(res: &Message) -> bool {
    let ctype = res.header("Content-Type").unwrap_or_default();
    !res.body.is_empty()
        && (ctype.to_ascii_lowercase().contains("application/sdp") || res.body.starts_with(b"v=0"))
}

impl Core {
    pub(super) fn on_ring_response(&mut self, flow: &Flow, res: &Message) {
        let call_id = res.call_id().to_owned();
        let top_branch = res
            .header("Via")
            .and_then(|v| param(v, "branch"))
            .unwrap_or_default()
            .to_owned();
        let Some(ring) = self.rings.get_mut(&call_id) else {
            return;
        };
        let Some(idx) = ring.forks.iter().position(|f| {
            f.invite.header("Via").and_then(|v| param(v, "branch")) == Some(top_branch.as_str())
        }) else {
            return;
        };
        let code = res.code().unwrap_or(0);
        if code < 200 {
            if code > 100 && *ring.state.borrow() == RingState::Calling {
                let _ = ring.state.send(RingState::Ringing);
            }
            if code > 100 && has_sdp(res) {
                self.early_media(&call_id, idx, res);
            }
            return;
        }
        let fork = &mut ring.forks[idx];
        fork.done = true;
        let ack = ack_for(&fork.invite, res, code >= 300, &self.local, flow);
        flow.send(&ack);
        if code >= 300 {
            if ring.early.as_ref().is_some_and(|e| e.fork == idx) {
                ring.stop_early();
            }
            if ring.forks.iter().all(|f| f.done) {
                let end = if ring.cancelled {
                    RingState::Cancelled
                } else {
                    RingState::Rejected(code)
                };
                let _ = ring.state.send(end);
                self.rings.remove(&call_id);
            }
            return;
        }
        self.ring_answered(&call_id, idx, flow, res);
    }

    /// A fork's 183 with SDP: stream to it, unless the unit refuses early media or another fork
    /// already has it (one stream from the offer's ports at a time).
    fn early_media(&mut self, call_id: &str, idx: usize, res: &Message) {
        let no_rtp_timeout = self.cfg.no_rtp_timeout;
        let refuse = self.faults.refuse_early_media();
        let Some(ring) = self.rings.get_mut(call_id) else {
            return;
        };
        if ring.cancelled || ring.forks[idx].done {
            return;
        }
        if let Some(early) = &ring.early {
            if early.fork != idx {
                SimStats::bump(&self.stats.early_media_refused);
                tracing::debug!(%call_id, "sim: early media already goes to another fork");
            }
            return; // the same fork repeating its 183 changes nothing
        }
        if refuse {
            SimStats::bump(&self.stats.early_media_refused);
            tracing::info!(%call_id, "sim: ignoring the 183's SDP (refuse_early_media)");
            return;
        }
        let Some(answer) = ring.read_answer(res, no_rtp_timeout) else {
            return;
        };
        let to_tag = param(res.header("To").unwrap_or_default(), "tag")
            .unwrap_or_default()
            .to_owned();
        let video = std::net::SocketAddr::new(answer.plan.remote_ip, answer.plan.remote_video_port);
        // The ring timeout, not the no-RTP timer, ends early media: the 183 has audio inactive.
        let options = ring.options(&answer, false);
        let (session, ended) = MediaSession::start_with(
            ring.bound.clone(),
            answer.plan.clone(),
            options,
            self.stats.clone(),
            self.faults.clone(),
        );
        ring.early = Some(Early {
            fork: idx,
            session,
            ended,
            plan: answer.plan,
        });
        ring.early_tx
            .send_replace(EarlyMedia::Streaming { to_tag, video });
        SimStats::bump(&self.stats.early_media_started);
        tracing::info!(%call_id, %video, "sim: early media (183 with SDP)");
    }

    /// The first 200 wins: the other forks are CANCELled and the media becomes the call (the
    /// early stream continues when the 200 repeats the 183's addresses and keys).
    fn ring_answered(&mut self, call_id: &str, idx: usize, flow: &Flow, res: &Message) {
        let no_rtp_timeout = self.cfg.no_rtp_timeout;
        let Some(mut ring) = self.rings.remove(call_id) else {
            return;
        };
        let answer = ring.read_answer(res, no_rtp_timeout);
        let early = ring.early.take();
        let media = match (answer, early) {
            (Some(answer), Some(early)) if early.fork == idx && early.plan == answer.plan => {
                early
                    .session
                    .set_sending(answer.send_audio, answer.send_video);
                early.session.set_no_rtp_hangup(true);
                Some((early.session, early.ended))
            }
            (answer, early) => {
                if let Some(early) = early {
                    early.session.stop();
                }
                answer.map(|answer| {
                    let options = ring.options(&answer, true);
                    MediaSession::start_with(
                        ring.bound.clone(),
                        answer.plan,
                        options,
                        self.stats.clone(),
                        self.faults.clone(),
                    )
                })
            }
        };
        if *ring.early_tx.borrow() != EarlyMedia::None {
            ring.early_tx.send_replace(EarlyMedia::Ended);
        }
        let invite = ring.forks[idx].invite.clone();
        for f in ring.forks.iter_mut().filter(|f| !f.done) {
            f.done = true;
            let mut cancel = cancel_for(&f.invite);
            cancel.push("Reason", COMPLETED_ELSEWHERE);
            f.flow.send(&cancel);
        }
        let _ = ring.state.send(RingState::Answered);
        let media = media.map(|(session, ended)| {
            let tx = self.internal.clone();
            let id = call_id.to_owned();
            tokio::spawn(async move {
                if ended.await.is_ok() {
                    let _ = tx.send(Internal::MediaEnded { call_id: id });
                }
            });
            session
        });
        SimStats::bump(&self.stats.active_calls);
        self.calls.insert(
            call_id.to_owned(),
            Call {
                state: CallState::Established,
                flow: flow.clone(),
                invite: invite.clone(),
                local_party: ring.from.clone(),
                remote_party: res.header("To").unwrap_or_default().to_owned(),
                remote_target: uri_of(res.header("Contact").unwrap_or_default()).to_owned(),
                local_cseq: 20,
                devaddr: None,
                local_sdp: String::from_utf8_lossy(&invite.body).into_owned(),
                pending: None,
                media,
                contact: invite.header("Contact").unwrap_or_default().to_owned(),
            },
        );
    }
}
