//! What the bridge remembers about the cameras it made: `<data_dir>/homeassistant.json`, panel →
//! entry id (HA itself does not de-duplicate Generic Cameras). Written atomically (temp file +
//! rename); an unreadable file is reported and treated as empty (the plan then adopts by URL).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Config;

/// The file name inside the data directory.
pub const FILE: &str = "homeassistant.json";

/// One panel's camera as remembered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remembered {
    pub entry_id: String,
    /// The entity id after our rename (`camera.<panel>`); `None` until renamed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    #[serde(default)]
    pub cameras: BTreeMap<String, Remembered>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not the bridge's JSON ({source}); starting afresh", .path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write {}: {source} (set data_dir to a writable directory)", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The data directory: `data_dir`, else `/data` when it exists (the add-on), else
/// `$XDG_STATE_HOME/c300x-bridge` or `~/.local/state/c300x-bridge`, else `./c300x-data`.
pub fn data_dir(cfg: &Config) -> PathBuf {
    if let Some(d) = &cfg.data_dir {
        return d.clone();
    }
    let addon = Path::new("/data");
    if addon.is_dir() && std::env::var_os("SUPERVISOR_TOKEN").is_some() {
        return addon.to_owned();
    }
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(state) = env("XDG_STATE_HOME") {
        return state.join("c300x-bridge");
    }
    if let Some(home) = env("HOME") {
        return home.join(".local/state/c300x-bridge");
    }
    PathBuf::from("c300x-data")
}

/// Reads `<dir>/homeassistant.json`; a missing file is an empty store.
pub fn load(dir: &Path) -> Result<Stored, StoreError> {
    let path = dir.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Stored::default()),
        Err(source) => return Err(StoreError::Read { path, source }),
    };
    serde_json::from_str(&text).map_err(|source| StoreError::Parse { path, source })
}

/// Writes the store (creating the directory).
pub fn save(dir: &Path, stored: &Stored) -> Result<(), StoreError> {
    let path = dir.join(FILE);
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!("{FILE}.tmp"));
        let text = serde_json::to_string_pretty(stored).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text + "\n")?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|source| StoreError::Write { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_missing_and_broken_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let sub = dir.path().join("state");
        assert_eq!(load(&sub).expect("missing is empty"), Stored::default());
        let mut s = Stored::default();
        s.cameras.insert(
            "doorbell".into(),
            Remembered {
                entry_id: "01ABC".into(),
                entity_id: Some("camera.doorbell".into()),
            },
        );
        save(&sub, &s).expect("save");
        assert_eq!(load(&sub).expect("load"), s);
        std::fs::write(sub.join(FILE), "{not json").expect("write");
        let e = load(&sub).expect_err("broken");
        assert!(e.to_string().contains("homeassistant.json"), "{e}");
    }

    #[test]
    fn data_dir_prefers_the_option() {
        let cfg = Config {
            data_dir: Some("/srv/c300x".into()),
            ..Config::default()
        };
        assert_eq!(data_dir(&cfg), PathBuf::from("/srv/c300x"));
    }
}
