//! The hub task: a thin driver around `HubMachine`. It owns the channels, the call being placed
//! or running (through the small `CallPlacer` / `HubCall` traits, so it runs without the
//! intercom in tests), the answer of a previewed ring in flight, the hang-ups in flight and the
//! `Fanout` (with the rings' taps); it turns commands, packets, call events and timers into
//! machine inputs and the machine's actions into calls. No decisions here.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::calls::{CallPlacer, HubCall};
use super::fanout::{Fanout, Joiner, Outcome};
use super::machine::Phase;
use super::machine::{Action, CallSource, HubMachine, Input, Refusal};
use super::talk::{self, TalkFloor, TalkState};
use super::{
    CallEnd, Command, HubCounters, HubError, HubSettings, HubStatus, NEXT_VIEWER, RingRequest,
    StreamInfo, VideoFrame,
};
use crate::config::Panel;
use crate::intercom::media::MediaPacket;
use crate::intercom::sip::{EndReason, IncomingRing};

/// Packets one call may have queued towards the hub task.
const CALL_QUEUE: usize = 2048;
/// At shutdown, the hang-ups in flight get this long (each BYE has its own 3 s budget).
const HANGUP_LIMIT: Duration = Duration::from_secs(4);
/// At most this many packets handled per wake-up before the hub looks at its other inputs.
const MAX_BATCH: usize = 256;

/// The hub's side of its channels.
pub(super) struct Channels {
    pub rx: mpsc::UnboundedReceiver<Command>,
    pub lease_tx: mpsc::UnboundedSender<Command>,
    pub status_tx: watch::Sender<HubStatus>,
    pub info_tx: watch::Sender<Option<StreamInfo>>,
    pub keyframe_tx: watch::Sender<Option<Arc<VideoFrame>>>,
    pub talk_tx: watch::Sender<TalkState>,
}

type AnswerReply = oneshot::Sender<Result<(), HubError>>;

/// The call being placed: its task, where its packets will arrive, who waits for an answer.
struct Placing<C> {
    source: CallSource,
    task: JoinHandle<Result<C, String>>,
    packets: mpsc::Receiver<MediaPacket>,
    reply: Option<AnswerReply>,
}

/// The answer of a live preview in flight (`Action::AnswerLive`).
struct Answering<A> {
    /// The live call it belongs to.
    call_id: String,
    task: JoinHandle<Result<A, String>>,
    reply: Option<AnswerReply>,
}

struct Live<C> {
    call: C,
    packets: mpsc::Receiver<MediaPacket>,
    ended: watch::Receiver<Option<EndReason>>,
}

pub(super) struct HubTask<P: CallPlacer> {
    panel: Panel,
    placer: P,
    machine: HubMachine,
    fanout: Fanout,
    /// Who talks (one talker per panel) and where its voice goes.
    talk: TalkFloor,
    rx: mpsc::UnboundedReceiver<Command>,
    status_tx: watch::Sender<HubStatus>,
    counters: Arc<HubCounters>,
    placing: Option<Placing<P::Call>>,
    live: Option<Live<P::Call>>,
    /// The ring to answer once the machine says so, and who waits for the outcome.
    ring: Option<(IncomingRing, AnswerReply)>,
    /// The ring to preview once the machine says so.
    preview: Option<IncomingRing>,
    answering: Option<Answering<<P::Call as HubCall>::Answered>>,
    hangups: JoinSet<()>,
    /// SRTP failures of the calls that have ended.
    srtp_done: u64,
    /// Wall-clock start of the live call and of the last end (the machine knows `Instant`s).
    call_since: Option<SystemTime>,
    last_end: Option<(CallEnd, SystemTime)>,
}

enum Event<C: HubCall> {
    Stop,
    Command(Command),
    Placed(Result<Result<C, String>, JoinError>),
    Answered(Result<Result<C::Answered, String>, JoinError>),
    Packet(MediaPacket),
    Ended(CallEnd),
    Timer,
    Tick,
    Reaped,
}

