//! Turns the merged raw values into a typed `Config`: one parser per key (type, range, syntax), the
//! list entries (`panels[i]`, `locks[i]`), then the checks across keys (RTP range, port clashes).
//! Every failure is one `ConfigError::Invalid` naming the key, the value, its origin and what is allowed.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Map, Value};

use super::doorbell::{directory, reject_code};
use super::homeassistant;
use super::raw::{self, Kind, Merged};
use super::{
    Config, ConfigError, Lock, LogLevel, MASK, MqttUrl, Origin, Panel, Secret, SipTransport,
};

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

// ---- scalars ----

/// A whole number: a JSON/YAML integer, a float without fraction, or text holding one of those.
pub(super) fn whole(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|_| i64::MAX))
            .or_else(|| n.as_f64().and_then(whole_f64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(whole_f64))
        }
        _ => None,
    }
}

fn whole_f64(f: f64) -> Option<i64> {
    // The bounds keep the cast exact; real limits are checked by the caller.
    (f.fract() == 0.0 && f.abs() < 1e15).then_some(f as i64)
}

pub(super) fn ranged(value: &Value, lo: i64, hi: i64, what: &str) -> Result<i64, Allowed> {
    match whole(value) {
        Some(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(format!("must be {what} from {lo} to {hi}")),
    }
}

fn small(value: &Value, lo: i64, hi: i64, what: &str) -> Result<u8, Allowed> {
    let n = ranged(value, lo, hi, what)?;
    u8::try_from(n).map_err(|e| e.to_string())
}

fn count(value: &Value, lo: i64, hi: i64, what: &str) -> Result<u32, Allowed> {
    u32::try_from(ranged(value, lo, hi, what)?).map_err(|e| e.to_string())
}

fn boolean(value: &Value) -> Result<bool, Allowed> {
    match value {
        Value::Bool(b) => Ok(*b),
        _ => Err("must be true or false".to_owned()),
    }
}

/// The AAC rates the encoder is set up for (mono).
pub(super) const SAMPLE_RATES: [u32; 6] = [8000, 16000, 24000, 32000, 44100, 48000];

fn sample_rate(value: &Value) -> Result<u32, Allowed> {
    let allowed = || format!("must be one of {SAMPLE_RATES:?} (Hz)");
    let n = ranged(value, 1, 48000, "a sample rate").map_err(|_| allowed())?;
    let n = u32::try_from(n).map_err(|_| allowed())?;
    SAMPLE_RATES.contains(&n).then_some(n).ok_or_else(allowed)
}

fn port(value: &Value) -> Result<u16, Allowed> {
    let n = ranged(value, 1, 65535, "a port number")?;
    u16::try_from(n).map_err(|e| e.to_string())
}

fn seconds(value: &Value, lo: i64, hi: i64) -> Result<Duration, Allowed> {
    let n = ranged(value, lo, hi, "a whole number of seconds")?;
    Ok(Duration::from_secs(n.unsigned_abs()))
}

/// Text, accepting an integer or boolean as its text (YAML reads `sip_user: 123` as a number).
pub(super) fn text(value: &Value) -> Result<String, Allowed> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(_) => Err("must be text: put it in quotes".to_owned()),
        other => Err(format!("must be text, not {}", raw::type_name(other))),
    }
}

/// Optional text: `""` (what the Supervisor writes for an empty field) means unset.
pub(super) fn opt_text(value: &Value) -> Result<Option<String>, Allowed> {
    let s = text(value)?;
    Ok((!s.trim().is_empty()).then_some(s))
}

/// A password or token must be quoted text: a YAML number would lose leading zeros.
pub(super) fn secret(value: &Value) -> Result<Option<Secret>, Allowed> {
    match value {
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => Ok(Some(Secret::new(s.clone()))),
        _ => Err("must be text in quotes (a number would lose leading zeros)".to_owned()),
    }
}

