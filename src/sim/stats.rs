//! Counters and fault knobs shared by the simulator's SIP side and its media tasks.
//! Tests read `SimStats` for assertions and flip `Faults` to misbehave on purpose.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::sim::media::Hearing;

/// Calls whose per-call media counters are kept (oldest forgotten first).
const KEPT_CALL_COUNTERS: usize = 64;

/// Counters a test can assert on. All are monotonic except `active_calls`.
#[derive(Debug, Default)]
pub struct SimStats {
    /// View calls currently established (200 sent, no BYE yet).
    pub active_calls: AtomicU64,
    /// View-call INVITEs received (retransmissions and re-INVITEs excluded).
    pub invites_received: AtomicU64,
    /// View calls answered with 200 since start.
    pub calls_total: AtomicU64,
    /// INVITEs answered with a final 4xx/5xx/6xx.
    pub invites_rejected: AtomicU64,
    /// RTCP PLI (PT 206, FMT 1) packets received from the bridge.
    pub plis_received: AtomicU64,
    /// SRTP packets from the bridge that decrypted with its offered key.
    pub rtp_from_bridge: AtomicU64,
    /// SRTCP packets from the bridge that decrypted with its offered key.
    pub rtcp_from_bridge: AtomicU64,
    /// Packets on a media port that failed SRTP/SRTCP authentication.
    pub srtp_auth_failures: AtomicU64,
    /// Successful REGISTERs (refreshes included; de-registrations excluded).
    pub registrations: AtomicU64,
    /// BYEs the simulator sent on its own (hang up now, no RTP, ...).
    pub byes_sent: AtomicU64,
    /// BYEs received from the bridge.
    pub byes_received: AtomicU64,
    /// Doorbell INVITEs sent to registered contacts.
    pub rings_sent: AtomicU64,
    /// H.264 IDR frames sent (each preceded by SPS and PPS).
    pub idrs_sent: AtomicU64,
    /// Simulated reboots (registrations and connections dropped).
    pub restarts: AtomicU64,
    /// Every in-dialog ACK/BYE from the bridge, to check routing (c300x-protocol.md §4.2).
    pub in_dialog: Mutex<Vec<InDialogRequest>>,
    /// Every MESSAGE body received, in order, with its arrival time.
    pub messages: Mutex<Vec<ReceivedMessage>>,
    /// Early-media sessions started (a fork's 183 with SDP accepted, c300x-protocol.md §7).
    pub early_media_started: AtomicU64,
    /// 183s with SDP the unit ignored (`Faults::refuse_early_media`, or another fork had it).
    pub early_media_refused: AtomicU64,
    /// The indoor unit's ringer state: `true` = muted (`*#8**#33*0##`). A test may set it to
    /// stand for someone pressing the unit's own mute button.
    pub ringer_muted: AtomicBool,
    /// Per-call media counters (view calls and rings), newest last, bounded.
    call_media: Mutex<VecDeque<(String, Arc<CallMediaCounters>)>>,
}

/// What arrived from the bridge on one call's media ports (authentic packets only).
#[derive(Debug, Default)]
pub struct CallMediaCounters {
    pub audio_packets: AtomicU64,
    /// RTP payload bytes (after SRTP), i.e. the Speex frames the bridge sent.
    pub audio_bytes: AtomicU64,
    pub video_packets: AtomicU64,
    pub rtcp_packets: AtomicU64,
    /// The bridge's audio decoded and measured (voiced time, dominant frequency, continuity).
    pub hearing: Mutex<Hearing>,
}

/// A copy of [`CallMediaCounters`] at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallMedia {
    pub audio_packets: u64,
    pub audio_bytes: u64,
    pub video_packets: u64,
    pub rtcp_packets: u64,
    /// The 1-byte silence keep-alives among the audio packets.
    pub audio_keepalives: u64,
    /// Keep-alives the decoder made audible by ringing on from the voice before them (not
    /// counted as voiced).
    pub keepalives_ringing: u64,
    /// Audio payloads the Speex decoder took, and refused.
    pub audio_decoded: u64,
    pub audio_decode_errors: u64,
    /// Decoded 20 ms frames above the silence threshold (`sim::media::VOICED_RMS`), and their time.
    pub voiced_frames: u64,
    pub voiced_ms: u64,
    /// The strongest frequency of the voiced audio (20 Hz steps), if any was voiced.
    pub dominant_hz: Option<u32>,
    /// The voiced frames' mean RMS level, dBFS.
    pub voiced_dbfs: Option<i32>,
    /// Audio packets with the marker bit (talk spurts).
    pub audio_markers: u64,
    /// Audio packets that broke the stream: new SSRC, sequence gap, or a timestamp step other
    /// than 160 per packet (the bridge's talk must continue its silence stream's clock).
    pub audio_discontinuities: u64,
}

