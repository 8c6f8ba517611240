//! The bridge's call media (intercom::media) against the simulator's media (sim::media) on
//! 127.0.0.1, no SIP: SRTP both ways with the §4.3 key rules, H.264/Speex arrival, PLI → IDR,
//! keep-alive beating the no-RTP timer, wrong keys, garbage, and the port pool.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use c300x_bridge::intercom::media::{
    CallMedia, CallSockets, MediaError, MediaKind, MediaPacket, PortPool, RemoteEndpoint,
};
use c300x_bridge::proto::srtp::SdesKey;
use c300x_bridge::sim::media::{BoundMedia, MediaEnd, MediaPlan, MediaSession};
use c300x_bridge::sim::stats::{Faults, SimStats};
use tokio::sync::{mpsc, oneshot};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const AUDIO_PT: u8 = 110;
const VIDEO_PT: u8 = 96;

/// `pairs` free even/odd port pairs, from the rig's allocator.
fn free_range(pairs: u16) -> (u16, u16) {
    crate::rig::ports(2 * pairs)
}

struct Call {
    media: Option<CallMedia>,
    packets: mpsc::Receiver<MediaPacket>,
    sim: Option<MediaSession>,
    end: oneshot::Receiver<MediaEnd>,
    stats: Arc<SimStats>,
    faults: Arc<Faults>,
}

struct Keys {
    sim_audio: SdesKey,
    sim_video: SdesKey,
    ours_audio: SdesKey,
    ours_video: SdesKey,
}

impl Keys {
    fn random() -> Self {
        Self {
            sim_audio: SdesKey::random(),
            sim_video: SdesKey::random(),
            ours_audio: SdesKey::random(),
            ours_video: SdesKey::random(),
        }
    }
}

/// Binds our sockets from a pool, starts the simulator toward them, then our media.
/// `rx_audio_key` overrides the key we decrypt the simulator's audio with.
async fn start_call(no_rtp_timeout: Duration, rx_audio_key: Option<SdesKey>, queue: usize) -> Call {
    start_call_with(no_rtp_timeout, rx_audio_key, queue, Faults::default()).await
}

async fn start_call_with(
    no_rtp_timeout: Duration,
    rx_audio_key: Option<SdesKey>,
    queue: usize,
    faults: Faults,
) -> Call {
    let (min, max) = free_range(4);
    let pool = PortPool::new(min, max);
    let sockets = CallSockets::bind(LOCALHOST, &pool).expect("bind call sockets");
    let keys = Keys::random();
    let bound = BoundMedia::bind(LOCALHOST).await.expect("sim bind");
    let sim_ports = bound.ports;
    let plan = MediaPlan {
        remote_ip: LOCALHOST,
        remote_audio_port: sockets.audio_port(),
        remote_video_port: sockets.video_port(),
        audio_pt: AUDIO_PT,
        video_pt: VIDEO_PT,
        local_audio_key: keys.sim_audio.clone(),
        local_video_key: keys.sim_video.clone(),
        remote_audio_key: keys.ours_audio.clone(),
        remote_video_key: keys.ours_video.clone(),
        no_rtp_timeout,
    };
    let remote = RemoteEndpoint {
        ip: LOCALHOST,
        audio_rtp: sim_ports.audio,
        audio_rtcp: sim_ports.audio + 1,
        video_rtp: sim_ports.video,
        video_rtcp: sim_ports.video + 1,
        audio_pt: AUDIO_PT,
        video_pt: VIDEO_PT,
        audio_rx_key: rx_audio_key.unwrap_or(keys.sim_audio),
        video_rx_key: keys.sim_video,
        audio_tx_key: keys.ours_audio,
        video_tx_key: keys.ours_video,
    };
    let (tx, packets) = mpsc::channel(queue);
    let media = CallMedia::start(sockets, remote, tx).expect("start call media");
    let stats = Arc::new(SimStats::default());
    let faults = Arc::new(faults);
    let (sim, end) = MediaSession::start(bound, plan, stats.clone(), faults.clone());
    Call {
        media: Some(media),
        packets,
        sim: Some(sim),
        end,
        stats,
        faults,
    }
}

