//! The SDP of a DESCRIBE answer (RFC 2326 Appendix C): H.264 with `packetization-mode=1`,
//! `profile-level-id` and `sprop-parameter-sets` (RFC 6184 §8.1) and AAC as `MPEG4-GENERIC`
//! AAC-hbr (RFC 3640 §3.3.6). One `a=control` per track; the session control is `*`. With the
//! ONVIF backchannel (Streaming Specification §5.3) a third, `a=sendonly` audio section offers
//! PCMU/8000 and PCMA/8000 for the client's voice.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

pub const VIDEO_PT: u8 = 96;
pub const AUDIO_PT: u8 = 97;
/// `a=control` of track n (video 0, audio 1), relative to the `Content-Base`.
pub const VIDEO_CONTROL: &str = "trackID=0";
pub const AUDIO_CONTROL: &str = "trackID=1";
/// `a=control` of the ONVIF backchannel (client → bridge audio).
pub const BACKCHANNEL_CONTROL: &str = "trackID=2";
/// The `Require` option tag of the ONVIF backchannel.
pub const BACKCHANNEL_TAG: &str = "www.onvif.org/ver20/backchannel";

/// The H.264 track: parameter sets without start codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoTrack<'a> {
    pub sps: &'a [u8],
    pub pps: &'a [u8],
    pub profile_level_id: [u8; 3],
}

/// The AAC track: clock rate, channels and the AudioSpecificConfig in hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioTrack<'a> {
    pub sample_rate: u32,
    pub channels: u8,
    pub config_hex: &'a str,
}

/// The whole description; `session_id` goes into `o=`, `name` into `s=`.
pub fn describe(
    session_id: u64,
    name: &str,
    video: &VideoTrack<'_>,
    audio: Option<&AudioTrack<'_>>,
) -> String {
    let mut s = String::new();
    let name: String = name.chars().filter(|c| !c.is_control()).collect();
    let _ = write!(
        s,
        "v=0\r\no=- {session_id} 1 IN IP4 0.0.0.0\r\ns={name}\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
         a=tool:c300x-bridge\r\na=range:npt=0-\r\na=control:*\r\n"
    );
    let [p, c, l] = video.profile_level_id;
    let _ = write!(
        s,
        "m=video 0 RTP/AVP {VIDEO_PT}\r\na=rtpmap:{VIDEO_PT} H264/90000\r\n\
         a=fmtp:{VIDEO_PT} packetization-mode=1;profile-level-id={p:02X}{c:02X}{l:02X};\
         sprop-parameter-sets={},{}\r\na=control:{VIDEO_CONTROL}\r\n",
        STANDARD.encode(video.sps),
        STANDARD.encode(video.pps),
    );
    if let Some(a) = audio {
        let _ = write!(
            s,
            "m=audio 0 RTP/AVP {AUDIO_PT}\r\na=rtpmap:{AUDIO_PT} MPEG4-GENERIC/{}/{}\r\n\
             a=fmtp:{AUDIO_PT} streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;\
             indexlength=3;indexdeltalength=3;config={}\r\na=control:{AUDIO_CONTROL}\r\n",
            a.sample_rate, a.channels, a.config_hex
        );
    }
    s
}

/// The backchannel section appended to [`describe`]'s text: the client sends, we receive
/// (`a=sendonly` is from the client's point of view in ONVIF's use), static PT 0 and 8.
pub fn backchannel_section() -> String {
    format!(
        "m=audio 0 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=control:{BACKCHANNEL_CONTROL}\r\na=sendonly\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_text_and_the_sdp_crate_reads_it() {
        let v = VideoTrack {
            sps: &[0x67, 0x42, 0x80, 0x1f],
            pps: &[0x68, 0xce, 0x06, 0xe2],
            profile_level_id: [0x42, 0x80, 0x1f],
        };
        let a = AudioTrack {
            sample_rate: 16000,
            channels: 1,
            config_hex: "1408",
        };
        let text = describe(7, "doorbell", &v, Some(&a));
        assert_eq!(
            text,
            "v=0\r\no=- 7 1 IN IP4 0.0.0.0\r\ns=doorbell\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
             a=tool:c300x-bridge\r\na=range:npt=0-\r\na=control:*\r\n\
             m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
             a=fmtp:96 packetization-mode=1;profile-level-id=42801F;sprop-parameter-sets=Z0KAHw==,aM4G4g==\r\n\
             a=control:trackID=0\r\n\
             m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/16000/1\r\n\
             a=fmtp:97 streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1408\r\n\
             a=control:trackID=1\r\n"
        );
        let parsed = sdp::SessionDescription::unmarshal(&mut std::io::Cursor::new(text.as_bytes()))
            .expect("valid SDP");
        assert_eq!(parsed.media_descriptions.len(), 2);
        let video_only = describe(7, "doorbell", &v, None);
        assert!(!video_only.contains("m=audio"));
        let with_back = format!("{text}{}", backchannel_section());
        let parsed =
            sdp::SessionDescription::unmarshal(&mut std::io::Cursor::new(with_back.as_bytes()))
                .expect("valid SDP with the backchannel");
        assert_eq!(parsed.media_descriptions.len(), 3);
        let back = &parsed.media_descriptions[2];
        assert_eq!(back.media_name.formats, ["0", "8"]);
        assert!(back.attribute("sendonly").is_some());
        assert_eq!(back.attribute("control"), Some(Some("trackID=2")));
    }
}
