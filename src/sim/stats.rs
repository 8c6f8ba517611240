//! Counters and fault knobs shared by the simulator's SIP side and its media tasks.
//! Tests read `SimStats` for assertions and flip `Faults` to misbehave on purpose.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::time::SystemTime;

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

    /// Takes the one-shot rejection code, if any.
    pub(crate) fn take_reject_code(&self) -> Option<u16> {
        match self.reject_next_invite.swap(0, Ordering::SeqCst) {
            0 => None,
            code => Some(code),
        }
    }
}
