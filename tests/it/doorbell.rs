//! The doorbell pieces against real clients: the ring clip is an MP4 that ffprobe reads with both
//! tracks and the right duration (and ffmpeg decodes without errors); the recorder's clip and
//! picture land in `clip_dir/<panel>/` named by time and panel.

use std::io::Cursor;
use std::process::Command;
use std::time::Duration;

use c300x_bridge::doorbell::clip::{ClipTracks, ClipWriter, Push};
use c300x_bridge::media::hub::Frame;
use c300x_bridge::media::transcode::AacSettings;
use c300x_bridge::sim::frames::hub_frames;
use serde_json::Value;

fn ffprobe(path: &std::path::Path) -> Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_format",
            "-show_streams",
        ])
        .args(["-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ffprobe json")
}

fn number(v: &Value) -> f64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_f64())
        .unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A clip of a ring that started mid-GOP: 4 s of camera + microphone, cut at 2.5 s.
fn write_clip(dir: &std::path::Path) -> std::path::PathBuf {
    let media =
        hub_frames(Some("front"), 4, 123_456, Some(AacSettings::default())).expect("frames");
    // Start at the first keyframe of the second GOP (2 s in): a ring rarely begins on one.
    let skip = media
        .frames
        .iter()
        .position(|f| matches!(f, Frame::Video(v) if v.au.keyframe && v.pts > 123_456))
        .expect("a second keyframe");
    let frames = &media.frames[skip - 3..];
    let Some(Frame::Video(first_key)) = frames
        .iter()
        .find(|f| matches!(f, Frame::Video(v) if v.au.keyframe))
    else {
        panic!("keyframe");
    };
    let tracks = ClipTracks::from_keyframe(&first_key.au, media.audio).expect("tracks");
    let mut writer = ClipWriter::new(Cursor::new(Vec::new()), tracks, Duration::from_millis(1500))
        .expect("writer");
    for f in frames {
        if writer.push(f).expect("push") == Push::Full {
            break;
        }
    }
    let (out, summary) = writer.finish().expect("finish");
    assert_eq!(summary.video_frames, 15);
    assert_eq!(summary.duration, Duration::from_millis(1500));
    let path = dir.join("clip.mp4");
    std::fs::write(&path, out.into_inner()).expect("write");
    path
}

#[test]
fn doorbell_clip_is_an_mp4_with_both_tracks_and_the_right_duration() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = write_clip(dir.path());
    let probe = ffprobe(&path);
    let streams = probe["streams"].as_array().expect("streams");
    assert_eq!(streams.len(), 2, "{probe}");
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .expect("video");
    let audio = streams
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .expect("audio");
    assert_eq!(video["codec_name"], "h264");
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(400), Some(288))
    );
    assert_eq!(number(&video["nb_read_frames"]), 15.0);
    assert_eq!(audio["codec_name"], "aac");
    assert_eq!(audio["sample_rate"], "16000");
    let audio_frames = number(&audio["nb_read_frames"]);
    assert!(
        (20.0..=25.0).contains(&audio_frames),
        "{audio_frames} AAC frames in 1.5 s"
    );
    let duration = number(&probe["format"]["duration"]);
    assert!(
        (1.45..=1.6).contains(&duration),
        "format duration {duration}"
    );
    let video_duration = number(&video["duration"]);
    assert!(
        (1.45..=1.55).contains(&video_duration),
        "video duration {video_duration}"
    );
    // Every frame decodes: the clip starts on a keyframe, nothing references what is missing.
    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        decode.status.success() && decode.stderr.is_empty(),
        "decode errors: {}",
        String::from_utf8_lossy(&decode.stderr)
    );
}
