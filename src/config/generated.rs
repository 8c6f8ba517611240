//! Safe defaults for the add-on: on a start with no credentials configured (`rtsp_user`,
//! `rtsp_password` and `api_token` all empty), a user, a random password and a random API token
//! are generated once and kept in `<data>/credentials.json` (mode 0600), so a new install is
//! private without typing. Configured values always win; the file is never overwritten.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, Secret};

/// The file in the add-on's data directory.
pub const FILE: &str = "credentials.json";
/// The user name of generated credentials.
pub const USER: &str = "c300x";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    user: String,
    password: String,
    api_token: String,
}

/// What `apply` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Credentials are configured: nothing generated.
    Configured,
    /// Generated earlier, read from the file.
    Loaded(PathBuf),
    /// Generated now and written to the file.
    Created(PathBuf),
}

fn random_text(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::fill(&mut raw[..]);
    URL_SAFE_NO_PAD.encode(raw)
}

fn read_error(path: &Path, why: String) -> ConfigError {
    ConfigError::Parse {
        path: path.to_owned(),
        message: format!(
            "{why}; it holds the generated credentials — fix it, or delete it to generate new ones"
        ),
    }
}

/// Fills in generated credentials when none are configured, reading or creating `dir/FILE`.
pub fn apply(cfg: &mut Config, dir: &Path) -> Result<Outcome, ConfigError> {
    if cfg.rtsp_user.is_some() || cfg.rtsp_password.is_some() || cfg.api_token.is_some() {
        return Ok(Outcome::Configured);
    }
    let path = dir.join(FILE);
    let (stored, outcome) = match std::fs::read(&path) {
        Ok(bytes) => {
            let stored: Stored =
                serde_json::from_slice(&bytes).map_err(|e| read_error(&path, e.to_string()))?;
            if stored.user.is_empty() || stored.password.is_empty() || stored.api_token.is_empty() {
                return Err(read_error(&path, "an entry is empty".into()));
            }
            (stored, Outcome::Loaded(path))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let stored = Stored {
                user: USER.to_owned(),
                password: random_text(18),
                api_token: random_text(24),
            };
            write_private(&path, &stored).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            (stored, Outcome::Created(path))
        }
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    cfg.rtsp_user = Some(stored.user);
    cfg.rtsp_password = Some(Secret::new(stored.password));
    cfg.api_token = Some(Secret::new(stored.api_token));
    cfg.credentials_generated = true;
    Ok(outcome)
}

/// Writes through a temporary file (mode 0600) and a rename, so a crash leaves no half file.
fn write_private(path: &Path, stored: &Stored) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("json.tmp");
    let json = serde_json::to_vec_pretty(stored).map_err(std::io::Error::other)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&json)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn generated_once_kept_and_never_over_configured_values() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut a = Config::default();
        let Outcome::Created(path) = apply(&mut a, dir.path()).expect("created") else {
            panic!("expected a new file");
        };
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(a.rtsp_user.as_deref(), Some(USER));
        let pw = a.rtsp_password.clone().expect("password");
        assert!(pw.expose().len() >= 24);
        assert!(a.api_token.as_ref().is_some_and(|t| t.expose().len() >= 32));
        assert!(a.credentials_generated);
        // A restart reads the same values.
        let mut b = Config::default();
        assert!(matches!(apply(&mut b, dir.path()), Ok(Outcome::Loaded(_))));
        assert_eq!(b.rtsp_password, Some(pw));
        assert_eq!(a.api_token, b.api_token);
        // Configured credentials win and the file is left alone.
        let mut c = Config {
            api_token: Some(Secret::new("mine")),
            ..Config::default()
        };
        assert_eq!(apply(&mut c, dir.path()).expect("ok"), Outcome::Configured);
        assert_eq!(c.rtsp_user, None);
        assert!(!c.credentials_generated);
        // A damaged file is an error naming it, not a silent new password.
        std::fs::write(&path, b"{").expect("write");
        let e = apply(&mut Config::default(), dir.path()).expect_err("damaged");
        assert!(e.to_string().contains(FILE), "{e}");
    }
}
