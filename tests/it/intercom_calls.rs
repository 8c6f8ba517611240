//! The bridge's `Intercom` against the simulator: view calls and answered rings with decrypted
//! H.264 and Speex, a call kept alive past the unit's no-RTP hang-up (a minute on tokio's paused
//! clock), unlock with its pulse, and `check` reporting each set-up step.

use std::time::Duration;

use c300x_bridge::config::Lock;
use c300x_bridge::intercom::IntercomError;
use c300x_bridge::intercom::check::{self, Status};
use c300x_bridge::intercom::media::{MediaKind, MediaPacket};
use c300x_bridge::intercom::sip::RingEvent;
use c300x_bridge::proto::h264::{self, SpsInfo};
use c300x_bridge::sim::{RingState, SimConfig, SimStats, Simulator};
use tokio::sync::mpsc;

use crate::rig::{Rig, config_for, eventually};

const T: Duration = Duration::from_secs(10);

/// A simulator and the bridge's registered intercom (no hubs).
async fn bridge() -> Rig {
    Rig::builder().no_hubs().start().await
}

/// What arrived: whole NAL types seen (FU-A reassembled by start bit), SPS info, audio PTs.
#[derive(Default)]
struct Seen {
    nal_types: Vec<u8>,
    sps: Option<SpsInfo>,
    audio: usize,
    audio_pts: Vec<u8>,
    video: usize,
}

async fn collect(rx: &mut mpsc::Receiver<MediaPacket>, for_: Duration) -> Seen {
    let mut seen = Seen::default();
    let deadline = tokio::time::Instant::now() + for_;
    let mut fu: Vec<u8> = Vec::new();
    while let Ok(Some(p)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        match p.kind {
            MediaKind::Audio => {
                seen.audio += 1;
                if !seen.audio_pts.contains(&p.payload_type) {
                    seen.audio_pts.push(p.payload_type);
                }
            }
            MediaKind::Video => {
                seen.video += 1;
                let pl = &p.payload[..];
                if h264::nal_type(pl) == h264::NAL_FU_A && pl.len() > 2 {
                    if pl[1] & 0x80 != 0 {
                        fu = vec![(pl[0] & 0xe0) | (pl[1] & 0x1f)];
                    }
                    fu.extend_from_slice(&pl[2..]);
                    if pl[1] & 0x40 != 0 {
                        seen.nal_types.push(h264::nal_type(&fu));
                    }
                }
                for nal in h264::whole_nals(pl) {
                    seen.nal_types.push(h264::nal_type(nal));
                    if seen.sps.is_none() {
                        seen.sps = SpsInfo::parse(nal).ok();
                    }
                }
            }
        }
    }
    seen
}

#[tokio::test]
async fn view_call_delivers_decrypted_h264_and_speex_then_bye() {
    let rig = bridge().await;
    let (sim, intercom) = (&rig.sim, &rig.intercom);
    let (tx, mut rx) = mpsc::channel(4096);
    let call = intercom.view(20, tx).await.expect("view call");
    assert_eq!(
        (call.remote.audio.pt, call.remote.video.pt),
        (110, 96),
        "PTs mirrored from our offer"
    );
    let seen = collect(&mut rx, Duration::from_millis(2500)).await;
    let sps = seen.sps.expect("an SPS arrived");
    assert_eq!((sps.width, sps.height), (400, 288));
    for t in [h264::NAL_SPS, h264::NAL_PPS, h264::NAL_IDR] {
        assert!(
            seen.nal_types.contains(&t),
            "NAL type {t} missing from {:?}",
            seen.nal_types
        );
    }
    assert!(
        seen.video >= 15 && seen.audio >= 80,
        "video {} audio {}",
        seen.video,
        seen.audio
    );
    assert_eq!(seen.audio_pts, [110]);
    assert_eq!(call.stats().srtp_failures(), 0);
    assert_eq!(SimStats::get(&sim.stats().active_calls), 1);
    call.hangup().await;
    assert_eq!(SimStats::get(&sim.stats().active_calls), 0);
    assert_eq!(SimStats::get(&sim.stats().byes_received), 1);
}

