//! The hub task: owns the call, the viewers and the timers of one panel, and applies the
//! on-demand rules of streaming.md §1.2 — call on the first viewer, hold joiners until a
//! keyframe, linger then BYE, re-INVITE on silence or a remote BYE (once), cap the call length,
//! drop frames for a slow viewer only. Every decision happens here, in order, in one place.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::gop::{GopCache, Timeline};
use super::{
    Command, Frame, HubError, HubSettings, HubState, HubStatus, NEXT_VIEWER, StreamInfo,
    VideoFrame, Viewer, ViewerKind, ViewerLease,
};
use crate::config::Panel;
use crate::intercom::media::MediaPacket;
use crate::intercom::sip::{EndReason, IncomingRing};
use crate::intercom::{Intercom, IntercomError, MediaCall};
use crate::media::transcode::SpeexToAac;
use crate::proto::h264::Depacketizer;

/// Packets one call may have queued towards the hub task.
const CALL_QUEUE: usize = 2048;
/// A call that lasted this long earns back its "re-INVITE after a remote BYE" retry.
const STABLE_CALL: std::time::Duration = std::time::Duration::from_secs(10);
/// Shortest time between two loss-triggered keyframe requests.
pub(super) const PLI_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);
/// Frames kept for late joiners (a 2 s GOP at 10 fps with audio is about 50).
const GOP_FRAMES: usize = 1000;

pub(super) fn initial_status(panel: &Panel) -> HubStatus {
    HubStatus {
        panel: panel.name.clone(),
        devaddr: panel.devaddr,
        state: HubState::Idle,
        streaming_allowed: true,
        viewers: 0,
        viewers_by_kind: Vec::new(),
        call_id: None,
        call_since: None,
        calls_started: 0,
        frames_in: 0,
        frames_out: 0,
        frames_dropped: 0,
        last_keyframe: None,
        width: None,
        height: None,
        fps: None,
        last_error: None,
        calls_ended: Vec::new(),
        call_seconds: 0.0,
        srtp_failures: 0,
    }
}

pub(super) struct Slot {
    pub(super) kind: ViewerKind,
    pub(super) tx: mpsc::Sender<Frame>,
    /// After a drop, skip to the next keyframe so the decoder never sees a hole.
    pub(super) waiting_keyframe: bool,
    pub(super) dropped: u64,
}

pub(super) struct Pending {
    id: u64,
    kind: ViewerKind,
    reply: oneshot::Sender<Result<Viewer, HubError>>,
    since: Instant,
}

pub(super) struct Live {
    pub(super) call: MediaCall,
    pub(super) packets: mpsc::Receiver<MediaPacket>,
    pub(super) ended: watch::Receiver<Option<EndReason>>,
    pub(super) started: Instant,
    pub(super) started_wall: SystemTime,
    pub(super) first_packet: Option<Instant>,
    pub(super) last_packet: Instant,
    pub(super) keyframe_seen: bool,
    /// A doorbell call the user answered: the linger does not end it.
    pub(super) answered: bool,
    /// When we last asked for an IDR because the depacketizer lost the picture.
    pub(super) last_pli: Option<Instant>,
}

type Starting = JoinHandle<(
    Result<MediaCall, IntercomError>,
    mpsc::Receiver<MediaPacket>,
    bool,
)>;

pub(super) struct HubTask {
    pub(super) panel: Panel,
    pub(super) intercom: Intercom,
    pub(super) settings: HubSettings,
    pub(super) rx: mpsc::UnboundedReceiver<Command>,
    pub(super) lease_tx: mpsc::UnboundedSender<Command>,
    pub(super) status_tx: watch::Sender<HubStatus>,
    pub(super) info_tx: watch::Sender<Option<StreamInfo>>,
    pub(super) keyframe_tx: watch::Sender<Option<Arc<VideoFrame>>>,
    pub(super) status: HubStatus,
    pub(super) allowed: bool,
    pub(super) viewers: HashMap<u64, Slot>,
    pub(super) pending: Vec<Pending>,
    pub(super) starting: Option<Starting>,
    pub(super) live: Option<Live>,
    pub(super) linger_until: Option<Instant>,
    pub(super) retry_at: Option<Instant>,
    pub(super) remote_bye_retry: bool,
    pub(super) gop: GopCache,
    pub(super) timeline: Timeline,
    pub(super) depack: Depacketizer,
    pub(super) transcoder: Option<SpeexToAac>,
    pub(super) frames_since_tick: u32,
    pub(super) hangups: Vec<JoinHandle<()>>,
    /// SRTP failures of the calls that have ended.
    pub(super) srtp_failures_done: u64,
}

