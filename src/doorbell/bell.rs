//! `Doorbell`: a ring's way through the bridge (issue 16). It follows the SIP rings, puts each
//! on its panel (`rules::attribute`), hands it to that panel's hub (preview or snapshot call,
//! with the recorder's feed as the hub's tap), tells the recorder how it ended
//! (`rules::outcome`) and announces everything as `DoorbellEvent`s for MQTT, the API and the
//! page. Answer / hang up / reject act on a panel's pending ring. One supervised task; no I/O of
//! its own besides what it asks of the hub, the SIP agent and the recorder.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::rules::{self, MISSED_AFTER};
use super::{RecorderEvent, RingId, RingOutcome, RingRecorder, RingStart};
use crate::config::{Config, Panel};
use crate::intercom::Intercom;
use crate::intercom::sip::{IncomingRing, RingEnded, RingEvent, SipError};
use crate::media::hub::{HubError, HubStatus, RingRequest, StreamHub};
use crate::proto::aac::AudioSpecificConfig;

/// Rings remembered for the recorder's late news (picture, clip) about them.
const RECENT: usize = 64;
/// How long an answered ring may take to show up as the hub's call (the ACK after our 200).
const ANSWER_SHOWS_UP: Duration = Duration::from_secs(15);

/// How the doorbell behaves; `from_config` reads the options.
#[derive(Debug, Clone, PartialEq)]
pub struct DoorbellSettings {
    /// `ring_preview`: 183 + early media for every ring.
    pub preview: bool,
    /// `ring_snapshot_call`: without a preview, a short view call for the picture.
    pub snapshot_call: bool,
    /// `ring_reject_code`: what a rejected ring gets.
    pub reject_code: u16,
    /// A plain CANCEL earlier than this is an answer elsewhere ([`rules::MISSED_AFTER`]).
    pub missed_after: Duration,
    /// The hubs' AAC config (for a clip's audio track before any call told it).
    pub audio: Option<AudioSpecificConfig>,
}

impl DoorbellSettings {
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            preview: cfg.ring_preview,
            snapshot_call: cfg.ring_snapshot_call,
            reject_code: cfg.ring_reject_code,
            missed_after: MISSED_AFTER,
            audio: cfg
                .audio
                .then(|| AudioSpecificConfig::aac_lc(cfg.audio_sample_rate, 1)),
        }
    }
}

/// One ring as everyone else sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RingInfo {
    pub ring_id: RingId,
    pub panel: Panel,
    /// The INVITE's Call-ID.
    pub call_id: String,
    /// When the INVITE arrived.
    pub at: SystemTime,
    /// Whether the INVITE said which panel rang (false: put on the first panel).
    pub attributed: bool,
}

/// What the doorbell announces, in order per ring.
#[derive(Debug, Clone)]
pub enum DoorbellEvent {
    /// A ring is pending (Ringing ON).
    Ring(RingInfo),
    /// Its picture (`after`: from the recorder's start to the JPEG).
    Picture {
        ring: RingInfo,
        jpeg: Bytes,
        after: Duration,
    },
    /// Its clip is complete on disk.
    Clip { ring: RingInfo, path: PathBuf },
    /// It is no longer pending (Ringing OFF), and how it ended.
    RingEnded {
        ring: RingInfo,
        outcome: RingOutcome,
    },
    /// The call of a ring answered here is over.
    CallEnded(RingInfo),
}

#[derive(Debug, thiserror::Error)]
pub enum DoorbellError {
    #[error("no panel `{0}` (see `panels`)")]
    UnknownPanel(String),
    #[error("panel {0}: no ring is pending")]
    NotRinging(String),
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error(transparent)]
    Sip(#[from] SipError),
}

struct Pending {
    info: RingInfo,
    ring: IncomingRing,
    since: Instant,
}

#[derive(Default)]
struct State {
    /// By Call-ID.
    pending: HashMap<String, Pending>,
    recent: VecDeque<RingInfo>,
}

struct Inner {
    settings: DoorbellSettings,
    panels: Vec<Panel>,
    hubs: Vec<StreamHub>,
    intercom: Intercom,
    recorder: RingRecorder,
    state: Mutex<State>,
    events: broadcast::Sender<DoorbellEvent>,
}

/// The handle: cheap to clone.
#[derive(Clone)]
pub struct Doorbell {
    inner: Arc<Inner>,
}

