//! `StreamHub`: one per panel, the rule "a call is open exactly while someone watches"
//! (streaming.md §1). The first `ViewerLease` places the view call; viewers wait for the first
//! keyframe; the last lease dropped starts the linger, then BYE. One call feeds every viewer
//! through its own bounded queue. Lifecycle: `machine.rs` (sans-IO) driven by `task.rs`; frames:
//! `fanout.rs` (+ `gop.rs`); `talk.rs`: one `Talker` per panel speaks into the live call.

mod calls;
mod fanout;
mod gop;
pub mod machine;
mod talk;
mod task;

pub use calls::{CallPlacer, HubCall};
pub use fanout::HubCounters;
pub use machine::CallSource;
pub use talk::{TalkError, TalkState, Talker, TalkerCounts};

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Panel};
use crate::intercom::Intercom;
use crate::intercom::sip::{EndReason, IncomingRing};
use crate::media::talk::TalkEncoder;
use crate::media::transcode::{AacFrame, AacSettings};
use crate::proto::aac::AudioSpecificConfig;
use crate::proto::h264::{AccessUnit, SpsInfo};
use crate::proto::sdp::SpeexVbr;

/// How one hub behaves; `from_config` fills it from the options.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// Time from the last viewer leaving to the BYE; a viewer coming back reuses the call.
    pub linger: Duration,
    /// How long viewers wait for the first keyframe before they get an error.
    pub start_timeout: Duration,
    /// Longest call; then BYE, and a new call only if viewers remain.
    pub max_call: Duration,
    /// No RTP for this long while viewers remain: BYE and a new INVITE.
    pub no_rtp_timeout: Duration,
    /// Frames one viewer may have queued; beyond, its frames are dropped (counted).
    pub viewer_queue: usize,
    /// Speex → AAC for the viewers; `None` = video only.
    pub audio: Option<AacSettings>,
    /// Wait after a failed start before the next INVITE (every try clicks the door relay).
    pub retry_backoff: Duration,
}

impl Default for HubSettings {
    fn default() -> Self {
        Self {
            linger: Duration::from_secs(15),
            start_timeout: Duration::from_secs(10),
            max_call: Duration::from_secs(300),
            no_rtp_timeout: Duration::from_secs(5),
            viewer_queue: 512,
            audio: Some(AacSettings::default()),
            retry_backoff: Duration::from_secs(5),
        }
    }
}

impl HubSettings {
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            linger: cfg.linger,
            start_timeout: cfg.start_timeout,
            max_call: cfg.max_call,
            audio: cfg.audio.then_some(AacSettings {
                sample_rate: cfg.audio_sample_rate,
                ..AacSettings::default()
            }),
            ..Self::default()
        }
    }
}

/// Who is watching, for the per-output counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ViewerKind {
    Rtsp,
    Hls,
    Mjpeg,
    Snapshot,
    Other,
}

/// One video access unit on the hub's continuous 90 kHz timeline.
#[derive(Debug, Clone)]
pub struct VideoFrame {
    pub pts: u64,
    pub au: AccessUnit,
    pub received: SystemTime,
}

/// One AAC frame on the hub's continuous timeline (in samples at the AAC rate).
#[derive(Debug, Clone)]
pub struct AudioFrame {
    pub pts: u64,
    pub frame: AacFrame,
}

/// What a viewer receives, in order. Frames are shared (`Arc`) between viewers.
#[derive(Debug, Clone)]
pub enum Frame {
    Video(Arc<VideoFrame>),
    Audio(Arc<AudioFrame>),
    /// A new call took over (re-INVITE): timestamps continue, but decoders should expect a jump.
    Discontinuity,
}

/// Parameters a viewer needs to describe the stream (SDP, fMP4 init, codec strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub sps: bytes::Bytes,
    pub pps: bytes::Bytes,
    pub video: SpsInfo,
    pub audio: Option<AudioSpecificConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubState {
    Idle,
    Starting,
    Live,
    Lingering,
    Failed,
}

impl HubState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Starting => "starting",
            Self::Live => "live",
            Self::Lingering => "lingering",
            Self::Failed => "failed",
        }
    }
}

