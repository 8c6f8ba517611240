//! `c300x-bridge check`: the intercom set-up verified step by step from the bridge's side
//! (c300x-protocol.md §1.3), each failure naming the flexisip edit of §1.2 that fixes it.
//! Steps: resolve, SIP over TCP and UDP, OPTIONS, REGISTER, a dry run of the command frames,
//! optionally a harmless `GetAswmStatus!` MESSAGE and a short test view call.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

use super::Intercom;
use super::media::MediaKind;
use super::sip::RegistrationState;
use crate::config::{Config, SipTransport};
use crate::proto::h264::{self, SpsInfo};
use crate::proto::openwebnet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    Warn,
    Fail,
    /// Not run: asked for but impossible after an earlier failure, or not asked for.
    Skip,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to change when it failed (the intercom edit or the bridge option).
    pub fix: Option<String>,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mark = match self.status {
            Status::Pass => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        };
        write!(f, "[{mark}] {:<10} {}", self.name, self.detail)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n            fix: {fix}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Send `GetAswmStatus!` (reads the answering machine state; operates nothing).
    pub message: bool,
    /// Place a test view call for this long (switches the outdoor camera on).
    pub call: Option<Duration>,
}

const EDIT_TRANSPORT: &str = "on the intercom, append `sip:$2;maddr=$2` to --transports in /etc/init.d/flexisipsh and reboot (DOCS.md, step 1)";

/// The firewall edit, with the ports this configuration uses.
fn edit_firewall(cfg: &Config) -> String {
    format!(
        "open TCP/UDP {} (intercom_sip_port) and UDP {}-{} (rtp_port_min-rtp_port_max) to this \
         host in /etc/network/if-pre-up.d/iptables (DOCS.md, step 6)",
        cfg.intercom_sip_port, cfg.rtp_port_min, cfg.rtp_port_max
    )
}

/// What to change when SIP on `intercom_sip_port` cannot be reached: a refused connection
/// means nothing listens on that port (the transport edit, or a wrong port), silence means a
/// firewall.
pub fn reach_fix(cfg: &Config, error: &str) -> String {
    let port = cfg.intercom_sip_port;
    if error.to_ascii_lowercase().contains("refused") {
        format!(
            "nothing accepts SIP on port {port} (intercom_sip_port = {port}): {EDIT_TRANSPORT}; \
             if flexisip listens on another port, set intercom_sip_port to it"
        )
    } else {
        format!("{EDIT_TRANSPORT}; {}", edit_firewall(cfg))
    }
}

/// What to change after a failed REGISTER (`reason` is the status line or error).
pub fn register_fix(cfg: &Config, reason: &str) -> String {
    let domain = cfg.sip_domain.as_deref().unwrap_or("<domain>");
    let user = &cfg.sip_user;
    if reason.contains("401") || reason.contains("407") {
        EDIT_TRUSTED.to_owned()
    } else if reason.contains("403") {
        format!(
            "sip_domain `{domain}` must be the first word of /etc/flexisip/domain-registration.conf"
        )
    } else if reason.contains("404") {
        let default = Config::default().sip_user;
        let typo = crate::config::closest(user, [default.as_str()])
            .filter(|d| *d != user)
            .map(|d| format!(" (did you mean `{d}`, the default?)"))
            .unwrap_or_default();
        format!(
            "flexisip does not know `{user}@{domain}`: add `{user}@{domain} md5:<hash> ;` to \
             /etc/flexisip/users/users.db.txt (DOCS.md, step 2); if it is there already, \
             sip_user `{user}` is mistyped{typo}: it must match users.db.txt, route.conf and \
             route_int.conf letter for letter"
        )
    } else {
        EDIT_TRANSPORT.to_owned()
    }
}