impl Doorbell {
    /// The handle and its task (for the caller to run supervised). `hubs` in the order of
    /// `panels`. It listens from now on, so no ring between this and the task's start is lost.
    pub fn new(
        settings: DoorbellSettings,
        panels: Vec<Panel>,
        hubs: Vec<StreamHub>,
        intercom: Intercom,
        recorder: RingRecorder,
        shutdown: CancellationToken,
    ) -> (
        Self,
        impl std::future::Future<Output = Result<(), String>> + Send + 'static,
    ) {
        let (events, _) = broadcast::channel(64);
        let rings = intercom.sip().rings();
        let recorded = recorder.events();
        let bell = Self {
            inner: Arc::new(Inner {
                settings,
                panels,
                hubs,
                intercom,
                recorder,
                state: Mutex::new(State::default()),
                events,
            }),
        };
        let task = bell.clone().run(rings, recorded, shutdown);
        (bell, task)
    }

    pub fn events(&self) -> broadcast::Receiver<DoorbellEvent> {
        self.inner.events.subscribe()
    }

    pub fn recorder(&self) -> &RingRecorder {
        &self.inner.recorder
    }

    pub fn settings(&self) -> &DoorbellSettings {
        &self.inner.settings
    }

    pub fn panels(&self) -> &[Panel] {
        &self.inner.panels
    }

    /// The ring pending on `panel` (the newest if several).
    pub fn pending(&self, panel: &str) -> Option<RingInfo> {
        self.pending_ring(panel).map(|(info, _)| info)
    }

    /// Every pending ring, oldest first.
    pub fn pending_all(&self) -> Vec<RingInfo> {
        let Ok(state) = self.inner.state.lock() else {
            return Vec::new();
        };
        let mut all: Vec<RingInfo> = state.pending.values().map(|p| p.info.clone()).collect();
        all.sort_by_key(|i| i.at);
        all
    }

    fn pending_ring(&self, panel: &str) -> Option<(RingInfo, IncomingRing)> {
        let state = self.inner.state.lock().ok()?;
        state
            .pending
            .values()
            .filter(|p| p.info.panel.name == panel)
            .max_by_key(|p| p.info.at)
            .map(|p| (p.info.clone(), p.ring.clone()))
    }

    fn hub(&self, panel: &str) -> Result<&StreamHub, DoorbellError> {
        self.inner
            .hubs
            .iter()
            .find(|h| h.panel().name == panel)
            .ok_or_else(|| DoorbellError::UnknownPanel(panel.chars().take(64).collect()))
    }

    /// Answers `panel`'s pending ring: 200 with our SDP (on the preview's media when there is
    /// one); the other phones stop ringing. Returns once the unit has ACKed.
    pub async fn answer(&self, panel: &str) -> Result<RingInfo, DoorbellError> {
        let hub = self.hub(panel)?;
        let (info, ring) = self
            .pending_ring(panel)
            .ok_or_else(|| DoorbellError::NotRinging(panel.to_owned()))?;
        tracing::info!(panel, ring_id = %info.ring_id, "doorbell: answering");
        hub.answer_ring(ring).await?;
        Ok(info)
    }

    /// Ends `panel`'s call (BYE for an answered ring; a preview only stops its media).
    pub fn hang_up(&self, panel: &str) -> Result<(), DoorbellError> {
        self.hub(panel)?.hang_up();
        Ok(())
    }

    /// Refuses `panel`'s pending ring with `ring_reject_code` (the unit's reaction is
    /// unverified on hardware).
    pub async fn reject(&self, panel: &str) -> Result<RingInfo, DoorbellError> {
        self.hub(panel)?;
        let (info, _) = self
            .pending_ring(panel)
            .ok_or_else(|| DoorbellError::NotRinging(panel.to_owned()))?;
        let code = self.inner.settings.reject_code;
        tracing::info!(panel, ring_id = %info.ring_id, code, "doorbell: rejecting");
        self.inner
            .intercom
            .sip()
            .reject_ring_with(&info.call_id, code)
            .await?;
        Ok(info)
    }

    fn emit(&self, event: DoorbellEvent) {
        // Nobody listening is fine.
        let _ = self.inner.events.send(event);
    }

