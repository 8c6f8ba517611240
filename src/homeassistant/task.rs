//! The camera setup driver: resolves where HA is, reads HA's Generic Camera entries back, plans
//! each panel (`plan`), runs the config or options flow (`flow`) through `client`, renames the
//! result (`naming`), remembers it (`store`) and publishes every step as `PanelCamera` status.
//! HA away → retried every 5…30 s; a failed camera test → retried twice (each try is one intercom
//! call); anything else → `Manual`, logged with the reason and the steps to add it by hand.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::client::{self, Endpoint, FLOW_STEP_TIMEOUT, HaError, REST_TIMEOUT};
use super::flow::{self, Flow, FlowKind, Method, Next, Request};
use super::plan::{self, KnownEntry, Plan};
use super::store::{self, Remembered, Stored};
use super::{PanelCamera, SetupState, camera_source, naming, source};
use crate::config::{Config, Panel, Secret};
use crate::intercom::sip::RegistrationState;

/// Why no Home Assistant can be asked.
const NO_HA: &str = "no Home Assistant to talk to: outside the add-on set homeassistant_url and \
                     homeassistant_token (or ha_camera: false to silence this)";

/// The HA endpoint from the options: `homeassistant_url` wins, else the Supervisor in the add-on.
pub fn endpoint(cfg: &Config) -> Option<Endpoint> {
    if let (Some(url), Some(token)) = (&cfg.homeassistant_url, &cfg.homeassistant_token) {
        return Some(Endpoint::url(url, token.clone()));
    }
    match std::env::var("SUPERVISOR_TOKEN") {
        Ok(t) if !t.is_empty() => Some(Endpoint::supervisor(Secret::new(t))),
        _ => None,
    }
}

/// How an error is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// HA is not reachable (starting, restarting, network): retried forever.
    Away,
    /// HA tested the camera and it failed: each retry costs an intercom call.
    CameraTest,
    /// A refusal that will not change by itself (token, unknown form field, ...).
    Permanent,
}

pub fn classify(e: &HaError) -> Class {
    match e {
        HaError::Unreachable { .. } | HaError::Websocket { .. } => Class::Away,
        HaError::Flow(f) if f.is_transient() => Class::CameraTest,
        HaError::Flow(_) | HaError::Unauthorized { .. } => Class::Permanent,
    }
}

/// The wait before try `n + 1` after `n` failures of this class, or `None`: give up.
pub fn retry_delay(class: Class, n: u32) -> Option<Duration> {
    match class {
        // HA may take a minute to start (the add-on often starts first): keep the steps short.
        Class::Away => Some(Duration::from_secs((5 * u64::from(n.max(1))).min(30))),
        Class::CameraTest => match n {
            1 => Some(Duration::from_secs(30)),
            2 => Some(Duration::from_secs(120)),
            _ => None,
        },
        Class::Permanent => None,
    }
}

/// Runs the camera setup for every panel of `cfg` once (with retries) and publishes the state
/// on `status`. `host`: the address HA uses for the bridge. Ends when done or on `shutdown`.
pub async fn run(
    cfg: Config,
    host: String,
    registration: watch::Receiver<RegistrationState>,
    status: watch::Sender<Vec<PanelCamera>>,
    shutdown: CancellationToken,
) {
    let mut d = Driver {
        dir: store::data_dir(&cfg),
        endpoint: None,
        done: vec![false; cfg.panels.len()],
        cfg,
        host,
        registration,
        status,
    };
    if !d.cfg.ha_camera {
        d.set_unfinished(SetupState::Off);
        return;
    }
    let Some(endpoint) = endpoint(&d.cfg) else {
        tracing::info!(
            "Home Assistant camera: {NO_HA}. {}",
            d.manual_steps().join("; ")
        );
        d.set_unfinished(SetupState::Manual {
            reason: NO_HA.into(),
        });
        return;
    };
    d.endpoint = Some(endpoint);
    let (mut away, mut tests) = (0u32, 0u32);
    loop {
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = d.sync(&shutdown) => r,
        };
        let Err(e) = result else { return };
        let class = classify(&e);
        let n = match class {
            Class::Away => {
                away += 1;
                away
            }
            Class::CameraTest => {
                tests += 1;
                tests
            }
            Class::Permanent => 1,
        };
        match retry_delay(class, n) {
            Some(wait) => {
                if n == 1 || class == Class::CameraTest {
                    tracing::warn!(
                        "Home Assistant camera: {e}; retrying in {} s",
                        wait.as_secs()
                    );
                } else {
                    tracing::debug!(
                        "Home Assistant camera: {e}; retrying in {} s",
                        wait.as_secs()
                    );
                }
                d.set_unfinished(SetupState::Waiting {
                    reason: format!("{e} (retrying in {} s)", wait.as_secs()),
                });
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            None => {
                tracing::warn!(
                    "Home Assistant camera not set up: {e}. Add it by hand: {}",
                    d.manual_steps().join("; ")
                );
                d.set_unfinished(SetupState::Manual {
                    reason: e.to_string(),
                });
                return;
            }
        }
    }
}

