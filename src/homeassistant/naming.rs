//! Naming the camera after its panel, pure: HA titles a new Generic Camera after the URL's host
//! (`camera.192_168_1_10`); we rename the entity to `camera.<panel>` and the entry to the panel's
//! display name over the websocket API. A camera someone renamed by hand keeps its name.

use serde_json::{Value, json};

use super::source;
use crate::config::Panel;
use crate::mqtt::discovery::display;

/// The entity id HA derives from a URL host (its `slugify`: lower case, runs of anything but
/// `a-z0-9` become one `_`, no `_` at the ends).
pub fn slug(host: &str) -> String {
    let mut out = String::new();
    for c in host.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_owned()
}

/// The host of a URL (`scheme://[user@]host[:port]/…`), brackets removed.
pub fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host_port.strip_prefix('[') {
        Some(v6) => Some(v6.split_once(']')?.0),
        None => host_port.split(':').next(),
    }
}

/// The entity id to give the camera, or `None` to leave it. Ours (created by the bridge) are
/// always renamed; an adopted one only while it still has HA's host-derived default id.
pub fn rename_target(
    current: &str,
    created_by_us: bool,
    url_host: &str,
    panel: &Panel,
) -> Option<String> {
    let target = source::entity_id(panel);
    if current == target {
        return None;
    }
    let default = format!("camera.{}", slug(url_host));
    let is_default = current == default
        || current
            .strip_prefix(&default)
            .and_then(|rest| rest.strip_prefix('_'))
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        || current.starts_with("camera.generic_camera");
    (created_by_us || is_default).then_some(target)
}

/// The camera entity of a config entry in `config/entity_registry/list`'s result.
pub fn entity_of_entry(list: &Value, entry_id: &str) -> Option<String> {
    list.as_array()?.iter().find_map(|e| {
        let ours = e.get("config_entry_id").and_then(Value::as_str) == Some(entry_id);
        let id = e.get("entity_id").and_then(Value::as_str)?;
        (ours && id.starts_with("camera.")).then(|| id.to_owned())
    })
}

/// `config/entity_registry/update`: the new id and the display name ("Doorbell").
pub fn entity_update(current: &str, target: &str, panel: &Panel) -> Value {
    json!({
        "type": "config/entity_registry/update",
        "entity_id": current,
        "new_entity_id": target,
        "name": display(&panel.name),
    })
}

/// `config_entries/update`: the entry's title ("Doorbell").
pub fn title_update(entry_id: &str, panel: &Panel) -> Value {
    json!({"type": "config_entries/update", "entry_id": entry_id, "title": display(&panel.name)})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panel() -> Panel {
        Panel {
            name: "doorbell".into(),
            devaddr: 20,
        }
    }

    #[test]
    fn slugs_and_hosts() {
        assert_eq!(slug("192.168.1.10"), "192_168_1_10");
        assert_eq!(slug("Home-Assistant.local"), "home_assistant_local");
        assert_eq!(slug("fd00::5"), "fd00_5");
        assert_eq!(
            url_host("rtsp://u:p@127.0.0.1:8554/doorbell"),
            Some("127.0.0.1")
        );
        assert_eq!(url_host("http://[fd00::5]:8080/x"), Some("fd00::5"));
        assert_eq!(url_host("garbage"), None);
    }

    #[test]
    fn who_gets_renamed() {
        let p = panel();
        let t = Some("camera.doorbell".to_owned());
        assert_eq!(rename_target("camera.127_0_0_1", true, "127.0.0.1", &p), t);
        assert_eq!(
            rename_target("camera.doorbell", true, "127.0.0.1", &p),
            None
        );
        // Adopted: only HA's own defaults.
        assert_eq!(
            rename_target("camera.127_0_0_1_2", false, "127.0.0.1", &p),
            t
        );
        assert_eq!(rename_target("camera.generic_camera", false, "x", &p), t);
        assert_eq!(
            rename_target("camera.front_door", false, "127.0.0.1", &p),
            None
        );
        assert_eq!(
            rename_target("camera.127_0_0_1_x", false, "127.0.0.1", &p),
            None
        );
        // Ours, renamed by the user later: still ours, renamed back only if not yet named (the
        // caller remembers that it named it once).
        assert_eq!(rename_target("camera.front_door", true, "127.0.0.1", &p), t);
    }

    #[test]
    fn registry_lookup_and_commands() {
        let list = json!([
            {"entity_id": "event.x", "config_entry_id": "E1"},
            {"entity_id": "camera.127_0_0_1", "config_entry_id": "E1"},
            {"entity_id": "camera.other", "config_entry_id": "E2"},
        ]);
        assert_eq!(
            entity_of_entry(&list, "E1").as_deref(),
            Some("camera.127_0_0_1")
        );
        assert_eq!(entity_of_entry(&list, "E3"), None);
        let u = entity_update("camera.127_0_0_1", "camera.doorbell", &panel());
        assert_eq!(u["new_entity_id"], "camera.doorbell");
        assert_eq!(u["name"], "Doorbell");
        assert_eq!(title_update("E1", &panel())["title"], "Doorbell");
    }
}
