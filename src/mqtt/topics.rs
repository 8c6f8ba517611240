//! Every MQTT topic the bridge uses, in one place: discovery configs
//! (`<prefix>/<platform>/c300x_<id>/<entity>/config`, home-assistant.md §0), states, commands,
//! availability and HA's birth topic. Also maps an incoming topic to the command it addresses.
//! Names here are already validated by `config` (a-z, 0-9, `_`, `-`): safe in topics.

use super::MqttError;
use crate::config::Config;

/// The bridge's topics for one intercom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// `c300x_<id>`: discovery node id, device identifier and unique-id prefix.
    pub node: String,
    /// `<discovery prefix>`, normally `homeassistant`.
    prefix: String,
    /// `<base topic>/<id>`, e.g. `c300x/1234567`.
    base: String,
}

/// What a command topic addresses (indexes into `Config::locks` / `Config::panels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandTarget {
    Lock(usize),
    Button(Button),
    Streaming(usize),
    Voicemail,
    Doorbell(DoorbellCommand),
}

/// What the per-panel ring buttons do (issue 16; they replaced the device-level Answer and
/// Hang up buttons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingAction {
    /// 200 with our SDP: take the pending ring (the other phones stop ringing).
    Answer,
    /// BYE on the answered (or previewed) call.
    HangUp,
    /// Refuse the pending ring (`ring_reject_code`, 486 by default).
    Reject,
}

impl RingAction {
    pub const ALL: [RingAction; 3] = [RingAction::Answer, RingAction::HangUp, RingAction::Reject];

    pub fn key(self) -> &'static str {
        match self {
            RingAction::Answer => "answer",
            RingAction::HangUp => "hang_up",
            RingAction::Reject => "reject",
        }
    }
}

/// What a doorbell command topic addresses (indexes into `Config::panels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoorbellCommand {
    Ring {
        panel: usize,
        action: RingAction,
    },
    /// The indoor ringer switch (`ON` rings, `OFF` muted).
    Ringer,
}

/// The device-level buttons (answer / hang up / reject are per panel: [`RingAction`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Button {
    StaircaseLight,
    RestartCall,
}

impl Button {
    pub const ALL: [Button; 2] = [Button::StaircaseLight, Button::RestartCall];

    /// The entity key (topic segment and unique-id suffix).
    pub fn key(self) -> &'static str {
        match self {
            Button::StaircaseLight => "staircase_light",
            Button::RestartCall => "restart_call",
        }
    }
}

