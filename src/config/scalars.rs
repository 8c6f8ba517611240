//! One parser per kind of option value (numbers in a range, ports, durations, text, secrets,
//! hosts and addresses, SIP user, transport, log level, MQTT topics and URLs): a JSON value in,
//! the typed value or the "what is allowed" text out. `validate` applies them key by key.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;

use super::raw;
use super::validate::Allowed;
use super::{LogLevel, MqttUrl, Secret, SipTransport};

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

pub(super) fn whole_f64(f: f64) -> Option<i64> {
    // The bounds keep the cast exact; real limits are checked by the caller.
    (f.fract() == 0.0 && f.abs() < 1e15).then_some(f as i64)
}

pub(super) fn ranged(value: &Value, lo: i64, hi: i64, what: &str) -> Result<i64, Allowed> {
    match whole(value) {
        Some(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(format!("must be {what} from {lo} to {hi}")),
    }
}

pub(super) fn small(value: &Value, lo: i64, hi: i64, what: &str) -> Result<u8, Allowed> {
    let n = ranged(value, lo, hi, what)?;
    u8::try_from(n).map_err(|e| e.to_string())
}

pub(super) fn count(value: &Value, lo: i64, hi: i64, what: &str) -> Result<u32, Allowed> {
    u32::try_from(ranged(value, lo, hi, what)?).map_err(|e| e.to_string())
}

pub(super) fn boolean(value: &Value) -> Result<bool, Allowed> {
    match value {
        Value::Bool(b) => Ok(*b),
        _ => Err("must be true or false".to_owned()),
    }
}

/// The AAC rates the encoder is set up for (mono).
pub(super) const SAMPLE_RATES: [u32; 6] = [8000, 16000, 24000, 32000, 44100, 48000];

pub(super) fn sample_rate(value: &Value) -> Result<u32, Allowed> {
    let allowed = || format!("must be one of {SAMPLE_RATES:?} (Hz)");
    let n = ranged(value, 1, 48000, "a sample rate").map_err(|_| allowed())?;
    let n = u32::try_from(n).map_err(|_| allowed())?;
    SAMPLE_RATES.contains(&n).then_some(n).ok_or_else(allowed)
}

pub(super) fn port(value: &Value) -> Result<u16, Allowed> {
    let n = ranged(value, 1, 65535, "a port number")?;
    u16::try_from(n).map_err(|e| e.to_string())
}

pub(super) fn seconds(value: &Value, lo: i64, hi: i64) -> Result<Duration, Allowed> {
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

pub(super) fn host(value: &Value) -> Result<Option<String>, Allowed> {
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

pub(super) fn ip(value: &Value) -> Result<Option<IpAddr>, Allowed> {
    let Some(s) = opt_text(value)? else {
        return Ok(None);
    };
    s.trim().parse().map(Some).map_err(|_| {
        "must be an IP address of this host such as 192.168.1.10, or empty to detect it".to_owned()
    })
}

pub(super) fn bind_ip(value: &Value) -> Result<Option<IpAddr>, Allowed> {
    ip(value).map_err(|_| "must be an IP address of this host, or empty for every interface".into())
}

pub(super) fn sip_user(value: &Value) -> Result<String, Allowed> {
    let s = text(value)?;
    let bad = |c: char| c.is_whitespace() || c.is_control() || "@:<>\"".contains(c);
    if s.is_empty() || s.chars().any(bad) {
        return Err(
            "must be a non-empty SIP user name without spaces, @, :, <, > or quotes".to_owned(),
        );
    }
    Ok(s)
}

pub(super) fn transport(value: &Value) -> Result<SipTransport, Allowed> {
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

pub(super) fn log_level(value: &Value) -> Result<LogLevel, Allowed> {
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
pub(super) fn topic(value: &Value) -> Result<String, Allowed> {
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

pub(super) const MQTT_URL_ALLOWED: &str = "must be mqtt://host[:port] (default port 1883) or mqtts://host[:port] \
     (default port 8883); put credentials in mqtt_user and mqtt_password";

pub(super) fn mqtt_url(value: &Value) -> Result<Option<MqttUrl>, Allowed> {
    let Some(s) = opt_text(value)? else {
        return Ok(None);
    };
    parse_mqtt_url(s.trim())
        .map(Some)
        .ok_or_else(|| MQTT_URL_ALLOWED.to_owned())
}

/// Splits a URL's `host[:port]` or `[v6][:port]` authority; `None` unless the host is a valid
/// host name or IPv6 address. The port is returned unparsed (each scheme has its own default).
pub(super) fn host_port(authority: &str) -> Option<(&str, Option<&str>)> {
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
    Some((host, port))
}

pub(super) fn parse_mqtt_url(s: &str) -> Option<MqttUrl> {
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
    let (host, port) = host_port(authority)?;
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
