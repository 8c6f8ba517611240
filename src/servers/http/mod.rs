//! The HTTP server (axum): status page, JSON API, HLS/LL-HLS, MJPEG, snapshots and metrics for
//! every panel's `StreamHub`, behind the access model (`guard`). `router(state)` is the whole
//! surface (tests drive it with `oneshot`); `run` serves it on an already-bound listener with
//! admission and timeouts (`serve`) until the shutdown token fires.

mod api;
mod error;
pub mod guard;
mod hls;
mod hls_muxer;
mod hls_session;
mod jpeg_feed;
mod links;
mod metrics;
mod mjpeg;
mod rings;
mod serve;
mod snapshot;
mod talk;
mod tasks;
mod ui;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::routing::{get, post};
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::intercom::Intercom;
use crate::intercom::sip::RingEvent;
use crate::media::hub::StreamHub;
use crate::proto::auth::Policy;
use crate::servers::access::secrets;
use crate::servers::limits::{Admission, Caps, ServerStats};
use tasks::Tasks;

pub use error::ApiError;

/// What the HTTP server serves: one hub per configured panel (same order as `config.panels`).
#[derive(Clone)]
pub struct HttpState {
    pub hubs: Vec<StreamHub>,
    pub intercom: Intercom,
    pub config: Arc<Config>,
    /// Present only in `demo`: adds the "ring the doorbell" button and `POST /api/demo/ring`.
    pub demo: Option<DemoHooks>,
    /// The Home Assistant camera setup's status (shown per panel in `/api/status` and the page).
    pub camera: crate::homeassistant::CameraWatch,
    /// Connection counters of both servers, for `/metrics` (the RTSP server gets the same).
    pub stats: Arc<ServerStats>,
    /// Rings: pending, history, pictures, clips, answer / reject (`rings.rs`).
    pub doorbell: Option<crate::doorbell::Doorbell>,
}

/// Hooks into the simulator for `demo`.
#[derive(Clone)]
pub struct DemoHooks {
    /// Makes the simulated panel with this DEVADDR ring.
    pub ring: tokio::sync::mpsc::UnboundedSender<u8>,
}

/// One ring as the status page lists it.
#[derive(Debug, Clone)]
pub(crate) struct RingRecord {
    pub at: SystemTime,
    pub panel: Option<String>,
    pub call_id: String,
}

/// Per-panel outputs that outlive a request: the HLS session, the shared JPEG feed, caches.
pub(crate) struct PanelOutputs {
    pub hub: StreamHub,
    pub hls: hls_session::HlsOutput,
    pub jpeg: jpeg_feed::JpegFeed,
    /// The JPEG of the last keyframe decoded for a snapshot, by its pts.
    pub keyframe_jpeg: Mutex<Option<(u64, Bytes)>>,
}

pub(crate) struct Shared {
    pub state: HttpState,
    pub policy: Policy,
    pub stats: Arc<ServerStats>,
    pub panels: Vec<PanelOutputs>,
    pub rings: Mutex<VecDeque<RingRecord>>,
    pub placeholder: Mutex<Option<((u32, u32), Bytes)>>,
    /// Every background task a request starts: ended with the server.
    pub tasks: Tasks,
}

/// Rings kept for the status page.
const RING_LOG: usize = 10;

impl Shared {
    pub fn panel(&self, name: &str) -> Result<&PanelOutputs, ApiError> {
        self.panels
            .iter()
            .find(|p| p.hub.panel().name == name)
            .ok_or_else(|| ApiError::UnknownPanel(name.chars().take(64).collect()))
    }

    pub fn last_ring_of(&self, panel: &str) -> Option<SystemTime> {
        let rings = self.rings.lock().ok()?;
        rings
            .iter()
            .rev()
            .find(|r| r.panel.as_deref() == Some(panel))
            .map(|r| r.at)
    }
}

