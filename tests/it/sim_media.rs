//! The simulator's media (sim::media) against a stand-in bridge on 127.0.0.1, no SIP: SRTP is
//! checked with webrtc-srtp directly, H.264 with our own tiny depacketizer + ffprobe, Speex with
//! ffmpeg's native decoder. Covers PLI → IDR, the no-RTP timer, SRTP auth failures and stop.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use c300x_bridge::proto::srtp::SdesKey;
use c300x_bridge::sim::media::{BoundMedia, MediaEnd, MediaPlan, MediaSession};
use c300x_bridge::sim::stats::{Faults, SimStats};
use ffmpeg_next as ffmpeg;
use tokio::net::UdpSocket;
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;
use webrtc_util::marshal::Unmarshal;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const AUDIO_PT: u8 = 110;
const VIDEO_PT: u8 = 96;

/// The bridge's side of one call: RTP/RTCP pairs and the four keys.
struct Bridge {
    audio_rtp: UdpSocket,
    video_rtp: UdpSocket,
    video_rtcp: UdpSocket,
    _audio_rtcp: UdpSocket,
    sim_audio_key: SdesKey,
    sim_video_key: SdesKey,
    bridge_audio_key: SdesKey,
    bridge_video_key: SdesKey,
    sim_ports: (u16, u16),
}

/// An even RTP port with its RTCP neighbour, standing in for the bridge's sockets.
pub async fn bind_pair() -> (UdpSocket, UdpSocket) {
    for _ in 0..100 {
        let rtp = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
        let port = rtp.local_addr().expect("addr").port();
        if port % 2 == 1 {
            continue;
        }
        if let Ok(rtcp) = UdpSocket::bind((LOCALHOST, port + 1)).await {
            return (rtp, rtcp);
        }
    }
    panic!("no free port pair");
}

struct Call {
    bridge: Bridge,
    session: Option<MediaSession>,
    end: tokio::sync::oneshot::Receiver<MediaEnd>,
    stats: Arc<SimStats>,
    faults: Arc<Faults>,
}

async fn start_call(no_rtp_timeout: Duration) -> Call {
    let (audio_rtp, audio_rtcp) = bind_pair().await;
    let (video_rtp, video_rtcp) = bind_pair().await;
    let bound = BoundMedia::bind(LOCALHOST).await.expect("sim bind");
    let sim_ports = (bound.ports.audio, bound.ports.video);
    let bridge = Bridge {
        sim_audio_key: SdesKey::random(),
        sim_video_key: SdesKey::random(),
        bridge_audio_key: SdesKey::random(),
        bridge_video_key: SdesKey::random(),
        sim_ports,
        audio_rtp,
        video_rtp,
        video_rtcp,
        _audio_rtcp: audio_rtcp,
    };
    let plan = MediaPlan {
        remote_ip: LOCALHOST,
        remote_audio_port: bridge.audio_rtp.local_addr().expect("addr").port(),
        remote_video_port: bridge.video_rtp.local_addr().expect("addr").port(),
        audio_pt: AUDIO_PT,
        video_pt: VIDEO_PT,
        local_audio_key: bridge.sim_audio_key.clone(),
        local_video_key: bridge.sim_video_key.clone(),
        remote_audio_key: bridge.bridge_audio_key.clone(),
        remote_video_key: bridge.bridge_video_key.clone(),
        no_rtp_timeout,
    };
    let stats = Arc::new(SimStats::default());
    let faults = Arc::new(Faults::default());
    let (session, end) = MediaSession::start(bound, plan, stats.clone(), faults.clone());
    Call {
        bridge,
        session: Some(session),
        end,
        stats,
        faults,
    }
}

fn context(key: &SdesKey) -> Context {
    Context::new(
        key.master_key(),
        key.master_salt(),
        ProtectionProfile::Aes128CmHmacSha1_80,
        None,
        None,
    )
    .expect("srtp context")
}

/// Receives one datagram within `wait`.
async fn recv(socket: &UdpSocket, wait: Duration) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 2048];
    match tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

/// Reads until the socket stays quiet for `quiet`.
async fn drain(socket: &UdpSocket, quiet: Duration) {
    while recv(socket, quiet).await.is_some() {}
}

fn rtp_packet(decrypted: Bytes) -> rtp::packet::Packet {
    let mut b = decrypted;
    rtp::packet::Packet::unmarshal(&mut b).expect("valid RTP")
}

