//! A minimal RTSP client that speaks bytes (requests in, replies and interleaved frames out),
//! for the RTSP tests' error paths and frame counts.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::T;

/// A minimal RTSP client that speaks bytes, for the error paths.
pub struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
    cseq: u32,
}

pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
    pub fn headers(&self, name: &str) -> Vec<&str> {
        self.head
            .split("\r\n")
            .filter_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
            })
            .collect()
    }
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self {
            s: TcpStream::connect(addr).await.expect("connect"),
            buf: Vec::new(),
            cseq: 0,
        }
    }

    pub async fn request(&mut self, method: &str, url: &str, headers: &[(&str, &str)]) -> Reply {
        self.cseq += 1;
        let mut req = format!("{method} {url} RTSP/1.0\r\nCSeq: {}\r\n", self.cseq);
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.s.write_all(req.as_bytes()).await.expect("write");
        let r = self.reply().await.expect("a reply");
        assert_eq!(r.header("CSeq"), Some(self.cseq.to_string().as_str()));
        r
    }

    /// The next response, skipping interleaved frames; `None` at EOF.
    pub async fn reply(&mut self) -> Option<Reply> {
        loop {
            if self.buf.first() == Some(&b'$') && self.buf.len() >= 4 {
                let len = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
                if self.buf.len() >= 4 + len {
                    self.buf.drain(..4 + len);
                    continue;
                }
            } else if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..p]).into_owned();
                let len: usize = head
                    .split("\r\n")
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .map_or(0, |v| v.parse().expect("length"));
                if self.buf.len() >= p + 4 + len {
                    let body = String::from_utf8_lossy(&self.buf[p + 4..p + 4 + len]).into_owned();
                    self.buf.drain(..p + 4 + len);
                    let status = head[9..12].parse().expect("status");
                    return Some(Reply { status, head, body });
                }
            }
            let mut chunk = vec![0u8; 65536];
            let n = tokio::time::timeout(T, self.s.read(&mut chunk))
                .await
                .expect("reply in time")
                .expect("read");
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Counts interleaved frames per channel for `d` (the session is playing).
    pub async fn count_frames(&mut self, d: Duration) -> [usize; 4] {
        let mut counts = [0usize; 4];
        let end = Instant::now() + d;
        loop {
            while self.buf.first() == Some(&b'$') && self.buf.len() >= 4 {
                let len = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
                if self.buf.len() < 4 + len {
                    break;
                }
                let ch = usize::from(self.buf[1]);
                if ch < 4 {
                    counts[ch] += 1;
                }
                self.buf.drain(..4 + len);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return counts;
            }
            let mut chunk = vec![0u8; 65536];
            match tokio::time::timeout(left, self.s.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                Ok(_) => return counts,
                Err(_) => return counts,
            }
        }
    }

    /// DESCRIBE, SETUP video (+ audio) interleaved, PLAY; returns the session id.
    pub async fn play_tcp(&mut self, url: &str) -> String {
        let d = self.request("DESCRIBE", url, &[]).await;
        assert_eq!(d.status, 200, "{}", d.head);
        let s = self
            .request(
                "SETUP",
                &format!("{url}/trackID=0"),
                &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
            )
            .await;
        assert_eq!(s.status, 200, "{}", s.head);
        let session = s
            .header("Session")
            .and_then(|v| v.split(';').next())
            .expect("session")
            .to_owned();
        let a = self
            .request(
                "SETUP",
                &format!("{url}/trackID=1"),
                &[
                    ("Transport", "RTP/AVP/TCP;unicast;interleaved=2-3"),
                    ("Session", &session),
                ],
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.head);
        let p = self.request("PLAY", url, &[("Session", &session)]).await;
        assert_eq!(p.status, 200, "{}", p.head);
        assert!(p.header("RTP-Info").is_some_and(|v| v.contains("seq=")));
        session
    }
}
