//! The command line as a user runs it: exit codes, config errors, `config --print`, `sim`, `demo`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::rig::{ports, tcp_port};

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

/// `--set` arguments for the listening ports and the RTP range, all from the rig's allocator.
fn port_args() -> (u16, Vec<String>) {
    let (rtsp, http) = (tcp_port(), tcp_port());
    let (min, max) = ports(20);
    let args = [
        format!("rtsp_port={rtsp}"),
        format!("http_port={http}"),
        format!("rtp_port_min={min}"),
        format!("rtp_port_max={max}"),
    ]
    .into_iter()
    .flat_map(|kv| ["--set".to_owned(), kv])
    .collect();
    (rtsp, args)
}

#[test]
fn demo_starts_without_an_intercom() {
    let (rtsp, ports) = port_args();
    let mut args: Vec<&str> = ports.iter().map(String::as_str).collect();
    args.push("demo");
    let out = starts_and_stops(&args, "Press Ctrl-C to stop.");
    assert!(out.contains("simulated C300X"), "{out}");
    assert!(
        out.contains(&format!("rtsp://127.0.0.1:{rtsp}/doorbell")),
        "{out}"
    );
}

/// Runs the binary with logs on (INFO) and collects its stdout lines on a thread.
struct Running {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: String,
}

impl Running {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = bin();
        cmd.args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn");
        let (tx, lines) = std::sync::mpsc::channel();
        for out in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Self {
            child,
            lines,
            seen: String::new(),
        }
    }

    /// Collects output until a line contains `needle` (or `limit` passes); true if it came.
    fn wait_for(&mut self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.seen.push_str(&line);
                self.seen.push('\n');
                if line.contains(needle) {
                    return true;
                }
            }
        }
        false
    }

    /// Waits up to `limit` for the process to exit by itself; kills it (by PID) otherwise.
    fn exit_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                }
                return Some(s);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn sigterm(&self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// SIGTERM while the intercom cannot be reached (its SIP port never completes a TCP connect):
/// the bridge must not wait for the OS connect timeout (minutes); it exits, cleanly, at once.
#[tokio::test]
async fn sigterm_with_the_intercom_unreachable_exits_within_five_seconds() {
    // A listener whose accept queue (backlog 0) is full: further SYNs are dropped, so connects
    // to it hang exactly like connects to an intercom that is switched off.
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = sock.listen(0).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let _queued = std::net::TcpStream::connect(addr).expect("fills the queue");
    let _queued2 = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300));
    let (_, ports) = port_args();
    let mut args: Vec<&str> = ports.iter().map(String::as_str).collect();
    let sip_port = format!("intercom_sip_port={}", addr.port());
    args.extend([
        "--intercom-host",
        "127.0.0.1",
        "--sip-domain",
        "1234567.bs.iotleg.com",
        "--set",
        &sip_port,
        "--set",
        "advertise_address=127.0.0.1",
        "run",
    ]);
    let mut bridge = Running::start(&args, &[]);
    assert!(
        bridge.wait_for("bridge started", Duration::from_secs(20)),
        "{}",
        bridge.seen
    );
    // Let the SIP task get stuck in its connect.
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    bridge.sigterm();
    let status = bridge.exit_within(Duration::from_secs(15));
    let took = t.elapsed();
    println!(
        "exit {:?} after {took:?} from SIGTERM",
        status.map(|s| s.code())
    );
    assert!(
        status.is_some(),
        "still running {took:?} after SIGTERM:\n{}",
        bridge.seen
    );
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", bridge.seen);
    assert!(
        took < Duration::from_secs(10),
        "took {took:?}:\n{}",
        bridge.seen
    );
    drop(listener);
}

/// SIGTERM while an MJPEG viewer watches the demo: the HTTP server cancels the tasks that
/// request started (the picture feed, the stream's writer) and waits for them; none is left,
/// and the bridge exits 0.
#[test]
fn sigterm_with_an_mjpeg_viewer_leaves_no_http_task_behind() {
    use std::io::{Read, Write};
    let (_, ports) = port_args();
    let http: u16 = ports
        .iter()
        .find_map(|a| a.strip_prefix("http_port="))
        .and_then(|p| p.parse().ok())
        .expect("http port");
    let mut args: Vec<&str> = ports.iter().map(String::as_str).collect();
    args.extend(["--set", "api_token=mjpeg-stop-test", "demo"]);
    let mut bridge = Running::start(&args, &[]);
    assert!(
        bridge.wait_for("HTTP server listening", Duration::from_secs(20)),
        "{}",
        bridge.seen
    );
    let mut viewer = std::net::TcpStream::connect(("127.0.0.1", http)).expect("connect");
    viewer
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    viewer
        .write_all(
            b"GET /api/doorbell/mjpeg HTTP/1.1\r\nHost: bridge\r\n\
              Authorization: Bearer mjpeg-stop-test\r\n\r\n",
        )
        .expect("request");
    // Up to the first picture of the stream.
    let mut got = Vec::new();
    let mut chunk = [0u8; 16384];
    while !got.windows(10).any(|w| w == b"image/jpeg") || got.len() < 2000 {
        let n = viewer.read(&mut chunk).expect("the stream");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got[..64])
    );
    bridge.sigterm();
    let status = bridge.exit_within(Duration::from_secs(15));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", bridge.seen);
    assert!(
        bridge.seen.contains("HTTP server stopped"),
        "{}",
        bridge.seen
    );
    assert!(
        !bridge.seen.contains("HTTP tasks still running"),
        "{}",
        bridge.seen
    );
}

/// A component whose task panics (the test hook `C300X_TEST_PANIC=<component>`) stops the
/// whole bridge with a non-zero exit code and one log line naming the component, so the
/// add-on's Supervisor restarts it instead of leaving a half-working bridge.
#[test]
fn a_component_that_panics_stops_the_bridge_non_zero_naming_it() {
    for component in ["rtsp", "hub:doorbell", "sip"] {
        let (_, ports) = port_args();
        let mut args: Vec<&str> = ports.iter().map(String::as_str).collect();
        args.push("demo");
        let mut bridge = Running::start(&args, &[("C300X_TEST_PANIC", component)]);
        let status = bridge.exit_within(Duration::from_secs(20));
        let code = status.and_then(|s| s.code());
        assert!(
            code.is_some_and(|c| c != 0),
            "{component}: exit {code:?}:\n{}",
            bridge.seen
        );
        let naming: Vec<&str> = bridge
            .seen
            .lines()
            .filter(|l| l.contains(&format!("component `{component}`")))
            .collect();
        assert_eq!(naming.len(), 1, "{component}: {}", bridge.seen);
        assert!(naming[0].contains("panicked"), "{}", naming[0]);
    }
}
