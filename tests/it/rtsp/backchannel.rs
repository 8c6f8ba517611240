//! The ONVIF backchannel with a real client: GStreamer's `rtspsrc backchannel=onvif`
//! (tests/gst/backchannel.py, through python3-gst) plays the panel with credentials and sends
//! 2 s of a 1 kHz tone as PCMU over TCP and as PCMA over UDP; the simulated unit hears 1 kHz
//! for the time spoken. Also with a raw client: a second talker gets 453, no credentials 401,
//! an unknown option tag 551, a DESCRIBE without `Require` offers no backchannel, and the
//! privacy switch ends a backchannel's connection.

use std::path::Path;
use std::time::Duration;

use c300x_bridge::media::hub::TalkState;
use c300x_bridge::sim::CallMedia;

use super::{Fixture, Raw, T, start};
use crate::rig::eventually;

const SPOKEN_MS: u64 = 2_000;
const PYTHON: &str = "/usr/bin/python3";

fn with_auth(f: &Fixture) -> String {
    format!("rtsp://admin:s3cret@{}/doorbell", f.addr)
}

fn heard(f: &Fixture, call_id: &str) -> CallMedia {
    f.sim
        .sim
        .stats()
        .call_media(call_id)
        .expect("the unit counts this call")
}

/// Runs the GStreamer client for `law` over `proto`; returns what the unit heard of the call.
async fn gstreamer_talks(law: &str, proto: &str) -> CallMedia {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gst/backchannel.py");
    let has_gi = std::process::Command::new(PYTHON)
        .args(["-c", "import gi; gi.require_version('Gst', '1.0')"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_gi,
        "python3-gst-1.0 missing: run scripts/setup-debian.sh"
    );
    let f = start(40, |s| {
        s.secrets.user = Some(("admin".into(), "s3cret".into()));
    })
    .await;
    let log_path = std::env::temp_dir().join(format!(
        "c300x-backchannel-{law}-{proto}-{}.log",
        std::process::id()
    ));
    let log = std::fs::File::create(&log_path).expect("client log");
    let seconds = format!("{}", SPOKEN_MS as f64 / 1000.0);
    let mut child = tokio::process::Command::new(PYTHON)
        .arg(&script)
        .args([with_auth(&f).as_str(), law, proto, seconds.as_str()])
        .kill_on_drop(true)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("python3 runs");
    let mut done = Box::pin(tokio::time::timeout(Duration::from_secs(40), child.wait()));
    let talking = async {
        loop {
            if let TalkState::Talking { call_id: Some(id) } = f.hub.talk_state() {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let call_id = tokio::select! {
        id = talking => id,
        out = &mut done => panic!(
            "{law}/{proto}: the client ended before talking: {out:?}\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        ),
    };
    let out = done.await;
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    let status = out.expect(&text).expect("the client ran");
    assert!(status.success(), "{law}/{proto}: {status:?}\n{text}");
    // TEARDOWN released the talk; the call lingers with silence keep-alives.
    eventually("the panel is free", T, || {
        f.hub.talk_state() == TalkState::Free
    })
    .await;
    let h = heard(&f, &call_id);
    eventually("keep-alives after the talk", T, || {
        heard(&f, &call_id).audio_keepalives >= h.audio_keepalives + 5
    })
    .await;
    let h = heard(&f, &call_id);
    eprintln!("{law}/{proto}: {text}the unit heard {h:?}");
    h
}

fn assert_tone(what: &str, h: &CallMedia) {
    let hz = h.dominant_hz.expect("voiced audio");
    assert!(hz.abs_diff(1_000) <= 50, "{what}: dominant {hz} Hz");
    crate::talk::assert_voiced(what, h, SPOKEN_MS);
    assert_eq!(h.audio_decode_errors, 0, "{what}");
    assert_eq!(
        h.audio_discontinuities, 0,
        "{what}: talk continues the stream"
    );
}

#[tokio::test]
async fn gstreamer_backchannel_pcmu_over_tcp_reaches_the_unit() {
    let h = gstreamer_talks("pcmu", "tcp").await;
    assert_tone("PCMU/TCP", &h);
}

#[tokio::test]
async fn gstreamer_backchannel_pcma_over_udp_reaches_the_unit() {
    let h = gstreamer_talks("pcma", "udp").await;
    assert_tone("PCMA/UDP", &h);
}

#[tokio::test]
async fn backchannel_refusals_busy_unauthorized_and_unknown_tags() {
    let stats = std::sync::Arc::new(c300x_bridge::servers::limits::ServerStats::default());
    let f = start(40, |s| {
        s.secrets.user = Some(("admin".into(), "s3cret".into()));
        s.stats = stats.clone();
    })
    .await;
    use base64::Engine as _;
    let good = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("admin:s3cret")
    );
    let require = ("Require", "www.onvif.org/ver20/backchannel");
    let url = f.url();
    let track = format!("{url}/trackID=2");
    let tcp = ("Transport", "RTP/AVP/TCP;unicast;interleaved=4-5");

    // Without credentials: 401, no call, nobody talks.
    let mut raw = Raw::connect(f.addr).await;
    let r = raw.request("DESCRIBE", &url, &[require]).await;
    assert_eq!(r.status, 401);
    let r = raw.request("SETUP", &track, &[require, tcp]).await;
    assert_eq!(r.status, 401);
    assert_eq!(f.invites(), 0);
    assert_eq!(f.hub.talk_state(), TalkState::Free);

    // Unknown option tag: 551 naming it.
    let auth = ("Authorization", good.as_str());
    let r = raw
        .request("DESCRIBE", &url, &[auth, ("Require", "x-unknown")])
        .await;
    assert_eq!(r.status, 551, "{}", r.head);
    assert_eq!(r.header("Unsupported"), Some("x-unknown"));

    // Without Require: no backchannel in the SDP, and its SETUP is 404.
    let r = raw.request("DESCRIBE", &url, &[auth]).await;
    assert_eq!(r.status, 200);
    assert!(!r.body.contains("sendonly") && !r.body.contains("trackID=2"));
    let r = raw.request("SETUP", &track, &[auth, tcp]).await;
    assert_eq!(r.status, 404);

    // Someone else talks: 453 with the reason.
    let talker = f.hub.talk().await.expect("talk");
    let mut second = Raw::connect(f.addr).await;
    let r = second.request("DESCRIBE", &url, &[auth, require]).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("a=sendonly"), "{}", r.body);
    let r = second.request("SETUP", &track, &[auth, require, tcp]).await;
    assert_eq!(r.status, 453, "{}", r.head);
    assert!(r.body.contains("someone else is talking"), "{}", r.body);
    drop(talker);
    eventually("the panel is free", T, || {
        f.hub.talk_state() == TalkState::Free
    })
    .await;
    let r = second.request("SETUP", &track, &[auth, require, tcp]).await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(matches!(f.hub.talk_state(), TalkState::Talking { .. }));
    let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(count(&stats.rtsp.talk_sessions), 1);
    assert_eq!(count(&stats.rtsp.talk_busy), 1);
    // The privacy switch ends the talk: the backchannel's connection is closed.
    f.hub.allow_streaming(false);
    let closed = tokio::time::timeout(T, second.reply()).await;
    assert!(
        matches!(closed, Ok(None)),
        "the connection ends with the talk"
    );
    eventually("the panel is free", T, || {
        f.hub.talk_state() == TalkState::Free
    })
    .await;
}
