//! API errors as JSON `{error, detail}` with their HTTP status (each logged once, here), and the
//! guard on mutating requests: a bearer token when one is configured, except for Home Assistant
//! ingress requests (from the Supervisor's address with `X-Ingress-Path`; home-assistant.md §4).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Shared;
use crate::intercom::IntercomError;
use crate::media::hub::HubError;

/// Where the Supervisor's ingress proxy connects from.
pub const INGRESS_PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(172, 30, 32, 2));

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no panel named `{0}`")]
    UnknownPanel(String),
    #[error("no lock named `{0}`")]
    UnknownLock(String),
    #[error("{0}")]
    NotFound(String),
    #[error("a bearer token is required (Authorization: Bearer <api_token>)")]
    Unauthorized,
    #[error("invalid JSON body: {0}")]
    BadJson(String),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error(transparent)]
    Intercom(#[from] IntercomError),
    #[error("panel {0}: no doorbell ring to answer")]
    NotRinging(String),
    #[error("{0}")]
    Timeout(String),
    #[error("the stream ended: {0}")]
    StreamEnded(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            Self::UnknownPanel(_) => (StatusCode::NOT_FOUND, "unknown_panel"),
            Self::UnknownLock(_) => (StatusCode::NOT_FOUND, "unknown_lock"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::BadJson(_) => (StatusCode::BAD_REQUEST, "bad_json"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Hub(HubError::StreamingDisabled { .. }) => {
                (StatusCode::FORBIDDEN, "streaming_disabled")
            }
            Self::Hub(HubError::StartTimeout { .. }) => {
                (StatusCode::GATEWAY_TIMEOUT, "start_timeout")
            }
            Self::Hub(HubError::CallFailed { .. }) => (StatusCode::BAD_GATEWAY, "call_failed"),
            Self::Hub(HubError::Stopped { .. }) => (StatusCode::SERVICE_UNAVAILABLE, "stopped"),
            Self::Intercom(_) => (StatusCode::BAD_GATEWAY, "intercom"),
            Self::NotRinging(_) => (StatusCode::CONFLICT, "not_ringing"),
            Self::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            Self::StreamEnded(_) => (StatusCode::SERVICE_UNAVAILABLE, "stream_ended"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let detail = self.to_string();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = code, %detail, "HTTP request failed");
        } else {
            tracing::info!(status = status.as_u16(), error = code, %detail, "HTTP request refused");
        }
        let body = Json(serde_json::json!({ "error": code, "detail": detail }));
        let mut resp = (status, body).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"c300x-bridge\""),
            );
        }
        resp
    }
}

pub async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!("no such endpoint: {}", req.uri().path()))
}

/// Compares without an early exit, so the token cannot be guessed byte by byte from timing.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the request may change something (GET/HEAD are always allowed).
fn allowed(shared: &Shared, req: &Request) -> bool {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return true;
    }
    let Some(token) = shared.state.config.api_token.as_ref() else {
        return true;
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if peer == Some(INGRESS_PEER) && req.headers().contains_key("x-ingress-path") {
        return true;
    }
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .is_some_and(|t| same_secret(t.trim().as_bytes(), token.expose().as_bytes()))
}

pub async fn authorize(
    State(shared): State<Arc<Shared>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if !allowed(&shared, &req) {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }

    #[test]
    fn statuses_follow_the_error() {
        assert_eq!(ApiError::Unauthorized.parts().0, StatusCode::UNAUTHORIZED);
        let e = ApiError::Hub(HubError::StreamingDisabled { panel: "p".into() });
        assert_eq!(e.parts(), (StatusCode::FORBIDDEN, "streaming_disabled"));
        assert_eq!(
            ApiError::BadJson("x".into()).parts().0,
            StatusCode::BAD_REQUEST
        );
    }
}
