//! The effective configuration printed back with the option keys (flat, as in a config file), every
//! set password/token replaced by `********`. The output loads again as a YAML file.

use serde::Serialize;

use super::{Config, MASK, Secret};

#[derive(Serialize)]
struct Flat<'a> {
    intercom_host: Option<&'a str>,
    intercom_sip_port: u16,
    sip_transport: &'static str,
    sip_domain: Option<&'a str>,
    sip_user: &'a str,
    sip_password: Option<&'static str>,
    advertise_address: Option<String>,
    rtp_port_min: u16,
    rtp_port_max: u16,
    panels: Vec<FlatPanel<'a>>,
    locks: Vec<FlatLock<'a>>,
    linger_seconds: u64,
    start_timeout_seconds: u64,
    max_call_seconds: u64,
    audio: bool,
    audio_sample_rate: u32,
    mjpeg_fps: u8,
    mjpeg_quality: u8,
    ring_preview: bool,
    ring_snapshot_call: bool,
    ring_reject_code: u16,
    ring_history: bool,
    ring_history_keep: u32,
    ring_history_days: u32,
    ring_clip_seconds: u64,
    clip_dir: String,
    rtsp_port: u16,
    rtsp_user: Option<&'a str>,
    rtsp_password: Option<&'static str>,
    http_port: u16,
    ingress_port: Option<u16>,
    api_token: Option<&'static str>,
    public_snapshot: bool,
    bind_address: Option<String>,
    max_connections: u32,
    max_connections_per_ip: u32,
    mqtt_url: Option<String>,
    mqtt_user: Option<&'a str>,
    mqtt_password: Option<&'static str>,
    mqtt_discovery_prefix: &'a str,
    mqtt_base_topic: &'a str,
    ha_camera: bool,
    homeassistant_url: Option<String>,
    homeassistant_token: Option<&'static str>,
    data_dir: Option<String>,
    log_level: &'static str,
}

#[derive(Serialize)]
struct FlatPanel<'a> {
    name: &'a str,
    devaddr: u8,
}

#[derive(Serialize)]
struct FlatLock<'a> {
    name: &'a str,
    #[serde(rename = "where")]
    where_: u8,
    pulse_ms: u128,
}

fn mask(secret: &Option<Secret>) -> Option<&'static str> {
    secret.as_ref().map(|_| MASK)
}

pub(super) fn masked_yaml(c: &Config) -> String {
    let flat = Flat {
        intercom_host: c.intercom_host.as_deref(),
        intercom_sip_port: c.intercom_sip_port,
        sip_transport: c.sip_transport.as_str(),
        sip_domain: c.sip_domain.as_deref(),
        sip_user: &c.sip_user,
        sip_password: mask(&c.sip_password),
        advertise_address: c.advertise_address.map(|a| a.to_string()),
        rtp_port_min: c.rtp_port_min,
        rtp_port_max: c.rtp_port_max,
        panels: c
            .panels
            .iter()
            .map(|p| FlatPanel {
                name: &p.name,
                devaddr: p.devaddr,
            })
            .collect(),
        locks: c
            .locks
            .iter()
            .map(|l| FlatLock {
                name: &l.name,
                where_: l.where_,
                pulse_ms: l.pulse.as_millis(),
            })
            .collect(),
        linger_seconds: c.linger.as_secs(),
        start_timeout_seconds: c.start_timeout.as_secs(),
        max_call_seconds: c.max_call.as_secs(),
        audio: c.audio,
        audio_sample_rate: c.audio_sample_rate,
        mjpeg_fps: c.mjpeg_fps,
        mjpeg_quality: c.mjpeg_quality,
        ring_preview: c.ring_preview,
        ring_snapshot_call: c.ring_snapshot_call,
        ring_reject_code: c.ring_reject_code,
        ring_history: c.ring_history,
        ring_history_keep: c.ring_history_keep,
        ring_history_days: c.ring_history_days,
        ring_clip_seconds: c.ring_clip.as_secs(),
        clip_dir: c.clip_dir.display().to_string(),
        rtsp_port: c.rtsp_port,
        rtsp_user: c.rtsp_user.as_deref(),
        rtsp_password: mask(&c.rtsp_password),
        http_port: c.http_port,
        ingress_port: c.ingress_port,
        api_token: mask(&c.api_token),
        public_snapshot: c.public_snapshot,
        bind_address: c.bind_address.map(|a| a.to_string()),
        max_connections: c.max_connections,
        max_connections_per_ip: c.max_connections_per_ip,
        mqtt_url: c.mqtt_url.as_ref().map(|u| u.to_string()),
        mqtt_user: c.mqtt_user.as_deref(),
        mqtt_password: mask(&c.mqtt_password),
        mqtt_discovery_prefix: &c.mqtt_discovery_prefix,
        mqtt_base_topic: &c.mqtt_base_topic,
        ha_camera: c.ha_camera,
        homeassistant_url: c.homeassistant_url.as_ref().map(|u| u.to_string()),
        homeassistant_token: mask(&c.homeassistant_token),
        data_dir: c.data_dir.as_ref().map(|d| d.display().to_string()),
        log_level: c.log_level.as_str(),
    };
    // Serializing plain strings, numbers and lists cannot fail; keep a readable fallback anyway.
    serde_norway::to_string(&flat)
        .unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
}
