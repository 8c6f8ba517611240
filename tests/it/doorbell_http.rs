//! The doorbell's HTTP API (`router(state)` with `oneshot`) on the whole doorbell against the
//! simulator: the ring list with the pending ring, its picture and clip, reject / answer, and
//! clear errors for an unknown panel, a bad ring id and nothing to answer.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use c300x_bridge::doorbell::DoorbellEvent;
use c300x_bridge::servers::http::{HttpState, router};
use c300x_bridge::sim::{RingState, SimConfig};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::http::jpeg_size;
use crate::mqtt::{Broker, Rig};
use crate::rig::eventually;

const T: Duration = Duration::from_secs(15);

async fn call(app: &axum::Router, method: &str, uri: &str) -> (StatusCode, String, Vec<u8>) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let kind = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, kind, body.to_vec())
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body).expect("json")
}

#[tokio::test]
async fn rings_pictures_clips_and_answer_reject_over_http() {
    let broker = Broker::start();
    let rig = Rig::start_with(
        &broker,
        SimConfig::default(),
        |c| c.ring_clip = Duration::from_secs(2),
        |_| {},
    )
    .await;
    let app = router(HttpState {
        hubs: vec![rig.hub.clone()],
        intercom: rig.intercom.clone(),
        config: Arc::new(rig.cfg.clone()),
        demo: None,
        camera: c300x_bridge::homeassistant::CameraWatch::none(),
        doorbell: Some(rig.doorbell.clone()),
        stats: Default::default(),
    });
    let mut events = rig.doorbell.events();
    let mut ring = rig.sim.ring(20).await.expect("ring");
    tokio::time::timeout(T, async {
        while !matches!(events.recv().await, Ok(DoorbellEvent::Clip { .. })) {}
    })
    .await
    .expect("picture and clip");

    let (status, _, body) = call(&app, "GET", "/api/doorbell/rings").await;
    assert_eq!(status, StatusCode::OK);
    let list = json(&body);
    let ring_id = list["pending"]["ring_id"]
        .as_str()
        .expect("pending")
        .to_owned();
    let first = &list["rings"][0];
    assert_eq!(first["ring_id"], ring_id.as_str());
    assert_eq!(first["outcome"], "pending");
    assert_eq!(
        first["snapshot_url"],
        format!("api/doorbell/rings/{ring_id}.jpg")
    );
    let (status, kind, jpeg) =
        call(&app, "GET", &format!("/api/doorbell/rings/{ring_id}.jpg")).await;
    assert_eq!((status, kind.as_str()), (StatusCode::OK, "image/jpeg"));
    assert_eq!(jpeg_size(&jpeg), Some((400, 288)));
    let clip_url = first["clip_url"].as_str().expect("clip url").to_owned();
    let (status, kind, mp4) = call(&app, "GET", &format!("/{clip_url}")).await;
    assert_eq!((status, kind.as_str()), (StatusCode::OK, "video/mp4"));
    assert_eq!(&mp4[4..8], b"ftyp");

    // Bad input is a clear 404 / 409, never a file outside the ring folder.
    for (uri, code) in [
        ("/api/nope/rings", "unknown_panel"),
        (
            "/api/doorbell/rings/..%2F..%2Fetc%2Fpasswd.jpg",
            "not_found",
        ),
        ("/api/doorbell/rings/20240101-000000-000.jpg", "not_found"),
        ("/api/doorbell/rings/20240101-000000-000.gif", "not_found"),
    ] {
        let (status, _, body) = call(&app, "GET", uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(json(&body)["error"], code, "{uri}");
    }

    let (status, _, body) = call(&app, "POST", "/api/doorbell/reject").await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["ring_id"], ring_id.as_str());
    assert_eq!(
        ring.wait_for(T, |s| matches!(s, RingState::Rejected(_)))
            .await,
        Some(RingState::Rejected(486))
    );
    eventually("rejected in the history", T, || {
        rig.doorbell
            .recorder()
            .rings("doorbell")
            .first()
            .is_some_and(|r| r.outcome == c300x_bridge::doorbell::RingOutcome::Rejected)
    })
    .await;
    let (status, _, body) = call(&app, "POST", "/api/doorbell/answer").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(json(&body)["error"], "not_ringing");

    // Answer over HTTP: the unit gets its 200 and the hub keeps the preview's media.
    let mut ring = rig.sim.ring(20).await.expect("ring");
    eventually("pending", T, || rig.doorbell.pending("doorbell").is_some()).await;
    eventually("preview", T, || rig.hub.status().call_id.is_some()).await;
    let (status, _, _) = call(&app, "POST", "/api/doorbell/answer").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        ring.wait_for(T, |s| s == RingState::Answered).await,
        Some(RingState::Answered)
    );
    let (status, _, _) = call(&app, "POST", "/api/doorbell/ring-hangup").await;
    assert_eq!(status, StatusCode::OK);
    eventually("BYE", T, || {
        c300x_bridge::sim::SimStats::get(&rig.sim.stats().byes_received) == 1
    })
    .await;
    rig.stop().await;
}
