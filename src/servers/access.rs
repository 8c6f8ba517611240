//! The access model's I/O half (DOCS "Access"; the decisions are `proto::auth`'s): which HTTP
//! request counts as Home Assistant ingress, the secrets a `Config` carries, and the URLs the
//! bridge publishes (MQTT sensors, the status page, HA camera set-up) with those credentials
//! in them, so a private install still works by copy and paste.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::ConnectInfo;

use crate::config::{Config, Panel};
use crate::proto::auth::Secrets;

/// Where the Supervisor's ingress proxy connects from (home-assistant.md §4).
pub const INGRESS_PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(172, 30, 32, 2));

/// Whether a request came through Home Assistant's ingress proxy, which has authenticated the
/// user already: the Supervisor's address plus its `X-Ingress-Path` header. The one place that
/// decides it (a dedicated ingress listener would mark its requests here too).
pub fn is_ingress<B>(req: &axum::http::Request<B>) -> bool {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    peer == Some(INGRESS_PEER) && req.headers().contains_key("x-ingress-path")
}

/// The credentials a configuration asks for (`rtsp_user`/`rtsp_password`, `api_token`).
pub fn secrets(cfg: &Config) -> Secrets {
    Secrets {
        user: match (&cfg.rtsp_user, &cfg.rtsp_password) {
            (Some(u), Some(p)) => Some((u.clone(), p.expose().to_owned())),
            _ => None,
        },
        api_token: cfg.api_token.as_ref().map(|t| t.expose().to_owned()),
    }
}

/// The user and password to put into published URLs: the configured pair, else any user name
/// (`token`) with the API token as password; `None` when the bridge is open.
pub fn url_credentials(cfg: &Config) -> Option<(String, String)> {
    let s = secrets(cfg);
    s.user
        .or_else(|| s.api_token.map(|t| ("token".to_owned(), t)))
}

/// One panel's published URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelUrls {
    /// `rtsp://[user:password@]host:port/<panel>` (Frigate, NVRs, HA's stream source).
    pub rtsp: String,
    /// `http://[user:password@]host:port/api/<panel>/snapshot.jpg` (never starts a call).
    pub snapshot: String,
    /// The MJPEG stream (starts a call while open).
    pub mjpeg: String,
    /// The HLS playlist (starts a call while polled).
    pub hls: String,
}

/// The URLs of `panel` on `host` (a name or an IP; IPv6 gets brackets), with the credentials
/// of [`url_credentials`] percent-encoded into the user part.
pub fn published_urls(cfg: &Config, host: &str, panel: &Panel) -> PanelUrls {
    let http = published_http_url(cfg, host, &format!("/api/{}", panel.name));
    PanelUrls {
        rtsp: format!(
            "rtsp://{}{}:{}/{}",
            userinfo_part(cfg),
            bracketed(host),
            cfg.rtsp_port,
            panel.name
        ),
        snapshot: format!("{http}/snapshot.jpg"),
        mjpeg: format!("{http}/mjpeg"),
        hls: format!("{http}/hls/index.m3u8"),
    }
}

/// `http://[user:password@]host:http_port<path>`: any other URL the bridge publishes (a ring's
/// picture in the doorbell event), with the same credentials as [`published_urls`].
pub fn published_http_url(cfg: &Config, host: &str, path: &str) -> String {
    format!(
        "http://{}{}:{}{path}",
        userinfo_part(cfg),
        bracketed(host),
        cfg.http_port
    )
}

fn bracketed(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// `user:password@` (percent-encoded), or nothing when the bridge is open.
fn userinfo_part(cfg: &Config) -> String {
    url_credentials(cfg)
        .map(|(u, p)| format!("{}:{}@", userinfo(&u), userinfo(&p)))
        .unwrap_or_default()
}

/// RFC 3986 §3.2.1 userinfo: unreserved characters as they are, everything else `%XX`.
fn userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn urls_carry_the_credentials() {
        let panel = Panel {
            name: "doorbell".into(),
            devaddr: 20,
        };
        let open = Config::default();
        let u = published_urls(&open, "192.168.1.10", &panel);
        assert_eq!(u.rtsp, "rtsp://192.168.1.10:8554/doorbell");
        assert_eq!(
            u.snapshot,
            "http://192.168.1.10:8080/api/doorbell/snapshot.jpg"
        );
        let cfg = Config {
            rtsp_user: Some("c300x".into()),
            rtsp_password: Some(Secret::new("p@ss:w/rd")),
            api_token: Some(Secret::new("tok")),
            ..Config::default()
        };
        assert_eq!(
            published_http_url(&cfg, "h", "/api/doorbell/rings/1.jpg"),
            "http://c300x:p%40ss%3Aw%2Frd@h:8080/api/doorbell/rings/1.jpg"
        );
        let u = published_urls(&cfg, "fd00::5", &panel);
        assert_eq!(
            u.rtsp,
            "rtsp://c300x:p%40ss%3Aw%2Frd@[fd00::5]:8554/doorbell"
        );
        assert_eq!(
            u.hls,
            "http://c300x:p%40ss%3Aw%2Frd@[fd00::5]:8080/api/doorbell/hls/index.m3u8"
        );
        let token_only = Config {
            api_token: Some(Secret::new("t0k")),
            ..Config::default()
        };
        assert_eq!(
            published_urls(&token_only, "h", &panel).mjpeg,
            "http://token:t0k@h:8080/api/doorbell/mjpeg"
        );
        assert!(secrets(&token_only).required() && !secrets(&open).required());
    }

    #[test]
    fn ingress_is_the_supervisor_with_its_header() {
        let req = |peer: IpAddr, header: bool| {
            let mut b = axum::http::Request::builder().uri("/");
            if header {
                b = b.header("x-ingress-path", "/api/hassio_ingress/x");
            }
            let mut r = b.body(()).expect("request");
            r.extensions_mut()
                .insert(ConnectInfo(SocketAddr::new(peer, 40000)));
            r
        };
        assert!(is_ingress(&req(INGRESS_PEER, true)));
        assert!(!is_ingress(&req(INGRESS_PEER, false)));
        assert!(!is_ingress(&req(IpAddr::from([10, 0, 0, 9]), true)));
    }
}
