//! The RTSP server against the simulator with real clients (retina, ffprobe, ffmpeg, GStreamer)
//! and a raw client for the error paths: 401/404/454/461/405/501, keep-alives, the malformed
//! corpus (400 and close, a live session unharmed), oversized heads, the connection limit (idle
//! connections evicted, 503 when all are busy), and
//! 20 mixed TCP/UDP readers on one call with the BYE after the linger; viewer churn: `rtsp/churn.rs`;
//! the ONVIF backchannel (GStreamer talking into the call): `rtsp/backchannel.rs`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use c300x_bridge::intercom::media::PortPool;
use c300x_bridge::media::hub::{HubSettings, StreamHub};
use c300x_bridge::servers::rtsp::{RtspSettings, run};
use futures::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::rig::{Rig, eventually, ports};

mod backchannel;
mod churn;
mod raw;

use raw::Raw;

const T: Duration = Duration::from_secs(15);

struct Fixture {
    /// The simulator (and the intercom) behind the hub.
    sim: Rig,
    hub: StreamHub,
    stop: CancellationToken,
    addr: SocketAddr,
}

impl Fixture {
    fn url(&self) -> String {
        format!("rtsp://{}/doorbell", self.addr)
    }
    fn invites(&self) -> u64 {
        self.sim.stat(|s| &s.invites_received)
    }
    fn byes(&self) -> u64 {
        self.sim.stat(|s| &s.byes_received)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A simulator, the bridge's intercom and one hub (linger 1 s) behind an RTSP server whose UDP
/// port pairs (`udp_ports` ports) come from the rig's allocator.
async fn start(udp_ports: u16, tweak: impl FnOnce(&mut RtspSettings)) -> Fixture {
    let hub_settings = HubSettings {
        linger: Duration::from_secs(1),
        start_timeout: Duration::from_secs(8),
        ..HubSettings::default()
    };
    let rig = Rig::builder().hub(hub_settings).start().await;
    let (min, max) = ports(udp_ports);
    let mut settings = RtspSettings::new(PortPool::new(min, max));
    tweak(&mut settings);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hub = rig.hub().clone();
    tokio::spawn(run(listener, vec![hub.clone()], settings, rig.stop.clone()));
    Fixture {
        hub,
        addr,
        stop: rig.stop.clone(),
        sim: rig,
    }
}

#[tokio::test]
async fn retina_over_tcp_gets_h264_400x288_and_aac() {
    let f = start(40, |_| {}).await;
    let url = rtsp_types::Url::parse(&f.url()).expect("url");
    let t0 = Instant::now();
    let mut session =
        retina::client::Session::describe(url, retina::client::SessionOptions::default())
            .await
            .expect("describe");
    let idle_describe = t0.elapsed();
    let streams = session.streams();
    assert_eq!(streams.len(), 2);
    assert_eq!(streams[0].encoding_name(), "h264");
    assert_eq!(streams[1].encoding_name(), "mpeg4-generic");
    match streams[0].parameters() {
        Some(retina::codec::ParametersRef::Video(v)) => {
            assert_eq!(v.pixel_dimensions(), (400, 288))
        }
        other => panic!("video parameters: {other:?}"),
    }
    for i in 0..2 {
        session
            .setup(i, retina::client::SetupOptions::default())
            .await
            .expect("setup");
    }
    let mut demuxed = session
        .play(retina::client::PlayOptions::default())
        .await
        .expect("play")
        .demuxed()
        .expect("demuxed");
    let (mut video, mut audio) = (0, 0);
    let mut first_frame = None;
    let mut lead_in = false;
    let end = Instant::now() + T;
    while video < 30 || audio < 5 {
        assert!(
            Instant::now() < end,
            "only {video} video and {audio} audio frames"
        );
        match tokio::time::timeout(T, demuxed.next()).await {
            Ok(Some(Ok(retina::codec::CodecItem::VideoFrame(v)))) => {
                first_frame.get_or_insert(t0.elapsed());
                // The lead-in (a P picture of skipped macroblocks, a dozen bytes, see
                // proto::h264::leadin), then a keyframe.
                if video == 0 && !v.is_random_access_point() {
                    assert!(v.data().len() < 40, "a lead-in, not a picture");
                    lead_in = true;
                    continue;
                }
                if video == 0 {
                    assert!(v.is_random_access_point(), "starts at a keyframe");
                }
                video += 1;
            }
            Ok(Some(Ok(retina::codec::CodecItem::AudioFrame(_)))) => audio += 1,
            Ok(Some(Ok(_))) => {}
            other => panic!("stream ended: {other:?}"),
        }
    }
    // A second reader on the live hub: DESCRIBE is answered from the running call.
    let t1 = Instant::now();
    let live = retina::client::Session::describe(
        rtsp_types::Url::parse(&f.url()).expect("url"),
        retina::client::SessionOptions::default(),
    )
    .await
    .expect("describe live");
    let live_describe = t1.elapsed();
    drop(live);
    eprintln!(
        "rtsp timing: DESCRIBE on idle hub {idle_describe:?}, first video frame {:?}; DESCRIBE on live hub {live_describe:?}",
        first_frame.unwrap_or_default()
    );
    assert!(lead_in, "a lead-in before the first keyframe");
    assert_eq!(f.invites(), 1);
    drop(demuxed);
}

async fn ffprobe(url: &str, transport: &str) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new("ffprobe")
            .args(["-v", "error", "-rtsp_transport", transport, "-show_entries"])
            .args(["stream=codec_name,width,height", "-of", "compact", url])
            .output(),
    )
    .await
    .expect("ffprobe in time")
    .expect("ffprobe runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ffprobe {transport}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[tokio::test]
async fn ffprobe_tcp_and_udp_see_h264_400x288_and_aac() {
    let f = start(40, |_| {}).await;
    for transport in ["tcp", "udp"] {
        let text = ffprobe(&f.url(), transport).await;
        assert!(
            text.contains("codec_name=h264|width=400|height=288"),
            "{transport}: {text}"
        );
        assert!(text.contains("codec_name=aac"), "{transport}: {text}");
    }
    let video_only = ffprobe(&format!("{}?audio=0", f.url()), "tcp").await;
    assert!(
        video_only.contains("h264") && !video_only.contains("aac"),
        "{video_only}"
    );
}

#[tokio::test]
async fn ffmpeg_records_a_playable_mp4_with_both_tracks() {
    let f = start(40, |_| {}).await;
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("out.mp4");
    let status = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-rtsp_transport",
                "tcp",
                "-i",
                &f.url(),
            ])
            .args(["-t", "5", "-c", "copy"])
            .arg(&out)
            .status(),
    )
    .await
    .expect("ffmpeg in time")
    .expect("ffmpeg runs");
    assert!(status.success());
    let probe = tokio::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height,nb_frames",
        ])
        .args(["-of", "compact"])
        .arg(&out)
        .output()
        .await
        .expect("ffprobe");
    let text = String::from_utf8_lossy(&probe.stdout);
    assert!(
        text.contains("codec_name=h264|width=400|height=288"),
        "{text}"
    );
    assert!(text.contains("codec_name=aac"), "{text}");
}

