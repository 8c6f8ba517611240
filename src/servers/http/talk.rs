//! Push-to-talk over a WebSocket (issue 17): `GET /api/<panel>/talk?rate=48000` upgrades to a
//! WebSocket whose binary messages are 16-bit little-endian mono PCM at `rate` Hz (the status
//! page's AudioWorklet sends them while its button is held). Before the upgrade the panel's talk
//! is taken: 409 `talk_busy` when someone else talks, the hub's error when no call can be had
//! (an idle panel gets a view call, as for a viewer). The access model treats the path like every
//! command (credentials or ingress, never a signed URL). The socket's task ends when the client
//! closes, after [`IDLE`] without a message, or when the hub ends the talk (shutdown included).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::{ApiError, Shared};
use crate::media::hub::{TalkError, Talker};
use crate::media::talk::TalkInput;

/// A socket without a message for this long is closed (the page sends every ~3 ms while held).
const IDLE: Duration = Duration::from_secs(10);
/// Sample rates the socket takes (browsers capture at 8–48 kHz).
const RATES: std::ops::RangeInclusive<u32> = 8_000..=48_000;
/// The largest message: 1 s of 48 kHz audio.
const MAX_MESSAGE: usize = 96_000;

fn header_has(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn rate(query: Option<&str>) -> Result<u32, ApiError> {
    let Some(v) = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("rate="))
    else {
        return Ok(48_000);
    };
    v.parse()
        .ok()
        .filter(|r| RATES.contains(r))
        .ok_or_else(|| ApiError::BadRequest(format!("rate {v:?}: give 8000..=48000 Hz")))
}

pub(super) async fn talk(
    State(shared): State<Arc<Shared>>,
    Path(panel): Path<String>,
    mut req: Request,
) -> Result<Response, ApiError> {
    let hub = shared.panel(&panel)?.hub.clone();
    let rate = rate(req.uri().query())?;
    let h = req.headers();
    let key = h.get(header::SEC_WEBSOCKET_KEY).cloned();
    let upgrade = header_has(h, header::CONNECTION, "upgrade")
        && header_has(h, header::UPGRADE, "websocket")
        && h.get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v == "13");
    let (Some(key), true) = (key, upgrade) else {
        let detail = "a WebSocket upgrade (version 13) is required";
        return Ok((StatusCode::UPGRADE_REQUIRED, detail).into_response());
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return Err(ApiError::Internal(
            "the connection cannot be upgraded".into(),
        ));
    };
    let stats = &shared.stats.http;
    let talker = match hub.talk().await {
        Ok(t) => t,
        Err(e) => {
            let counter = match e {
                TalkError::Busy { .. } => &stats.talk_busy,
                _ => &stats.talk_failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            return Err(match e {
                TalkError::Busy { panel } => ApiError::TalkBusy(panel),
                TalkError::Hub(h) => ApiError::Hub(h),
                other => ApiError::Internal(other.to_string()),
            });
        }
    };
    stats.talk_sessions.fetch_add(1, Ordering::Relaxed);
    tracing::info!(panel, rate, "push-to-talk: talking");
    // The socket's task owns the talker: it ends with the socket or with the hub's talk.
    shared.tasks.spawn(async move {
        match on_upgrade.await {
            Ok(io) => {
                let mut cfg = WebSocketConfig::default();
                cfg.max_message_size = Some(MAX_MESSAGE);
                cfg.max_frame_size = Some(MAX_MESSAGE);
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, Some(cfg))
                        .await;
                serve(ws, talker, rate).await;
            }
            Err(e) => tracing::info!(panel = talker.panel(), "push-to-talk: upgrade failed: {e}"),
        }
    });
    let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut resp = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    Ok(resp)
}

async fn serve<S>(mut ws: WebSocketStream<S>, mut talker: Talker, rate: u32)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let panel = talker.panel().to_owned();
    let mut samples: Vec<i16> = Vec::new();
    let why = loop {
        let msg = tokio::select! {
            m = tokio::time::timeout(IDLE, ws.next()) => m,
            e = talker.closed() => break e.to_string(),
        };
        let data = match msg {
            Err(_) => break "idle".to_owned(),
            Ok(None) => break "closed by the client".to_owned(),
            Ok(Some(Err(e))) => break e.to_string(),
            Ok(Some(Ok(Message::Binary(b)))) => b,
            Ok(Some(Ok(Message::Close(_)))) => break "closed by the client".to_owned(),
            Ok(Some(Ok(_))) => continue,
        };
        samples.clear();
        samples.extend(
            data.chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]])),
        );
        match talker.push(TalkInput::Pcm16 {
            rate,
            samples: &samples,
        }) {
            Ok(_) => {}
            Err(TalkError::Audio(e)) => break format!("audio: {e}"),
            Err(e) => break e.to_string(),
        }
    };
    let counts = talker.counts();
    tracing::info!(panel, why, ?counts, "push-to-talk: ended");
    let _ = ws.close(None).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(rate(None).ok(), Some(48_000));
        assert_eq!(rate(Some("rate=16000")).ok(), Some(16_000));
        assert_eq!(rate(Some("x=1&rate=8000")).ok(), Some(8_000));
        assert!(rate(Some("rate=4000")).is_err());
        assert!(rate(Some("rate=abc")).is_err());
    }
}
