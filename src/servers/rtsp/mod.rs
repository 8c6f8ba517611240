//! The RTSP server (streaming.md §2): `rtsp://host:port/<panel>[?audio=0]` for NVRs and Home
//! Assistant. This file owns the accept loop and admission (total and per-IP caps, a bounded
//! number of 503 answers); each connection is one task (`conn.rs`) driving
//! `proto::rtsp::server`, its media in `session.rs`. `run` returns when every connection ended.

mod conn;
mod session;
mod talk;
mod udp;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::limits::{Admission, Caps, Refused, ServerStats};
use crate::intercom::media::PortPool;
use crate::media::hub::StreamHub;
use crate::proto::auth::Secrets;
use crate::proto::rtsp::Response;
use crate::proto::rtsp::server::ServerConfig;

pub use udp::UdpError;

/// At most this many refused connections are answered 503 at a time; past it they are closed.
const REFUSERS: usize = 16;

/// How the server behaves; `new` gives the defaults.
#[derive(Debug, Clone)]
pub struct RtspSettings {
    /// Credentials (Basic and Digest; the API token works as a password); empty serves everyone.
    pub secrets: Secrets,
    /// Connections past these caps get 503 and are closed.
    pub caps: Caps,
    /// Largest RTP packet (header included) we send.
    pub mtu: usize,
    /// A connection that has not completed a request in this time is closed.
    pub first_request_timeout: Duration,
    /// A connection without a session and without requests for this long is closed.
    pub idle_timeout: Duration,
    /// A session without a request (or RTCP) for this long ends.
    pub session_timeout: Duration,
    /// Server ports for UDP tracks; shared with the intercom (pairs are even/odd).
    pub udp_ports: PortPool,
    /// Counters shown by `/metrics` (shared with the HTTP server).
    pub stats: Arc<ServerStats>,
}

impl RtspSettings {
    pub fn new(udp_ports: PortPool) -> Self {
        Self {
            secrets: Secrets::default(),
            caps: Caps::default(),
            mtu: 1200,
            first_request_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            session_timeout: Duration::from_secs(60),
            udp_ports,
            stats: Arc::default(),
        }
    }
}

/// What every connection task shares.
struct Shared {
    hubs: HashMap<String, StreamHub>,
    settings: RtspSettings,
    server: Arc<ServerConfig>,
    admission: Admission,
}

/// Serves RTSP on `listener` for `hubs` (one path per panel) until `shutdown`.
pub async fn run(
    listener: TcpListener,
    hubs: Vec<StreamHub>,
    settings: RtspSettings,
    shutdown: CancellationToken,
) {
    let hubs: HashMap<String, StreamHub> = hubs
        .into_iter()
        .map(|h| (h.panel().name.clone(), h))
        .collect();
    let server = Arc::new(ServerConfig {
        panels: hubs.keys().cloned().collect(),
        secrets: settings.secrets.clone(),
        first_request_timeout: settings.first_request_timeout,
        idle_timeout: settings.idle_timeout,
        session_timeout: settings.session_timeout,
        ..ServerConfig::new(Vec::new())
    });
    let admission = Admission::rtsp(settings.caps, settings.stats.clone());
    let shared = Arc::new(Shared {
        hubs,
        settings,
        server,
        admission,
    });
    let refusers = Arc::new(Semaphore::new(REFUSERS));
    let tasks = TaskTracker::new();
    let local = listener.local_addr().ok();
    tracing::info!(?local, "RTSP server listening");
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("RTSP accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        match shared.admission.admit(peer.ip()) {
            Ok(permit) => {
                let (shared, stop) = (shared.clone(), shutdown.child_token());
                tasks.spawn(async move {
                    let reason = conn::serve(stream, peer, shared.clone(), stop, &permit).await;
                    shared.admission.stats().closed(reason);
                    drop(permit);
                });
            }
            Err(why) => {
                tracing::warn!(%peer, cap = why.as_str(), "RTSP connection refused: 503");
                // A bounded number of polite refusals; past it, just close.
                if let Ok(slot) = refusers.clone().try_acquire_owned() {
                    tasks.spawn(async move {
                        refuse(stream, why).await;
                        drop(slot);
                    });
                }
            }
        }
    }
    tasks.close();
    if tokio::time::timeout(Duration::from_secs(3), tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("RTSP server: connections still open 3 s after shutdown");
    }
    tracing::info!("RTSP server stopped");
}

/// Answers the first request of a refused connection with 503, then closes.
async fn refuse(mut stream: TcpStream, why: Refused) {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
    let cseq = conn::sniff_cseq(&buf[..n]);
    let (text, retry) = match why {
        Refused::Total => ("too many RTSP connections", 5),
        Refused::PerIp => ("too many RTSP connections from your address", 5),
        Refused::Throttled(left) => (
            "too many wrong credentials from your address; try again later",
            left.as_secs().max(1),
        ),
    };
    let reply = Response::new(503)
        .header("Retry-After", retry.to_string())
        .text(text)
        .to_bytes(cseq);
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(&reply)).await;
}
