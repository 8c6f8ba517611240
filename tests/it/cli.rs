//! The command line as a user runs it: exit codes, config errors, `config --print`, `sim`, `demo`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_c300x-bridge"));
    // The tests' own environment must not leak options in.
    for (k, _) in std::env::vars() {
        if k.starts_with("C300X_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn bad_config_exits_2_with_one_line_naming_key_value_and_source() {
    let out = bin()
        .args(["config", "--print"])
        .env("C300X_LINGER_SECONDS", "-1")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("linger_seconds = -1") && err.contains("env C300X_LINGER_SECONDS"),
        "{err}"
    );
}

#[test]
fn run_without_intercom_exits_2_and_says_which_key() {
    let out = bin().arg("run").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("intercom_host"));
}

#[test]
fn config_print_masks_passwords_and_applies_flags() {
    let out = bin()
        .args([
            "--set",
            "sip_password=hunter2",
            "--intercom-host",
            "192.0.2.7",
            "config",
            "--print",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains("sip_password: '********'")
            || text.contains("sip_password: \"********\"")
            || text.contains("sip_password: ********"),
        "{text}"
    );
    assert!(text.contains("intercom_host: 192.0.2.7"), "{text}");
}

/// Starts a long-running subcommand, waits for a line containing `needle`, then sends SIGTERM
/// and expects a clean exit.
fn starts_and_stops(args: &[&str], needle: &str) -> String {
    let mut child = bin()
        .args(args)
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(needle) {
                break;
            }
        }
    }
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(seen.contains(needle), "never printed {needle:?}:\n{seen}");
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "clean exit on SIGTERM"
    );
    seen
}

#[test]
fn sim_prints_the_keys_for_a_bridge_and_stops_on_sigterm() {
    let out = starts_and_stops(&["sim", "--sip-port", "0"], "sip_domain:");
    assert!(
        out.contains("intercom_host: 127.0.0.1") && out.contains("intercom_sip_port: "),
        "{out}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn demo_starts_without_an_intercom() {
    let (rtsp, http) = (free_port(), free_port());
    let rtsp_set = format!("rtsp_port={rtsp}");
    let http_set = format!("http_port={http}");
    let out = starts_and_stops(
        &[
            "--set",
            &rtsp_set,
            "--set",
            &http_set,
            "--set",
            "rtp_port_min=47000",
            "--set",
            "rtp_port_max=47019",
            "demo",
        ],
        "Press Ctrl-C to stop.",
    );
    assert!(out.contains("simulated C300X"), "{out}");
    assert!(
        out.contains(&format!("rtsp://127.0.0.1:{rtsp}/doorbell")),
        "{out}"
    );
}
