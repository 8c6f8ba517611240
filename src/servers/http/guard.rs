//! The HTTP side of the access model (DOCS "Access"): `/signed/<token>/…` URLs are unwrapped
//! before routing (`unwrap_signed`), bodies over [`MAX_BODY`] get 413 from their Content-Length
//! before a byte is read (`limit_body`), and every request passes `authorize`
//! (`proto::auth::Policy`) before a handler can join a hub, so refused requests never call.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Shared;
use crate::proto::auth::{Attempt, Grant, Refusal, header::challenges};
use crate::servers::access::is_ingress;
use crate::servers::limits::Permit;

/// The largest request body: the API takes small JSON only.
pub const MAX_BODY: usize = 64 * 1024;
/// The path prefix of signed URLs.
pub const SIGNED_PREFIX: &str = "/signed/";

/// The token of a signed URL, set by `unwrap_signed` for `authorize`.
#[derive(Debug, Clone)]
pub struct UrlToken(pub String);

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `/signed/<token>/api/…` → `/api/…` with the token kept aside; relative URLs inside an HLS
/// playlist resolve under the same prefix, so segments carry the token too.
pub async fn unwrap_signed(mut req: Request, next: Next) -> Response {
    let Some(rest) = req.uri().path().strip_prefix(SIGNED_PREFIX) else {
        return next.run(req).await;
    };
    let Some((token, tail)) = rest.split_once('/') else {
        return (
            StatusCode::NOT_FOUND,
            "a signed URL needs a path after the token",
        )
            .into_response();
    };
    let token = token.to_owned();
    let path_and_query = match req.uri().query() {
        Some(q) => format!("/{tail}?{q}"),
        None => format!("/{tail}"),
    };
    let Ok(uri) = path_and_query.parse::<Uri>() else {
        return (StatusCode::BAD_REQUEST, "malformed signed URL").into_response();
    };
    *req.uri_mut() = uri;
    req.extensions_mut().insert(UrlToken(token));
    next.run(req).await
}

/// 413 for a declared body over the limit, answered before the body is read (a chunked one is
/// stopped at the limit by `DefaultBodyLimit`).
pub(super) async fn limit_body(
    State(shared): State<Arc<Shared>>,
    req: Request,
    next: Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().parse::<u64>().unwrap_or(u64::MAX));
    if let Some(len) = declared
        && len > MAX_BODY as u64
    {
        shared.stats.http.too_large.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            len,
            path = req.uri().path(),
            "HTTP 413: body over {MAX_BODY} bytes"
        );
        let body = Json(serde_json::json!({
            "error": "payload_too_large",
            "detail": format!("the body may have at most {MAX_BODY} bytes"),
        }));
        let mut resp = (StatusCode::PAYLOAD_TOO_LARGE, body).into_response();
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return resp;
    }
    let resp = next.run(req).await;
    // A chunked body over the limit is cut off by the extractor (DefaultBodyLimit): count it too.
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
        shared.stats.http.too_large.fetch_add(1, Ordering::Relaxed);
    }
    resp
}

/// Lets a request through to its handler only with what the access model asks for.
pub(super) async fn authorize(
    State(shared): State<Arc<Shared>>,
    mut req: Request,
    next: Next,
) -> Response {
    let now = unix_now();
    let token = req.extensions().get::<UrlToken>().map(|t| t.0.clone());
    let ingress = is_ingress(&req);
    let permit = req.extensions().get::<Arc<Permit>>().cloned();
    if let Some(left) = permit.as_ref().and_then(|p| p.throttled()) {
        shared
            .stats
            .http
            .refused_throttled
            .fetch_add(1, Ordering::Relaxed);
        return too_many_failures(left);
    }
    let presented = token.is_some() || req.headers().contains_key(header::AUTHORIZATION);
    let decision = {
        let attempt = Attempt {
            method: req.method().as_str(),
            path: req.uri().path(),
            query: req.uri().query(),
            authorization: req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
            url_token: token.as_deref(),
            ingress,
            now,
        };
        shared.policy.decide(&attempt)
    };
    match decision {
        Ok(grant) => {
            if matches!(grant, Grant::Header(_) | Grant::SignedUrl)
                && let Some(p) = &permit
            {
                p.auth_ok();
            }
            req.extensions_mut().insert(grant);
            next.run(req).await
        }
        Err(refusal) => {
            shared
                .stats
                .http
                .unauthorized
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(method = %req.method(), path = req.uri().path(), reason = refusal.reason, "HTTP 401");
            // Wrong credentials (not a first request without any, nor a stale Digest nonce).
            if presented
                && !refusal.stale
                && let Some(p) = &permit
            {
                p.auth_failed();
            }
            unauthorized(&shared, refusal, now)
        }
    }
}

/// 429 for an address refused for wrong credentials (`proto::auth::throttle`).
fn too_many_failures(left: std::time::Duration) -> Response {
    let body = Json(serde_json::json!({
        "error": "too_many_requests",
        "detail": "too many wrong credentials from your address; try again later",
    }));
    let mut resp = (StatusCode::TOO_MANY_REQUESTS, body).into_response();
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(left.as_secs().max(1)),
    );
    resp
}

/// A 401 with every scheme we take: Digest (fresh nonce), Basic and Bearer.
pub(super) fn unauthorized(shared: &Shared, refusal: Refusal, now: u64) -> Response {
    let nonce = shared.policy.signer.nonce(now, rand::random());
    let body = Json(serde_json::json!({"error": "unauthorized", "detail": refusal.reason}));
    let mut resp = (StatusCode::UNAUTHORIZED, body).into_response();
    let h = resp.headers_mut();
    let [digest, basic] = challenges(&nonce, refusal.stale);
    for value in [digest, basic, "Bearer realm=\"c300x-bridge\"".to_owned()] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.append(header::WWW_AUTHENTICATE, v);
        }
    }
    resp
}
