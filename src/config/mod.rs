//! Configuration: built-in defaults -> YAML file or the add-on's options.json -> `C300X_*` environment
//! -> `--set key=value`, validated into a typed `Config`. Reading and merging the layers lives in
//! `raw`, typing and checking each key in `validate`, printing in `print`. Nothing here opens sockets
//! or checks that hosts are reachable; "required for run" is `Config::require_intercom`.

mod doorbell;
pub mod generated;
mod homeassistant;
mod print;
mod raw;
mod scalars;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use raw::{ENV_PREFIX, KEYS, RESERVED_ENV, closest, reserved};

/// Where the configuration comes from, lowest priority first: `options_json`, then `file`, then
/// `env`, then `cli`. Each is optional; absent layers leave the built-in defaults in place.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sources {
    /// A YAML (or JSON) file given on the command line.
    pub file: Option<PathBuf>,
    /// The Home Assistant add-on options, normally `/data/options.json`.
    pub options_json: Option<PathBuf>,
    /// `(name, value)` pairs, names with the `C300X_` prefix (e.g. `C300X_INTERCOM_HOST`).
    pub env: Vec<(String, String)>,
    /// `(key, value)` pairs from `--set key=value`, key as in the file (e.g. `linger_seconds`).
    pub cli: Vec<(String, String)>,
}

impl Sources {
    /// Collects every process environment variable starting with `C300X_` except the names in
    /// the reserved ones (`RESERVED_ENV`, `C300X_SKIP_*`: the command line's and the scripts').
    pub fn from_process_env(
        file: Option<PathBuf>,
        options_json: Option<PathBuf>,
        cli: Vec<(String, String)>,
    ) -> Self {
        // vars_os: a non-UTF-8 variable elsewhere in the environment must not panic; ours must be text.
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && !reserved(k))
            .collect();
        Sources {
            file,
            options_json,
            env,
            cli,
        }
    }
}

/// Reads every layer, merges them and validates the result. Fails on the first problem, with one
/// line naming the key, the value, where it came from and what is allowed.
pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
    let merged = raw::merge(sources)?;
    validate::build(&merged)
}

/// Where a value came from; shown in every validation error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// A YAML/JSON file given with the file path.
    File(PathBuf),
    /// The Home Assistant add-on options file.
    OptionsJson(PathBuf),
    /// An environment variable, with its full name.
    Env(String),
    /// `--set key=value` on the command line.
    Cli,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("built-in default"),
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::OptionsJson(p) => write!(f, "add-on options {}", p.display()),
            Origin::Env(name) => write!(f, "env {name}"),
            Origin::Cli => f.write_str("--set"),
        }
    }
}

/// A configuration problem. `Display` is one line meant for the user (and the add-on log).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A known key with a wrong type or an impossible value. `value` is already masked for secrets.
    #[error("{key} = {value} (from {origin}): {allowed}")]
    Invalid {
        key: String,
        value: String,
        origin: Origin,
        allowed: String,
    },
    /// A key that is not an option (`suggestion`: the closest known key, if one is obvious).
    #[error("{key} = {value} (from {origin}): unknown option{}", did_you_mean(.suggestion))]
    UnknownKey {
        key: String,
        value: String,
        origin: Origin,
        suggestion: Option<String>,
    },
    /// A key needed by `run` is unset.
    #[error("{key} is not set: {how}")]
    Missing { key: String, how: String },
    /// The file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML/JSON or not a mapping; `message` carries line/column when known.
    #[error("cannot parse {}: {message}", .path.display())]
    Parse { path: PathBuf, message: String },
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!("; did you mean {s}?"),
        None => String::new(),
    }
}

/// A password or token. `Debug` never shows it; use `expose()` where the real value is needed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// What a set secret looks like in `Debug`, `to_masked_yaml` and error messages.
pub const MASK: &str = "********";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SipTransport {
    Tcp,
    Udp,
}

impl SipTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            SipTransport::Tcp => "tcp",
            SipTransport::Udp => "udp",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// The name as `tracing`'s `EnvFilter` accepts it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// An entrance panel that can ring and be viewed; `devaddr` goes into the SDP `a=DEVADDR` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Panel {
    pub name: String,
    pub devaddr: u8,
}