    async fn run(
        self,
        mut rings: broadcast::Receiver<RingEvent>,
        mut recorded: broadcast::Receiver<RecorderEvent>,
        shutdown: CancellationToken,
    ) -> Result<(), String> {
        crate::app::test_panic("doorbell");
        let mut watchers = JoinSet::new();
        let mut sip_gone = false;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                ev = rings.recv(), if !sip_gone => match ev {
                    Ok(RingEvent::Incoming(r)) => self.on_incoming(r),
                    Ok(RingEvent::Ended(e)) => self.on_ended(e, &mut watchers),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "doorbell: ring events lagged");
                    }
                    // The SIP agent is gone: its own watcher reports that.
                    Err(broadcast::error::RecvError::Closed) => sip_gone = true,
                },
                ev = recorded.recv() => match ev {
                    Ok(ev) => self.on_recorded(ev),
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err("the ring recorder stopped".to_owned());
                    }
                },
                Some(_) = watchers.join_next(), if !watchers.is_empty() => {}
            }
        }
        watchers.abort_all();
        // Open clips are closed and every file is written.
        self.inner.recorder.shutdown().await;
        Ok(())
    }

    fn on_incoming(&self, ring: IncomingRing) {
        let inner = &self.inner;
        let Some((index, attributed)) = rules::attribute(&ring.offer_sdp, &inner.panels) else {
            return;
        };
        let (panel, hub) = (&inner.panels[index], &inner.hubs[index]);
        let info = RingInfo {
            ring_id: RingId::at(ring.at),
            panel: panel.clone(),
            call_id: ring.call_id.clone(),
            at: ring.at,
            attributed,
        };
        tracing::info!(panel = %panel.name, ring_id = %info.ring_id, attributed, "doorbell: ring");
        let audio = hub
            .stream_info()
            .and_then(|i| i.audio)
            .or(inner.settings.audio);
        let feed = inner.recorder.ring_started(RingStart {
            ring_id: info.ring_id.clone(),
            panel: panel.name.clone(),
            attributed,
            audio,
        });
        hub.ring(RingRequest {
            ring: ring.clone(),
            preview: inner.settings.preview,
            snapshot_call: inner.settings.snapshot_call,
            tap: Some(Box::new(feed)),
        });
        if let Ok(mut state) = inner.state.lock() {
            state.pending.insert(
                ring.call_id.clone(),
                Pending {
                    info: info.clone(),
                    ring,
                    since: Instant::now(),
                },
            );
            state.recent.push_back(info.clone());
            while state.recent.len() > RECENT {
                state.recent.pop_front();
            }
        }
        self.emit(DoorbellEvent::Ring(info));
    }

    fn on_ended(&self, ended: RingEnded, watchers: &mut JoinSet<()>) {
        let inner = &self.inner;
        let pending = inner
            .state
            .lock()
            .ok()
            .and_then(|mut s| s.pending.remove(&ended.call_id));
        let Some(Pending { info, since, .. }) = pending else {
            return;
        };
        let outcome = rules::outcome(ended.reason, since.elapsed(), inner.settings.missed_after);
        tracing::info!(panel = %info.panel.name, ring_id = %info.ring_id, reason = ?ended.reason, ?outcome, "doorbell: ring ended");
        inner
            .recorder
            .ring_ended(&info.panel.name, &info.ring_id, outcome);
        if outcome == RingOutcome::AnsweredHere
            && let Ok(hub) = self.hub(&info.panel.name)
        {
            watchers.spawn(answered_call_ends(
                hub.clone(),
                info.clone(),
                inner.events.clone(),
            ));
        }
        self.emit(DoorbellEvent::RingEnded {
            ring: info,
            outcome,
        });
    }

    fn on_recorded(&self, ev: RecorderEvent) {
        let find = |panel: &str, ring_id: &RingId| {
            let state = self.inner.state.lock().ok()?;
            state
                .recent
                .iter()
                .rev()
                .find(|i| i.panel.name == panel && &i.ring_id == ring_id)
                .cloned()
        };
        match ev {
            RecorderEvent::Snapshot {
                ring_id,
                panel,
                jpeg,
                after,
            } => {
                if let Ok(hub) = self.hub(&panel) {
                    hub.ring_picture_taken();
                }
                if let Some(ring) = find(&panel, &ring_id) {
                    tracing::info!(%panel, %ring_id, ms = after.as_millis() as u64, bytes = jpeg.len(), "doorbell: ring picture");
                    self.emit(DoorbellEvent::Picture { ring, jpeg, after });
                }
            }
            RecorderEvent::Clip {
                ring_id,
                panel,
                path,
                ..
            } => {
                if let Some(ring) = find(&panel, &ring_id) {
                    self.emit(DoorbellEvent::Clip { ring, path });
                }
            }
            // The recorder logged it.
            RecorderEvent::Problem { .. } => {}
        }
    }
}

/// Announces the end of a ring answered here: once the hub's call with its Call-ID is gone.
async fn answered_call_ends(
    hub: StreamHub,
    info: RingInfo,
    events: broadcast::Sender<DoorbellEvent>,
) {
    let mut status = hub.status_watch();
    let ours = |s: &HubStatus| s.call_id.as_deref() == Some(info.call_id.as_str());
    let shown = tokio::time::timeout(ANSWER_SHOWS_UP, status.wait_for(ours))
        .await
        .is_ok_and(|r| r.is_ok());
    if shown && status.wait_for(|s| !ours(s)).await.is_err() {
        return; // the hub is gone (shutdown)
    }
    let _ = events.send(DoorbellEvent::CallEnded(info));
}
