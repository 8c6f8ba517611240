//! The Home Assistant options (issue 15): `homeassistant_url` (plain `http://host[:port][/prefix]`),
//! its token, and `data_dir`. In the add-on none is needed: the Supervisor proxies HA's API and
//! `/data` is the data directory. `validate` calls these; the checks across keys live here too.

use serde_json::Value;

use super::scalars::{host_port, opt_text};
use super::{Config, HaUrl, MASK};

/// The part of an error message that says what is allowed.
type Allowed = String;

const HA_URL_ALLOWED: &str = "must be Home Assistant's local address, http://host[:port] \
     (default port 8123), such as http://192.168.1.5:8123 (HTTPS is not supported: use the LAN address)";

pub(super) fn url(value: &Value) -> Result<Option<HaUrl>, Allowed> {
    let Some(s) = opt_text(value)? else {
        return Ok(None);
    };
    parse_ha_url(s.trim())
        .map(Some)
        .ok_or_else(|| HA_URL_ALLOWED.to_owned())
}

fn parse_ha_url(s: &str) -> Option<HaUrl> {
    let (scheme, rest) = s.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") {
        return None;
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let path = path.trim_end_matches('/');
    if authority.contains(['@', '?', '#']) || path.contains(['?', '#', ' ']) {
        return None;
    }
    let (host, port) = host_port(authority)?;
    let port = match port {
        None => 8123,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0)?,
    };
    Some(HaUrl {
        host: host.to_owned(),
        port,
        path: path.to_owned(),
    })
}

/// A directory path (absolute or relative to the working directory).
pub(super) fn dir(value: &Value) -> Result<Option<std::path::PathBuf>, Allowed> {
    let Some(s) = opt_text(value)? else {
        return Ok(None);
    };
    if s.contains('\0') {
        return Err("must be a directory path".to_owned());
    }
    Ok(Some(std::path::PathBuf::from(s.trim())))
}

/// `homeassistant_url` and `homeassistant_token` come together: `(key, value shown, allowed)`.
pub(super) fn across_keys(c: &Config) -> Option<(&'static str, String, Allowed)> {
    match (&c.homeassistant_url, &c.homeassistant_token) {
        (None, Some(_)) => Some((
            "homeassistant_token",
            MASK.to_owned(),
            "needs homeassistant_url too (in the add-on neither is needed)".to_owned(),
        )),
        (Some(url), None) => Some((
            "homeassistant_url",
            Value::String(url.to_string()).to_string(),
            "needs homeassistant_token too: a long-lived access token (HA: your profile → \
             Security → Long-lived access tokens)"
                .to_owned(),
        )),
        _ => None,
    }
}
