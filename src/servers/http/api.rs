//! The JSON API: `GET /api/status` (field names fixed by the issue: `sip.registered`,
//! `panels[].name/devaddr/state/viewers/call_id/width/height/fps/last_ring`), and the commands
//! unlock, light, ring-answer, hangup, the privacy switch and, in `demo`, a simulated ring.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, Shared, ring_devaddr};
use crate::intercom::sip::RegistrationState;
use crate::media::hub::{TalkState, ViewerKind};

/// RFC 3339 UTC time (`2024-05-01T12:00:00.123Z`).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    crate::proto::rfc3339::format(t, crate::proto::rfc3339::Precision::Millis)
}

fn time(t: Option<SystemTime>) -> Value {
    t.map_or(Value::Null, |t| Value::String(rfc3339(t)))
}

fn kind_name(k: ViewerKind) -> &'static str {
    match k {
        ViewerKind::Rtsp => "rtsp",
        ViewerKind::Hls => "hls",
        ViewerKind::Mjpeg => "mjpeg",
        ViewerKind::Snapshot => "snapshot",
        ViewerKind::Other => "other",
    }
}

pub(crate) fn sip_json(state: &RegistrationState) -> Value {
    match state {
        RegistrationState::Registered { expires, since } => json!({
            "registered": true, "state": "registered", "expires": expires, "since": time(Some(*since)),
        }),
        RegistrationState::Registering => json!({"registered": false, "state": "registering"}),
        RegistrationState::Unregistered => json!({"registered": false, "state": "unregistered"}),
        RegistrationState::Failed { reason } => {
            json!({"registered": false, "state": "failed", "reason": reason})
        }
    }
}

/// A panel's talk for `/api/status`: `free`, `waiting` (for the call) or `talking`.
fn talk_json(t: &TalkState) -> Value {
    match t {
        TalkState::Free => json!({"state": "free"}),
        TalkState::Waiting => json!({"state": "waiting"}),
        TalkState::Talking { call_id } => json!({"state": "talking", "call_id": call_id}),
    }
}

pub async fn status(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let st = &shared.state;
    let registration = st.intercom.sip().registration().borrow().clone();
    let events = st.intercom.events();
    let panels: Vec<Value> = shared
        .panels
        .iter()
        .map(|p| {
            let s = p.hub.status();
            let by_output: serde_json::Map<String, Value> = s
                .viewers_by_kind
                .iter()
                .map(|(k, n)| (kind_name(*k).to_owned(), json!(n)))
                .collect();
            let base = format!("api/{}", s.panel);
            json!({
                "name": s.panel,
                "devaddr": s.devaddr,
                "state": s.state.as_str(),
                "viewers": s.viewers,
                "viewers_by_output": by_output,
                "call_id": s.call_id,
                "call_since": time(s.call_since),
                "width": s.width,
                "height": s.height,
                "fps": s.fps,
                "last_ring": time(shared.last_ring_of(&s.panel)),
                "calls_started": s.calls_started,
                "call_source": s.call_source,
                "calls_ended": s.calls_ended.iter().map(|(r, n)| ((*r).to_owned(), json!(n))).collect::<serde_json::Map<_, _>>(),
                "last_end": s.last_end.map(|(r, at)| json!({"reason": r.as_str(), "at": rfc3339(at)})),
                "frames_in": s.frames_in,
                "frames_out": s.frames_out,
                "frames_dropped": s.frames_dropped,
                "last_keyframe": time(s.last_keyframe),
                "last_error": s.last_error,
                "streaming_allowed": s.streaming_allowed,
                "hls_sessions": usize::from(p.hls.active()),
                "talk": talk_json(&p.hub.talk_state()),
                "ha_camera": st.camera.panel(&s.panel),
                "urls": {
                    "snapshot": format!("{base}/snapshot.jpg"),
                    "mjpeg": format!("{base}/mjpeg"),
                    "hls": format!("{base}/hls/index.m3u8"),
                    "rtsp_path": format!("/{}", s.panel),
                },
            })
        })
        .collect();
    let recent: Vec<Value> = shared
        .rings
        .lock()
        .map(|r| {
            r.iter()
                .rev()
                .map(|r| json!({"at": rfc3339(r.at), "panel": r.panel, "call_id": r.call_id}))
                .collect()
        })
        .unwrap_or_default();
    let locks: Vec<Value> = st
        .config
        .locks
        .iter()
        .map(|l| json!({"name": l.name, "where": l.where_}))
        .collect();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    Json(json!({
        "sip": sip_json(&registration),
        "streaming_allowed": shared.panels.iter().all(|p| p.hub.status().streaming_allowed),
        "demo": st.demo.is_some(),
        "rings": load(&events.rings),
        "unlocks": load(&events.unlocks),
        "unlock_failures": load(&events.unlock_failures),
        "ringing": events.ringing().is_some(),
        "last_ring": time(events.last_ring()),
        "recent_rings": recent,
        "locks": locks,
        "linger_seconds": st.config.linger.as_secs(),
        "panels": panels,
    }))
}