/// `--message` / `--call` steps that cannot run after `why`, and a note when `--call` was not
/// asked for (a user should know the camera path was not tried).
fn not_run(opts: &Options, why: Option<&str>) -> Vec<Step> {
    let mut out = Vec::new();
    if let Some(why) = why
        && opts.message
    {
        out.push(step(
            "message",
            Status::Skip,
            format!("skipped: {why}"),
            None,
        ));
    }
    match (opts.call, why) {
        (Some(_), Some(why)) => out.push(step(
            "call",
            Status::Skip,
            format!("skipped: {why}; the test call needs it"),
            None,
        )),
        (None, _) => out.push(step(
            "call",
            Status::Skip,
            "not tried: add --call for a short test view call (it switches the outdoor camera on)",
            None,
        )),
        (Some(_), None) => {}
    }
    out
}
const EDIT_TRUSTED: &str = "add this host's IP to trusted-hosts in flexisip.conf [module::Authentication] (DOCS.md, step 5), or set sip_password";

fn step(name: &'static str, status: Status, detail: impl Into<String>, fix: Option<&str>) -> Step {
    Step {
        name,
        status,
        detail: detail.into(),
        fix: fix.map(str::to_owned),
    }
}

/// Runs every step, handing each to `report` as soon as it is known.
pub async fn run(cfg: &Config, opts: &Options, mut report: impl FnMut(&Step)) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut push = |s: Step, steps: &mut Vec<Step>| {
        report(&s);
        steps.push(s);
    };
    let host = cfg.intercom_host.clone().unwrap_or_default();
    let port = cfg.intercom_sip_port;
    let Some(addr) = tokio::net::lookup_host((host.as_str(), port))
        .await
        .ok()
        .and_then(|mut a| a.next())
    else {
        push(
            step(
                "resolve",
                Status::Fail,
                format!("cannot resolve intercom_host `{host}`"),
                Some("set intercom_host to the intercom's LAN IP address"),
            ),
            &mut steps,
        );
        for s in not_run(opts, Some("the intercom's address is unknown")) {
            push(s, &mut steps);
        }
        return steps;
    };
    push(
        step("resolve", Status::Pass, format!("intercom at {addr}"), None),
        &mut steps,
    );

    let tcp = probe_tcp(addr).await;
    push(
        reach_step(cfg, "sip/tcp", tcp, cfg.sip_transport == SipTransport::Tcp),
        &mut steps,
    );
    let udp = probe_udp(addr, cfg.sip_domain.as_deref().unwrap_or_default()).await;
    push(
        reach_step(cfg, "sip/udp", udp, cfg.sip_transport == SipTransport::Udp),
        &mut steps,
    );
    if steps.iter().any(|s| s.status == Status::Fail) {
        let why = format!(
            "SIP over {} is not reachable on port {}",
            cfg.sip_transport.as_str(),
            cfg.intercom_sip_port
        );
        for s in not_run(opts, Some(&why)) {
            push(s, &mut steps);
        }
        return steps;
    }

    let shutdown = CancellationToken::new();
    let intercom = match Intercom::start(cfg, shutdown.clone()).await {
        Ok(i) => i,
        Err(e) => {
            push(
                step(
                    "sip agent",
                    Status::Fail,
                    e.to_string(),
                    Some("check intercom_host and advertise_address"),
                ),
                &mut steps,
            );
            for s in not_run(opts, Some("the SIP agent did not start")) {
                push(s, &mut steps);
            }
            return steps;
        }
    };
    let registered = register_step(&intercom, cfg).await;
    let ok = registered.status == Status::Pass;
    push(registered, &mut steps);
    // OPTIONS on the agent's own flow (after a failed REGISTER the flow is being rebuilt).
    if ok {
        let s = match intercom.sip().options().await {
            Ok(code) if (200..300).contains(&code) => step(
                "options",
                Status::Pass,
                format!("OPTIONS answered {code}"),
                None,
            ),
            Ok(code) => step(
                "options",
                Status::Warn,
                format!("OPTIONS answered {code}"),
                None,
            ),
            Err(e) => step("options", Status::Fail, e.to_string(), Some(EDIT_TRANSPORT)),
        };
        push(s, &mut steps);
    }

    let frames: Vec<String> = cfg
        .locks
        .iter()
        .map(|l| {
            format!(
                "{}: {} then {} after {} ms",
                l.name,
                openwebnet::unlock(l.where_),
                openwebnet::release(l.where_),
                l.pulse.as_millis()
            )
        })
        .collect();
    push(
        step(
            "commands",
            Status::Pass,
            format!("dry run, nothing sent: {}", frames.join("; ")),
            None,
        ),
        &mut steps,
    );

    if ok && opts.message {
        push(message_step(&intercom).await, &mut steps);
    }
    if ok && let Some(len) = opts.call {
        let devaddr = cfg.panels.first().map_or(20, |p| p.devaddr);
        push(call_step(cfg, &intercom, devaddr, len).await, &mut steps);
    }
    let why = (!ok).then_some("the registration failed");
    for s in not_run(opts, why) {
        push(s, &mut steps);
    }
    intercom.sip().shutdown().await;
    shutdown.cancel();
    steps
}