impl Call {
    fn media(&self) -> &CallMedia {
        self.media.as_ref().expect("media running")
    }

    /// Receives packets until `done` says so or `wait` passes; returns what arrived.
    async fn collect(
        &mut self,
        wait: Duration,
        mut done: impl FnMut(&[MediaPacket]) -> bool,
    ) -> Vec<MediaPacket> {
        let until = tokio::time::Instant::now() + wait;
        let mut got = Vec::new();
        while let Ok(Some(p)) = tokio::time::timeout_at(until, self.packets.recv()).await {
            got.push(p);
            if done(&got) {
                break;
            }
        }
        got
    }
}

/// NAL types of a video payload: single NAL, each NAL of a STAP-A, FU-A start type.
fn nal_types(payload: &[u8]) -> Vec<u8> {
    match payload.first().map(|b| b & 0x1f) {
        Some(24) => {
            let mut out = Vec::new();
            let mut rest = &payload[1..];
            while rest.len() >= 3 {
                let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                if rest.len() < 2 + n || n == 0 {
                    break;
                }
                out.push(rest[2] & 0x1f);
                rest = &rest[2 + n..];
            }
            out
        }
        Some(28) if payload.len() > 1 && payload[1] & 0x80 != 0 => vec![payload[1] & 0x1f],
        Some(28) | None => vec![],
        Some(t) => vec![t],
    }
}

fn has_types(packets: &[MediaPacket], want: &[u8]) -> bool {
    want.iter().all(|t| {
        packets
            .iter()
            .filter(|p| p.kind == MediaKind::Video)
            .any(|p| nal_types(&p.payload).contains(t))
    })
}

#[tokio::test]
async fn h264_and_speex_arrive_decrypted_in_order() {
    let mut call = start_call(Duration::from_secs(30), None, 1024).await;
    let started = Instant::now();
    let got = call
        .collect(Duration::from_secs(5), |g| {
            has_types(g, &[7, 8, 5]) && g.iter().filter(|p| p.kind == MediaKind::Audio).count() > 10
        })
        .await;
    assert!(has_types(&got, &[7, 8, 5]), "SPS, PPS and IDR within 5 s");
    let first_idr = started.elapsed();
    println!("SPS+PPS+IDR and audio after {first_idr:?}");
    // The call's own first IDR came within the grace: no PLI (which made the encoder restart
    // with a second IDR right behind the first).
    if first_idr < Duration::from_millis(300) {
        assert_eq!(SimStats::get(&call.stats.plis_received), 0, "no PLI needed");
    }
    let audio: Vec<_> = got.iter().filter(|p| p.kind == MediaKind::Audio).collect();
    let video: Vec<_> = got.iter().filter(|p| p.kind == MediaKind::Video).collect();
    assert!(audio.len() > 10, "audio packets: {}", audio.len());
    assert!(audio.iter().all(|p| p.payload_type == AUDIO_PT));
    assert!(video.iter().all(|p| p.payload_type == VIDEO_PT));
    for w in audio.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "in order, no loss");
        assert_eq!(w[1].timestamp.wrapping_sub(w[0].timestamp), 160);
    }
    for w in video.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
    }
    let stats = call.media().stats();
    assert_eq!(stats.video_ssrc, Some(video[0].ssrc));
    assert_eq!(stats.srtp_failures(), 0);
    assert!(stats.last_packet_at.is_some());
    assert!(stats.keyframes_seen >= 1);
    assert_eq!(stats.queue_drops(), 0);
}

