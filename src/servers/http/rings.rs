//! The doorbell's HTTP API (issue 16): `GET /api/<panel>/rings` (history, newest first, with the
//! pending ring), `GET /api/<panel>/rings/<ring_id>.jpg` (its picture) and `.mp4` (its clip), and
//! `POST /api/<panel>/answer`, `/reject`, `/ring-hangup` acting on the panel's ring. Every one of
//! them shows, plays or answers: private (behind the bridge's credentials, like the rest).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::{ApiError, Shared};
use crate::doorbell::{Doorbell, DoorbellError, RingId, RingInfo, RingRecord};

/// The doorbell's routes, merged into the router before its authorization layer.
pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/{panel}/rings", get(list))
        .route("/api/{panel}/rings/{file}", get(file))
        .route("/api/{panel}/answer", post(answer))
        .route("/api/{panel}/reject", post(reject))
        .route("/api/{panel}/ring-hangup", post(hang_up))
}

fn doorbell<'a>(shared: &'a Shared, panel: &str) -> Result<&'a Doorbell, ApiError> {
    shared.panel(panel)?;
    shared
        .state
        .doorbell
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("the doorbell is not running".into()))
}

impl From<DoorbellError> for ApiError {
    fn from(e: DoorbellError) -> Self {
        match e {
            DoorbellError::UnknownPanel(p) => ApiError::UnknownPanel(p),
            DoorbellError::NotRinging(p) => ApiError::NotRinging(p),
            DoorbellError::Hub(h) => ApiError::Hub(h),
            DoorbellError::Sip(s) => ApiError::Intercom(s.into()),
        }
    }
}

/// One ring as the API lists it: the record plus relative URLs (ingress-safe).
pub(crate) fn ring_json(panel: &str, r: &RingRecord) -> Value {
    let base = format!("api/{panel}/rings/{}", r.ring_id);
    json!({
        "ring_id": r.ring_id.as_str(),
        "panel": r.panel,
        "time": r.time,
        "outcome": r.outcome,
        "attributed": r.attributed,
        "snapshot": r.snapshot,
        "clip": r.clip,
        "clip_seconds": r.clip_seconds,
        "snapshot_url": format!("{base}.jpg"),
        "clip_url": r.clip.as_ref().map(|_| format!("{base}.mp4")),
    })
}

fn pending_json(ring: &RingInfo) -> Value {
    json!({
        "ring_id": ring.ring_id.as_str(),
        "time": crate::proto::rfc3339::format(ring.at, crate::proto::rfc3339::Precision::Millis),
        "attributed": ring.attributed,
    })
}

/// `GET /api/<panel>/rings`: `{"panel", "pending": {…}|null, "rings": [...]}`, newest first.
async fn list(
    State(shared): State<Arc<Shared>>,
    Path(panel): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let bell = doorbell(&shared, &panel)?;
    let rings: Vec<Value> = bell
        .recorder()
        .rings(&panel)
        .iter()
        .map(|r| ring_json(&panel, r))
        .collect();
    Ok(Json(json!({
        "panel": panel,
        "pending": bell.pending(&panel).as_ref().map(pending_json),
        "rings": rings,
    })))
}

/// `GET /api/<panel>/rings/<ring_id>.jpg` or `.mp4`.
async fn file(
    State(shared): State<Arc<Shared>>,
    Path((panel, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let bell = doorbell(&shared, &panel)?;
    let not_found = || ApiError::NotFound(format!("no ring file `{}`", file.escape_debug()));
    let (id, ext) = file.rsplit_once('.').ok_or_else(not_found)?;
    let ring_id = RingId::parse(id).ok_or_else(not_found)?;
    match ext {
        "jpg" => {
            let jpeg = bell
                .recorder()
                .snapshot(&panel, &ring_id)
                .await
                .ok_or_else(not_found)?;
            Ok((
                [
                    (header::CONTENT_TYPE, "image/jpeg"),
                    (header::CACHE_CONTROL, "private, max-age=86400"),
                ],
                jpeg,
            )
                .into_response())
        }
        "mp4" => {
            let path = bell
                .recorder()
                .clip_path(&panel, &ring_id)
                .ok_or_else(not_found)?;
            let body = tokio::fs::read(&path).await.map_err(|_| not_found())?;
            Ok((
                [
                    (header::CONTENT_TYPE, "video/mp4"),
                    (header::CACHE_CONTROL, "private, max-age=86400"),
                ],
                body,
            )
                .into_response())
        }
        _ => Err(not_found()),
    }
}

fn ok(ring: Option<&RingInfo>) -> Json<Value> {
    Json(json!({"ok": true, "ring_id": ring.map(|r| r.ring_id.as_str())}))
}

/// `POST /api/<panel>/answer`: 200 to the pending ring (the other phones stop ringing).
async fn answer(
    State(shared): State<Arc<Shared>>,
    Path(panel): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let ring = doorbell(&shared, &panel)?.answer(&panel).await?;
    Ok(ok(Some(&ring)))
}

/// `POST /api/<panel>/reject`: `ring_reject_code` to the pending ring.
async fn reject(
    State(shared): State<Arc<Shared>>,
    Path(panel): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let ring = doorbell(&shared, &panel)?.reject(&panel).await?;
    Ok(ok(Some(&ring)))
}

/// `POST /api/<panel>/ring-hangup`: BYE on the answered ring (same as `/hangup`).
async fn hang_up(
    State(shared): State<Arc<Shared>>,
    Path(panel): Path<String>,
) -> Result<Json<Value>, ApiError> {
    doorbell(&shared, &panel)?.hang_up(&panel)?;
    Ok(ok(None))
}
