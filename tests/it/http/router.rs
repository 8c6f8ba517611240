//! `router(state)` driven with `oneshot`: the status JSON's fixed fields, the credentials and
//! the ingress exemption (the whole access model: tests/it/access/), 404/400/401/403/409 as JSON
//! `{error, detail}`, the page under ingress, metrics, calls ended by reason in both, the demo ring
//! hook, and a snapshot that never calls the intercom.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use c300x_bridge::servers::http::{DemoHooks, router};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::{eventually, jpeg_size, rig, stat};
use c300x_bridge::media::hub::{HubState, ViewerKind};

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn error(&self) -> String {
        let v = self.json();
        assert!(v["detail"].is_string(), "detail in {v}");
        v["error"].as_str().expect("error code").to_owned()
    }
}

async fn send(app: &axum::Router, req: Request<Body>) -> Reply {
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("request")
}

fn post(uri: &str, body: &str, token: Option<&str>) -> Request<Body> {
    let mut b = Request::post(uri).header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Body::from(body.to_owned())).expect("request")
}

#[tokio::test]
async fn status_json_has_the_fixed_fields() {
    let rig = rig(None, None).await;
    let app = router(rig.state.clone());
    let r = send(&app, get("/api/status")).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["sip"]["registered"], Value::Bool(true), "{v}");
    let p = &v["panels"][0];
    assert_eq!(p["name"], "doorbell");
    assert_eq!(p["devaddr"], 20);
    assert_eq!(p["state"], "idle");
    assert_eq!(p["viewers"], 0);
    for key in ["call_id", "width", "height", "fps", "last_ring"] {
        assert!(p.get(key).is_some(), "panels[0].{key} missing in {p}");
    }
    assert_eq!(v["demo"], Value::Bool(false));
    rig.stop.cancel();
}

