//! The decision for one panel, pure: given the entry this bridge remembers (from its data
//! directory) and the Generic Camera entries HA has (with the settings read back from each),
//! keep, update or create — so a restart never makes a second camera, a changed port updates
//! the existing one, and a camera someone added by hand with our URLs is adopted, not doubled.

use super::flow::{EntrySettings, differences};
use super::source::CameraSource;

/// A Generic Camera entry in HA, with its settings when they could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownEntry {
    pub entry_id: String,
    pub title: String,
    pub settings: Option<EntrySettings>,
}

/// What to do for one panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The entry is up to date.
    Keep { entry_id: String, adopted: bool },
    /// The entry exists but these settings changed: run its options flow.
    Update {
        entry_id: String,
        changed: Vec<&'static str>,
        adopted: bool,
    },
    /// No entry of ours: run the config flow.
    Create {
        /// The remembered entry is gone from HA (deleted by a user, or another HA).
        remembered_missing: Option<String>,
    },
}

/// Decides for one panel. `remembered`: the entry id stored for it, if any.
pub fn plan(remembered: Option<&str>, entries: &[KnownEntry], want: &CameraSource) -> Plan {
    let settled = |e: &KnownEntry, adopted: bool| {
        let changed = e
            .settings
            .as_ref()
            .map_or_else(Vec::new, |s| differences(s, want));
        if changed.is_empty() {
            Plan::Keep {
                entry_id: e.entry_id.clone(),
                adopted,
            }
        } else {
            Plan::Update {
                entry_id: e.entry_id.clone(),
                changed,
                adopted,
            }
        }
    };
    if let Some(id) = remembered
        && let Some(e) = entries.iter().find(|e| e.entry_id == id)
    {
        return settled(e, false);
    }
    // Not remembered (first run, or the data directory was lost): an entry with exactly our
    // URLs, else one that points at this bridge's panel on other ports.
    let with = |test: &dyn Fn(&EntrySettings) -> bool| {
        entries
            .iter()
            .find(|e| e.settings.as_ref().is_some_and(test))
    };
    let exact = |s: &EntrySettings| {
        s.stream_source.as_deref() == Some(want.stream_source.as_str())
            || s.still_image_url.as_deref() == Some(want.still_image_url.as_str())
    };
    let same_panel = |s: &EntrySettings| {
        same_place(s.stream_source.as_deref(), &want.stream_source)
            && same_place(s.still_image_url.as_deref(), &want.still_image_url)
    };
    if let Some(e) = with(&exact).or_else(|| with(&same_panel)) {
        return settled(e, true);
    }
    Plan::Create {
        remembered_missing: remembered.map(str::to_owned),
    }
}

/// `(entry_id, title)` of each entry in `GET /api/config/config_entries/entry?domain=generic`
/// (filtered again by domain: older HAs ignore the query).
pub fn entries_from_list(list: &serde_json::Value) -> Vec<(String, String)> {
    let Some(items) = list.as_array() else {
        return Vec::new();
    };
    items
        .iter()
        .filter(|e| e.get("domain").and_then(|d| d.as_str()) == Some("generic"))
        .filter_map(|e| {
            let id = e.get("entry_id")?.as_str()?.to_owned();
            let title = e.get("title").and_then(|t| t.as_str()).unwrap_or("");
            Some((id, title.to_owned()))
        })
        .collect()
}

