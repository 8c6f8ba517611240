//! Turns the merged raw values into a typed `Config`: one parser per key (type, range, syntax), the
//! list entries (`panels[i]`, `locks[i]`), then the checks across keys (RTP range, port clashes).
//! Every failure is one `ConfigError::Invalid` naming the key, the value, its origin and what is allowed.

use std::time::Duration;

use serde_json::{Map, Value};

use super::doorbell::{directory, reject_code};
use super::homeassistant;
use super::raw::{self, Kind, Merged};
use super::scalars::*;
use super::{Config, ConfigError, Lock, MASK, Origin, Panel};

/// The part of an error message that says what is allowed.
pub(super) type Allowed = String;

pub(super) fn build(m: &Merged) -> Result<Config, ConfigError> {
    let d = Config::default();
    let rtp_port_min = field(m, "rtp_port_min", d.rtp_port_min, port)?;
    let rtp_port_max = field(m, "rtp_port_max", d.rtp_port_max, port)?;
    let rtsp_port = field(m, "rtsp_port", d.rtsp_port, port)?;
    let http_port = field(m, "http_port", d.http_port, port)?;
    let config = Config {
        intercom_host: field(m, "intercom_host", None, host)?,
        intercom_sip_port: field(m, "intercom_sip_port", d.intercom_sip_port, port)?,
        sip_transport: field(m, "sip_transport", d.sip_transport, transport)?,
        sip_domain: field(m, "sip_domain", None, host)?,
        sip_user: field(m, "sip_user", d.sip_user, sip_user)?,
        sip_password: field(m, "sip_password", None, secret)?,
        advertise_address: field(m, "advertise_address", None, ip)?,
        rtp_port_min,
        rtp_port_max,
        panels: list(m, "panels", d.panels, panel, |p| &p.name)?,
        locks: list(m, "locks", d.locks, lock, |l| &l.name)?,
        linger: field(m, "linger_seconds", d.linger, |v| seconds(v, 0, 3600))?,
        start_timeout: field(m, "start_timeout_seconds", d.start_timeout, |v| {
            seconds(v, 1, 60)
        })?,
        max_call: field(m, "max_call_seconds", d.max_call, |v| seconds(v, 10, 86400))?,
        audio: field(m, "audio", d.audio, boolean)?,
        audio_sample_rate: field(m, "audio_sample_rate", d.audio_sample_rate, sample_rate)?,
        mjpeg_fps: field(m, "mjpeg_fps", d.mjpeg_fps, |v| {
            small(v, 0, 30, "frames per second")
        })?,
        mjpeg_quality: field(m, "mjpeg_quality", d.mjpeg_quality, |v| {
            small(v, 1, 100, "a JPEG quality")
        })?,
        ring_preview: field(m, "ring_preview", d.ring_preview, boolean)?,
        ring_snapshot_call: field(m, "ring_snapshot_call", d.ring_snapshot_call, boolean)?,
        ring_reject_code: field(m, "ring_reject_code", d.ring_reject_code, reject_code)?,
        ring_history: field(m, "ring_history", d.ring_history, boolean)?,
        ring_history_keep: field(m, "ring_history_keep", d.ring_history_keep, |v| {
            count(v, 1, 10_000, "a number of rings")
        })?,
        ring_history_days: field(m, "ring_history_days", d.ring_history_days, |v| {
            count(v, 0, 3650, "a number of days (0 = no age limit)")
        })?,
        ring_clip: field(m, "ring_clip_seconds", d.ring_clip, |v| seconds(v, 0, 300))?,
        clip_dir: field(m, "clip_dir", d.clip_dir, directory)?,
        rtsp_port,
        rtsp_user: field(m, "rtsp_user", None, opt_text)?,
        rtsp_password: field(m, "rtsp_password", None, secret)?,
        http_port,
        ingress_port: field(m, "ingress_port", None, |v| port(v).map(Some))?,
        api_token: field(m, "api_token", None, secret)?,
        public_snapshot: field(m, "public_snapshot", d.public_snapshot, boolean)?,
        bind_address: field(m, "bind_address", None, bind_ip)?,
        max_connections: field(m, "max_connections", d.max_connections, |v| {
            count(v, 1, 10_000, "a number of connections")
        })?,
        max_connections_per_ip: field(
            m,
            "max_connections_per_ip",
            d.max_connections_per_ip,
            |v| count(v, 0, 10_000, "a number of connections (0 = no cap)"),
        )?,
        mqtt_url: field(m, "mqtt_url", None, mqtt_url)?,
        mqtt_user: field(m, "mqtt_user", None, opt_text)?,
        mqtt_password: field(m, "mqtt_password", None, secret)?,
        mqtt_discovery_prefix: field(m, "mqtt_discovery_prefix", d.mqtt_discovery_prefix, topic)?,
        mqtt_base_topic: field(m, "mqtt_base_topic", d.mqtt_base_topic, topic)?,
        ha_camera: field(m, "ha_camera", d.ha_camera, boolean)?,
        homeassistant_url: field(m, "homeassistant_url", None, homeassistant::url)?,
        homeassistant_token: field(m, "homeassistant_token", None, secret)?,
        data_dir: field(m, "data_dir", None, homeassistant::dir)?,
        log_level: field(m, "log_level", d.log_level, log_level)?,
        credentials_generated: false,
    };
    across_keys(m, &config)?;
    Ok(config)
}

