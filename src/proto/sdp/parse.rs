//! The tolerant reader of the intercom's SDP (its 200 OK answer, §4.2, or its doorbell offer, §7):
//! line-based, CRLF/LF/CR, any attribute order, session- or media-level `c=` and direction,
//! unknown lines ignored. Picks speex/8000 and H264/90000 by rtpmap, per `m=` line.

use std::net::IpAddr;

use super::{Direction, RemoteMedia, RemoteStream, SdpError};
use crate::proto::srtp::{CryptoAttribute, SrtpError};

/// Larger bodies are refused before parsing; the intercom's SDP is well under 1 KiB and even the
/// app-like offers with many codecs stay below 4 KiB.
pub const MAX_SDP_LEN: usize = 64 * 1024;

/// How much of an offending line an error quotes.
const QUOTE_LEN: usize = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Audio,
    Video,
    Other,
}

/// One `m=` section as read, before any decision.
#[derive(Debug)]
struct Section {
    kind: Kind,
    /// The `m=` line itself, quoted in errors about it.
    line: String,
    port: u16,
    formats: Vec<u8>,
    ip: Option<IpAddr>,
    rtcp_port: Option<u16>,
    rtpmaps: Vec<(u8, String)>,
    fmtps: Vec<(u8, String)>,
    crypto: Vec<String>,
    direction: Option<Direction>,
}

/// Everything read from the body.
#[derive(Debug, Default)]
struct Parsed {
    session_ip: Option<IpAddr>,
    session_direction: Option<Direction>,
    devaddr: Option<String>,
    sections: Vec<Section>,
}

/// Reads the remote SDP (the intercom's answer to our view INVITE, or its doorbell offer).
pub fn parse_remote(body: &[u8]) -> Result<RemoteMedia, SdpError> {
    if body.len() > MAX_SDP_LEN {
        return Err(SdpError::TooLarge);
    }
    let text = String::from_utf8_lossy(body);
    // A UTF-8 byte order mark is not SDP, but costs nothing to forgive.
    let parsed = read_lines(text.trim_start_matches('\u{feff}'))?;
    let audio = pick(&parsed.sections, Kind::Audio, "audio")?.ok_or(SdpError::NoAudio)?;
    let audio = stream(&parsed, audio, "audio", "speex/8000")?;
    let video = pick(&parsed.sections, Kind::Video, "video")?.ok_or(SdpError::NoVideo)?;
    let video = stream(&parsed, video, "video", "H264/90000")?;
    Ok(RemoteMedia {
        audio,
        video,
        devaddr: parsed.devaddr,
    })
}

fn syntax(line: &str) -> SdpError {
    let end = line
        .char_indices()
        .nth(QUOTE_LEN)
        .map_or(line.len(), |(i, _)| i);
    SdpError::Syntax {
        line: line[..end].to_owned(),
    }
}

fn read_lines(text: &str) -> Result<Parsed, SdpError> {
    let mut p = Parsed::default();
    // CR, LF and CRLF all end a line: some stacks write bare LF.
    for raw in text.split(['\r', '\n']) {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let (ty, value) = match line.split_once('=') {
            Some((ty, value)) if ty.len() == 1 && ty.as_bytes()[0].is_ascii_alphabetic() => {
                (ty.as_bytes()[0].to_ascii_lowercase(), value.trim())
            }
            _ => return Err(syntax(line)),
        };
        match ty {
            b'm' => p.sections.push(media_line(line, value)?),
            b'c' => {
                let ip = connection(line, value)?;
                match p.sections.last_mut() {
                    Some(section) => section.ip = Some(ip),
                    None => p.session_ip = Some(ip),
                }
            }
            b'a' => attribute(&mut p, line, value)?,
            _ => {}
        }
    }
    Ok(p)
}

/// `m=<media> <port>[/<count>] <proto> <fmt>...`
fn media_line(line: &str, value: &str) -> Result<Section, SdpError> {
    let mut parts = value.split_ascii_whitespace();
    let (Some(media), Some(port), Some(_proto)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(syntax(line));
    };
    let kind = if media.eq_ignore_ascii_case("audio") {
        Kind::Audio
    } else if media.eq_ignore_ascii_case("video") {
        Kind::Video
    } else {
        Kind::Other
    };
    let port = match port.split('/').next().map(str::parse::<u16>) {
        Some(Ok(port)) => port,
        // Another medium's odd port must not fail the call.
        _ if kind == Kind::Other => 0,
        _ => return Err(syntax(line)),
    };
    let formats = parts
        .filter_map(|f| f.parse::<u8>().ok())
        .filter(|pt| *pt <= 127)
        .collect();
    Ok(Section {
        kind,
        line: line.to_owned(),
        port,
        formats,
        ip: None,
        rtcp_port: None,
        rtpmaps: Vec::new(),
        fmtps: Vec::new(),
        crypto: Vec::new(),
        direction: None,
    })
}

/// `c=IN IP4 <addr>[/ttl[/n]]`; the address type is not trusted, the address is.
fn connection(line: &str, value: &str) -> Result<IpAddr, SdpError> {
    value
        .split_ascii_whitespace()
        .nth(2)
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| syntax(line))
}