/// Single NAL + FU-A reassembly; access units in Annex-B, completed on the marker bit.
#[derive(Default)]
struct Depacketizer {
    fu: Option<Vec<u8>>,
    au: Vec<Vec<u8>>,
    last_seq: Option<u16>,
}

impl Depacketizer {
    /// Returns the NAL units of an access unit when `p` completes one.
    fn push(&mut self, p: &rtp::packet::Packet) -> Option<Vec<Vec<u8>>> {
        if let Some(last) = self.last_seq {
            assert_eq!(
                p.header.sequence_number,
                last.wrapping_add(1),
                "gap on loopback"
            );
        }
        self.last_seq = Some(p.header.sequence_number);
        let d = &p.payload;
        match d[0] & 0x1f {
            1..=23 => self.au.push(d.to_vec()),
            28 => {
                if d[1] & 0x80 != 0 {
                    assert!(self.fu.is_none(), "FU-A start inside a FU-A");
                    self.fu = Some(vec![(d[0] & 0xe0) | (d[1] & 0x1f)]);
                }
                self.fu
                    .as_mut()
                    .expect("FU-A start")
                    .extend_from_slice(&d[2..]);
                if d[1] & 0x40 != 0 {
                    let nal = self.fu.take().expect("FU-A open");
                    self.au.push(nal);
                }
            }
            t => panic!("unexpected NAL/packet type {t}"),
        }
        p.header.marker.then(|| std::mem::take(&mut self.au))
    }
}

fn types(au: &[Vec<u8>]) -> Vec<u8> {
    au.iter().map(|n| n[0] & 0x1f).collect()
}

fn is_idr_with_parameter_sets(au: &[Vec<u8>]) -> bool {
    let t = types(au);
    let (Some(sps), Some(pps), Some(idr)) = (
        t.iter().position(|&x| x == 7),
        t.iter().position(|&x| x == 8),
        t.iter().position(|&x| x == 5),
    ) else {
        return false;
    };
    sps < idr && pps < idr
}

/// Reads video for `wait`, returning (arrival time, access unit) pairs.
async fn collect_video(
    call: &Call,
    ctx: &mut Context,
    wait: Duration,
) -> Vec<(Instant, Vec<Vec<u8>>)> {
    let mut depack = Depacketizer::default();
    let mut aus = Vec::new();
    let until = Instant::now() + wait;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        let Some(raw) = recv(&call.bridge.video_rtp, left).await else {
            break;
        };
        let p = rtp_packet(
            ctx.decrypt_rtp(&raw)
                .expect("video decrypts with the sim's key"),
        );
        assert_eq!(p.header.payload_type, VIDEO_PT);
        assert!(p.payload.len() <= 1200, "payload {} > MTU", p.payload.len());
        if let Some(au) = depack.push(&p) {
            aus.push((Instant::now(), au));
        }
    }
    aus
}