/// The DEVADDR a doorbell offer names (`a=DEVADDR:20`), if any.
pub(crate) fn ring_devaddr(offer_sdp: &str) -> Option<u8> {
    offer_sdp.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("a=")?;
        let (name, value) = rest.split_once(':')?;
        name.eq_ignore_ascii_case("DEVADDR")
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// Follows the intercom's rings into the log (a panel per ring by its DEVADDR, else the first).
fn follow_rings(shared: &Arc<Shared>) {
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    let mut rx = shared.state.intercom.sip().rings();
    let weak = Arc::downgrade(shared);
    shared.tasks.spawn(async move {
        loop {
            let ev = match rx.recv().await {
                Ok(ev) => ev,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => break,
            };
            let Some(shared) = weak.upgrade() else { break };
            if let RingEvent::Incoming(r) = ev {
                let panels = &shared.state.config.panels;
                let panel = ring_devaddr(&r.offer_sdp)
                    .and_then(|d| panels.iter().find(|p| p.devaddr == d))
                    .or(panels.first())
                    .map(|p| p.name.clone());
                if let Ok(mut log) = shared.rings.lock() {
                    log.push_back(RingRecord {
                        at: r.at,
                        panel,
                        call_id: r.call_id.clone(),
                    });
                    while log.len() > RING_LOG {
                        log.pop_front();
                    }
                }
            }
        }
    });
}

/// The whole HTTP surface. Call it inside a tokio runtime (it follows the ring events). The
/// background tasks its requests start live until the runtime ends (see `run_all`, which ends them
/// with the server).
pub fn router(state: HttpState) -> Router {
    router_with(state, Tasks::new(CancellationToken::new()))
}

fn router_with(state: HttpState, tasks: Tasks) -> Router {
    let panels = state
        .hubs
        .iter()
        .map(|hub| PanelOutputs {
            hub: hub.clone(),
            hls: hls_session::HlsOutput::new(
                hub.clone(),
                state.config.start_timeout,
                tasks.clone(),
            ),
            jpeg: jpeg_feed::JpegFeed::new(hub.clone(), state.config.mjpeg_quality, tasks.clone()),
            keyframe_jpeg: Mutex::new(None),
        })
        .collect();
    let policy = Policy::new(secrets(&state.config), state.config.public_snapshot);
    let stats = state.stats.clone();
    let shared = Arc::new(Shared {
        state,
        policy,
        stats,
        panels,
        rings: Mutex::new(VecDeque::new()),
        placeholder: Mutex::new(None),
        tasks,
    });
    follow_rings(&shared);
    let app = Router::new()
        .route("/", get(ui::index))
        .route("/assets/{file}", get(ui::asset))
        .route("/metrics", get(metrics::metrics))
        .route("/api/status", get(api::status))
        .route("/api/access", get(links::access))
        .route("/api/streaming", post(api::streaming))
        .route("/api/demo/ring", post(api::demo_ring))
        .route("/api/{panel}/unlock", post(api::unlock))
        .route("/api/{panel}/light", post(api::light))
        .route("/api/{panel}/ring-answer", post(api::ring_answer))
        .route("/api/{panel}/hangup", post(api::hangup))
        .route("/api/{panel}/snapshot.jpg", get(snapshot::snapshot))
        .route("/api/{panel}/mjpeg", get(mjpeg::mjpeg))
        .route("/api/{panel}/hls/{file}", get(hls::resource))
        .route("/api/{panel}/signed-urls", get(links::signed_urls))
        .route("/api/{panel}/talk", get(talk::talk))
        .merge(rings::routes())
        .fallback(error::not_found)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            guard::authorize,
        ))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            guard::limit_body,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(guard::MAX_BODY))
        .with_state(shared);
    // Signed URLs are unwrapped before routing, so the inner router sees plain paths.
    Router::new()
        .fallback_service(app)
        .layer(axum::middleware::from_fn(guard::unwrap_signed))
}

/// How long a stopping server waits for its background tasks (each is cancelled first).
const TASKS_STOP: Duration = Duration::from_secs(1);

/// Serves `router(state)` on `listener` until `shutdown`, taking at most `caps` connections;
/// open streams end with it.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: HttpState,
    caps: Caps,
    shutdown: CancellationToken,
) {
    run_all(vec![listener], state, caps, shutdown).await;
}

/// `run` on several listeners (the HTTP port and the add-on's ingress port) with one router and
/// one admission (the caps count every listener's connections), so every listener shares the same
/// streams, caches and checks. Ends at `shutdown` once all have stopped, or as soon as one stops
/// before it (the others are aborted: the server is down).
pub async fn run_all(
    listeners: Vec<tokio::net::TcpListener>,
    state: HttpState,
    caps: Caps,
    shutdown: CancellationToken,
) {
    let admission = Admission::http(caps, state.stats.clone());
    let tasks = Tasks::new(shutdown.child_token());
    let app = router_with(state, tasks.clone());
    // Owned here: dropping the set (this future ending or being dropped) aborts every listener.
    let mut served = tokio::task::JoinSet::new();
    for listener in listeners {
        let addr = listener.local_addr().ok();
        tracing::info!(?addr, "HTTP server listening");
        served.spawn(serve::serve(
            listener,
            app.clone(),
            admission.clone(),
            shutdown.clone(),
        ));
    }
    if served.join_next().await.is_some() && !shutdown.is_cancelled() {
        tracing::warn!("an HTTP listener stopped before the shutdown");
        tasks.stop(TASKS_STOP).await;
        return;
    }
    while served.join_next().await.is_some() {}
    tasks.stop(TASKS_STOP).await;
    tracing::info!("HTTP server stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devaddr_from_a_ring_offer() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\na=DEVADDR:21\r\nm=audio 1 RTP/AVP 0\r\n";
        assert_eq!(ring_devaddr(sdp), Some(21));
        assert_eq!(ring_devaddr("v=0\r\na=devaddr: 30\r\n"), Some(30));
        assert_eq!(ring_devaddr("v=0\r\na=DEVADDR:x\r\n"), None);
        assert_eq!(ring_devaddr(""), None);
    }
}
