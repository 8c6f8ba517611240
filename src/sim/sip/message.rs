//! The simulator's own SIP message model (RFC 3261 §7): a tolerant parser, a stream framer for
//! TCP (Content-Length, CRLF keep-alives per RFC 5626 §4.4.1) and a serializer that keeps header
//! order, so the simulator can send the real unit's messages byte for byte.
//! Independent of the bridge's SIP stack on purpose: the two implementations check each other.

use std::fmt::Write as _;

/// Largest message the simulator accepts (flexisip's default is of the same order).
pub const MAX_MESSAGE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("SIP message is not UTF-8")]
    NotText,
    #[error("SIP start line `{0}` is malformed")]
    StartLine(String),
    #[error("SIP header line `{0}` has no colon")]
    Header(String),
    #[error("SIP message has no `{0}` header")]
    Missing(&'static str),
    #[error("SIP Content-Length `{0}` is not a number")]
    ContentLength(String),
    #[error("SIP message of {0} bytes exceeds the {MAX_MESSAGE}-byte limit")]
    TooLarge(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: String, uri: String },
    Response { code: u16, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    /// Headers in wire order, names as received (compact forms expanded on lookup).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// RFC 3261 §7.3.3 compact header names.
fn expand(name: &str) -> &str {
    match name {
        "v" | "V" => "Via",
        "f" | "F" => "From",
        "t" | "T" => "To",
        "i" | "I" => "Call-ID",
        "m" | "M" => "Contact",
        "l" | "L" => "Content-Length",
        "c" | "C" => "Content-Type",
        "k" | "K" => "Supported",
        "s" | "S" => "Subject",
        _ => name,
    }
}

impl Message {
    pub fn request(method: &str, uri: &str) -> Self {
        Self {
            start: StartLine::Request {
                method: method.to_owned(),
                uri: uri.to_owned(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn response(code: u16, reason: &str) -> Self {
        Self {
            start: StartLine::Response {
                code,
                reason: reason.to_owned(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        if bytes.len() > MAX_MESSAGE {
            return Err(ParseError::TooLarge(bytes.len()));
        }
        let split = find(bytes, b"\r\n\r\n").map(|i| (i, i + 4));
        let split = split.or_else(|| find(bytes, b"\n\n").map(|i| (i, i + 2)));
        let (head_end, body_start) = split.unwrap_or((bytes.len(), bytes.len()));
        let head = std::str::from_utf8(&bytes[..head_end]).map_err(|_| ParseError::NotText)?;
        let mut lines = head.lines();
        let first = lines.next().unwrap_or_default().trim();
        let start = parse_start_line(first)?;
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.starts_with([' ', '\t']) {
                // Folded continuation (RFC 3261 §7.3.1).
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                    continue;
                }
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| ParseError::Header(line.to_owned()))?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        let mut msg = Self {
            start,
            headers,
            body: Vec::new(),
        };
        let rest = &bytes[body_start.min(bytes.len())..];
        let len = match msg.header("Content-Length") {
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map_err(|_| ParseError::ContentLength(v.to_owned()))?,
            None => rest.len(),
        };
        msg.body = rest[..len.min(rest.len())].to_vec();
        for required in ["Via", "From", "To", "Call-ID", "CSeq"] {
            if msg.header(required).is_none() {
                return Err(ParseError::Missing(required));
            }
        }
        Ok(msg)
    }

    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    pub fn code(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// First value of a header (case-insensitive, compact forms understood).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| expand(n).eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, comma-separated values split (outside `<>` and quotes).
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| expand(n).eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| split_list(v))
            .collect()
    }

    pub fn push(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn set_body(&mut self, content_type: &str, body: impl Into<Vec<u8>>) -> &mut Self {
        self.body = body.into();
        self.push("Content-Type", content_type);
        self
    }

    pub fn call_id(&self) -> &str {
        self.header("Call-ID").unwrap_or_default()
    }

    /// CSeq number and method.
    pub fn cseq(&self) -> (u32, String) {
        let v = self.header("CSeq").unwrap_or_default();
        let mut it = v.split_whitespace();
        let n = it.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        (n, it.next().unwrap_or_default().to_ascii_uppercase())
    }

    /// Serializes with a correct Content-Length as the last header.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::new();
        match &self.start {
            StartLine::Request { method, uri } => {
                let _ = write!(out, "{method} {uri} SIP/2.0\r\n");
            }
            StartLine::Response { code, reason } => {
                let _ = write!(out, "SIP/2.0 {code} {reason}\r\n");
            }
        }
        for (n, v) in &self.headers {
            if expand(n).eq_ignore_ascii_case("Content-Length") {
                continue;
            }
            let _ = write!(out, "{n}: {v}\r\n");
        }
        let _ = write!(out, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    let bad = || ParseError::StartLine(line.chars().take(120).collect());
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code = code.parse::<u16>().map_err(|_| bad())?;
        if !(100..700).contains(&code) {
            return Err(bad());
        }
        return Ok(StartLine::Response {
            code,
            reason: reason.to_owned(),
        });
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some("SIP/2.0"), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) || uri.is_empty() {
        return Err(bad());
    }
    Ok(StartLine::Request {
        method: method.to_ascii_uppercase(),
        uri: uri.to_owned(),
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Splits a header value on commas that are not inside `<...>` or quotes.
pub fn split_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut cur) = (0i32, false, String::new());
    for ch in value.chars() {
        match ch {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth <= 0 => {
                out.push(cur.trim().to_owned());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_owned());
    }
    out
}

/// The value of `;name=value` in a header (e.g. `tag` of From/To, `branch` of Via).
pub fn param<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    // Parameters after the `>` of a name-addr belong to the header, not the URI.
    let params = match header.rfind('>') {
        Some(i) => &header[i + 1..],
        None => header,
    };
    params.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The URI inside a name-addr (`"x" <sip:a@b>;tag=1` → `sip:a@b`), or the bare addr-spec.
pub fn uri_of(header: &str) -> &str {
    match (header.find('<'), header.find('>')) {
        (Some(a), Some(b)) if a < b => &header[a + 1..b],
        _ => header.split(';').next().unwrap_or_default().trim(),
    }
}

/// The user part of a SIP URI (`sip:c300x@dom;x` → `c300x`).
pub fn uri_user(uri: &str) -> Option<&str> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let (user, _) = rest.split_once('@')?;
    Some(user.split(';').next().unwrap_or(user))
}

/// The `host[:port]` of a SIP URI, without parameters.
pub fn uri_hostport(uri: &str) -> &str {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
        .unwrap_or(uri);
    let rest = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    rest.split([';', '?', '>']).next().unwrap_or(rest)
}

/// What one read of a TCP stream yields.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete message (not yet parsed).
    Message(Vec<u8>),
    /// A double-CRLF keep-alive ping (RFC 5626 §4.4.1); answer with one CRLF.
    Ping,
    /// A single CRLF (a pong, or padding); ignore.
    Pong,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("SIP stream: headers exceed {MAX_MESSAGE} bytes without an end")]
    HeadersTooLong,
    #[error("SIP stream: Content-Length `{0}` is invalid or too large")]
    BadLength(String),
}

/// Takes the next frame out of a TCP receive buffer, or `None` when more bytes are needed.
pub fn next_frame(buf: &mut Vec<u8>) -> Result<Option<Frame>, FrameError> {
    if buf.starts_with(b"\r\n\r\n") {
        buf.drain(..4);
        return Ok(Some(Frame::Ping));
    }
    if buf.starts_with(b"\r\n") {
        if buf.len() < 4 && b"\r\n\r\n".starts_with(buf) {
            // Could be the start of a double CRLF; but a lone CRLF is a pong.
            if buf.len() == 3 {
                return Ok(None);
            }
        }
        buf.drain(..2);
        return Ok(Some(Frame::Pong));
    }
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_MESSAGE {
            return Err(FrameError::HeadersTooLong);
        }
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut len = 0usize;
    for line in head.lines().skip(1) {
        if let Some((n, v)) = line.split_once(':')
            && expand(n.trim()).eq_ignore_ascii_case("Content-Length")
        {
            len = v
                .trim()
                .parse()
                .map_err(|_| FrameError::BadLength(v.trim().to_owned()))?;
        }
    }
    if len > MAX_MESSAGE {
        return Err(FrameError::BadLength(len.to_string()));
    }
    let total = head_end + 4 + len;
    if buf.len() < total {
        return Ok(None);
    }
    let msg: Vec<u8> = buf.drain(..total).collect();
    Ok(Some(Frame::Message(msg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:c300x@1234567.bs.iotleg.com SIP/2.0\r\n\
        v: SIP/2.0/TCP 10.0.0.2:5060;branch=z9hG4bKabc;rport\r\n\
        From: <sip:ha@1234567.bs.iotleg.com>;tag=f1\r\n\
        To: <sip:c300x@1234567.bs.iotleg.com>\r\n\
        Call-ID: x1\r\n\
        CSeq: 21 INVITE\r\n\
        Contact: <sip:ha@10.0.0.2:5060;transport=tcp>\r\n\
        Content-Length: 4\r\n\r\nv=0\n";

    #[test]
    fn parses_request_with_compact_headers() {
        let m = Message::parse(INVITE.as_bytes()).expect("valid");
        assert_eq!(m.method(), Some("INVITE"));
        assert_eq!(
            m.header("via"),
            Some("SIP/2.0/TCP 10.0.0.2:5060;branch=z9hG4bKabc;rport")
        );
        assert_eq!(m.cseq(), (21, "INVITE".to_owned()));
        assert_eq!(m.body, b"v=0\n");
        assert_eq!(
            param(m.header("From").unwrap_or_default(), "tag"),
            Some("f1")
        );
        assert_eq!(
            uri_user(uri_of(m.header("To").unwrap_or_default())),
            Some("c300x")
        );
    }

    #[test]
    fn framer_splits_pipelined_messages_and_pings() {
        let mut buf = b"\r\n\r\n".to_vec();
        buf.extend_from_slice(INVITE.as_bytes());
        buf.extend_from_slice(&INVITE.as_bytes()[..30]);
        assert_eq!(next_frame(&mut buf), Ok(Some(Frame::Ping)));
        assert!(
            matches!(next_frame(&mut buf), Ok(Some(Frame::Message(m))) if m == INVITE.as_bytes())
        );
        assert_eq!(next_frame(&mut buf), Ok(None));
        assert_eq!(buf.len(), 30);
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [
            &b""[..],
            b"\xff\xfe",
            b"HELLO",
            b"INVITE sip:x SIP/2.0\r\n\r\n",
            b"SIP/2.0 99 X\r\n",
        ] {
            assert!(Message::parse(bad).is_err(), "{bad:?}");
        }
        let mut huge = b"INVITE sip:x SIP/2.0\r\nContent-Length: 99999999\r\n\r\n".to_vec();
        assert!(next_frame(&mut huge).is_err());
    }

    #[test]
    fn split_list_respects_brackets_and_quotes() {
        let v = split_list("<sip:a;lr>, \"x, y\" <sip:b>, <sip:c>");
        assert_eq!(v, vec!["<sip:a;lr>", "\"x, y\" <sip:b>", "<sip:c>"]);
    }

    #[test]
    fn serializes_with_content_length_last() {
        let mut m = Message::response(200, "OK");
        m.push("Call-ID", "x").set_body("text/plain", "hi");
        let s = String::from_utf8(m.to_bytes()).expect("utf8");
        assert_eq!(
            s,
            "SIP/2.0 200 OK\r\nCall-ID: x\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
        );
    }
}
