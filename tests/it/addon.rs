//! The add-on files agree with the code: config.yaml's version is Cargo's, its options and schema
//! name exactly the configuration keys and its defaults are the bridge's defaults (no drift),
//! translations cover every option, the icons have the sizes the store expects, ingress and the
//! watchdog use the image's fixed ingress port, and that port serves the same router.

use std::collections::BTreeSet;
use std::path::Path;

use c300x_bridge::config::{self, Config, KEYS, Sources};
use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(file: &str) -> Value {
    let text = std::fs::read_to_string(root().join(file)).expect("read");
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{file} is not valid YAML: {e}"))
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().expect("a mapping").keys().cloned().collect()
}

#[test]
fn manifest_version_and_fixed_settings() {
    let m = yaml("config.yaml");
    assert_eq!(
        m["version"],
        env!("CARGO_PKG_VERSION"),
        "config.yaml version = Cargo version"
    );
    assert_eq!(m["slug"], "c300x_bridge");
    assert_eq!(m["arch"], serde_json::json!(["aarch64", "amd64"]));
    assert_eq!(m["init"], false);
    assert_eq!(m["host_network"], true);
    // ha_camera talks to Home Assistant through the Supervisor's API proxy.
    assert_eq!(m["homeassistant_api"], true);
    assert_eq!(m["ingress"], true);
    assert_eq!(m["services"], serde_json::json!(["mqtt:want"]));
    assert_eq!(m["map"], serde_json::json!(["media:rw"]));
    // Ingress and the watchdog use the image's fixed ingress listener, never an option's port.
    let docker = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let ingress = m["ingress_port"].as_u64().expect("ingress_port");
    assert!(
        docker.contains(&format!("ENV C300X_INGRESS_PORT={ingress}")),
        "the image listens on config.yaml's ingress_port"
    );
    assert_eq!(m["watchdog"], format!("tcp://[HOST]:[PORT:{ingress}]"));
    assert!(m.get("ports").is_none() && m.get("webui").is_none());
    let d = Config::default();
    assert!(ingress != u64::from(d.http_port) && ingress != u64::from(d.rtsp_port));
}

/// The option keys the add-on offers: every configuration key but `ingress_port`, which the image
/// itself sets.
fn option_keys() -> BTreeSet<String> {
    KEYS.iter()
        .filter(|k| **k != "ingress_port")
        .map(|k| k.to_string())
        .collect()
}

#[test]
fn schema_names_every_config_key_and_types_are_right() {
    let m = yaml("config.yaml");
    let schema = &m["schema"];
    let expected = option_keys();
    assert_eq!(keys(schema), expected, "schema keys = config keys");
    let options = keys(&m["options"]);
    assert!(
        options.is_subset(&expected),
        "unknown option keys: {:?}",
        options.difference(&expected).collect::<Vec<_>>()
    );
    for k in &expected {
        let k = k.as_str();
        let t = schema[k].as_str().unwrap_or("list");
        if k.ends_with("_port") || k == "rtp_port_min" || k == "rtp_port_max" {
            assert_eq!(t, "port", "{k}");
        }
        if k.ends_with("password") || k == "api_token" {
            assert_eq!(t, "password?", "{k}");
        }
        // Options without a default must be optional in the schema, and vice versa.
        if !options.contains(k) {
            assert!(
                t.ends_with('?'),
                "{k} has no default, so it must be optional (`?`)"
            );
        }
    }
    assert_eq!(
        keys(&schema["panels"][0]),
        ["devaddr", "name"].map(String::from).into()
    );
    assert_eq!(
        keys(&schema["locks"][0]),
        ["name", "pulse_ms", "where"].map(String::from).into()
    );
}

/// The Supervisor writes the manifest's options to /data/options.json: loading that file must give
/// exactly the bridge's built-in defaults.
#[test]
fn manifest_defaults_are_the_bridge_defaults() {
    let m = yaml("config.yaml");
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("options.json");
    std::fs::write(&path, serde_json::to_vec(&m["options"]).expect("json")).expect("write");
    let cfg = config::load(&Sources {
        options_json: Some(path),
        ..Sources::default()
    })
    .expect("the manifest's defaults load");
    assert_eq!(cfg, Config::default());
}