/// Why a call of the hub ended: in the logs, `/api/status` and `/metrics`
/// (`c300x_calls_ended_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallEnd {
    /// The last viewer left and the linger passed.
    Linger,
    /// A user hung up (API, MQTT button).
    LocalHangUp,
    /// The intercom sent BYE.
    RemoteBye,
    /// The SIP connection dropped under the call.
    ConnectionLost,
    /// No RTP from the intercom for `no_rtp_timeout` while viewers watched.
    NoRtp,
    /// The call reached `max_call`.
    MaxCall,
    /// No video within `start_timeout` and nobody waits any more.
    StartTimeout,
    /// The privacy switch was turned off.
    Privacy,
    /// An answered doorbell ring replaced the call.
    RingAnswered,
    /// The previewed ring ended unanswered (CANCEL, answered elsewhere, timeout, rejected).
    RingEnded,
    /// The ring's preview brought no video (the unit ignored our 183).
    NoEarlyMedia,
    /// The short view call for a ring's picture got it (or ran out of time).
    RingSnapshot,
    /// Answering the previewed ring failed (it was gone, or no ACK came).
    AnswerFailed,
    /// The call's media tasks ended on their own.
    MediaDied,
    /// A call came up that nobody asked for any more.
    Unwanted,
    /// The bridge (or its SIP agent) is shutting down.
    Shutdown,
}

impl CallEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linger => "linger",
            Self::LocalHangUp => "local_hangup",
            Self::RemoteBye => "remote_bye",
            Self::ConnectionLost => "connection_lost",
            Self::NoRtp => "no_rtp",
            Self::MaxCall => "max_call",
            Self::StartTimeout => "start_timeout",
            Self::Privacy => "privacy",
            Self::RingAnswered => "ring_answered",
            Self::RingEnded => "ring_ended",
            Self::NoEarlyMedia => "no_early_media",
            Self::RingSnapshot => "ring_snapshot",
            Self::AnswerFailed => "answer_failed",
            Self::MediaDied => "media_died",
            Self::Unwanted => "unwanted",
            Self::Shutdown => "shutdown",
        }
    }

    /// How the SIP side saw a call end that we did not ask for.
    pub fn from_sip(reason: EndReason) -> Self {
        match reason {
            EndReason::RemoteBye => Self::RemoteBye,
            EndReason::Shutdown => Self::Shutdown,
            EndReason::LocalHangup => Self::LocalHangUp,
            EndReason::ConnectionLost | EndReason::Timeout => Self::ConnectionLost,
            EndReason::NotAnswered => Self::RingEnded,
        }
    }
}

impl std::fmt::Display for CallEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What MQTT, the API and metrics show about one hub. Published (`status_watch`) on transitions
/// only — phase, viewers, call, privacy, stream size, ended calls — never per frame; the frame
/// counters are in [`HubSnapshot`] (`StreamHub::status`).
#[derive(Debug, Clone, PartialEq)]
pub struct HubStatus {
    pub panel: String,
    pub devaddr: u8,
    pub state: HubState,
    pub streaming_allowed: bool,
    pub viewers: usize,
    pub viewers_by_kind: Vec<(ViewerKind, usize)>,
    pub call_id: Option<String>,
    pub call_since: Option<SystemTime>,
    /// Where the current call comes from (`view`, `answered_ring`, `ring_preview`), while
    /// placing or up.
    pub call_source: Option<&'static str>,
    pub calls_started: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub last_error: Option<String>,
    /// Calls ended so far, by reason ([`CallEnd::as_str`]).
    pub calls_ended: Vec<(&'static str, u64)>,
    /// The last call's end: why and when.
    pub last_end: Option<(CallEnd, SystemTime)>,
    /// Seconds of calls that have ended.
    pub call_seconds: f64,
}

/// The published status plus the live frame counters, read when asked (`StreamHub::status`).
/// Derefs to the [`HubStatus`].
#[derive(Debug, Clone, PartialEq)]
pub struct HubSnapshot {
    pub status: HubStatus,
    pub frames_in: u64,
    pub frames_out: u64,
    pub frames_dropped: u64,
    /// Measured over the last second of video.
    pub fps: Option<f32>,
    pub last_keyframe: Option<SystemTime>,
    /// SRTP/SRTCP packets from the intercom that failed authentication (all calls).
    pub srtp_failures: u64,
}

impl std::ops::Deref for HubSnapshot {
    type Target = HubStatus;
    fn deref(&self) -> &HubStatus {
        &self.status
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum HubError {
    #[error("panel {panel}: streaming is switched off (privacy switch)")]
    StreamingDisabled { panel: String },
    #[error("panel {panel}: no video from the intercom within {secs} s")]
    StartTimeout { panel: String, secs: u64 },
    #[error("panel {panel}: the call could not be started: {reason}")]
    CallFailed { panel: String, reason: String },
    #[error("panel {panel}: the bridge is shutting down")]
    Stopped { panel: String },
}

enum Command {
    Join {
        kind: ViewerKind,
        reply: oneshot::Sender<Result<Viewer, HubError>>,
    },
    Leave {
        id: u64,
    },
    AllowStreaming(bool),
    Keyframe,
    AnswerRing {
        ring: Box<IncomingRing>,
        reply: oneshot::Sender<Result<(), HubError>>,
    },
    HangUp,
    Ring(Box<RingRequest>),
    RingPicture,
    /// A talker (its lease already made with `id`) asks for the panel's talk.
    Talk {
        id: u64,
        reply: oneshot::Sender<Result<watch::Receiver<talk::Route>, TalkError>>,
    },
}

/// Where a ring's frames go besides the viewers (the ring recorder's feed): it is no viewer, so
/// it never starts or holds a call. `push` returns false once it wants no more.
pub trait FrameSink: Send + 'static {
    fn push(&mut self, frame: Frame) -> bool;
}

/// A doorbell ring for this panel's hub (see [`StreamHub::ring`]).
pub struct RingRequest {
    pub ring: IncomingRing,
    /// Preview it with early media (`ring_preview`).
    pub preview: bool,
    /// Without a preview, place a short view call for its picture (`ring_snapshot_call`).
    pub snapshot_call: bool,
    /// Gets the frames of the ring's media, from its first keyframe on (or from the cached GOP
    /// of a call already running).
    pub tap: Option<Box<dyn FrameSink>>,
}

/// A viewer: frames arrive on `frames`, beginning with the current GOP (keyframe first).
/// Dropping it (its lease) tells the hub; the last one gone starts the linger.
pub struct Viewer {
    pub frames: mpsc::Receiver<Frame>,
    pub info: StreamInfo,
    pub lease: ViewerLease,
}

/// Held by whoever counts as watching. Dropping it is the only way to stop counting.
pub struct ViewerLease {
    id: u64,
    hub: mpsc::UnboundedSender<Command>,
}

impl Drop for ViewerLease {
    fn drop(&mut self) {
        let _ = self.hub.send(Command::Leave { id: self.id });
    }
}

impl std::fmt::Debug for ViewerLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ViewerLease({})", self.id)
    }
}

