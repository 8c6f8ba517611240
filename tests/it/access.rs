//! Issue 12 against the simulator: every way to see, hear or operate needs the credentials and a
//! refused request places no call (`credentials`); idle-connection floods, 150 RTSP readers and
//! a forged SRTP flood against a bridge process (`floods`); the wrong-password throttle
//! (`throttle`). A raw HTTP/1.1 client lives here.

mod credentials;
mod floods;
mod throttle;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection from a chosen loopback address (127.0.0.0/8 is all ours on Linux), so a
/// test can be several peers.
pub async fn connect_from(src: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(IpAddr::from(src), 0))?;
    s.connect(to).await
}

/// One HTTP answer: status, headers, and the body (whole by Content-Length, else what arrived
/// within a second, for streams).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn basic(user: &str, password: &str) -> String {
    let raw = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// Sends one request and reads the answer (within 20 s).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("send");
    s.write_all(body).await.expect("send body");
    read_answer(&mut s, Duration::from_secs(20)).await
}

/// Reads one answer from `s`.
pub async fn read_answer(s: &mut TcpStream, limit: Duration) -> Answer {
    let mut buf = Vec::new();
    let head_end = tokio::time::timeout(limit, async {
        loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return p + 4;
            }
            let mut chunk = [0u8; 8192];
            let n = s.read(&mut chunk).await.expect("read");
            assert!(
                n > 0,
                "closed before a whole head: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("an answer in time");
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = buf[head_end..].to_vec();
    let length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let deadline = tokio::time::Instant::now()
        + if length.is_some() {
            limit
        } else {
            Duration::from_secs(1)
        };
    while length.is_none_or(|l| body.len() < l) && body.len() < 256 * 1024 {
        let mut chunk = [0u8; 16384];
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => body.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    Answer {
        status,
        headers,
        body,
    }
}
