//! `proto::h264::Depacketizer` on the simulator's real SRTP video (sim::media alone, no SIP):
//! clean, its access units are 400x288 H.264 that ffprobe counts frame for frame; with 10 %
//! packet loss (and a PLI while it waits for an IDR) the output still decodes without one error.

use crate::sim_media::bind_pair;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use c300x_bridge::proto::h264::{AccessUnit, Depacketizer, DepacketizerStats};
use c300x_bridge::proto::rtp::{RtpPacket, rtcp};
use c300x_bridge::proto::srtp::{SdesKey, SrtpSession};
use c300x_bridge::sim::media::{BoundMedia, MediaPlan, MediaSession};
use c300x_bridge::sim::stats::{Faults, SimStats};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const VIDEO_PT: u8 = 96;

/// What one run of the simulator's video through the depacketizer gave.
struct Run {
    aus: Vec<AccessUnit>,
    stats: DepacketizerStats,
    plis: u64,
}

/// Receives the simulator's video for at least `duration` (and until `keyframes` keyframes came
/// out, at most 20 s) with `loss_percent` loss, sending a PLI every 300 ms while the
/// depacketizer waits for an IDR, as the bridge does.
async fn run_sim_video(loss_percent: u16, duration: Duration, keyframes: usize) -> Run {
    let (audio_rtp, _audio_rtcp) = bind_pair().await;
    let (video_rtp, video_rtcp) = bind_pair().await;
    let bound = BoundMedia::bind(LOCALHOST).await.expect("sim bind");
    let sim_video_rtcp = SocketAddr::new(LOCALHOST, bound.ports.video + 1);
    let (sim_video_key, bridge_video_key) = (SdesKey::random(), SdesKey::random());
    let plan = MediaPlan {
        remote_ip: LOCALHOST,
        remote_audio_port: audio_rtp.local_addr().expect("addr").port(),
        remote_video_port: video_rtp.local_addr().expect("addr").port(),
        audio_pt: 110,
        video_pt: VIDEO_PT,
        local_audio_key: SdesKey::random(),
        local_video_key: sim_video_key.clone(),
        remote_audio_key: SdesKey::random(),
        remote_video_key: bridge_video_key.clone(),
        no_rtp_timeout: Duration::from_secs(60),
    };
    let stats = Arc::new(SimStats::default());
    let faults = Arc::new(Faults::default());
    faults.loss_percent.store(loss_percent, Ordering::Relaxed);
    let (session, _end) = MediaSession::start(bound, plan, stats.clone(), faults);
    let mut rx = SrtpSession::new(&sim_video_key).expect("srtp");
    let mut tx = SrtpSession::new(&bridge_video_key).expect("srtcp");
    let mut depack = Depacketizer::new();
    let mut aus = Vec::new();
    let mut last_pli: Option<Instant> = None;
    let started = Instant::now();
    let mut buf = vec![0u8; 2048];
    while started.elapsed() < duration
        || aus.iter().filter(|a: &&AccessUnit| a.keyframe).count() < keyframes
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no {keyframes} keyframes in 20 s: {:?}",
            depack.stats()
        );
        let n = tokio::time::timeout(Duration::from_secs(2), video_rtp.recv(&mut buf))
            .await
            .expect("video keeps coming")
            .expect("recv");
        let clear = rx.unprotect_rtp(&buf[..n]).expect("decrypts");
        let p = RtpPacket::parse(&clear).expect("valid RTP");
        assert_eq!(p.header.payload_type, VIDEO_PT);
        let h = p.header;
        aus.extend(depack.push(h.sequence, h.timestamp, h.marker, p.payload));
        if depack.waiting_for_keyframe()
            && last_pli.is_none_or(|t| t.elapsed() > Duration::from_millis(300))
        {
            let pli = tx
                .protect_rtcp(&rtcp::pli(0x0b0b_0b0b, h.ssrc))
                .expect("PLI");
            video_rtcp
                .send_to(&pli, sim_video_rtcp)
                .await
                .expect("send PLI");
            last_pli = Some(Instant::now());
        }
    }
    session.stop();
    Run {
        aus,
        stats: depack.stats(),
        plis: SimStats::get(&stats.plis_received),
    }
}

fn write_annexb(path: &Path, aus: &[AccessUnit]) {
    let stream: Vec<u8> = aus.iter().flat_map(AccessUnit::to_annexb).collect();
    std::fs::write(path, stream).expect("write");
}

#[tokio::test]
async fn sim_video_depacketizes_into_frames_ffprobe_counts() {
    let run = run_sim_video(0, Duration::from_secs(3), 1).await;
    let aus = &run.aus;
    println!("clean: {} AUs, {:?}", aus.len(), run.stats);
    assert!(aus.len() >= 25, "~10 fps for 3 s, got {}", aus.len());
    assert!(aus[0].keyframe, "the first AU out is the keyframe");
    for w in aus.windows(2) {
        assert_eq!(w[1].timestamp.wrapping_sub(w[0].timestamp), 9000, "10 fps");
    }
    let s = run.stats;
    assert_eq!((s.seq_gaps, s.fu_errors, s.bad_payloads), (0, 0, 0));
    assert_eq!((s.nals_dropped, s.aus_dropped_incomplete), (0, 0));
    assert_eq!(s.aus_out, aus.len() as u64);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("out.h264");
    write_annexb(&file, aus);
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_streams",
            "-of",
            "json",
        ])
        .arg(&file)
        .output()
        .expect("ffprobe runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let stream = &json["streams"][0];
    assert_eq!(stream["codec_name"], "h264");
    assert_eq!(
        (stream["width"].clone(), stream["height"].clone()),
        (400.into(), 288.into())
    );
    let frames: usize = stream["nb_read_frames"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .expect("nb_read_frames");
    assert!(
        frames.abs_diff(aus.len()) <= 1,
        "{frames} frames for {} AUs",
        aus.len()
    );
}

#[tokio::test]
async fn sim_video_with_10_percent_loss_still_decodes_cleanly() {
    let run = run_sim_video(10, Duration::from_secs(3), 2).await;
    let aus = &run.aus;
    let s = run.stats;
    println!("10% loss: {} AUs out, {s:?}, {} PLIs", aus.len(), run.plis);
    assert!(aus[0].keyframe);
    assert!(s.seq_gaps > 0 && s.packets_lost > 0, "loss was seen: {s:?}");
    assert!(
        s.aus_dropped_incomplete + s.aus_dropped_waiting_for_idr > 0,
        "AUs were dropped and counted: {s:?}"
    );
    assert_eq!(s.aus_out, aus.len() as u64);
    assert!(run.plis > 0, "the waits asked for keyframes");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("out.h264");
    write_annexb(&file, aus);
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(&file)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg failed: {stderr}");
    assert!(
        stderr.trim().is_empty(),
        "decoder errors (glued garbage?):\n{stderr}"
    );
}
