//! The HTTP server: every endpoint and error path through `router(state)` with `oneshot`
//! (`router`), and real clients against `run(listener, …)` and the simulator (`clients`):
//! ffprobe on HLS, the 1 s first segment (`hls`), headless Chromium on the status page, MJPEG
//! parts, snapshots; push-to-talk
//! over the WebSocket and from Chromium's fake microphone (`talk`).

mod clients;
mod hls;
mod router;
mod talk;

pub(crate) use clients::{browser_ready, browser_script};

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use c300x_bridge::config::{Config, Lock, Secret};
use c300x_bridge::doorbell::{Doorbell, DoorbellSettings, RecorderSettings, RingRecorder};
use c300x_bridge::media::hub::{HubSettings, StreamHub};
use c300x_bridge::servers::http::{DemoHooks, HttpState};
use c300x_bridge::sim::{SimConfig, SimStats, Simulator};
use tokio_util::sync::CancellationToken;

use crate::rig::{config_for, intercom};

/// A simulator, the bridge's intercom and one hub ("doorbell", DEVADDR 20) behind an `HttpState`.
pub struct Rig {
    pub sim: Simulator,
    pub state: HttpState,
    pub stop: CancellationToken,
    /// `clip_dir` of the doorbell, when there is one (removed with the rig).
    pub _clips: Option<tempfile::TempDir>,
}

pub fn quick_hub() -> HubSettings {
    HubSettings {
        linger: Duration::from_millis(800),
        start_timeout: Duration::from_secs(8),
        retry_backoff: Duration::from_millis(200),
        ..HubSettings::default()
    }
}

pub async fn rig(token: Option<&str>, demo: Option<DemoHooks>) -> Rig {
    rig_with(token, demo, false).await
}

/// [`rig`], with the doorbell (ring recorder + `Doorbell`) when `doorbell` is set.
pub async fn rig_with(token: Option<&str>, demo: Option<DemoHooks>, doorbell: bool) -> Rig {
    let sim = Simulator::start(SimConfig::default()).await.expect("sim");
    let base = config_for(&sim);
    let (intercom, stop) = intercom(&base).await;
    let config = Config {
        api_token: token.map(Secret::new),
        locks: vec![Lock {
            name: "door".into(),
            where_: 20,
            pulse: Duration::from_millis(100),
        }],
        start_timeout: Duration::from_secs(8),
        ..base
    };
    let hubs: Vec<StreamHub> = config
        .panels
        .iter()
        .map(|p| StreamHub::start(p.clone(), intercom.clone(), quick_hub(), stop.clone()))
        .collect();
    let (doorbell, clips) = if doorbell {
        let clips = tempfile::tempdir().expect("tmp");
        let cfg = Config {
            clip_dir: clips.path().to_owned(),
            ..config.clone()
        };
        let names: Vec<String> = cfg.panels.iter().map(|p| p.name.clone()).collect();
        let recorder = RingRecorder::start(RecorderSettings::from_config(&cfg), &names, &stop);
        let (bell, task) = Doorbell::new(
            DoorbellSettings::from_config(&cfg),
            cfg.panels.clone(),
            hubs.clone(),
            intercom.clone(),
            recorder,
            stop.clone(),
        );
        tokio::spawn(task);
        (Some(bell), Some(clips))
    } else {
        (None, None)
    };
    let state = HttpState {
        hubs,
        intercom,
        config: Arc::new(config),
        demo,
        camera: c300x_bridge::homeassistant::CameraWatch::none(),
        stats: Default::default(),
        doorbell,
    };
    Rig {
        sim,
        state,
        stop,
        _clips: clips,
    }
}

pub fn stat(sim: &Simulator, f: impl Fn(&SimStats) -> &std::sync::atomic::AtomicU64) -> u64 {
    f(&sim.stats()).load(Ordering::SeqCst)
}

pub use crate::rig::eventually;

/// Width and height from a baseline JPEG's SOF0 marker, after checking SOI and EOI.
pub fn jpeg_size(jpeg: &[u8]) -> Option<(u16, u16)> {
    if jpeg.len() < 4 || jpeg[..2] != [0xff, 0xd8] || jpeg[jpeg.len() - 2..] != [0xff, 0xd9] {
        return None;
    }
    let mut i = 2;
    while i + 9 < jpeg.len() {
        if jpeg[i] != 0xff {
            return None;
        }
        let marker = jpeg[i + 1];
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        if (0xc0..=0xc2).contains(&marker) {
            let h = u16::from_be_bytes([jpeg[i + 5], jpeg[i + 6]]);
            let w = u16::from_be_bytes([jpeg[i + 7], jpeg[i + 8]]);
            return Some((w, h));
        }
        i += 2 + len;
    }
    None
}
