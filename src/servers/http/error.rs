//! API errors as JSON `{error, detail}` with their HTTP status (each logged once, here). Who may
//! send a request at all is `guard`'s business.

use axum::Json;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::intercom::IntercomError;
use crate::media::hub::HubError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no panel named `{0}`")]
    UnknownPanel(String),
    #[error("no lock named `{0}`")]
    UnknownLock(String),
    #[error("{0}")]
    NotFound(String),
    #[error("credentials required: {0}")]
    Unauthorized(&'static str),
    #[error("invalid JSON body: {0}")]
    BadJson(String),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error(transparent)]
    Intercom(#[from] IntercomError),
    /// Someone else holds the panel's talk.
    #[error("panel {0}: someone else is talking")]
    TalkBusy(String),
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
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
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
            Self::TalkBusy(_) => (StatusCode::CONFLICT, "talk_busy"),
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
                header::HeaderValue::from_static("Basic realm=\"c300x-bridge\""),
            );
        }
        resp
    }
}

pub async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!("no such endpoint: {}", req.uri().path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_error() {
        assert_eq!(
            ApiError::Unauthorized("x").parts().0,
            StatusCode::UNAUTHORIZED
        );
        let e = ApiError::Hub(HubError::StreamingDisabled { panel: "p".into() });
        assert_eq!(e.parts(), (StatusCode::FORBIDDEN, "streaming_disabled"));
        assert_eq!(
            ApiError::BadJson("x".into()).parts().0,
            StatusCode::BAD_REQUEST
        );
    }
}
