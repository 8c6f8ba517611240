//! The doorbell over MQTT (issue 16, home-assistant.md §2): each `DoorbellEvent` becomes the
//! panel's `event` (`ring`, `answered`, `missed`, `ended`; never retained), its retained
//! Ringing state (ON exactly while the ring is pending) and its retained "Last ring" image
//! (raw JPEG); the per-panel Answer / Hang up / Reject buttons act through the `Doorbell`; the
//! Indoor ringer switch sends the mute frame, then the status query, and shows what the unit
//! answers — unknown when it does not (unverified over SIP, c300x-protocol.md §8).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::broadcast;

use super::{Bridge, Update};
use crate::doorbell::{DoorbellEvent, RingId, RingInfo, RingOutcome};
use crate::mqtt::discovery::{self, RingEvent};
use crate::mqtt::topics::{DoorbellCommand, RingAction};
use crate::proto::openwebnet;

/// How long the unit has to answer the ringer status query.
const RINGER_REPLY: Duration = Duration::from_secs(3);
/// Clips remembered for the events that follow them.
const CLIPS: usize = 32;

/// The clips of recent rings.
#[derive(Default)]
pub(super) struct Clips(VecDeque<(RingId, PathBuf)>);

impl Clips {
    fn add(&mut self, ring_id: RingId, path: PathBuf) {
        self.0.push_back((ring_id, path));
        while self.0.len() > CLIPS {
            self.0.pop_front();
        }
    }

    fn of(&self, ring_id: &RingId) -> Option<&PathBuf> {
        self.0
            .iter()
            .rev()
            .find(|(id, _)| id == ring_id)
            .map(|(_, p)| p)
    }
}

/// The next doorbell event (pending forever without a doorbell).
pub(super) async fn next(
    rx: &mut Option<broadcast::Receiver<DoorbellEvent>>,
) -> Result<DoorbellEvent, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Bridge {
    pub(super) async fn on_doorbell(&mut self, ev: DoorbellEvent) {
        match ev {
            DoorbellEvent::Ring(ring) => {
                self.ring_event("ring", &ring, None).await;
                let t = self.topics.panel_ringing(&ring.panel.name);
                self.set_state(t, "ON").await;
                let t = self.topics.last_ring();
                self.set_state(t, &discovery::rfc3339(ring.at)).await;
            }
            DoorbellEvent::Picture { ring, jpeg, .. } => {
                let topic = self.topics.ring_image(&ring.panel.name);
                self.publish_bytes(&topic, true, jpeg.to_vec()).await;
                self.images.insert(topic, jpeg);
            }
            DoorbellEvent::Clip { ring, path } => self.clips.add(ring.ring_id, path),
            DoorbellEvent::RingEnded { ring, outcome } => {
                let t = self.topics.panel_ringing(&ring.panel.name);
                self.set_state(t, "OFF").await;
                if let Some(event_type) = outcome.event_type() {
                    self.ring_event(event_type, &ring, Some(outcome)).await;
                }
            }
            DoorbellEvent::CallEnded(ring) => {
                self.ring_event("ended", &ring, Some(RingOutcome::AnsweredHere))
                    .await;
            }
        }
    }

    async fn ring_event(
        &self,
        event_type: &'static str,
        ring: &RingInfo,
        outcome: Option<RingOutcome>,
    ) {
        let payload = discovery::ring_event(
            &self.cfg,
            &self.site,
            &RingEvent {
                event_type,
                ring_id: &ring.ring_id,
                panel: &ring.panel,
                at: ring.at,
                attributed: ring.attributed,
                clip: self.clips.of(&ring.ring_id).map(PathBuf::as_path),
                outcome: outcome.map(RingOutcome::as_str),
            },
        );
        let topic = self.topics.doorbell(&ring.panel.name);
        self.publish(&topic, false, &payload).await;
    }

    pub(super) fn on_doorbell_command(
        &mut self,
        command: DoorbellCommand,
        topic: &str,
        payload: &str,
    ) {
        match command {
            DoorbellCommand::Ring { panel, action } if payload == "PRESS" => {
                self.ring_action(panel, action)
            }
            DoorbellCommand::Ringer if matches!(payload, "ON" | "OFF") => {
                self.ringer(payload == "OFF")
            }
            _ => tracing::warn!(topic, payload, "MQTT: unknown command payload; ignored"),
        }
    }

    fn ring_action(&mut self, panel: usize, action: RingAction) {
        let (Some(doorbell), Some(panel)) = (self.doorbell.clone(), self.cfg.panels.get(panel))
        else {
            return;
        };
        let name = panel.name.clone();
        self.tasks.spawn(async move {
            let result = match action {
                RingAction::Answer => doorbell.answer(&name).await.map(drop),
                RingAction::HangUp => doorbell.hang_up(&name),
                RingAction::Reject => doorbell.reject(&name).await.map(drop),
            };
            match result {
                Ok(()) => {
                    tracing::info!(panel = %name, action = action.key(), "doorbell: done from MQTT")
                }
                Err(e) => tracing::warn!(panel = %name, action = action.key(), "doorbell: {e}"),
            }
        });
    }

    /// Mute (`*#8**#33*0##`) or ring (`*#8**#33*1##`), then ask (`*#8**33##`): the state is
    /// the unit's answer, or unknown when none comes.
    fn ringer(&mut self, muted: bool) {
        let (intercom, tx, topic) = (
            self.intercom.clone(),
            self.updates_tx.clone(),
            self.topics.ringer_state(),
        );
        self.tasks.spawn(async move {
            let mut replies = intercom.sip().messages();
            let sent = async {
                intercom.sip().message(&openwebnet::ringer(muted)).await?;
                intercom
                    .sip()
                    .message(openwebnet::RINGER_STATUS_REQUEST)
                    .await
            };
            if let Err(e) = sent.await {
                tracing::warn!("indoor ringer {}: {e}", if muted { "mute" } else { "on" });
            }
            let reply = tokio::time::timeout(RINGER_REPLY, async {
                loop {
                    match replies.recv().await {
                        Ok(m) => {
                            if let openwebnet::Frame::RingerStatus { muted } =
                                openwebnet::Frame::parse(&m.body)
                            {
                                return Some(muted);
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            })
            .await
            .ok()
            .flatten();
            if reply.is_none() {
                tracing::info!("indoor ringer: the unit did not say its state; shown as unknown");
            }
            let _ = tx
                .send(Update::State {
                    topic,
                    payload: discovery::ringer_state(reply).to_owned(),
                })
                .await;
        });
    }
}
