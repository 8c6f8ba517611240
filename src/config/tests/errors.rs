//! Error-path tests: each bad value fails with one line naming the key (or `list[i].field`), the
//! value, where it came from and what is allowed; unknown keys suggest the closest one.

use std::path::PathBuf;

use super::*;

// ---- error paths: scalars ----

#[test]
fn linger_from_env_example_message() {
    env_fails(
        &[("C300X_LINGER_SECONDS", "-1")],
        "linger_seconds = -1 (from env C300X_LINGER_SECONDS): must be a whole number of seconds from 0 to 3600",
    );
}

#[test]
fn duration_ranges() {
    yaml_fails(
        "linger_seconds: 3601",
        "linger_seconds = 3601",
        "from 0 to 3600",
    );
    yaml_fails(
        "linger_seconds: 1.5",
        "linger_seconds = 1.5",
        "whole number of seconds",
    );
    yaml_fails(
        "start_timeout_seconds: 0",
        "start_timeout_seconds = 0",
        "from 1 to 60",
    );
    yaml_fails(
        "start_timeout_seconds: 61",
        "start_timeout_seconds = 61",
        "from 1 to 60",
    );
    yaml_fails(
        "max_call_seconds: 9",
        "max_call_seconds = 9",
        "from 10 to 86400",
    );
    yaml_fails(
        "max_call_seconds: 86401",
        "max_call_seconds = 86401",
        "from 10 to 86400",
    );
}

#[test]
fn ports_must_be_1_to_65535() {
    for key in [
        "intercom_sip_port",
        "rtsp_port",
        "http_port",
        "rtp_port_min",
        "rtp_port_max",
    ] {
        yaml_fails(
            &format!("{key}: 0"),
            &format!("{key} = 0"),
            "must be a port number from 1 to 65535",
        );
    }
    yaml_fails("http_port: 70000", "http_port = 70000", "from 1 to 65535");
    yaml_fails(
        "http_port: 18446744073709551615",
        "http_port = 18446744073709551615",
        "from 1 to 65535",
    );
    env_fails(
        &[("C300X_RTSP_PORT", "abc")],
        "rtsp_port = \"abc\" (from env C300X_RTSP_PORT): must be a port number from 1 to 65535",
    );
}

#[test]
fn wrong_types_name_the_key() {
    yaml_fails("http_port: [1]", "http_port = [1]", "port number");
    yaml_fails(
        "sip_user: [a]",
        "sip_user = [\"a\"]",
        "must be text, not a list",
    );
    yaml_fails("sip_user: 1.5", "sip_user = 1.5", "put it in quotes");
    yaml_fails(
        "sip_transport: 5",
        "sip_transport = 5",
        "must be one of tcp, udp",
    );
    yaml_fails(
        "intercom_host: {a: 1}",
        "intercom_host = {\"a\":1}",
        "must be text",
    );
}

#[test]
fn enums() {
    yaml_fails(
        "sip_transport: tls",
        "sip_transport = \"tls\"",
        "must be one of tcp, udp",
    );
    yaml_fails(
        "log_level: verbose",
        "log_level = \"verbose\"",
        "must be one of trace, debug, info, warn, error",
    );
}

#[test]
fn hosts_and_addresses() {
    yaml_fails(
        "intercom_host: http://10.0.0.2",
        "intercom_host = \"http://10.0.0.2\"",
        "without scheme",
    );
    yaml_fails(
        "intercom_host: 10.0.0.2:5060",
        "intercom_host = \"10.0.0.2:5060\"",
        "host name or IP address",
    );
    yaml_fails(
        "sip_domain: my domain",
        "sip_domain = \"my domain\"",
        "host name",
    );
    yaml_fails(
        "advertise_address: myhost",
        "advertise_address = \"myhost\"",
        "must be an IP address",
    );
    let (_dir, _path, result) =
        from_yaml("intercom_host: \"[fe80::1]\"\nadvertise_address: \"::1\"\n");
    assert_eq!(
        result.expect("valid").intercom_host.as_deref(),
        Some("fe80::1")
    );
}

#[test]
fn sip_user_must_be_a_user_part() {
    yaml_fails(
        "sip_user: \"\"",
        "sip_user = \"\"",
        "non-empty SIP user name",
    );
    yaml_fails("sip_user: a@b", "sip_user = \"a@b\"", "without spaces, @");
}