#[tokio::test]
async fn video_is_srtp_h264_400x288_that_ffprobe_reads() {
    let call = start_call(Duration::from_secs(30)).await;
    let mut ctx = context(&call.bridge.sim_video_key);
    let mut depack = Depacketizer::default();
    let (mut stream, mut bytes, mut timestamps, mut ssrcs) =
        (Vec::new(), 0usize, Vec::new(), Vec::new());
    let started = Instant::now();
    let mut frames = 0;
    while frames < 25 {
        let raw = recv(&call.bridge.video_rtp, Duration::from_secs(2))
            .await
            .expect("video keeps coming");
        bytes += raw.len();
        let p = rtp_packet(ctx.decrypt_rtp(&raw).expect("decrypts"));
        assert_eq!(p.header.payload_type, VIDEO_PT);
        ssrcs.push(p.header.ssrc);
        if let Some(au) = depack.push(&p) {
            timestamps.push(p.header.timestamp);
            if frames == 0 {
                assert!(is_idr_with_parameter_sets(&au), "first AU {:?}", types(&au));
            }
            for nal in au {
                stream.extend_from_slice(&[0, 0, 0, 1]);
                stream.extend_from_slice(&nal);
            }
            frames += 1;
        }
    }
    let elapsed = started.elapsed();
    assert!(ssrcs.windows(2).all(|w| w[0] == w[1]), "one SSRC");
    for w in timestamps.windows(2) {
        assert_eq!(w[1].wrapping_sub(w[0]), 9000, "90 kHz at 10 fps");
    }
    // 25 frames at 10 fps take ~2.4 s in real time (not a burst).
    assert!(elapsed > Duration::from_millis(2000), "paced: {elapsed:?}");
    println!(
        "video: {frames} frames, {bytes} SRTP bytes in {elapsed:?} = {:.0} kbit/s; IDRs {}",
        bytes as f64 * 8.0 / elapsed.as_secs_f64() / 1000.0,
        SimStats::get(&call.stats.idrs_sent)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("sim.h264");
    std::fs::write(&file, &stream).expect("write");
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_streams", "-of", "json"])
        .arg(&file)
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let s = &json["streams"][0];
    assert_eq!(s["codec_name"], "h264");
    assert_eq!(s["width"], 400);
    assert_eq!(s["height"], 288);
    assert_eq!(s["profile"], "Constrained Baseline");
    assert!(
        SimStats::get(&call.stats.idrs_sent) >= 2,
        "GOP 2 s: an IDR at 0 s and 2 s"
    );
}

#[tokio::test]
async fn audio_is_srtp_speex_8khz_and_not_silent() {
    let call = start_call(Duration::from_secs(30)).await;
    let mut ctx = context(&call.bridge.sim_audio_key);
    ffmpeg::init().expect("ffmpeg");
    let codec = ffmpeg::decoder::find(ffmpeg::codec::Id::SPEEX).expect("native speex decoder");
    let mut opts = ffmpeg::Dictionary::new();
    opts.set("ar", "8000");
    opts.set("ac", "1");
    let mut decoder = ffmpeg::codec::context::Context::new_with_codec(codec)
        .decoder()
        .open_as_with(codec, opts)
        .expect("open speex")
        .audio()
        .expect("audio decoder");
    let mut pcm: Vec<f64> = Vec::new();
    let mut last_ts: Option<u32> = None;
    let started = Instant::now();
    for _ in 0..50 {
        let raw = recv(&call.bridge.audio_rtp, Duration::from_secs(1))
            .await
            .expect("audio keeps coming");
        let p = rtp_packet(
            ctx.decrypt_rtp(&raw)
                .expect("audio decrypts with the sim's key"),
        );
        assert_eq!(p.header.payload_type, AUDIO_PT);
        if let Some(t) = last_ts {
            assert_eq!(p.header.timestamp.wrapping_sub(t), 160, "20 ms at 8 kHz");
        }
        last_ts = Some(p.header.timestamp);
        decoder
            .send_packet(&ffmpeg::Packet::copy(&p.payload))
            .expect("speex packet decodes");
        let mut frame = ffmpeg::frame::Audio::empty();
        while decoder.receive_frame(&mut frame).is_ok() {
            assert_eq!(frame.rate(), 8000);
            let n = frame.samples();
            let data = frame.data(0);
            match frame.format() {
                ffmpeg::format::Sample::F32(_) => pcm.extend(
                    data.chunks_exact(4)
                        .take(n)
                        .map(|c| f64::from(f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))),
                ),
                ffmpeg::format::Sample::I16(_) => pcm.extend(
                    data.chunks_exact(2)
                        .take(n)
                        .map(|c| f64::from(i16::from_ne_bytes([c[0], c[1]])) / 32768.0),
                ),
                other => panic!("unexpected sample format {other:?}"),
            }
        }
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed > Duration::from_millis(800),
        "paced at 20 ms: {elapsed:?}"
    );
    assert!(pcm.len() >= 40 * 160, "decoded {} samples", pcm.len());
    // Skip the codec's start-up, then measure.
    let tail = &pcm[pcm.len() / 4..];
    let rms = (tail.iter().map(|x| x * x).sum::<f64>() / tail.len() as f64).sqrt();
    println!(
        "audio: {} samples decoded, RMS {rms:.3} of full scale",
        pcm.len()
    );
    assert!(rms > 0.03, "audio is silent: RMS {rms}");
}

/// A PLI (PT 206 FMT 1) as SRTCP with `key`, built here byte by byte.
fn srtcp_pli(ctx: &mut Context, media_ssrc: u32) -> Bytes {
    let mut pli = vec![0x81, 206, 0, 2, 0x0b, 0x0b, 0x0b, 0x0b];
    pli.extend_from_slice(&media_ssrc.to_be_bytes());
    ctx.encrypt_rtcp(&pli).expect("protect PLI")
}

