//! The MQTT side against a real mosquitto (started per test on an ephemeral port, config in a
//! temp dir, killed by PID) and the simulator: retained discovery, ring → doorbell event, UNLOCK
//! → both OWN frames and UNLOCKING→UNLOCKED→LOCKED, a ring answered through the hub turning
//! `ringing` OFF, broker restart, HA birth, no replay of a retained command, voicemail, clean
//! offline, and `remove_device`.

mod harness;

use std::time::{Duration, Instant};

use c300x_bridge::homeassistant::{SETUP_LINK, SetupState};
use c300x_bridge::mqtt;
use c300x_bridge::sim::SimConfig;
use serde_json::Value;

pub use harness::{Broker, Msg, Rig, Watcher, configs};

const T: Duration = Duration::from_secs(10);
/// Discovery configs for one panel and one lock (see tests/golden/mqtt/).
pub const CONFIGS: usize = 19;

fn online(topic: String) -> impl Fn(&[Msg]) -> bool {
    move |m| m.iter().any(|m| m.topic == topic && m.payload == "online")
}

#[tokio::test]
async fn discovery_is_retained_and_a_ring_becomes_an_event() {
    let broker = Broker::start();
    let rig = Rig::start(&broker).await;
    let early = Watcher::start(broker.port, "early").await;
    early
        .wait("states", |m| {
            m.iter()
                .any(|m| m.topic.ends_with("/sip_registered") && m.payload == "ON")
        })
        .await;
    // The indoor ringer's state comes from the unit's answer to our status query.
    let ringer = rig.t("ringer");
    early
        .wait("the ringer's state", |m| {
            m.iter().any(|m| m.topic == ringer && m.payload == "ON")
        })
        .await;
    // A client that comes later gets everything from the broker's retained store.
    let late = Watcher::start(broker.port, "late").await;
    late.wait("retained configs", |m| configs(m) == CONFIGS)
        .await;
    let all = late.all();
    assert!(all.iter().all(|m| m.retain), "all retained at subscribe");
    let door = all
        .iter()
        .find(|m| m.topic == format!("homeassistant/lock/{}/lock_door/config", rig.node))
        .expect("lock config");
    let door: Value = serde_json::from_str(&door.payload).expect("json");
    assert_eq!(door["command_topic"], rig.t("lock/door/set"));
    assert_eq!(late.on(&rig.t("availability"))[0].payload, "online");
    assert_eq!(late.on(&rig.t("lock/door"))[0].payload, "LOCKED");
    assert_eq!(
        late.on(&rig.t("panel/doorbell/rtsp_url"))[0].payload,
        format!("rtsp://127.0.0.1:{}/doorbell", rig.cfg.rtsp_port)
    );

    let rang = Instant::now();
    let _ring = rig.sim.ring(20).await.expect("ring");
    let topic = rig.t("panel/doorbell/doorbell");
    late.wait("doorbell event", |m| m.iter().any(|m| m.topic == topic))
        .await;
    let ev = late.on(&topic)[0].clone();
    assert!(
        ev.at - rang < Duration::from_secs(1),
        "event after {:?}",
        ev.at - rang
    );
    assert!(!ev.retain, "events are never retained");
    let ev: Value = serde_json::from_str(&ev.payload).expect("json");
    assert_eq!(ev["event_type"], "ring");
    assert_eq!(ev["panel"], "doorbell");
    assert_eq!(ev["devaddr"], 20);
    assert_eq!(
        rig.intercom
            .events()
            .rings
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert!(ev["time"].as_str().is_some_and(|t| t.ends_with("+00:00")));
    let ringing = rig.t("panel/doorbell/ringing");
    late.wait("ringing ON", |m| {
        m.iter().any(|m| m.topic == ringing && m.payload == "ON")
    })
    .await;
    let last = rig.t("last_ring");
    late.wait("last ring", |m| {
        m.iter().any(|m| m.topic == last && m.payload.contains('T'))
    })
    .await;
    rig.stop().await;
}

#[tokio::test]
async fn unlock_sends_both_frames_and_publishes_the_state_sequence() {
    let broker = Broker::start();
    let rig = Rig::start(&broker).await;
    let w = Watcher::start(broker.port, "w").await;
    w.wait("online", online(rig.t("availability"))).await;
    let (set, state) = (rig.t("lock/door/set"), rig.t("lock/door"));
    w.publish(&set, "NOT-A-COMMAND", false).await;
    w.publish(&set, "UNLOCK", false).await;
    let st = state.clone();
    w.wait("LOCKED after UNLOCKED", move |m| {
        let seq: Vec<&str> = m
            .iter()
            .filter(|m| m.topic == st)
            .map(|m| m.payload.as_str())
            .collect();
        seq.ends_with(&["UNLOCKING", "UNLOCKED", "LOCKED"])
    })
    .await;
    assert_eq!(rig.unlock_frames(), ["*8*19*20##", "*8*20*20##"]);
    // LOCK cannot lock a strike: it only re-publishes LOCKED.
    let before = w.on(&state).len();
    w.publish(&set, "LOCK", false).await;
    let st = state.clone();
    w.wait("LOCKED again", move |m| {
        m.iter().filter(|m| m.topic == st).count() > before
    })
    .await;
    assert_eq!(
        w.on(&state).last().map(|m| m.payload.as_str()),
        Some("LOCKED")
    );
    assert_eq!(
        rig.unlock_frames().len(),
        2,
        "garbage and LOCK sent nothing"
    );
    rig.stop().await;
}

#[tokio::test]
async fn a_failed_unlock_shows_jammed() {
    let broker = Broker::start();
    let rig = Rig::start(&broker).await;
    let w = Watcher::start(broker.port, "w").await;
    w.wait("online", online(rig.t("availability"))).await;
    rig.sim
        .require_digest(Some(("c300x-bridge".into(), "secret".into())))
        .expect("digest");
    w.publish(&rig.t("lock/door/set"), "OPEN", false).await;
    let st = rig.t("lock/door");
    w.wait("JAMMED", move |m| {
        m.iter().any(|m| m.topic == st && m.payload == "JAMMED")
    })
    .await;
    assert!(rig.unlock_frames().is_empty());
    rig.stop().await;
}

#[tokio::test]
async fn broker_restart_reconnects_and_brings_states_back() {
    let mut broker = Broker::start();
    let rig = Rig::start(&broker).await;
    let w = Watcher::start(broker.port, "before").await;
    w.wait("online", online(rig.t("availability"))).await;
    drop(w);
    broker.restart();
    // The new broker knows nothing: what a new client sees was re-published by the bridge.
    let w = Watcher::start(broker.port, "after").await;
    w.wait("online again", online(rig.t("availability"))).await;
    w.wait("configs again", |m| configs(m) >= CONFIGS).await;
    let (lock, sip) = (rig.t("lock/door"), rig.t("sip_registered"));
    w.wait("states again", move |m| {
        m.iter().any(|m| m.topic == lock && m.payload == "LOCKED")
            && m.iter().any(|m| m.topic == sip && m.payload == "ON")
    })
    .await;
    // And commands work on the new connection.
    w.publish(&rig.t("lock/door/set"), "UNLOCK", false).await;
    let st = rig.t("lock/door");
    w.wait("UNLOCKED", move |m| {
        m.iter().any(|m| m.topic == st && m.payload == "UNLOCKED")
    })
    .await;
    assert_eq!(rig.unlock_frames(), ["*8*19*20##", "*8*20*20##"]);
    rig.stop().await;
}

#[tokio::test]
async fn home_assistant_birth_republishes_everything() {
    let broker = Broker::start();
    let rig = Rig::start(&broker).await;
    let w = Watcher::start(broker.port, "w").await;
    w.wait("configs", |m| configs(m) == CONFIGS).await;
    let lock = rig.t("lock/door");
    let locked = |m: &[Msg]| m.iter().filter(|m| m.topic == lock).count();
    let before = locked(&w.all());
    w.publish("homeassistant/status", "online", false).await;
    w.wait("configs twice", |m| configs(m) == 2 * CONFIGS).await;
    w.wait("lock state again", |m| locked(m) > before).await;
    // Re-published live, not from the retained store.
    assert!(w.all().iter().rev().take(CONFIGS).all(|m| !m.retain));
    w.publish("homeassistant/status", "offline", false).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(configs(&w.all()), 2 * CONFIGS, "offline triggers nothing");
    rig.stop().await;
}

#[tokio::test]
async fn a_retained_unlock_at_connect_is_not_replayed() {
    let broker = Broker::start();
    // Every simulator has the default domain, so the topic is known before it starts.
    let id = c300x_bridge::mqtt::topics::device_id(&SimConfig::default().domain).expect("id");
    let set = format!("c300x/{id}/lock/door/set");
    let stale = Watcher::start(broker.port, "stale").await;
    stale.publish(&set, "UNLOCK", true).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rig = Rig::start(&broker).await;
    stale.wait("online", online(rig.t("availability"))).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        rig.unlock_frames().is_empty(),
        "the stale UNLOCK opened the door"
    );
    // The bridge cleared it: a new subscriber finds no retained command.
    let later = Watcher::start(broker.port, "later").await;
    later
        .wait("retained configs", |m| configs(m) == CONFIGS)
        .await;
    assert!(later.on(&set).is_empty(), "{:?}", later.on(&set));
    // A live UNLOCK still works.
    later.publish(&set, "UNLOCK", false).await;
    let st = rig.t("lock/door");
    later
        .wait("UNLOCKED", move |m| {
            m.iter().any(|m| m.topic == st && m.payload == "UNLOCKED")
        })
        .await;
    rig.stop().await;
}

