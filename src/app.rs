//! Wiring: builds the bridge from `Config` — the intercom (SIP + media), one stream hub per
//! panel, the RTSP and HTTP servers and MQTT — hands each its part, and shuts down in order:
//! servers stop taking viewers, hubs hang up (BYE), the SIP agent un-registers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::intercom::Intercom;
use crate::intercom::media::PortPool;
use crate::intercom::sip::{RegistrationState, RingEvent};
use crate::media::hub::{HubState, StreamHub};
use crate::mqtt::{self, MqttSettings};
use crate::servers::access;
use crate::servers::http::{self, DemoHooks, HttpState};
use crate::servers::limits::{Caps, ServerStats};
use crate::servers::rtsp::{self, RtspSettings};

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
    let http_listener = listen("http_port", cfg.bind_address, cfg.http_port).await?;
    let secrets = access::secrets(&cfg);
    if !secrets.required() {
        tracing::warn!(
            "no credentials configured (rtsp_user/rtsp_password, api_token): the camera, snapshots and the door are open to anyone who can reach the RTSP and HTTP ports"
        );
    }
    let caps = Caps {
        total: cfg.max_connections as usize,
        per_ip: cfg.max_connections_per_ip as usize,
    };
    let stats = Arc::new(ServerStats::default());

    let sip_stop = CancellationToken::new();
    let hub_stop = CancellationToken::new();
    let server_stop = CancellationToken::new();
    let intercom = Intercom::start(&cfg, sip_stop.clone()).await?;
    let hubs = StreamHub::for_panels(&cfg, &intercom, &hub_stop);

    let rtsp_settings = RtspSettings {
        secrets,
        caps,
        stats: stats.clone(),
        ..RtspSettings::new(PortPool::new(cfg.rtp_port_min, cfg.rtp_port_max))
    };
    let mut tasks = vec![tokio::spawn(rtsp::run(
        rtsp_listener,
        hubs.clone(),
        rtsp_settings,
        server_stop.clone(),
    ))];
    let state = HttpState {
        hubs: hubs.clone(),
        intercom: intercom.clone(),
        config: Arc::new(cfg.clone()),
        demo,
        stats,
    };
    tasks.push(tokio::spawn(http::run(
        http_listener,
        state,
        caps,
        server_stop.clone(),
    )));

    let mqtt_settings = match MqttSettings::from_config(&cfg) {
        Some(s) => Some(s),
        None => match MqttSettings::from_supervisor().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("MQTT: the Supervisor did not give a broker: {e}");
                None
            }
        },
    };
    match mqtt_settings {
        Some(m) => tasks.push(tokio::spawn(mqtt::run(
            m,
            cfg.clone(),
            intercom.clone(),
            hubs.clone(),
            server_stop.clone(),
        ))),
        None => tracing::info!("MQTT off: no broker configured (set mqtt_url)"),
    }
    tracing::info!(
        intercom = cfg.intercom_host.as_deref().unwrap_or_default(),
        port = cfg.intercom_sip_port,
        transport = cfg.sip_transport.as_str(),
        media_ip = %intercom.media_ip(),
        rtsp_port = cfg.rtsp_port,
        http_port = cfg.http_port,
        "bridge started"
    );

    log_events(&intercom, &shutdown).await;

    // Orderly stop: no new viewers, then every call gets its BYE, then un-REGISTER.
    server_stop.cancel();
    hub_stop.cancel();
    wait_hubs_idle(&hubs, Duration::from_secs(4)).await;
    intercom.sip().shutdown().await;
    sip_stop.cancel();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    tracing::info!("bridge stopped");
    Ok(())
}

/// Logs registration changes and the end of rings until `shutdown`.
async fn log_events(intercom: &Intercom, shutdown: &CancellationToken) {
    let mut registration = intercom.sip().registration();
    let mut rings = intercom.sip().rings();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = registration.changed() => {
                if changed.is_err() {
                    return;
                }
                let state = registration.borrow_and_update().clone();
                match state {
                    RegistrationState::Registered { expires, .. } => tracing::info!(expires, "registered with the intercom"),
                    RegistrationState::Failed { reason } => tracing::warn!(%reason, "registration failed; `c300x-bridge check` tells which intercom setting is missing"),
                    other => tracing::debug!(?other, "registration"),
                }
            }
            // The SIP agent logs the ring itself; its end is worth a line here.
            ring = rings.recv() => match ring {
                Ok(RingEvent::Ended(e)) => tracing::info!(call_id = %e.call_id, reason = ?e.reason, "ring ended"),
                Ok(RingEvent::Incoming(_)) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            },
        }
    }
}

async fn wait_hubs_idle(hubs: &[StreamHub], limit: Duration) {
    let all = async {
        for h in hubs {
            let mut w = h.status_watch();
            let _ = w
                .wait_for(|s| {
                    matches!(s.state, HubState::Idle | HubState::Failed) && s.call_id.is_none()
                })
                .await;
        }
    };
    let _ = tokio::time::timeout(limit, all).await;
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
