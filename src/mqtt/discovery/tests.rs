//! Golden tests: every discovery payload of a reference configuration against a hand-reviewed
//! JSON file in `tests/golden/mqtt/` (`C300X_UPDATE_GOLDEN=1` rewrites them; review the diff).

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::config::Panel;

fn reference() -> (Config, Topics, Site) {
    let cfg = Config {
        sip_domain: Some("1234567.bs.iotleg.com".into()),
        ..Config::default()
    };
    let topics = Topics::from_config(&cfg).expect("topics");
    let site = Site {
        host: "192.168.1.10".into(),
        sw_version: "0.0.0-test".into(),
    };
    (cfg, topics, site)
}

/// Every entity (the doorbell ones of issue 16 included), checked against golden files.
fn all_configs(cfg: &Config, topics: &Topics, site: &Site) -> Vec<EntityConfig> {
    entity_configs(cfg, topics, site)
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/mqtt")
}

#[test]
fn every_payload_matches_its_golden_file() {
    let (cfg, topics, site) = reference();
    let configs = all_configs(&cfg, &topics, &site);
    let update = std::env::var_os("C300X_UPDATE_GOLDEN").is_some();
    let mut names = Vec::new();
    for c in &configs {
        let name = format!("{}.{}.json", c.platform, c.key);
        let path = golden_dir().join(&name);
        let pretty = serde_json::to_string_pretty(&c.payload).expect("json") + "\n";
        if update {
            std::fs::write(&path, &pretty).expect("write golden");
        }
        let want =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let want: Value = serde_json::from_str(&want).expect("golden is JSON");
        assert_eq!(c.payload, want, "{name} differs from its golden file");
        names.push(name);
    }
    // No stale golden files: each one belongs to an entity.
    let mut on_disk: Vec<String> = std::fs::read_dir(golden_dir())
        .expect("golden dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json"))
        .collect();
    on_disk.sort();
    names.sort();
    assert_eq!(on_disk, names);
}

#[test]
fn topics_ids_and_forbidden_keys() {
    let (cfg, topics, site) = reference();
    let configs = all_configs(&cfg, &topics, &site);
    assert_eq!(configs.len(), 13 + 6);
    // The retired device-level entities are gone, and cleared by topic.
    let retired = retired_config_topics(&topics);
    assert_eq!(retired.len(), 3);
    assert!(configs.iter().all(|c| !retired.contains(&c.topic)));
    let mut ids: Vec<&str> = Vec::new();
    for c in &configs {
        assert_eq!(
            c.topic,
            format!(
                "homeassistant/{}/c300x_1234567/{}/config",
                c.platform, c.key
            )
        );
        let map = c.payload.as_object().expect("object");
        for banned in ["object_id", "default_entity_id", "def_ent_id", "obj_id"] {
            assert!(!map.contains_key(banned), "{} has {banned}", c.key);
        }
        assert_eq!(
            map["device"], configs[0].payload["device"],
            "one shared device block"
        );
        assert_eq!(map["availability_topic"], "c300x/1234567/availability");
        ids.push(map["unique_id"].as_str().expect("unique_id"));
    }
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "unique ids are unique");
}

#[test]
fn several_panels_prefix_the_panel_name() {
    let (mut cfg, _, site) = reference();
    cfg.panels.push(Panel {
        name: "back-gate".into(),
        devaddr: 21,
    });
    let topics = Topics::from_config(&cfg).expect("topics");
    let configs = entity_configs(&cfg, &topics, &site);
    let names: Vec<&str> = configs
        .iter()
        .filter_map(|c| c.payload["name"].as_str())
        .collect();
    for want in [
        "Doorbell doorbell",
        "Back gate doorbell",
        "Back gate streaming allowed",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert_eq!(configs.len(), 13 + 6 + 7 + 5);
    // No two entities share a name (HA would suffix one of them).
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "{names:?}");
}

#[test]
fn urls_and_state_payloads() {
    let (cfg, _, mut site) = reference();
    let p = &cfg.panels[0];
    assert_eq!(
        rtsp_url(&cfg, &site, p),
        "rtsp://192.168.1.10:8554/doorbell"
    );
    assert_eq!(
        snapshot_url(&cfg, &site, p),
        "http://192.168.1.10:8080/api/doorbell/snapshot.jpg"
    );
    site.host = "fd00::5".into();
    assert_eq!(rtsp_url(&cfg, &site, p), "rtsp://[fd00::5]:8554/doorbell");
    // With credentials (configured or generated) the published URLs carry them.
    let private = crate::config::Config {
        rtsp_user: Some("c300x".into()),
        rtsp_password: Some(crate::config::Secret::new("pw")),
        ..cfg.clone()
    };
    assert_eq!(
        snapshot_url(&private, &site, p),
        "http://c300x:pw@[fd00::5]:8080/api/doorbell/snapshot.jpg"
    );
    let at = UNIX_EPOCH + Duration::from_secs(1_709_294_405);
    assert_eq!(rfc3339(at), "2024-03-01T12:00:05+00:00");
    assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00+00:00");
    assert_eq!(
        rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
        "2000-02-29T00:00:00+00:00"
    );
    assert_eq!(display("front-door_2"), "Front door 2");
    assert_eq!((on_off(true), on_off(false)), ("ON", "OFF"));
}