/// A door lock: unlock sends `*8*19*<where>##`, then after `pulse` the release `*8*20*<where>##`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lock {
    pub name: String,
    /// The OpenWebNet WHERE (20..=99); the option key is `where`.
    pub where_: u8,
    pub pulse: Duration,
}

/// A parsed `mqtt_url`: `mqtt://host[:1883]` or `mqtts://host[:8883]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MqttUrl {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl fmt::Display for MqttUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// A parsed `homeassistant_url`: `http://host[:8123][/prefix]` (plain HTTP: HA on the LAN).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaUrl {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// A path prefix without the trailing `/` (`""` normally, `/ha` behind a proxy).
    pub path: String,
}

impl fmt::Display for HaUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}{}", self.host, self.port, self.path)
        } else {
            write!(f, "http://{}:{}{}", self.host, self.port, self.path)
        }
    }
}

/// The validated configuration. Field names follow the option keys; `*_seconds`/`pulse_ms` become
/// `Duration`s. `mqtt_url: None` means "no broker configured" (the add-on may ask the Supervisor).
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub intercom_host: Option<String>,
    pub intercom_sip_port: u16,
    pub sip_transport: SipTransport,
    pub sip_domain: Option<String>,
    pub sip_user: String,
    pub sip_password: Option<Secret>,
    pub advertise_address: Option<IpAddr>,
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    pub panels: Vec<Panel>,
    pub locks: Vec<Lock>,
    pub linger: Duration,
    pub start_timeout: Duration,
    pub max_call: Duration,
    /// Speex → AAC for the viewers; `false` serves video only.
    pub audio: bool,
    /// AAC sample rate (mono), Hz.
    pub audio_sample_rate: u32,
    /// MJPEG frame-rate cap; 0 = the camera's own rate.
    pub mjpeg_fps: u8,
    /// JPEG quality (1–100) of MJPEG parts and snapshots.
    pub mjpeg_quality: u8,
    /// Answer a ring with 183 + our SDP so the intercom streams a silent preview (never 200).
    pub ring_preview: bool,
    /// Without a preview, place a short view call for the ring's snapshot.
    pub ring_snapshot_call: bool,
    /// The SIP status a ring rejected from Home Assistant gets (403, 480, 486 or 603).
    pub ring_reject_code: u16,
    /// Keep each ring's JPEG (and clip) under `clip_dir/<panel>/`.
    pub ring_history: bool,
    /// Rings kept per panel (the oldest are deleted).
    pub ring_history_keep: u32,
    /// Rings older than this many days are deleted; 0 = no age limit.
    pub ring_history_days: u32,
    /// Length of the MP4 clip recorded at each ring; zero = no clip.
    pub ring_clip: Duration,
    /// Where ring pictures and clips go, one sub-folder per panel.
    pub clip_dir: PathBuf,
    pub rtsp_port: u16,
    pub rtsp_user: Option<String>,
    pub rtsp_password: Option<Secret>,
    pub http_port: u16,
    /// A second listener for the same HTTP router, for Home Assistant ingress (the add-on image
    /// sets it to a fixed internal port, so changing `http_port` never breaks ingress or the
    /// watchdog). Not an add-on option; unset = none.
    pub ingress_port: Option<u16>,
    pub api_token: Option<Secret>,
    /// The cached snapshot (never a call) is served without credentials.
    pub public_snapshot: bool,
    /// Where the RTSP and HTTP servers listen; `None` = every interface.
    pub bind_address: Option<IpAddr>,
    /// Connections each server takes in all (RTSP and HTTP separately).
    pub max_connections: u32,
    /// Connections each server takes from one address; 0 = no per-address cap.
    pub max_connections_per_ip: u32,
    pub mqtt_url: Option<MqttUrl>,
    pub mqtt_user: Option<String>,
    pub mqtt_password: Option<Secret>,
    pub mqtt_discovery_prefix: String,
    pub mqtt_base_topic: String,
    /// Create (and keep up to date) one Generic Camera per panel in Home Assistant: through the
    /// Supervisor in the add-on, else through `homeassistant_url`; otherwise the manual steps are shown.
    pub ha_camera: bool,
    /// Home Assistant outside the add-on, e.g. `http://192.168.1.5:8123`.
    pub homeassistant_url: Option<HaUrl>,
    /// A long-lived access token for `homeassistant_url`.
    pub homeassistant_token: Option<Secret>,
    /// Where the bridge keeps its state; `None`: `/data` in the add-on, else a per-user directory.
    pub data_dir: Option<PathBuf>,
    pub log_level: LogLevel,
    /// Not an option: the credentials above were generated by the add-on (`generated`).
    pub credentials_generated: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            intercom_host: None,
            intercom_sip_port: 5060,
            sip_transport: SipTransport::Tcp,
            sip_domain: None,
            sip_user: "c300x-bridge".to_owned(),
            sip_password: None,
            advertise_address: None,
            rtp_port_min: 20000,
            rtp_port_max: 20099,
            panels: vec![Panel {
                name: "doorbell".to_owned(),
                devaddr: 20,
            }],
            locks: vec![Lock {
                name: "door".to_owned(),
                where_: 20,
                pulse: DEFAULT_PULSE,
            }],
            linger: Duration::from_secs(15),
            start_timeout: Duration::from_secs(10),
            max_call: Duration::from_secs(300),
            audio: true,
            audio_sample_rate: 16000,
            mjpeg_fps: 0,
            mjpeg_quality: 80,
            ring_preview: true,
            ring_snapshot_call: false,
            ring_reject_code: 486,
            ring_history: true,
            ring_history_keep: 100,
            ring_history_days: 30,
            ring_clip: Duration::ZERO,
            clip_dir: PathBuf::from("/media/c300x"),
            rtsp_port: 8554,
            rtsp_user: None,
            rtsp_password: None,
            http_port: 8080,
            ingress_port: None,
            api_token: None,
            public_snapshot: false,
            bind_address: None,
            max_connections: 256,
            max_connections_per_ip: 64,
            mqtt_url: None,
            mqtt_user: None,
            mqtt_password: None,
            mqtt_discovery_prefix: "homeassistant".to_owned(),
            mqtt_base_topic: "c300x".to_owned(),
            ha_camera: true,
            homeassistant_url: None,
            homeassistant_token: None,
            data_dir: None,
            log_level: LogLevel::Info,
            credentials_generated: false,
        }
    }
}

