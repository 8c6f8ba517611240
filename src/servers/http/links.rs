//! URLs handed out: `GET /api/<panel>/signed-urls[?ttl=<s>]` signs short-lived viewing URLs for
//! players that cannot send headers (hls.js, `<img>`, a still URL), and `GET /api/access` tells
//! the status page (through ingress, or to a client that proved the credentials) the
//! credentials and the published URLs with them, so they can be copied into HA or an NVR.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::guard::{SIGNED_PREFIX, unix_now};
use super::{ApiError, Shared};
use crate::proto::auth::{Grant, query, signed::MAX_TTL_SECS};
use crate::servers::access::{published_urls, url_credentials};

/// Validity of a signed URL when `ttl` is not given.
pub const DEFAULT_TTL_SECS: u64 = 600;

/// The host part clients used to reach us (`Host` without its port), else the advertised address.
fn host_of(shared: &Shared, headers: &HeaderMap) -> String {
    let from_header = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(|h| match h.rsplit_once(':') {
            // `[v6]:port` or `name:port`; a bare IPv6 in brackets has no port after `]`.
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !host.is_empty() => {
                host.trim_matches(['[', ']']).to_owned()
            }
            _ => h.trim_matches(['[', ']']).to_owned(),
        })
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:".contains(&b))
        });
    from_header
        .or_else(|| shared.state.config.advertise_address.map(|a| a.to_string()))
        .unwrap_or_else(|| "127.0.0.1".to_owned())
}

pub async fn signed_urls(
    State(shared): State<Arc<Shared>>,
    Path(panel): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    shared.panel(&panel)?;
    let ttl = match query::single(q.as_deref(), "ttl")
        .map_err(|e| ApiError::BadRequest(e.to_string()))?
    {
        None => DEFAULT_TTL_SECS,
        Some(t) => t
            .parse::<u64>()
            .ok()
            .filter(|t| (1..=MAX_TTL_SECS).contains(t))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("ttl must be 1 to {MAX_TTL_SECS} seconds"))
            })?,
    };
    let expires = unix_now() + ttl;
    let token = shared.policy.signer.url_token(&panel, expires);
    let base = format!("{SIGNED_PREFIX}{token}/api/{panel}");
    let host = host_of(&shared, &headers);
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let origin = format!("http://{host}:{}", shared.state.config.http_port);
    let path = |p: &str| format!("{base}/{p}");
    let full = |p: &str| format!("{origin}{}", path(p));
    Ok(Json(json!({
        "panel": panel,
        "expires": super::api::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(expires)),
        "ttl": ttl,
        "token": token,
        "hls": full("hls/index.m3u8"),
        "mjpeg": full("mjpeg"),
        "snapshot": full("snapshot.jpg"),
        "live_snapshot": full("snapshot.jpg?live=1"),
        "paths": {
            "hls": path("hls/index.m3u8"),
            "mjpeg": path("mjpeg"),
            "snapshot": path("snapshot.jpg"),
        },
    }))
    .into_response())
}

pub async fn access(
    State(shared): State<Arc<Shared>>,
    grant: Option<axum::Extension<Grant>>,
    headers: HeaderMap,
) -> Json<Value> {
    let cfg = &shared.state.config;
    let host = host_of(&shared, &headers);
    let panels: Vec<Value> = cfg
        .panels
        .iter()
        .map(|p| {
            let u = published_urls(cfg, &host, p);
            json!({"name": p.name, "rtsp": u.rtsp, "snapshot": u.snapshot, "mjpeg": u.mjpeg, "hls": u.hls})
        })
        .collect();
    // Only ingress users and clients that proved the credentials get here with secrets set.
    let may_see = matches!(grant.map(|g| g.0), Some(Grant::Ingress | Grant::Header(_)));
    let creds = url_credentials(cfg).filter(|_| may_see);
    Json(json!({
        "open": !shared.policy.required(),
        "generated": cfg.credentials_generated,
        "user": creds.as_ref().map(|c| c.0.clone()),
        "password": creds.as_ref().map(|c| c.1.clone()),
        "api_token": cfg.api_token.as_ref().filter(|_| may_see).map(|t| t.expose().to_owned()),
        "public_snapshot": cfg.public_snapshot,
        "panels": panels,
    }))
}
