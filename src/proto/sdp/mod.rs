//! SDP for the bridge (RFC 4566, RFC 3264, SDES per RFC 4568): our view-call offer with
//! `a=DEVADDR` (c300x-protocol.md §4.1), our answer to a doorbell INVITE (§7), and a tolerant reader
//! of the intercom's SDP (§4.2, §7) reduced to what the media tasks need (ports, PTs, keys).
//! Independent of the simulator's SDP code on purpose; no sockets, no SIP.

mod parse;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::proto::srtp::{SUITE, SdesKey};

pub use parse::{MAX_SDP_LEN, parse_remote};

/// Our side of the media: the advertised address, the (even) RTP ports we bound, and the keys we
/// send with (the intercom encrypts nothing with them: they protect what *we* send, §4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    pub ip: IpAddr,
    pub audio_port: u16,
    pub video_port: u16,
    pub audio_key: SdesKey,
    pub video_key: SdesKey,
}

/// RFC 3264 §5.1 direction attribute of one stream, as written by the remote side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// Parses an attribute name (`sendonly`…), case-insensitively.
    pub fn from_attribute(name: &str) -> Option<Self> {
        [
            ("sendrecv", Self::SendRecv),
            ("sendonly", Self::SendOnly),
            ("recvonly", Self::RecvOnly),
            ("inactive", Self::Inactive),
        ]
        .into_iter()
        .find(|(n, _)| name.eq_ignore_ascii_case(n))
        .map(|(_, d)| d)
    }

    /// Whether the remote side will send media on this stream.
    pub fn remote_sends(self) -> bool {
        matches!(self, Self::SendRecv | Self::SendOnly)
    }
}

/// One negotiated stream of the remote SDP (its `m=` line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteStream {
    /// Where to send our RTP/RTCP: the media-level `c=`, else the session-level one.
    pub ip: IpAddr,
    pub rtp_port: u16,
    /// `a=rtcp:<port>` (RFC 3605) if present, else `rtp_port + 1` (§4.2).
    pub rtcp_port: u16,
    /// The PT mapped to speex/8000 (audio) or H264/90000 (video) on this `m=` line.
    pub pt: u8,
    /// The remote key: decrypts what the intercom sends on this stream (§4.3).
    pub key: SdesKey,
    /// The tag of the chosen `a=crypto`; an answer must reuse it (RFC 4568 §7.1.2).
    pub crypto_tag: u32,
    pub direction: Direction,
    /// The `a=fmtp:<pt>` parameters of the chosen PT (e.g. `vbr=on` for the C300X's Speex).
    pub fmtp: Option<String>,
}

impl RemoteStream {
    /// How the remote side wants our Speex coded (RFC 5574 §5 `vbr`; talkback follows it).
    pub fn speex_vbr(&self) -> SpeexVbr {
        SpeexVbr::from_fmtp(self.fmtp.as_deref())
    }
}

/// RFC 5574 §5's `vbr` parameter of `speex/8000`: `on` (variable bit rate), `vad` (constant bit
/// rate with voice activity detection), `off` (constant bit rate, the default when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpeexVbr {
    #[default]
    Off,
    On,
    Vad,
}

impl SpeexVbr {
    /// Reads `vbr=` from an fmtp parameter list (`vbr=on;mode=any`, spaces and case forgiven);
    /// an unknown value counts as absent.
    pub fn from_fmtp(fmtp: Option<&str>) -> Self {
        fmtp.into_iter()
            .flat_map(|f| f.split(';'))
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("vbr"))
            .and_then(|(_, v)| match v.trim().to_ascii_lowercase().as_str() {
                "on" => Some(Self::On),
                "vad" => Some(Self::Vad),
                "off" => Some(Self::Off),
                _ => None,
            })
            .unwrap_or_default()
    }
}

/// The remote SDP reduced to what the bridge uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMedia {
    pub audio: RemoteStream,
    pub video: RemoteStream,
    /// Session-level `a=DEVADDR:<n>`, if the remote wrote one (the intercom does not).
    pub devaddr: Option<String>,
}