/// The key's merged value through `parse`, or `default` when no layer set it.
fn field<T>(
    m: &Merged,
    key: &str,
    default: T,
    parse: impl FnOnce(&Value) -> Result<T, Allowed>,
) -> Result<T, ConfigError> {
    match m.get(key) {
        None => Ok(default),
        Some((value, origin)) => {
            parse(value).map_err(|allowed| invalid(key, value, origin, allowed))
        }
    }
}

fn invalid(key: &str, value: &Value, origin: &Origin, allowed: Allowed) -> ConfigError {
    let secret = raw::kind(key) == Some(Kind::Secret);
    ConfigError::Invalid {
        key: key.to_owned(),
        value: match value {
            _ if secret => MASK.to_owned(),
            // `mqtt://user:password@host` is refused, but must not be echoed.
            Value::String(s) if key == "mqtt_url" => raw::show(&Value::String(mask_userinfo(s))),
            _ => raw::show(value),
        },
        origin: origin.clone(),
        allowed,
    }
}

fn mask_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://{MASK}@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The value and origin of a key for messages about another key ("rtp_port_max = 20099 (default)").
fn described(m: &Merged, key: &str, value: impl std::fmt::Display) -> String {
    let origin = m.get(key).map_or(Origin::Default, |(_, o)| o.clone());
    format!("{key} = {value} (from {origin})")
}

// ---- lists ----

/// A list key: the whole list of the winning layer, each entry checked by `entry`.
fn list<T>(
    m: &Merged,
    key: &str,
    default: Vec<T>,
    entry: fn(&Map<String, Value>, &Entry) -> Result<T, ConfigError>,
    name_of: fn(&T) -> &str,
) -> Result<Vec<T>, ConfigError> {
    let Some((value, origin)) = m.get(key) else {
        return Ok(default);
    };
    let example = raw::list_example(key);
    let Value::Array(items) = value else {
        return Err(invalid(
            key,
            value,
            origin,
            format!("must be a list such as {example}"),
        ));
    };
    if key == "panels" && items.is_empty() {
        return Err(invalid(
            key,
            value,
            origin,
            format!("must list at least one panel, such as {example}"),
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = Entry {
            path: format!("{key}[{i}]"),
            origin,
        };
        let Value::Object(map) = item else {
            return Err(invalid(
                &at.path,
                item,
                origin,
                format!(
                    "must be a mapping such as {}",
                    &example[1..example.len() - 1]
                ),
            ));
        };
        let parsed = entry(map, &at)?;
        let name = name_of(&parsed);
        if let Some(j) = out.iter().position(|o| name_of(o) == name) {
            return Err(invalid(
                &at.sub("name"),
                &Value::String(name.to_owned()),
                origin,
                format!("must be unique; {key}[{j}] already uses it"),
            ));
        }
        out.push(parsed);
    }
    Ok(out)
}

/// One list entry being checked: `panels[1]` and where the list came from.
struct Entry<'a> {
    path: String,
    origin: &'a Origin,
}

impl Entry<'_> {
    fn sub(&self, field: &str) -> String {
        format!("{}.{field}", self.path)
    }

    /// Refuses keys outside `known`, suggesting the closest one.
    fn only(&self, map: &Map<String, Value>, known: &[&'static str]) -> Result<(), ConfigError> {
        match map.keys().find(|k| !known.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) => Err(ConfigError::UnknownKey {
                key: self.sub(k),
                value: raw::show(&map[k]),
                origin: self.origin.clone(),
                suggestion: raw::closest(k, known.iter().copied()).map(|s| self.sub(s)),
            }),
        }
    }

    /// A required field, `(missing)` in the message when absent or null.
    fn required<T>(
        &self,
        map: &Map<String, Value>,
        field: &str,
        parse: impl FnOnce(&Value) -> Result<T, Allowed>,
        allowed: &str,
    ) -> Result<T, ConfigError> {
        match map.get(field).filter(|v| !v.is_null()) {
            None => Err(ConfigError::Invalid {
                key: self.sub(field),
                value: "(missing)".to_owned(),
                origin: self.origin.clone(),
                allowed: allowed.to_owned(),
            }),
            Some(v) => parse(v).map_err(|a| invalid(&self.sub(field), v, self.origin, a)),
        }
    }

    fn name(&self, map: &Map<String, Value>) -> Result<String, ConfigError> {
        self.required(map, "name", entry_name, NAME_ALLOWED)
    }

    fn addr(&self, map: &Map<String, Value>, field: &str) -> Result<u8, ConfigError> {
        let parse = |v: &Value| ranged(v, 20, 99, "a number").map(|n| n.unsigned_abs() as u8);
        self.required(map, field, parse, "must be a number from 20 to 99")
    }
}

