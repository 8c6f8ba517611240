//! What the server session knows of a panel's stream once joined: the H.264 parameter sets and
//! the AAC configuration, enough for the DESCRIBE answer (`proto::rtsp::sdp`) and track clocks.

use super::TrackKind;
use crate::proto::rtsp::sdp;

/// The stream as the hub reported it on join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamDescription {
    pub sps: Vec<u8>,
    pub pps: Vec<u8>,
    pub profile_level_id: [u8; 3],
    pub audio: Option<AudioDescription>,
}

/// The AAC track: clock rate, channels and the AudioSpecificConfig in hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioDescription {
    pub sample_rate: u32,
    pub channels: u8,
    pub config_hex: String,
}

impl StreamDescription {
    /// The SDP of a DESCRIBE answer; `with_audio` is false for `?audio=0`.
    pub fn sdp(&self, session_id: u64, name: &str, with_audio: bool) -> String {
        let video = sdp::VideoTrack {
            sps: &self.sps,
            pps: &self.pps,
            profile_level_id: self.profile_level_id,
        };
        let audio = self
            .audio
            .as_ref()
            .filter(|_| with_audio)
            .map(|a| sdp::AudioTrack {
                sample_rate: a.sample_rate,
                channels: a.channels,
                config_hex: &a.config_hex,
            });
        sdp::describe(session_id, name, &video, audio.as_ref())
    }

    /// The RTP clock of a track (RFC 6184 §8.2.1: 90 kHz; AAC: its sample rate).
    pub fn clock(&self, kind: TrackKind) -> u32 {
        match kind {
            TrackKind::Video => 90_000,
            TrackKind::Audio => self.audio.as_ref().map_or(8000, |a| a.sample_rate),
            TrackKind::Backchannel => 8000,
        }
    }
}
