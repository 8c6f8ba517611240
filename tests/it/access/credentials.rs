//! With credentials configured: HLS, MJPEG, snapshots, the page, status, metrics and every
//! command answer 401 without them and the simulator sees no INVITE and no MESSAGE; Basic,
//! Digest, the bearer token and a signed URL (segments included) pass; an expired or tampered
//! signed URL does not; ingress passes. Also 413 for a 10 GB body and the 5 s first-request
//! timeout on both servers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use c300x_bridge::config::{Config, Lock, Secret};
use c300x_bridge::intercom::media::PortPool;
use c300x_bridge::media::hub::StreamHub;
use c300x_bridge::servers::access::secrets;
use c300x_bridge::servers::http::{self, HttpState};
use c300x_bridge::servers::limits::Caps;
use c300x_bridge::servers::rtsp::{self, RtspSettings};
use c300x_bridge::sim::{SimConfig, Simulator};
use md5::{Digest as _, Md5};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use super::{Answer, basic, http, read_answer};
use crate::http::{quick_hub, stat};
use crate::rig::{config_for, intercom, ports};

pub(super) struct Fixture {
    pub(super) sim: Simulator,
    pub(super) state: HttpState,
    pub(super) http: SocketAddr,
    pub(super) rtsp: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Fixture {
    /// The wrong-password throttle off: these tests try many wrong credentials on purpose.
    async fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        let caps = Caps {
            auth_failures: 0,
            ..Caps::default()
        };
        Self::with_caps(caps, tweak).await
    }

    pub(super) async fn with_caps(caps: Caps, tweak: impl FnOnce(&mut Config)) -> Self {
        let sim = Simulator::start(SimConfig::default()).await.expect("sim");
        let base = config_for(&sim);
        let (intercom, stop) = intercom(&base).await;
        let mut config = Config {
            rtsp_user: Some("admin".into()),
            rtsp_password: Some(Secret::new("s3cret")),
            api_token: Some(Secret::new("tok")),
            locks: vec![Lock {
                name: "door".into(),
                where_: 20,
                pulse: Duration::from_millis(100),
            }],
            ..base
        };
        tweak(&mut config);
        let hubs: Vec<StreamHub> = config
            .panels
            .iter()
            .map(|p| StreamHub::start(p.clone(), intercom.clone(), quick_hub(), stop.clone()))
            .collect();
        let state = HttpState {
            hubs: hubs.clone(),
            intercom,
            config: Arc::new(config.clone()),
            demo: None,
            camera: c300x_bridge::homeassistant::CameraWatch::none(),
            doorbell: None,
            stats: Default::default(),
        };
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let http_addr = l.local_addr().expect("addr");
        tokio::spawn(http::run(l, state.clone(), caps, stop.clone()));
        let (udp_min, udp_max) = ports(20);
        let mut settings = RtspSettings::new(PortPool::new(udp_min, udp_max));
        settings.secrets = secrets(&config);
        settings.stats = state.stats.clone();
        settings.caps = caps;
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let rtsp_addr = l.local_addr().expect("addr");
        tokio::spawn(rtsp::run(l, hubs, settings, stop.clone()));
        Self {
            sim,
            state,
            http: http_addr,
            rtsp: rtsp_addr,
            stop,
        }
    }

    pub(super) fn invites(&self) -> u64 {
        stat(&self.sim, |s| &s.invites_received)
    }

    async fn get(&self, path: &str, auth: Option<&str>) -> Answer {
        let h: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        http(self.http, "GET", path, &h, b"").await
    }
}

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

/// Answers the Digest challenge of `challenge` (a 401) for `method path`.
fn digest(challenge: &Answer, method: &str, path: &str) -> String {
    let www: Vec<&str> = challenge
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.as_str())
        .collect();
    let d = www
        .iter()
        .find(|v| v.starts_with("Digest "))
        .expect("a Digest challenge");
    let nonce = d
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("nonce");
    let ha1 = md5_hex("admin:c300x-bridge:s3cret");
    let ha2 = md5_hex(&format!("{method}:{path}"));
    let resp = md5_hex(&format!("{ha1}:{nonce}:00000001:0a4f113b:auth:{ha2}"));
    format!(
        "Digest username=\"admin\", realm=\"c300x-bridge\", nonce=\"{nonce}\", uri=\"{path}\", \
         qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"{resp}\", algorithm=MD5"
    )
}

const VIEWS: [&str; 4] = [
    "/api/doorbell/hls/index.m3u8",
    "/api/doorbell/mjpeg",
    "/api/doorbell/snapshot.jpg?live=1",
    "/api/doorbell/snapshot.jpg",
];