/// A probe of one transport: failing is fatal only for the transport the bridge uses.
fn reach_step(cfg: &Config, name: &'static str, probe: Result<String, String>, used: bool) -> Step {
    let status = match (&probe, used) {
        (Ok(_), _) => Status::Pass,
        (Err(_), true) => Status::Fail,
        (Err(_), false) => Status::Warn,
    };
    let fix = probe.as_ref().err().map(|e| reach_fix(cfg, e));
    Step {
        name,
        status,
        detail: probe.unwrap_or_else(|e| e),
        fix,
    }
}

async fn probe_tcp(addr: SocketAddr) -> Result<String, String> {
    match tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr)).await {
        Ok(Ok(mut s)) => {
            // A polite close; some stacks log a reset otherwise.
            let _ = tokio::time::timeout(Duration::from_millis(10), s.read(&mut [0u8; 1])).await;
            Ok(format!("TCP connect to {addr} works"))
        }
        Ok(Err(e)) => Err(format!("TCP connect to {addr}: {e}")),
        Err(_) => Err(format!("TCP connect to {addr}: no answer in 3 s")),
    }
}

/// A bare OPTIONS datagram; any SIP reply proves flexisip listens on UDP.
async fn probe_udp(addr: SocketAddr, domain: &str) -> Result<String, String> {
    let sock = UdpSocket::bind(SocketAddr::new(
        if addr.is_ipv4() {
            [0, 0, 0, 0].into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        },
        0,
    ))
    .await
    .map_err(|e| format!("UDP socket: {e}"))?;
    let local = sock.local_addr().map_err(|e| e.to_string())?;
    let id: u64 = rand::random();
    let probe = format!(
        "OPTIONS sip:c300x@{domain} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{id:x};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:check@{domain}>;tag={id:x}\r\nTo: <sip:c300x@{domain}>\r\nCall-ID: check-{id:x}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(probe.as_bytes(), addr)
        .await
        .map_err(|e| format!("UDP send to {addr}: {e}"))?;
    let mut buf = [0u8; 4096];
    match tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) if buf[..n].starts_with(b"SIP/2.0 ") => {
            let line = String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            Ok(format!("UDP {addr} answers ({line})"))
        }
        Ok(Ok(_)) => Err(format!("UDP {addr} answered something that is not SIP")),
        Ok(Err(e)) => Err(format!("UDP {addr}: {e}")),
        Err(_) => Err(format!("UDP {addr}: no answer in 2 s")),
    }
}

