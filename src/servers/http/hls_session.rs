//! One HLS session per panel: while its playlist or media is requested it holds ONE hub lease
//! and feeds the frames to the `Muxer` (sending the IDR requests it makes: one per 1 s segment);
//! after `IDLE` (at least 2 × the target duration) without a request it drops the lease, so the
//! call ends when the last tab closes. Requests wait here for parts/segments.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::hls_muxer::{Muxer, TARGET};
use super::tasks::Tasks;
use crate::media::hub::{StreamHub, ViewerKind};

/// A session without requests for this long (or 2 × the target duration if longer) ends. Not
/// tied to the 1 s target: a player that reloads late or a throttled background tab keeps it.
const IDLE: Duration = Duration::from_secs(4);

/// What requests wait on.
pub struct Session {
    pub mux: Mutex<Option<Muxer>>,
    version: watch::Sender<u64>,
    last_request: Mutex<Instant>,
    in_flight: AtomicUsize,
    ended: AtomicBool,
    failure: Mutex<Option<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitError {
    Timeout,
    Failed(String),
}

/// Counts a request as in flight (the session is not idle while one waits).
pub struct RequestGuard(Arc<Session>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Session {
    fn new() -> Self {
        Self {
            mux: Mutex::new(None),
            version: watch::channel(0).0,
            last_request: Mutex::new(Instant::now()),
            in_flight: AtomicUsize::new(0),
            ended: AtomicBool::new(false),
            failure: Mutex::new(None),
        }
    }

    fn touch(&self) {
        if let Ok(mut t) = self.last_request.lock() {
            *t = Instant::now();
        }
    }

    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        self.last_request
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }

    fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    fn end(&self, failure: Option<String>) {
        if let (Some(f), Ok(mut slot)) = (failure, self.failure.lock()) {
            *slot = Some(f);
        }
        self.ended.store(true, Ordering::SeqCst);
        self.changed();
    }

    /// Waits until `f` gives a value (checked under the muxer lock after every change).
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&Muxer) -> Option<T>,
    ) -> Result<T, WaitError> {
        let mut rx = self.version.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(m) = self.mux.lock()
                && let Some(m) = m.as_ref()
            {
                if let Some(v) = f(m) {
                    return Ok(v);
                }
                if let Some(e) = &m.error {
                    return Err(WaitError::Failed(e.clone()));
                }
            }
            if self.ended.load(Ordering::SeqCst) {
                let why = self.failure.lock().ok().and_then(|f| f.clone());
                return Err(WaitError::Failed(
                    why.unwrap_or_else(|| "the HLS session ended".into()),
                ));
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return Err(WaitError::Timeout),
            }
        }
    }
}

/// The panel's HLS output: at most one live session.
pub struct HlsOutput {
    hub: StreamHub,
    slot: Mutex<Option<Arc<Session>>>,
    pub start_timeout: Duration,
    tasks: Tasks,
}

impl HlsOutput {
    pub fn new(hub: StreamHub, start_timeout: Duration, tasks: Tasks) -> Self {
        Self {
            hub,
            slot: Mutex::new(None),
            start_timeout,
            tasks,
        }
    }

    /// The running session (started by this request if none runs), counted while `guard` lives.
    pub fn session(&self) -> (Arc<Session>, RequestGuard) {
        let session = match self.slot.lock() {
            Ok(mut slot) => match slot.as_ref() {
                Some(s) if !s.ended.load(Ordering::SeqCst) => s.clone(),
                _ => {
                    let s = Arc::new(Session::new());
                    *slot = Some(s.clone());
                    self.tasks.spawn(run(self.hub.clone(), s.clone()));
                    s
                }
            },
            Err(_) => Arc::new(Session::new()),
        };
        session.in_flight.fetch_add(1, Ordering::SeqCst);
        session.touch();
        (session.clone(), RequestGuard(session))
    }

    /// Whether a session holds a lease now.
    pub fn active(&self) -> bool {
        self.slot
            .lock()
            .ok()
            .and_then(|s| s.as_ref().map(|s| !s.ended.load(Ordering::SeqCst)))
            .unwrap_or(false)
    }
}

async fn run(hub: StreamHub, session: Arc<Session>) {
    let panel = hub.panel().name.clone();
    let mut viewer = match hub.join(ViewerKind::Hls).await {
        Ok(v) => v,
        Err(e) => {
            session.end(Some(e.to_string()));
            return;
        }
    };
    match Muxer::new(&viewer.info) {
        Ok(m) => {
            if let Ok(mut slot) = session.mux.lock() {
                *slot = Some(m);
            }
        }
        Err(e) => {
            session.end(Some(format!("fMP4 init segment: {e}")));
            return;
        }
    }
    tracing::info!(%panel, "HLS session started");
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let failure = loop {
        tokio::select! {
            f = viewer.frames.recv() => {
                let Some(frame) = f else { break Some("the stream ended".to_owned()) };
                let (want_idr, error) = match session.mux.lock() {
                    Ok(mut m) => match m.as_mut() {
                        Some(m) => (m.push(&frame), m.error.clone()),
                        None => (false, None),
                    },
                    Err(_) => (false, Some("muxer lock poisoned".to_owned())),
                };
                if want_idr {
                    hub.request_keyframe();
                }
                session.changed();
                if error.is_some() {
                    break error;
                }
            }
            _ = tick.tick() => {
                let target = session
                    .mux
                    .lock()
                    .ok()
                    .and_then(|m| m.as_ref().map(Muxer::target_duration))
                    .unwrap_or(TARGET);
                if session.idle_for() > IDLE.max(Duration::from_secs(2 * u64::from(target))) {
                    break None;
                }
            }
        }
    };
    tracing::info!(%panel, reason = failure.as_deref().unwrap_or("no requests"), "HLS session ended");
    session.end(failure);
    drop(viewer);
}
