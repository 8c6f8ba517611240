//! The raw layers: reads options.json (serde_json) and the YAML file (serde_norway), turns `C300X_*`
//! variables and `--set` pairs (text) into values by each key's kind, and merges them by priority,
//! remembering where each value came from. Unknown keys stop here; typing and ranges are `validate`'s.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::{ConfigError, MASK, Origin, Sources};

/// Environment variables carrying options start with this, followed by the key in upper case.
pub const ENV_PREFIX: &str = "C300X_";

/// `C300X_*` names that are not options (the command line's own settings, the supervision
/// tests' `C300X_TEST_PANIC` hook, and the test and build scripts' settings, which a developer
/// may have exported); `Sources::from_process_env` skips them so they are not reported as
/// unknown options.
pub const RESERVED_ENV: &[&str] = &[
    "C300X_CONFIG",
    "C300X_OPTIONS_JSON",
    "C300X_TEST_PANIC",
    "C300X_CACHE",
    "C300X_CODECS",
    "C300X_JOBS",
    "C300X_IMAGE_MAX_MB",
    "C300X_HA_KEEP",
    "C300X_HA_VERSIONS",
];

/// Prefixes of reserved names: the test script's `C300X_SKIP_HA`, `C300X_SKIP_IMAGE`, ….
const RESERVED_ENV_PREFIXES: &[&str] = &["C300X_SKIP_"];

/// Whether a `C300X_*` variable is one of the reserved, non-option names.
pub fn reserved(name: &str) -> bool {
    RESERVED_ENV.contains(&name) || RESERVED_ENV_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// How a key's text (from env or `--set`) is turned into a value, and whether it is masked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// Text; `""` means unset for the optional ones.
    Text,
    /// A password or token: text, masked in every output.
    Secret,
    /// A whole number; text is parsed.
    Number,
    /// A list of mappings; text is YAML/JSON flow syntax.
    List,
    /// `true`/`false` (also `yes`/`no`, `on`/`off`, `1`/`0` as text).
    Bool,
}

/// Every option key, in the order of the documentation.
pub(super) const SPECS: &[(&str, Kind)] = &[
    ("intercom_host", Kind::Text),
    ("intercom_sip_port", Kind::Number),
    ("sip_transport", Kind::Text),
    ("sip_domain", Kind::Text),
    ("sip_user", Kind::Text),
    ("sip_password", Kind::Secret),
    ("advertise_address", Kind::Text),
    ("rtp_port_min", Kind::Number),
    ("rtp_port_max", Kind::Number),
    ("panels", Kind::List),
    ("locks", Kind::List),
    ("linger_seconds", Kind::Number),
    ("start_timeout_seconds", Kind::Number),
    ("max_call_seconds", Kind::Number),
    ("audio", Kind::Bool),
    ("audio_sample_rate", Kind::Number),
    ("mjpeg_fps", Kind::Number),
    ("mjpeg_quality", Kind::Number),
    ("ring_preview", Kind::Bool),
    ("ring_snapshot_call", Kind::Bool),
    ("ring_reject_code", Kind::Number),
    ("ring_history", Kind::Bool),
    ("ring_history_keep", Kind::Number),
    ("ring_history_days", Kind::Number),
    ("ring_clip_seconds", Kind::Number),
    ("clip_dir", Kind::Text),
    ("rtsp_port", Kind::Number),
    ("rtsp_user", Kind::Text),
    ("rtsp_password", Kind::Secret),
    ("http_port", Kind::Number),
    ("ingress_port", Kind::Number),
    ("api_token", Kind::Secret),
    ("public_snapshot", Kind::Bool),
    ("bind_address", Kind::Text),
    ("max_connections", Kind::Number),
    ("max_connections_per_ip", Kind::Number),
    ("mqtt_url", Kind::Text),
    ("mqtt_user", Kind::Text),
    ("mqtt_password", Kind::Secret),
    ("mqtt_discovery_prefix", Kind::Text),
    ("mqtt_base_topic", Kind::Text),
    ("ha_camera", Kind::Bool),
    ("homeassistant_url", Kind::Text),
    ("homeassistant_token", Kind::Secret),
    ("data_dir", Kind::Text),
    ("log_level", Kind::Text),
];

/// Every option key, in the order of the documentation.
pub const KEYS: [&str; SPECS.len()] = {
    let mut keys = [""; SPECS.len()];
    let mut i = 0;
    while i < SPECS.len() {
        keys[i] = SPECS[i].0;
        i += 1;
    }
    keys
};

pub(super) fn kind(key: &str) -> Option<Kind> {
    SPECS.iter().find(|(k, _)| *k == key).map(|(_, kind)| *kind)
}

/// The winning value of each key that some layer set, with its origin. Absent = built-in default.
#[derive(Debug, Default)]
pub(super) struct Merged {
    values: HashMap<&'static str, (Value, Origin)>,
}

impl Merged {
    pub(super) fn get(&self, key: &str) -> Option<(&Value, &Origin)> {
        self.values.get(key).map(|(v, o)| (v, o))
    }

    fn set(&mut self, key: &'static str, value: Value, origin: Origin) {
        self.values.insert(key, (value, origin));
    }
}