#[tokio::test]
async fn unknown_panels_paths_and_hls_names_are_404_json() {
    let rig = rig(None, None).await;
    let app = router(rig.state.clone());
    for uri in [
        "/api/nope/snapshot.jpg",
        "/api/nope/mjpeg",
        "/api/nope/hls/index.m3u8",
    ] {
        let r = send(&app, get(uri)).await;
        assert_eq!(
            (r.status, r.error().as_str()),
            (StatusCode::NOT_FOUND, "unknown_panel"),
            "{uri}"
        );
    }
    let r = send(&app, post("/api/nope/unlock", "", None)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = send(&app, get("/no/such/thing")).await;
    assert_eq!(
        (r.status, r.error().as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let r = send(&app, get("/api/doorbell/hls/evil.ts")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = send(&app, get("/api/doorbell/hls/index.m3u8?_HLS_part=2")).await;
    assert_eq!(
        (r.status, r.error().as_str()),
        (StatusCode::BAD_REQUEST, "bad_request")
    );
    let r = send(&app, get("/assets/secret.txt")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = send(&app, post("/api/demo/ring?panel=doorbell", "", None)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "demo ring only in demo");
    assert_eq!(stat(&rig.sim, |s| &s.invites_received), 0);
    rig.stop.cancel();
}

#[tokio::test]
async fn requests_need_the_token_unless_from_ingress() {
    let rig = rig(Some("s3cret"), None).await;
    let app = router(rig.state.clone());
    let r = send(&app, post("/api/doorbell/unlock", "", None)).await;
    assert_eq!(
        (r.status, r.error().as_str()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    assert!(r.headers.contains_key("www-authenticate"));
    let r = send(&app, post("/api/doorbell/unlock", "", Some("wrong"))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(rig.sim.stats().message_bodies().is_empty(), "nothing sent");
    // Reading needs it too; static assets do not.
    assert_eq!(
        send(&app, get("/api/status")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let mut status = get("/api/status");
    status
        .headers_mut()
        .insert("authorization", "Bearer s3cret".parse().expect("hv"));
    assert_eq!(send(&app, status).await.status, StatusCode::OK);
    assert_eq!(
        send(&app, get("/assets/app.js")).await.status,
        StatusCode::OK
    );

    let r = send(&app, post("/api/doorbell/unlock", "", Some("s3cret"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["lock"], "door");
    let bodies = rig.sim.stats().message_bodies();
    assert!(
        bodies.iter().any(|b| b.contains("*8*19*20##")),
        "{bodies:?}"
    );

    // HA ingress: the Supervisor's address plus X-Ingress-Path.
    let ingress = |with_header: bool, peer: [u8; 4]| {
        let mut req = post("/api/doorbell/hangup", "", None);
        if with_header {
            req.headers_mut().insert(
                "x-ingress-path",
                "/api/hassio_ingress/t0k".parse().expect("hv"),
            );
        }
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((peer, 40000))));
        req
    };
    assert_eq!(
        send(&app, ingress(true, [172, 30, 32, 2])).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(&app, ingress(false, [172, 30, 32, 2])).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, ingress(true, [10, 0, 0, 9])).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Push-to-talk: refused without credentials (no call placed), let through from ingress
    // (a plain GET there is 426: the socket needs an upgrade, which `oneshot` cannot do).
    let calls = stat(&rig.sim, |s| &s.invites_received);
    assert_eq!(
        send(&app, get("/api/doorbell/talk")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let mut talk = get("/api/doorbell/talk");
    talk.headers_mut().insert(
        "x-ingress-path",
        "/api/hassio_ingress/t0k".parse().expect("hv"),
    );
    talk.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([172, 30, 32, 2], 40000))));
    assert_eq!(send(&app, talk).await.status, StatusCode::UPGRADE_REQUIRED);
    assert_eq!(stat(&rig.sim, |s| &s.invites_received), calls);
    rig.stop.cancel();
}

#[tokio::test]
async fn bad_json_is_400_and_the_privacy_switch_refuses_viewers() {
    let rig = rig(None, None).await;
    let app = router(rig.state.clone());
    for (uri, body) in [
        ("/api/streaming", "{not json"),
        ("/api/streaming", "{}"),
        ("/api/streaming", "{\"enabled\": \"yes\"}"),
        ("/api/doorbell/unlock", "[1,2"),
        ("/api/doorbell/unlock", "{\"lockk\": 1}"),
        ("/api/doorbell/light", "{\"pulse_ms\": -1}"),
    ] {
        let r = send(&app, post(uri, body, None)).await;
        assert_eq!(
            (r.status, r.error().as_str()),
            (StatusCode::BAD_REQUEST, "bad_json"),
            "{uri} {body}"
        );
    }
    let r = send(&app, post("/api/doorbell/light", "{\"pulse_ms\": 5}", None)).await;
    assert_eq!(
        (r.status, r.error().as_str()),
        (StatusCode::BAD_REQUEST, "bad_request")
    );
    let r = send(
        &app,
        post("/api/doorbell/unlock", "{\"lock\": \"gate\"}", None),
    )
    .await;
    assert_eq!(
        (r.status, r.error().as_str()),
        (StatusCode::NOT_FOUND, "unknown_lock")
    );
    let r = send(&app, post("/api/doorbell/ring-answer", "", None)).await;
    assert_eq!(
        (r.status, r.error().as_str()),
        (StatusCode::CONFLICT, "not_ringing")
    );

    let r = send(&app, post("/api/streaming", "{\"enabled\": false}", None)).await;
    assert_eq!(r.status, StatusCode::OK);
    super::eventually("privacy on", Duration::from_secs(5), || {
        !rig.state.hubs[0].status().streaming_allowed
    })
    .await;
    for uri in [
        "/api/doorbell/mjpeg",
        "/api/doorbell/hls/index.m3u8",
        "/api/doorbell/snapshot.jpg?live=1",
    ] {
        let r = send(&app, get(uri)).await;
        assert_eq!(
            (r.status, r.error().as_str()),
            (StatusCode::FORBIDDEN, "streaming_disabled"),
            "{uri}"
        );
    }
    let v = send(&app, get("/api/status")).await.json();
    assert_eq!(v["streaming_allowed"], Value::Bool(false));
    let r = send(&app, post("/api/streaming", "{\"enabled\": true}", None)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(stat(&rig.sim, |s| &s.invites_received), 0);
    rig.stop.cancel();
}

#[tokio::test]
async fn snapshot_without_a_call_is_the_placeholder_and_places_no_call() {
    let rig = rig(None, None).await;
    let app = router(rig.state.clone());
    for _ in 0..3 {
        let r = send(&app, get("/api/doorbell/snapshot.jpg")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers["content-type"], "image/jpeg");
        assert_eq!(r.headers["x-snapshot-source"], "placeholder");
        assert_eq!(jpeg_size(&r.body), Some((400, 288)));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        stat(&rig.sim, |s| &s.invites_received),
        0,
        "a still never calls"
    );
    assert_eq!(rig.state.hubs[0].status().viewers, 0);
    rig.stop.cancel();
}

#[tokio::test]
async fn page_assets_metrics_and_ingress_base() {
    let rig = rig(None, None).await;
    let app = router(rig.state.clone());
    let r = send(&app, get("/")).await;
    assert_eq!(r.status, StatusCode::OK);
    let html = r.text();
    assert!(html.contains("src=\"assets/hls.min.js\""), "relative URLs");
    assert!(!html.contains("<base") && !html.contains("http://") && !html.contains("https://"));
    assert!(html.contains("data-demo=\"false\""));
    let mut req = get("/");
    req.headers_mut().insert(
        "x-ingress-path",
        "/api/hassio_ingress/AbC_12".parse().expect("hv"),
    );
    let html = send(&app, req).await.text();
    assert!(
        html.contains("<base href=\"/api/hassio_ingress/AbC_12/\">"),
        "{html}"
    );
    for (asset, kind) in [
        ("hls.min.js", "text/javascript"),
        ("app.js", "text/javascript"),
        ("style.css", "text/css"),
        ("hls.js.LICENSE", "text/plain"),
    ] {
        let r = send(&app, get(&format!("/assets/{asset}"))).await;
        assert_eq!(r.status, StatusCode::OK, "{asset}");
        let ct = r.headers["content-type"].to_str().expect("ascii");
        assert!(ct.starts_with(kind), "{asset}: {ct}");
    }
    let r = send(&app, get("/metrics")).await;
    assert_eq!(r.status, StatusCode::OK);
    let m = r.text();
    for line in [
        "c300x_sip_registered 1",
        "c300x_calls_started_total{panel=\"doorbell\"} 0",
        "c300x_viewers{panel=\"doorbell\",output=\"hls\"} 0",
        "c300x_hub_state{panel=\"doorbell\",state=\"idle\"} 1",
        "c300x_rings_total 0",
        "c300x_unlocks_total 0",
        "c300x_unlock_failures_total 0",
        "c300x_frames_dropped_total{panel=\"doorbell\"} 0",
        "c300x_call_seconds_total{panel=\"doorbell\"} 0",
        "c300x_srtp_auth_failures_total{panel=\"doorbell\"} 0",
        "# TYPE c300x_calls_ended_total counter",
    ] {
        assert!(m.lines().any(|l| l == line), "missing `{line}` in\n{m}");
    }
    rig.stop.cancel();
}

#[tokio::test]
async fn demo_ring_button_and_endpoint_only_in_demo() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let rig = rig(None, Some(DemoHooks { ring: tx })).await;
    let app = router(rig.state.clone());
    assert!(
        send(&app, get("/"))
            .await
            .text()
            .contains("data-demo=\"true\"")
    );
    let r = send(&app, post("/api/demo/ring?panel=doorbell", "", None)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(rx.recv().await, Some(20));
    let r = send(&app, post("/api/demo/ring?panel=gate", "", None)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        send(&app, get("/api/status")).await.json()["demo"],
        Value::Bool(true)
    );
    rig.stop.cancel();
}

/// Each way a call ends is its own reason, in `/api/status` (`calls_ended`, `last_end`) and in
/// `c300x_calls_ended_total{reason}`: a user's hang-up, the intercom's BYE, the linger, shutdown.
#[tokio::test]
async fn calls_ended_by_reason_in_the_status_and_the_metrics() {
    let rig = rig(None, None).await;
    let app = router(rig.state.clone());
    let hub = rig.state.hubs[0].clone();
    let t = Duration::from_secs(15);
    let live = |n: u64| {
        let hub = hub.clone();
        let sim = &rig.sim;
        move || hub.status().state == HubState::Live && stat(sim, |s| &s.invites_received) == n
    };
    let v = hub.join(ViewerKind::Hls).await.expect("join");
    let r = send(&app, post("/api/doorbell/hangup", "", None)).await;
    assert_eq!(r.status, StatusCode::OK);
    eventually("a new call for the viewer", t, live(2)).await;
    assert_eq!(rig.sim.hang_up_all().await.expect("BYE"), 1);
    eventually("a new call after the BYE", t, live(3)).await;
    drop(v);
    eventually("the linger ended it", t, || {
        hub.status().state == HubState::Idle
    })
    .await;
    let p = &send(&app, get("/api/status")).await.json()["panels"][0];
    let ended = &p["calls_ended"];
    for reason in ["local_hangup", "remote_bye", "linger"] {
        assert_eq!(ended[reason], 1, "{reason} in {p}");
    }
    assert_eq!(p["last_end"]["reason"], "linger", "{p}");
    assert!(
        p["last_end"]["at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let m = send(&app, get("/metrics")).await.text();
    for reason in ["local_hangup", "remote_bye", "linger"] {
        let line = format!("c300x_calls_ended_total{{panel=\"doorbell\",reason=\"{reason}\"}} 1");
        assert!(m.lines().any(|l| l == line), "missing `{line}` in\n{m}");
    }
    // A call still up at shutdown ends as `shutdown`.
    let _v = hub.join(ViewerKind::Rtsp).await.expect("join");
    rig.stop.cancel();
    eventually("ended by the shutdown", t, || {
        hub.status().calls_ended.contains(&("shutdown", 1))
    })
    .await;
    let p = &send(&app, get("/api/status")).await.json()["panels"][0];
    assert_eq!(p["last_end"]["reason"], "shutdown", "{p}");
}
