//! Camera auto-setup (option `ha_camera`): one Generic Camera config entry per panel in Home
//! Assistant, named `camera.<panel>`, kept up to date when the bridge's URLs change, never
//! doubled. Pure parts: `source` (the URLs), `flow` (config/options flow requests and replies),
//! `plan` (keep / update / create), `naming`; I/O: `client` (REST + websocket), `store` (the
//! data directory), `task` (the driver). Its state is published for the status page and MQTT.

pub mod client;
pub mod flow;
pub mod naming;
pub mod plan;
pub mod source;
pub mod store;
mod task;

use serde::Serialize;
use tokio::sync::watch;

use crate::config::Config;
pub use source::{CameraSource, SETUP_LINK, camera_source};
pub use task::run;

/// Where one panel's camera setup stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SetupState {
    /// `ha_camera: false`: the user adds the camera by hand (if at all).
    Off,
    /// Not started yet, or waiting for HA / the intercom; `reason` says for what.
    Waiting { reason: String },
    /// A request to HA is under way (`creating` costs one intercom call: HA tests the stream).
    Working { action: String },
    /// The camera exists in HA.
    Ready {
        entity_id: String,
        entry_id: String,
        /// `created`, `updated`, `unchanged` or `adopted`.
        action: String,
        /// Something the user should know (e.g. `camera.doorbell` was taken by another entity).
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// It cannot be done automatically; `reason` says why, the URLs say how to do it by hand.
    Manual { reason: String },
}

impl SetupState {
    /// The short word the MQTT sensor shows.
    pub fn word(&self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Waiting { .. } => "waiting",
            Self::Working { .. } => "working",
            Self::Ready { .. } => "ready",
            Self::Manual { .. } => "manual",
        }
    }
}

/// One panel's camera: its setup state and what a user needs to add it by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PanelCamera {
    pub panel: String,
    #[serde(flatten)]
    pub state: SetupState,
    /// The entity id the camera gets (`camera.<panel>`).
    pub entity_id: String,
    pub stream_source: String,
    pub still_image_url: String,
    /// The user name the camera needs (the password is never shown).
    pub username: Option<String>,
    /// Opens the Generic Camera dialog in the user's Home Assistant.
    pub setup_link: &'static str,
}

/// The starting status of every panel (before `run`, or without it).
pub fn initial(cfg: &Config, host: &str) -> Vec<PanelCamera> {
    cfg.panels
        .iter()
        .map(|p| {
            let s = camera_source(cfg, host, p);
            PanelCamera {
                panel: p.name.clone(),
                state: if cfg.ha_camera {
                    SetupState::Waiting {
                        reason: "starting".into(),
                    }
                } else {
                    SetupState::Off
                },
                entity_id: source::entity_id(p),
                stream_source: s.stream_source,
                still_image_url: s.still_image_url,
                username: s.username,
                setup_link: SETUP_LINK,
            }
        })
        .collect()
}

/// A read handle on the cameras' status (status page, MQTT sensor).
#[derive(Debug, Clone)]
pub struct CameraWatch(watch::Receiver<Vec<PanelCamera>>);

impl CameraWatch {
    /// A status channel starting at `initial(cfg, host)`; `run` drives the sender.
    pub fn channel(cfg: &Config, host: &str) -> (watch::Sender<Vec<PanelCamera>>, Self) {
        let (tx, rx) = watch::channel(initial(cfg, host));
        (tx, Self(rx))
    }

    /// No camera setup at all (tests, tools): an empty, never-changing status.
    pub fn none() -> Self {
        Self(watch::channel(Vec::new()).1)
    }

    pub fn get(&self) -> Vec<PanelCamera> {
        self.0.borrow().clone()
    }

    pub fn panel(&self, name: &str) -> Option<PanelCamera> {
        self.0.borrow().iter().find(|p| p.panel == name).cloned()
    }

    /// Resolves when the status changed (`Err` once the sender is gone).
    pub async fn changed(&mut self) -> Result<(), watch::error::RecvError> {
        self.0.changed().await
    }
}
