//! RTSP/1.0 responses (RFC 2326 §7) and `$` interleaved frames (§10.12) as bytes. Every
//! response echoes the request's CSeq (§12.17) and names the server.

use std::fmt::Write as _;

/// Reason phrases of the status codes we send (RFC 2326 §7.1.1).
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        453 => "Not Enough Bandwidth",
        454 => "Session Not Found",
        455 => "Method Not Valid in This State",
        459 => "Aggregate Operation Not Allowed",
        461 => "Unsupported Transport",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "RTSP Version Not Supported",
        551 => "Option not supported",
        _ => "Unknown",
    }
}

/// The methods we serve, for `Public` (OPTIONS) and `Allow` (405).
pub const PUBLIC: &str =
    "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER";

/// A response under construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.headers
            .push(("Content-Type".to_owned(), content_type.to_owned()));
        self.body = body.into();
        self
    }

    /// A plain-text reason for an error status, for people reading logs of the client.
    pub fn text(self, text: &str) -> Self {
        let mut t = text.replace(['\r', '\n'], " ");
        t.push_str("\r\n");
        self.body("text/plain", t)
    }

    /// The response as bytes; `cseq` is `None` only when the request had none readable.
    pub fn to_bytes(&self, cseq: Option<u32>) -> Vec<u8> {
        let mut head = format!("RTSP/1.0 {} {}\r\n", self.status, reason(self.status));
        if let Some(c) = cseq {
            let _ = write!(head, "CSeq: {c}\r\n");
        }
        head.push_str("Server: c300x-bridge\r\n");
        for (n, v) in &self.headers {
            // Values never carry line breaks (they could inject headers).
            let v = v.replace(['\r', '\n'], " ");
            let _ = write!(head, "{n}: {v}\r\n");
        }
        if !self.body.is_empty() {
            let _ = write!(head, "Content-Length: {}\r\n", self.body.len());
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// Appends one `$` frame; payloads over 65535 bytes cannot be framed and are refused.
pub fn write_interleaved(out: &mut Vec<u8>, channel: u8, payload: &[u8]) -> bool {
    let Ok(len) = u16::try_from(payload.len()) else {
        return false;
    };
    out.push(b'$');
    out.push(channel);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_bytes() {
        let r = Response::new(200)
            .header("Session", "ABC;timeout=60")
            .body("application/sdp", "v=0\r\n");
        assert_eq!(
            String::from_utf8(r.to_bytes(Some(3))).expect("utf8"),
            "RTSP/1.0 200 OK\r\nCSeq: 3\r\nServer: c300x-bridge\r\nSession: ABC;timeout=60\r\n\
             Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n"
        );
        assert_eq!(
            Response::new(400).to_bytes(None),
            b"RTSP/1.0 400 Bad Request\r\nServer: c300x-bridge\r\n\r\n"
        );
        let inj = Response::new(404)
            .header("X", "a\r\nEvil: 1")
            .to_bytes(Some(1));
        assert!(!String::from_utf8_lossy(&inj).contains("\r\nEvil"));
    }

    #[test]
    fn interleaved_frame() {
        let mut out = Vec::new();
        assert!(write_interleaved(&mut out, 1, b"ab"));
        assert_eq!(out, b"$\x01\x00\x02ab");
        assert!(!write_interleaved(&mut out, 0, &vec![0; 70_000]));
    }
}
