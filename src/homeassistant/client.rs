//! The I/O side of talking to Home Assistant: REST requests (hyper, HTTP/1.1, one connection per
//! request) and a websocket session (tokio-tungstenite) — either to `homeassistant_url` with a
//! long-lived token, or inside the add-on to the Supervisor's Core proxy
//! (`http://supervisor/core/api/…`, `ws://supervisor/core/websocket`) with `SUPERVISOR_TOKEN`.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::flow::{FlowError, Method, Request, http_error};
use crate::config::{HaUrl, Secret};

/// A REST request; a flow step that tests the camera takes up to ~40 s in HA (still 10 s +
/// stream 30 s), so flow requests get more.
pub const REST_TIMEOUT: Duration = Duration::from_secs(20);
pub const FLOW_STEP_TIMEOUT: Duration = Duration::from_secs(90);
const WS_TIMEOUT: Duration = Duration::from_secs(20);
/// Replies are small JSON documents.
const MAX_REPLY: usize = 4 * 1024 * 1024;

/// Where HA's API is and how to authenticate. `Debug` does not show the token.
#[derive(Clone)]
pub struct Endpoint {
    host: String,
    port: u16,
    /// Prefix of REST paths (`/core/api` or `<url path>/api`).
    rest_prefix: String,
    ws_path: String,
    token: Secret,
    supervisor: bool,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

impl Endpoint {
    /// Inside the add-on: the Supervisor's proxy of Core's API (`homeassistant_api: true`).
    pub fn supervisor(token: Secret) -> Self {
        Self {
            host: "supervisor".into(),
            port: 80,
            rest_prefix: "/core/api".into(),
            ws_path: "/core/websocket".into(),
            token,
            supervisor: true,
        }
    }

    /// `homeassistant_url` + `homeassistant_token`.
    pub fn url(url: &HaUrl, token: Secret) -> Self {
        Self {
            host: url.host.clone(),
            port: url.port,
            rest_prefix: format!("{}/api", url.path),
            ws_path: format!("{}/api/websocket", url.path),
            token,
            supervisor: false,
        }
    }

    /// How logs and the status page name it.
    pub fn label(&self) -> String {
        if self.supervisor {
            "Home Assistant (through the Supervisor)".into()
        } else {
            format!("Home Assistant at http://{}", self.authority())
        }
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn unreachable(&self, detail: impl std::fmt::Display) -> HaError {
        HaError::Unreachable {
            endpoint: self.label(),
            detail: detail.to_string(),
        }
    }

    fn unauthorized(&self, status: u16) -> HaError {
        let hint = if self.supervisor {
            "the add-on needs `homeassistant_api: true` in its config.yaml"
        } else {
            "check homeassistant_token (a long-lived access token of an administrator)"
        };
        HaError::Unauthorized {
            endpoint: self.label(),
            status,
            hint,
        }
    }

    async fn connect(&self) -> Result<TcpStream, HaError> {
        let tcp = tokio::time::timeout(
            Duration::from_secs(10),
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| self.unreachable("no TCP connection within 10 s"))?
        .map_err(|e| self.unreachable(e))?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    /// One REST request; the reply's status and JSON body (`null` when empty). 401/403 become
    /// `Unauthorized`; other statuses are the caller's to judge.
    pub async fn rest(&self, req: &Request, limit: Duration) -> Result<(u16, Value), HaError> {
        let path = format!("{}/{}", self.rest_prefix, req.path);
        let work = async {
            let tcp = self.connect().await?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                    .await
                    .map_err(|e| self.unreachable(e))?;
            let body = match &req.body {
                Some(v) => Bytes::from(v.to_string()),
                None => Bytes::new(),
            };
            let request = hyper::Request::builder()
                .method(req.method.as_str())
                .uri(&path)
                .header(header::HOST, self.authority())
                .header(
                    header::AUTHORIZATION,
                    format!("Bearer {}", self.token.expose()),
                )
                .header(header::ACCEPT, "application/json")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(body))
                .map_err(|e| self.unreachable(format!("bad request {path}: {e}")))?;
            let exchange = async {
                let reply = sender
                    .send_request(request)
                    .await
                    .map_err(|e| self.unreachable(e))?;
                let status = reply.status().as_u16();
                let encoded = reply
                    .headers()
                    .get(header::CONTENT_ENCODING)
                    .is_some_and(|v| v.as_bytes() != b"identity");
                let bytes = Limited::new(reply.into_body(), MAX_REPLY)
                    .collect()
                    .await
                    .map_err(|e| self.unreachable(format!("reading the reply of {path}: {e}")))?
                    .to_bytes();
                Ok::<_, HaError>((status, encoded, bytes))
            };
            // The connection future must be polled for the exchange to progress.
            tokio::pin!(conn);
            tokio::select! {
                r = exchange => r,
                r = &mut conn => Err(self.unreachable(format!(
                    "connection closed before the reply to {path}: {r:?}"
                ))),
            }
        };
        let (status, encoded, bytes) =
            tokio::time::timeout(limit, work).await.map_err(|_| {
                self.unreachable(format!(
                    "{} {path}: no reply within {} s",
                    req.method.as_str(),
                    limit.as_secs()
                ))
            })??;
        if status == 401 || status == 403 {
            return Err(self.unauthorized(status));
        }
        if encoded {
            return Err(HaError::Flow(FlowError::BadReply {
                path,
                detail: "compressed reply (Content-Encoding) although none was asked for".into(),
            }));
        }
        let value = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                // aiohttp answers some errors as text ("404: Not Found").
                Err(_) => json!({"message": String::from_utf8_lossy(&bytes).trim()}),
            }
        };
        Ok((status, value))
    }

