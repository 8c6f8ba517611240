//! What an NVR sees: Frigate's recording command (FFmpeg with wall-clock timestamps, generated
//! pts, corrupt frames discarded, RTSP over TCP, stream copy into segments) against the bridge's
//! RTSP server on a simulated call. FFmpeg must not warn about the stream: "Timestamps are unset
//! in a packet" or "Non-monotonous DTS" (each warned on every connect when the first video packet
//! a reader got carried no picture timing of its own).

use std::time::Duration;

use c300x_bridge::intercom::media::PortPool;
use c300x_bridge::media::hub::HubSettings;
use c300x_bridge::servers::rtsp::{RtspSettings, run};
use tokio::net::TcpListener;

use crate::rig::{Rig, ports};

/// Runs Frigate's record command (`preset-record-generic`, with audio copied) for `seconds` and
/// returns FFmpeg's stderr and the segments written.
async fn frigate_record(url: &str, seconds: u32) -> (String, Vec<u64>) {
    let dir = tempfile::tempdir().expect("tmp");
    let pattern = dir.path().join("seg%03d.mp4");
    let out = tokio::time::timeout(
        Duration::from_secs(u64::from(seconds) + 20),
        tokio::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "warning", "-threads", "2"])
            .args(["-avoid_negative_ts", "make_zero"])
            .args(["-fflags", "+genpts+discardcorrupt"])
            .args(["-rtsp_transport", "tcp", "-timeout", "5000000"])
            .args(["-use_wallclock_as_timestamps", "1"])
            .args(["-i", url])
            .args(["-t", &seconds.to_string()])
            .args(["-f", "segment", "-segment_time", "10"])
            .args(["-segment_format", "mp4", "-reset_timestamps", "1"])
            .args(["-c", "copy"])
            .arg(&pattern)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("ffmpeg in time")
    .expect("ffmpeg runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ffmpeg failed: {stderr}");
    let mut sizes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).expect("segments") {
        let meta = entry.expect("entry").metadata().expect("metadata");
        sizes.push(meta.len());
    }
    (stderr, sizes)
}

#[tokio::test]
async fn frigate_style_ffmpeg_records_without_timestamp_warnings() {
    let hub = HubSettings {
        linger: Duration::from_secs(5),
        start_timeout: Duration::from_secs(8),
        ..HubSettings::default()
    };
    let rig = Rig::builder().hub(hub).start().await;
    let (min, max) = ports(20);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("rtsp://{}/doorbell", listener.local_addr().expect("addr"));
    tokio::spawn(run(
        listener,
        vec![rig.hub().clone()],
        RtspSettings::new(PortPool::new(min, max)),
        rig.stop.clone(),
    ));
    // The first connect places the call (cold hub); the second joins it while it runs, from the
    // GOP cache: both are connects an NVR makes.
    for connect in ["cold", "warm"] {
        let (stderr, segments) = frigate_record(&url, 4).await;
        for warning in [
            "Timestamps are unset",
            "Non-monotonous DTS",
            "non monotonically",
        ] {
            assert!(
                !stderr.contains(warning),
                "{connect} connect: FFmpeg warned `{warning}`:\n{stderr}"
            );
        }
        assert!(
            segments.iter().any(|&len| len > 10_000),
            "{connect} connect: no segment with video ({segments:?}):\n{stderr}"
        );
    }
}

/// The lead-in alone, after the SPS and PPS of the simulator's stream: FFmpeg's decoder takes it
/// without a word (no "Missing reference picture") and, asked to show everything, gives one
/// picture (by default it shows nothing before a keyframe).
#[tokio::test]
async fn ffmpeg_decodes_the_lead_in_without_errors() {
    use c300x_bridge::proto::h264::lead_in;
    // libx264 Baseline 400x288, CAVLC (the simulator's and the C300X's lo-res stream).
    const SPS: &[u8] = &[
        0x67, 0x42, 0xc0, 0x15, 0xd9, 0x01, 0x90, 0x96, 0xc0, 0x44, 0x00, 0x00, 0x03, 0x00, 0x04,
        0x00, 0x00, 0x03, 0x00, 0x50, 0x3c, 0x58, 0xb9, 0x20,
    ];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
    let nal = lead_in(SPS, PPS).expect("a lead-in");
    let mut stream = Vec::new();
    for n in [SPS, PPS, &nal[..]] {
        stream.extend_from_slice(&[0, 0, 0, 1]);
        stream.extend_from_slice(n);
    }
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("lead-in.h264");
    std::fs::write(&path, &stream).expect("write");
    let out = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "warning", "-flags2", "showall"])
        .args(["-f", "h264", "-i"])
        .arg(&path)
        .args(["-f", "framemd5", "-"])
        .output()
        .await
        .expect("ffmpeg runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The one line FFmpeg may print: the picture it was asked to show anyway is flagged corrupt.
    let noise: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("corrupt decoded frame"))
        .collect();
    assert!(out.status.success() && noise.is_empty(), "{stderr}");
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count();
    assert_eq!(frames, 1, "one decoded picture");
}
