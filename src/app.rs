//! Wiring and supervision: builds the bridge from `Config` — the intercom (SIP + media), one
//! stream hub per panel, the doorbell (rings, their pictures and clips), the RTSP and HTTP
//! servers and MQTT — runs each as a named, supervised
//! component (one that ends on its own or panics stops the bridge: non-zero exit, one log line
//! naming it), and shuts down in order within 5 s: servers and hubs (BYE), then the SIP agent
//! (un-REGISTER), then whatever is left is aborted.

pub mod memory;
mod supervisor;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::doorbell::{Doorbell, DoorbellSettings, RecorderSettings, RingRecorder};
use crate::homeassistant;
use crate::intercom::Intercom;
use crate::intercom::media::PortPool;
use crate::intercom::sip::RegistrationState;
use crate::media::hub::{HubSettings, StreamHub};
use crate::mqtt::{self, MqttSettings};
use crate::servers::access;
use crate::servers::http::{self, DemoHooks, HttpState};
use crate::servers::limits::{Caps, ServerStats};
use crate::servers::rtsp::{self, RtspSettings};

pub use supervisor::{Components, Exit, test_panic};

/// Servers, MQTT and hubs (their BYEs) get this long after the stop...
const STOP_COMPONENTS: Duration = Duration::from_secs(3);
/// ...and the SIP agent (BYE, un-REGISTER) until this, counted from the same start (`main`
/// then gives leftovers 0.3 s, `demo` its simulator 0.5 s: 5 s in all).
const STOP_ALL: Duration = Duration::from_millis(4200);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Intercom(#[from] crate::intercom::IntercomError),
    #[error("cannot listen on {key} {addr}: {source} (is another program using it? change {key})")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// Already logged, once, when it happened.
    #[error("component `{component}` {exit}")]
    ComponentDied { component: String, exit: Exit },
}

/// Where the servers listen without `bind_address`: every interface (the add-on runs with host
/// networking).
const LISTEN_IP: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

async fn listen(key: &'static str, ip: Option<IpAddr>, port: u16) -> Result<TcpListener, AppError> {
    let addr = SocketAddr::new(ip.unwrap_or(LISTEN_IP), port);
    TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { key, addr, source })
}

/// Runs the bridge until `shutdown` fires.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> Result<(), AppError> {
    run_with(cfg, shutdown, None).await
}