/// With the unit's no-RTP hang-up at 2 s, our silence + RTCP keep a call up for over a minute.
/// On tokio's paused clock: both sides' timers (our 20 ms silence, 1 s RTCP, the unit's no-RTP
/// watchdog) run in virtual time, so the minute takes a moment of real time.
#[tokio::test(start_paused = true)]
async fn keep_alive_holds_a_call_past_sixty_seconds() {
    let rig = Rig::builder()
        .sim(|c| c.no_rtp_timeout = Duration::from_secs(2))
        .no_hubs()
        .start()
        .await;
    let (sim, intercom) = (&rig.sim, &rig.intercom);
    let (tx, mut rx) = mpsc::channel(64);
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let call = intercom.view(20, tx).await.expect("view call");
    let start = tokio::time::Instant::now();
    let rtp_before = SimStats::get(&sim.stats().rtp_from_bridge);
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert!(start.elapsed() >= Duration::from_secs(61));
    assert_eq!(call.end_reason(), None, "the unit must not have hung up");
    assert_eq!(SimStats::get(&sim.stats().byes_sent), 0);
    assert_eq!(SimStats::get(&sim.stats().active_calls), 1);
    let rtp = SimStats::get(&sim.stats().rtp_from_bridge) - rtp_before;
    assert!(rtp >= 61 * 45, "silence every 20 ms: {rtp} packets in 61 s");
    assert!(
        SimStats::get(&sim.stats().rtcp_from_bridge) >= 100,
        "RR every second on both streams"
    );
    call.hangup().await;
    drain.abort();
}

#[tokio::test]
async fn remote_bye_is_seen_by_the_call() {
    let rig = bridge().await;
    let (sim, intercom) = (&rig.sim, &rig.intercom);
    let (tx, _rx) = mpsc::channel(4096);
    let call = intercom.view(20, tx).await.expect("view call");
    let mut ended = call.ended_watch();
    assert_eq!(sim.hang_up_all().await.expect("hang up"), 1);
    tokio::time::timeout(T, ended.wait_for(|e| e.is_some()))
        .await
        .expect("ended in time")
        .expect("watch");
    assert!(call.end_reason().is_some());
}

