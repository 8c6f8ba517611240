//! Home Assistant MQTT discovery payloads (home-assistant.md §0, §2) and the state payloads that
//! go with them, as pure functions: config + topics in, `(topic, JSON)` out. One retained config
//! per entity, all sharing one `device` block; never `object_id` / `default_entity_id`.
//! No I/O here; `mod.rs` publishes what these return.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::topics::{Button, Topics};
use crate::config::{Config, Lock, Panel};
use crate::homeassistant::{PanelCamera, SetupState};
use crate::servers::access::published_urls;

/// The device's name in HA; entity ids derive from it (`event.bticino_c300x_doorbell`).
pub const DEVICE_NAME: &str = "BTicino C300X";
/// HA's `event_types` for the doorbell: `ring` is required for doorbells from 2027.4 on.
/// `answered`: by us or elsewhere; `missed`: ended unanswered; `ended`: the answered call is over.
pub const EVENT_TYPES: [&str; 4] = ["ring", "answered", "missed", "ended"];

/// What the payloads need beyond `Config`: where users reach our servers, and our version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// Host name or IP for the RTSP / snapshot / UI URLs (the advertised address).
    pub host: String,
    /// The bridge version for the `origin` block.
    pub sw_version: String,
}

/// One entity's discovery message.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityConfig {
    pub platform: &'static str,
    /// The `<entity>` topic segment, also the unique-id suffix (`doorbell_front`).
    pub key: String,
    pub topic: String,
    pub payload: Value,
}

