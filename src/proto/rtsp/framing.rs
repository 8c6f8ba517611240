//! Splits the bytes of one RTSP connection into requests and `$` interleaved frames
//! (RFC 2326 §10.12), with limits on head and body sizes. Request lines and headers are parsed
//! by rtsp-types; this file adds the limits, the CSeq rule (§12.17) and an owned `Request`.

/// Longest request head (request line + headers) we accept; beyond: 400 and close.
pub const MAX_HEAD: usize = 8 * 1024;
/// Longest request body (clients send SDP at most; we accept no ANNOUNCE).
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FramingError {
    #[error("request head longer than {limit} bytes")]
    HeadTooLarge { limit: usize },
    #[error("request body of {len} bytes is over the {limit}-byte limit")]
    BodyTooLarge { len: usize, limit: usize },
    #[error("malformed request: {0}")]
    Malformed(String),
}

/// RTSP methods we know; anything else keeps its name (answered 501).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Options,
    Describe,
    Setup,
    Play,
    Pause,
    Teardown,
    GetParameter,
    SetParameter,
    Announce,
    Record,
    Redirect,
    Other(String),
}

impl Method {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Options => "OPTIONS",
            Self::Describe => "DESCRIBE",
            Self::Setup => "SETUP",
            Self::Play => "PLAY",
            Self::Pause => "PAUSE",
            Self::Teardown => "TEARDOWN",
            Self::GetParameter => "GET_PARAMETER",
            Self::SetParameter => "SET_PARAMETER",
            Self::Announce => "ANNOUNCE",
            Self::Record => "RECORD",
            Self::Redirect => "REDIRECT",
            Self::Other(s) => s,
        }
    }

    fn from_rtsp_types(m: &rtsp_types::Method) -> Self {
        use rtsp_types::Method as M;
        match m {
            M::Options => Self::Options,
            M::Describe => Self::Describe,
            M::Setup => Self::Setup,
            M::Play => Self::Play,
            M::Pause => Self::Pause,
            M::Teardown => Self::Teardown,
            M::GetParameter => Self::GetParameter,
            M::SetParameter => Self::SetParameter,
            M::Announce => Self::Announce,
            M::Record => Self::Record,
            M::Redirect => Self::Redirect,
            other => Self::Other(<&str>::from(other).to_owned()),
        }
    }
}

/// One parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The absolute request URI; `None` for `*`.
    pub uri: Option<rtsp_types::Url>,
    pub cseq: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The session id of the `Session` header, without its parameters.
    pub fn session(&self) -> Option<&str> {
        self.header("Session")
            .and_then(|v| v.split(';').next())
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }
}

/// What one call to [`parse_inbound`] found at the start of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Request(Request),
    /// An interleaved frame: RTCP receiver reports from TCP clients (or RTP we ignore).
    Data {
        channel: u8,
        payload: Vec<u8>,
    },
    /// A response (we send no requests, so it is dropped) or blank lines between messages.
    Ignored,
}

