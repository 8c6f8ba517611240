//! The bridge's MQTT behaviour once connected: (re)publishes discovery and every state after each
//! connect and on HA's birth, turns intercom and hub news into states, and acts on commands —
//! only from our command topics, never a retained one (no unlock replay). Commands that take
//! time run in small tasks that report states back through one channel. The doorbell (events,
//! ring picture, Ringing, ring buttons, indoor ringer) is in `bridge/doorbell.rs`.

mod doorbell;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{AsyncClient, Publish, QoS};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Conn;
use super::discovery::{self, EntityConfig, Site, on_off};
use super::topics::{Button, CommandTarget, Topics};
use crate::config::Config;
use crate::doorbell::Doorbell;
use crate::homeassistant::CameraWatch;
use crate::intercom::Intercom;
use crate::intercom::sip::RegistrationState;
use crate::media::hub::{HubStatus, StreamHub};
use crate::proto::openwebnet;

/// A strike shows UNLOCKED for this long after the release, then LOCKED.
const LOCKED_AFTER: Duration = Duration::from_secs(2);
/// A failed unlock shows JAMMED for this long, then LOCKED (nothing is known to be open).
const JAMMED_FOR: Duration = Duration::from_secs(10);
/// The staircase light's press → release time.
const STAIRCASE_PULSE: Duration = Duration::from_secs(1);

/// News from command and hub tasks.
enum Update {
    State { topic: String, payload: String },
    LockIdle(usize),
    Hub(usize, Box<HubStatus>),
}

/// The state topics we publish retained (for `remove_device`).
pub(super) fn retained_state_topics(cfg: &Config, topics: &Topics) -> Vec<String> {
    let mut out = vec![
        topics.sip_registered(),
        topics.ringing(),
        topics.last_ring(),
        topics.voicemail_state(),
        topics.ringer_state(),
    ];
    for l in &cfg.locks {
        out.push(topics.lock_state(&l.name));
    }
    for p in &cfg.panels {
        out.extend([
            topics.call(&p.name),
            topics.viewers(&p.name),
            topics.streaming_state(&p.name),
            topics.rtsp_url(&p.name),
            topics.snapshot_url(&p.name),
            topics.camera_setup(&p.name),
            topics.camera_setup_attributes(&p.name),
            topics.panel_ringing(&p.name),
            topics.ring_image(&p.name),
        ]);
    }
    out
}

pub(super) struct Bridge {
    client: AsyncClient,
    topics: Topics,
    cfg: Config,
    site: Site,
    intercom: Intercom,
    hubs: Vec<StreamHub>,
    camera: CameraWatch,
    doorbell: Option<Doorbell>,
    configs: Vec<EntityConfig>,
    commands: HashMap<String, CommandTarget>,
    /// The current retained states, topic → payload: re-published after every (re)connect.
    states: BTreeMap<String, String>,
    /// The last ring's JPEG per panel (retained raw bytes), re-published likewise.
    images: BTreeMap<String, Bytes>,
    /// Clips of recent rings, for the events that follow them.
    clips: doorbell::Clips,
    connected: bool,
    locks_busy: HashSet<usize>,
    updates_tx: mpsc::Sender<Update>,
    updates_rx: mpsc::Receiver<Update>,
    /// Every task the bridge starts (followers, unlock pulses, commands): they end with `run`
    /// (aborted at the latest when it returns), none outlives the MQTT component.
    tasks: JoinSet<()>,
}