#[tokio::test]
async fn pli_forces_an_idr_with_sps_and_pps() {
    let call = start_call(Duration::from_secs(30)).await;
    let mut rx = context(&call.bridge.sim_video_key);
    // Let the first GOP's IDR pass; stop well before the 2 s keyframe.
    let first = collect_video(&call, &mut rx, Duration::from_millis(600)).await;
    assert!(is_idr_with_parameter_sets(&first[0].1));
    let idrs_before = SimStats::get(&call.stats.idrs_sent);
    let mut tx = context(&call.bridge.bridge_video_key);
    let pli = srtcp_pli(&mut tx, 0);
    let sim_rtcp = SocketAddr::new(LOCALHOST, call.bridge.sim_ports.1 + 1);
    let sent_at = Instant::now();
    call.bridge
        .video_rtcp
        .send_to(&pli, sim_rtcp)
        .await
        .expect("send PLI");
    let after = collect_video(&call, &mut rx, Duration::from_millis(500)).await;
    let idr = after
        .iter()
        .find(|(_, au)| is_idr_with_parameter_sets(au))
        .expect("an IDR with SPS+PPS within 500 ms of the PLI");
    println!("PLI → IDR in {:?}", idr.0 - sent_at);
    assert!(idr.0 - sent_at < Duration::from_millis(350));
    assert_eq!(SimStats::get(&call.stats.plis_received), 1);
    assert_eq!(SimStats::get(&call.stats.rtcp_from_bridge), 1);
    assert!(SimStats::get(&call.stats.idrs_sent) > idrs_before);
    assert_eq!(SimStats::get(&call.stats.srtp_auth_failures), 0);
}

/// One keep-alive RTP packet (1-byte Speex silence), as the bridge sends every 20 ms (§5).
fn keepalive(ctx: &mut Context, seq: u16) -> Bytes {
    let ts = u32::from(seq) * 160;
    let mut p = vec![0x80, AUDIO_PT];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&[0xb, 0xb, 0xb, 0xb, 0x00]);
    ctx.encrypt_rtp(&p).expect("protect")
}

#[tokio::test]
async fn no_rtp_from_bridge_ends_media_unless_kept_alive() {
    let mut call = start_call(Duration::from_secs(1)).await;
    let mut tx = context(&call.bridge.bridge_audio_key);
    let sim_audio = SocketAddr::new(LOCALHOST, call.bridge.sim_ports.0);
    // 2.5 s of keep-alives every 200 ms: the 1 s timer must not fire.
    for seq in 0..13u16 {
        let p = keepalive(&mut tx, seq);
        call.bridge
            .audio_rtp
            .send_to(&p, sim_audio)
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(call.end.try_recv().is_err(), "ended despite keep-alives");
    assert_eq!(SimStats::get(&call.stats.rtp_from_bridge), 13);
    // Silence: the end must come within ~1 s.
    let silent_since = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(3), &mut call.end)
        .await
        .expect("MediaEnd within 3 s")
        .expect("sender alive");
    assert_eq!(end, MediaEnd::NoRtpFromBridge);
    let waited = silent_since.elapsed();
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_millis(1600),
        "{waited:?}"
    );
    // Sending stops: drain what was in flight, then nothing more.
    drain(&call.bridge.video_rtp, Duration::from_millis(300)).await;
    drain(&call.bridge.audio_rtp, Duration::from_millis(50)).await;
    assert!(
        recv(&call.bridge.video_rtp, Duration::from_millis(400))
            .await
            .is_none()
    );
    assert!(
        recv(&call.bridge.audio_rtp, Duration::from_millis(100))
            .await
            .is_none()
    );
    drop(call.session.take());
}

