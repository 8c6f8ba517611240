//! Real clients against `run(listener, …)` and the simulator: MJPEG parts, live and cached
//! snapshots, ffprobe on the HLS playlist (h264 400x288 + aac), an LL-HLS blocking reload, and
//! headless Chromium playing the status page. Each ends with the call gone once clients leave.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use c300x_bridge::media::hub::ViewerKind;
use c300x_bridge::servers::http::{HttpState, run};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::{eventually, jpeg_size, rig, stat};

pub(super) async fn serve(state: HttpState, stop: CancellationToken) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(run(listener, state, Default::default(), stop));
    addr
}

/// A minimal HTTP/1.1 GET: status, headers, then the body read by length, chunks or to EOF.
pub(super) struct Response {
    pub(super) status: u16,
    headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    chunked: bool,
    left: Option<usize>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The next piece of body, `None` at its end.
    async fn next(&mut self) -> Option<Vec<u8>> {
        if self.chunked {
            let mut line = String::new();
            self.reader.read_line(&mut line).await.ok()?;
            let size = usize::from_str_radix(line.trim(), 16).ok()?;
            if size == 0 {
                return None;
            }
            let mut buf = vec![0; size + 2];
            self.reader.read_exact(&mut buf).await.ok()?;
            buf.truncate(size);
            return Some(buf);
        }
        let mut buf = vec![0; 64 * 1024];
        let want = self.left.map_or(buf.len(), |l| l.min(buf.len()));
        if want == 0 {
            return None;
        }
        let n = self.reader.read(&mut buf[..want]).await.ok()?;
        if n == 0 {
            return None;
        }
        self.left = self.left.map(|l| l - n);
        buf.truncate(n);
        Some(buf)
    }

    pub(super) async fn body(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(piece) = self.next().await {
            out.extend_from_slice(&piece);
        }
        out
    }
}

pub(super) async fn http_get(addr: SocketAddr, path: &str) -> Response {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.expect("send");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await.expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.expect("header");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut resp = Response {
        status,
        headers,
        reader,
        chunked: false,
        left: None,
    };
    resp.chunked = resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    resp.left = resp.header("content-length").and_then(|v| v.parse().ok());
    resp
}

/// CPU seconds this process used so far (user + system), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Splits complete multipart parts off `buf`; returns their bodies.
fn take_parts(buf: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    while let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        assert!(head.starts_with("--frame\r\n"), "part head: {head:?}");
        assert!(head.contains("Content-Type: image/jpeg"));
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.trim().parse().ok())
            .expect("Content-Length");
        let start = head_end + 4;
        if buf.len() < start + len + 2 {
            break;
        }
        parts.push(buf[start..start + len].to_vec());
        assert_eq!(&buf[start + len..start + len + 2], b"\r\n");
        buf.drain(..start + len + 2);
    }
    parts
}