/// A lock's `pulse_ms` when the entry leaves it out.
pub const DEFAULT_PULSE: Duration = Duration::from_millis(2000);

/// The SIP statuses `ring_reject_code` may be: what the unit's reaction to each is, is unverified.
pub const REJECT_CODES: [u16; 4] = [403, 480, 486, 603];

impl Config {
    /// `run` needs to know where the intercom is: `intercom_host` and `sip_domain` must be set.
    pub fn require_intercom(&self) -> Result<(), ConfigError> {
        let missing = |key: &str, example: &str| ConfigError::Missing {
            key: key.to_owned(),
            how: format!(
                "`run` needs it; set {key}: {example} in the add-on options or the config file, \
                 or {ENV_PREFIX}{} in the environment, or --set {key}={example}",
                key.to_ascii_uppercase()
            ),
        };
        if self.intercom_host.is_none() {
            return Err(missing("intercom_host", "192.168.1.50"));
        }
        if self.sip_domain.is_none() {
            return Err(missing("sip_domain", "1234567.bs.iotleg.com"));
        }
        Ok(())
    }

    /// The effective configuration as YAML with the option keys (loadable again as a file);
    /// every set password/token is shown as `********`.
    pub fn to_masked_yaml(&self) -> String {
        print::masked_yaml(self)
    }

    /// `ring_history_days` as an age; `None` when rings are kept whatever their age.
    pub fn ring_history_max_age(&self) -> Option<Duration> {
        (self.ring_history_days > 0)
            .then(|| Duration::from_secs(u64::from(self.ring_history_days) * 86_400))
    }
}