const NAME_ALLOWED: &str =
    "must be 1 to 32 characters from a-z, 0-9, _ and - (it becomes part of URLs and MQTT topics)";

fn entry_name(value: &Value) -> Result<String, Allowed> {
    let s = text(value)?;
    let ok = (1..=32).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(s)
    } else {
        Err(NAME_ALLOWED.to_owned())
    }
}

fn panel(map: &Map<String, Value>, at: &Entry) -> Result<Panel, ConfigError> {
    at.only(map, &["name", "devaddr"])?;
    Ok(Panel {
        name: at.name(map)?,
        devaddr: at.addr(map, "devaddr")?,
    })
}

fn lock(map: &Map<String, Value>, at: &Entry) -> Result<Lock, ConfigError> {
    at.only(map, &["name", "where", "pulse_ms"])?;
    let name = at.name(map)?;
    let where_ = at.addr(map, "where")?;
    let pulse = match map.get("pulse_ms").filter(|v| !v.is_null()) {
        None => super::DEFAULT_PULSE,
        Some(v) => {
            let ms = ranged(v, 100, 10000, "a whole number of milliseconds")
                .map_err(|a| invalid(&at.sub("pulse_ms"), v, at.origin, a))?;
            Duration::from_millis(ms.unsigned_abs())
        }
    };
    Ok(Lock {
        name,
        where_,
        pulse,
    })
}

// ---- across keys ----

fn across_keys(m: &Merged, c: &Config) -> Result<(), ConfigError> {
    let at = |key: &str, value: String, allowed: String| {
        let origin = m.get(key).map_or(Origin::Default, |(_, o)| o.clone());
        Err(ConfigError::Invalid {
            key: key.to_owned(),
            value,
            origin,
            allowed,
        })
    };
    let (min, max) = (u32::from(c.rtp_port_min), u32::from(c.rtp_port_max));
    if min > max {
        return at(
            "rtp_port_min",
            min.to_string(),
            format!("must not be above {}", described(m, "rtp_port_max", max)),
        );
    }
    if min % 2 == 1 {
        return at(
            "rtp_port_min",
            min.to_string(),
            "must be even: RTP uses even ports and RTCP the next odd one (RFC 3550 §11)".to_owned(),
        );
    }
    if max < min + 3 {
        return at(
            "rtp_port_max",
            max.to_string(),
            format!(
                "must be at least {} ({} + 3): a call needs 4 ports, RTP and RTCP for audio and video",
                min + 3,
                described(m, "rtp_port_min", min)
            ),
        );
    }
    if c.rtsp_port == c.http_port {
        return at(
            "http_port",
            c.http_port.to_string(),
            format!(
                "must differ from {}",
                described(m, "rtsp_port", c.rtsp_port)
            ),
        );
    }
    if let Some(ingress) = c.ingress_port {
        for (key, other) in [("rtsp_port", c.rtsp_port), ("http_port", c.http_port)] {
            if ingress == other {
                return at(
                    key,
                    other.to_string(),
                    format!(
                        "must differ from {} (the add-on's ingress listener)",
                        described(m, "ingress_port", ingress)
                    ),
                );
            }
        }
    }
    let ports = [
        ("rtsp_port", Some(c.rtsp_port)),
        ("http_port", Some(c.http_port)),
        ("ingress_port", c.ingress_port),
    ];
    for (key, p) in ports {
        let Some(p) = p.map(u32::from) else { continue };
        if (min..=max).contains(&p) {
            return at(
                key,
                p.to_string(),
                format!("must be outside the RTP port range {min} to {max}"),
            );
        }
    }
    if let Some((key, value, allowed)) = homeassistant::across_keys(c) {
        return at(key, value, allowed);
    }
    match (&c.rtsp_user, &c.rtsp_password) {
        (Some(user), None) => at(
            "rtsp_user",
            raw::show(&Value::String(user.clone())),
            "needs rtsp_password too: set both or neither".to_owned(),
        ),
        (None, Some(_)) => at(
            "rtsp_password",
            MASK.to_owned(),
            "needs rtsp_user too: set both or neither".to_owned(),
        ),
        _ => Ok(()),
    }
}