#[test]
fn secrets_are_masked_in_errors() {
    yaml_fails("sip_password: 1234", "sip_password = ********", "in quotes");
    yaml_fails("api_token: [a]", "api_token = ********", "in quotes");
    let (_dir, path, result) = from_yaml("mqtt_url: mqtt://user:hunter2@broker\n");
    assert_eq!(
        message(result),
        format!(
            "mqtt_url = \"mqtt://********@broker\" (from {}): must be mqtt://host[:port] (default port 1883) or mqtts://host[:port] (default port 8883); put credentials in mqtt_user and mqtt_password",
            path.display()
        )
    );
}

#[test]
fn mqtt_url_scheme_host_port() {
    for bad in [
        "broker:1883",
        "http://broker",
        "mqtt://",
        "mqtt://broker:0",
        "mqtt://broker:99999",
        "mqtt://broker/topic",
        "mqtt://bro ker",
    ] {
        yaml_fails(
            &format!("mqtt_url: \"{bad}\""),
            &format!("mqtt_url = \"{bad}\""),
            "must be mqtt://host[:port]",
        );
    }
    let (_dir, _path, result) = from_yaml("mqtt_url: MQTT://10.0.0.3\n");
    assert_eq!(
        result.expect("valid").mqtt_url,
        Some(MqttUrl {
            host: "10.0.0.3".into(),
            port: 1883,
            tls: false
        })
    );
}

#[test]
fn mqtt_topics() {
    for bad in ["", "a/#", "c300x/+", "/c300x", "c300x/", "a//b"] {
        yaml_fails(
            &format!("mqtt_base_topic: \"{bad}\""),
            &format!("mqtt_base_topic = \"{bad}\""),
            "MQTT topic without #, +",
        );
    }
    env_fails(
        &[("C300X_MQTT_DISCOVERY_PREFIX", "#")],
        "mqtt_discovery_prefix = \"#\" (from env C300X_MQTT_DISCOVERY_PREFIX): must be a non-empty MQTT topic without #, + or empty levels (no leading or trailing /)",
    );
}

// ---- error paths: lists ----

#[test]
fn panel_devaddr_not_numeric_names_the_index() {
    let (_dir, path, result) =
        from_yaml("panels:\n  - {name: doorbell, devaddr: 20}\n  - {name: side, devaddr: abc}\n");
    assert_eq!(
        message(result),
        format!(
            "panels[1].devaddr = \"abc\" (from {}): must be a number from 20 to 99",
            path.display()
        )
    );
}

#[test]
fn panel_and_lock_addresses_are_20_to_99() {
    yaml_fails(
        "panels: [{name: a, devaddr: 19}]",
        "panels[0].devaddr = 19",
        "from 20 to 99",
    );
    yaml_fails(
        "panels: [{name: a, devaddr: 100}]",
        "panels[0].devaddr = 100",
        "from 20 to 99",
    );
    yaml_fails(
        "locks: [{name: a, where: 0}]",
        "locks[0].where = 0",
        "from 20 to 99",
    );
    yaml_fails(
        "locks: [{name: a}]",
        "locks[0].where = (missing)",
        "from 20 to 99",
    );
    yaml_fails(
        "panels: [{name: a}]",
        "panels[0].devaddr = (missing)",
        "from 20 to 99",
    );
}

#[test]
fn lock_pulse_is_100_to_10000_ms() {
    yaml_fails(
        "locks: [{name: a, where: 20, pulse_ms: 99}]",
        "locks[0].pulse_ms = 99",
        "milliseconds from 100 to 10000",
    );
    yaml_fails(
        "locks: [{name: a, where: 20, pulse_ms: 10001}]",
        "locks[0].pulse_ms = 10001",
        "from 100 to 10000",
    );
    let (_dir, _path, result) = from_yaml(
        "locks: [{name: a, where: 20, pulse_ms: 10000}, {name: b, where: 20, pulse_ms: 100}]",
    );
    assert_eq!(
        result.expect("valid").locks[0].pulse,
        Duration::from_secs(10)
    );
}

