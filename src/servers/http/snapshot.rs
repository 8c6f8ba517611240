//! `GET /api/<panel>/snapshot.jpg`: the newest decoded picture of a running feed, else the last
//! keyframe of this or an earlier call (decoded once, cached), else a "no image yet" placeholder.
//! It never starts or holds a call (HA polls stills every ~10 s); only `?live=1` joins and waits,
//! never for a request let in as public (`public_snapshot`). `live` is read by the same parser as
//! the access policy's.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::mjpeg::next_picture;
use super::{ApiError, PanelOutputs, Shared};
use crate::media::hub::HubError;
use crate::media::jpeg;
use crate::proto::auth::{Grant, query};

/// Where the picture came from: `live` (decoded now), `keyframe` (cached), `placeholder`.
pub const SOURCE_HEADER: &str = "x-snapshot-source";
/// Seconds since the picture was received from the intercom.
pub const AGE_HEADER: &str = "x-snapshot-age";

fn jpeg_response(jpeg: Bytes, source: &'static str, received: Option<SystemTime>) -> Response {
    let mut resp = (
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        jpeg,
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert(
        HeaderName::from_static(SOURCE_HEADER),
        HeaderValue::from_static(source),
    );
    if let Some(t) = received {
        let age = SystemTime::now().duration_since(t).unwrap_or_default();
        if let Ok(v) = HeaderValue::from_str(&format!("{:.1}", age.as_secs_f64())) {
            h.insert(HeaderName::from_static(AGE_HEADER), v);
        }
        if let Ok(v) = HeaderValue::from_str(&super::api::rfc3339(t)) {
            h.insert(HeaderName::from_static("x-snapshot-time"), v);
        }
    }
    resp
}

async fn keyframe_jpeg(p: &PanelOutputs, quality: u8) -> Option<(Bytes, SystemTime)> {
    let kf = p.hub.last_keyframe()?;
    if let Ok(cache) = p.keyframe_jpeg.lock()
        && let Some((pts, jpeg)) = cache.as_ref()
        && *pts == kf.pts
    {
        return Some((jpeg.clone(), kf.received));
    }
    let annexb = kf.au.to_annexb();
    let decoded =
        tokio::task::spawn_blocking(move || jpeg::keyframe_to_jpeg(&annexb, quality)).await;
    match decoded {
        Ok(Ok(jpeg)) => {
            if let Ok(mut cache) = p.keyframe_jpeg.lock() {
                *cache = Some((kf.pts, jpeg.clone()));
            }
            Some((jpeg, kf.received))
        }
        Ok(Err(e)) => {
            tracing::warn!(panel = %p.hub.panel().name, "snapshot: the last keyframe does not decode: {e}");
            None
        }
        Err(e) => {
            tracing::warn!("snapshot: decoder task: {e}");
            None
        }
    }
}

async fn placeholder(shared: &Shared, p: &PanelOutputs) -> Result<Bytes, ApiError> {
    let size = p
        .hub
        .stream_info()
        .map_or((400, 288), |i| (i.video.width, i.video.height));
    if let Ok(cache) = shared.placeholder.lock()
        && let Some((s, jpeg)) = cache.as_ref()
        && *s == size
    {
        return Ok(jpeg.clone());
    }
    let jpeg = tokio::task::spawn_blocking(move || jpeg::placeholder(size.0, size.1))
        .await
        .map_err(|e| ApiError::Internal(format!("placeholder task: {e}")))?
        .map_err(|e| ApiError::Internal(format!("placeholder: {e}")))?;
    if let Ok(mut cache) = shared.placeholder.lock() {
        *cache = Some((size, jpeg.clone()));
    }
    Ok(jpeg)
}

pub async fn snapshot(
    State(shared): State<Arc<Shared>>,
    Path(panel): Path<String>,
    RawQuery(q): RawQuery,
    grant: Option<Extension<Grant>>,
) -> Result<Response, ApiError> {
    let p = shared.panel(&panel)?;
    let live =
        query::flag(q.as_deref(), "live").map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if live {
        if grant.is_some_and(|g| !g.0.may_start_call()) {
            return Err(ApiError::Unauthorized("a live snapshot starts a call"));
        }
        if !p.hub.status().streaming_allowed {
            return Err(HubError::StreamingDisabled { panel }.into());
        }
        // Subscribing joins the hub (it may start a call); the subscription ends on return.
        let mut rx = p.jpeg.subscribe();
        let wait = shared.state.config.start_timeout + Duration::from_secs(5);
        let pic = next_picture(&mut rx, 0, wait).await?;
        return Ok(jpeg_response(pic.jpeg.clone(), "live", Some(pic.received)));
    }
    if let Some(pic) = p.jpeg.latest() {
        return Ok(jpeg_response(pic.jpeg.clone(), "live", Some(pic.received)));
    }
    if let Some((jpeg, received)) = keyframe_jpeg(p, shared.state.config.mjpeg_quality).await {
        return Ok(jpeg_response(jpeg, "keyframe", Some(received)));
    }
    Ok(jpeg_response(
        placeholder(&shared, p).await?,
        "placeholder",
        None,
    ))
}