impl HubTask {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        panel: Panel,
        intercom: Intercom,
        settings: HubSettings,
        rx: mpsc::UnboundedReceiver<Command>,
        lease_tx: mpsc::UnboundedSender<Command>,
        status_tx: watch::Sender<HubStatus>,
        info_tx: watch::Sender<Option<StreamInfo>>,
        keyframe_tx: watch::Sender<Option<Arc<VideoFrame>>>,
    ) -> Self {
        let rate = settings.audio.map_or(16_000, |a| a.sample_rate);
        Self {
            status: initial_status(&panel),
            panel,
            intercom,
            settings,
            rx,
            lease_tx,
            status_tx,
            info_tx,
            keyframe_tx,
            allowed: true,
            viewers: HashMap::new(),
            pending: Vec::new(),
            starting: None,
            live: None,
            linger_until: None,
            retry_at: None,
            remote_bye_retry: true,
            gop: GopCache::new(GOP_FRAMES),
            timeline: Timeline::new(rate),
            depack: Depacketizer::new(),
            transcoder: None,
            frames_since_tick: 0,
            hangups: Vec::new(),
            srtp_failures_done: 0,
        }
    }

    pub(super) async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            let deadline = self.next_deadline();
            let event = {
                let (rx, starting, live) = (&mut self.rx, &mut self.starting, &mut self.live);
                tokio::select! {
                    _ = shutdown.cancelled() => Event::Shutdown,
                    cmd = rx.recv() => Event::Command(cmd),
                    done = finished(starting) => Event::Started(Box::new(done)),
                    ev = next_live(live) => ev,
                    _ = sleep_until(deadline) => Event::Timers,
                    _ = tick.tick() => Event::Tick,
                }
            };
            match event {
                Event::Shutdown | Event::Command(None) => break,
                Event::Command(Some(c)) => self.on_command(c),
                Event::Started(done) => {
                    self.starting = None;
                    match *done {
                        Ok((result, packets, answered)) => {
                            self.on_started(result, packets, answered)
                        }
                        Err(e) => self.on_start_failed(format!("call task failed: {e}")),
                    }
                }
                Event::Packet(p) => self.on_packet(p),
                Event::Ended(reason) => self.on_remote_end(reason),
                Event::Timers => self.on_timers(),
                Event::Tick => self.on_tick(),
            }
            self.ensure_call();
            self.publish();
        }
        self.close_everything(HubError::Stopped {
            panel: self.panel.name.clone(),
        });
        self.hang_up_live("shutdown");
        for h in self.hangups.drain(..) {
            let _ = h.await;
        }
        self.publish();
    }

    fn wanted(&self) -> bool {
        self.allowed && (!self.viewers.is_empty() || !self.pending.is_empty())
    }

    fn next_deadline(&self) -> Option<Instant> {
        let s = &self.settings;
        let mut d: Vec<Instant> = Vec::new();
        d.extend(self.pending.iter().map(|p| p.since + s.start_timeout));
        d.extend(self.linger_until);
        d.extend(self.retry_at);
        if let Some(l) = &self.live {
            d.push(l.started + s.max_call);
            if !self.viewers.is_empty() {
                d.push(l.last_packet + s.no_rtp_timeout);
            }
        }
        d.into_iter().min()
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Join { kind, reply } => self.on_join(kind, reply),
            Command::Leave { id } => self.on_leave(id),
            Command::AllowStreaming(on) => {
                self.allowed = on;
                self.status.streaming_allowed = on;
                if !on {
                    tracing::info!(panel = %self.panel.name, "streaming switched off: ending the call");
                    self.close_everything(HubError::StreamingDisabled {
                        panel: self.panel.name.clone(),
                    });
                    self.hang_up_live("privacy");
                }
            }
            Command::Keyframe => {
                if let Some(l) = &self.live {
                    l.call.request_keyframe();
                }
            }
            Command::AnswerRing { ring, reply } => self.on_answer_ring(*ring, reply),
            Command::HangUp => {
                self.hang_up_live("manual");
            }
        }
    }

    fn on_join(&mut self, kind: ViewerKind, reply: oneshot::Sender<Result<Viewer, HubError>>) {
        if !self.allowed {
            let _ = reply.send(Err(HubError::StreamingDisabled {
                panel: self.panel.name.clone(),
            }));
            return;
        }
        let id = NEXT_VIEWER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pending = Pending {
            id,
            kind,
            reply,
            since: Instant::now(),
        };
        self.linger_until = None;
        if self.live.as_ref().is_some_and(|l| l.keyframe_seen) && self.gop.has_keyframe() {
            if let Some(l) = &self.live {
                l.call.request_keyframe();
            }
            self.admit(pending);
        } else {
            self.pending.push(pending);
        }
    }

    /// Turns a waiting joiner into a viewer: its queue starts with the cached GOP.
    pub(super) fn admit(&mut self, p: Pending) {
        let Some(info) = self.info_tx.borrow().clone() else {
            self.pending.push(p);
            return;
        };
        let (tx, frames) = mpsc::channel(self.settings.viewer_queue.max(8));
        for f in self.gop.frames() {
            if tx.try_send(f.clone()).is_err() {
                break;
            }
        }
        let lease = ViewerLease {
            id: p.id,
            hub: self.lease_tx.clone(),
        };
        // If the joiner gave up meanwhile, dropping the viewer sends its Leave.
        if p.reply
            .send(Ok(Viewer {
                frames,
                info,
                lease,
            }))
            .is_ok()
        {
            self.viewers.insert(
                p.id,
                Slot {
                    kind: p.kind,
                    tx,
                    waiting_keyframe: false,
                    dropped: 0,
                },
            );
            tracing::debug!(panel = %self.panel.name, viewer = p.id, kind = ?p.kind, viewers = self.viewers.len(), "viewer joined");
        }
    }

    fn on_leave(&mut self, id: u64) {
        self.pending.retain(|p| p.id != id);
        if let Some(slot) = self.viewers.remove(&id) {
            tracing::debug!(panel = %self.panel.name, viewer = id, dropped = slot.dropped, viewers = self.viewers.len(), "viewer left");
        }
        if !self.wanted() {
            if self.live.is_some() && self.linger_until.is_none() {
                self.linger_until = Some(Instant::now() + self.settings.linger);
            }
            if let Some(s) = self.starting.take() {
                // Nobody waits any more: dropping the INVITE makes the SIP agent CANCEL it.
                s.abort();
                tracing::info!(panel = %self.panel.name, "last joiner left before the answer: call cancelled");
            }
        }
    }

    fn on_answer_ring(&mut self, ring: IncomingRing, reply: oneshot::Sender<Result<(), HubError>>) {
        // One call per panel: the answered ring replaces a view call.
        self.hang_up_live("ring_answered");
        if let Some(s) = self.starting.take() {
            s.abort();
        }
        let (tx, rx) = mpsc::channel(CALL_QUEUE);
        let intercom = self.intercom.clone();
        let panel = self.panel.name.clone();
        self.status.state = HubState::Starting;
        self.starting = Some(tokio::spawn(async move {
            let r = intercom.answer_ring(&ring, tx).await;
            let _ = reply.send(r.as_ref().map(|_| ()).map_err(|e| HubError::CallFailed {
                panel,
                reason: e.to_string(),
            }));
            (r, rx, true)
        }));
    }

    /// Places a call when someone wants one and none is running or being placed.
    fn ensure_call(&mut self) {
        if !self.wanted() || self.live.is_some() || self.starting.is_some() {
            return;
        }
        if self.retry_at.is_some_and(|t| t > Instant::now()) {
            return;
        }
        self.retry_at = None;
        let (tx, rx) = mpsc::channel(CALL_QUEUE);
        let intercom = self.intercom.clone();
        let devaddr = self.panel.devaddr;
        self.status.state = HubState::Starting;
        self.status.calls_started += 1;
        tracing::info!(panel = %self.panel.name, devaddr, "first viewer: calling the intercom");
        self.starting = Some(tokio::spawn(async move {
            (intercom.view(devaddr, tx).await, rx, false)
        }));
    }

    fn on_started(
        &mut self,
        result: Result<MediaCall, IntercomError>,
        packets: mpsc::Receiver<MediaPacket>,
        answered: bool,
    ) {
        let call = match result {
            Ok(c) => c,
            Err(e) => return self.on_start_failed(e.to_string()),
        };
        if !self.wanted() && !answered {
            self.hangups.push(tokio::spawn(call.hangup()));
            return;
        }
        if answered {
            self.status.calls_started += 1;
        }
        tracing::info!(panel = %self.panel.name, call_id = %call.call_id, answered, "call up");
        let now = Instant::now();
        self.status.call_id = Some(call.call_id.clone());
        self.status.call_since = Some(SystemTime::now());
        self.status.last_error = None;
        let ended = call.ended_watch();
        self.live = Some(Live {
            call,
            packets,
            ended,
            started: now,
            started_wall: SystemTime::now(),
            first_packet: None,
            last_packet: now,
            keyframe_seen: false,
            answered,
            last_pli: None,
        });
        self.timeline.new_call();
        self.depack.reset();
        self.gop.clear();
        self.transcoder = self.settings.audio.and_then(|a| match SpeexToAac::new(a) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(panel = %self.panel.name, "audio off for this call: {e}");
                None
            }
        });
        self.broadcast(&Frame::Discontinuity);
        self.status.state = if self.viewers.is_empty() && self.pending.is_empty() && !answered {
            HubState::Lingering
        } else {
            HubState::Starting
        };
        if self.status.state == HubState::Lingering {
            self.linger_until.get_or_insert(now + self.settings.linger);
        }
    }

    fn on_start_failed(&mut self, reason: String) {
        tracing::warn!(panel = %self.panel.name, "call failed: {reason}");
        self.status.last_error = Some(reason.clone());
        self.fail_pending(|panel| HubError::CallFailed {
            panel,
            reason: reason.clone(),
        });
        self.viewers.clear();
        self.status.state = HubState::Failed;
        self.retry_at = Some(Instant::now() + self.settings.retry_backoff);
    }

    fn fail_pending(&mut self, err: impl Fn(String) -> HubError) {
        for p in self.pending.drain(..) {
            let _ = p.reply.send(Err(err(self.panel.name.clone())));
        }
    }

    fn close_everything(&mut self, err: HubError) {
        self.fail_pending(|_| err.clone());
        self.viewers.clear();
        self.linger_until = None;
        if let Some(s) = self.starting.take() {
            s.abort();
        }
    }

    /// Counts an ended call for the metrics: its reason, its length, its SRTP failures.
    fn record_end(&mut self, l: &Live, reason: &'static str) {
        self.status.call_seconds += l.started.elapsed().as_secs_f64();
        self.srtp_failures_done += l.call.stats().srtp_failures();
        self.status.srtp_failures = self.srtp_failures_done;
        match self
            .status
            .calls_ended
            .iter_mut()
            .find(|(r, _)| *r == reason)
        {
            Some((_, n)) => *n += 1,
            None => self.status.calls_ended.push((reason, 1)),
        }
    }

    /// BYE (in the background; the hub never waits on the network) and back to idle. `why` is
    /// also the metrics label: linger, no_rtp, max_call, no_video, privacy, manual, ring_answered,
    /// shutdown.
    fn hang_up_live(&mut self, why: &'static str) {
        if let Some(l) = self.live.take() {
            self.record_end(&l, why);
            tracing::info!(panel = %self.panel.name, call_id = %l.call.call_id, "hanging up: {why}");
            self.hangups.retain(|h| !h.is_finished());
            self.hangups.push(tokio::spawn(l.call.hangup()));
            self.status.call_id = None;
            self.status.call_since = None;
        }
        self.linger_until = None;
        self.status.state = if self.status.state == HubState::Failed {
            HubState::Failed
        } else {
            HubState::Idle
        };
    }

    fn on_remote_end(&mut self, reason: EndReason) {
        let Some(l) = self.live.take() else {
            return;
        };
        tracing::info!(panel = %self.panel.name, call_id = %l.call.call_id, ?reason, "the intercom ended the call");
        self.record_end(
            &l,
            if reason == EndReason::RemoteBye {
                "remote_bye"
            } else {
                "connection_lost"
            },
        );
        self.status.call_id = None;
        self.status.call_since = None;
        let stable = l.started.elapsed() >= STABLE_CALL;
        drop(l); // media stops; the dialog is already over
        if stable {
            self.remote_bye_retry = true;
        }
        if self.wanted() {
            if self.remote_bye_retry {
                self.remote_bye_retry = false; // re-INVITE once (ensure_call does it)
            } else {
                self.on_start_failed(format!("the intercom ended the call twice ({reason:?})"));
            }
        } else {
            self.linger_until = None;
            self.status.state = HubState::Idle;
        }
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        let s = self.settings.clone();
        if self
            .pending
            .iter()
            .any(|p| p.since + s.start_timeout <= now)
        {
            let secs = s.start_timeout.as_secs();
            let panel = self.panel.name.clone();
            let (late, keep): (Vec<_>, Vec<_>) = self
                .pending
                .drain(..)
                .partition(|p| p.since + s.start_timeout <= now);
            self.pending = keep;
            for p in late {
                let _ = p.reply.send(Err(HubError::StartTimeout {
                    panel: panel.clone(),
                    secs,
                }));
            }
            self.status.last_error = Some(format!("no video within {secs} s"));
            if self.viewers.is_empty() && self.pending.is_empty() {
                if let Some(st) = self.starting.take() {
                    st.abort();
                }
                if self.live.as_ref().is_some_and(|l| !l.keyframe_seen) {
                    self.hang_up_live("no_video");
                    self.status.state = HubState::Failed;
                    self.retry_at = Some(now + s.retry_backoff);
                }
            }
        }
        if self.linger_until.is_some_and(|t| t <= now) {
            self.linger_until = None;
            if !self.wanted() && !self.live.as_ref().is_some_and(|l| l.answered) {
                self.hang_up_live("linger");
            }
        }
        if self.retry_at.is_some_and(|t| t <= now) {
            self.retry_at = None;
            if self.status.state == HubState::Failed {
                self.status.state = HubState::Idle;
            }
        }
        let Some(l) = &self.live else { return };
        if l.started + s.max_call <= now {
            self.hang_up_live("max_call");
            return; // ensure_call places a new one if viewers remain
        }
        if !self.viewers.is_empty() && l.last_packet + s.no_rtp_timeout <= now {
            self.hang_up_live("no_rtp");
        }
    }

    fn on_tick(&mut self) {
        if let Some(l) = &self.live {
            self.status.srtp_failures = self.srtp_failures_done + l.call.stats().srtp_failures();
        }
        let fps = self.frames_since_tick;
        self.frames_since_tick = 0;
        self.status.fps = (self.live.is_some() && fps > 0).then_some(fps as f32);
    }

    fn publish(&mut self) {
        self.status.viewers = self.viewers.len();
        let mut by_kind: Vec<(ViewerKind, usize)> = Vec::new();
        for s in self.viewers.values() {
            match by_kind.iter_mut().find(|(k, _)| *k == s.kind) {
                Some((_, n)) => *n += 1,
                None => by_kind.push((s.kind, 1)),
            }
        }
        self.status.viewers_by_kind = by_kind;
        if self.live.is_none() && self.starting.is_none() && self.status.state != HubState::Failed {
            self.status.state = HubState::Idle;
        } else if self.live.is_some() && self.linger_until.is_some() {
            self.status.state = HubState::Lingering;
        }
        let status = self.status.clone();
        self.status_tx.send_if_modified(|cur| {
            let changed = *cur != status;
            *cur = status;
            changed
        });
    }
}

type StartResult = Result<
    (
        Result<MediaCall, IntercomError>,
        mpsc::Receiver<MediaPacket>,
        bool,
    ),
    tokio::task::JoinError,
>;

enum Event {
    Shutdown,
    Command(Option<Command>),
    Started(Box<StartResult>),
    Packet(MediaPacket),
    Ended(EndReason),
    Timers,
    Tick,
}

/// The call being placed finishing (pending forever when there is none).
async fn finished(starting: &mut Option<Starting>) -> StartResult {
    match starting {
        Some(h) => h.await,
        None => std::future::pending().await,
    }
}

/// The next thing the live call has to say (pending forever when there is none).
async fn next_live(live: &mut Option<Live>) -> Event {
    let Some(l) = live else {
        return std::future::pending().await;
    };
    tokio::select! {
        p = l.packets.recv() => match p {
            Some(p) => Event::Packet(p),
            None => Event::Ended(EndReason::ConnectionLost),
        },
        r = l.ended.wait_for(Option::is_some) => {
            Event::Ended(r.ok().and_then(|v| *v).unwrap_or(EndReason::RemoteBye))
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