    /// `rest` where anything but 2xx is an error.
    pub async fn rest_ok(&self, req: &Request, limit: Duration) -> Result<Value, HaError> {
        let (status, body) = self.rest(req, limit).await?;
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(HaError::Flow(http_error(&req.path, status, &body)))
        }
    }

    /// Opens and authenticates a websocket session.
    pub async fn websocket(&self) -> Result<Ws, HaError> {
        let work = async {
            let tcp = self.connect().await?;
            let url = format!("ws://{}{}", self.authority(), self.ws_path);
            let (stream, _) = tokio_tungstenite::client_async(url, tcp)
                .await
                .map_err(|e| self.unreachable(format!("websocket {}: {e}", self.ws_path)))?;
            let mut ws = Ws {
                stream,
                next_id: 1,
                label: self.label(),
            };
            let hello = ws.receive().await?;
            if hello.get("type").and_then(Value::as_str) != Some("auth_required") {
                return Err(ws.error("auth", format!("expected auth_required, got {hello}")));
            }
            ws.send(json!({"type": "auth", "access_token": self.token.expose()}))
                .await?;
            let reply = ws.receive().await?;
            match reply.get("type").and_then(Value::as_str) {
                Some("auth_ok") => Ok(ws),
                Some("auth_invalid") => Err(self.unauthorized(401)),
                _ => Err(ws.error("auth", format!("unexpected {reply}"))),
            }
        };
        tokio::time::timeout(WS_TIMEOUT, work)
            .await
            .map_err(|_| self.unreachable("websocket: no answer within 20 s"))?
    }
}

/// Why talking to HA failed.
#[derive(Debug, thiserror::Error)]
pub enum HaError {
    #[error("cannot reach {endpoint}: {detail}")]
    Unreachable { endpoint: String, detail: String },
    #[error("{endpoint} refused the token (HTTP {status}): {hint}")]
    Unauthorized {
        endpoint: String,
        status: u16,
        hint: &'static str,
    },
    #[error(transparent)]
    Flow(#[from] FlowError),
    #[error("{endpoint}, websocket command `{command}`: {detail}")]
    Websocket {
        endpoint: String,
        command: String,
        detail: String,
    },
}

impl HaError {
    /// Worth retrying soon: HA is away (starting, restarting) or the camera test failed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Unauthorized { .. } => false,
            Self::Flow(e) => e.is_transient(),
            Self::Websocket { .. } => true,
        }
    }
}

/// An authenticated websocket session: commands one at a time.
pub struct Ws {
    stream: WebSocketStream<TcpStream>,
    next_id: u64,
    label: String,
}

impl Ws {
    fn error(&self, command: &str, detail: String) -> HaError {
        HaError::Websocket {
            endpoint: self.label.clone(),
            command: command.to_owned(),
            detail,
        }
    }

    async fn send(&mut self, v: Value) -> Result<(), HaError> {
        let text = v.to_string();
        self.stream
            .send(Message::text(text))
            .await
            .map_err(|e| self.error("send", e.to_string()))
    }

    async fn receive(&mut self) -> Result<Value, HaError> {
        loop {
            let msg = self
                .stream
                .next()
                .await
                .ok_or_else(|| self.error("receive", "connection closed".into()))?
                .map_err(|e| self.error("receive", e.to_string()))?;
            match msg {
                Message::Text(t) => {
                    return serde_json::from_str(t.as_str())
                        .map_err(|e| self.error("receive", format!("not JSON: {e}")));
                }
                Message::Close(_) => return Err(self.error("receive", "closed by HA".into())),
                _ => {}
            }
        }
    }

    /// Sends `command` (an object with `type`) and returns its `result`, or the error HA gave.
    pub async fn call(&mut self, mut command: Value) -> Result<Value, HaError> {
        let id = self.next_id;
        self.next_id += 1;
        let name = command
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        if let Some(map) = command.as_object_mut() {
            map.insert("id".into(), json!(id));
        }
        let work = async {
            self.send(command).await?;
            loop {
                let msg = self.receive().await?;
                if msg.get("id").and_then(Value::as_u64) != Some(id)
                    || msg.get("type").and_then(Value::as_str) != Some("result")
                {
                    continue;
                }
                if msg.get("success").and_then(Value::as_bool) == Some(true) {
                    return Ok(msg.get("result").cloned().unwrap_or(Value::Null));
                }
                let e = msg.get("error").cloned().unwrap_or(Value::Null);
                let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                return Err(self.error(&name, format!("{}: {}", text("code"), text("message"))));
            }
        };
        match tokio::time::timeout(WS_TIMEOUT, work).await {
            Ok(r) => r,
            Err(_) => Err(self.error(&name, "no result within 20 s".into())),
        }
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}

/// `GET /api/config/config_entries/entry?domain=generic`.
pub fn list_generic_entries() -> Request {
    Request {
        method: Method::Get,
        path: "config/config_entries/entry?domain=generic".into(),
        body: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_labels() {
        let s = Endpoint::supervisor(Secret::new("t"));
        assert_eq!(s.rest_prefix, "/core/api");
        assert_eq!(s.ws_path, "/core/websocket");
        assert!(!format!("{s:?}").contains('t') || !format!("{s:?}").contains("\"t\""));
        let u = Endpoint::url(
            &HaUrl {
                host: "fd00::5".into(),
                port: 8123,
                path: "/ha".into(),
            },
            Secret::new("secret-token"),
        );
        assert_eq!(u.rest_prefix, "/ha/api");
        assert_eq!(u.ws_path, "/ha/api/websocket");
        assert_eq!(u.label(), "Home Assistant at http://[fd00::5]:8123");
        assert!(!format!("{u:?}").contains("secret-token"));
    }
}