#[tokio::test]
async fn gstreamer_rtspsrc_plays_five_seconds() {
    if !Path::new("/usr/bin/gst-launch-1.0").exists() {
        panic!("gst-launch-1.0 missing: run scripts/setup-debian.sh");
    }
    let f = start(40, |_| {}).await;
    let mut child = tokio::process::Command::new("gst-launch-1.0")
        .args(["-e", "-q", "rtspsrc", &format!("location={}", f.url())])
        .args([
            "protocols=tcp",
            "!",
            "rtph264depay",
            "!",
            "h264parse",
            "!",
            "fakesink",
        ])
        .kill_on_drop(true)
        .spawn()
        .expect("gst-launch runs");
    // Still playing after 5 s (an error would have ended it), and the call is up.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        child.try_wait().expect("wait").is_none(),
        "gst-launch ended early"
    );
    assert_eq!(f.hub.status().viewers, 1);
    assert_eq!(f.invites(), 1);
    child.kill().await.expect("kill");
}

#[tokio::test]
async fn twenty_readers_share_one_call_and_bye_follows_the_linger() {
    let f = start(200, |_| {}).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let url = f.url();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let url = rtsp_types::Url::parse(&url).expect("url");
                let transport = if i % 4 == 0 { "tcp" } else { "udp" };
                let mut s = retina::client::Session::describe(url, Default::default())
                    .await
                    .expect("describe");
                let opts = retina::client::SetupOptions::default()
                    .transport(transport.parse().expect("transport"));
                s.setup(0, opts).await.expect("setup");
                let mut d = s
                    .play(Default::default())
                    .await
                    .expect("play")
                    .demuxed()
                    .expect("demux");
                let mut n = 0;
                while n < 20 {
                    if let Ok(Some(Ok(retina::codec::CodecItem::VideoFrame(_)))) =
                        tokio::time::timeout(T, d.next()).await
                    {
                        n += 1;
                    }
                }
            } else {
                let transport = if i % 4 == 1 { "tcp" } else { "udp" };
                let out = tokio::process::Command::new("ffmpeg")
                    .args(["-v", "error", "-rtsp_transport", transport, "-i", &url])
                    .args(["-t", "3", "-f", "null", "-"])
                    .output()
                    .await
                    .expect("ffmpeg");
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }));
    }
    let mut peak = 0;
    while !tasks.iter().all(|t| t.is_finished()) {
        peak = peak.max(f.hub.status().viewers);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for t in tasks {
        t.await.expect("reader ok");
    }
    assert_eq!(f.invites(), 1, "one call for all readers");
    eprintln!("rtsp: peak viewers {peak}");
    let all_gone = Instant::now();
    eventually("viewers gone", T, || f.hub.status().viewers == 0).await;
    eventually("BYE", T, || f.byes() == 1).await;
    let after = all_gone.elapsed();
    assert!(
        after >= Duration::from_millis(800),
        "BYE only after the linger: {after:?}"
    );
}