async fn register_step(intercom: &Intercom, cfg: &Config) -> Step {
    let mut reg = intercom.sip().registration();
    let done = tokio::time::timeout(
        Duration::from_secs(8),
        reg.wait_for(|s| {
            matches!(
                s,
                RegistrationState::Registered { .. } | RegistrationState::Failed { .. }
            )
        }),
    )
    .await;
    let state = match done {
        Ok(Ok(s)) => s.clone(),
        _ => {
            return step(
                "register",
                Status::Fail,
                "no answer to REGISTER in 8 s",
                Some(EDIT_TRANSPORT),
            );
        }
    };
    match state {
        RegistrationState::Registered { expires, .. } => step(
            "register",
            Status::Pass,
            format!("registered as {} for {expires} s", cfg.sip_user),
            None,
        ),
        RegistrationState::Failed { reason } => {
            let fix = register_fix(cfg, &reason);
            Step {
                name: "register",
                status: Status::Fail,
                detail: reason,
                fix: Some(fix),
            }
        }
        other => step(
            "register",
            Status::Fail,
            format!("{other:?}"),
            Some(EDIT_TRANSPORT),
        ),
    }
}

async fn message_step(intercom: &Intercom) -> Step {
    let mut inbox = intercom.sip().messages();
    if let Err(e) = intercom
        .sip()
        .message(openwebnet::ASWM_STATUS_REQUEST)
        .await
    {
        return step(
            "message",
            Status::Fail,
            format!("MESSAGE {}: {e}", openwebnet::ASWM_STATUS_REQUEST),
            Some(EDIT_TRUSTED),
        );
    }
    let reply = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match inbox.recv().await {
                Ok(m) if m.body.starts_with("*#8**40*") => return Some(m.body),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    })
    .await;
    match reply {
        Ok(Some(body)) => match openwebnet::AswmStatus::parse(&body) {
            Ok(s) => step(
                "message",
                Status::Pass,
                format!(
                    "MESSAGE works; answering machine {}",
                    if s.enabled { "on" } else { "off" }
                ),
                None,
            ),
            Err(e) => step(
                "message",
                Status::Warn,
                format!("MESSAGE works; reply `{body}` not understood: {e}"),
                None,
            ),
        },
        _ => step(
            "message",
            Status::Warn,
            "MESSAGE accepted, but the status reply did not reach us",
            Some(
                "add the bridge's static route to /etc/flexisip/users/route.conf (DOCS.md, step 3)",
            ),
        ),
    }
}

async fn call_step(cfg: &Config, intercom: &Intercom, devaddr: u8, len: Duration) -> Step {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let call = match intercom.view(devaddr, tx).await {
        Ok(c) => c,
        Err(e) => {
            return step(
                "call",
                Status::Fail,
                format!("view call to DEVADDR {devaddr}: {e}"),
                Some("check `panels` (devaddr) and that no other viewer holds the panel"),
            );
        }
    };
    let (mut video, mut audio, mut size) = (0u32, 0u32, None::<SpsInfo>);
    let deadline = tokio::time::Instant::now() + len;
    while let Ok(Some(p)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        match p.kind {
            MediaKind::Video => {
                video += 1;
                if size.is_none() {
                    size = h264::whole_nals(&p.payload)
                        .into_iter()
                        .find_map(|n| SpsInfo::parse(n).ok());
                }
            }
            MediaKind::Audio => audio += 1,
        }
    }
    let stats = call.stats();
    call.hangup().await;
    match (video, size) {
        (0, _) => step(
            "call",
            Status::Fail,
            format!(
                "the call was answered but no SRTP video arrived in {} s ({} SRTP failures)",
                len.as_secs(),
                stats.srtp_failures()
            ),
            Some(&format!(
                "{}; check advertise_address (the intercom must reach {})",
                edit_firewall(cfg),
                intercom.media_ip()
            )),
        ),
        (v, Some(s)) => step(
            "call",
            Status::Pass,
            format!(
                "video {}x{} ({}), {v} video + {audio} audio packets in {} s",
                s.width,
                s.height,
                s.codec,
                len.as_secs()
            ),
            None,
        ),
        (v, None) => step(
            "call",
            Status::Warn,
            format!(
                "{v} video + {audio} audio packets, but no SPS seen in {} s",
                len.as_secs()
            ),
            None,
        ),
    }
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