#[test]
fn doorbell_entities_per_panel_with_several_panels() {
    let (mut cfg, _, site) = reference();
    cfg.panels.push(Panel {
        name: "back-gate".into(),
        devaddr: 21,
    });
    let topics = Topics::from_config(&cfg).expect("topics");
    let configs = doorbell_entity_configs(&cfg, &topics, &site);
    assert_eq!(configs.len(), 2 * 5 + 1);
    let find = |key: &str| {
        configs
            .iter()
            .find(|c| c.key == key)
            .unwrap_or_else(|| panic!("{key} missing"))
    };
    let image = find("last_ring_back-gate");
    assert_eq!(image.platform, "image");
    assert_eq!(image.payload["name"], "Back gate last ring");
    assert_eq!(
        image.payload["image_topic"],
        "c300x/1234567/panel/back-gate/ring/image"
    );
    assert_eq!(image.payload["content_type"], "image/jpeg");
    assert_eq!(find("reject_back-gate").payload["name"], "Back gate reject");
    assert_eq!(
        find("hang_up_doorbell").payload["command_topic"],
        "c300x/1234567/panel/doorbell/ring/hang_up/press"
    );
    assert_eq!(find("ringing_doorbell").payload["name"], "Doorbell ringing");
    assert_eq!(find("indoor_ringer").payload["name"], "Indoor ringer");
    // Every command topic of these entities is one the bridge will subscribe to.
    let commands: Vec<String> = topics
        .doorbell_commands(&cfg)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    for c in &configs {
        if let Some(t) = c.payload.get("command_topic").and_then(Value::as_str) {
            assert!(commands.iter().any(|x| x == t), "{t} not subscribed");
        }
    }
}

#[test]
fn ring_event_payload_and_ringer_state() {
    let (cfg, _, site) = reference();
    let p = &cfg.panels[0];
    let at = UNIX_EPOCH + Duration::from_millis(1_709_294_405_250);
    let id = crate::doorbell::RingId::at(at);
    let clip = std::path::PathBuf::from("/media/c300x/doorbell/20240301-120005-250_doorbell.mp4");
    let ev = RingEvent {
        event_type: "missed",
        ring_id: &id,
        panel: p,
        at,
        attributed: false,
        clip: Some(&clip),
        outcome: Some("missed"),
    };
    let v: Value = serde_json::from_str(&ring_event(&cfg, &site, &ev)).expect("json");
    assert_eq!(
        v,
        serde_json::json!({
            "event_type": "missed",
            "ring_id": "20240301-120005-250",
            "panel": "doorbell",
            "devaddr": 20,
            "time": "2024-03-01T12:00:05+00:00",
            "attributed": false,
            "snapshot_url": "http://192.168.1.10:8080/api/doorbell/rings/20240301-120005-250.jpg",
            "clip": "/media/c300x/doorbell/20240301-120005-250_doorbell.mp4",
            "clip_media_id": "media-source://media_source/local/c300x/doorbell/20240301-120005-250_doorbell.mp4",
            "outcome": "missed",
        })
    );
    let ring = RingEvent {
        event_type: "ring",
        clip: None,
        outcome: None,
        ..ev
    };
    let v: Value = serde_json::from_str(&ring_event(&cfg, &site, &ring)).expect("json");
    assert!(v.get("clip").is_none() && v.get("outcome").is_none() && v["event_type"] == "ring");
    assert!(EVENT_TYPES.contains(&"ended") && EVENT_TYPES[0] == "ring");
    assert_eq!(
        media_source_id(std::path::Path::new("/srv/clips/a.mp4")),
        None
    );
    assert_eq!(media_source_id(std::path::Path::new("/media")), None);
    assert_eq!(
        (
            ringer_state(Some(false)),
            ringer_state(Some(true)),
            ringer_state(None)
        ),
        ("ON", "OFF", "None")
    );
}

#[test]
fn camera_setup_states_carry_the_manual_steps() {
    let (cfg, topics, _) = reference();
    let mut cameras = crate::homeassistant::initial(&cfg, "192.168.1.10");
    cameras[0].state = SetupState::Manual {
        reason: "no Home Assistant to talk to".into(),
    };
    let states = camera_setup_states(&topics, &cameras);
    assert_eq!(states.len(), 2);
    assert_eq!(
        states[1],
        (
            "c300x/1234567/panel/doorbell/camera_setup".to_owned(),
            "manual".to_owned()
        )
    );
    let attrs: Value = serde_json::from_str(&states[0].1).expect("json");
    assert_eq!(
        attrs,
        json!({
            "entity_id": "camera.doorbell",
            "detail": "no Home Assistant to talk to",
            "stream_source": "rtsp://192.168.1.10:8554/doorbell",
            "still_image_url": "http://192.168.1.10:8080/api/doorbell/snapshot.jpg",
            "username": null,
            "setup_link": crate::homeassistant::SETUP_LINK,
        })
    );
    cameras[0].state = SetupState::Ready {
        entity_id: "camera.doorbell_2".into(),
        entry_id: "E".into(),
        action: "created".into(),
        note: None,
    };
    let states = camera_setup_states(&topics, &cameras);
    assert_eq!(states[1].1, "ready");
    let attrs: Value = serde_json::from_str(&states[0].1).expect("json");
    assert_eq!(attrs["entity_id"], "camera.doorbell_2");
    assert_eq!(attrs["detail"], "created");
}
