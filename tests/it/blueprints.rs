//! The shipped Home Assistant blueprints (blueprints/automation/c300x_bridge/): valid YAML with
//! HA's `!input` tags, every declared input used and every used input declared, templates with
//! balanced braces, `source_url` pointing at the file in this repository, the event attributes
//! they read present in the bridge's doorbell event payload, and DOCS.md linking each one through
//! my.home-assistant.io. (HA's own check_config runs on them in tests/ha/check_blueprints.py.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use c300x_bridge::config::Config;
use c300x_bridge::doorbell::RingId;
use c300x_bridge::mqtt::discovery::{EVENT_TYPES, RingEvent, Site, ring_event};
use serde_norway::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn blueprints() -> Vec<PathBuf> {
    let dir = root().join("blueprints/automation/c300x_bridge");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("blueprint folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Every `!input name` in `v`, and every string (for template checks).
fn walk(v: &Value, inputs: &mut BTreeSet<String>, strings: &mut Vec<String>) {
    match v {
        Value::Tagged(t) if t.tag == "input" => {
            inputs.insert(t.value.as_str().expect("!input takes a name").to_owned());
        }
        Value::Tagged(t) => walk(&t.value, inputs, strings),
        Value::Mapping(m) => {
            for (k, v) in m {
                walk(k, inputs, strings);
                walk(v, inputs, strings);
            }
        }
        Value::Sequence(s) => s.iter().for_each(|v| walk(v, inputs, strings)),
        Value::String(s) => strings.push(s.clone()),
        _ => {}
    }
}

/// `https://github.com/...` percent-encoded as a query value.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn blueprints_are_valid_and_use_exactly_their_inputs() {
    let files = blueprints();
    assert_eq!(files.len(), 2, "{files:?}");
    let manifest: Value =
        serde_norway::from_str(&std::fs::read_to_string(root().join("config.yaml")).expect("read"))
            .expect("config.yaml");
    let repo = manifest["url"].as_str().expect("repository url");
    let docs = std::fs::read_to_string(root().join("DOCS.md")).expect("DOCS.md");
    // The attributes the bridge puts on a doorbell event.
    let at = UNIX_EPOCH + Duration::from_secs(1_709_294_405);
    let cfg = Config::default();
    let site = Site {
        host: "192.168.1.10".into(),
        sw_version: "test".into(),
    };
    let payload: serde_json::Value = serde_json::from_str(&ring_event(
        &cfg,
        &site,
        &RingEvent {
            event_type: "ring",
            ring_id: &RingId::at(at),
            panel: &cfg.panels[0],
            at,
            attributed: true,
            clip: None,
            outcome: None,
        },
    ))
    .expect("event json");
    for file in files {
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&file).expect("read");
        let doc: Value = serde_norway::from_str(&text)
            .unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"));
        let bp = &doc["blueprint"];
        assert_eq!(bp["domain"], "automation", "{name}");
        assert!(bp["name"].as_str().is_some_and(|n| n.len() > 10), "{name}");
        let source = bp["source_url"].as_str().expect("source_url");
        let relative = file
            .strip_prefix(root())
            .expect("in repo")
            .to_string_lossy();
        assert_eq!(source, format!("{repo}/blob/main/{relative}"), "{name}");
        let declared: BTreeSet<String> = bp["input"]
            .as_mapping()
            .expect("inputs")
            .keys()
            .map(|k| k.as_str().expect("input name").to_owned())
            .collect();
        let (mut used, mut strings) = (BTreeSet::new(), Vec::new());
        for key in ["trigger", "condition", "variables", "action"] {
            walk(&doc[key], &mut used, &mut strings);
        }
        assert_eq!(used, declared, "{name}: declared vs used inputs");
        for s in &strings {
            assert_eq!(
                s.matches("{{").count(),
                s.matches("}}").count(),
                "{name}: unbalanced template {s:?}"
            );
        }
        // What the templates read from the event exists in the bridge's payload.
        for s in &strings {
            for part in s.split("trigger.to_state.attributes.").skip(1) {
                let attr: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    payload.get(&attr).is_some(),
                    "{name} reads attribute {attr}, which the doorbell event does not carry"
                );
            }
            for part in s.split("event_type == '").skip(1) {
                let wanted = part.split('\'').next().unwrap_or_default();
                assert!(EVENT_TYPES.contains(&wanted), "{name}: event type {wanted}");
            }
        }
        let import = format!(
            "https://my.home-assistant.io/redirect/blueprint_import/?blueprint_url={}",
            url_encode(source)
        );
        assert!(
            docs.contains(&import),
            "DOCS.md lacks the import link {import}"
        );
    }
}
