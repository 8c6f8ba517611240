//! What goes into and comes out of the RTSP server session: its configuration, the inputs
//! (requests and the driver's completions), the actions for the driver, and the small types
//! they carry (tracks, RTP numbering, sinks, close reasons, RFC 2326 §A.1 phases).

use std::time::Duration;

use crate::proto::auth::Secrets;
use crate::proto::rtsp::{Request, Response};

use super::StreamDescription;

/// What every session of a server shares.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The panels, one path each (`rtsp://host/<panel>`).
    pub panels: Vec<String>,
    /// Credentials; none configured serves everyone.
    pub secrets: Secrets,
    /// A connection that has not completed a request by then is closed.
    pub first_request_timeout: Duration,
    /// A connection without a session and without requests for this long is closed.
    pub idle_timeout: Duration,
    /// A session without a request or RTCP for this long ends (announced in `Session: ;timeout=`).
    pub session_timeout: Duration,
    /// After this many 401s in a row the connection is closed.
    pub max_auth_failures: u32,
}

impl ServerConfig {
    pub fn new(panels: Vec<String>) -> Self {
        Self {
            panels,
            secrets: Secrets::default(),
            first_request_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            session_timeout: Duration::from_secs(60),
            max_auth_failures: 10,
        }
    }
}

/// A track of the session; the ONVIF backchannel carries the client's voice to the panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    Video,
    Audio,
    Backchannel,
}

impl TrackKind {
    /// `a=control` of the track, relative to the `Content-Base`.
    pub fn control(self) -> &'static str {
        match self {
            Self::Video => crate::proto::rtsp::sdp::VIDEO_CONTROL,
            Self::Audio => crate::proto::rtsp::sdp::AUDIO_CONTROL,
            Self::Backchannel => crate::proto::rtsp::sdp::BACKCHANNEL_CONTROL,
        }
    }

    pub(super) fn from_control(c: &str) -> Option<Self> {
        [Self::Video, Self::Audio, Self::Backchannel]
            .into_iter()
            .find(|k| k.control() == c)
    }

    /// Interleaved channels when the client names none (§10.12).
    pub(super) fn default_channels(self) -> (u8, u8) {
        match self {
            Self::Video => (0, 1),
            Self::Audio => (2, 3),
            Self::Backchannel => (4, 5),
        }
    }
}

/// RTP numbering of one track (for the backchannel: what the answer names; the client numbers) (RFC 3550 §5.1: random SSRC, sequence and timestamp).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpParams {
    pub ssrc: u32,
    pub seq: u16,
    pub ts_base: u32,
    pub payload_type: u8,
    pub clock: u32,
}

/// Where a track's packets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackSink {
    Interleaved {
        rtp: u8,
        rtcp: u8,
    },
    Udp {
        client: (u16, u16),
        server: (u16, u16),
    },
}

/// Where a track stands when PLAY starts: for `RTP-Info` (§12.33).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlayInfo {
    pub kind: TrackKind,
    pub seq: u16,
    pub rtptime: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Request(Request),
    /// Bytes that cannot be framed: answered 400, then the connection closes.
    Malformed {
        error: String,
        cseq: Option<u32>,
    },
    /// Interleaved data or RTCP on a UDP track: keeps the session alive.
    KeepAlive,
    /// The driver joined the panel's hub (after [`Action::Join`]).
    Joined(StreamDescription),
    JoinFailed {
        status: u16,
        reason: String,
    },
    /// The driver bound server ports (after [`Action::BindUdp`]).
    UdpBound {
        server: (u16, u16),
    },
    UdpFailed {
        reason: String,
    },
    /// The driver started sending (after [`Action::Play`]).
    Playing(Vec<PlayInfo>),
    /// The driver holds the panel's talk (after [`Action::Talk`]).
    Talking,
    /// Talk refused: 453 when someone else talks, 503 when the call cannot be had.
    TalkFailed {
        status: u16,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Respond {
        cseq: Option<u32>,
        response: Response,
    },
    /// Become a viewer of the panel's hub (this may start a call); answer with `Joined`.
    Join {
        panel: String,
    },
    /// Drop the viewer, the talk and every track.
    Release,
    /// Take the panel's talk (one talker per panel; waits for a live call); answer with
    /// `Talking` or `TalkFailed`. The backchannel's RTP then goes to it.
    Talk {
        panel: String,
    },
    /// Bind a server port pair for a UDP track; answer with `UdpBound` or `UdpFailed`.
    BindUdp {
        kind: TrackKind,
    },
    AddTrack {
        kind: TrackKind,
        sink: TrackSink,
        rtp: RtpParams,
    },
    /// Start sending from the newest keyframe; answer with `Playing`.
    Play,
    /// Stop sending; the next PLAY starts at a keyframe again.
    Pause,
    Close(CloseReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    FirstRequestTimeout,
    IdleTimeout,
    SessionTimeout,
    BadRequest,
    AuthFailures,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FirstRequestTimeout => "first_request_timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::SessionTimeout => "session_timeout",
            Self::BadRequest => "bad_request",
            Self::AuthFailures => "auth_failures",
        }
    }
}

/// The session states of RFC 2326 §A.1 (Init is "no session"; Paused is Ready after a PAUSE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Init,
    Ready,
    Playing,
    Paused,
}