struct Driver {
    cfg: Config,
    host: String,
    dir: PathBuf,
    endpoint: Option<Endpoint>,
    registration: watch::Receiver<RegistrationState>,
    status: watch::Sender<Vec<PanelCamera>>,
    /// Panels finished in this run (kept across retries).
    done: Vec<bool>,
}

impl Driver {
    fn set(&self, i: usize, state: SetupState) {
        self.status.send_modify(|all| {
            if let Some(p) = all.get_mut(i) {
                p.state = state;
            }
        });
    }

    fn set_unfinished(&self, state: SetupState) {
        for i in 0..self.cfg.panels.len() {
            if !self.done[i] {
                self.set(i, state.clone());
            }
        }
    }

    /// The by-hand steps per panel, for the log.
    fn manual_steps(&self) -> Vec<String> {
        self.cfg
            .panels
            .iter()
            .map(|p| {
                let s = camera_source(&self.cfg, &self.host, p);
                let user = s
                    .username
                    .map(|u| format!(", user {u} with the RTSP password"))
                    .unwrap_or_default();
                format!(
                    "panel {}: open {} and enter stream source {} (RTSP over TCP), still image URL {}{user}",
                    p.name,
                    source::SETUP_LINK,
                    s.stream_source,
                    s.still_image_url
                )
            })
            .collect()
    }

    fn endpoint(&self) -> Result<&Endpoint, HaError> {
        self.endpoint.as_ref().ok_or_else(|| HaError::Unreachable {
            endpoint: "Home Assistant".into(),
            detail: NO_HA.into(),
        })
    }