/// The intercom's id: the numeric first label of the SIP domain (`1234567.bs.iotleg.com` →
/// `1234567`). A non-numeric label is kept, lower-cased, with anything outside
/// `[a-z0-9_-]` turned into `_` (HA allows only those in a node id).
pub fn device_id(sip_domain: &str) -> Option<String> {
    let label = sip_domain.split('.').next()?.trim();
    if label.is_empty() {
        return None;
    }
    Some(
        label
            .chars()
            .map(|c| {
                let c = c.to_ascii_lowercase();
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect(),
    )
}

impl Topics {
    pub fn new(
        discovery_prefix: &str,
        base_topic: &str,
        sip_domain: &str,
    ) -> Result<Self, MqttError> {
        let id = device_id(sip_domain).ok_or_else(|| MqttError::NoDeviceId {
            sip_domain: sip_domain.to_owned(),
        })?;
        Ok(Self {
            node: format!("c300x_{id}"),
            prefix: discovery_prefix.trim_end_matches('/').to_owned(),
            base: format!("{}/{id}", base_topic.trim_end_matches('/')),
        })
    }

    pub fn from_config(cfg: &Config) -> Result<Self, MqttError> {
        let domain = cfg.sip_domain.as_deref().ok_or(MqttError::NoDeviceId {
            sip_domain: String::new(),
        })?;
        Self::new(&cfg.mqtt_discovery_prefix, &cfg.mqtt_base_topic, domain)
    }

    /// `online` / `offline` (retained; `offline` is the Last Will).
    pub fn availability(&self) -> String {
        format!("{}/availability", self.base)
    }

    /// Home Assistant's birth / last-will topic.
    pub fn ha_status(&self) -> String {
        format!("{}/status", self.prefix)
    }

    /// The retained discovery config of one entity.
    pub fn config(&self, platform: &str, entity: &str) -> String {
        format!("{}/{platform}/{}/{entity}/config", self.prefix, self.node)
    }

    /// The entity's unique id (also its registry key in HA).
    pub fn unique_id(&self, entity: &str) -> String {
        format!("{}_{entity}", self.node)
    }

    /// Doorbell `event` payloads of a panel (never retained).
    pub fn doorbell(&self, panel: &str) -> String {
        format!("{}/panel/{panel}/doorbell", self.base)
    }

    pub fn call(&self, panel: &str) -> String {
        format!("{}/panel/{panel}/call", self.base)
    }

    pub fn viewers(&self, panel: &str) -> String {
        format!("{}/panel/{panel}/viewers", self.base)
    }

    pub fn rtsp_url(&self, panel: &str) -> String {
        format!("{}/panel/{panel}/rtsp_url", self.base)
    }

    pub fn snapshot_url(&self, panel: &str) -> String {
        format!("{}/panel/{panel}/snapshot_url", self.base)
    }

    /// The Generic Camera setup's state word (`ready`, `manual`, ...) and its JSON attributes.
    pub fn camera_setup(&self, panel: &str) -> String {
        format!("{}/panel/{panel}/camera_setup", self.base)
    }

    pub fn camera_setup_attributes(&self, panel: &str) -> String {
        format!("{}/panel/{panel}/camera_setup/attributes", self.base)
    }

    pub fn streaming_state(&self, panel: &str) -> String {
        format!("{}/panel/{panel}/streaming", self.base)
    }

    pub fn streaming_set(&self, panel: &str) -> String {
        format!("{}/panel/{panel}/streaming/set", self.base)
    }

    pub fn lock_state(&self, lock: &str) -> String {
        format!("{}/lock/{lock}", self.base)
    }

    pub fn lock_set(&self, lock: &str) -> String {
        format!("{}/lock/{lock}/set", self.base)
    }

    pub fn button(&self, button: Button) -> String {
        format!("{}/button/{}/press", self.base, button.key())
    }

    pub fn voicemail_state(&self) -> String {
        format!("{}/voicemail", self.base)
    }

    pub fn voicemail_set(&self) -> String {
        format!("{}/voicemail/set", self.base)
    }

    pub fn sip_registered(&self) -> String {
        format!("{}/sip_registered", self.base)
    }

    /// The retired device-level Ringing sensor's state (only cleared now).
    pub fn ringing(&self) -> String {
        format!("{}/ringing", self.base)
    }

    pub fn last_ring(&self) -> String {
        format!("{}/last_ring", self.base)
    }

    /// `ON` exactly while a ring of this panel is pending (retained).
    pub fn panel_ringing(&self, panel: &str) -> String {
        format!("{}/panel/{panel}/ringing", self.base)
    }

    /// The last ring's JPEG, raw bytes (retained: the last visitor stays visible).
    pub fn ring_image(&self, panel: &str) -> String {
        format!("{}/panel/{panel}/ring/image", self.base)
    }

    pub fn ring_button(&self, panel: &str, action: RingAction) -> String {
        format!("{}/panel/{panel}/ring/{}/press", self.base, action.key())
    }

    /// The indoor ringer: `ON` (rings), `OFF` (muted), `None` (unknown: no reply).
    pub fn ringer_state(&self) -> String {
        format!("{}/ringer", self.base)
    }

    pub fn ringer_set(&self) -> String {
        format!("{}/ringer/set", self.base)
    }

    /// The doorbell command topics of `cfg` with what they address.
    pub fn doorbell_commands(&self, cfg: &Config) -> Vec<(String, DoorbellCommand)> {
        let mut out: Vec<(String, DoorbellCommand)> = cfg
            .panels
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                RingAction::ALL.map(|action| {
                    (
                        self.ring_button(&p.name, action),
                        DoorbellCommand::Ring { panel: i, action },
                    )
                })
            })
            .collect();
        out.push((self.ringer_set(), DoorbellCommand::Ringer));
        out
    }

    /// Every command topic of `cfg` with what it addresses: the only topics (besides
    /// `ha_status`) the bridge subscribes to.
    pub fn commands(&self, cfg: &Config) -> Vec<(String, CommandTarget)> {
        let mut out: Vec<(String, CommandTarget)> = cfg
            .locks
            .iter()
            .enumerate()
            .map(|(i, l)| (self.lock_set(&l.name), CommandTarget::Lock(i)))
            .collect();
        out.extend(
            Button::ALL
                .iter()
                .map(|b| (self.button(*b), CommandTarget::Button(*b))),
        );
        out.extend(
            cfg.panels
                .iter()
                .enumerate()
                .map(|(i, p)| (self.streaming_set(&p.name), CommandTarget::Streaming(i))),
        );
        out.push((self.voicemail_set(), CommandTarget::Voicemail));
        out.extend(
            self.doorbell_commands(cfg)
                .into_iter()
                .map(|(t, c)| (t, CommandTarget::Doorbell(c))),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_is_the_first_label() {
        assert_eq!(
            device_id("1234567.bs.iotleg.com").as_deref(),
            Some("1234567")
        );
        assert_eq!(device_id("My Unit.local").as_deref(), Some("my_unit"));
        assert_eq!(device_id(""), None);
        assert!(Topics::from_config(&Config::default()).is_err());
    }

    #[test]
    fn topics_follow_home_assistant_md() {
        let t = Topics::new("homeassistant/", "c300x", "1234567.bs.iotleg.com").expect("id");
        assert_eq!(t.availability(), "c300x/1234567/availability");
        assert_eq!(t.ha_status(), "homeassistant/status");
        assert_eq!(
            t.config("lock", "lock_door"),
            "homeassistant/lock/c300x_1234567/lock_door/config"
        );
        assert_eq!(t.lock_set("door"), "c300x/1234567/lock/door/set");
        assert_eq!(t.unique_id("lock_door"), "c300x_1234567_lock_door");
        let cfg = Config {
            sip_domain: Some("1234567.bs.iotleg.com".into()),
            ..Config::default()
        };
        let cmds = t.commands(&cfg);
        assert_eq!(cmds.len(), 1 + 2 + 1 + 1 + 3 + 1);
        assert!(cmds.contains(&(
            "c300x/1234567/panel/doorbell/ring/answer/press".into(),
            CommandTarget::Doorbell(DoorbellCommand::Ring {
                panel: 0,
                action: RingAction::Answer
            })
        )));
        // A command topic never equals a state topic (we would hear our own states as commands).
        let states = [
            t.lock_state("door"),
            t.streaming_state("doorbell"),
            t.voicemail_state(),
        ];
        assert!(cmds.iter().all(|(c, _)| !states.contains(c)));
    }

    #[test]
    fn doorbell_topics_per_panel() {
        let t = Topics::new("homeassistant", "c300x", "1234567.bs.iotleg.com").expect("id");
        assert_eq!(
            t.ring_image("front"),
            "c300x/1234567/panel/front/ring/image"
        );
        assert_eq!(
            t.panel_ringing("front"),
            "c300x/1234567/panel/front/ringing"
        );
        assert_eq!(
            t.ring_button("gate", RingAction::Reject),
            "c300x/1234567/panel/gate/ring/reject/press"
        );
        let mut cfg = Config {
            sip_domain: Some("1234567.bs.iotleg.com".into()),
            ..Config::default()
        };
        cfg.panels.push(crate::config::Panel {
            name: "gate".into(),
            devaddr: 21,
        });
        let cmds = t.doorbell_commands(&cfg);
        assert_eq!(cmds.len(), 2 * 3 + 1);
        assert!(cmds.contains(&(
            "c300x/1234567/panel/gate/ring/answer/press".into(),
            DoorbellCommand::Ring {
                panel: 1,
                action: RingAction::Answer
            }
        )));
        assert!(cmds.contains(&("c300x/1234567/ringer/set".into(), DoorbellCommand::Ringer)));
        // All of them are subscribed, each once; none is a state topic.
        let all = t.commands(&cfg);
        for (topic, _) in &cmds {
            assert_eq!(all.iter().filter(|(c, _)| c == topic).count(), 1, "{topic}");
            assert_ne!(topic, &t.ringer_state());
        }
    }
}