#[tokio::test]
async fn voicemail_switch_and_clean_offline() {
    let broker = Broker::start();
    let rig = Rig::start(&broker).await;
    let w = Watcher::start(broker.port, "w").await;
    // The unit's GetAswmStatus! reply (sent when SIP registers) gives the initial state.
    let vm = rig.t("voicemail");
    let v = vm.clone();
    w.wait("voicemail OFF", move |m| {
        m.iter().any(|m| m.topic == v && m.payload == "OFF")
    })
    .await;
    w.publish(&rig.t("voicemail/set"), "ON", false).await;
    let v = vm.clone();
    w.wait("voicemail ON", move |m| {
        m.iter().any(|m| m.topic == v && m.payload == "ON")
    })
    .await;
    assert!(
        rig.sim
            .stats()
            .message_bodies()
            .contains(&"*8*91##".to_owned())
    );
    let avail = rig.t("availability");
    rig.stop().await;
    w.wait("offline", move |m| {
        m.iter().any(|m| m.topic == avail && m.payload == "offline")
    })
    .await;
}

#[tokio::test]
async fn remove_device_clears_every_config() {
    let broker = Broker::start();
    let rig = Rig::start(&broker).await;
    let w = Watcher::start(broker.port, "w").await;
    w.wait("configs", |m| configs(m) == CONFIGS).await;
    let cfg = rig.cfg.clone();
    rig.stop().await;
    mqtt::remove_device(&broker.settings(), &cfg)
        .await
        .expect("remove");
    let later = Watcher::start(broker.port, "later").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(configs(&later.all()), 0, "{:?}", later.all());
}