fn host(value: &Value) -> Result<Option<String>, Allowed> {
    let Some(s) = opt_text(value)? else {
        return Ok(None);
    };
    let s = s.trim();
    let unbracketed = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    if unbracketed.parse::<IpAddr>().is_ok() {
        return Ok(Some(unbracketed.to_owned()));
    }
    if is_host_name(s) {
        Ok(Some(s.to_owned()))
    } else {
        Err("must be a host name or IP address, without scheme, port or path".to_owned())
    }
}

pub(super) fn is_host_name(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

fn ip(value: &Value) -> Result<Option<IpAddr>, Allowed> {
    let Some(s) = opt_text(value)? else {
        return Ok(None);
    };
    s.trim().parse().map(Some).map_err(|_| {
        "must be an IP address of this host such as 192.168.1.10, or empty to detect it".to_owned()
    })
}

fn bind_ip(value: &Value) -> Result<Option<IpAddr>, Allowed> {
    ip(value).map_err(|_| "must be an IP address of this host, or empty for every interface".into())
}

fn sip_user(value: &Value) -> Result<String, Allowed> {
    let s = text(value)?;
    let bad = |c: char| c.is_whitespace() || c.is_control() || "@:<>\"".contains(c);
    if s.is_empty() || s.chars().any(bad) {
        return Err(
            "must be a non-empty SIP user name without spaces, @, :, <, > or quotes".to_owned(),
        );
    }
    Ok(s)
}

fn transport(value: &Value) -> Result<SipTransport, Allowed> {
    match value
        .as_str()
        .map(|s| s.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("tcp") => Ok(SipTransport::Tcp),
        Some("udp") => Ok(SipTransport::Udp),
        _ => Err("must be one of tcp, udp".to_owned()),
    }
}

fn log_level(value: &Value) -> Result<LogLevel, Allowed> {
    match value
        .as_str()
        .map(|s| s.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("trace") => Ok(LogLevel::Trace),
        Some("debug") => Ok(LogLevel::Debug),
        Some("info") => Ok(LogLevel::Info),
        Some("warn" | "warning") => Ok(LogLevel::Warn),
        Some("error") => Ok(LogLevel::Error),
        _ => Err("must be one of trace, debug, info, warn, error".to_owned()),
    }
}

/// A topic prefix: it is joined with `/` to our own levels, so wildcards and edge slashes are out.
fn topic(value: &Value) -> Result<String, Allowed> {
    let s = text(value)?;
    let ok = !s.is_empty()
        && !s.contains(['#', '+', '\0'])
        && !s.starts_with('/')
        && !s.ends_with('/')
        && !s.contains("//");
    if ok {
        Ok(s)
    } else {
        Err("must be a non-empty MQTT topic without #, + or empty levels (no leading or trailing /)".to_owned())
    }
}

const MQTT_URL_ALLOWED: &str = "must be mqtt://host[:port] (default port 1883) or mqtts://host[:port] \
     (default port 8883); put credentials in mqtt_user and mqtt_password";

fn mqtt_url(value: &Value) -> Result<Option<MqttUrl>, Allowed> {
    let Some(s) = opt_text(value)? else {
        return Ok(None);
    };
    parse_mqtt_url(s.trim())
        .map(Some)
        .ok_or_else(|| MQTT_URL_ALLOWED.to_owned())
}

fn parse_mqtt_url(s: &str) -> Option<MqttUrl> {
    let (scheme, rest) = s.split_once("://")?;
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "mqtt" => false,
        "mqtts" => true,
        _ => return None,
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '@', '?', '#']) {
        return None;
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (addr, after) = v6.split_once(']')?;
        addr.parse::<std::net::Ipv6Addr>().ok()?;
        (addr, after.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() || !(host.contains(':') || is_host_name(host)) {
        return None;
    }
    let port = match port {
        None => {
            if tls {
                8883
            } else {
                1883
            }
        }
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0)?,
    };
    Some(MqttUrl {
        host: host.to_owned(),
        port,
        tls,
    })
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