/// Why a remote SDP cannot be used; each variant names what is missing and on which stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP has no usable m=audio line")]
    NoAudio,
    #[error("SDP has no usable m=video line")]
    NoVideo,
    #[error("SDP {media}: no c= address at media or session level")]
    NoConnection { media: &'static str },
    #[error("SDP {media}: no payload type for {wanted}")]
    NoCodec {
        media: &'static str,
        wanted: &'static str,
    },
    #[error("SDP {media}: no a=crypto with {SUITE}")]
    NoCrypto { media: &'static str },
    #[error("SDP {media}: bad a=crypto: {detail}")]
    BadCrypto { media: &'static str, detail: String },
    #[error("SDP {media}: port 0, the stream was rejected")]
    PortZero { media: &'static str },
    #[error("SDP syntax: `{line}`")]
    Syntax { line: String },
    #[error("SDP body exceeds {MAX_SDP_LEN} bytes")]
    TooLarge,
}

/// The `IN IP4 <ip>` / `IN IP6 <ip>` tail of `o=` and `c=`.
fn address(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("IN IP4 {v4}"),
        IpAddr::V6(v6) => format!("IN IP6 {v6}"),
    }
}

/// Appends one line with the CRLF SDP requires (RFC 4566 §5).
fn line(out: &mut String, text: std::fmt::Arguments<'_>) {
    // Writing into a String cannot fail.
    let _ = out.write_fmt(text);
    out.push_str("\r\n");
}

/// Our view-call offer, exactly as c300x-protocol.md §4.1: session-level `a=DEVADDR` and
/// `a=nortpproxy:yes` before the first `m=`, Speex on PT 110 (sendrecv: we send silence and
/// talkback), H.264 on PT 96 `recvonly`, one SDES key per `m=` line.
pub fn view_offer(
    devaddr: u8,
    session_id: u64,
    session_version: u64,
    local: &LocalMedia,
) -> String {
    let mut s = String::with_capacity(512);
    let addr = address(local.ip);
    line(&mut s, format_args!("v=0"));
    line(
        &mut s,
        format_args!("o=- {session_id} {session_version} {addr}"),
    );
    line(&mut s, format_args!("s=-"));
    line(&mut s, format_args!("c={addr}"));
    line(&mut s, format_args!("t=0 0"));
    line(&mut s, format_args!("a=DEVADDR:{devaddr}"));
    line(&mut s, format_args!("a=nortpproxy:yes"));
    line(
        &mut s,
        format_args!("m=audio {} RTP/SAVP 110", local.audio_port),
    );
    line(&mut s, format_args!("a=rtpmap:110 speex/8000"));
    line(
        &mut s,
        format_args!("a=crypto:1 {SUITE} {}", local.audio_key.to_inline()),
    );
    line(
        &mut s,
        format_args!("m=video {} RTP/SAVP 96", local.video_port),
    );
    line(&mut s, format_args!("a=rtpmap:96 H264/90000"));
    line(&mut s, format_args!("a=fmtp:96 profile-level-id=42801F"));
    line(
        &mut s,
        format_args!("a=crypto:1 {SUITE} {}", local.video_key.to_inline()),
    );
    line(&mut s, format_args!("a=recvonly"));
    s
}

/// Our answer to a doorbell INVITE (§7): no DEVADDR (it belongs only in view calls), the offer's
/// PTs and crypto tags mirrored (RFC 3264 §6.1, RFC 4568 §7.1.2), our own keys, audio sendrecv
/// or `a=inactive` for the silent preview (183), video `recvonly`.
pub fn ring_answer(
    session_id: u64,
    local: &LocalMedia,
    remote: &RemoteMedia,
    audio_active: bool,
) -> String {
    let mut s = String::with_capacity(512);
    let addr = address(local.ip);
    let (apt, vpt) = (remote.audio.pt, remote.video.pt);
    line(&mut s, format_args!("v=0"));
    line(&mut s, format_args!("o=- {session_id} {session_id} {addr}"));
    line(&mut s, format_args!("s=-"));
    line(&mut s, format_args!("c={addr}"));
    line(&mut s, format_args!("t=0 0"));
    line(
        &mut s,
        format_args!("m=audio {} RTP/SAVP {apt}", local.audio_port),
    );
    line(&mut s, format_args!("a=rtpmap:{apt} speex/8000"));
    line(
        &mut s,
        format_args!(
            "a=crypto:{} {SUITE} {}",
            remote.audio.crypto_tag,
            local.audio_key.to_inline()
        ),
    );
    if !audio_active {
        line(&mut s, format_args!("a=inactive"));
    }
    line(
        &mut s,
        format_args!("m=video {} RTP/SAVP {vpt}", local.video_port),
    );
    line(&mut s, format_args!("a=rtpmap:{vpt} H264/90000"));
    line(&mut s, format_args!("a=fmtp:{vpt} profile-level-id=42801F"));
    line(
        &mut s,
        format_args!(
            "a=crypto:{} {SUITE} {}",
            remote.video.crypto_tag,
            local.video_key.to_inline()
        ),
    );
    line(&mut s, format_args!("a=recvonly"));
    s
}
