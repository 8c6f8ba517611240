//! The broker the Home Assistant Supervisor offers to add-ons (home-assistant.md §4.5):
//! `GET http://supervisor/services/mqtt` with `Authorization: Bearer $SUPERVISOR_TOKEN`, one plain
//! HTTP/1.1 request over a `TcpStream` (no HTTP client crate for one call). Reply parsing is pure.

use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{MqttError, MqttSettings};
use crate::config::Secret;

/// Where the Supervisor API listens inside an add-on.
pub const SUPERVISOR_ADDR: &str = "supervisor:80";
const TIMEOUT: Duration = Duration::from_secs(10);
/// A Supervisor reply is small; anything bigger is not one.
const MAX_REPLY: u64 = 64 * 1024;

#[derive(Deserialize)]
struct Envelope {
    result: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    data: Option<Service>,
}

#[derive(Deserialize)]
struct Service {
    host: String,
    port: u16,
    #[serde(default)]
    ssl: bool,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Asks the Supervisor at `addr` (`host:port`) for the MQTT service.
pub async fn lookup(addr: &str, token: &str) -> Result<Option<MqttSettings>, MqttError> {
    let fail = |detail: String| MqttError::Supervisor { detail };
    let host = addr.split(':').next().unwrap_or(addr);
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!(
            "GET /services/mqtt HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
             Accept: application/json\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut reply = Vec::new();
        stream.take(MAX_REPLY).read_to_end(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    let reply = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| fail(format!("{addr}: no reply within {} s", TIMEOUT.as_secs())))?
        .map_err(|e| fail(format!("{addr}: {e}")))?;
    parse_reply(&reply)
}

/// Parses the raw HTTP reply. `Ok(None)`: the Supervisor has no MQTT service (4xx with
/// `result: error`, e.g. no Mosquitto add-on installed).
pub fn parse_reply(reply: &[u8]) -> Result<Option<MqttSettings>, MqttError> {
    let fail = |detail: String| MqttError::Supervisor { detail };
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| fail("reply has no end of headers".into()))?;
    let head = String::from_utf8_lossy(&reply[..split]);
    let raw_body = &reply[split + 4..];
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| fail("reply has no HTTP status line".into()))?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    let body = if chunked {
        dechunk(raw_body).ok_or_else(|| fail("bad chunked body".into()))?
    } else {
        raw_body.to_vec()
    };
    let envelope: Envelope = serde_json::from_slice(&body).map_err(|e| {
        fail(format!(
            "HTTP {status}: body is not the Supervisor's JSON: {e}"
        ))
    })?;
    match (status, envelope.result.as_str(), envelope.data) {
        (200..=299, "ok", Some(s)) => Ok(Some(MqttSettings {
            host: s.host,
            port: s.port,
            tls: s.ssl,
            user: s.username.filter(|u| !u.is_empty()),
            password: s.password.filter(|p| !p.is_empty()).map(Secret::new),
            ..MqttSettings::default()
        })),
        (400..=499, _, _) => {
            tracing::info!(
                status,
                message = envelope.message.as_deref().unwrap_or(""),
                "the Supervisor offers no MQTT service"
            );
            Ok(None)
        }
        (status, result, _) => Err(fail(format!(
            "HTTP {status}, result `{result}`: {}",
            envelope.message.unwrap_or_default()
        ))),
    }
}

/// Joins an HTTP/1.1 chunked body (`<hex>\r\n<data>\r\n … 0\r\n\r\n`).
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"{"result":"ok","data":{"addon":"core_mosquitto","host":"core-mosquitto","port":1883,"ssl":false,"protocol":"3.1.1","username":"addons","password":"s3cret"}}"#;

    #[test]
    fn ok_reply_gives_the_broker() {
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{OK}",
            OK.len()
        );
        let s = parse_reply(reply.as_bytes()).expect("ok").expect("some");
        assert_eq!(
            (s.host.as_str(), s.port, s.tls),
            ("core-mosquitto", 1883, false)
        );
        assert_eq!(s.user.as_deref(), Some("addons"));
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("s3cret"));
    }

    #[test]
    fn chunked_reply_and_no_service() {
        let (a, b) = OK.split_at(20);
        let reply = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
            a.len(),
            b.len()
        );
        assert!(parse_reply(reply.as_bytes()).expect("ok").is_some());
        let none = "HTTP/1.1 400 Bad Request\r\n\r\n{\"result\":\"error\",\"message\":\"No mqtt service\"}";
        assert!(parse_reply(none.as_bytes()).expect("ok").is_none());
        assert!(parse_reply(b"HTTP/1.1 500 Oops\r\n\r\n{\"result\":\"error\"}").is_err());
        assert!(parse_reply(b"garbage").is_err());
    }

    #[tokio::test]
    async fn lookup_speaks_http_to_a_fake_supervisor() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0; 4096];
            let n = sock.read(&mut buf).await.expect("read");
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{OK}",
                OK.len()
            );
            sock.write_all(reply.as_bytes()).await.expect("write");
            req
        });
        let s = lookup(&addr.to_string(), "tok")
            .await
            .expect("ok")
            .expect("some");
        assert_eq!(s.port, 1883);
        let req = server.await.expect("server");
        assert!(req.starts_with("GET /services/mqtt HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("Authorization: Bearer tok\r\n"), "{req}");
    }
}
