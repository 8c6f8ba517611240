//! The MQTT test harness: a mosquitto of our own per test (ephemeral port, config in a temp
//! dir, killed by PID), a `Watcher` that records every message on `#`, and a `Rig` with the
//! simulator, the bridge's intercom, hubs, ring recorder, `Doorbell` and the MQTT task.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use c300x_bridge::config::{Config, Lock, Panel};
use c300x_bridge::doorbell::{Doorbell, DoorbellSettings, RecorderSettings, RingRecorder};
use c300x_bridge::homeassistant::{CameraWatch, PanelCamera};
use c300x_bridge::intercom::Intercom;
use c300x_bridge::media::hub::StreamHub;
use c300x_bridge::mqtt::{self, MqttSettings};
use c300x_bridge::sim::{SimConfig, Simulator};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;

use super::T;
use crate::rig::{config_for, intercom};

/// A mosquitto of our own: `mosquitto -c <tmp>/mosquitto.conf`, killed by PID on drop.
pub struct Broker {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Broker {
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = tempfile::tempdir().expect("tmp");
        let mut b = Broker {
            port,
            dir,
            child: None,
        };
        b.spawn();
        b
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("mosquitto.conf")
    }

    fn spawn(&mut self) {
        let conf = format!(
            "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest file {}\n",
            self.port,
            self.dir.path().join("mosquitto.log").display()
        );
        std::fs::write(self.conf(), conf).expect("write conf");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.conf())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto installed (scripts/setup-debian.sh)");
        self.child = Some(child);
        let deadline = Instant::now() + T;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kill (SIGKILL, by PID) and start again on the same port: retained messages are gone.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn settings(&self) -> MqttSettings {
        MqttSettings {
            host: "127.0.0.1".into(),
            port: self.port,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_millis(500),
            ..MqttSettings::default()
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Debug, Clone)]
pub struct Msg {
    pub topic: String,
    pub payload: String,
    /// The payload's bytes (`payload` is its lossy text).
    pub raw: bytes::Bytes,
    pub retain: bool,
    pub at: Instant,
}

/// A test client subscribed to `#`, recording every message.
pub struct Watcher {
    pub client: AsyncClient,
    log: Arc<Mutex<Vec<Msg>>>,
    stop: CancellationToken,
}

impl Watcher {
    pub async fn start(port: u16, name: &str) -> Self {
        let mut opts = MqttOptions::new(name, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        client.subscribe("#", QoS::AtLeastOnce).await.expect("sub");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (l, s) = (log.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    _ = s.cancelled() => return,
                    ev = eventloop.poll() => ev,
                };
                match ev {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if let Ok(mut log) = l.lock() {
                            log.push(Msg {
                                topic: p.topic.clone(),
                                payload: String::from_utf8_lossy(&p.payload).into_owned(),
                                raw: p.payload.clone(),
                                retain: p.retain,
                                at: Instant::now(),
                            });
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        Watcher { client, log, stop }
    }

    pub fn all(&self) -> Vec<Msg> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn on(&self, topic: &str) -> Vec<Msg> {
        self.all()
            .into_iter()
            .filter(|m| m.topic == topic)
            .collect()
    }

    /// Waits until `pred` holds for the log.
    pub async fn wait(&self, what: &str, pred: impl Fn(&[Msg]) -> bool) {
        let deadline = Instant::now() + T;
        loop {
            if pred(&self.all()) {
                return;
            }
            if Instant::now() > deadline {
                let topics: Vec<String> = self
                    .all()
                    .iter()
                    .map(|m| format!("{} = {}", m.topic, m.payload))
                    .collect();
                panic!("timed out waiting for {what}; seen:\n{}", topics.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn publish(&self, topic: &str, payload: &str, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.as_bytes().to_vec())
            .await
            .expect("publish");
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Discovery configs (an empty payload deletes one: not counted).
pub fn configs(msgs: &[Msg]) -> usize {
    msgs.iter()
        .filter(|m| m.topic.starts_with("homeassistant/") && m.topic.ends_with("/config"))
        .filter(|m| !m.payload.is_empty())
        .count()
}

/// Simulator + registered intercom + one hub + the MQTT task on `broker`.
pub struct Rig {
    pub sim: Simulator,
    pub cfg: Config,
    pub intercom: Intercom,
    pub stop: CancellationToken,
    pub mqtt_stop: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
    pub hub: StreamHub,
    pub doorbell: Doorbell,
    /// `clip_dir` (ring pictures and clips).
    pub clips: tempfile::TempDir,
    /// Drives the camera-setup sensor as `homeassistant::run` would.
    pub camera: tokio::sync::watch::Sender<Vec<PanelCamera>>,
    /// `c300x/<id>`.
    pub base: String,
    pub node: String,
}

impl Rig {
    pub async fn start(broker: &Broker) -> Self {
        Self::start_with(broker, SimConfig::default(), |_| {}, |_| {}).await
    }

    /// `sim_cfg` for the simulator, `tune` on the bridge's config, `bell` on the doorbell's
    /// settings (e.g. a short "missed" threshold).
    pub async fn start_with(
        broker: &Broker,
        sim_cfg: SimConfig,
        tune: impl FnOnce(&mut Config),
        bell: impl FnOnce(&mut DoorbellSettings),
    ) -> Self {
        let sim = Simulator::start(sim_cfg).await.expect("sim");
        let mut cfg = config_for(&sim);
        let (intercom, stop) = intercom(&cfg).await;
        cfg.locks = vec![Lock {
            name: "door".into(),
            where_: 20,
            pulse: Duration::from_millis(300),
        }];
        cfg.panels = vec![Panel {
            name: "doorbell".into(),
            devaddr: 20,
        }];
        let clips = tempfile::tempdir().expect("tmp");
        cfg.clip_dir = clips.path().to_owned();
        tune(&mut cfg);
        let hubs: Vec<StreamHub> = cfg
            .panels
            .iter()
            .map(|p| {
                StreamHub::start(
                    p.clone(),
                    intercom.clone(),
                    crate::rig::quick_hub(),
                    stop.clone(),
                )
            })
            .collect();
        let hub = hubs[0].clone();
        let names: Vec<String> = cfg.panels.iter().map(|p| p.name.clone()).collect();
        let recorder = RingRecorder::start(RecorderSettings::from_config(&cfg), &names, &stop);
        let mut bell_settings = DoorbellSettings::from_config(&cfg);
        bell(&mut bell_settings);
        let (doorbell, bell_task) = Doorbell::new(
            bell_settings,
            cfg.panels.clone(),
            hubs.clone(),
            intercom.clone(),
            recorder,
            stop.clone(),
        );
        tokio::spawn(bell_task);
        let id = c300x_bridge::mqtt::topics::device_id(sim.domain()).expect("id");
        let mqtt_stop = CancellationToken::new();
        let (camera, camera_watch) = CameraWatch::channel(&cfg, "127.0.0.1");
        let task = tokio::spawn(mqtt::run(
            broker.settings(),
            cfg.clone(),
            intercom.clone(),
            hubs,
            camera_watch,
            Some(doorbell.clone()),
            mqtt_stop.clone(),
        ));
        Rig {
            sim,
            cfg,
            intercom,
            stop,
            mqtt_stop,
            task,
            hub,
            doorbell,
            clips,
            camera,
            base: format!("c300x/{id}"),
            node: format!("c300x_{id}"),
        }
    }

    pub fn t(&self, rest: &str) -> String {
        format!("{}/{rest}", self.base)
    }

    pub fn unlock_frames(&self) -> Vec<String> {
        self.sim
            .stats()
            .message_bodies()
            .into_iter()
            .filter(|b| b.starts_with("*8*19*") || b.starts_with("*8*20*"))
            .collect()
    }

    pub async fn stop(self) {
        self.mqtt_stop.cancel();
        let _ = tokio::time::timeout(T, self.task).await;
        self.stop.cancel();
    }
}
