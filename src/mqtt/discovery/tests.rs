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

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/mqtt")
}

#[test]
fn every_payload_matches_its_golden_file() {
    let (cfg, topics, site) = reference();
    let configs = entity_configs(&cfg, &topics, &site);
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
    let configs = entity_configs(&cfg, &topics, &site);
    assert_eq!(configs.len(), 15);
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
    assert_eq!(configs.len(), 15 + 6);
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
    assert_eq!(
        doorbell_event("ring", p, at),
        r#"{"devaddr":20,"event_type":"ring","panel":"doorbell","time":"2024-03-01T12:00:05+00:00"}"#
    );
    assert_eq!(display("front-door_2"), "Front door 2");
    assert_eq!((on_off(true), on_off(false)), ("ON", "OFF"));
}
