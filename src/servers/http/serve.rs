//! The HTTP accept loop (instead of `axum::serve`, which has no admission or header timeout):
//! connections past the per-IP cap, or past the total cap with no idle connection to evict, get
//! an immediate 503; each admitted one is served
//! by hyper's HTTP/1.1 with a header read timeout (a client that has not sent a whole request
//! head within it — first or next on a kept-alive connection — is closed), and `serve` returns
//! only when every connection has ended (streams are cut 2 s after shutdown).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::servers::limits::{Admission, Permit, Refused};

/// A connection without a complete request head for this long is closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Open responses (MJPEG, blocked playlist reloads) get this long after shutdown.
const DRAIN: Duration = Duration::from_secs(2);

pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    admission: Admission,
    shutdown: CancellationToken,
) {
    let tasks = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("HTTP accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let permit = match admission.admit(peer.ip()) {
            Ok(p) => p,
            Err(why) => {
                refuse(&stream, why, &admission);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (router, stop, admission) = (router.clone(), shutdown.clone(), admission.clone());
        tasks.spawn(async move {
            let permit = Arc::new(permit);
            let reason = connection(stream, peer, router, stop, permit).await;
            admission.stats().closed(reason);
        });
    }
    tasks.close();
    if tokio::time::timeout(DRAIN + Duration::from_secs(1), tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("HTTP server: connections still open after shutdown");
    }
}

/// A refusal costs no task: one non-blocking write of a 503, then the socket closes.
fn refuse(stream: &TcpStream, why: Refused, admission: &Admission) {
    let (status, text, retry) = match why {
        Refused::Total => ("503 Service Unavailable", "too many HTTP connections\n", 5),
        Refused::PerIp => (
            "503 Service Unavailable",
            "too many HTTP connections from your address\n",
            5,
        ),
        Refused::Throttled(left) => (
            "429 Too Many Requests",
            "too many wrong credentials from your address; try again later\n",
            left.as_secs().max(1),
        ),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Retry-After: {retry}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.try_write(reply.as_bytes());
    let s = admission.stats();
    let n = s.refused_total.load(Ordering::Relaxed) + s.refused_per_ip.load(Ordering::Relaxed);
    // A flood would otherwise write one log line per connection.
    if n == 1 || n.is_multiple_of(100) {
        tracing::warn!(
            cap = why.as_str(),
            refused = n,
            "HTTP connections refused: 503"
        );
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    stop: CancellationToken,
    permit: Arc<Permit>,
) -> &'static str {
    let served = Arc::new(AtomicU64::new(0));
    let count = served.clone();
    let busy = permit.clone();
    let svc = tower::service_fn(move |mut req: hyper::Request<Incoming>| {
        // From its first request on, a connection is no longer evicted for newcomers.
        if count.fetch_add(1, Ordering::Relaxed) == 0 {
            busy.set_idle(false);
        }
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(busy.clone());
        router.clone().oneshot(req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let conn = builder
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = permit.evicted().cancelled() => return "evicted",
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN, conn.as_mut()).await;
            return "shutdown";
        }
    };
    match result {
        Ok(()) => "client",
        Err(e) if e.is_timeout() && served.load(Ordering::Relaxed) == 0 => "first_request_timeout",
        Err(e) if e.is_timeout() => "idle_timeout",
        Err(e) => {
            tracing::debug!(%peer, "HTTP connection: {e}");
            "client"
        }
    }
}