static NEXT_VIEWER: AtomicU64 = AtomicU64::new(1);

/// The handle: cheap to clone, one hub task behind it.
#[derive(Clone)]
pub struct StreamHub {
    panel: Panel,
    cmd: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<HubStatus>,
    counters: Arc<HubCounters>,
    info: watch::Receiver<Option<StreamInfo>>,
    keyframe: watch::Receiver<Option<Arc<VideoFrame>>>,
    talk: watch::Receiver<TalkState>,
}

impl StreamHub {
    /// Starts the hub task for `panel` (detached: for tests and tools; the bridge supervises
    /// it through [`Self::new`]); it places calls through `intercom` only while leased.
    pub fn start(
        panel: Panel,
        intercom: Intercom,
        settings: HubSettings,
        shutdown: CancellationToken,
    ) -> Self {
        let (hub, task) = Self::new(panel, intercom, settings, shutdown);
        tokio::spawn(task);
        hub
    }

    /// The handle and the hub's task, for the caller to spawn (and watch) itself. `placer`
    /// is the intercom, or a fake in tests.
    pub fn new<P: CallPlacer>(
        panel: Panel,
        placer: P,
        settings: HubSettings,
        shutdown: CancellationToken,
    ) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        let (cmd, rx) = mpsc::unbounded_channel();
        let (status_tx, status) = watch::channel(HubStatus::initial(&panel));
        let (info_tx, info) = watch::channel(None);
        let (keyframe_tx, keyframe) = watch::channel(None);
        let (talk_tx, talk) = watch::channel(TalkState::Free);
        let counters = Arc::new(HubCounters::default());
        let task = task::HubTask::new(
            panel.clone(),
            placer,
            settings,
            task::Channels {
                rx,
                lease_tx: cmd.clone(),
                status_tx,
                info_tx,
                keyframe_tx,
                talk_tx,
            },
            counters.clone(),
        );
        let hub = Self {
            panel,
            cmd,
            status,
            counters,
            info,
            keyframe,
            talk,
        };
        (hub, task.run(shutdown))
    }

    /// One hub per configured panel, in the order of `cfg.panels`.
    pub fn for_panels(
        cfg: &Config,
        intercom: &Intercom,
        shutdown: &CancellationToken,
    ) -> Vec<Self> {
        cfg.panels
            .iter()
            .map(|p| {
                Self::start(
                    p.clone(),
                    intercom.clone(),
                    HubSettings::from_config(cfg),
                    shutdown.clone(),
                )
            })
            .collect()
    }

    pub fn panel(&self) -> &Panel {
        &self.panel
    }

    fn stopped(&self) -> HubError {
        HubError::Stopped {
            panel: self.panel.name.clone(),
        }
    }

    /// Becomes a viewer: the first one starts a call. Returns once a keyframe is there to start
    /// from, or an error after the start timeout.
    pub async fn join(&self, kind: ViewerKind) -> Result<Viewer, HubError> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Command::Join { kind, reply })
            .map_err(|_| self.stopped())?;
        rx.await.map_err(|_| self.stopped())?
    }

    /// The privacy switch: `false` refuses new viewers and ends any call.
    pub fn allow_streaming(&self, allowed: bool) {
        let _ = self.cmd.send(Command::AllowStreaming(allowed));
    }

    /// Asks the intercom for an IDR now (when there is a call).
    pub fn request_keyframe(&self) {
        let _ = self.cmd.send(Command::Keyframe);
    }

    /// Answers a doorbell ring; its media becomes this hub's source (no second call is placed,
    /// a running view call is replaced; a running preview of it goes on as the answered call,
    /// without a gap). The answered call is not ended by the linger.
    pub async fn answer_ring(&self, ring: IncomingRing) -> Result<(), HubError> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Command::AnswerRing {
                ring: Box::new(ring),
                reply,
            })
            .map_err(|_| self.stopped())?;
        rx.await.map_err(|_| self.stopped())?
    }

    /// Asks for this panel's talk: one talker at a time ([`TalkError::Busy`] for a second). The
    /// talker holds a viewer lease — on an idle panel this places a view call, as a viewer's
    /// join does — and is returned once the call is live (or with the viewer's error: privacy,
    /// start timeout, failed call). Its audio goes to the live call while it lives, following
    /// call restarts; dropping it ends the talk (the intercom gets silence again).
    pub async fn talk(&self) -> Result<Talker, TalkError> {
        // FFmpeg's encoder opens here, not in the hub task; the call's SDP may change its mode.
        let encoder = TalkEncoder::new(SpeexVbr::On)?;
        let id = NEXT_VIEWER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Made first: a caller that gives up while waiting drops it and frees the floor.
        let lease = ViewerLease {
            id,
            hub: self.cmd.clone(),
        };
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Command::Talk { id, reply })
            .map_err(|_| self.stopped())?;
        let route = rx.await.map_err(|_| self.stopped())??;
        Ok(Talker::new(self.panel.name.clone(), route, encoder, lease))
    }

    /// Who talks on this panel now.
    pub fn talk_state(&self) -> TalkState {
        self.talk.borrow().clone()
    }

    /// Changes when a talker comes, goes, or its call changes (for the status page, MQTT).
    pub fn talk_watch(&self) -> watch::Receiver<TalkState> {
        self.talk.clone()
    }

    /// Manual hang-up: ends the call; viewers that remain get a new one.
    pub fn hang_up(&self) {
        let _ = self.cmd.send(Command::HangUp);
    }

    /// A doorbell ring on this panel: its preview (or snapshot call) becomes the hub's source
    /// unless a call already runs; `tap` gets the frames. Answer with [`Self::answer_ring`].
    pub fn ring(&self, request: RingRequest) {
        let _ = self.cmd.send(Command::Ring(Box::new(request)));
    }

    /// The ring's picture is taken: a snapshot call that nobody watches may end.
    pub fn ring_picture_taken(&self) {
        let _ = self.cmd.send(Command::RingPicture);
    }

    /// The published status with the current frame counters.
    pub fn status(&self) -> HubSnapshot {
        self.counters.snapshot(self.status.borrow().clone())
    }

    /// Changes on transitions only (never per frame): for MQTT and other followers.
    pub fn status_watch(&self) -> watch::Receiver<HubStatus> {
        self.status.clone()
    }

    /// The newest keyframe seen (this call or an earlier one): for snapshots, which never start
    /// or hold a call.
    pub fn last_keyframe(&self) -> Option<Arc<VideoFrame>> {
        self.keyframe.borrow().clone()
    }

    /// The last known stream parameters (kept from earlier calls), without starting a call.
    pub fn stream_info(&self) -> Option<StreamInfo> {
        self.info.borrow().clone()
    }
}