#[tokio::test]
async fn unlock_sends_both_frames_with_the_pulse_between() {
    let rig = bridge().await;
    let (sim, intercom) = (&rig.sim, &rig.intercom);
    let lock = Lock {
        name: "gate".into(),
        where_: 21,
        pulse: Duration::from_millis(400),
    };
    intercom.unlock(&lock).await.expect("unlock");
    let msgs = sim.stats().messages();
    assert_eq!(
        msgs.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["*8*19*21##", "*8*20*21##"]
    );
    let gap = msgs[1].at.duration_since(msgs[0].at).expect("ordered");
    assert!(
        gap >= Duration::from_millis(400) && gap < Duration::from_millis(1500),
        "pulse {gap:?}"
    );
    assert_eq!(
        intercom
            .events()
            .unlocks
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    intercom.voicemail(true).await.expect("voicemail on");
    intercom
        .staircase_light(Duration::from_millis(50))
        .await
        .expect("light");
    assert_eq!(
        &sim.stats().message_bodies()[2..],
        ["*8*91##", "*8*21*10##", "*8*22*10##"]
    );
}

#[tokio::test]
async fn unlock_fails_when_the_intercom_refuses() {
    let rig = bridge().await;
    let (sim, intercom) = (&rig.sim, &rig.intercom);
    // The unit now wants Digest and we have no password: MESSAGE gets 407.
    sim.require_digest(Some(("c300x-bridge".into(), "secret".into())))
        .expect("set");
    let lock = Lock {
        name: "door".into(),
        where_: 20,
        pulse: Duration::from_millis(100),
    };
    let err = intercom.unlock(&lock).await.expect_err("refused");
    assert_eq!(
        intercom
            .events()
            .unlock_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert!(matches!(err, IntercomError::Sip(_)), "{err}");
    assert!(sim.stats().message_bodies().is_empty());
}

#[tokio::test]
async fn answered_ring_delivers_media() {
    let rig = bridge().await;
    let (sim, intercom) = (&rig.sim, &rig.intercom);
    let mut rings = intercom.sip().rings();
    let mut ring = sim.ring(20).await.expect("ring");
    let incoming = next_ring(&mut rings).await;
    assert_eq!(
        ring.wait_for(T, |s| s == RingState::Ringing).await,
        Some(RingState::Ringing)
    );
    eventually("the ring shows as ringing", T, || {
        intercom
            .events()
            .ringing()
            .is_some_and(|r| r.call_id == incoming.call_id)
    })
    .await;
    assert_eq!(
        intercom
            .events()
            .rings
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert!(intercom.events().last_ring().is_some());
    let (tx, mut rx) = mpsc::channel(4096);
    let call = intercom.answer_ring(&incoming, tx).await.expect("answer");
    assert!(
        intercom.events().ringing().is_none(),
        "answered: no longer ringing"
    );
    assert_eq!(
        ring.wait_for(T, |s| s == RingState::Answered).await,
        Some(RingState::Answered)
    );
    let seen = collect(&mut rx, Duration::from_millis(2000)).await;
    assert!(
        seen.sps.is_some() && seen.audio > 20,
        "video {} audio {}",
        seen.video,
        seen.audio
    );
    assert_eq!(
        seen.audio_pts,
        [96],
        "the ring's audio PT (mirrored in our answer)"
    );
    call.hangup().await;
    assert_eq!(SimStats::get(&sim.stats().active_calls), 0);
}

/// The next ring the bridge announces (ring ends are skipped).
pub async fn next_ring(
    rings: &mut tokio::sync::broadcast::Receiver<RingEvent>,
) -> c300x_bridge::intercom::sip::IncomingRing {
    loop {
        match tokio::time::timeout(T, rings.recv())
            .await
            .expect("ring in time")
            .expect("ring channel open")
        {
            RingEvent::Incoming(r) => return r,
            RingEvent::Ended(_) => continue,
        }
    }
}

#[tokio::test]
async fn check_passes_against_the_simulator_and_names_the_fix_when_it_cannot() {
    let sim = Simulator::start(SimConfig::default()).await.expect("sim");
    let cfg = config_for(&sim);
    let opts = check::Options {
        message: true,
        call: Some(Duration::from_secs(2)),
    };
    let steps = check::run(&cfg, &opts, |_| {}).await;
    let names: Vec<_> = steps.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "resolve", "sip/tcp", "sip/udp", "register", "options", "commands", "message", "call"
        ]
    );
    assert!(steps.iter().all(|s| s.status == Status::Pass), "{steps:#?}");
    assert!(steps.iter().any(|s| s.detail.contains("400x288")));
    assert_eq!(
        SimStats::get(&sim.stats().active_calls),
        0,
        "the test call was hung up"
    );
    assert_eq!(
        sim.stats().message_bodies(),
        ["GetAswmStatus!"],
        "the dry run sends no frame"
    );

    // Wrong domain: REGISTER 403 names sip_domain.
    let mut wrong = cfg.clone();
    wrong.sip_domain = Some("9.bs.iotleg.com".into());
    let steps = check::run(
        &wrong,
        &check::Options {
            message: false,
            call: None,
        },
        |_| {},
    )
    .await;
    let reg = steps
        .iter()
        .find(|s| s.name == "register")
        .expect("register step");
    assert_eq!(reg.status, Status::Fail);
    assert!(
        reg.fix.as_deref().is_some_and(|f| f.contains("sip_domain")),
        "{reg:?}"
    );

    // Nothing listening: TCP fails and the fix names the flexisip transport edit.
    sim.shutdown().await;
    let steps = check::run(&cfg, &opts, |_| {}).await;
    let tcp = steps
        .iter()
        .find(|s| s.name == "sip/tcp")
        .expect("tcp step");
    assert_eq!(tcp.status, Status::Fail);
    assert!(
        tcp.fix
            .as_deref()
            .is_some_and(|f| f.contains("--transports")),
        "{tcp:?}"
    );
    assert!(
        !steps.iter().any(|s| s.name == "register"),
        "stops before REGISTER"
    );
    // The asked-for test call is reported as skipped, with the reason and the configured port.
    let call = steps.iter().find(|s| s.name == "call").expect("call step");
    assert_eq!(call.status, Status::Skip);
    let port = format!("not reachable on port {}", cfg.intercom_sip_port);
    assert!(call.detail.contains(&port), "{call:?}");
}
