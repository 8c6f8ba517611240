//! The servers under load, against a bridge *process* (its file descriptors and memory are its
//! own, not the test binary's): 300 idle connections to RTSP and 300 to HTTP held 30 s while
//! ffprobe and an HLS fetch from another address still work, and the FDs come back; 150 RTSP
//! readers on one call; 200,000 forged SRTP packets during a call (video on, RSS flat).

use std::net::{SocketAddr, UdpSocket};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use c300x_bridge::sim::{SimConfig, Simulator};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::{connect_from, http};
use crate::http::stat;
use crate::rig::{eventually, ports, tcp_port};

/// `c300x-bridge run` pointed at `sim`, listening on 127.0.0.1 only (`bind_address`).
struct BridgeProcess {
    child: tokio::process::Child,
    http: SocketAddr,
    rtsp: SocketAddr,
    rtp_min: u16,
}

impl BridgeProcess {
    async fn start(sim: &Simulator, extra: &[(&str, String)]) -> Self {
        let (http_port, rtsp_port) = (tcp_port(), tcp_port());
        let (rtp_min, _) = ports(4);
        let mut sets: Vec<(&str, String)> = vec![
            ("intercom_host", "127.0.0.1".into()),
            ("intercom_sip_port", sim.sip_addr().port().to_string()),
            ("sip_domain", sim.domain().to_owned()),
            ("advertise_address", "127.0.0.1".into()),
            ("bind_address", "127.0.0.1".into()),
            ("http_port", http_port.to_string()),
            ("rtsp_port", rtsp_port.to_string()),
            ("rtp_port_min", rtp_min.to_string()),
            ("rtp_port_max", (rtp_min + 3).to_string()),
            ("linger_seconds", "1".into()),
            ("mqtt_url", String::new()),
        ];
        sets.extend(extra.iter().cloned());
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_c300x-bridge"));
        for (k, _) in std::env::vars() {
            if k.starts_with("C300X_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in &sets {
            cmd.arg("--set").arg(format!("{k}={v}"));
        }
        let child = cmd
            .arg("run")
            .env("RUST_LOG", "warn")
            // No Supervisor here: MQTT stays off.
            .env_remove("SUPERVISOR_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the bridge");
        let b = Self {
            child,
            http: SocketAddr::from(([127, 0, 0, 1], http_port)),
            rtsp: SocketAddr::from(([127, 0, 0, 1], rtsp_port)),
            rtp_min,
        };
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < end, "the bridge process did not come up");
            if TcpStream::connect(b.http).await.is_ok() {
                let s = http(b.http, "GET", "/api/status", &[], b"").await;
                if s.text().contains("\"registered\":true") {
                    return b;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count())
    }

    /// Resident memory in KiB.
    fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    async fn metric(&self, prefix: &str) -> u64 {
        let text = http(self.http, "GET", "/metrics", &[], b"").await.text();
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

/// An RTSP reader over TCP from `src`: DESCRIBE, SETUP video, PLAY; then counts video packets.
struct Reader {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Reader {
    async fn play(src: [u8; 4], addr: SocketAddr) -> Self {
        let s = connect_from(src, addr).await.expect("connect");
        let mut r = Self { s, buf: Vec::new() };
        let url = format!("rtsp://{addr}/doorbell");
        let d = r
            .request(&format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n"))
            .await;
        assert!(d.starts_with("RTSP/1.0 200"), "{d}");
        let s = r
            .request(&format!("SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"))
            .await;
        assert!(s.starts_with("RTSP/1.0 200"), "{s}");
        let session = s
            .split("\r\n")
            .find_map(|l| l.strip_prefix("Session: "))
            .and_then(|v| v.split(';').next())
            .expect("session")
            .to_owned();
        let p = r
            .request(&format!(
                "PLAY {url} RTSP/1.0\r\nCSeq: 3\r\nSession: {session}\r\n\r\n"
            ))
            .await;
        assert!(p.starts_with("RTSP/1.0 200"), "{p}");
        r
    }

    async fn request(&mut self, text: &str) -> String {
        self.s.write_all(text.as_bytes()).await.expect("write");
        loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..p]).into_owned();
                let len: usize = head
                    .split("\r\n")
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .map_or(0, |v| v.parse().expect("length"));
                if self.buf.len() >= p + 4 + len {
                    self.buf.drain(..p + 4 + len);
                    return head;
                }
            }
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout(Duration::from_secs(20), self.s.read(&mut chunk))
                .await
                .expect("answer in time")
                .expect("read");
            assert!(n > 0, "closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads interleaved frames until `until`; calls `on_video` for each RTP packet on channel 0.
    async fn read_until(&mut self, until: tokio::time::Instant, mut on_video: impl FnMut()) {
        loop {
            while self.buf.first() == Some(&b'$') && self.buf.len() >= 4 {
                let len = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
                if self.buf.len() < 4 + len {
                    break;
                }
                if self.buf[1] == 0 {
                    on_video();
                }
                self.buf.drain(..4 + len);
            }
            let mut chunk = [0u8; 65536];
            match tokio::time::timeout_at(until, self.s.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        }
    }
}

/// An HLS fetch: the playlist, then its first segment.
async fn hls_fetch(addr: SocketAddr) {
    let pl = http(addr, "GET", "/api/doorbell/hls/index.m3u8", &[], b"").await;
    assert_eq!(pl.status, 200, "{}", pl.text());
    let seg = pl
        .text()
        .lines()
        .find(|l| l.ends_with(".m4s") && !l.starts_with('#'))
        .expect("a segment")
        .to_owned();
    let s = http(addr, "GET", &format!("/api/doorbell/hls/{seg}"), &[], b"").await;
    assert_eq!(s.status, 200);
    assert!(s.body.len() > 1000, "a real segment");
}

async fn ffprobe_ok(url: &str) {
    let out = tokio::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "compact",
            url,
        ])
        .output()
        .await
        .expect("ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("h264"),
        "ffprobe: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn idle_floods_lock_nobody_out_and_the_fds_come_back() {
    let sim = Simulator::start(SimConfig::default()).await.expect("sim");
    let b = BridgeProcess::start(&sim, &[]).await;
    let baseline = b.fds();
    let holding = Arc::new(AtomicBool::new(true));
    let reconnects = Arc::new(AtomicU64::new(0));
    // 300 + 300 connections that never send a byte, from ten addresses; any the bridge closes
    // is opened again 100 ms later, for 30 s.
    let mut holders = Vec::new();
    for addr in [b.rtsp, b.http] {
        for i in 0..300u32 {
            let (holding, reconnects) = (holding.clone(), reconnects.clone());
            let src = [127, 0, 1, 10 + (i % 10) as u8];
            holders.push(tokio::spawn(async move {
                let mut s = connect_from(src, addr).await.ok();
                while holding.load(Ordering::Relaxed) {
                    // Anything read (EOF, an error, a 503) means the bridge is done with it.
                    let closed = match s.as_mut() {
                        None => true,
                        Some(c) => {
                            let mut b = [0u8; 512];
                            tokio::time::timeout(Duration::from_millis(200), c.read(&mut b))
                                .await
                                .is_ok()
                        }
                    };
                    if closed {
                        reconnects.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        s = connect_from(src, addr).await.ok();
                    }
                }
            }));
        }
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let peak_fds = b.fds();
    let mut served = 0;
    while started.elapsed() < Duration::from_secs(30) {
        ffprobe_ok(&format!("rtsp://{}/doorbell", b.rtsp)).await;
        hls_fetch(b.http).await;
        served += 1;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    holding.store(false, Ordering::Relaxed);
    for h in holders {
        let _ = h.await;
    }
    let held = started.elapsed();
    let evicted = b
        .metric("c300x_connections_closed_total{server=\"rtsp\",reason=\"evicted\"}")
        .await
        + b.metric("c300x_connections_closed_total{server=\"http\",reason=\"evicted\"}")
            .await;
    let timed_out = b
        .metric("c300x_connections_closed_total{server=\"rtsp\",reason=\"first_request_timeout\"}")
        .await
        + b.metric(
            "c300x_connections_closed_total{server=\"http\",reason=\"first_request_timeout\"}",
        )
        .await;
    let refused = b.metric("c300x_connections_refused_total").await;
    eprintln!(
        "idle flood: 600 connections held {:.0} s, {} re-opened; bridge FDs {baseline} → {peak_fds} at peak; \
         {served} rounds of ffprobe + HLS fetch all served; evicted {evicted}, closed at 5 s {timed_out}, refused {refused}",
        held.as_secs_f64(),
        reconnects.load(Ordering::Relaxed)
    );
    assert!(served >= 5);
    assert!(
        evicted + timed_out > 300,
        "the idle connections were closed by the bridge"
    );
    let fds = || b.fds();
    eventually(
        "the bridge's FDs back at the baseline",
        Duration::from_secs(30),
        || fds() <= baseline,
    )
    .await;
    // The last reader's call ends after the linger.
    eventually("no call left", Duration::from_secs(30), || {
        stat(&sim, |s| &s.active_calls) == 0
    })
    .await;
}

#[tokio::test]
async fn a_hundred_and_fifty_rtsp_readers_share_one_call() {
    let sim = Simulator::start(SimConfig::default()).await.expect("sim");
    let b = BridgeProcess::start(&sim, &[]).await;
    let mut readers = Vec::new();
    for i in 0..150u32 {
        let addr = b.rtsp;
        // Five addresses of thirty readers each (under the per-address cap of 64).
        let src = [127, 0, 2, 10 + (i % 5) as u8];
        readers.push(tokio::spawn(async move {
            let mut r = Reader::play(src, addr).await;
            let mut packets = 0u32;
            let end = tokio::time::Instant::now() + Duration::from_secs(60);
            while packets < 60 && tokio::time::Instant::now() < end {
                r.read_until(
                    tokio::time::Instant::now() + Duration::from_millis(500),
                    || packets += 1,
                )
                .await;
            }
            (packets, r)
        }));
    }
    let mut served = 0;
    let mut held = Vec::new();
    for r in readers {
        let (packets, reader) = r.await.expect("reader");
        if packets >= 60 {
            served += 1;
        }
        held.push(reader);
    }
    let viewers = b
        .metric("c300x_viewers{panel=\"doorbell\",output=\"rtsp\"}")
        .await;
    eprintln!(
        "rtsp: {served} of 150 readers got 60+ video packets; {viewers} RTSP viewers at once; INVITEs {}",
        stat(&sim, |s| &s.invites_received)
    );
    assert_eq!(served, 150);
    assert_eq!(viewers, 150);
    assert_eq!(stat(&sim, |s| &s.invites_received), 1, "one call for all");
}

#[tokio::test]
async fn forged_srtp_flood_leaves_the_video_on_and_memory_flat() {
    let sim = Simulator::start(SimConfig::default()).await.expect("sim");
    let b = BridgeProcess::start(&sim, &[]).await;
    let mut reader = Reader::play([127, 0, 0, 1], b.rtsp).await;
    // Warm up: the call runs and the reader plays.
    let mut warm = 0;
    reader
        .read_until(tokio::time::Instant::now() + Duration::from_secs(3), || {
            warm += 1
        })
        .await;
    assert!(warm > 30, "video before the flood: {warm}");
    let rss_before = b.rss_kib();
    let failures_before = b.metric("c300x_srtp_auth_failures_total").await;
    let frames_before = b.metric("c300x_frames_in_total").await;
    let dropped_before = b.metric("c300x_frames_dropped_total").await;
    let plis_before = stat(&sim, |s| &s.plis_received);
    // 200,000 packets with random SSRCs, sequence numbers and tags on the call's four ports,
    // paced at ~40,000/s so the bridge, not the kernel, sees them.
    let ports: Vec<u16> = (b.rtp_min..b.rtp_min + 4).collect();
    let sender = std::thread::spawn(move || {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut sent = 0u32;
        let start = Instant::now();
        while sent < 200_000 {
            let mut pkt = [0u8; 180];
            for chunk in pkt.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
            }
            let port = ports[(sent % 4) as usize];
            if port.is_multiple_of(2) {
                pkt[0] = 0x80; // RTP v2
                pkt[1] = 96;
            } else {
                pkt[0] = 0x81; // RTCP RR, E flag set
                pkt[1] = 201;
                pkt[180 - 14] |= 0x80;
            }
            let _ = sock.send_to(&pkt, ("127.0.0.1", port));
            sent += 1;
            if sent.is_multiple_of(2000) {
                let due = Duration::from_secs_f64(f64::from(sent) / 40_000.0);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        start.elapsed()
    });
    // The reader counts video packets per 500 ms while the flood runs (printed: on a machine
    // busy enough to stall a process, a bucket may be late, which is not a loss).
    let mut buckets = Vec::new();
    while !sender.is_finished() {
        let mut n = 0;
        reader
            .read_until(
                tokio::time::Instant::now() + Duration::from_millis(500),
                || n += 1,
            )
            .await;
        buckets.push(n);
    }
    let took = sender.join().expect("sender");
    let mut after = 0;
    reader
        .read_until(tokio::time::Instant::now() + Duration::from_secs(1), || {
            after += 1
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = b.rss_kib();
    let failures = b.metric("c300x_srtp_auth_failures_total").await - failures_before;
    let frames = b.metric("c300x_frames_in_total").await - frames_before;
    let dropped = b.metric("c300x_frames_dropped_total").await - dropped_before;
    // A lost video packet makes the bridge wait for a keyframe and ask the unit for one.
    let plis = stat(&sim, |s| &s.plis_received) - plis_before;
    eprintln!(
        "SRTP flood: 200000 forged packets in {:.1} s, {failures} reached the bridge and failed authentication; \
         RSS {rss_before} KiB → {rss_after} KiB ({:+} KiB); video packets per 500 ms during the flood: {buckets:?}; \
         {frames} frames in, {dropped} dropped for the reader, {plis} PLIs",
        took.as_secs_f64(),
        rss_after as i64 - rss_before as i64
    );
    assert_eq!(plis, 0, "no video lost: the picture never broke");
    assert_eq!(dropped, 0, "the reader got every frame");
    assert!(frames > 0 && buckets.iter().sum::<u32>() > 0 && after > 0);
    assert_eq!(stat(&sim, |s| &s.invites_received), 1, "no call restart");
    assert!(
        failures > 100_000,
        "the flood reached the bridge: {failures}"
    );
    assert!(
        rss_after < rss_before + 2048,
        "RSS grew {} KiB",
        rss_after as i64 - rss_before as i64
    );
}