fn attribute(p: &mut Parsed, line: &str, value: &str) -> Result<(), SdpError> {
    let (name, val) = value.split_once(':').unwrap_or((value, ""));
    let (name, val) = (name.trim(), val.trim());
    let direction = Direction::from_attribute(name);
    let Some(section) = p.sections.last_mut() else {
        // Session level: only DEVADDR (a BTicino extension) and a default direction matter.
        if name.eq_ignore_ascii_case("DEVADDR") {
            p.devaddr = Some(val.to_owned());
        } else if direction.is_some() {
            p.session_direction = direction;
        }
        return Ok(());
    };
    if direction.is_some() {
        section.direction = direction;
    } else if name.eq_ignore_ascii_case("rtpmap") {
        // A malformed rtpmap only means this PT is not one we can pick.
        let mut it = val.split_ascii_whitespace();
        if let (Some(pt), Some(encoding)) = (it.next(), it.next())
            && let Ok(pt) = pt.parse::<u8>()
        {
            section.rtpmaps.push((pt, encoding.to_owned()));
        }
    } else if name.eq_ignore_ascii_case("fmtp") {
        // `a=fmtp:<pt> <parameters>`; a malformed one only loses its parameters.
        if let Some((pt, params)) = val.split_once(char::is_whitespace)
            && let Ok(pt) = pt.parse::<u8>()
        {
            section.fmtps.push((pt, params.trim().to_owned()));
        }
    } else if name.eq_ignore_ascii_case("crypto") {
        section.crypto.push(val.to_owned());
    } else if name.eq_ignore_ascii_case("rtcp") {
        // RFC 3605: `a=rtcp:<port> [IN IP4 <addr>]`.
        let port = val
            .split_ascii_whitespace()
            .next()
            .and_then(|port| port.parse::<u16>().ok())
            .filter(|port| *port != 0)
            .ok_or_else(|| syntax(line))?;
        section.rtcp_port = Some(port);
    }
    Ok(())
}

/// The first stream of this kind with a non-zero port; `Ok(None)` if there is none at all.
fn pick<'a>(
    sections: &'a [Section],
    kind: Kind,
    media: &'static str,
) -> Result<Option<&'a Section>, SdpError> {
    let mut of_kind = sections.iter().filter(|s| s.kind == kind).peekable();
    if of_kind.peek().is_none() {
        return Ok(None);
    }
    of_kind
        .find(|s| s.port != 0)
        .map(Some)
        .ok_or(SdpError::PortZero { media })
}

fn stream(
    p: &Parsed,
    s: &Section,
    media: &'static str,
    wanted: &'static str,
) -> Result<RemoteStream, SdpError> {
    let ip =
        s.ip.or(p.session_ip)
            .ok_or(SdpError::NoConnection { media })?;
    let pt = payload_type(s, wanted).ok_or(SdpError::NoCodec { media, wanted })?;
    let crypto = crypto(s, media)?;
    let rtcp_port = match s.rtcp_port {
        Some(port) => port,
        None => s.port.checked_add(1).ok_or_else(|| syntax(&s.line))?,
    };
    Ok(RemoteStream {
        ip,
        rtp_port: s.port,
        rtcp_port,
        pt,
        key: crypto.key,
        crypto_tag: crypto.tag,
        direction: s
            .direction
            .or(p.session_direction)
            .unwrap_or(Direction::SendRecv),
        fmtp: s
            .fmtps
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, params)| params.clone()),
    })
}

/// Whether an rtpmap encoding (`speex/8000`, `SPEEX/8000/1`) is the wanted one.
fn encoding_is(encoding: &str, wanted: &str) -> bool {
    let enc = encoding.as_bytes();
    enc.len() >= wanted.len()
        && enc[..wanted.len()].eq_ignore_ascii_case(wanted.as_bytes())
        && matches!(enc.get(wanted.len()), None | Some(b'/'))
}

/// The PT of the wanted codec on this `m=` line. Without an rtpmap for it, a PT is only guessed
/// when exactly one listed dynamic PT has no rtpmap at all (Speex and H.264 have no static PT).
fn payload_type(s: &Section, wanted: &str) -> Option<u8> {
    let mapped = |pt: &u8| s.rtpmaps.iter().any(|(p, _)| p == pt);
    let by_rtpmap = s
        .rtpmaps
        .iter()
        .filter(|(_, enc)| encoding_is(enc, wanted))
        .map(|(pt, _)| *pt);
    if let Some(pt) = by_rtpmap.clone().find(|pt| s.formats.contains(pt)) {
        return Some(pt);
    }
    if let Some(pt) = by_rtpmap.clone().next() {
        return Some(pt);
    }
    let mut unmapped: Vec<u8> = s
        .formats
        .iter()
        .copied()
        .filter(|pt| (96..=127).contains(pt) && !mapped(pt))
        .collect();
    unmapped.sort_unstable();
    unmapped.dedup();
    match unmapped.as_slice() {
        [pt] => Some(*pt),
        _ => None,
    }
}

/// The first `a=crypto` with our suite; other suites are skipped (RFC 4568 §6.1 lists them in
/// preference order, so an offer may start with one we do not support).
fn crypto(s: &Section, media: &'static str) -> Result<CryptoAttribute, SdpError> {
    let mut bad: Option<SrtpError> = None;
    for value in &s.crypto {
        match CryptoAttribute::parse(value) {
            Ok(attr) => return Ok(attr),
            Err(SrtpError::Suite(_)) => {}
            Err(e) => {
                bad.get_or_insert(e);
            }
        }
    }
    Err(match bad {
        Some(e) => SdpError::BadCrypto {
            media,
            detail: e.to_string(),
        },
        None => SdpError::NoCrypto { media },
    })
}