/// Issue 11, fault 4: a ring answered through the hub (what the HTTP API's ring-answer does)
/// turns `ringing` OFF; it used to stay ON until the next ring.
#[tokio::test]
async fn a_ring_answered_through_the_hub_turns_ringing_off() {
    let broker = Broker::start();
    let rig = Rig::start(&broker).await;
    let w = Watcher::start(broker.port, "ringing").await;
    let ringing = rig.t("panel/doorbell/ringing");
    let mut rings = rig.intercom.sip().rings();
    let _ring = rig.sim.ring(20).await.expect("ring");
    let incoming = crate::intercom_calls::next_ring(&mut rings).await;
    w.wait("ringing ON", |m| {
        m.iter().any(|m| m.topic == ringing && m.payload == "ON")
    })
    .await;
    rig.hub.answer_ring(incoming).await.expect("answered");
    w.wait("ringing OFF after the answer", |m| {
        m.iter()
            .rev()
            .find(|m| m.topic == ringing)
            .is_some_and(|m| m.payload == "OFF")
    })
    .await;
    let doorbell = rig.t("panel/doorbell/doorbell");
    assert!(
        !w.on(&doorbell).iter().any(|m| m.payload.contains("missed")),
        "an answered ring is not missed"
    );
    rig.hub.hang_up();
    rig.stop().await;
}

#[tokio::test]
async fn camera_setup_sensor_shows_why_and_how_to_add_it_by_hand() {
    let broker = Broker::start();
    let rig = Rig::start(&broker).await;
    let w = Watcher::start(broker.port, "camera").await;
    let state = rig.t("panel/doorbell/camera_setup");
    w.wait("initial state", |m| {
        m.iter().any(|m| m.topic == state && m.payload == "waiting")
    })
    .await;
    rig.camera.send_modify(|all| {
        all[0].state = SetupState::Manual {
            reason: "cannot reach Home Assistant: connection refused".into(),
        }
    });
    w.wait("manual", |m| {
        m.iter().any(|m| m.topic == state && m.payload == "manual")
    })
    .await;
    let attributes = w.on(&format!("{state}/attributes"));
    let last: Value =
        serde_json::from_str(&attributes.last().expect("attributes").payload).expect("json");
    assert_eq!(last["setup_link"], SETUP_LINK);
    assert_eq!(
        last["detail"],
        "cannot reach Home Assistant: connection refused"
    );
    assert_eq!(
        last["stream_source"],
        format!("rtsp://127.0.0.1:{}/doorbell", rig.cfg.rtsp_port)
    );
    assert_eq!(
        last["still_image_url"],
        format!(
            "http://127.0.0.1:{}/api/doorbell/snapshot.jpg",
            rig.cfg.http_port
        )
    );
    assert_eq!(last["entity_id"], "camera.doorbell");
    rig.stop().await;
}
