//! Wiring: builds the bridge's components from `Config`, hands each its part and one shutdown
//! token, and waits for them. Today: the intercom (SIP registration, rings); the stream hub,
//! RTSP, HTTP and MQTT join here as they arrive.

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::intercom::Intercom;
use crate::intercom::sip::{RegistrationState, RingEvent};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Intercom(#[from] crate::intercom::IntercomError),
}

/// Runs the bridge until `shutdown` fires: the SIP user agent registers and reports rings.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> Result<(), AppError> {
    cfg.require_intercom()?;
    let sip_stop = CancellationToken::new();
    let intercom = Intercom::start(&cfg, sip_stop.clone()).await?;
    tracing::info!(
        intercom = cfg.intercom_host.as_deref().unwrap_or_default(),
        port = cfg.intercom_sip_port,
        transport = cfg.sip_transport.as_str(),
        media_ip = %intercom.media_ip(),
        "bridge started"
    );
    let mut registration = intercom.sip().registration();
    let mut rings = intercom.sip().rings();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = registration.changed() => {
                if changed.is_err() {
                    break;
                }
                let state = registration.borrow_and_update().clone();
                match state {
                    RegistrationState::Registered { expires, .. } => tracing::info!(expires, "registered with the intercom"),
                    RegistrationState::Failed { reason } => tracing::warn!(%reason, "registration failed; `c300x-bridge check` tells which intercom setting is missing"),
                    other => tracing::debug!(?other, "registration"),
                }
            }
            ring = rings.recv() => match ring {
                Ok(RingEvent::Incoming(r)) => tracing::info!(call_id = %r.call_id, "doorbell ring"),
                Ok(RingEvent::Ended(e)) => tracing::info!(call_id = %e.call_id, reason = ?e.reason, "ring ended"),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => tracing::warn!(missed = n, "ring events lagged"),
                Err(_) => break,
            },
        }
    }
    // Open calls get their BYE and the registration is removed before we go.
    intercom.sip().shutdown().await;
    sip_stop.cancel();
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