/// Reads and merges the layers: options.json < file < env < cli.
pub(super) fn merge(sources: &Sources) -> Result<Merged, ConfigError> {
    let mut merged = Merged::default();
    if let Some(path) = &sources.options_json {
        let map = read_json(path)?;
        apply_map(&mut merged, map, &Origin::OptionsJson(path.clone()))?;
    }
    if let Some(path) = &sources.file {
        let map = read_yaml(path)?;
        apply_map(&mut merged, map, &Origin::File(path.clone()))?;
    }
    for (name, text) in &sources.env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if reserved(name) {
            continue;
        }
        let key = normalize(rest);
        let origin = Origin::Env(name.clone());
        let Some((key, kind)) = lookup(&key) else {
            let suggestion = suggest(&key).map(|k| format!("{ENV_PREFIX}{}", k.to_uppercase()));
            return Err(unknown(
                &key,
                &Value::String(text.clone()),
                origin,
                suggestion,
            ));
        };
        let value = from_text(key, kind, text, &origin)?;
        merged.set(key, value, origin);
    }
    for (key, text) in &sources.cli {
        let key = normalize(key);
        let Some((key, kind)) = lookup(&key) else {
            let suggestion = suggest(&key).map(str::to_owned);
            return Err(unknown(
                &key,
                &Value::String(text.clone()),
                Origin::Cli,
                suggestion,
            ));
        };
        let value = from_text(key, kind, text, &Origin::Cli)?;
        merged.set(key, value, Origin::Cli);
    }
    Ok(merged)
}

/// Keys are matched case-insensitively and with `-` for `_`: harmless, and env names are upper case.
fn normalize(key: &str) -> String {
    key.trim().to_ascii_lowercase().replace('-', "_")
}

fn lookup(key: &str) -> Option<(&'static str, Kind)> {
    SPECS.iter().find(|(k, _)| *k == key).copied()
}

fn apply_map(
    merged: &mut Merged,
    map: Map<String, Value>,
    origin: &Origin,
) -> Result<(), ConfigError> {
    for (raw_key, value) in map {
        let key = normalize(&raw_key);
        let Some((key, _)) = lookup(&key) else {
            let suggestion = suggest(&key).map(str::to_owned);
            return Err(unknown(&raw_key, &value, origin.clone(), suggestion));
        };
        // null in a file means "use the default" (or the lower layer).
        if !value.is_null() {
            merged.set(key, value, origin.clone());
        }
    }
    Ok(())
}

fn unknown(key: &str, value: &Value, origin: Origin, suggestion: Option<String>) -> ConfigError {
    // A misspelt `sip_pasword` still holds a password: mask by the look of the key and by the suggestion.
    let looks_secret = ["pas", "pwd", "token", "secret"]
        .iter()
        .any(|s| key.contains(s));
    let suggests_secret = suggest(key).and_then(kind) == Some(Kind::Secret);
    ConfigError::UnknownKey {
        key: key.to_owned(),
        value: if looks_secret || suggests_secret {
            MASK.to_owned()
        } else {
            show(value)
        },
        origin,
        suggestion,
    }
}

/// A value as it appears in error messages: JSON-like, strings quoted, lists in flow style.
pub(super) fn show(value: &Value) -> String {
    value.to_string()
}

/// Env and `--set` values are text; give them the type their key expects, so that
/// `C300X_LINGER_SECONDS=-1` is the number -1 and `C300X_PANELS=[{name: a, devaddr: 20}]` a list.
fn from_text(
    key: &'static str,
    kind: Kind,
    text: &str,
    origin: &Origin,
) -> Result<Value, ConfigError> {
    match kind {
        Kind::Text | Kind::Secret => Ok(Value::String(text.to_owned())),
        Kind::Bool => Ok(match text.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Value::Bool(true),
            "false" | "no" | "off" | "0" => Value::Bool(false),
            _ => Value::String(text.to_owned()),
        }),
        Kind::Number => {
            let t = text.trim();
            if let Ok(n) = t.parse::<i64>() {
                return Ok(Value::from(n));
            }
            match t.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                Some(n) => Ok(Value::Number(n)),
                None => Ok(Value::String(text.to_owned())),
            }
        }
        Kind::List => {
            if text.trim().is_empty() {
                return Ok(Value::String(text.to_owned()));
            }
            serde_norway::from_str::<Value>(text).map_err(|e| ConfigError::Invalid {
                key: key.to_owned(),
                value: show(&Value::String(text.to_owned())),
                origin: origin.clone(),
                allowed: format!(
                    "must be a YAML/JSON list such as {} ({e})",
                    list_example(key)
                ),
            })
        }
    }
}

pub(super) fn list_example(key: &str) -> &'static str {
    if key == "locks" {
        "[{name: door, where: 20, pulse_ms: 2000}]"
    } else {
        "[{name: doorbell, devaddr: 20}]"
    }
}

fn read_json(path: &Path) -> Result<Map<String, Value>, ConfigError> {
    let text = read(path)?;
    let value: Value = serde_json::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    top_level(path, value)
}

fn read_yaml(path: &Path) -> Result<Map<String, Value>, ConfigError> {
    let text = read(path)?;
    // Deserializing straight into serde_json's Value gives both formats one representation; serde_norway's
    // error text carries the line and column.
    let value: Value = serde_norway::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    top_level(path, value)
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

fn top_level(path: &Path, value: Value) -> Result<Map<String, Value>, ConfigError> {
    match value {
        Value::Object(map) => Ok(map),
        // An empty YAML file (or one with only comments) sets nothing.
        Value::Null => Ok(Map::new()),
        other => Err(ConfigError::Parse {
            path: path.to_owned(),
            message: format!(
                "the top level must be a mapping of `option: value`, found {}",
                type_name(&other)
            ),
        }),
    }
}

pub(super) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// The closest of `candidates` to `key` when it is obviously a typo (edit distance at most 2).
pub fn closest<'a>(key: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(key, c), c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn suggest(key: &str) -> Option<&'static str> {
    closest(key, KEYS.iter().copied())
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("linger_secnds", "linger_seconds"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
        assert_eq!(closest("http_prt", KEYS.iter().copied()), Some("http_port"));
        assert_eq!(closest("volume", KEYS.iter().copied()), None);
    }
}