/// "front-door" → "Front door": the display form of a configured name.
pub fn display(name: &str) -> String {
    let spaced = name.replace(['_', '-'], " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `rtsp://[user:password@]<host>:<rtsp_port>/<panel>` (the RTSP server's path per panel, with
/// the credentials so it can be pasted; `servers::access::published_urls`).
pub fn rtsp_url(cfg: &Config, site: &Site, panel: &Panel) -> String {
    published_urls(cfg, &site.host, panel).rtsp
}

/// `http://[user:password@]<host>:<http_port>/api/<panel>/snapshot.jpg` (never starts a call).
pub fn snapshot_url(cfg: &Config, site: &Site, panel: &Panel) -> String {
    published_urls(cfg, &site.host, panel).snapshot
}

fn url_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// Every discovery config for `cfg`, in a stable order.
pub fn entity_configs(cfg: &Config, topics: &Topics, site: &Site) -> Vec<EntityConfig> {
    let b = Builder { cfg, topics, site };
    let mut out = Vec::new();
    for p in &cfg.panels {
        out.push(b.doorbell(p));
    }
    for l in &cfg.locks {
        out.push(b.lock(l));
    }
    for button in Button::ALL {
        out.push(b.button(button));
    }
    for p in &cfg.panels {
        out.push(b.streaming(p));
    }
    out.push(b.voicemail());
    for p in &cfg.panels {
        out.push(b.call(p));
    }
    out.push(b.sip_registered());
    for p in &cfg.panels {
        out.push(b.viewers(p));
        out.push(b.rtsp_url(p));
        out.push(b.snapshot_url(p));
        out.push(b.camera_setup(p));
    }
    out.push(b.last_ring());
    // The doorbell moment (issue 16): image "Last ring", per-panel Ringing and ring buttons,
    // Indoor ringer.
    out.extend(doorbell_entity_configs(cfg, topics, site));
    out
}

/// Discovery topics of entities earlier versions published and this one no longer does (the
/// device-level Ringing sensor and Answer / Hang up buttons, replaced per panel): an empty
/// retained payload on each makes Home Assistant delete them.
pub fn retired_config_topics(topics: &Topics) -> Vec<String> {
    vec![
        topics.config("binary_sensor", "ringing"),
        topics.config("button", "answer"),
        topics.config("button", "hang_up"),
    ]
}

struct Builder<'a> {
    cfg: &'a Config,
    topics: &'a Topics,
    site: &'a Site,
}

impl Builder<'_> {
    fn device(&self) -> Value {
        json!({
            "identifiers": [self.topics.node],
            "name": DEVICE_NAME,
            "manufacturer": "BTicino",
            "model": "Classe 300X",
            "configuration_url": format!("http://{}:{}/", url_host(&self.site.host), self.cfg.http_port),
        })
    }

    /// Name, ids, availability, device and origin: the keys every entity carries.
    fn entity(
        &self,
        platform: &'static str,
        key: String,
        name: &str,
        extra: Value,
    ) -> EntityConfig {
        let mut payload = json!({
            "name": name,
            "unique_id": self.topics.unique_id(&key),
            "availability_topic": self.topics.availability(),
            "device": self.device(),
            "origin": { "name": "c300x-bridge", "sw_version": self.site.sw_version },
        });
        if let (Some(map), Value::Object(extra)) = (payload.as_object_mut(), extra) {
            map.extend(extra);
        }
        EntityConfig {
            platform,
            topic: self.topics.config(platform, &key),
            key,
            payload,
        }
    }

    /// "Doorbell" with one panel; "Garden doorbell" when there are several.
    fn panel_name(&self, panel: &Panel, what: &str) -> String {
        if self.cfg.panels.len() > 1 {
            format!("{} {}", display(&panel.name), what.to_lowercase())
        } else {
            what.to_owned()
        }
    }

    fn doorbell(&self, p: &Panel) -> EntityConfig {
        self.entity(
            "event",
            format!("doorbell_{}", p.name),
            &self.panel_name(p, "Doorbell"),
            json!({
                "device_class": "doorbell",
                "event_types": EVENT_TYPES,
                "state_topic": self.topics.doorbell(&p.name),
            }),
        )
    }

    fn lock(&self, l: &Lock) -> EntityConfig {
        self.entity(
            "lock",
            format!("lock_{}", l.name),
            &display(&l.name),
            json!({
                "command_topic": self.topics.lock_set(&l.name),
                "state_topic": self.topics.lock_state(&l.name),
                "payload_lock": "LOCK",
                "payload_unlock": "UNLOCK",
                "payload_open": "OPEN",
                "state_locked": "LOCKED",
                "state_unlocked": "UNLOCKED",
                "state_unlocking": "UNLOCKING",
                "state_jammed": "JAMMED",
            }),
        )
    }

    fn button(&self, button: Button) -> EntityConfig {
        let (name, extra) = match button {
            Button::StaircaseLight => ("Staircase light", json!({"icon": "mdi:stairs"})),
            Button::RestartCall => (
                "Restart call",
                json!({"device_class": "restart", "entity_category": "diagnostic"}),
            ),
        };
        let mut cfg = self.entity("button", button.key().to_owned(), name, extra);
        if let Some(map) = cfg.payload.as_object_mut() {
            map.insert("command_topic".into(), json!(self.topics.button(button)));
            map.insert("payload_press".into(), json!("PRESS"));
        }
        cfg
    }

    fn streaming(&self, p: &Panel) -> EntityConfig {
        self.entity(
            "switch",
            format!("streaming_{}", p.name),
            &self.panel_name(p, "Streaming allowed"),
            json!({
                "command_topic": self.topics.streaming_set(&p.name),
                "state_topic": self.topics.streaming_state(&p.name),
                "icon": "mdi:cctv",
            }),
        )
    }

    fn voicemail(&self) -> EntityConfig {
        self.entity(
            "switch",
            "voicemail".to_owned(),
            "Voicemail",
            json!({
                "command_topic": self.topics.voicemail_set(),
                "state_topic": self.topics.voicemail_state(),
                "icon": "mdi:voicemail",
            }),
        )
    }

    fn call(&self, p: &Panel) -> EntityConfig {
        self.entity(
            "binary_sensor",
            format!("call_{}", p.name),
            &self.panel_name(p, "Call active"),
            json!({"device_class": "running", "state_topic": self.topics.call(&p.name)}),
        )
    }

    fn sip_registered(&self) -> EntityConfig {
        self.entity(
            "binary_sensor",
            "sip_registered".to_owned(),
            "SIP registered",
            json!({
                "device_class": "connectivity",
                "entity_category": "diagnostic",
                "state_topic": self.topics.sip_registered(),
            }),
        )
    }

    fn viewers(&self, p: &Panel) -> EntityConfig {
        self.entity(
            "sensor",
            format!("viewers_{}", p.name),
            &self.panel_name(p, "Viewers"),
            json!({
                "state_topic": self.topics.viewers(&p.name),
                "state_class": "measurement",
                "entity_category": "diagnostic",
                "icon": "mdi:eye",
            }),
        )
    }

    fn rtsp_url(&self, p: &Panel) -> EntityConfig {
        self.entity(
            "sensor",
            format!("rtsp_url_{}", p.name),
            &self.panel_name(p, "RTSP URL"),
            json!({
                "state_topic": self.topics.rtsp_url(&p.name),
                "entity_category": "diagnostic",
                "icon": "mdi:video",
            }),
        )
    }

    fn snapshot_url(&self, p: &Panel) -> EntityConfig {
        self.entity(
            "sensor",
            format!("snapshot_url_{}", p.name),
            &self.panel_name(p, "Snapshot URL"),
            json!({
                "state_topic": self.topics.snapshot_url(&p.name),
                "entity_category": "diagnostic",
                "icon": "mdi:camera",
            }),
        )
    }

    /// Whether the Generic Camera was set up in HA; attributes carry the URLs and the
    /// my.home-assistant.io link for doing it by hand (never a silent failure).
    fn camera_setup(&self, p: &Panel) -> EntityConfig {
        self.entity(
            "sensor",
            format!("camera_setup_{}", p.name),
            &self.panel_name(p, "Camera setup"),
            json!({
                "state_topic": self.topics.camera_setup(&p.name),
                "json_attributes_topic": self.topics.camera_setup_attributes(&p.name),
                "entity_category": "diagnostic",
                "icon": "mdi:cctv",
            }),
        )
    }

    /// "Last ring time": the image entity is "Last ring".
    fn last_ring(&self) -> EntityConfig {
        self.entity(
            "sensor",
            "last_ring".to_owned(),
            "Last ring time",
            json!({
                "device_class": "timestamp",
                "entity_category": "diagnostic",
                "state_topic": self.topics.last_ring(),
            }),
        )
    }
}

