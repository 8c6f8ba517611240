//! Discovery payloads and state payloads of the doorbell moment (issue 16), pure like the rest of
//! `discovery`: per panel an `image` "Last ring" (raw JPEG on `image_topic`), a `binary_sensor`
//! "Ringing" and `button`s Answer / Hang up / Reject; for the device a `switch` "Indoor ringer";
//! the doorbell event payload with `ring_id`, `panel`, `time`, `snapshot_url`, how the ring
//! ended and the clip. They replaced the device-level `ringing`, `answer` and `hang_up`.

use std::path::Path;
use std::time::SystemTime;

use serde_json::{Value, json};

use super::{Builder, EntityConfig, Site};
use crate::config::{Config, Panel};
use crate::doorbell::RingId;
use crate::mqtt::topics::{RingAction, Topics};

/// A panel's `binary_sensor` "Ringing" goes OFF by itself after this long without news (a lost
/// ring end): longer than the bridge's own ring timeout (45 s) and the unit's (about 30 s, §7).
pub const PANEL_RINGING_OFF_DELAY_S: u64 = 60;

/// Every doorbell discovery config for `cfg`, in a stable order.
pub fn doorbell_entity_configs(cfg: &Config, topics: &Topics, site: &Site) -> Vec<EntityConfig> {
    let b = Builder { cfg, topics, site };
    let mut out = Vec::new();
    for p in &cfg.panels {
        out.push(b.ring_image(p));
        out.push(b.panel_ringing(p));
        for action in RingAction::ALL {
            out.push(b.ring_button(p, action));
        }
    }
    out.push(b.indoor_ringer());
    out
}

impl Builder<'_> {
    fn ring_image(&self, p: &Panel) -> EntityConfig {
        self.entity(
            "image",
            format!("last_ring_{}", p.name),
            &self.panel_name(p, "Last ring"),
            json!({
                "image_topic": self.topics.ring_image(&p.name),
                "content_type": "image/jpeg",
                "icon": "mdi:doorbell-video",
            }),
        )
    }

    fn panel_ringing(&self, p: &Panel) -> EntityConfig {
        self.entity(
            "binary_sensor",
            format!("ringing_{}", p.name),
            &self.panel_name(p, "Ringing"),
            json!({
                "state_topic": self.topics.panel_ringing(&p.name),
                "off_delay": PANEL_RINGING_OFF_DELAY_S,
                "icon": "mdi:bell-ring",
            }),
        )
    }

    fn ring_button(&self, p: &Panel, action: RingAction) -> EntityConfig {
        let (what, icon) = match action {
            RingAction::Answer => ("Answer", "mdi:phone"),
            RingAction::HangUp => ("Hang up", "mdi:phone-hangup"),
            RingAction::Reject => ("Reject", "mdi:phone-cancel"),
        };
        self.entity(
            "button",
            format!("{}_{}", action.key(), p.name),
            &self.panel_name(p, what),
            json!({
                "command_topic": self.topics.ring_button(&p.name, action),
                "payload_press": "PRESS",
                "icon": icon,
            }),
        )
    }

    fn indoor_ringer(&self) -> EntityConfig {
        self.entity(
            "switch",
            "indoor_ringer".to_owned(),
            "Indoor ringer",
            json!({
                "command_topic": self.topics.ringer_set(),
                "state_topic": self.topics.ringer_state(),
                "icon": "mdi:bell-ring-outline",
            }),
        )
    }
}

/// `http://[user:password@]<host>:<http_port>/api/<panel>/rings/<ring_id>.jpg`: private like
/// every ring file, so it carries the credentials as the other published URLs do.
pub fn ring_snapshot_url(cfg: &Config, site: &Site, panel: &Panel, ring_id: &RingId) -> String {
    crate::servers::access::published_http_url(
        cfg,
        &site.host,
        &format!("/api/{}/rings/{ring_id}.jpg", panel.name),
    )
}

/// Home Assistant's media-source id of a file under `/media` (the add-on's `media` map), so an
/// automation can play or attach the clip; `None` for files elsewhere.
pub fn media_source_id(path: &Path) -> Option<String> {
    let rest = path.strip_prefix("/media").ok()?;
    let rest = rest.to_str()?;
    (!rest.is_empty()).then(|| format!("media-source://media_source/local/{rest}"))
}

/// One doorbell event.
#[derive(Debug, Clone, Copy)]
pub struct RingEvent<'a> {
    /// `ring`, `answered`, `missed` or `ended` (see `super::EVENT_TYPES`).
    pub event_type: &'static str,
    pub ring_id: &'a RingId,
    pub panel: &'a Panel,
    /// When the ring started.
    pub at: SystemTime,
    /// False when the INVITE did not say which panel rang (reported on the first panel).
    pub attributed: bool,
    pub clip: Option<&'a Path>,
    /// How the ring ended (`answered_here`, `answered_elsewhere`, `rejected`, `missed`), on
    /// the events that follow its end.
    pub outcome: Option<&'static str>,
}

/// The doorbell `event` payload: `event_type` plus attributes (never retained).
pub fn ring_event(cfg: &Config, site: &Site, ev: &RingEvent) -> String {
    let mut payload = json!({
        "event_type": ev.event_type,
        "ring_id": ev.ring_id.as_str(),
        "panel": ev.panel.name,
        "devaddr": ev.panel.devaddr,
        "time": super::rfc3339(ev.at),
        "attributed": ev.attributed,
        "snapshot_url": ring_snapshot_url(cfg, site, ev.panel, ev.ring_id),
    });
    if let (Some(outcome), Some(map)) = (ev.outcome, payload.as_object_mut()) {
        map.insert("outcome".into(), json!(outcome));
    }
    if let (Some(clip), Some(map)) = (ev.clip, payload.as_object_mut()) {
        map.insert("clip".into(), json!(clip.display().to_string()));
        if let Some(id) = media_source_id(clip) {
            map.insert("clip_media_id".into(), Value::String(id));
        }
    }
    payload.to_string()
}

/// The indoor ringer switch's state: `ON` rings, `OFF` muted, `None` unknown (no reply from the
/// unit; HA shows "unknown").
pub fn ringer_state(muted: Option<bool>) -> &'static str {
    match muted {
        Some(false) => "ON",
        Some(true) => "OFF",
        None => "None",
    }
}