    /// One pass over every unfinished panel.
    async fn sync(&mut self, shutdown: &CancellationToken) -> Result<(), HaError> {
        self.set_unfinished(SetupState::Working {
            action: "reading Home Assistant's cameras".into(),
        });
        let ep = self.endpoint()?.clone();
        let list = ep
            .rest_ok(&client::list_generic_entries(), REST_TIMEOUT)
            .await?;
        let mut known = Vec::new();
        for (entry_id, title) in plan::entries_from_list(&list) {
            let settings = match read_settings(&ep, &entry_id).await {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::debug!(entry_id, "Home Assistant camera: cannot read settings: {e}");
                    None
                }
            };
            known.push(KnownEntry {
                entry_id,
                title,
                settings,
            });
        }
        let mut stored = store::load(&self.dir).unwrap_or_else(|e| {
            tracing::warn!("Home Assistant camera: {e}");
            Stored::default()
        });
        for i in 0..self.cfg.panels.len() {
            if self.done[i] {
                continue;
            }
            let panel = self.cfg.panels[i].clone();
            // Entries remembered for the other panels are not candidates for this one.
            let others: Vec<&str> = stored
                .cameras
                .iter()
                .filter(|(name, _)| **name != panel.name)
                .map(|(_, r)| r.entry_id.as_str())
                .collect();
            let candidates: Vec<KnownEntry> = known
                .iter()
                .filter(|e| !others.contains(&e.entry_id.as_str()))
                .cloned()
                .collect();
            let remembered = stored.cameras.get(&panel.name).cloned();
            let state = self
                .panel(i, &panel, remembered, &candidates, shutdown)
                .await?;
            if let SetupState::Ready {
                entry_id,
                entity_id,
                ..
            } = &state
            {
                stored.cameras.insert(
                    panel.name.clone(),
                    Remembered {
                        entry_id: entry_id.clone(),
                        entity_id: Some(entity_id.clone()),
                    },
                );
                if let Err(e) = store::save(&self.dir, &stored) {
                    // The camera works; only a restart may then adopt it by URL instead.
                    tracing::warn!("Home Assistant camera: {e}");
                }
            }
            self.done[i] = true;
            self.set(i, state);
        }
        Ok(())
    }

    /// Plans and carries out one panel; its final state.
    async fn panel(
        &mut self,
        i: usize,
        panel: &Panel,
        remembered: Option<Remembered>,
        candidates: &[KnownEntry],
        shutdown: &CancellationToken,
    ) -> Result<SetupState, HaError> {
        let want = camera_source(&self.cfg, &self.host, panel);
        let ep = self.endpoint()?.clone();
        let decision = plan::plan(
            remembered.as_ref().map(|r| r.entry_id.as_str()),
            candidates,
            &want,
        );
        let (entry_id, action, created, adopted) = match decision {
            Plan::Keep { entry_id, adopted } => {
                let action = if adopted { "adopted" } else { "unchanged" };
                (entry_id, action, false, adopted)
            }
            Plan::Update {
                entry_id,
                changed,
                adopted,
            } => {
                self.wait_registered(i, shutdown).await;
                tracing::info!(panel = %panel.name, entry_id, changed = ?changed, "Home Assistant camera: updating the entry (HA tests the stream: one intercom call)");
                self.set(
                    i,
                    SetupState::Working {
                        action: format!("updating {} in Home Assistant", changed.join(", ")),
                    },
                );
                let kind = FlowKind::Update {
                    entry_id: entry_id.clone(),
                };
                run_flow(&ep, Flow::new(kind, want.clone())).await?;
                (entry_id, "updated", false, adopted)
            }
            Plan::Create { remembered_missing } => {
                if let Some(gone) = remembered_missing {
                    tracing::info!(panel = %panel.name, entry_id = gone, "Home Assistant camera: the entry made earlier is gone from Home Assistant; creating a new one (ha_camera: false stops this)");
                }
                self.wait_registered(i, shutdown).await;
                tracing::info!(panel = %panel.name, "Home Assistant camera: creating the Generic Camera (HA tests the stream: one intercom call)");
                self.set(
                    i,
                    SetupState::Working {
                        action: "adding the camera to Home Assistant".into(),
                    },
                );
                let entry_id = run_flow(&ep, Flow::new(FlowKind::Create, want.clone()))
                    .await?
                    .unwrap_or_default();
                (entry_id, "created", true, false)
            }
        };
        let named_before = remembered
            .as_ref()
            .filter(|r| r.entry_id == entry_id)
            .and_then(|r| r.entity_id.clone());
        let (entity_id, note) =
            name_camera(&ep, &entry_id, panel, &want, created, named_before).await;
        tracing::info!(panel = %panel.name, entity_id, entry_id, action, adopted, "Home Assistant camera ready: {} and {}", want.stream_source, want.still_image_url);
        if let Some(n) = &note {
            tracing::warn!(panel = %panel.name, "Home Assistant camera: {n}");
        }
        Ok(SetupState::Ready {
            entity_id,
            entry_id,
            action: action.into(),
            note,
        })
    }

    /// HA's camera test places a call: wait until the intercom registration is up.
    async fn wait_registered(&mut self, i: usize, shutdown: &CancellationToken) {
        let registered = |s: &RegistrationState| matches!(s, RegistrationState::Registered { .. });
        if registered(&self.registration.borrow()) {
            return;
        }
        self.set(
            i,
            SetupState::Waiting {
                reason: "waiting for the intercom registration (HA tests the stream when it adds \
                         the camera)"
                    .into(),
            },
        );
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = self.registration.wait_for(registered) => {}
        }
    }
}

/// Carries out a flow; the entry id for a config flow. An unfinished flow is deleted in HA.
async fn run_flow(ep: &Endpoint, mut flow: Flow) -> Result<Option<String>, HaError> {
    let mut req = flow.start();
    loop {
        let step = match ep.rest(&req, FLOW_STEP_TIMEOUT).await {
            Ok((status, body)) => flow
                .on_reply(&req.path, status, &body)
                .map_err(HaError::from),
            Err(e) => Err(e),
        };
        match step {
            Ok(Next::Send(r)) => req = r,
            Ok(Next::Done { entry_id }) => return Ok(entry_id),
            Err(e) => {
                if let Some(abort) = flow.abort_request() {
                    let _ = ep.rest(&abort, REST_TIMEOUT).await;
                }
                return Err(e);
            }
        }
    }
}