/// `run`, with the simulator's hooks when this is `demo`.
pub async fn run_with(
    cfg: Config,
    shutdown: CancellationToken,
    demo: Option<DemoHooks>,
) -> Result<(), AppError> {
    cfg.require_intercom()?;
    // Bind first: a port in use is a clear start-up error, before anything talks to the intercom.
    let rtsp_listener = listen("rtsp_port", cfg.bind_address, cfg.rtsp_port).await?;
    let mut http_listeners = vec![listen("http_port", cfg.bind_address, cfg.http_port).await?];
    if let Some(port) = cfg.ingress_port {
        // The Supervisor's ingress proxy connects from its own network: this listener is on every
        // interface whatever `bind_address` says (the same router and access rules apply).
        http_listeners.push(listen("ingress_port", None, port).await?);
    }
    let secrets = access::secrets(&cfg);
    if !secrets.required() {
        tracing::warn!(
            "no credentials configured (rtsp_user/rtsp_password, api_token): the camera, snapshots and the door are open to anyone who can reach the RTSP and HTTP ports"
        );
    }
    let caps = Caps {
        total: cfg.max_connections as usize,
        per_ip: cfg.max_connections_per_ip as usize,
        ..Caps::default()
    };
    let stats = Arc::new(ServerStats::default());

    let sip_stop = CancellationToken::new();
    let hub_stop = CancellationToken::new();
    let server_stop = CancellationToken::new();
    // A signal during start-up (a slow DNS answer for the intercom) stops it at once.
    let intercom = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        r = Intercom::start(&cfg, sip_stop.clone()) => r?,
    };
    let mut sip = Components::default();
    let handle = intercom.sip().clone();
    sip.spawn("sip", async move { handle.stopped().await });

    let mut parts = Components::default();
    let mut hubs = Vec::new();
    for panel in &cfg.panels {
        let settings = HubSettings::from_config(&cfg);
        let (hub, task) =
            StreamHub::new(panel.clone(), intercom.clone(), settings, hub_stop.clone());
        parts.spawn(format!("hub:{}", panel.name), async move {
            task.await;
            Ok(())
        });
        hubs.push(hub);
    }
    // The doorbell (issue 16): each ring's preview, picture, clip and history, and its end.
    let panel_names: Vec<String> = cfg.panels.iter().map(|p| p.name.clone()).collect();
    let recorder =
        RingRecorder::start(RecorderSettings::from_config(&cfg), &panel_names, &hub_stop);
    let (doorbell, bell) = Doorbell::new(
        DoorbellSettings::from_config(&cfg),
        cfg.panels.clone(),
        hubs.clone(),
        intercom.clone(),
        recorder,
        server_stop.clone(),
    );
    parts.spawn("doorbell", bell);
    // The Generic Camera in Home Assistant (issue 15): HA reaches us at the advertised address.
    let camera_host = cfg
        .advertise_address
        .unwrap_or_else(|| intercom.media_ip())
        .to_string();
    let (camera_tx, camera) = homeassistant::CameraWatch::channel(&cfg, &camera_host);

    let rtsp_settings = RtspSettings {
        secrets,
        caps,
        stats: stats.clone(),
        ..RtspSettings::new(PortPool::new(cfg.rtp_port_min, cfg.rtp_port_max))
    };
    let rtsp = rtsp::run(
        rtsp_listener,
        hubs.clone(),
        rtsp_settings,
        server_stop.clone(),
    );
    parts.spawn("rtsp", async move {
        rtsp.await;
        Ok(())
    });
    let state = HttpState {
        hubs: hubs.clone(),
        intercom: intercom.clone(),
        config: Arc::new(cfg.clone()),
        demo,
        camera: camera.clone(),
        stats,
        doorbell: Some(doorbell.clone()),
    };
    let web = http::run_all(http_listeners, state, caps, server_stop.clone());
    parts.spawn("http", async move {
        web.await;
        Ok(())
    });

    let mqtt_settings = match MqttSettings::from_config(&cfg) {
        Some(s) => Some(s),
        None => tokio::select! {
            _ = shutdown.cancelled() => None,
            r = MqttSettings::from_supervisor() => r.unwrap_or_else(|e| {
                tracing::warn!("MQTT: the Supervisor did not give a broker: {e}");
                None
            }),
        },
    };
    match mqtt_settings {
        Some(m) => {
            let task = mqtt::run(
                m,
                cfg.clone(),
                intercom.clone(),
                hubs.clone(),
                camera.clone(),
                Some(doorbell.clone()),
                server_stop.clone(),
            );
            parts.spawn("mqtt", async move {
                task.await;
                Ok(())
            });
        }
        None => tracing::info!("MQTT off: no broker configured (set mqtt_url)"),
    }
    // Freed call buffers back to the kernel once every hub is idle (issue 13: idle RSS).
    parts.spawn(
        "memory",
        memory::trim_when_idle(hubs.clone(), server_stop.clone()),
    );
    parts.spawn(
        "events",
        log_registration(intercom.clone(), server_stop.clone()),
    );
    // A one-off job (it returns once every camera is set up or handed to the user); it stays
    // tracked until the servers stop, so finishing is not mistaken for a component dying.
    let camera_job = homeassistant::run(
        cfg.clone(),
        camera_host,
        intercom.sip().registration(),
        camera_tx,
        server_stop.clone(),
    );
    let camera_stop = server_stop.clone();
    parts.spawn("homeassistant", async move {
        camera_job.await;
        camera_stop.cancelled().await;
        Ok(())
    });
    tracing::info!(
        intercom = cfg.intercom_host.as_deref().unwrap_or_default(),
        port = cfg.intercom_sip_port,
        transport = cfg.sip_transport.as_str(),
        media_ip = %intercom.media_ip(),
        rtsp_port = cfg.rtsp_port,
        http_port = cfg.http_port,
        ingress_port = cfg.ingress_port,
        "bridge started"
    );

    // Until the signal, or a component that ends: either way everything stops.
    let died = tokio::select! {
        _ = shutdown.cancelled() => None,
        Some(exit) = parts.next_exit() => Some(exit),
        Some(exit) = sip.next_exit() => Some(exit),
    };
    if let Some((name, exit)) = &died {
        tracing::error!("component `{name}` {exit}; stopping the bridge");
    }

    // Orderly stop, bounded: no new viewers and every call's BYE, then un-REGISTER.
    let start = Instant::now();
    server_stop.cancel();
    hub_stop.cancel();
    let late = parts.stop_by(start + STOP_COMPONENTS).await;
    if !late.is_empty() {
        tracing::warn!(?late, "components did not stop in time: aborted");
    }
    if tokio::time::timeout_at(start + STOP_ALL, intercom.sip().shutdown())
        .await
        .is_err()
    {
        tracing::warn!("the SIP agent did not finish its BYEs and un-REGISTER in time");
    }
    sip_stop.cancel();
    sip.stop_by(start + STOP_ALL).await;
    tracing::info!(ms = start.elapsed().as_millis() as u64, "bridge stopped");
    match died {
        Some((component, exit)) => Err(AppError::ComponentDied { component, exit }),
        None => Ok(()),
    }
}

/// Logs registration changes until `stop` (ring ends are logged once, by the SIP agent).
async fn log_registration(intercom: Intercom, stop: CancellationToken) -> Result<(), String> {
    let mut registration = intercom.sip().registration();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            changed = registration.changed() => {
                if changed.is_err() {
                    // The SIP agent is gone: its own watcher reports that.
                    stop.cancelled().await;
                    return Ok(());
                }
                let state = registration.borrow_and_update().clone();
                match state {
                    RegistrationState::Registered { expires, .. } => tracing::info!(expires, "registered with the intercom"),
                    RegistrationState::Failed { reason } => tracing::warn!(%reason, "registration failed; `c300x-bridge check` tells which intercom setting is missing"),
                    other => tracing::debug!(?other, "registration"),
                }
            }
        }
    }
}

/// What a user can connect to, one line each, for `demo` and the logs.
pub fn endpoints(cfg: &Config) -> Vec<String> {
    let host = cfg
        .advertise_address
        .map(|a| a.to_string())
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    let mut lines = vec![format!("web page      http://{host}:{}/", cfg.http_port)];
    for p in &cfg.panels {
        lines.push(format!(
            "{:<13} rtsp://{host}:{}/{}",
            format!("{} RTSP", p.name),
            cfg.rtsp_port,
            p.name
        ));
        lines.push(format!(
            "{:<13} http://{host}:{}/api/{}/hls/index.m3u8",
            format!("{} HLS", p.name),
            cfg.http_port,
            p.name
        ));
        lines.push(format!(
            "{:<13} http://{host}:{}/api/{}/snapshot.jpg",
            format!("{} still", p.name),
            cfg.http_port,
            p.name
        ));
    }
    lines
}
