//! MQTT and Home Assistant discovery: the connection (rumqttc, Last Will, reconnect with backoff)
//! and the public entry points `run` / `remove_device`. What is published and how commands act
//! lives in `bridge.rs`; payloads in `discovery.rs` (pure); topic names in `topics.rs`; the
//! Supervisor's broker lookup in `supervisor.rs`. home-assistant.md §0–§2 is the reference.

mod bridge;
pub mod discovery;
pub mod supervisor;
pub mod topics;

use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet,
    Publish, QoS,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Secret};
use crate::doorbell::Doorbell;
use crate::homeassistant::CameraWatch;
use crate::intercom::Intercom;
use crate::media::hub::StreamHub;
use topics::Topics;

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("no device id: sip_domain `{sip_domain}` has no first label (set sip_domain)")]
    NoDeviceId { sip_domain: String },
    #[error("MQTT broker lookup through the Supervisor failed: {detail}")]
    Supervisor { detail: String },
    #[error("mqtts:// needs a build with the `tls` cargo feature")]
    TlsUnsupported,
    #[error("MQTT broker {broker}: {detail}")]
    Broker { broker: String, detail: String },
}

/// Largest MQTT packet we send or take (a ring's JPEG is 10–60 KiB; mosquitto allows 256 MiB).
const MAX_PACKET: usize = 1 << 20;

/// How to reach the broker. `Debug` masks the password.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// First wait after a lost connection; doubles up to `reconnect_max`.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub keep_alive: Duration,
}

impl Default for MqttSettings {
    fn default() -> Self {
        Self {
            host: "localhost".into(),
            port: 1883,
            tls: false,
            user: None,
            password: None,
            reconnect_min: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            keep_alive: Duration::from_secs(30),
        }
    }
}

impl MqttSettings {
    /// The broker from `mqtt_url` / `mqtt_user` / `mqtt_password`; `None` when no URL is set.
    pub fn from_config(cfg: &Config) -> Option<Self> {
        let url = cfg.mqtt_url.as_ref()?;
        Some(Self {
            host: url.host.clone(),
            port: url.port,
            tls: url.tls,
            user: cfg.mqtt_user.clone(),
            password: cfg.mqtt_password.clone(),
            ..Self::default()
        })
    }

    /// Inside the add-on: the broker the Supervisor offers (`services: mqtt:need|want`).
    /// `Ok(None)` outside an add-on (no `SUPERVISOR_TOKEN`) or when it offers no MQTT service.
    pub async fn from_supervisor() -> Result<Option<Self>, MqttError> {
        match std::env::var("SUPERVISOR_TOKEN") {
            Ok(token) if !token.is_empty() => {
                supervisor::lookup(supervisor::SUPERVISOR_ADDR, &token).await
            }
            _ => Ok(None),
        }
    }

