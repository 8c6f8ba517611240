//! The status page as a user sees it, in headless Chromium (tests/browser/screens.mjs): at
//! 1280×900 the camera is left and the controls and rings right, at 390×844 (a phone) one
//! column without sideways scrolling; a simulated ring shows the ringing alert with the ring's
//! picture (taken from the call being watched) and the recent rings list it; no SIP Call-ID
//! on the page; "Stop" turns the state into "lingering N s"; the Home Assistant camera box
//! offers the manual set-up. The PNGs stay in target/test-artifacts/ (CI keeps them).

use std::path::Path;
use std::time::Duration;

use c300x_bridge::homeassistant::{CameraWatch, SetupState};
use c300x_bridge::servers::http::{DemoHooks, run};
use tokio::net::TcpListener;

use crate::http::{browser_ready, browser_script, rig_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshots_show_the_ringing_alert_at_desktop_and_phone_sizes() {
    let dir = browser_ready().await;
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifact dir");

    let (ring_tx, mut ring_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut rig = rig_with(None, Some(DemoHooks { ring: ring_tx }), true).await;
    // As in `demo` without Home Assistant: the manual set-up is offered.
    let (camera_tx, camera) = CameraWatch::channel(&rig.state.config, "127.0.0.1");
    camera_tx.send_modify(|all| {
        all[0].state = SetupState::Manual {
            reason: "no Home Assistant to talk to: outside the add-on set homeassistant_url and \
                     homeassistant_token"
                .into(),
        }
    });
    rig.state.camera = camera;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(run(
        listener,
        rig.state.clone(),
        Default::default(),
        rig.stop.clone(),
    ));

    let node = browser_script(&dir, "screens.mjs", addr)
        .arg(&artifacts)
        .arg("45000")
        .output();
    tokio::pin!(node);
    let mut rings = Vec::new();
    let out = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            tokio::select! {
                out = &mut node => break out,
                Some(devaddr) = ring_rx.recv() => rings.push(rig.sim.ring(devaddr).await.expect("ring")),
            }
        }
    })
    .await
    .expect("browser in time")
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "screens.mjs: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "screens.mjs failed");
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON");
    assert_eq!(rings.len(), 1, "the page's demo button rang once");
    for (size, layout) in [("1280x900", &seen["wide"]), ("390x844", &seen["phone"])] {
        assert_eq!(
            layout["alertVisible"], true,
            "{size}: ringing alert: {seen}"
        );
        assert!(
            layout["alertText"]
                .as_str()
                .is_some_and(|t| t.contains("Someone is at the door") && t.contains("Doorbell")),
            "{size}: {seen}"
        );
        assert_eq!(
            layout["callIdShown"], false,
            "{size}: raw Call-ID on the page"
        );
        assert_eq!(layout["overflowX"], false, "{size}: sideways scrolling");
    }
    assert_eq!(
        seen["ringPicture"], true,
        "the ring's picture in the alert: {seen}"
    );
    assert!(
        seen["ringThumbs"].as_u64().is_some_and(|n| n >= 1),
        "recent rings with their picture: {seen}"
    );
    assert_eq!(
        seen["wide"]["sideRight"], true,
        "controls right of the camera"
    );
    assert_eq!(seen["phone"]["sideBelow"], true, "one column on a phone");
    assert!(
        seen["afterStop"]
            .as_str()
            .is_some_and(|s| s.starts_with("lingering ") && s.ends_with(" s")),
        "after Stop: {seen}"
    );
    for shot in seen["shots"].as_array().expect("shots") {
        let path = Path::new(shot.as_str().expect("path"));
        assert!(path.exists(), "{}", path.display());
        eprintln!("screenshot: {}", path.display());
    }
    rig.stop.cancel();
}