/// Same scheme, host and path, any port (and any credentials in the URL).
fn same_place(have: Option<&str>, want: &str) -> bool {
    match (have.and_then(split_url), split_url(want)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// `(scheme, host, path)` of `scheme://[user[:pw]@]host[:port]/path`.
fn split_url(url: &str) -> Option<(String, String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split_once(']')?.0
    } else {
        host_port.split(':').next()?
    };
    Some((
        scheme.to_ascii_lowercase(),
        host.to_ascii_lowercase(),
        path.to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::homeassistant::source::Authentication;

    fn want() -> CameraSource {
        CameraSource {
            stream_source: "rtsp://192.168.1.10:8554/doorbell".into(),
            still_image_url: "http://192.168.1.10:8080/api/doorbell/snapshot.jpg".into(),
            username: None,
            password: None,
            authentication: Authentication::Basic,
        }
    }

    fn entry(id: &str, stream: &str, still: &str) -> KnownEntry {
        KnownEntry {
            entry_id: id.into(),
            title: "x".into(),
            settings: Some(EntrySettings {
                stream_source: Some(stream.into()),
                still_image_url: Some(still.into()),
                rtsp_transport: Some("tcp".into()),
                authentication: Some("basic".into()),
                ..EntrySettings::default()
            }),
        }
    }

    const STREAM: &str = "rtsp://192.168.1.10:8554/doorbell";
    const STILL: &str = "http://192.168.1.10:8080/api/doorbell/snapshot.jpg";

    #[test]
    fn table() {
        let other = entry("o", "rtsp://10.0.0.9/live", "http://10.0.0.9/snap.jpg");
        let ours = entry("a", STREAM, STILL);
        let moved = entry("a", "rtsp://192.168.1.10:9554/doorbell", STILL);
        let elsewhere_moved = entry("m", "rtsp://192.168.1.10:9554/doorbell", STILL);
        let ports_moved = entry(
            "p",
            "rtsp://192.168.1.10:9554/doorbell",
            "http://192.168.1.10:9080/api/doorbell/snapshot.jpg",
        );
        let unreadable = KnownEntry {
            settings: None,
            ..ours.clone()
        };
        type Case<'a> = (&'a str, Option<&'a str>, Vec<KnownEntry>, Plan);
        let cases: Vec<Case> = vec![
            (
                "first run, HA empty",
                None,
                vec![],
                Plan::Create {
                    remembered_missing: None,
                },
            ),
            (
                "first run, only someone else's camera",
                None,
                vec![other.clone()],
                Plan::Create {
                    remembered_missing: None,
                },
            ),
            (
                "restart: remembered and unchanged",
                Some("a"),
                vec![other.clone(), ours.clone()],
                Plan::Keep {
                    entry_id: "a".into(),
                    adopted: false,
                },
            ),
            (
                "restart after an RTSP port change",
                Some("a"),
                vec![moved.clone()],
                Plan::Update {
                    entry_id: "a".into(),
                    changed: vec!["stream_source"],
                    adopted: false,
                },
            ),
            (
                "remembered entry deleted in HA",
                Some("gone"),
                vec![other.clone()],
                Plan::Create {
                    remembered_missing: Some("gone".into()),
                },
            ),
            (
                "data dir lost: the entry with our URLs is adopted",
                None,
                vec![other.clone(), ours.clone()],
                Plan::Keep {
                    entry_id: "a".into(),
                    adopted: true,
                },
            ),
            (
                "data dir lost and a port changed: same host and path",
                None,
                vec![elsewhere_moved],
                Plan::Update {
                    entry_id: "m".into(),
                    changed: vec!["stream_source"],
                    adopted: true,
                },
            ),
            (
                "both ports changed",
                None,
                vec![ports_moved],
                Plan::Update {
                    entry_id: "p".into(),
                    changed: vec!["stream_source", "still_image_url"],
                    adopted: true,
                },
            ),
            (
                "remembered but its settings could not be read: keep it",
                Some("a"),
                vec![unreadable],
                Plan::Keep {
                    entry_id: "a".into(),
                    adopted: false,
                },
            ),
        ];
        for (name, remembered, entries, expected) in cases {
            assert_eq!(plan(remembered, &entries, &want()), expected, "{name}");
        }
    }

    #[test]
    fn credentials_changes_are_updates() {
        let mut w = want();
        w.username = Some("viewer".into());
        w.password = Some("pw".into());
        let p = plan(Some("a"), &[entry("a", STREAM, STILL)], &w);
        assert_eq!(
            p,
            Plan::Update {
                entry_id: "a".into(),
                changed: vec!["username", "password"],
                adopted: false
            }
        );
    }

    #[test]
    fn urls_split_into_scheme_host_path() {
        assert_eq!(
            split_url("rtsp://u:p@[fd00::1]:8554/doorbell"),
            Some(("rtsp".into(), "fd00::1".into(), "/doorbell".into()))
        );
        assert_eq!(
            split_url("HTTP://Host"),
            Some(("http".into(), "host".into(), "/".into()))
        );
        assert_eq!(split_url("nonsense"), None);
        assert!(same_place(
            Some("rtsp://192.168.1.10:1/doorbell"),
            "rtsp://192.168.1.10:2/doorbell"
        ));
        assert!(!same_place(
            Some("rtsp://192.168.1.10:1/garden"),
            "rtsp://192.168.1.10:2/doorbell"
        ));
    }
}