impl<P: CallPlacer> HubTask<P> {
    pub(super) fn new(
        panel: Panel,
        placer: P,
        settings: HubSettings,
        ch: Channels,
        counters: Arc<HubCounters>,
    ) -> Self {
        let fanout = Fanout::new(
            panel.name.clone(),
            settings.viewer_queue,
            settings.audio,
            ch.lease_tx,
            ch.info_tx,
            ch.keyframe_tx,
            counters.clone(),
        );
        Self {
            machine: HubMachine::new(panel.devaddr, &settings),
            talk: TalkFloor::new(panel.name.clone(), ch.talk_tx),
            panel,
            placer,
            fanout,
            rx: ch.rx,
            status_tx: ch.status_tx,
            counters,
            placing: None,
            live: None,
            ring: None,
            preview: None,
            answering: None,
            hangups: JoinSet::new(),
            srtp_done: 0,
            call_since: None,
            last_end: None,
        }
    }

    pub(super) async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            match self.next_event(&shutdown, &mut tick).await {
                Event::Stop => break,
                Event::Command(c) => self.on_command(c),
                Event::Placed(r) => self.on_placed(r),
                Event::Answered(r) => self.on_answered(r),
                Event::Packet(p) => {
                    self.on_packet(p);
                    self.drain_packets();
                }
                Event::Ended(reason) => self.input(Input::CallEnded { reason }),
                Event::Timer => self.input(Input::Timer),
                Event::Tick => self.on_tick(),
                Event::Reaped => {}
            }
            self.drop_idle_taps();
            self.sync_talk();
            self.publish();
        }
        self.input(Input::Shutdown);
        self.publish();
        // Every BYE in flight gets its chance; none outlives the hub.
        let drained = tokio::time::timeout(HANGUP_LIMIT, async {
            while self.hangups.join_next().await.is_some() {}
        });
        if drained.await.is_err() {
            tracing::info!(panel = %self.panel.name, "hang-ups still under way at shutdown: abandoned");
        }
        tracing::debug!(panel = %self.panel.name, "hub stopped");
    }

    async fn next_event(
        &mut self,
        shutdown: &CancellationToken,
        tick: &mut tokio::time::Interval,
    ) -> Event<P::Call> {
        let deadline = self.machine.poll_timeout();
        let (rx, placing, live, hangups, answering) = (
            &mut self.rx,
            &mut self.placing,
            &mut self.live,
            &mut self.hangups,
            &mut self.answering,
        );
        tokio::select! {
            _ = shutdown.cancelled() => Event::Stop,
            cmd = rx.recv() => cmd.map_or(Event::Stop, Event::Command),
            done = async { match placing { Some(p) => (&mut p.task).await, None => std::future::pending().await } } => Event::Placed(done),
            done = async { match answering { Some(a) => (&mut a.task).await, None => std::future::pending().await } } => Event::Answered(done),
            ev = next_live(live) => ev,
            _ = async { match deadline { Some(at) => tokio::time::sleep_until(at.into()).await, None => std::future::pending().await } } => Event::Timer,
            _ = tick.tick() => Event::Tick,
            Some(_) = hangups.join_next(), if !hangups.is_empty() => Event::Reaped,
        }
    }

    /// Feeds the machine and carries out what it asks.
    fn input(&mut self, input: Input) {
        self.machine.handle(now(), input);
        while let Some(action) = self.machine.poll_action() {
            self.act(action);
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Place(source) => self.place(source),
            Action::CancelPlacing => {
                if let Some(p) = self.placing.take() {
                    // Dropping the INVITE makes the SIP agent CANCEL it.
                    p.task.abort();
                    tracing::info!(panel = %self.panel.name, "nobody waits any more: call cancelled");
                    if let Some(reply) = p.reply {
                        let _ = reply.send(Err(self.failed("cancelled".into())));
                    }
                }
            }
            Action::HangUp(reason) => self.hang_up(reason),
            Action::RequestKeyframe => {
                if let Some(l) = &self.live {
                    l.call.request_keyframe();
                }
            }
            Action::Reject { viewer, refusal } => {
                let err = self.refusal(refusal);
                self.talk.reject(viewer, &err);
                self.fanout.reject(viewer, err);
            }
            Action::CloseViewers => {
                self.fanout.close_viewers();
                self.talk
                    .close(talk::close_reason(&self.machine, &self.panel.name));
            }
            Action::RefuseAnswer { .. } => {
                if let Some((_, reply)) = self.ring.take() {
                    let _ = reply.send(Err(self.refusal(Refusal::Stopped)));
                }
            }
            Action::AnswerLive { call_id } => self.answer_live(call_id),
        }
    }

    /// Answers the previewed ring on the live call; the frames keep flowing meanwhile.
    fn answer_live(&mut self, call_id: String) {
        let reply = self
            .ring
            .take()
            .filter(|(r, _)| r.call_id == call_id)
            .map(|(_, reply)| reply);
        let Some(live) = &self.live else { return };
        tracing::info!(panel = %self.panel.name, %call_id, "answering the previewed ring (same media)");
        let task = tokio::spawn(live.call.answer_preview());
        if let Some(old) = self.answering.replace(Answering {
            call_id: live.call.call_id().to_owned(),
            task,
            reply,
        }) {
            old.task.abort();
        }
    }

    fn on_answered(
        &mut self,
        done: Result<Result<<P::Call as HubCall>::Answered, String>, JoinError>,
    ) {
        let Some(answering) = self.answering.take() else {
            return;
        };
        let result = done.unwrap_or_else(|e| Err(format!("answer task failed: {e}")));
        let panel = self.panel.name.clone();
        let same = |l: &Live<P::Call>| l.call.call_id() == answering.call_id;
        let outcome = match result {
            Ok(answered) => match self.live.as_mut().filter(|l| same(l)) {
                Some(live) => {
                    live.call.promote(answered);
                    self.fanout.audio_live();
                    tracing::info!(%panel, call_id = %answering.call_id, "previewed ring answered");
                    Ok(())
                }
                // The preview ended meanwhile: the answered call (dropped here) gets its BYE.
                None => Err("the ring ended meanwhile".to_owned()),
            },
            Err(reason) => {
                tracing::warn!(%panel, call_id = %answering.call_id, "answering the previewed ring failed: {reason}");
                if self.live.as_ref().is_some_and(same) {
                    self.input(Input::CallEnded {
                        reason: CallEnd::AnswerFailed,
                    });
                }
                Err(reason)
            }
        };
        if let Some(reply) = answering.reply {
            let _ = reply.send(outcome.map_err(|e| self.failed(e)));
        }
    }

    /// A ring's tap gets nothing while the hub idles: it ends (the recorder closes the ring).
    fn drop_idle_taps(&mut self) {
        if self.fanout.has_taps() && matches!(self.machine.phase(), Phase::Idle | Phase::Stopped) {
            self.fanout.clear_taps();
        }
    }

    fn place(&mut self, source: CallSource) {
        let (tx, packets) = mpsc::channel(CALL_QUEUE);
        let placer = self.placer.clone();
        let (task, reply) = match source.clone() {
            CallSource::View { devaddr } => {
                tracing::info!(panel = %self.panel.name, devaddr, "calling the intercom");
                let task = tokio::spawn(async move { placer.view(devaddr, tx).await });
                (task, None)
            }
            CallSource::AnsweredRing { call_id } => {
                let Some((ring, reply)) = self.ring.take().filter(|(r, _)| r.call_id == call_id)
                else {
                    return self.input(Input::CallFailed {
                        reason: format!("ring {call_id} is gone"),
                    });
                };
                tracing::info!(panel = %self.panel.name, %call_id, "answering the ring");
                let task = tokio::spawn(async move { placer.answer(ring, tx).await });
                (task, Some(reply))
            }
            CallSource::RingPreview { call_id, .. } => {
                let Some(ring) = self.preview.take().filter(|r| r.call_id == call_id) else {
                    return self.input(Input::CallFailed {
                        reason: format!("ring {call_id} is gone"),
                    });
                };
                tracing::info!(panel = %self.panel.name, %call_id, "previewing the ring (early media)");
                let task = tokio::spawn(async move { placer.preview(ring, tx).await });
                (task, None)
            }
        };
        if let Some(old) = self.placing.replace(Placing {
            source,
            task,
            packets,
            reply,
        }) {
            old.task.abort();
        }
    }

    fn on_placed(&mut self, done: Result<Result<P::Call, String>, JoinError>) {
        let Some(placing) = self.placing.take() else {
            return;
        };
        let result = done.unwrap_or_else(|e| Err(format!("call task failed: {e}")));
        if let Some(reply) = placing.reply {
            let _ = reply.send(
                result
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| self.failed(e.clone())),
            );
        }
        match result {
            Ok(call) => {
                let call_id = call.call_id().to_owned();
                tracing::info!(panel = %self.panel.name, %call_id, source = placing.source.as_str(), "call up");
                let silent = matches!(placing.source, CallSource::RingPreview { .. });
                self.fanout.start_call(silent);
                self.call_since = Some(SystemTime::now());
                self.live = Some(Live {
                    ended: call.ended(),
                    call,
                    packets: placing.packets,
                });
                self.input(Input::CallUp { call_id });
            }
            Err(reason) => {
                tracing::warn!(panel = %self.panel.name, "call failed: {reason}");
                self.input(Input::CallFailed { reason });
            }
        }
    }

    /// Ends the live call in the background (the hub never waits on the network).
    fn hang_up(&mut self, reason: CallEnd) {
        self.fanout.end_call();
        self.call_since = None;
        self.last_end = Some((reason, SystemTime::now()));
        let Some(l) = self.live.take() else { return };
        self.srtp_done += l.call.srtp_failures();
        self.counters
            .srtp_failures
            .store(self.srtp_done, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(panel = %self.panel.name, call_id = %l.call.call_id(), %reason, "call ended");
        drop(l.packets);
        self.hangups.spawn(l.call.hang_up());
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Join { kind, reply } => {
                let id = NEXT_VIEWER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.fanout.join(Joiner { id, kind, reply });
                self.input(Input::Join { viewer: id });
                // Unless refused: with a keyframe in the GOP cache it starts at once.
                let out = self.fanout.admit_waiting();
                self.outcome(out);
            }
            Command::Leave { id } => {
                self.fanout.leave(id);
                self.talk.leave(id);
                self.input(Input::Leave { viewer: id });
            }
            Command::Talk { id, reply } => {
                // A talker holds a viewer lease: on an idle panel it places the view call.
                if self.talk.request(id, reply) {
                    self.input(Input::Join { viewer: id });
                }
            }
            Command::AllowStreaming(on) => {
                if !on {
                    tracing::info!(panel = %self.panel.name, "streaming switched off");
                }
                self.input(Input::AllowStreaming(on));
            }
            Command::Keyframe => {
                if let Some(l) = &self.live {
                    l.call.request_keyframe();
                }
            }
            Command::AnswerRing { ring, reply } => {
                let call_id = ring.call_id.clone();
                if let Some((_, old)) = self.ring.replace((*ring, reply)) {
                    let _ = old.send(Err(self.failed("replaced by a newer answer".into())));
                }
                self.input(Input::AnswerRing { call_id });
            }
            Command::HangUp => self.input(Input::HangUp),
            Command::Ring(req) => self.on_ring(*req),
            Command::RingPicture => self.input(Input::RingPicture),
        }
    }

    fn on_ring(&mut self, req: RingRequest) {
        let call_id = req.ring.call_id.clone();
        if let Some(tap) = req.tap {
            self.fanout.add_tap(tap);
        }
        if req.preview {
            self.preview = Some(req.ring);
        }
        self.input(Input::Ring {
            call_id,
            preview: req.preview,
            snapshot_call: req.snapshot_call,
        });
    }

    fn on_packet(&mut self, p: MediaPacket) {
        let now = now();
        self.machine.handle(now, Input::Packet);
        let out = self.fanout.push(now, p);
        self.outcome(out);
    }

    /// The packets that came with the first one (the media tasks forward a 20 ms batch at
    /// once): one wake-up of the hub per batch, not per packet.
    fn drain_packets(&mut self) {
        for _ in 0..MAX_BATCH {
            let Some(p) = self.live.as_mut().and_then(|l| l.packets.try_recv().ok()) else {
                return;
            };
            self.on_packet(p);
        }
    }

    /// Admits a waiting talker once the call is live; points the talk at the live call.
    fn sync_talk(&mut self) {
        let live = self.live.as_ref().map(|l| &l.call);
        if let Some(talker) = self.talk.sync(&self.machine, live) {
            tracing::info!(panel = %self.panel.name, "talking");
            self.input(Input::Admitted { viewer: talker });
        }
    }

    /// Tells the machine what the fan-out saw.
    fn outcome(&mut self, out: Outcome) {
        if out.want_keyframe
            && let Some(l) = &self.live
        {
            l.call.request_keyframe();
        }
        if out.first_keyframe {
            tracing::info!(panel = %self.panel.name, "first keyframe");
            self.input(Input::Video);
        }
        for viewer in out.admitted {
            self.input(Input::Admitted { viewer });
        }
        for viewer in out.gone {
            self.input(Input::Leave { viewer });
        }
    }

    fn on_tick(&mut self) {
        let frames = self.fanout.take_video_frames();
        self.counters
            .set_fps(self.live.as_ref().map(|_| frames).filter(|f| *f > 0));
        let live = self.live.as_ref().map_or(0, |l| l.call.srtp_failures());
        self.counters
            .srtp_failures
            .store(self.srtp_done + live, std::sync::atomic::Ordering::Relaxed);
    }

    /// Publishes the status when a transition happened (never for a plain packet).
    fn publish(&mut self) {
        let machine = self.machine.take_changed();
        let fanout = self.fanout.take_changed();
        if !(machine || fanout) {
            return;
        }
        let m = &self.machine;
        let status = HubStatus {
            panel: self.panel.name.clone(),
            devaddr: self.panel.devaddr,
            state: m.state(),
            streaming_allowed: m.allowed(),
            viewers: self.fanout.viewers(),
            viewers_by_kind: self.fanout.viewers_by_kind(),
            call_id: m.call().map(|c| c.call_id.clone()),
            call_since: m.call().and(self.call_since),
            call_source: m.source().map(CallSource::as_str),
            calls_started: m.calls_started(),
            width: self.fanout.size().map(|s| s.0),
            height: self.fanout.size().map(|s| s.1),
            last_error: m.last_error().map(str::to_owned),
            calls_ended: m
                .calls_ended()
                .iter()
                .map(|(r, n)| (r.as_str(), *n))
                .collect(),
            last_end: self.last_end,
            call_seconds: m.call_seconds(),
        };
        self.status_tx.send_if_modified(|cur| {
            let changed = *cur != status;
            *cur = status;
            changed
        });
    }

    fn refusal(&self, r: Refusal) -> HubError {
        let panel = self.panel.name.clone();
        match r {
            Refusal::StreamingDisabled => HubError::StreamingDisabled { panel },
            Refusal::StartTimeout => HubError::StartTimeout {
                panel,
                secs: self.machine.start_timeout().as_secs(),
            },
            Refusal::CallFailed(reason) => HubError::CallFailed { panel, reason },
            Refusal::Stopped => HubError::Stopped { panel },
        }
    }

    fn failed(&self, reason: String) -> HubError {
        HubError::CallFailed {
            panel: self.panel.name.clone(),
            reason,
        }
    }
}

/// Tokio's clock (paused in tests), as the `Instant` the machine and the fan-out take.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The next thing the live call has to say (pending forever when there is none).
async fn next_live<C: HubCall>(live: &mut Option<Live<C>>) -> Event<C> {
    let Some(l) = live else {
        return std::future::pending().await;
    };
    tokio::select! {
        p = l.packets.recv() => match p {
            Some(p) => Event::Packet(p),
            // Both media tasks are gone while the dialog may still be up.
            None => Event::Ended(CallEnd::MediaDied),
        },
        r = l.ended.wait_for(Option::is_some) => {
            let reason = r.ok().and_then(|v| *v).unwrap_or(EndReason::ConnectionLost);
            Event::Ended(CallEnd::from_sip(reason))
        }
    }
}

#[cfg(test)]
mod tests;
