//! The RTSP server (streaming.md §2): `rtsp://host:port/<panel>[?audio=0]` for NVRs and Home
//! Assistant. This file owns the accept loop and the connection limit; each connection is one
//! task (`conn.rs`) driving `proto::rtsp`, holding hub viewers as sessions (`session.rs`).

mod conn;
mod session;
mod udp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::intercom::media::PortPool;
use crate::media::hub::StreamHub;
use crate::proto::rtsp::Response;

pub use udp::UdpError;

/// How the server behaves; `new` gives the defaults.
#[derive(Debug, Clone)]
pub struct RtspSettings {
    /// Auth is required when set (Basic and Digest); `None` serves everyone.
    pub user: Option<String>,
    pub password: Option<String>,
    /// Connections past this many get 503 and are closed.
    pub max_connections: usize,
    /// Largest RTP packet (header included) we send.
    pub mtu: usize,
    /// A session without a request (or RTCP over UDP) for this long ends.
    pub session_timeout: Duration,
    /// Server ports for UDP tracks; shared with the intercom (pairs are even/odd).
    pub udp_ports: PortPool,
}

impl RtspSettings {
    pub fn new(udp_ports: PortPool) -> Self {
        Self {
            user: None,
            password: None,
            max_connections: 64,
            mtu: 1200,
            session_timeout: Duration::from_secs(60),
            udp_ports,
        }
    }
}

/// What every connection task shares.
struct Shared {
    hubs: HashMap<String, StreamHub>,
    settings: RtspSettings,
}

/// Serves RTSP on `listener` for `hubs` (one path per panel) until `shutdown`.
pub async fn run(
    listener: TcpListener,
    hubs: Vec<StreamHub>,
    settings: RtspSettings,
    shutdown: CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(settings.max_connections));
    let shared = Arc::new(Shared {
        hubs: hubs
            .into_iter()
            .map(|h| (h.panel().name.clone(), h))
            .collect(),
        settings,
    });
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
        match limit.clone().try_acquire_owned() {
            Ok(permit) => {
                let (shared, stop) = (shared.clone(), shutdown.child_token());
                tokio::spawn(async move {
                    conn::serve(stream, peer, shared, stop).await;
                    drop(permit);
                });
            }
            Err(_) => {
                tracing::warn!(%peer, "RTSP connection limit reached: 503");
                tokio::spawn(refuse(stream, peer));
            }
        }
    }
    tracing::info!("RTSP server stopped");
}

/// Answers the first request of a connection over the limit with 503, then closes.
async fn refuse(mut stream: TcpStream, peer: SocketAddr) {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
    let cseq = conn::sniff_cseq(&buf[..n]);
    let reply = Response::new(503)
        .text("too many RTSP connections")
        .to_bytes(cseq);
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(&reply)).await;
    tracing::debug!(%peer, "refused");
}