#[tokio::test]
async fn every_way_in_needs_the_credentials_and_a_refusal_never_calls() {
    let f = Fixture::start(|_| {}).await;
    let wrong = [
        None,
        Some(basic("admin", "nope")),
        Some("Bearer nope".to_owned()),
        Some(basic("x", "tok0")),
    ];
    for auth in &wrong {
        for path in VIEWS.iter().chain(&[
            "/",
            "/api/status",
            "/metrics",
            "/api/access",
            "/api/doorbell/signed-urls",
        ]) {
            let a = f.get(path, auth.as_deref()).await;
            assert_eq!(a.status, 401, "GET {path} with {auth:?}: {}", a.text());
        }
        for (path, body) in [
            ("/api/doorbell/unlock", ""),
            ("/api/doorbell/light", ""),
            ("/api/doorbell/ring-answer", ""),
            ("/api/doorbell/hangup", ""),
            ("/api/streaming", "{\"enabled\": false}"),
        ] {
            let h: Vec<(&str, &str)> = auth
                .as_deref()
                .map(|a| ("Authorization", a))
                .into_iter()
                .collect();
            let a = http(f.http, "POST", path, &h, body.as_bytes()).await;
            assert_eq!(a.status, 401, "POST {path} with {auth:?}");
            let www = a
                .headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
                .count();
            assert_eq!(www, 3, "Digest, Basic and Bearer challenges");
        }
    }
    // RTSP too: no DESCRIBE without them.
    let mut s = TcpStream::connect(f.rtsp).await.expect("rtsp");
    let req = format!(
        "DESCRIBE rtsp://{}/doorbell RTSP/1.0\r\nCSeq: 1\r\n\r\n",
        f.rtsp
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut got = vec![0u8; 2048];
    let n = s.read(&mut got).await.expect("read");
    assert!(
        got[..n].starts_with(b"RTSP/1.0 401 "),
        "{}",
        String::from_utf8_lossy(&got[..n])
    );
    assert_eq!(f.invites(), 0, "no call for strangers");
    assert!(
        f.sim.stats().message_bodies().is_empty(),
        "no command reached the intercom"
    );
    assert_eq!(f.state.hubs[0].status().viewers, 0);

    // Basic, Digest and the bearer token pass.
    let a = f
        .get("/api/doorbell/mjpeg", Some(&basic("admin", "s3cret")))
        .await;
    assert_eq!(a.status, 200);
    assert!(
        a.text().contains("--frame\r\nContent-Type: image/jpeg"),
        "{}",
        a.text()
    );
    let challenge = f.get("/api/doorbell/snapshot.jpg?live=1", None).await;
    let d = digest(&challenge, "GET", "/api/doorbell/snapshot.jpg?live=1");
    let a = f.get("/api/doorbell/snapshot.jpg?live=1", Some(&d)).await;
    assert_eq!(
        (a.status, a.header("content-type")),
        (200, Some("image/jpeg"))
    );
    let a = f
        .get("/api/doorbell/hls/index.m3u8", Some("Bearer tok"))
        .await;
    assert_eq!(a.status, 200);
    assert!(a.text().starts_with("#EXTM3U"), "{}", a.text());
    let a = f.get("/api/status", Some(&basic("anyone", "tok"))).await;
    assert_eq!(a.status, 200, "the token works as a password");
    let a = http(
        f.http,
        "POST",
        "/api/doorbell/unlock",
        &[("Authorization", "Bearer tok")],
        b"",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(
        f.sim
            .stats()
            .message_bodies()
            .iter()
            .any(|b| b.contains("*8*19*20##"))
    );
    assert_eq!(f.invites(), 1, "one call for the admitted viewers");

    // Signed URLs: the playlist and the segments it names, the MJPEG stream; not commands.
    let a = f
        .get("/api/doorbell/signed-urls?ttl=120", Some("Bearer tok"))
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let urls: serde_json::Value = serde_json::from_slice(&a.body).expect("json");
    let hls = urls["paths"]["hls"].as_str().expect("hls path").to_owned();
    assert!(hls.starts_with("/signed/"), "{hls}");
    let a = f.get(&hls, None).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let first = a
        .text()
        .lines()
        .find(|l| l.ends_with(".m4s") && !l.starts_with('#'))
        .expect("a segment")
        .to_owned();
    let dir = hls.rsplit_once('/').expect("dir").0;
    let seg = f.get(&format!("{dir}/{first}"), None).await;
    assert_eq!(seg.status, 200, "a segment under the signed prefix");
    let mjpeg = urls["paths"]["mjpeg"].as_str().expect("mjpeg path");
    assert_eq!(f.get(mjpeg, None).await.status, 200);
    let token = urls["token"].as_str().expect("token");
    let a = http(
        f.http,
        "POST",
        &format!("/signed/{token}/api/doorbell/unlock"),
        &[],
        b"",
    )
    .await;
    assert_eq!(a.status, 401, "a signed URL opens no door");
    assert_eq!(
        f.get(&format!("/signed/{token}/api/status"), None)
            .await
            .status,
        401
    );
    let mut tampered = hls.clone().into_bytes();
    let i = "/signed/1".len();
    tampered[i] = if tampered[i] == b'9' { b'8' } else { b'9' };
    let tampered = String::from_utf8(tampered).expect("utf8");
    assert_eq!(f.get(&tampered, None).await.status, 401, "{tampered}");
    let a = f
        .get("/api/doorbell/signed-urls?ttl=1", Some("Bearer tok"))
        .await;
    let short: serde_json::Value = serde_json::from_slice(&a.body).expect("json");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let expired = short["paths"]["snapshot"].as_str().expect("path");
    assert_eq!(f.get(expired, None).await.status, 401, "expired");
    assert_eq!(f.invites(), 1);

    // Ingress (the Supervisor's address with its header) passes and is shown the credentials.
    let app = http::router(f.state.clone());
    let mut req = axum::http::Request::get("/api/access")
        .body(Body::empty())
        .expect("req");
    req.headers_mut().insert(
        "x-ingress-path",
        "/api/hassio_ingress/x".parse().expect("hv"),
    );
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([172, 30, 32, 2], 40000))));
    let resp = app.oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), 200);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        (v["user"].as_str(), v["password"].as_str()),
        (Some("admin"), Some("s3cret"))
    );
    assert!(
        v["panels"][0]["rtsp"]
            .as_str()
            .is_some_and(|u| u.starts_with("rtsp://admin:s3cret@")),
        "{v}"
    );
}