impl Bridge {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        client: AsyncClient,
        topics: Topics,
        cfg: Config,
        site: Site,
        intercom: Intercom,
        hubs: Vec<StreamHub>,
        camera: CameraWatch,
        doorbell: Option<Doorbell>,
    ) -> Self {
        let configs = discovery::entity_configs(&cfg, &topics, &site);
        let commands = topics.commands(&cfg).into_iter().collect();
        let mut states = BTreeMap::new();
        for l in &cfg.locks {
            states.insert(topics.lock_state(&l.name), "LOCKED".to_owned());
        }
        for p in &cfg.panels {
            states.insert(
                topics.rtsp_url(&p.name),
                discovery::rtsp_url(&cfg, &site, p),
            );
            states.insert(
                topics.snapshot_url(&p.name),
                discovery::snapshot_url(&cfg, &site, p),
            );
        }
        for (topic, payload) in discovery::camera_setup_states(&topics, &camera.get()) {
            states.insert(topic, payload);
        }
        for p in &cfg.panels {
            let ringing = doorbell
                .as_ref()
                .is_some_and(|d| d.pending(&p.name).is_some());
            states.insert(topics.panel_ringing(&p.name), on_off(ringing).to_owned());
        }
        // Unknown until the unit answers the status query (it may never: unverified over SIP).
        states.insert(
            topics.ringer_state(),
            discovery::ringer_state(None).to_owned(),
        );
        if let Some(at) = intercom.events().last_ring() {
            states.insert(topics.last_ring(), discovery::rfc3339(at));
        }
        let (updates_tx, updates_rx) = mpsc::channel(256);
        Self {
            client,
            topics,
            cfg,
            site,
            intercom,
            hubs,
            camera,
            doorbell,
            configs,
            commands,
            states,
            images: BTreeMap::new(),
            clips: doorbell::Clips::default(),
            connected: false,
            locks_busy: HashSet::new(),
            updates_tx,
            updates_rx,
            tasks: JoinSet::new(),
        }
    }

    pub(super) async fn run(mut self, mut conn: mpsc::Receiver<Conn>, shutdown: CancellationToken) {
        let mut registration = self.intercom.sip().registration();
        let mut bell = self.doorbell.as_ref().map(Doorbell::events);
        let mut messages = self.intercom.sip().messages();
        let reg = registration.borrow_and_update().clone();
        self.on_registration(&reg).await;
        self.tasks.spawn(follow_camera(
            self.camera.clone(),
            self.topics.clone(),
            self.updates_tx.clone(),
            shutdown.clone(),
        ));
        for (i, hub) in self.hubs.iter().enumerate() {
            self.tasks.spawn(follow_hub(
                i,
                hub.clone(),
                self.updates_tx.clone(),
                shutdown.clone(),
            ));
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                c = conn.recv() => match c {
                    Some(Conn::Connected) => self.on_connected().await,
                    Some(Conn::Lost(why)) => {
                        tracing::debug!(%why, "MQTT: offline; states are kept for the reconnect");
                        self.connected = false;
                    }
                    Some(Conn::Message(p)) => self.on_message(p).await,
                    None => break,
                },
                changed = registration.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let reg = registration.borrow_and_update().clone();
                    self.on_registration(&reg).await;
                }
                ev = doorbell::next(&mut bell) => match ev {
                    Ok(ev) => self.on_doorbell(ev).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => tracing::warn!(missed = n, "MQTT: doorbell events lagged"),
                    Err(broadcast::error::RecvError::Closed) => bell = None,
                },
                msg = messages.recv() => match msg {
                    Ok(m) => {
                        if let Ok(status) = openwebnet::AswmStatus::parse(&m.body) {
                            let topic = self.topics.voicemail_state();
                            self.set_state(topic, on_off(status.enabled)).await;
                        }
                        if let openwebnet::Frame::RingerStatus { muted } = openwebnet::Frame::parse(&m.body) {
                            let topic = self.topics.ringer_state();
                            self.set_state(topic, discovery::ringer_state(Some(muted))).await;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                Some(u) = self.updates_rx.recv() => self.on_update(u).await,
                Some(done) = self.tasks.join_next() => {
                    if let Err(e) = done
                        && e.is_panic()
                    {
                        tracing::warn!("MQTT: a command task panicked: {e}");
                    }
                }
            }
        }
        // Unlock pulses and commands under way stop with the component.
        self.tasks.shutdown().await;
    }

    async fn publish(&self, topic: &str, retain: bool, payload: &str) {
        self.publish_bytes(topic, retain, payload.as_bytes().to_vec())
            .await;
    }

    async fn publish_bytes(&self, topic: &str, retain: bool, payload: Vec<u8>) {
        if !self.connected {
            return;
        }
        if let Err(e) = self
            .client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
        {
            tracing::warn!(topic, "MQTT publish failed: {e}");
        }
    }

    /// Records a retained state and publishes it when it changed.
    async fn set_state(&mut self, topic: String, payload: &str) {
        if self.states.get(&topic).is_some_and(|p| p == payload) {
            return;
        }
        self.publish(&topic, true, payload).await;
        self.states.insert(topic, payload.to_owned());
    }

    async fn on_connected(&mut self) {
        self.connected = true;
        let mut subs: Vec<String> = self.commands.keys().cloned().collect();
        subs.push(self.topics.ha_status());
        for topic in subs {
            if let Err(e) = self.client.subscribe(topic.clone(), QoS::AtLeastOnce).await {
                tracing::warn!(%topic, "MQTT subscribe failed: {e}");
            }
        }
        self.publish_all().await;
    }

    /// Availability, every discovery config, every known state: after each connect and on HA's
    /// birth message (HA may have lost the retained ones, home-assistant.md §1.3).
    async fn publish_all(&self) {
        self.publish(&self.topics.availability(), true, "online")
            .await;
        // Entities of earlier versions that are gone, and their retained state.
        for topic in discovery::retired_config_topics(&self.topics) {
            self.publish(&topic, true, "").await;
        }
        self.publish(&self.topics.ringing(), true, "").await;
        for c in &self.configs {
            self.publish(&c.topic, true, &c.payload.to_string()).await;
        }
        for (topic, payload) in &self.states {
            self.publish(topic, true, payload).await;
        }
        for (topic, jpeg) in &self.images {
            self.publish_bytes(topic, true, jpeg.to_vec()).await;
        }
        tracing::debug!(
            configs = self.configs.len(),
            states = self.states.len(),
            "MQTT discovery and states published"
        );
    }

    async fn on_registration(&mut self, reg: &RegistrationState) {
        let registered = matches!(reg, RegistrationState::Registered { .. });
        let topic = self.topics.sip_registered();
        let was = self.states.get(&topic).map(String::as_str) == Some("ON");
        self.set_state(topic, on_off(registered)).await;
        if registered && !was {
            // The voicemail and ringer switches' states: the unit answers with a MESSAGE (see
            // `run`); nothing comes back from a unit that does not do it over SIP.
            let intercom = self.intercom.clone();
            self.tasks.spawn(async move {
                for query in [
                    openwebnet::ASWM_STATUS_REQUEST,
                    openwebnet::RINGER_STATUS_REQUEST,
                ] {
                    if let Err(e) = intercom.sip().message(query).await {
                        tracing::debug!("{query}: {e}");
                    }
                }
            });
        }
    }

    async fn on_update(&mut self, u: Update) {
        match u {
            Update::State { topic, payload } => self.set_state(topic, &payload).await,
            Update::LockIdle(i) => {
                self.locks_busy.remove(&i);
            }
            Update::Hub(i, status) => {
                let Some(panel) = self.cfg.panels.get(i).map(|p| p.name.clone()) else {
                    return;
                };
                let t = &self.topics;
                let (call, viewers, streaming) =
                    (t.call(&panel), t.viewers(&panel), t.streaming_state(&panel));
                self.set_state(call, on_off(status.call_id.is_some())).await;
                self.set_state(viewers, &status.viewers.to_string()).await;
                self.set_state(streaming, on_off(status.streaming_allowed))
                    .await;
            }
        }
    }

    async fn on_message(&mut self, p: Publish) {
        let payload = String::from_utf8_lossy(&p.payload).trim().to_owned();
        if p.topic == self.topics.ha_status() {
            if payload == "online" {
                tracing::info!("Home Assistant came online: re-publishing discovery and states");
                self.publish_all().await;
            }
            return;
        }
        let Some(target) = self.commands.get(&p.topic).copied() else {
            tracing::debug!(topic = %p.topic, "MQTT: message on a topic we do not handle");
            return;
        };
        if p.retain {
            // A retained command is history, not a request: never replay it (an unlock after a
            // restart would open the door to nobody). Clear it so it stops coming back.
            if !payload.is_empty() {
                tracing::warn!(topic = %p.topic, %payload, "MQTT: ignoring a retained command; clearing it");
                self.publish(&p.topic, true, "").await;
            }
            return;
        }
        if payload.is_empty() {
            return;
        }
        self.on_command(target, &p.topic, &payload).await;
    }

    async fn on_command(&mut self, target: CommandTarget, topic: &str, payload: &str) {
        let unknown = || tracing::warn!(topic, payload, "MQTT: unknown command payload; ignored");
        match target {
            CommandTarget::Lock(i) => match payload {
                "UNLOCK" | "OPEN" => self.unlock(i),
                "LOCK" => {
                    // A strike cannot be locked: re-publish what it is (LOCKED unless opening).
                    if let Some(l) = self.cfg.locks.get(i) {
                        let t = self.topics.lock_state(&l.name);
                        let now = self
                            .states
                            .get(&t)
                            .cloned()
                            .unwrap_or_else(|| "LOCKED".into());
                        self.publish(&t, true, &now).await;
                    }
                }
                _ => unknown(),
            },
            CommandTarget::Button(b) if payload == "PRESS" => self.press(b),
            CommandTarget::Button(_) => unknown(),
            CommandTarget::Streaming(i) => match (payload, self.hubs.get(i)) {
                ("ON" | "OFF", Some(hub)) => hub.allow_streaming(payload == "ON"),
                ("ON" | "OFF", None) => tracing::warn!(topic, "MQTT: no stream hub for this panel"),
                _ => unknown(),
            },
            CommandTarget::Voicemail => match payload {
                "ON" | "OFF" => self.voicemail(payload == "ON"),
                _ => unknown(),
            },
            CommandTarget::Doorbell(c) => self.on_doorbell_command(c, topic, payload),
        }
    }

    fn unlock(&mut self, i: usize) {
        let Some(lock) = self.cfg.locks.get(i).cloned() else {
            return;
        };
        if !self.locks_busy.insert(i) {
            tracing::info!(lock = %lock.name, "unlock already under way; command ignored");
            return;
        }
        let (intercom, tx) = (self.intercom.clone(), self.updates_tx.clone());
        let topic = self.topics.lock_state(&lock.name);
        self.tasks.spawn(async move {
            let state = |payload: &str| Update::State {
                topic: topic.clone(),
                payload: payload.to_owned(),
            };
            let _ = tx.send(state("UNLOCKING")).await;
            // `unlock` returns after the release (both MESSAGEs answered 2xx).
            match intercom.unlock(&lock).await {
                Ok(()) => {
                    tracing::info!(lock = %lock.name, "door unlocked");
                    let _ = tx.send(state("UNLOCKED")).await;
                    tokio::time::sleep(LOCKED_AFTER).await;
                }
                Err(e) => {
                    tracing::warn!(lock = %lock.name, "unlock failed: {e}");
                    let _ = tx.send(state("JAMMED")).await;
                    tokio::time::sleep(JAMMED_FOR).await;
                }
            }
            let _ = tx.send(state("LOCKED")).await;
            let _ = tx.send(Update::LockIdle(i)).await;
        });
    }

    fn press(&mut self, button: Button) {
        let (intercom, hubs) = (self.intercom.clone(), self.hubs.clone());
        match button {
            Button::StaircaseLight => {
                self.tasks.spawn(async move {
                    if let Err(e) = intercom.staircase_light(STAIRCASE_PULSE).await {
                        tracing::warn!("staircase light failed: {e}");
                    }
                });
            }
            Button::RestartCall => {
                // Hang up where a call runs; viewers still there get a fresh call from the hub.
                for hub in &hubs {
                    if hub.status().call_id.is_some() {
                        hub.hang_up();
                    }
                }
            }
        }
    }

    fn voicemail(&mut self, on: bool) {
        let (intercom, tx, topic) = (
            self.intercom.clone(),
            self.updates_tx.clone(),
            self.topics.voicemail_state(),
        );
        self.tasks.spawn(async move {
            match intercom.voicemail(on).await {
                Ok(()) => {
                    // Optimistic, then confirmed by the unit's status reply when it sends one.
                    let _ = tx
                        .send(Update::State {
                            topic,
                            payload: on_off(on).into(),
                        })
                        .await;
                    let _ = intercom
                        .sip()
                        .message(openwebnet::ASWM_STATUS_REQUEST)
                        .await;
                }
                Err(e) => tracing::warn!("voicemail {} failed: {e}", on_off(on)),
            }
        });
    }
}

/// Forwards the camera setup's status (the diagnostic sensor and its attributes).
async fn follow_camera(
    mut camera: CameraWatch,
    topics: Topics,
    tx: mpsc::Sender<Update>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = camera.changed() => if changed.is_err() { return },
        }
        for (topic, payload) in discovery::camera_setup_states(&topics, &camera.get()) {
            if tx.send(Update::State { topic, payload }).await.is_err() {
                return;
            }
        }
    }
}

/// Forwards one hub's status changes (call, viewers, privacy) as updates.
async fn follow_hub(i: usize, hub: StreamHub, tx: mpsc::Sender<Update>, stop: CancellationToken) {
    let mut status = hub.status_watch();
    loop {
        let s = status.borrow_and_update().clone();
        if tx.send(Update::Hub(i, Box::new(s))).await.is_err() {
            return;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = status.changed() => if changed.is_err() { return },
        }
    }
}
