//! Unit tests of the configuration: every error path (key, value and origin in one line), the layer
//! precedence, both file formats, env/`--set` text parsing, masking and `require_intercom`.

use std::path::PathBuf;
use std::time::Duration;

use tempfile::TempDir;

use super::*;

mod doorbell;
mod errors;

/// A file in its own temporary directory (kept alive by the returned `TempDir`).
fn write(name: &str, text: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    (dir, path)
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn from_yaml(text: &str) -> (TempDir, PathBuf, Result<Config, ConfigError>) {
    let (dir, path) = write("c.yaml", text);
    let result = load(&Sources {
        file: Some(path.clone()),
        ..Sources::default()
    });
    (dir, path, result)
}

fn from_env(list: &[(&str, &str)]) -> Result<Config, ConfigError> {
    load(&Sources {
        env: pairs(list),
        ..Sources::default()
    })
}

fn from_cli(list: &[(&str, &str)]) -> Result<Config, ConfigError> {
    load(&Sources {
        cli: pairs(list),
        ..Sources::default()
    })
}

/// The one-line message of an expected error.
fn message(result: Result<Config, ConfigError>) -> String {
    match result {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => {
            let m = e.to_string();
            assert!(!m.contains('\n'), "not one line: {m}");
            m
        }
    }
}

/// A YAML file must fail with a message starting with `start` and naming the file.
fn yaml_fails(text: &str, start: &str, allowed: &str) {
    let (_dir, path, result) = from_yaml(text);
    let m = message(result);
    let expected = format!("{start} (from {}): ", path.display());
    assert!(
        m.starts_with(&expected),
        "{m:?} should start with {expected:?}"
    );
    assert!(m.contains(allowed), "{m:?} should contain {allowed:?}");
}

fn env_fails(list: &[(&str, &str)], expected: &str) {
    assert_eq!(message(from_env(list)), expected);
}

// ---- defaults and sources ----

#[test]
fn no_sources_give_the_defaults() {
    let c = load(&Sources::default()).expect("defaults are valid");
    assert_eq!(c, Config::default());
    assert_eq!(c.intercom_sip_port, 5060);
    assert_eq!(c.sip_transport, SipTransport::Tcp);
    assert_eq!(c.sip_user, "c300x-bridge");
    assert_eq!((c.rtp_port_min, c.rtp_port_max), (20000, 20099));
    assert_eq!(
        c.panels,
        vec![Panel {
            name: "doorbell".into(),
            devaddr: 20
        }]
    );
    assert_eq!(
        c.locks,
        vec![Lock {
            name: "door".into(),
            where_: 20,
            pulse: Duration::from_millis(2000)
        }]
    );
    assert_eq!(c.linger, Duration::from_secs(15));
    assert_eq!(c.start_timeout, Duration::from_secs(10));
    assert_eq!(c.max_call, Duration::from_secs(300));
    assert_eq!((c.rtsp_port, c.http_port), (8554, 8080));
    assert_eq!(c.mqtt_url, None);
    assert_eq!(c.mqtt_discovery_prefix, "homeassistant");
    assert_eq!(c.mqtt_base_topic, "c300x");
    assert_eq!(c.log_level.as_str(), "info");
}

#[test]
fn full_yaml_file_is_typed() {
    let (_dir, _path, result) = from_yaml(
        "intercom_host: 192.168.1.50\nintercom_sip_port: 5061\nsip_transport: udp\n\
         sip_domain: 1234567.bs.iotleg.com\nsip_user: ha\nsip_password: \"0123\"\n\
         advertise_address: 192.168.1.10\nrtp_port_min: 30000\nrtp_port_max: 30003\n\
         panels:\n  - {name: front, devaddr: 20}\n  - {name: back, devaddr: 21}\n\
         locks:\n  - {name: gate, where: 21, pulse_ms: 500}\n  - {name: door, where: 20}\n\
         linger_seconds: 0\nstart_timeout_seconds: 60\nmax_call_seconds: 86400\n\
         rtsp_port: 554\nrtsp_user: viewer\nrtsp_password: pw\nhttp_port: 80\napi_token: tok\n\
         mqtt_url: mqtts://broker.lan\nmqtt_user: bridge\nmqtt_password: mp\n\
         mqtt_discovery_prefix: ha/disc\nmqtt_base_topic: door-bridge\nlog_level: debug\n",
    );
    let c = result.expect("valid");
    assert_eq!(c.intercom_host.as_deref(), Some("192.168.1.50"));
    assert_eq!(c.intercom_sip_port, 5061);
    assert_eq!(c.sip_transport, SipTransport::Udp);
    assert_eq!(c.sip_domain.as_deref(), Some("1234567.bs.iotleg.com"));
    assert_eq!(c.sip_password.as_ref().map(Secret::expose), Some("0123"));
    assert_eq!(
        c.advertise_address,
        Some("192.168.1.10".parse().expect("ip"))
    );
    assert_eq!(
        c.panels[1],
        Panel {
            name: "back".into(),
            devaddr: 21
        }
    );
    assert_eq!(c.locks[0].pulse, Duration::from_millis(500));
    assert_eq!(c.locks[1].pulse, DEFAULT_PULSE);
    assert_eq!(c.linger, Duration::ZERO);
    assert_eq!(c.max_call, Duration::from_secs(86400));
    assert_eq!(
        c.mqtt_url,
        Some(MqttUrl {
            host: "broker.lan".into(),
            port: 8883,
            tls: true
        })
    );
    assert_eq!(c.mqtt_discovery_prefix, "ha/disc");
    assert_eq!(c.log_level, LogLevel::Debug);
    assert_eq!(c.api_token.as_ref().map(Secret::expose), Some("tok"));
}

#[test]
fn options_json_is_the_file_layer() {
    let (_dir, path) = write(
        "options.json",
        r#"{"intercom_host": "10.0.0.2", "sip_domain": "", "sip_password": "", "rtsp_user": "",
            "rtsp_password": "", "mqtt_url": "", "linger_seconds": 20,
            "panels": [{"name": "doorbell", "devaddr": 20}], "locks": [{"name": "door", "where": 20, "pulse_ms": 3000}]}"#,
    );
    let c = load(&Sources {
        options_json: Some(path),
        ..Sources::default()
    })
    .expect("valid");
    assert_eq!(c.intercom_host.as_deref(), Some("10.0.0.2"));
    // The Supervisor writes "" for empty optional fields: unset.
    assert_eq!(c.sip_domain, None);
    assert_eq!(c.sip_password, None);
    assert_eq!(c.mqtt_url, None);
    assert_eq!(c.linger, Duration::from_secs(20));
    assert_eq!(c.locks[0].pulse, Duration::from_millis(3000));
}