/// `mjpeg_fps` caps the stream: at 2 fps a 10 fps camera gives about 2 parts a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mjpeg_fps_option_caps_the_rate() {
    let mut rig = rig(None, None).await;
    Arc::make_mut(&mut rig.state.config).mjpeg_fps = 2;
    let addr = serve(rig.state.clone(), rig.stop.clone()).await;
    let mut resp = http_get(addr, "/api/doorbell/mjpeg").await;
    assert_eq!(resp.status, 200);
    let (mut buf, mut parts) = (Vec::new(), 0usize);
    // Wait for the first part, then count for 3 s.
    while parts == 0 {
        let piece = tokio::time::timeout(Duration::from_secs(10), resp.next())
            .await
            .expect("first part")
            .expect("open");
        buf.extend_from_slice(&piece);
        parts += take_parts(&mut buf).len();
    }
    let (start, mut counted) = (Instant::now(), 0usize);
    while start.elapsed() < Duration::from_secs(3) {
        if let Ok(Some(piece)) = tokio::time::timeout(Duration::from_millis(500), resp.next()).await
        {
            buf.extend_from_slice(&piece);
            counted += take_parts(&mut buf).len();
        }
    }
    assert!(
        (4..=8).contains(&counted),
        "{counted} parts in 3 s at mjpeg_fps 2"
    );
    rig.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mjpeg_streams_400x288_jpegs_and_the_call_ends_when_it_closes() {
    let rig = rig(None, None).await;
    let addr = serve(rig.state.clone(), rig.stop.clone()).await;
    let t0 = Instant::now();
    let mut resp = http_get(addr, "/api/doorbell/mjpeg").await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("multipart/x-mixed-replace; boundary=frame")
    );
    let mut buf = Vec::new();
    let mut parts = Vec::new();
    let mut first_part = None;
    let cpu0 = cpu_seconds();
    let w0 = Instant::now();
    while parts.len() < 20 {
        let piece = tokio::time::timeout(Duration::from_secs(10), resp.next())
            .await
            .expect("MJPEG keeps coming")
            .expect("MJPEG body open");
        buf.extend_from_slice(&piece);
        parts.extend(take_parts(&mut buf));
        if first_part.is_none() && !parts.is_empty() {
            first_part = Some(t0.elapsed());
        }
    }
    let mjpeg_cpu = (cpu_seconds() - cpu0) / w0.elapsed().as_secs_f64();
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(jpeg_size(p), Some((400, 288)), "part {i}");
    }
    assert_eq!(stat(&rig.sim, |s| &s.invites_received), 1);
    // Baseline: the same process with one plain viewer and no MJPEG client.
    drop(resp);
    let viewer = rig.state.hubs[0]
        .join(ViewerKind::Other)
        .await
        .expect("join");
    eventually("the MJPEG feed stops", Duration::from_secs(5), || {
        rig.state.hubs[0].status().viewers == 1
    })
    .await;
    let (cpu0, w0) = (cpu_seconds(), Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let base_cpu = (cpu_seconds() - cpu0) / w0.elapsed().as_secs_f64();
    drop(viewer);
    eprintln!(
        "MJPEG: first part after {:?}; process CPU {:.1}% with MJPEG vs {:.1}% without (400x288, 10 fps)",
        first_part.unwrap_or_default(),
        mjpeg_cpu * 100.0,
        base_cpu * 100.0
    );
    eventually("BYE after the last client", Duration::from_secs(10), || {
        stat(&rig.sim, |s| &s.active_calls) == 0
    })
    .await;
    rig.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_snapshot_is_a_real_frame_then_cached_without_a_call() {
    let rig = rig(None, None).await;
    let addr = serve(rig.state.clone(), rig.stop.clone()).await;
    let mut resp = http_get(addr, "/api/doorbell/snapshot.jpg?live=1").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-snapshot-source"), Some("live"));
    let jpeg = resp.body().await;
    assert_eq!(jpeg_size(&jpeg), Some((400, 288)));
    assert_eq!(stat(&rig.sim, |s| &s.invites_received), 1);
    eventually(
        "BYE after the live snapshot",
        Duration::from_secs(10),
        || stat(&rig.sim, |s| &s.active_calls) == 0,
    )
    .await;
    // Afterwards: the last keyframe of that call, with its age, and no new call.
    let mut resp = http_get(addr, "/api/doorbell/snapshot.jpg").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-snapshot-source"), Some("keyframe"));
    let age: f64 = resp
        .header("x-snapshot-age")
        .and_then(|v| v.parse().ok())
        .expect("age header");
    assert!((0.0..60.0).contains(&age), "age {age}");
    assert_eq!(jpeg_size(&resp.body().await), Some((400, 288)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stat(&rig.sim, |s| &s.invites_received), 1, "no second call");
    rig.stop.cancel();
}

async fn ffprobe(url: &str) -> serde_json::Value {
    let out = tokio::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_streams", "-of", "json", url])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(40), out)
        .await
        .expect("ffprobe in time")
        .expect("ffprobe runs (apt install ffmpeg)");
    assert!(
        out.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ffprobe JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_ffprobe_sees_h264_400x288_and_aac_with_ll_hls_blocking_reload() {
    let rig = rig(None, None).await;
    let addr = serve(rig.state.clone(), rig.stop.clone()).await;
    let t0 = Instant::now();
    let mut resp = http_get(addr, "/api/doorbell/hls/index.m3u8").await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    let playlist = String::from_utf8(resp.body().await).expect("utf-8");
    let first_playlist = t0.elapsed();
    for tag in [
        "#EXT-X-MAP:URI=\"init.mp4\"",
        "#EXT-X-PART:",
        "#EXT-X-PRELOAD-HINT:TYPE=PART",
        "CAN-BLOCK-RELOAD=YES",
        "#EXTINF:",
    ] {
        assert!(playlist.contains(tag), "{tag} in\n{playlist}");
    }
    // Blocking reload: ask for the first part of the segment after the newest complete one.
    let newest = playlist
        .lines()
        .filter_map(|l| {
            l.strip_prefix("seg")?
                .strip_suffix(".m4s")?
                .parse::<u64>()
                .ok()
        })
        .max()
        .expect("a segment");
    let t1 = Instant::now();
    let next = newest + 2;
    let mut resp = http_get(
        addr,
        &format!("/api/doorbell/hls/index.m3u8?_HLS_msn={next}&_HLS_part=0"),
    )
    .await;
    let reloaded = String::from_utf8(resp.body().await).expect("utf-8");
    assert_eq!(resp.status, 200);
    assert!(
        reloaded.contains(&format!("part{next}.0.m4s")),
        "blocked until part {next}.0:\n{reloaded}"
    );
    let blocked = t1.elapsed();
    let mut part = http_get(addr, &format!("/api/doorbell/hls/part{next}.0.m4s")).await;
    assert_eq!(part.status, 200);
    assert!(part.body().await.windows(4).any(|w| w == b"moof"));

    let url = format!("http://{addr}/api/doorbell/hls/index.m3u8");
    let probe = ffprobe(&url).await;
    let streams = probe["streams"].as_array().expect("streams");
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .expect("video stream");
    assert_eq!(video["codec_name"], "h264");
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(400), Some(288))
    );
    let audio = streams
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .expect("audio stream");
    assert_eq!(audio["codec_name"], "aac");
    assert_eq!(
        stat(&rig.sim, |s| &s.invites_received),
        1,
        "one call for all of it"
    );
    eprintln!(
        "HLS: first playlist (one whole segment) after {first_playlist:?}; blocking reload held {blocked:?}"
    );
    // No more requests: the session times out (2 x target), then the hub lingers, then BYE.
    let t2 = Instant::now();
    eventually(
        "BYE after the HLS session idles out",
        Duration::from_secs(20),
        || stat(&rig.sim, |s| &s.active_calls) == 0,
    )
    .await;
    eprintln!("HLS: call ended {:?} after the last request", t2.elapsed());
    rig.stop.cancel();
}

/// `node tests/browser/<script> http://<addr>/`, killed with the test; the caller adds the rest.
pub(crate) fn browser_script(
    dir: &Path,
    script: &str,
    addr: std::net::SocketAddr,
) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("node");
    c.arg(dir.join(script))
        .arg(format!("http://{addr}/"))
        .kill_on_drop(true);
    c
}

/// Runs a browser script to its end (at most 90 s).
pub(crate) async fn browser_output(c: &mut tokio::process::Command) -> std::process::Output {
    tokio::time::timeout(Duration::from_secs(90), c.output())
        .await
        .expect("browser in time")
        .expect("node runs")
}

/// tests/browser with its node modules installed (`npm ci` once), after checking that Debian's
/// Chromium is there: the folder the browser tests run their scripts in.
pub(crate) async fn browser_ready() -> PathBuf {
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "Debian's chromium is needed: scripts/setup-debian.sh installs it"
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !dir.join("node_modules/playwright-core").exists() {
        let status = tokio::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .await
            .expect("npm runs");
        assert!(status.success(), "npm ci in tests/browser");
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_the_status_page_live_view() {
    let dir = browser_ready().await;
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifact dir");
    let shot = artifacts.join("status-page-live.png");
    let rig = rig(None, None).await;
    let addr = serve(rig.state.clone(), rig.stop.clone()).await;
    let t0 = Instant::now();
    let out = browser_output(
        browser_script(&dir, "play.mjs", addr)
            .arg(&shot)
            .arg("45000"),
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "chromium after {:?}: {stdout}{}",
        t0.elapsed(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "play.mjs failed");
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).expect("play.mjs JSON");
    assert!(seen["currentTime"].as_f64().unwrap_or(0.0) > 2.0, "{seen}");
    assert_eq!(seen["videoWidth"], 400, "{seen}");
    assert!(shot.exists(), "screenshot saved");
    eventually(
        "BYE after the browser closed",
        Duration::from_secs(20),
        || stat(&rig.sim, |s| &s.active_calls) == 0,
    )
    .await;
    rig.stop.cancel();
}