#[tokio::test]
async fn basic_and_digest_auth() {
    let f = start(40, |s| {
        s.secrets.user = Some(("admin".into(), "s3cret".into()));
    })
    .await;
    let mut raw = Raw::connect(f.addr).await;
    let r = raw.request("DESCRIBE", &f.url(), &[]).await;
    assert_eq!(r.status, 401);
    let challenges = r.headers("WWW-Authenticate");
    assert!(
        challenges.iter().any(|c| c.starts_with("Digest ")),
        "{challenges:?}"
    );
    assert!(
        challenges.iter().any(|c| c.starts_with("Basic ")),
        "{challenges:?}"
    );
    use base64::Engine as _;
    let wrong = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("admin:nope")
    );
    let r = raw
        .request("DESCRIBE", &f.url(), &[("Authorization", &wrong)])
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(f.invites(), 0, "no call for strangers");
    let good = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("admin:s3cret")
    );
    let r = raw
        .request("DESCRIBE", &f.url(), &[("Authorization", &good)])
        .await;
    assert_eq!(r.status, 200, "{}", r.head);
    // Digest through retina (it answers the Digest challenge); wrong password fails.
    let opts = |p: &str| {
        retina::client::SessionOptions::default().creds(Some(retina::client::Credentials {
            username: "admin".into(),
            password: p.into(),
        }))
    };
    let url = rtsp_types::Url::parse(&f.url()).expect("url");
    assert!(
        retina::client::Session::describe(url.clone(), opts("bad"))
            .await
            .is_err()
    );
    let mut s = retina::client::Session::describe(url, opts("s3cret"))
        .await
        .expect("digest ok");
    s.setup(0, Default::default()).await.expect("setup");
    let mut d = s
        .play(Default::default())
        .await
        .expect("play")
        .demuxed()
        .expect("demux");
    let got = tokio::time::timeout(T, async {
        loop {
            if let Some(Ok(retina::codec::CodecItem::VideoFrame(_))) = d.next().await {
                return;
            }
        }
    })
    .await;
    assert!(got.is_ok(), "video with Digest auth");
    // ffprobe with credentials in the URL (Digest preferred by FFmpeg).
    let authed = format!("rtsp://admin:s3cret@{}/doorbell", f.addr);
    assert!(ffprobe(&authed, "tcp").await.contains("h264"));
}