/// Parses the next message at the start of `buf`: `Ok(None)` means "need more bytes", otherwise
/// the message and how many bytes it took. An error means the connection cannot be resynchronised.
pub fn parse_inbound(buf: &[u8]) -> Result<Option<(Inbound, usize)>, FramingError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first == b'$' {
        let Some(h) = buf.get(..4) else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        let Some(payload) = buf.get(4..4 + len) else {
            return Ok(None);
        };
        let inbound = Inbound::Data {
            channel: h[1],
            payload: payload.to_vec(),
        };
        return Ok(Some((inbound, 4 + len)));
    }
    // Blank lines between messages are tolerated (some clients send CRLF keep-alives).
    let blank = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if blank > 0 {
        return Ok(Some((Inbound::Ignored, blank)));
    }
    if !first.is_ascii_uppercase() {
        return Err(FramingError::Malformed(format!(
            "message starts with byte 0x{first:02x}"
        )));
    }
    let window = &buf[..buf.len().min(MAX_HEAD + 4)];
    let Some(head_end) = find(window, b"\r\n\r\n").map(|p| p + 4) else {
        if buf.len() > MAX_HEAD {
            return Err(FramingError::HeadTooLarge { limit: MAX_HEAD });
        }
        return Ok(None);
    };
    let head = &buf[..head_end];
    check_head(head)?;
    let body_len = content_length(head)?;
    if body_len > MAX_BODY {
        return Err(FramingError::BodyTooLarge {
            len: body_len,
            limit: MAX_BODY,
        });
    }
    let Some(whole) = buf.get(..head_end + body_len) else {
        return Ok(None);
    };
    let (msg, used) = rtsp_types::Message::<Vec<u8>>::parse(whole).map_err(|e| match e {
        rtsp_types::ParseError::Error => FramingError::Malformed("unparseable request".into()),
        rtsp_types::ParseError::Incomplete(_) => {
            FramingError::Malformed("request ends early (bad header line?)".into())
        }
    })?;
    if used != whole.len() {
        return Err(FramingError::Malformed(format!(
            "request of {} bytes parsed as {used}",
            whole.len()
        )));
    }
    let req = match msg {
        rtsp_types::Message::Request(r) => r,
        rtsp_types::Message::Response(_) => return Ok(Some((Inbound::Ignored, used))),
        rtsp_types::Message::Data(_) => {
            return Err(FramingError::Malformed("unexpected data frame".into()));
        }
    };
    if req.version() != rtsp_types::Version::V1_0 {
        return Err(FramingError::Malformed(format!(
            "version {:?}, only RTSP/1.0 is served",
            req.version()
        )));
    }
    let headers: Vec<(String, String)> = req
        .headers()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_str().trim().to_owned()))
        .collect();
    let cseq_values: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("CSeq"))
        .map(|(_, v)| v.as_str())
        .collect();
    let cseq = match cseq_values.as_slice() {
        [one] => one
            .parse::<u32>()
            .map_err(|_| FramingError::Malformed(format!("CSeq {one:?} is not a number")))?,
        [] => return Err(FramingError::Malformed("no CSeq".into())),
        _ => return Err(FramingError::Malformed("several CSeq headers".into())),
    };
    let method = Method::from_rtsp_types(req.method());
    let uri = req.request_uri().cloned();
    if uri.is_none() && method != Method::Options {
        return Err(FramingError::Malformed(format!(
            "{} without an absolute rtsp:// URI",
            method.as_str()
        )));
    }
    if let Some(u) = &uri
        && !matches!(u.scheme(), "rtsp" | "rtspt" | "rtsps")
    {
        return Err(FramingError::Malformed(format!(
            "URI scheme {:?} is not rtsp",
            u.scheme()
        )));
    }
    let request = Request {
        method,
        uri,
        cseq,
        headers,
        body: req.into_body(),
    };
    Ok(Some((Inbound::Request(request), used)))
}

/// Rejects what rtsp-types would accept but we do not want: control bytes, a request line
/// that is not `METHOD URI RTSP/x.y`, header lines without a colon.
fn check_head(head: &[u8]) -> Result<(), FramingError> {
    let text = std::str::from_utf8(head)
        .map_err(|_| FramingError::Malformed("request head is not UTF-8".into()))?;
    if text
        .bytes()
        .any(|b| b.is_ascii_control() && b != b'\r' && b != b'\n' && b != b'\t')
    {
        return Err(FramingError::Malformed(
            "control byte in request head".into(),
        ));
    }
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let parts: Vec<&str> = request_line.split(' ').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) || !parts[2].starts_with("RTSP/") {
        return Err(FramingError::Malformed(format!(
            "request line {:?}",
            truncate(request_line)
        )));
    }
    for line in lines.filter(|l| !l.is_empty()) {
        let folded = line.starts_with(' ') || line.starts_with('\t');
        if !folded && !line.contains(':') {
            return Err(FramingError::Malformed(format!(
                "header line {:?} has no colon",
                truncate(line)
            )));
        }
    }
    Ok(())
}