#[tokio::test]
async fn pli_when_no_keyframe_came_in_time_and_on_request_brings_an_idr() {
    // The unit sends nothing at first: after the grace for the first keyframe (400 ms) the
    // bridge asks for one, and again every 500 ms while none comes.
    let stopped = Faults::default();
    stopped.media_stopped.store(true, Ordering::SeqCst);
    let mut call = start_call_with(Duration::from_secs(30), None, 1024, stopped).await;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(2);
    while SimStats::get(&call.stats.plis_received) == 0 {
        assert!(Instant::now() < deadline, "no PLI within 2 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "the first PLI waits for the grace: {:?}",
        started.elapsed()
    );
    call.faults.media_stopped.store(false, Ordering::SeqCst);
    let first = call
        .collect(Duration::from_secs(3), |g| has_types(g, &[5]))
        .await;
    assert!(has_types(&first, &[5]), "IDR after the PLI");
    // Once the IDR arrived, the PLI repeat stops (no PLI storm).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let plis_before = SimStats::get(&call.stats.plis_received);
    let ours_before = call.media().stats().plis_sent;
    assert!(plis_before <= 4, "PLIs kept repeating: {plis_before}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(SimStats::get(&call.stats.plis_received), plis_before);
    let idrs_before = SimStats::get(&call.stats.idrs_sent);
    // Drain what is queued, then ask for a keyframe.
    while call.packets.try_recv().is_ok() {}
    let asked = Instant::now();
    call.media().request_keyframe();
    let after = call
        .collect(Duration::from_millis(1500), |g| has_types(g, &[5]))
        .await;
    assert!(has_types(&after, &[7, 8, 5]), "SPS+PPS+IDR after request");
    println!("request_keyframe → IDR in {:?}", asked.elapsed());
    assert!(SimStats::get(&call.stats.plis_received) > plis_before);
    assert!(SimStats::get(&call.stats.idrs_sent) > idrs_before);
    assert!(call.media().stats().plis_sent > ours_before);
    assert_eq!(SimStats::get(&call.stats.srtp_auth_failures), 0);
}

#[tokio::test]
async fn keepalive_outlives_the_no_rtp_timeout() {
    let mut call = start_call(Duration::from_secs(1), None, 4096).await;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        call.end.try_recv().is_err(),
        "simulator hung up despite keep-alive"
    );
    let rtp = SimStats::get(&call.stats.rtp_from_bridge);
    let rtcp = SimStats::get(&call.stats.rtcp_from_bridge);
    let secs = t0.elapsed().as_secs_f64();
    println!("keep-alive over {secs:.1} s: {rtp} SRTP, {rtcp} SRTCP at the simulator");
    assert!(rtp >= 120, "silence every 20 ms: {rtp}");
    assert!(rtcp >= 6, "RR every 1 s on both streams: {rtcp}");
    assert_eq!(SimStats::get(&call.stats.srtp_auth_failures), 0);
    let s = call.media().stats();
    println!(
        "received: audio {} pkts / {} B, video {} pkts / {} B ({:.0} pkt/s total)",
        s.audio.packets,
        s.audio.bytes,
        s.video.packets,
        s.video.bytes,
        (s.audio.packets + s.video.packets) as f64 / secs
    );
    assert!(
        s.audio.rtcp_packets >= 2 && s.video.rtcp_packets >= 2,
        "SRs decrypted"
    );
    // Keep the queue drained is not required: a full queue drops, counted, never blocks.
    drop(call.sim.take());
    call.packets.close();
}

#[tokio::test]
async fn wrong_key_and_garbage_are_counted_and_dropped() {
    let mut call = start_call(Duration::from_secs(30), Some(SdesKey::random()), 4096).await;
    let media = call.media();
    let (audio_port, video_port) = (media.audio_port(), media.video_port());
    let junk = UdpSocket::bind((LOCALHOST, 0)).expect("bind");
    let mut x: u32 = 7;
    for len in 0..300usize {
        let bytes: Vec<u8> = (0..len % 90)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect();
        for port in [audio_port, audio_port + 1, video_port, video_port + 1] {
            let _ = junk.send_to(&bytes, SocketAddr::new(LOCALHOST, port));
        }
    }
    let got = call
        .collect(Duration::from_secs(2), |g| has_types(g, &[5]))
        .await;
    assert!(has_types(&got, &[5]), "video still flows");
    assert!(
        got.iter().all(|p| p.kind == MediaKind::Video),
        "no audio with the wrong key"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = call.media().stats();
    println!("wrong key/garbage: {s:?}");
    assert_eq!(s.audio.packets, 0);
    assert!(
        s.audio.srtp_failures >= 10,
        "audio failures {}",
        s.audio.srtp_failures
    );
    assert!(
        s.video.srtp_failures >= 200,
        "garbage counted: {}",
        s.video.srtp_failures
    );
    assert!(s.video.packets > 0);
}

#[tokio::test]
async fn full_queue_drops_and_counts_without_blocking() {
    let mut call = start_call(Duration::from_secs(1), None, 2).await;
    // Nobody reads `packets`: the tasks must keep receiving and sending keep-alive.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        call.end.try_recv().is_err(),
        "keep-alive blocked by a full queue"
    );
    let s = call.media().stats();
    assert!(s.queue_drops() > 20, "drops {}", s.queue_drops());
    assert_eq!(s.audio.forwarded + s.video.forwarded, 2);
    drop(call.packets);
}

#[test]
fn pool_exhaustion_names_the_config_keys() {
    let (min, max) = free_range(2);
    let pool = PortPool::new(min, max);
    let first = CallSockets::bind(LOCALHOST, &pool).expect("one call fits");
    assert_eq!(first.audio_port() % 2, 0);
    assert_eq!(first.video_port() % 2, 0);
    assert_ne!(first.audio_port(), first.video_port());
    let err = CallSockets::bind(LOCALHOST, &pool).expect_err("pool is full");
    let msg = err.to_string();
    println!("{msg}");
    assert!(matches!(err, MediaError::PortsExhausted { in_use: 2, .. }));
    assert!(
        msg.contains("rtp_port_min") && msg.contains("rtp_port_max"),
        "{msg}"
    );
    assert!(msg.contains(&format!("{min}..={max}")), "{msg}");
    // Dropping the unused sockets frees the ports.
    drop(first);
    assert_eq!(pool.pairs_in_use(), 0);
    CallSockets::bind(LOCALHOST, &pool).expect("free again");
}

#[test]
fn pool_skips_ports_held_by_other_programs() {
    let (min, max) = free_range(3);
    let squatter = UdpSocket::bind((LOCALHOST, min + 1)).expect("squat on an RTCP port");
    let pool = PortPool::new(min, max);
    let s = CallSockets::bind(LOCALHOST, &pool).expect("two free pairs remain");
    assert_eq!((s.audio_port(), s.video_port()), (min + 2, min + 4));
    let err = CallSockets::bind(LOCALHOST, &pool).expect_err("full");
    assert!(
        matches!(
            err,
            MediaError::PortsExhausted {
                busy_elsewhere: 1,
                ..
            }
        ),
        "{err}"
    );
    drop(squatter);
}

#[tokio::test]
async fn ports_are_reusable_after_stop() {
    let (min, max) = free_range(2);
    let pool = PortPool::new(min, max);
    let remote = RemoteEndpoint {
        ip: LOCALHOST,
        audio_rtp: 9,
        audio_rtcp: 10,
        video_rtp: 9,
        video_rtcp: 10,
        audio_pt: AUDIO_PT,
        video_pt: VIDEO_PT,
        audio_rx_key: SdesKey::random(),
        video_rx_key: SdesKey::random(),
        audio_tx_key: SdesKey::random(),
        video_tx_key: SdesKey::random(),
    };
    for round in 0..3 {
        let sockets = CallSockets::bind(LOCALHOST, &pool).expect("ports free");
        let (tx, _rx) = mpsc::channel(8);
        let media = CallMedia::start(sockets, remote.clone(), tx).expect("start");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(CallSockets::bind(LOCALHOST, &pool).is_err());
        if round == 0 {
            media.shutdown().await;
        } else {
            // `stop` (and Drop) free the ports a moment later.
            media.stop();
            let deadline = Instant::now() + Duration::from_secs(1);
            while pool.pairs_in_use() > 0 {
                assert!(Instant::now() < deadline, "ports not freed 1 s after stop");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        assert_eq!(pool.pairs_in_use(), 0);
        for p in min..=max {
            UdpSocket::bind((LOCALHOST, p)).expect("port closed");
        }
    }
}

/// Process CPU time (user + system) from /proc/self/stat, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Receive throughput of one call (run alone: `cargo test --test it receive_throughput -- --ignored
/// --nocapture`). The sender's SRTP protection runs in the same process, so CPU is an upper bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run alone"]
async fn receive_throughput() {
    use c300x_bridge::proto::rtp::RtpHeader;
    use c300x_bridge::proto::srtp::SrtpSession;
    let (min, max) = free_range(2);
    let pool = PortPool::new(min, max);
    let sockets = CallSockets::bind(LOCALHOST, &pool).expect("bind");
    let video_port = sockets.video_port();
    let key = SdesKey::random();
    let sink = UdpSocket::bind((LOCALHOST, 0)).expect("sink");
    let sink_port = sink.local_addr().expect("addr").port();
    let remote = RemoteEndpoint {
        ip: LOCALHOST,
        audio_rtp: sink_port,
        audio_rtcp: sink_port,
        video_rtp: sink_port,
        video_rtcp: sink_port,
        audio_pt: AUDIO_PT,
        video_pt: VIDEO_PT,
        audio_rx_key: SdesKey::random(),
        video_rx_key: key.clone(),
        audio_tx_key: SdesKey::random(),
        video_tx_key: SdesKey::random(),
    };
    let (tx, mut rx) = mpsc::channel(4096);
    let media = CallMedia::start(sockets, remote, tx).expect("start");
    let mut srtp = SrtpSession::new(&key).expect("ctx");
    let packets: Vec<_> = (0..20_000u32)
        .map(|i| {
            let h = RtpHeader {
                marker: i % 10 == 9,
                payload_type: VIDEO_PT,
                sequence: i as u16,
                timestamp: (i / 10) * 9000,
                ssrc: 0x5eed,
            };
            srtp.protect_rtp(&h.to_packet(&[0x41; 1200]))
                .expect("protect")
        })
        .collect();
    let sender = UdpSocket::bind((LOCALHOST, 0)).expect("sender");
    let dest = SocketAddr::new(LOCALHOST, video_port);
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    for batch in packets.chunks(64) {
        for p in batch {
            sender.send_to(p, dest).expect("send");
        }
        // Wait for the batch (or give up on loopback drops after 200 ms).
        for _ in batch {
            if tokio::time::timeout(Duration::from_millis(200), rx.recv())
                .await
                .is_err()
            {
                break;
            }
        }
    }
    let (cpu, secs) = (cpu_seconds() - cpu0, t0.elapsed().as_secs_f64());
    let s = media.stats();
    println!(
        "{} packets of 1200 B in {secs:.2} s = {:.0} pkt/s ({:.0} Mbit/s); CPU {cpu:.2} s = {:.1} µs/packet \
         (send+protect+receive+unprotect); at 150 pkt/s ≈ {:.2}% of one core; lost {}",
        s.video.forwarded,
        s.video.forwarded as f64 / secs,
        s.video.bytes as f64 * 8.0 / secs / 1e6,
        cpu * 1e6 / s.video.forwarded.max(1) as f64,
        cpu / s.video.forwarded.max(1) as f64 * 150.0 * 100.0,
        s.video.lost,
    );
    assert!(s.video.forwarded > 19_000, "{s:?}");
}