/// An optional JSON body: empty means "defaults".
fn optional_json<T: for<'de> Deserialize<'de> + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadJson(e.to_string()))
}

fn ok(extra: Value) -> Response {
    let mut body = json!({"ok": true});
    if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
        b.extend(e);
    }
    Json(body).into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UnlockBody {
    lock: Option<String>,
}

/// Opens the named lock, else the lock whose WHERE equals the panel's DEVADDR, else the first.
pub async fn unlock(
    State(shared): State<Arc<Shared>>,
    Path(panel): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = shared.panel(&panel)?;
    let req: UnlockBody = optional_json(&body)?;
    let locks = &shared.state.config.locks;
    let lock = match &req.lock {
        Some(name) => locks
            .iter()
            .find(|l| &l.name == name)
            .ok_or_else(|| ApiError::UnknownLock(name.chars().take(64).collect()))?,
        None => locks
            .iter()
            .find(|l| l.where_ == p.hub.panel().devaddr)
            .or(locks.first())
            .ok_or_else(|| ApiError::UnknownLock("(none configured)".into()))?,
    };
    shared.state.intercom.unlock(lock).await?;
    tracing::info!(panel = %panel, lock = %lock.name, "unlocked from the HTTP API");
    Ok(ok(json!({"lock": lock.name})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LightBody {
    pulse_ms: Option<u64>,
}

pub async fn light(
    State(shared): State<Arc<Shared>>,
    Path(panel): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    shared.panel(&panel)?;
    let req: LightBody = optional_json(&body)?;
    let pulse_ms = req.pulse_ms.unwrap_or(1000);
    if !(100..=10_000).contains(&pulse_ms) {
        return Err(ApiError::BadRequest(format!(
            "pulse_ms must be 100..=10000, not {pulse_ms}"
        )));
    }
    shared
        .state
        .intercom
        .staircase_light(Duration::from_millis(pulse_ms))
        .await?;
    Ok(ok(json!({"pulse_ms": pulse_ms})))
}

pub async fn ring_answer(
    State(shared): State<Arc<Shared>>,
    Path(panel): Path<String>,
) -> Result<Response, ApiError> {
    let p = shared.panel(&panel)?;
    let devaddr = p.hub.panel().devaddr;
    let ring = shared
        .state
        .intercom
        .events()
        .ringing()
        .filter(|r| ring_devaddr(&r.offer_sdp).is_none_or(|d| d == devaddr))
        .ok_or_else(|| ApiError::NotRinging(panel.clone()))?;
    let call_id = ring.call_id.clone();
    p.hub.answer_ring(ring).await?;
    Ok(ok(json!({"call_id": call_id})))
}

pub async fn hangup(
    State(shared): State<Arc<Shared>>,
    Path(panel): Path<String>,
) -> Result<Response, ApiError> {
    shared.panel(&panel)?.hub.hang_up();
    Ok(ok(json!({})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamingBody {
    enabled: bool,
}

/// The privacy switch for every panel: `{"enabled": false}` ends calls and refuses viewers.
pub async fn streaming(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: StreamingBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadJson(e.to_string()))?;
    for p in &shared.panels {
        p.hub.allow_streaming(req.enabled);
    }
    tracing::info!(
        enabled = req.enabled,
        "streaming switched from the HTTP API"
    );
    Ok(ok(json!({"enabled": req.enabled})))
}

#[derive(Debug, Deserialize)]
pub struct DemoRingQuery {
    panel: Option<String>,
}

/// `demo` only: makes the simulator ring as if a visitor pressed the button.
pub async fn demo_ring(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<DemoRingQuery>,
) -> Result<Response, ApiError> {
    let Some(demo) = shared.state.demo.as_ref() else {
        return Err(ApiError::NotFound(
            "/api/demo/ring exists only in `demo`".into(),
        ));
    };
    let p = match q.panel.as_deref() {
        Some(name) => shared.panel(name)?,
        None => shared
            .panels
            .first()
            .ok_or_else(|| ApiError::UnknownPanel(String::new()))?,
    };
    let devaddr = p.hub.panel().devaddr;
    demo.ring
        .send(devaddr)
        .map_err(|_| ApiError::Internal("the simulator is gone".into()))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"ok": true, "panel": p.hub.panel().name, "devaddr": devaddr})),
    )
        .into_response())
}