#[tokio::test]
async fn error_statuses_and_keepalives() {
    let f = start(40, |_| {}).await;
    let mut raw = Raw::connect(f.addr).await;
    let r = raw.request("OPTIONS", "*", &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.header("Public").is_some_and(|p| p.contains("DESCRIBE")));
    let r = raw
        .request("DESCRIBE", &format!("rtsp://{}/nope", f.addr), &[])
        .await;
    assert_eq!(r.status, 404);
    let r = raw.request("ANNOUNCE", &f.url(), &[]).await;
    assert_eq!(r.status, 405);
    assert!(r.header("Allow").is_some());
    let r = raw.request("FLY", &f.url(), &[]).await;
    assert_eq!(r.status, 501);
    let r = raw
        .request("PLAY", &f.url(), &[("Session", "DEADBEEF")])
        .await;
    assert_eq!(r.status, 454);
    assert_eq!(f.invites(), 0, "errors start no call");
    let r = raw.request("DESCRIBE", &f.url(), &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("packetization-mode=1") && r.body.contains("MPEG4-GENERIC"));
    for t in [
        "RTP/AVP;multicast",
        "RTP/SAVP;unicast;client_port=5000-5001",
        "RTP/AVP/TCP;interleaved=0-1;mode=record",
    ] {
        let r = raw
            .request(
                "SETUP",
                &format!("{}/trackID=0", f.url()),
                &[("Transport", t)],
            )
            .await;
        assert_eq!(r.status, 461, "{t}");
    }
    let session = raw.play_tcp(&f.url()).await;
    let r = raw
        .request("GET_PARAMETER", &f.url(), &[("Session", &session)])
        .await;
    assert_eq!(r.status, 200);
    let r = raw
        .request("OPTIONS", &f.url(), &[("Session", &session)])
        .await;
    assert_eq!(r.status, 200);
    let r = raw
        .request("GET_PARAMETER", &f.url(), &[("Session", "OTHER")])
        .await;
    assert_eq!(r.status, 454);
    let counts = raw.count_frames(Duration::from_secs(2)).await;
    assert!(
        counts[0] > 20 && counts[2] > 3,
        "video and audio RTP: {counts:?}"
    );
    let r = raw
        .request("TEARDOWN", &f.url(), &[("Session", &session)])
        .await;
    assert_eq!(r.status, 200);
    eventually("lease released", T, || f.hub.status().viewers == 0).await;
}

#[tokio::test]
async fn malformed_requests_get_400_and_close_while_a_live_session_plays() {
    let f = start(40, |_| {}).await;
    let mut live = Raw::connect(f.addr).await;
    live.play_tcp(&f.url()).await;
    let mut corpus: Vec<_> = std::fs::read_dir("tests/corpus/rtsp")
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .collect();
    corpus.sort();
    assert!(corpus.len() >= 15);
    let mut oversized = b"DESCRIBE rtsp://127.0.0.1/doorbell RTSP/1.0\r\nCSeq: 1\r\nX: ".to_vec();
    oversized.extend(std::iter::repeat_n(b'a', 20_000));
    let mut inputs: Vec<(String, Vec<u8>)> = corpus
        .iter()
        .map(|p| (p.display().to_string(), std::fs::read(p).expect("read")))
        .collect();
    inputs.push(("oversized head".into(), oversized));
    for (name, bytes) in inputs {
        let mut s = TcpStream::connect(f.addr).await.expect("connect");
        let _ = s.write_all(&bytes).await;
        let mut got = Vec::new();
        tokio::time::timeout(T, s.read_to_end(&mut got))
            .await
            .unwrap_or_else(|_| panic!("{name}: connection not closed"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("RTSP/1.0 400 "), "{name}: {text}");
    }
    let counts = live.count_frames(Duration::from_secs(1)).await;
    assert!(counts[0] > 10, "the live session kept playing: {counts:?}");
    assert_eq!(f.invites(), 1);
}

#[tokio::test]
async fn connection_limit_evicts_idle_connections_and_answers_503_when_all_are_busy() {
    let f = start(20, |s| s.caps.total = 2).await;
    let mut a = Raw::connect(f.addr).await;
    let mut b = Raw::connect(f.addr).await;
    // Both hold the stream (busy): a third connection is refused.
    assert_eq!(a.request("DESCRIBE", &f.url(), &[]).await.status, 200);
    assert_eq!(b.request("DESCRIBE", &f.url(), &[]).await.status, 200);
    let mut c = Raw::connect(f.addr).await;
    assert_eq!(c.request("OPTIONS", "*", &[]).await.status, 503);
    assert!(c.reply().await.is_none(), "closed after the 503");
    // b lets the stream go: idle again, it makes room for a newcomer.
    assert_eq!(b.request("TEARDOWN", &f.url(), &[]).await.status, 200);
    let mut d = Raw::connect(f.addr).await;
    assert_eq!(d.request("OPTIONS", "*", &[]).await.status, 200);
    assert!(b.reply().await.is_none(), "the idle connection was evicted");
    drop(a);
    // The freed slot serves again (d, idle after OPTIONS, may make room too).
    let mut e = Raw::connect(f.addr).await;
    assert_eq!(e.request("OPTIONS", "*", &[]).await.status, 200);
}