#[test]
fn names_are_url_and_topic_safe_and_unique() {
    yaml_fails(
        "panels: [{name: Front Door, devaddr: 20}]",
        "panels[0].name = \"Front Door\"",
        "1 to 32 characters from a-z, 0-9, _ and -",
    );
    yaml_fails(
        "panels: [{name: \"\", devaddr: 20}]",
        "panels[0].name = \"\"",
        "1 to 32 characters",
    );
    yaml_fails(
        &format!("locks: [{{name: {}, where: 20}}]", "a".repeat(33)),
        &format!("locks[0].name = \"{}\"", "a".repeat(33)),
        "1 to 32",
    );
    yaml_fails(
        "locks: [{name: a/b, where: 20}]",
        "locks[0].name = \"a/b\"",
        "a-z, 0-9",
    );
    yaml_fails(
        "locks: [{where: 20}]",
        "locks[0].name = (missing)",
        "1 to 32",
    );
    yaml_fails(
        "panels: [{name: a, devaddr: 20}, {name: b, devaddr: 21}, {name: a, devaddr: 22}]",
        "panels[2].name = \"a\"",
        "must be unique; panels[0] already uses it",
    );
    yaml_fails(
        "locks: [{name: x, where: 20}, {name: x, where: 21}]",
        "locks[1].name = \"x\"",
        "panels[0]".replace("panels", "locks").as_str(),
    );
}

#[test]
fn lists_must_be_lists_of_mappings_and_panels_non_empty() {
    yaml_fails("panels: []", "panels = []", "at least one panel");
    yaml_fails(
        "panels: doorbell",
        "panels = \"doorbell\"",
        "must be a list such as [{name: doorbell, devaddr: 20}]",
    );
    yaml_fails(
        "locks: [door]",
        "locks[0] = \"door\"",
        "must be a mapping such as {name: door, where: 20, pulse_ms: 2000}",
    );
    let (_dir, _path, result) = from_yaml("locks: []");
    assert!(result.expect("no locks is fine").locks.is_empty());
    env_fails(
        &[("C300X_PANELS", "")],
        "panels = \"\" (from env C300X_PANELS): must be a list such as [{name: doorbell, devaddr: 20}]",
    );
}

#[test]
fn unparseable_list_text_from_env() {
    let m = message(from_env(&[("C300X_PANELS", "[{name: a, devaddr: 20")]));
    assert!(m.starts_with("panels = \"[{name: a, devaddr: 20\" (from env C300X_PANELS): must be a YAML/JSON list such as"), "{m}");
    let m = message(from_cli(&[("locks", "[{name: a, where: 20}]]")]));
    assert!(
        m.starts_with("locks = \"[{name: a, where: 20}]]\" (from --set): must be a YAML/JSON list"),
        "{m}"
    );
}

#[test]
fn unknown_keys_in_entries_suggest() {
    yaml_fails(
        "panels: [{name: a, devadr: 20}]",
        "panels[0].devadr = 20",
        "unknown option; did you mean panels[0].devaddr?",
    );
    yaml_fails(
        "locks: [{name: a, where: 20, colour: red}]",
        "locks[0].colour = \"red\"",
        "unknown option",
    );
}

// ---- error paths: across keys ----

#[test]
fn rtp_range_checks() {
    let (_dir, path, result) = from_yaml("rtp_port_min: 20200\n");
    assert_eq!(
        message(result),
        format!(
            "rtp_port_min = 20200 (from {}): must not be above rtp_port_max = 20099 (from built-in default)",
            path.display()
        )
    );
    yaml_fails(
        "rtp_port_min: 20001",
        "rtp_port_min = 20001",
        "must be even",
    );
    env_fails(
        &[
            ("C300X_RTP_PORT_MIN", "30000"),
            ("C300X_RTP_PORT_MAX", "30002"),
        ],
        "rtp_port_max = 30002 (from env C300X_RTP_PORT_MAX): must be at least 30003 (rtp_port_min = 30000 (from env C300X_RTP_PORT_MIN) + 3): a call needs 4 ports, RTP and RTCP for audio and video",
    );
    assert!(
        from_env(&[
            ("C300X_RTP_PORT_MIN", "65532"),
            ("C300X_RTP_PORT_MAX", "65535")
        ])
        .is_ok()
    );
}

#[test]
fn server_ports_must_not_clash() {
    yaml_fails(
        "http_port: 8554",
        "http_port = 8554",
        "must differ from rtsp_port = 8554 (from built-in default)",
    );
    yaml_fails(
        "rtsp_port: 20010",
        "rtsp_port = 20010",
        "must be outside the RTP port range 20000 to 20099",
    );
    // The add-on's ingress listener (set by the image's environment) clashes with an option.
    let e = from_env(&[("C300X_INGRESS_PORT", "8099"), ("C300X_HTTP_PORT", "8099")])
        .expect_err("clash");
    assert_eq!(
        e.to_string(),
        "http_port = 8099 (from env C300X_HTTP_PORT): must differ from ingress_port = 8099 (from env \
         C300X_INGRESS_PORT) (the add-on's ingress listener)"
    );
    yaml_fails(
        "ingress_port: 20050",
        "ingress_port = 20050",
        "must be outside the RTP port range 20000 to 20099",
    );
    let c = from_env(&[("C300X_INGRESS_PORT", "8099")]).expect("valid");
    assert_eq!(c.ingress_port, Some(8099));
    assert_eq!(from_env(&[]).expect("valid").ingress_port, None);
}