#[test]
fn precedence_is_default_then_file_then_env_then_cli() {
    let (_d1, json) = write(
        "options.json",
        r#"{"linger_seconds": 1, "http_port": 81, "rtsp_port": 555, "sip_user": "j"}"#,
    );
    let (_d2, yaml) = write(
        "c.yaml",
        "linger_seconds: 2\nhttp_port: 82\nrtsp_port: 556\n",
    );
    let sources = Sources {
        file: Some(yaml),
        options_json: Some(json),
        env: pairs(&[("C300X_LINGER_SECONDS", "3"), ("C300X_HTTP_PORT", "83")]),
        cli: pairs(&[("linger_seconds", "4")]),
    };
    let c = load(&sources).expect("valid");
    assert_eq!(c.linger, Duration::from_secs(4), "cli wins");
    assert_eq!(c.http_port, 83, "env beats the files");
    assert_eq!(c.rtsp_port, 556, "the YAML file beats options.json");
    assert_eq!(c.sip_user, "j", "options.json beats the default");
    assert_eq!(
        c.max_call,
        Duration::from_secs(300),
        "default when nobody sets it"
    );
}

#[test]
fn null_in_a_file_means_default() {
    let (_dir, _path, result) = from_yaml(
        "linger_seconds: ~\npanels: null\nlocks:\n  - {name: a, where: 30, pulse_ms: null}\n",
    );
    let c = result.expect("valid");
    assert_eq!(c.linger, Duration::from_secs(15));
    assert_eq!(c.panels, Config::default().panels);
    assert_eq!(c.locks[0].pulse, DEFAULT_PULSE);
}