impl CallMediaCounters {
    pub fn snapshot(&self) -> CallMedia {
        let default = Hearing::default();
        let guard = self.hearing.lock();
        let heard = guard.as_deref().unwrap_or(&default);
        CallMedia {
            audio_packets: self.audio_packets.load(Ordering::SeqCst),
            audio_bytes: self.audio_bytes.load(Ordering::SeqCst),
            video_packets: self.video_packets.load(Ordering::SeqCst),
            rtcp_packets: self.rtcp_packets.load(Ordering::SeqCst),
            audio_keepalives: heard.keepalives,
            keepalives_ringing: heard.keepalives_ringing,
            audio_decoded: heard.decoded,
            audio_decode_errors: heard.decode_errors,
            voiced_frames: heard.voiced_frames,
            voiced_ms: heard.voiced_frames * 20,
            dominant_hz: heard.dominant_hz(),
            voiced_dbfs: heard.voiced_dbfs(),
            audio_markers: heard.markers,
            audio_discontinuities: heard.discontinuities,
        }
    }
}

/// How an in-dialog request from the bridge reached the unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InDialogRequest {
    pub method: String,
    /// The Request-URI (should be the loopback Contact from the 200 OK).
    pub uri: String,
    /// The Route header values in order (should be the reversed Record-Route set).
    pub routes: Vec<String>,
    pub call_id: String,
    /// Whether it arrived on the connection (or UDP peer) the INVITE came on.
    pub same_flow: bool,
}

/// One SIP MESSAGE body as the simulator received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub at: SystemTime,
    pub from: String,
    pub body: String,
}

impl SimStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }

    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::SeqCst);
    }

    /// The MESSAGE bodies received so far, oldest first.
    pub fn message_bodies(&self) -> Vec<String> {
        self.messages
            .lock()
            .map(|m| m.iter().map(|r| r.body.clone()).collect())
            .unwrap_or_default()
    }

    pub fn in_dialog(&self) -> Vec<InDialogRequest> {
        self.in_dialog.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn messages(&self) -> Vec<ReceivedMessage> {
        self.messages.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// What the bridge sent on the media of call `call_id` (a view call, or a ring: early media
    /// and the answered call count together), if the simulator still remembers that call.
    pub fn call_media(&self, call_id: &str) -> Option<CallMedia> {
        let calls = self.call_media.lock().ok()?;
        calls
            .iter()
            .rev()
            .find(|(id, _)| id == call_id)
            .map(|(_, c)| c.snapshot())
    }

    /// The counters of call `call_id`, created on first use.
    pub(crate) fn call_counters(&self, call_id: &str) -> Arc<CallMediaCounters> {
        let Ok(mut calls) = self.call_media.lock() else {
            return Arc::default();
        };
        if let Some((_, c)) = calls.iter().find(|(id, _)| id == call_id) {
            return c.clone();
        }
        let c = Arc::new(CallMediaCounters::default());
        calls.push_back((call_id.to_owned(), c.clone()));
        while calls.len() > KEPT_CALL_COUNTERS {
            calls.pop_front();
        }
        c
    }

    pub fn ringer_muted(&self) -> bool {
        self.ringer_muted.load(Ordering::SeqCst)
    }

    pub(crate) fn record_message(&self, from: &str, body: &str) {
        if let Ok(mut m) = self.messages.lock() {
            m.push(ReceivedMessage {
                at: SystemTime::now(),
                from: from.to_owned(),
                body: body.to_owned(),
            });
        }
    }
}

/// Fault knobs, read by the media tasks on every packet and by the SIP side per request.
#[derive(Debug, Default)]
pub struct Faults {
    /// Percentage (0..=100) of outgoing RTP packets dropped.
    pub loss_percent: AtomicU16,
    /// Percentage (0..=100) of outgoing RTP packets held back and sent after the next one.
    pub reorder_percent: AtomicU16,
    /// When set, no RTP or RTCP is sent to the bridge (the call stays up).
    pub media_stopped: AtomicBool,
    /// When non-zero, the next INVITE to `c300x` gets this final status instead of 200.
    pub reject_next_invite: AtomicU16,
    /// The unit ignores a 183 with SDP (no early media; the ring keeps ringing), as a unit
    /// that does not do early media would.
    pub refuse_early_media: AtomicBool,
    /// The unit ignores the ringer frames (`*#8**#33*<0|1>##`, `*#8**33##`): the MESSAGE still
    /// gets 200, but nothing changes and no state MESSAGE comes back (unverified on hardware,
    /// c300x-protocol.md §8).
    pub ringer_no_reply: AtomicBool,
}

impl Faults {
    pub fn loss_percent(&self) -> u16 {
        self.loss_percent.load(Ordering::Relaxed).min(100)
    }

    pub fn reorder_percent(&self) -> u16 {
        self.reorder_percent.load(Ordering::Relaxed).min(100)
    }

    pub fn media_stopped(&self) -> bool {
        self.media_stopped.load(Ordering::Relaxed)
    }

    pub fn refuse_early_media(&self) -> bool {
        self.refuse_early_media.load(Ordering::Relaxed)
    }

    pub fn ringer_no_reply(&self) -> bool {
        self.ringer_no_reply.load(Ordering::Relaxed)
    }

    /// Takes the one-shot rejection code, if any.
    pub(crate) fn take_reject_code(&self) -> Option<u16> {
        match self.reject_next_invite.swap(0, Ordering::SeqCst) {
            0 => None,
            code => Some(code),
        }
    }
}
