//! The ONVIF backchannel's protocol side (ONVIF Streaming Specification §5.3, RFC 2326 §12.32):
//! the `Require` option tags a request may carry. Our one supported tag,
//! `www.onvif.org/ver20/backchannel`, makes a DESCRIBE offer a sendonly PCMU/PCMA track; any
//! other tag is answered 551 Option not supported, naming it in `Unsupported`.

use crate::proto::rtsp::sdp::BACKCHANNEL_TAG;
use crate::proto::rtsp::{Request, Response};

/// Whether `req` requires the backchannel; `Err` is the 551 answer for tags we do not know.
pub(super) fn required(req: &Request) -> Result<bool, Response> {
    let mut backchannel = false;
    let mut unsupported = Vec::new();
    let tags = req
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Require"))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    for tag in tags {
        if tag.eq_ignore_ascii_case(BACKCHANNEL_TAG) {
            backchannel = true;
        } else if !unsupported.contains(&tag) {
            unsupported.push(tag);
        }
    }
    if unsupported.is_empty() {
        return Ok(backchannel);
    }
    let list = unsupported.join(", ");
    Err(Response::new(551)
        .header("Unsupported", list.clone())
        .text(&format!("option not supported: {list}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::rtsp::Inbound;
    use crate::proto::rtsp::parse_inbound;

    fn req(headers: &str) -> Request {
        let text = format!("DESCRIBE rtsp://h/p RTSP/1.0\r\nCSeq: 1\r\n{headers}\r\n");
        match parse_inbound(text.as_bytes()) {
            Ok(Some((Inbound::Request(r), _))) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn tags() {
        let table: [(&str, Result<bool, &str>); 6] = [
            ("", Ok(false)),
            ("Require: www.onvif.org/ver20/backchannel\r\n", Ok(true)),
            ("Require: WWW.ONVIF.ORG/ver20/backchannel \r\n", Ok(true)),
            ("Require: funky-feature\r\n", Err("funky-feature")),
            (
                "Require: www.onvif.org/ver20/backchannel, a\r\nRequire: b, a\r\n",
                Err("a, b"),
            ),
            ("Require: ,\r\n", Ok(false)),
        ];
        for (headers, want) in table {
            let got = required(&req(headers));
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{headers:?}"),
                (Err(r), Err(w)) => {
                    assert_eq!(r.status, 551, "{headers:?}");
                    let u = r.headers.iter().find(|(n, _)| n == "Unsupported");
                    assert_eq!(u.map(|(_, v)| v.as_str()), Some(w), "{headers:?}");
                }
                (g, w) => panic!("{headers:?}: got {g:?}, want {w:?}"),
            }
        }
    }
}