fn content_length(head: &[u8]) -> Result<usize, FramingError> {
    let text = String::from_utf8_lossy(head);
    let mut found = None;
    for line in text.split("\r\n") {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("Content-Length") {
            let v = value.trim();
            let n = v
                .parse::<usize>()
                .map_err(|_| FramingError::Malformed(format!("Content-Length {v:?}")))?;
            if found.is_some_and(|f| f != n) {
                return Err(FramingError::Malformed("conflicting Content-Length".into()));
            }
            found = Some(n);
        }
    }
    Ok(found.unwrap_or(0))
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(bytes: &[u8]) -> Request {
        match parse_inbound(bytes) {
            Ok(Some((Inbound::Request(r), n))) => {
                assert_eq!(n, bytes.len());
                r
            }
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn parses_describe_with_headers() {
        let r = req(b"DESCRIBE rtsp://127.0.0.1:8554/doorbell?audio=0 RTSP/1.0\r\nCSeq: 2\r\nAccept: application/sdp\r\nsession: ABC;timeout=60\r\n\r\n");
        assert_eq!(r.method, Method::Describe);
        assert_eq!(r.cseq, 2);
        assert_eq!(r.header("accept"), Some("application/sdp"));
        assert_eq!(r.session(), Some("ABC"));
        let u = r.uri.expect("uri");
        assert_eq!((u.path(), u.query()), ("/doorbell", Some("audio=0")));
    }

    #[test]
    fn options_star_and_body() {
        let r = req(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n");
        assert_eq!((r.method, r.uri), (Method::Options, None));
        let r =
            req(b"SET_PARAMETER rtsp://h/x RTSP/1.0\r\nCSeq: 9\r\nContent-Length: 4\r\n\r\na: b");
        assert_eq!(r.body, b"a: b");
        let r = req(b"FOO rtsp://h/x RTSP/1.0\r\nCSeq: 9\r\n\r\n");
        assert_eq!(r.method, Method::Other("FOO".into()));
    }

    #[test]
    fn needs_more_bytes_until_complete() {
        let full = b"SET_PARAMETER rtsp://h/x RTSP/1.0\r\nCSeq: 9\r\nContent-Length: 4\r\n\r\na: b";
        for cut in 0..full.len() {
            assert_eq!(parse_inbound(&full[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(matches!(parse_inbound(b"$\x01\x00\x02a"), Ok(None)));
    }

    #[test]
    fn interleaved_frames_and_pipelining() {
        let mut buf = b"$\x01\x00\x03abc".to_vec();
        buf.extend_from_slice(b"GET_PARAMETER rtsp://h/x RTSP/1.0\r\nCSeq: 3\r\n\r\n");
        let (first, n) = parse_inbound(&buf).expect("ok").expect("some");
        assert_eq!(
            first,
            Inbound::Data {
                channel: 1,
                payload: b"abc".to_vec()
            }
        );
        let (second, _) = parse_inbound(&buf[n..]).expect("ok").expect("some");
        assert!(matches!(second, Inbound::Request(r) if r.method == Method::GetParameter));
        assert_eq!(parse_inbound(b"\r\n"), Ok(Some((Inbound::Ignored, 2))));
    }

    #[test]
    fn rejects_malformed() {
        let bad: &[&[u8]] = &[
            b"\x00\x01garbage\r\n\r\n",
            b"DESCRIBE rtsp://h/x RTSP/1.0\r\n\r\n",
            b"DESCRIBE rtsp://h/x RTSP/1.0\r\nCSeq: x\r\n\r\n",
            b"DESCRIBE rtsp://h/x RTSP/1.0\r\nCSeq: 1\r\nCSeq: 2\r\n\r\n",
            b"DESCRIBE rtsp://h/x HTTP/1.1\r\nCSeq: 1\r\n\r\n",
            b"DESCRIBE rtsp://h/x RTSP/2.0\r\nCSeq: 1\r\n\r\n",
            b"DESCRIBE /x RTSP/1.0\r\nCSeq: 1\r\n\r\n",
            b"DESCRIBE http://h/x RTSP/1.0\r\nCSeq: 1\r\n\r\n",
            b"DESCRIBE  rtsp://h/x RTSP/1.0\r\nCSeq: 1\r\n\r\n",
            b"DESCRIBE rtsp://h/x RTSP/1.0\r\nCSeq 1\r\n\r\n",
            b"DESCRIBE rtsp://h/x RTSP/1.0\r\nCSeq: 1\r\nContent-Length: -1\r\n\r\n",
            b"DESCRIBE rtsp://h/x RTSP/1.0\r\nCSeq: 1\r\nX: a\x01b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        ];
        for b in bad {
            assert!(
                matches!(parse_inbound(b), Err(FramingError::Malformed(_))),
                "{:?}: {:?}",
                String::from_utf8_lossy(b),
                parse_inbound(b)
            );
        }
        let big = format!(
            "DESCRIBE rtsp://h/x RTSP/1.0\r\nCSeq: 1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD)
        );
        assert_eq!(
            parse_inbound(big.as_bytes()),
            Err(FramingError::HeadTooLarge { limit: MAX_HEAD })
        );
        let body =
            b"SET_PARAMETER rtsp://h/x RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 999999\r\n\r\n";
        assert!(matches!(
            parse_inbound(body),
            Err(FramingError::BodyTooLarge { .. })
        ));
    }

    #[test]
    fn never_panics_on_prefixes_of_junk() {
        for seed in 0..200u32 {
            let junk: Vec<u8> = (0..(seed % 90))
                .map(|i| (i.wrapping_mul(seed).wrapping_add(0x41) % 128) as u8)
                .collect();
            let _ = parse_inbound(&junk);
        }
    }
}