#[test]
fn null_in_the_yaml_file_keeps_the_options_json_value() {
    let (_d1, json) = write("options.json", r#"{"linger_seconds": 30}"#);
    let (_d2, yaml) = write("c.yaml", "linger_seconds: null\n");
    let c = load(&Sources {
        file: Some(yaml),
        options_json: Some(json),
        ..Sources::default()
    })
    .expect("valid");
    assert_eq!(c.linger, Duration::from_secs(30));
}

#[test]
fn empty_and_comment_only_yaml_files_set_nothing() {
    for text in ["", "# nothing yet\n"] {
        let (_dir, _path, result) = from_yaml(text);
        assert_eq!(result.expect("valid"), Config::default());
    }
}

#[test]
fn yaml_file_may_be_json() {
    let (_dir, _path, result) = from_yaml(r#"{"http_port": 9000}"#);
    assert_eq!(result.expect("valid").http_port, 9000);
}

#[test]
fn env_text_is_parsed_by_key_type() {
    let c = from_env(&[
        ("C300X_INTERCOM_HOST", "intercom.lan"),
        ("C300X_INTERCOM_SIP_PORT", " 5070 "),
        ("C300X_SIP_TRANSPORT", "UDP"),
        (
            "C300X_PANELS",
            "[{name: doorbell, devaddr: 20}, {name: side, devaddr: \"22\"}]",
        ),
        (
            "C300X_LOCKS",
            r#"[{"name": "gate", "where": 25, "pulse_ms": 1000}]"#,
        ),
        ("C300X_SIP_USER", "123"),
        ("C300X_LOG_LEVEL", "warning"),
        ("C300X_MQTT_URL", "mqtt://[::1]"),
        ("C300X_CONFIG", "/etc/ignored-because-reserved.yaml"),
    ])
    .expect("valid");
    assert_eq!(c.intercom_host.as_deref(), Some("intercom.lan"));
    assert_eq!(c.intercom_sip_port, 5070);
    assert_eq!(c.sip_transport, SipTransport::Udp);
    assert_eq!(c.panels.len(), 2);
    assert_eq!(c.panels[1].devaddr, 22);
    assert_eq!(
        c.locks,
        vec![Lock {
            name: "gate".into(),
            where_: 25,
            pulse: Duration::from_secs(1)
        }]
    );
    assert_eq!(c.sip_user, "123");
    assert_eq!(c.log_level, LogLevel::Warn);
    assert_eq!(
        c.mqtt_url,
        Some(MqttUrl {
            host: "::1".into(),
            port: 1883,
            tls: false
        })
    );
    assert_eq!(
        c.mqtt_url.map(|u| u.to_string()).as_deref(),
        Some("mqtt://[::1]:1883")
    );
}

#[test]
fn cli_keys_are_forgiving_about_case_and_dashes() {
    let c = from_cli(&[
        ("Linger-Seconds", "7"),
        ("mqtt_url", "mqtt://core-mosquitto:1884/"),
    ])
    .expect("valid");
    assert_eq!(c.linger, Duration::from_secs(7));
    assert_eq!(
        c.mqtt_url,
        Some(MqttUrl {
            host: "core-mosquitto".into(),
            port: 1884,
            tls: false
        })
    );
}

#[test]
fn empty_string_unsets_an_optional_key_from_a_lower_layer() {
    let (_dir, yaml) = write(
        "c.yaml",
        "sip_password: secret\nintercom_host: 10.0.0.2\nadvertise_address: 10.0.0.9\n",
    );
    let sources = Sources {
        file: Some(yaml),
        env: pairs(&[("C300X_SIP_PASSWORD", ""), ("C300X_ADVERTISE_ADDRESS", " ")]),
        cli: pairs(&[("intercom_host", "")]),
        ..Sources::default()
    };
    let c = load(&sources).expect("valid");
    assert_eq!(c.sip_password, None);
    assert_eq!(c.advertise_address, None);
    assert_eq!(c.intercom_host, None);
}

#[test]
fn numbers_in_text_keys_are_text_and_quoted_numbers_are_numbers() {
    let (_dir, _path, result) = from_yaml(
        "sip_user: 123\nrtsp_user: 42\nrtsp_password: \"007\"\nhttp_port: \"8081\"\nlinger_seconds: 5.0\n",
    );
    let c = result.expect("valid");
    assert_eq!(c.sip_user, "123");
    assert_eq!(c.rtsp_user.as_deref(), Some("42"));
    assert_eq!(c.http_port, 8081);
    assert_eq!(c.linger, Duration::from_secs(5));
}

// ---- output ----

#[test]
fn masked_yaml_hides_secrets_and_loads_again() {
    let c = from_cli(&[
        ("intercom_host", "10.0.0.2"),
        ("sip_domain", "1234567.bs.iotleg.com"),
        ("sip_password", "hunter2"),
        ("rtsp_user", "viewer"),
        ("rtsp_password", "pw-rtsp"),
        ("api_token", "tok-api"),
        ("mqtt_url", "mqtts://broker"),
        ("mqtt_password", "pw-mqtt"),
        ("locks", "[{name: door, where: 20, pulse_ms: 1500}]"),
    ])
    .expect("valid");
    let yaml = c.to_masked_yaml();
    for secret in ["hunter2", "pw-rtsp", "tok-api", "pw-mqtt"] {
        assert!(!yaml.contains(secret), "{secret} leaked:\n{yaml}");
    }
    assert!(
        yaml.contains("sip_password: '********'") || yaml.contains("sip_password: \"********\""),
        "{yaml}"
    );
    assert!(yaml.contains("mqtt_url: mqtts://broker:8883"), "{yaml}");
    assert!(
        yaml.contains("where: 20") && yaml.contains("pulse_ms: 1500"),
        "{yaml}"
    );

    let (_dir, _path, again) = from_yaml(&yaml);
    let again = again.expect("printed config loads");
    assert_eq!(again.sip_password.as_ref().map(Secret::expose), Some(MASK));
    assert_eq!(
        Config {
            sip_password: c.sip_password.clone(),
            rtsp_password: c.rtsp_password.clone(),
            api_token: c.api_token.clone(),
            mqtt_password: c.mqtt_password.clone(),
            ..again
        },
        c
    );
}

#[test]
fn debug_masks_secrets() {
    let c = from_env(&[
        ("C300X_SIP_PASSWORD", "hunter2"),
        ("C300X_MQTT_PASSWORD", "pw-mqtt"),
    ])
    .expect("valid");
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("pw-mqtt"),
        "{debug}"
    );
    assert!(debug.contains(MASK));
    assert_eq!(c.sip_password.as_ref().map(Secret::expose), Some("hunter2"));
}

#[test]
fn require_intercom_names_the_missing_key() {
    let m = Config::default()
        .require_intercom()
        .expect_err("nothing set")
        .to_string();
    assert!(
        m.starts_with("intercom_host is not set: ")
            && m.contains("C300X_INTERCOM_HOST")
            && m.contains("--set intercom_host="),
        "{m}"
    );
    let c = from_env(&[("C300X_INTERCOM_HOST", "10.0.0.2")]).expect("valid");
    let m = c.require_intercom().expect_err("no domain").to_string();
    assert!(
        m.starts_with("sip_domain is not set: ") && m.contains("C300X_SIP_DOMAIN"),
        "{m}"
    );
    let c = from_env(&[
        ("C300X_INTERCOM_HOST", "10.0.0.2"),
        ("C300X_SIP_DOMAIN", "1234567.bs.iotleg.com"),
    ])
    .expect("valid");
    assert!(c.require_intercom().is_ok());
}

#[test]
fn keys_list_matches_the_config() {
    assert_eq!(KEYS.len(), 46);
    assert!(KEYS.contains(&"mqtt_base_topic"));
    let yaml = Config::default().to_masked_yaml();
    for key in KEYS {
        assert!(
            yaml.contains(&format!("\n{key}:")) || yaml.starts_with(&format!("{key}:")),
            "{key} not printed"
        );
    }
}

#[test]
fn access_and_connection_keys() {
    let d = Config::default();
    assert_eq!((d.max_connections, d.max_connections_per_ip), (256, 64));
    assert!(!d.public_snapshot && d.bind_address.is_none());
    let c = from_env(&[
        ("C300X_BIND_ADDRESS", "127.0.0.1"),
        ("C300X_MAX_CONNECTIONS", "1000"),
        ("C300X_MAX_CONNECTIONS_PER_IP", "0"),
        ("C300X_PUBLIC_SNAPSHOT", "yes"),
    ])
    .expect("valid");
    assert_eq!(c.bind_address, Some([127, 0, 0, 1].into()));
    assert_eq!((c.max_connections, c.max_connections_per_ip), (1000, 0));
    assert!(c.public_snapshot);
    assert_eq!(
        from_env(&[("C300X_BIND_ADDRESS", "")])
            .expect("empty")
            .bind_address,
        None
    );
    for (var, needle) in [
        ("C300X_BIND_ADDRESS", "bind_address = \"localhost\""),
        ("C300X_MAX_CONNECTIONS", "max_connections = 0"),
        (
            "C300X_MAX_CONNECTIONS_PER_IP",
            "max_connections_per_ip = -1",
        ),
    ] {
        let value = match var {
            "C300X_BIND_ADDRESS" => "localhost",
            "C300X_MAX_CONNECTIONS" => "0",
            _ => "-1",
        };
        let e = from_env(&[(var, value)]).expect_err("invalid").to_string();
        assert!(e.starts_with(needle), "{e}");
    }
}

#[test]
fn process_env_keeps_only_prefixed_option_variables() {
    let s = Sources::from_process_env(None, None, pairs(&[("http_port", "81")]));
    assert!(
        s.env
            .iter()
            .all(|(k, _)| k.starts_with(ENV_PREFIX) && !reserved(k))
    );
    assert_eq!(s.cli, pairs(&[("http_port", "81")]));
}

/// The test and build scripts' switches (`C300X_SKIP_HA=1 scripts/test.sh`) reach the binaries
/// the tests start; they must not be taken for misspelt options.
#[test]
fn script_switches_are_not_options() {
    for name in [
        "C300X_SKIP_HA",
        "C300X_SKIP_ARM64",
        "C300X_HA_VERSIONS",
        "C300X_TEST_PANIC",
    ] {
        assert!(reserved(name), "{name}");
    }
    assert!(!reserved("C300X_HTTP_PORT"));
    let cfg = from_env(&[("C300X_SKIP_IMAGE", "1"), ("C300X_HTTP_PORT", "81")]);
    assert_eq!(cfg.expect("reserved names are skipped").http_port, 81);
}

// ---- Home Assistant options (issue 15) ----

#[test]
fn homeassistant_url_token_and_data_dir() {
    let c = from_cli(&[
        ("homeassistant_url", "http://192.168.1.5:8123/"),
        ("homeassistant_token", "abc.def"),
        ("data_dir", "/srv/c300x"),
        ("ha_camera", "off"),
    ])
    .expect("valid");
    let url = c.homeassistant_url.clone().expect("url");
    assert_eq!(
        (url.host.as_str(), url.port, url.path.as_str()),
        ("192.168.1.5", 8123, "")
    );
    assert_eq!(url.to_string(), "http://192.168.1.5:8123");
    assert_eq!(
        c.homeassistant_token.as_ref().map(Secret::expose),
        Some("abc.def")
    );
    assert_eq!(c.data_dir, Some(PathBuf::from("/srv/c300x")));
    assert!(!c.ha_camera);
    let yaml = c.to_masked_yaml();
    assert!(yaml.contains("homeassistant_token: '********'"), "{yaml}");
    assert!(!yaml.contains("abc.def"));
    let proxied = from_cli(&[
        ("homeassistant_url", "http://[fd00::5]/ha"),
        ("homeassistant_token", "t"),
    ])
    .expect("valid");
    let url = proxied.homeassistant_url.expect("url");
    assert_eq!((url.port, url.path.as_str()), (8123, "/ha"));
    assert_eq!(url.to_string(), "http://[fd00::5]:8123/ha");
    assert!(Config::default().ha_camera, "on by default");
}

#[test]
fn homeassistant_url_errors_name_the_fix() {
    let m = message(from_cli(&[
        ("homeassistant_url", "https://ha.example.com"),
        ("homeassistant_token", "t"),
    ]));
    assert!(m.starts_with("homeassistant_url = \"https://ha.example.com\" (from --set): must be Home Assistant's local address"), "{m}");
    assert!(m.contains("HTTPS is not supported"), "{m}");
    let m = message(from_cli(&[("homeassistant_url", "http://ha:8123")]));
    assert!(m.contains("needs homeassistant_token too"), "{m}");
    let m = message(from_cli(&[("homeassistant_token", "secret")]));
    assert_eq!(
        m,
        "homeassistant_token = ******** (from --set): needs homeassistant_url too (in the add-on \
         neither is needed)"
    );
    assert!(!m.contains("secret"));
    let m = message(from_cli(&[("ha_camera", "maybe")]));
    assert!(m.contains("must be true or false"), "{m}");
}