/// The camera-setup sensor's state and attributes topics with their payloads, per panel.
pub fn camera_setup_states(topics: &Topics, cameras: &[PanelCamera]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for c in cameras {
        let detail = match &c.state {
            SetupState::Off => Some("ha_camera is off: add the camera by hand".to_owned()),
            SetupState::Waiting { reason } | SetupState::Manual { reason } => Some(reason.clone()),
            SetupState::Working { action } => Some(action.clone()),
            SetupState::Ready { note, action, .. } => note.clone().or_else(|| Some(action.clone())),
        };
        let entity_id = match &c.state {
            SetupState::Ready { entity_id, .. } => entity_id.clone(),
            _ => c.entity_id.clone(),
        };
        let attributes = json!({
            "entity_id": entity_id,
            "detail": detail,
            "stream_source": c.stream_source,
            "still_image_url": c.still_image_url,
            "username": c.username,
            "setup_link": c.setup_link,
        });
        out.push((
            topics.camera_setup_attributes(&c.panel),
            attributes.to_string(),
        ));
        out.push((topics.camera_setup(&c.panel), c.state.word().to_owned()));
    }
    out
}

/// `ON` / `OFF`, the default payloads of `switch` and `binary_sensor`.
pub fn on_off(on: bool) -> &'static str {
    if on { "ON" } else { "OFF" }
}

/// UTC RFC 3339 with seconds (`2024-03-01T12:00:05+00:00`), as HA's timestamp sensor parses it.
pub fn rfc3339(at: SystemTime) -> String {
    crate::proto::rfc3339::format(at, crate::proto::rfc3339::Precision::Seconds)
}

mod doorbell;
#[cfg(test)]
mod tests;

pub use doorbell::{
    PANEL_RINGING_OFF_DELAY_S, RingEvent, doorbell_entity_configs, media_source_id, ring_event,
    ring_snapshot_url, ringer_state,
};
