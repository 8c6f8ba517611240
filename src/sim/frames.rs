//! The simulator's camera and microphone as hub frames, without a call or a clock: what a hub
//! would hold for `seconds` of a panel (H.264 at 10 fps, an IDR with SPS/PPS every 2 s, the name
//! drawn in; Speex transcoded to AAC by the bridge's own transcoder). For tests and benchmarks of
//! whatever consumes hub frames (ring snapshot, clip, muxers). Blocking (FFmpeg).

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use super::media::{MediaError, PatternEncoder, SpeechEncoder};
use crate::media::hub::{AudioFrame, Frame, VideoFrame};
use crate::media::transcode::{AacSettings, SpeexToAac, TranscodeError};
use crate::proto::aac::AudioSpecificConfig;
use crate::proto::h264::{AccessUnit, NAL_IDR, nal_type, split_annexb};

#[derive(Debug, thiserror::Error)]
pub enum FramesError {
    #[error(transparent)]
    Encoder(#[from] MediaError),
    #[error(transparent)]
    Transcode(#[from] TranscodeError),
}

/// Frames in hub order (video and audio interleaved by time) and the audio's config.
pub struct HubFrames {
    pub frames: Vec<Frame>,
    pub audio: Option<AudioSpecificConfig>,
}

/// `seconds` of the test pattern (with `label` drawn in) starting at `base_90k` on the hub's
/// timeline; with `audio`, the speech-like signal as AAC at its rate, on the same timeline.
pub fn hub_frames(
    label: Option<&str>,
    seconds: u32,
    base_90k: u64,
    audio: Option<AacSettings>,
) -> Result<HubFrames, FramesError> {
    let fps = u64::from(PatternEncoder::FPS);
    let mut video = PatternEncoder::new(label.map(str::to_owned))?;
    let mut speech = audio.map(|_| SpeechEncoder::new()).transpose()?;
    let mut aac = audio.map(SpeexToAac::new).transpose()?;
    let asc = aac.as_ref().map(SpeexToAac::audio_specific_config);
    let rate = u64::from(audio.map_or(16_000, |a| a.sample_rate));
    let mut frames = Vec::new();
    let mut speex_packets = 0u32;
    for i in 0..u64::from(seconds) * fps {
        for f in video.encode(i, false)? {
            let nals: Vec<Bytes> = split_annexb(&f.annexb)
                .into_iter()
                .map(Bytes::copy_from_slice)
                .collect();
            let keyframe = nals.iter().any(|n| nal_type(n) == NAL_IDR);
            let pts = base_90k + f.index * 90_000 / fps;
            frames.push(Frame::Video(Arc::new(VideoFrame {
                pts,
                au: AccessUnit {
                    timestamp: pts as u32,
                    nals,
                    keyframe,
                },
                received: SystemTime::now(),
            })));
        }
        // The audio of this video frame's 100 ms: five 20 ms Speex packets.
        if let (Some(speech), Some(aac)) = (speech.as_mut(), aac.as_mut()) {
            for _ in 0..5 {
                for packet in speech.encode_next()? {
                    let ts = speex_packets * 160;
                    speex_packets += 1;
                    for a in aac.push(ts, &packet)? {
                        frames.push(Frame::Audio(Arc::new(AudioFrame {
                            pts: base_90k * rate / 90_000 + a.pts,
                            frame: a,
                        })));
                    }
                }
            }
        }
    }
    Ok(HubFrames { frames, audio: asc })
}