/// An entry's current settings, from its options form (the flow is then deleted unused).
async fn read_settings(ep: &Endpoint, entry_id: &str) -> Result<flow::EntrySettings, HaError> {
    let req = Request {
        method: Method::Post,
        path: "config/config_entries/options/flow".into(),
        body: Some(json!({"handler": entry_id})),
    };
    let body = ep.rest_ok(&req, REST_TIMEOUT).await?;
    match flow::parse_reply(&req.path, &body)? {
        flow::Reply::Form {
            flow_id, fields, ..
        } => {
            let delete = Request {
                method: Method::Delete,
                path: format!("{}/{flow_id}", req.path),
                body: None,
            };
            if let Err(e) = ep.rest(&delete, REST_TIMEOUT).await {
                tracing::debug!("Home Assistant camera: closing the options flow: {e}");
            }
            Ok(flow::current_settings(&fields))
        }
        other => Err(HaError::Flow(flow::FlowError::BadReply {
            path: req.path,
            detail: format!("expected the options form, got {other:?}"),
        })),
    }
}

/// Renames the entity to `camera.<panel>` (see `naming`); its entity id now and a note when the
/// name could not be given. Failures here never undo the camera.
async fn name_camera(
    ep: &Endpoint,
    entry_id: &str,
    panel: &Panel,
    want: &source::CameraSource,
    created: bool,
    named_before: Option<String>,
) -> (String, Option<String>) {
    let target = source::entity_id(panel);
    let mut ws = match ep.websocket().await {
        Ok(ws) => ws,
        Err(e) => {
            return (
                named_before.unwrap_or(target),
                Some(format!("not renamed: {e}")),
            );
        }
    };
    // A new entry's entity appears once HA has set the entry up: poll briefly.
    let mut current = None;
    for _ in 0..20 {
        match ws
            .call(json!({"type": "config/entity_registry/list"}))
            .await
        {
            Ok(list) => current = naming::entity_of_entry(&list, entry_id),
            Err(e) => {
                ws.close().await;
                return (
                    named_before.unwrap_or(target),
                    Some(format!("not renamed: {e}")),
                );
            }
        }
        if current.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let Some(current) = current else {
        ws.close().await;
        return (
            target,
            Some(format!(
                "entry {entry_id} has no camera entity yet: not renamed"
            )),
        );
    };
    // Renamed once already (and maybe renamed again by the user since): leave it.
    let host = naming::url_host(&want.stream_source).unwrap_or("");
    let rename = match named_before {
        Some(_) => None,
        None => naming::rename_target(&current, created, host, panel),
    };
    let mut note = None;
    let mut entity_id = current.clone();
    if let Some(target) = rename {
        match ws
            .call(naming::entity_update(&current, &target, panel))
            .await
        {
            Ok(_) => entity_id = target,
            Err(e) => {
                note = Some(format!(
                    "kept {current}: renaming it to {target} failed ({e}); is {target} taken?"
                ))
            }
        }
        if let Err(e) = ws.call(naming::title_update(entry_id, panel)).await {
            tracing::debug!("Home Assistant camera: entry title: {e}");
        }
    }
    ws.close().await;
    (entity_id, note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_policy() {
        let s = |n| Some(Duration::from_secs(n));
        assert_eq!(retry_delay(Class::Away, 1), s(5));
        assert_eq!(retry_delay(Class::Away, 2), s(10));
        assert_eq!(retry_delay(Class::Away, 4), s(20));
        assert_eq!(retry_delay(Class::Away, 50), s(30));
        assert_eq!(retry_delay(Class::CameraTest, 1), s(30));
        assert_eq!(retry_delay(Class::CameraTest, 2), s(120));
        assert_eq!(retry_delay(Class::CameraTest, 3), None);
        assert_eq!(retry_delay(Class::Permanent, 1), None);
    }

    #[test]
    fn classes() {
        let away = HaError::Unreachable {
            endpoint: "x".into(),
            detail: "refused".into(),
        };
        assert_eq!(classify(&away), Class::Away);
        let test = HaError::Flow(flow::FlowError::Rejected {
            step: "user".into(),
            errors: vec![("stream_source".into(), "timeout".into())],
        });
        assert_eq!(classify(&test), Class::CameraTest);
        let auth = HaError::Unauthorized {
            endpoint: "x".into(),
            status: 401,
            hint: "",
        };
        assert_eq!(classify(&auth), Class::Permanent);
        let form = HaError::Flow(flow::FlowError::UnknownField {
            step: "user".into(),
            field: "x".into(),
        });
        assert_eq!(classify(&form), Class::Permanent);
    }
}
