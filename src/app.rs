//! Wiring: builds the bridge's components from `Config`, hands each its part and one shutdown
//! token, and waits for them. Components arrive issue by issue (SIP, hub, RTSP, HTTP, MQTT).

use tokio_util::sync::CancellationToken;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
}

/// Runs the bridge until `shutdown` fires.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> Result<(), AppError> {
    cfg.require_intercom()?;
    tracing::info!(
        intercom = cfg.intercom_host.as_deref().unwrap_or_default(),
        port = cfg.intercom_sip_port,
        transport = cfg.sip_transport.as_str(),
        "bridge started"
    );
    shutdown.cancelled().await;
    tracing::info!("bridge stopped");
    Ok(())
}

/// What a user can connect to, one line each, for `demo` and the logs.
pub fn endpoints(cfg: &Config) -> Vec<String> {
    let host = cfg
        .advertise_address
        .map(|a| a.to_string())
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    let mut lines = vec![format!(
        "SIP user sip:{}@{} (intercom {}:{})",
        cfg.sip_user,
        cfg.sip_domain.as_deref().unwrap_or("?"),
        cfg.intercom_host.as_deref().unwrap_or("?"),
        cfg.intercom_sip_port
    )];
    for p in &cfg.panels {
        lines.push(format!(
            "panel {} (DEVADDR {}): RTSP rtsp://{host}:{}/{} (coming with the RTSP server)",
            p.name, p.devaddr, cfg.rtsp_port, p.name
        ));
    }
    lines
}