#[test]
fn translations_cover_every_option() {
    let t = yaml("translations/en.yaml");
    let expected = option_keys();
    assert_eq!(keys(&t["configuration"]), expected);
    for k in &expected {
        let k = k.as_str();
        let entry = &t["configuration"][k];
        assert!(
            entry["name"].as_str().is_some_and(|s| !s.is_empty()),
            "{k} has no name"
        );
        assert!(
            entry["description"].as_str().is_some_and(|s| !s.is_empty()),
            "{k} has no description"
        );
    }
    assert!(
        t.get("network").is_none(),
        "no ports table, so no port descriptions"
    );
}

#[test]
fn repository_and_icons() {
    assert!(yaml("repository.yaml")["name"].as_str().is_some());
    for (file, w, h) in [("icon.png", 128, 128), ("logo.png", 250, 100)] {
        let d = std::fs::read(root().join(file)).expect("read");
        assert_eq!(&d[..8], b"\x89PNG\r\n\x1a\n", "{file} is a PNG");
        let size = (
            u32::from_be_bytes([d[16], d[17], d[18], d[19]]),
            u32::from_be_bytes([d[20], d[21], d[22], d[23]]),
        );
        assert_eq!(size, (w, h), "{file} size");
    }
    let docker = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    for label in ["io.hass.version", "io.hass.type", "io.hass.arch"] {
        assert!(docker.contains(label), "Dockerfile label {label}");
    }
    assert!(
        docker.contains("ARG BUILDER_IMAGE="),
        "the builder image can be overridden"
    );
    assert!(
        docker.contains("FROM --platform=$BUILDPLATFORM") && docker.contains("TARGETARCH"),
        "the builder runs on the build machine's arch and cross-compiles"
    );
    let apparmor = std::fs::read_to_string(root().join("apparmor.txt")).expect("apparmor");
    assert!(
        apparmor.contains("profile c300x_bridge "),
        "profile named after the slug"
    );
}

/// Ring pictures and clips land in the add-on's `media` map, so Home Assistant's Media Browser
/// shows them: the default `clip_dir` must be under `/media` and the map must be writable.
#[test]
fn clip_dir_default_is_in_the_writable_media_map() {
    let m = yaml("config.yaml");
    let clip_dir = m["options"]["clip_dir"].as_str().expect("clip_dir default");
    assert!(clip_dir.starts_with("/media/"), "{clip_dir}");
    assert_eq!(Config::default().clip_dir, Path::new(clip_dir));
    assert!(
        m["map"]
            .as_array()
            .expect("map")
            .iter()
            .any(|e| e == "media:rw"),
        "media must be mapped read-write"
    );
    // The reject codes offered in the add-on's form are exactly the ones the bridge accepts.
    let offered: Vec<u16> = m["schema"]["ring_reject_code"]
        .as_str()
        .and_then(|s| s.strip_prefix("list(")?.strip_suffix(')'))
        .expect("list(...) schema")
        .split('|')
        .map(|c| c.parse().expect("number"))
        .collect();
    assert_eq!(offered, config::REJECT_CODES);
}

/// Sends one HTTP/1.1 request over a fresh connection and returns the whole response.
async fn get(addr: std::net::SocketAddr, path: &str, extra: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: bridge\r\n{extra}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

/// The add-on's ingress listener is a second port of the same web server: the same answers, the
/// ingress page under X-Ingress-Path, and both stop with the shutdown token.
#[tokio::test]
async fn ingress_listener_serves_the_same_router() {
    let rig = crate::http::rig(None, None).await;
    let http = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let ingress = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let (http_addr, ingress_addr) = (
        http.local_addr().expect("addr"),
        ingress.local_addr().expect("addr"),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(c300x_bridge::servers::http::run_all(
        vec![http, ingress],
        rig.state.clone(),
        Default::default(),
        stop.clone(),
    ));
    for addr in [http_addr, ingress_addr] {
        let status = get(addr, "/api/status", "").await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert!(status.contains("\"panels\""), "{status}");
    }
    let page = get(
        ingress_addr,
        "/",
        "X-Ingress-Path: /api/hassio_ingress/abc\r\n",
    )
    .await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.contains("/api/hassio_ingress/abc/"),
        "links under the ingress path"
    );
    stop.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("both listeners stop at shutdown")
        .expect("no panic");
    assert!(tokio::net::TcpStream::connect(ingress_addr).await.is_err());
    rig.stop.cancel();
}