    fn broker(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// rumqttc options: clean session (no queued commands from a past session), credentials,
    /// TLS when asked (and built in).
    fn options(&self, client_id: String) -> Result<MqttOptions, MqttError> {
        let mut opts = MqttOptions::new(client_id, self.host.clone(), self.port);
        // rumqttc's 10 KiB default is too small for a ring picture (raw JPEG on the image topic):
        // a larger publish fails and drops the connection.
        opts.set_keep_alive(self.keep_alive)
            .set_clean_session(true)
            .set_max_packet_size(MAX_PACKET, MAX_PACKET);
        if let Some(user) = &self.user {
            let password = self.password.as_ref().map(Secret::expose).unwrap_or("");
            opts.set_credentials(user.clone(), password.to_owned());
        }
        if self.tls {
            #[cfg(feature = "tls")]
            opts.set_transport(rumqttc::Transport::tls_with_default_config());
            #[cfg(not(feature = "tls"))]
            return Err(MqttError::TlsUnsupported);
        }
        Ok(opts)
    }
}

/// Runs the MQTT side until `shutdown`: discovery, states, commands, reconnects. Errors that
/// stop it (no device id, TLS not built in) are logged; a broker that is away is retried forever.
pub async fn run(
    settings: MqttSettings,
    cfg: Config,
    intercom: Intercom,
    hubs: Vec<StreamHub>,
    camera: CameraWatch,
    doorbell: Option<Doorbell>,
    shutdown: CancellationToken,
) {
    let topics = match Topics::from_config(&cfg) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("MQTT disabled: {e}");
            return;
        }
    };
    let mut opts = match settings.options(format!("c300x-bridge-{}", topics.node)) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!("MQTT disabled: {e}");
            return;
        }
    };
    opts.set_last_will(LastWill::new(
        topics.availability(),
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    let (client, eventloop) = AsyncClient::new(opts, 1024);
    let (conn_tx, conn_rx) = mpsc::channel(256);
    let driver_stop = CancellationToken::new();
    let driver = tokio::spawn(drive(
        eventloop,
        conn_tx,
        driver_stop.clone(),
        settings.clone(),
    ));
    tracing::info!(broker = %settings.broker(), node = %topics.node, "MQTT starting");
    let site = discovery::Site {
        host: cfg
            .advertise_address
            .unwrap_or_else(|| intercom.media_ip())
            .to_string(),
        sw_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    bridge::Bridge::new(
        client.clone(),
        topics.clone(),
        cfg,
        site,
        intercom,
        hubs,
        camera,
        doorbell,
    )
    .run(conn_rx, shutdown)
    .await;
    // A clean goodbye: `offline` ourselves (the Last Will only fires on an unclean end).
    let _ = client
        .publish(topics.availability(), QoS::AtLeastOnce, true, "offline")
        .await;
    let _ = client.disconnect().await;
    if tokio::time::timeout(Duration::from_secs(2), driver)
        .await
        .is_err()
    {
        driver_stop.cancel();
    }
    tracing::info!("MQTT stopped");
}

/// What the connection driver tells the bridge.
enum Conn {
    Connected,
    Lost(String),
    Message(Publish),
}

/// Polls the event loop (rumqttc reconnects on the next poll after an error), with backoff.
/// Ends on `stop` or once our DISCONNECT went out.
async fn drive(
    mut eventloop: EventLoop,
    tx: mpsc::Sender<Conn>,
    stop: CancellationToken,
    settings: MqttSettings,
) {
    let mut delay = settings.reconnect_min;
    let mut logged_down = false;
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            e = eventloop.poll() => e,
        };
        let note = match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                delay = settings.reconnect_min;
                logged_down = false;
                tracing::info!(broker = %settings.broker(), "MQTT connected");
                Conn::Connected
            }
            Ok(Event::Incoming(Packet::Publish(p))) => Conn::Message(p),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => continue,
            Err(e) => {
                let detail = describe(&e);
                if logged_down {
                    tracing::debug!(broker = %settings.broker(), %detail, "MQTT still down");
                } else {
                    tracing::warn!(broker = %settings.broker(), %detail, "MQTT connection lost; retrying with backoff");
                    logged_down = true;
                }
                let _ = tx.send(Conn::Lost(detail)).await;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(settings.reconnect_max);
                continue;
            }
        };
        if tx.send(note).await.is_err() {
            return;
        }
    }
}

fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => {
            format!("broker refused the connection: {code:?}")
        }
        other => other.to_string(),
    }
}

/// `c300x-bridge mqtt --remove`: empty retained payloads on every discovery config of `cfg`
/// (HA then deletes the device), on our retained states and on the availability topic.
pub async fn remove_device(settings: &MqttSettings, cfg: &Config) -> Result<(), MqttError> {
    let topics = Topics::from_config(cfg)?;
    let site = discovery::Site {
        host: "localhost".into(),
        sw_version: String::new(),
    };
    let mut clear: Vec<String> = discovery::entity_configs(cfg, &topics, &site)
        .into_iter()
        .map(|c| c.topic)
        .collect();
    clear.extend(discovery::retired_config_topics(&topics));
    clear.extend(bridge::retained_state_topics(cfg, &topics));
    clear.push(topics.availability());
    let opts = settings.options(format!("c300x-bridge-{}-remove", topics.node))?;
    let (client, mut eventloop) = AsyncClient::new(opts, clear.len() + 8);
    let broker_err = |detail: String| MqttError::Broker {
        broker: settings.broker(),
        detail,
    };
    for topic in &clear {
        client
            .publish(topic.as_str(), QoS::AtLeastOnce, true, Vec::<u8>::new())
            .await
            .map_err(|e| broker_err(e.to_string()))?;
    }
    let work = async {
        let mut acked = 0;
        while acked < clear.len() {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => return Err(broker_err(describe(&e))),
            }
        }
        let _ = client.disconnect().await;
        // Let the DISCONNECT go out.
        while let Ok(ev) = eventloop.poll().await {
            if matches!(ev, Event::Outgoing(Outgoing::Disconnect)) {
                break;
            }
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(15), work)
        .await
        .map_err(|_| broker_err("no answer within 15 s".into()))??;
    tracing::info!(topics = clear.len(), node = %topics.node, "device removed from Home Assistant");
    Ok(())
}