#[test]
fn rtsp_credentials_come_in_pairs() {
    yaml_fails(
        "rtsp_user: viewer",
        "rtsp_user = \"viewer\"",
        "needs rtsp_password too",
    );
    yaml_fails(
        "rtsp_password: pw",
        "rtsp_password = ********",
        "needs rtsp_user too",
    );
}

// ---- unknown keys and files ----

#[test]
fn unknown_keys_name_the_source_and_suggest() {
    yaml_fails(
        "linger_secnds: 5",
        "linger_secnds = 5",
        "unknown option; did you mean linger_seconds?",
    );
    env_fails(
        &[("C300X_HTTP_PROT", "80")],
        "http_prot = \"80\" (from env C300X_HTTP_PROT): unknown option; did you mean C300X_HTTP_PORT?",
    );
    assert_eq!(
        message(from_cli(&[("volume", "3")])),
        "volume = \"3\" (from --set): unknown option"
    );
    let (_dir, path) = write("options.json", r#"{"sip_pasword": "hunter2"}"#);
    let m = message(load(&Sources {
        options_json: Some(path.clone()),
        ..Sources::default()
    }));
    assert_eq!(
        m,
        format!(
            "sip_pasword = ******** (from add-on options {}): unknown option; did you mean sip_password?",
            path.display()
        )
    );
}

#[test]
fn unreadable_and_unparseable_files() {
    let missing = PathBuf::from("/nonexistent/c300x.yaml");
    let m = message(load(&Sources {
        file: Some(missing),
        ..Sources::default()
    }));
    assert!(
        m.starts_with("cannot read /nonexistent/c300x.yaml: "),
        "{m}"
    );

    let (_dir, _path, result) = from_yaml("http_port: 80\n  bad: [\n");
    let m = message(result);
    assert!(m.contains("c.yaml") && m.contains("line"), "{m}");

    let (_dir, path) = write("options.json", "{\"http_port\": 80,\n}");
    let m = message(load(&Sources {
        options_json: Some(path.clone()),
        ..Sources::default()
    }));
    assert!(
        m.starts_with(&format!("cannot parse {}: ", path.display())) && m.contains("line 2"),
        "{m}"
    );

    let (_dir, _path, result) = from_yaml("- a\n- b\n");
    assert!(
        message(result)
            .ends_with("the top level must be a mapping of `option: value`, found a list")
    );
}

#[test]
fn audio_switch_and_sample_rate() {
    let c = crate::config::load(&crate::config::Sources {
        env: vec![
            ("C300X_AUDIO".into(), "off".into()),
            ("C300X_AUDIO_SAMPLE_RATE".into(), "48000".into()),
        ],
        ..Default::default()
    })
    .expect("valid");
    assert!(!c.audio);
    assert_eq!(c.audio_sample_rate, 48000);
    for (key, value, needle) in [
        (
            "C300X_AUDIO",
            "maybe",
            "audio = \"maybe\" (from env C300X_AUDIO): must be true or false",
        ),
        (
            "C300X_AUDIO_SAMPLE_RATE",
            "22050",
            "audio_sample_rate = 22050 (from env C300X_AUDIO_SAMPLE_RATE): must be one of",
        ),
    ] {
        let e = crate::config::load(&crate::config::Sources {
            env: vec![(key.into(), value.into())],
            ..Default::default()
        })
        .expect_err("invalid")
        .to_string();
        assert!(e.starts_with(needle), "{e}");
    }
}

#[test]
fn mjpeg_rate_and_quality_ranges() {
    for (key, value, needle) in [
        (
            "C300X_MJPEG_FPS",
            "31",
            "mjpeg_fps = 31 (from env C300X_MJPEG_FPS): must be frames per second from 0 to 30",
        ),
        (
            "C300X_MJPEG_QUALITY",
            "0",
            "mjpeg_quality = 0 (from env C300X_MJPEG_QUALITY): must be a JPEG quality from 1 to 100",
        ),
    ] {
        let e = crate::config::load(&crate::config::Sources {
            env: vec![(key.into(), value.into())],
            ..Default::default()
        })
        .expect_err("invalid")
        .to_string();
        assert_eq!(e, needle);
    }
}