#[tokio::test]
async fn wrong_key_packets_count_as_auth_failures_and_do_not_keep_alive() {
    let mut call = start_call(Duration::from_secs(1)).await;
    let mut wrong = context(&SdesKey::random());
    let sim_audio = SocketAddr::new(LOCALHOST, call.bridge.sim_ports.0);
    let sim_video_rtcp = SocketAddr::new(LOCALHOST, call.bridge.sim_ports.1 + 1);
    let started = Instant::now();
    for seq in 0..4u16 {
        let p = keepalive(&mut wrong, seq);
        call.bridge
            .audio_rtp
            .send_to(&p, sim_audio)
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let pli = srtcp_pli(&mut wrong, 0);
    call.bridge
        .video_rtcp
        .send_to(&pli, sim_video_rtcp)
        .await
        .expect("send");
    call.bridge
        .audio_rtp
        .send_to(b"\x80garbage", sim_audio)
        .await
        .expect("send");
    // The right key for the wrong medium fails too (audio key on the video port).
    let mut audio_key_on_video = context(&call.bridge.bridge_audio_key);
    let p = keepalive(&mut audio_key_on_video, 1);
    let sim_video = SocketAddr::new(LOCALHOST, call.bridge.sim_ports.1);
    call.bridge
        .video_rtp
        .send_to(&p, sim_video)
        .await
        .expect("send");
    let end = tokio::time::timeout(Duration::from_secs(3), &mut call.end)
        .await
        .expect("forged packets do not keep the call alive")
        .expect("sender alive");
    assert_eq!(end, MediaEnd::NoRtpFromBridge);
    assert!(started.elapsed() < Duration::from_millis(1600));
    assert_eq!(SimStats::get(&call.stats.srtp_auth_failures), 7);
    assert_eq!(SimStats::get(&call.stats.rtp_from_bridge), 0);
    assert_eq!(SimStats::get(&call.stats.rtcp_from_bridge), 0);
    assert_eq!(SimStats::get(&call.stats.plis_received), 0);
}

#[tokio::test]
async fn sender_reports_arrive_on_rtcp_port_and_media_stopped_silences_all() {
    let call = start_call(Duration::from_secs(30)).await;
    let mut ctx = context(&call.bridge.sim_video_key);
    let raw = recv(&call.bridge.video_rtcp, Duration::from_millis(1500))
        .await
        .expect("a video SR within 1.5 s");
    let sr = ctx
        .decrypt_rtcp(&raw)
        .expect("SRTCP with the sim's video key");
    assert_eq!(sr[1], 200, "Sender Report");
    call.faults.media_stopped.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    drain(&call.bridge.video_rtp, Duration::from_millis(50)).await;
    drain(&call.bridge.audio_rtp, Duration::from_millis(50)).await;
    drain(&call.bridge.video_rtcp, Duration::from_millis(50)).await;
    assert!(
        recv(&call.bridge.video_rtp, Duration::from_millis(300))
            .await
            .is_none()
    );
    assert!(
        recv(&call.bridge.audio_rtp, Duration::from_millis(100))
            .await
            .is_none()
    );
    assert!(
        recv(&call.bridge.video_rtcp, Duration::from_millis(1200))
            .await
            .is_none()
    );
    call.faults.media_stopped.store(false, Ordering::Relaxed);
    assert!(
        recv(&call.bridge.video_rtp, Duration::from_millis(500))
            .await
            .is_some()
    );
}

#[tokio::test]
async fn loss_fault_drops_packets_with_sequence_gaps() {
    let call = start_call(Duration::from_secs(30)).await;
    call.faults.loss_percent.store(50, Ordering::Relaxed);
    let mut ctx = context(&call.bridge.sim_audio_key);
    let mut seqs = Vec::new();
    for _ in 0..25 {
        let Some(raw) = recv(&call.bridge.audio_rtp, Duration::from_secs(1)).await else {
            break;
        };
        seqs.push(
            rtp_packet(ctx.decrypt_rtp(&raw).expect("decrypts"))
                .header
                .sequence_number,
        );
    }
    let gaps = seqs
        .windows(2)
        .filter(|w| w[1] != w[0].wrapping_add(1))
        .count();
    assert!(gaps >= 3, "50% loss gave only {gaps} gaps in {seqs:?}");
}

#[tokio::test]
async fn bind_gives_even_rtp_ports_with_rtcp_next_and_stop_frees_them() {
    let bound = BoundMedia::bind(LOCALHOST).await.expect("bind");
    let ports = bound.ports;
    assert_eq!(ports.audio % 2, 0);
    assert_eq!(ports.video % 2, 0);
    assert_ne!(ports.audio, ports.video);
    for p in [ports.audio, ports.audio + 1, ports.video, ports.video + 1] {
        assert!(
            UdpSocket::bind((LOCALHOST, p)).await.is_err(),
            "port {p} is bound"
        );
    }
    let plan = MediaPlan {
        remote_ip: LOCALHOST,
        remote_audio_port: 9,
        remote_video_port: 9,
        audio_pt: AUDIO_PT,
        video_pt: VIDEO_PT,
        local_audio_key: SdesKey::random(),
        local_video_key: SdesKey::random(),
        remote_audio_key: SdesKey::random(),
        remote_video_key: SdesKey::random(),
        no_rtp_timeout: Duration::from_secs(30),
    };
    let stats = Arc::new(SimStats::default());
    let (session, _end) = MediaSession::start(bound, plan, stats, Arc::new(Faults::default()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    session.stop();
    // All tasks end promptly and drop their sockets.
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let free = UdpSocket::bind((LOCALHOST, ports.video + 1)).await.is_ok()
            && UdpSocket::bind((LOCALHOST, ports.audio)).await.is_ok();
        if free {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sockets still bound 1 s after stop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
