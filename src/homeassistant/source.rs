//! What Home Assistant's Generic Camera gets for one panel: the RTSP stream source, the snapshot
//! URL and the credentials — built in ONE place (`camera_source`) so that the access model can
//! swap in its own URL builder (signed tokens) without touching the setup logic. Also the
//! my.home-assistant.io link that opens the Generic Camera dialog for the manual fallback.

use crate::config::{Config, Panel};
use crate::servers::access::{published_urls, url_credentials};

/// Opens "Add integration → Generic Camera" in the user's own Home Assistant.
pub const SETUP_LINK: &str =
    "https://my.home-assistant.io/redirect/config_flow_start/?domain=generic";

/// HTTP authentication Home Assistant uses for the still image (`basic` or `digest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentication {
    Basic,
    Digest,
}

impl Authentication {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Basic => "basic",
            Self::Digest => "digest",
        }
    }
}

/// One panel's camera as the Generic Camera stores it.
#[derive(Clone, PartialEq, Eq)]
pub struct CameraSource {
    /// `rtsp://host:port/<panel>` (HA reads it over TCP); no credentials inside.
    pub stream_source: String,
    /// `http://host:port/api/<panel>/snapshot.jpg`: never starts a call.
    pub still_image_url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub authentication: Authentication,
}

impl std::fmt::Debug for CameraSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraSource")
            .field("stream_source", &self.stream_source)
            .field("still_image_url", &self.still_image_url)
            .field("username", &self.username)
            .field(
                "password",
                &self.password.as_ref().map(|_| crate::config::MASK),
            )
            .field("authentication", &self.authentication)
            .finish()
    }
}

/// THE function that says how Home Assistant reaches a panel's camera. `host` is the address HA
/// uses for the bridge (the advertised address, as in the MQTT URL sensors). The URLs come from
/// the access model's builder (`servers::access::published_urls`) without credentials inside:
/// the Generic Camera keeps the username and password apart and uses them for both the stream and
/// the still (Basic), which the access model accepts on RTSP and HTTP alike — the configured
/// pair, or the API token as the password of the user `token` (`url_credentials`).
pub fn camera_source(cfg: &Config, host: &str, panel: &Panel) -> CameraSource {
    let bare = Config {
        rtsp_user: None,
        rtsp_password: None,
        api_token: None,
        ..cfg.clone()
    };
    let urls = published_urls(&bare, host, panel);
    let (username, password) = url_credentials(cfg).unzip();
    CameraSource {
        stream_source: urls.rtsp,
        still_image_url: urls.snapshot,
        username,
        password,
        authentication: Authentication::Basic,
    }
}

/// `camera.<panel>`: the entity id the camera gets (entity ids allow `[a-z0-9_]`).
pub fn entity_id(panel: &Panel) -> String {
    format!("camera.{}", panel.name.replace('-', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn urls_follow_the_servers_and_carry_the_rtsp_credentials() {
        let cfg = Config {
            rtsp_port: 8555,
            http_port: 8081,
            rtsp_user: Some("viewer".into()),
            rtsp_password: Some(Secret::new("pw")),
            ..Config::default()
        };
        let panel = Panel {
            name: "front-gate".into(),
            devaddr: 21,
        };
        let s = camera_source(&cfg, "192.168.1.10", &panel);
        assert_eq!(s.stream_source, "rtsp://192.168.1.10:8555/front-gate");
        assert_eq!(
            s.still_image_url,
            "http://192.168.1.10:8081/api/front-gate/snapshot.jpg"
        );
        assert_eq!(s.username.as_deref(), Some("viewer"));
        assert_eq!(s.password.as_deref(), Some("pw"));
        assert!(
            !format!("{s:?}").contains("pw\""),
            "Debug masks the password"
        );
        assert_eq!(entity_id(&panel), "camera.front_gate");
        let v6 = camera_source(&Config::default(), "fd00::5", &panel);
        assert_eq!(v6.stream_source, "rtsp://[fd00::5]:8554/front-gate");
        assert_eq!(v6.username, None);
        // Only an API token: the user `token` with the token as password, never in the URLs.
        let token = Config {
            api_token: Some(Secret::new("t0k")),
            ..Config::default()
        };
        let t = camera_source(&token, "192.168.1.10", &panel);
        assert_eq!(t.stream_source, "rtsp://192.168.1.10:8554/front-gate");
        assert_eq!(
            (t.username.as_deref(), t.password.as_deref()),
            (Some("token"), Some("t0k"))
        );
    }
}