#[tokio::test]
async fn the_cached_snapshot_is_public_only_by_option_and_never_live() {
    let f = Fixture::start(|c| c.public_snapshot = true).await;
    let a = f.get("/api/doorbell/snapshot.jpg", None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-snapshot-source"), Some("placeholder"));
    for path in [
        "/api/doorbell/snapshot.jpg?live=1",
        "/api/doorbell/snapshot.jpg?live",
        "/api/doorbell/snapshot.jpg?li%76e=1",
        "/api/doorbell/mjpeg",
    ] {
        assert_eq!(f.get(path, None).await.status, 401, "{path}");
    }
    let a = f
        .get("/api/doorbell/snapshot.jpg?live=1&live=0", None)
        .await;
    assert_eq!(a.status, 401, "a repeated `live` is not a way round");
    assert_eq!(f.invites(), 0);
}

#[tokio::test]
async fn a_10_gb_body_gets_413_at_once_and_silent_clients_are_closed_after_5_s() {
    let f = Fixture::start(|_| {}).await;
    for auth in ["Bearer tok", "Bearer wrong"] {
        let mut s = TcpStream::connect(f.http).await.expect("connect");
        let head = format!(
            "POST /api/doorbell/unlock HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: 10737418240\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.expect("head");
        // No body is sent: an answer can only come from the Content-Length.
        let a = read_answer(&mut s, Duration::from_secs(5)).await;
        assert_eq!(a.status, 413, "{auth}: {}", a.text());
    }
    // A chunked body past the limit is cut off too.
    let mut s = TcpStream::connect(f.http).await.expect("connect");
    s.write_all(b"POST /api/streaming HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .expect("head");
    let chunk = vec![b' '; 70 * 1024];
    let _ = s
        .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
        .await;
    let _ = s.write_all(&chunk).await;
    let _ = s.write_all(b"\r\n0\r\n\r\n").await;
    assert_eq!(
        read_answer(&mut s, Duration::from_secs(5)).await.status,
        413
    );
    assert!(f.sim.stats().message_bodies().is_empty());
    let metrics = f.get("/metrics", Some("Bearer tok")).await.text();
    assert!(
        metrics.contains("c300x_requests_refused_total{server=\"http\",status=\"413\"} 3"),
        "{metrics}"
    );

    // Connections that send nothing, or half a request, are closed by both servers.
    for (addr, partial) in [
        (f.http, &b""[..]),
        (f.http, b"GET / HT"),
        (f.rtsp, b""),
        (f.rtsp, b"OPTIONS * RTSP/1.0\r\n"),
    ] {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(partial).await.expect("write");
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(12), s.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "{addr} {partial:?}: still open after 12 s");
    }
    let metrics = f.get("/metrics", Some("Bearer tok")).await.text();
    for server in ["http", "rtsp"] {
        let line = format!(
            "c300x_connections_closed_total{{server=\"{server}\",reason=\"first_request_timeout\"}} "
        );
        let n: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(n >= 2, "{server}: {n}\n{metrics}");
    }
}
