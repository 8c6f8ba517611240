//! `GET /metrics`: Prometheus text exposition (format 0.0.4) of the hubs, the HTTP outputs, the
//! intercom counters and both servers' connections (accepted, active, refused, closed, 401/413)
//! and talk sessions/refusals.
//! Names are prefixed `c300x_`; counters end in `_total`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::Shared;
use crate::intercom::sip::RegistrationState;
use crate::media::hub::{HubState, ViewerKind};
use crate::servers::limits::ConnStats;

/// Label values are escaped as the exposition format asks (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}");
    let _ = writeln!(o, "# TYPE {name} {kind}");
}

pub fn render(shared: &Shared) -> String {
    let mut o = String::with_capacity(4096);
    let statuses: Vec<_> = shared.panels.iter().map(|p| p.hub.status()).collect();
    let per_panel =
        |o: &mut String, name: &str, kind: &str, help: &str, f: &dyn Fn(usize) -> f64| {
            family(o, name, kind, help);
            for (i, s) in statuses.iter().enumerate() {
                let _ = writeln!(o, "{name}{{panel=\"{}\"}} {}", label(&s.panel), f(i));
            }
        };
    per_panel(
        &mut o,
        "c300x_calls_started_total",
        "counter",
        "View calls placed by the hub.",
        &|i| statuses[i].calls_started as f64,
    );
    family(
        &mut o,
        "c300x_calls_ended_total",
        "counter",
        "Calls ended, by reason (linger, no_rtp, max_call, remote_bye, privacy, ...).",
    );
    for s in &statuses {
        for (reason, n) in &s.calls_ended {
            let _ = writeln!(
                o,
                "c300x_calls_ended_total{{panel=\"{}\",reason=\"{reason}\"}} {n}",
                label(&s.panel)
            );
        }
    }
    per_panel(
        &mut o,
        "c300x_call_seconds_total",
        "counter",
        "Seconds of calls that have ended.",
        &|i| statuses[i].call_seconds,
    );
    per_panel(
        &mut o,
        "c300x_srtp_auth_failures_total",
        "counter",
        "SRTP/SRTCP packets from the intercom that failed authentication.",
        &|i| statuses[i].srtp_failures as f64,
    );
    per_panel(
        &mut o,
        "c300x_frames_in_total",
        "counter",
        "Frames received from the intercom.",
        &|i| statuses[i].frames_in as f64,
    );
    per_panel(
        &mut o,
        "c300x_frames_out_total",
        "counter",
        "Frames handed to viewers.",
        &|i| statuses[i].frames_out as f64,
    );
    per_panel(
        &mut o,
        "c300x_frames_dropped_total",
        "counter",
        "Frames dropped for slow viewers.",
        &|i| statuses[i].frames_dropped as f64,
    );
    per_panel(
        &mut o,
        "c300x_call_active",
        "gauge",
        "1 while a call feeds the panel's hub.",
        &|i| {
            f64::from(u8::from(matches!(
                statuses[i].state,
                HubState::Live | HubState::Lingering
            )))
        },
    );
    per_panel(
        &mut o,
        "c300x_streaming_allowed",
        "gauge",
        "0 when the privacy switch is on.",
        &|i| f64::from(u8::from(statuses[i].streaming_allowed)),
    );
    per_panel(
        &mut o,
        "c300x_stream_fps",
        "gauge",
        "Measured video frame rate.",
        &|i| f64::from(statuses[i].fps.unwrap_or(0.0)),
    );
    per_panel(
        &mut o,
        "c300x_hls_session_active",
        "gauge",
        "1 while an HLS session holds a lease.",
        &|i| f64::from(u8::from(shared.panels[i].hls.active())),
    );
    per_panel(
        &mut o,
        "c300x_jpeg_feed_active",
        "gauge",
        "1 while the MJPEG/live snapshot decoder runs.",
        &|i| f64::from(u8::from(shared.panels[i].jpeg.running())),
    );

    family(
        &mut o,
        "c300x_hub_state",
        "gauge",
        "The hub's state (one series per state, 1 = current).",
    );
    for s in &statuses {
        for st in [
            HubState::Idle,
            HubState::Starting,
            HubState::Live,
            HubState::Lingering,
            HubState::Failed,
        ] {
            let _ = writeln!(
                o,
                "c300x_hub_state{{panel=\"{}\",state=\"{}\"}} {}",
                label(&s.panel),
                st.as_str(),
                u8::from(s.state == st)
            );
        }
    }
    family(
        &mut o,
        "c300x_viewers",
        "gauge",
        "Viewers per panel and output.",
    );
    for s in &statuses {
        for (kind, name) in [
            (ViewerKind::Rtsp, "rtsp"),
            (ViewerKind::Hls, "hls"),
            (ViewerKind::Mjpeg, "mjpeg"),
            (ViewerKind::Snapshot, "snapshot"),
            (ViewerKind::Other, "other"),
        ] {
            let n: usize = s
                .viewers_by_kind
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, n)| n)
                .sum();
            let _ = writeln!(
                o,
                "c300x_viewers{{panel=\"{}\",output=\"{name}\"}} {n}",
                label(&s.panel)
            );
        }
    }

    let registered = matches!(
        *shared.state.intercom.sip().registration().borrow(),
        RegistrationState::Registered { .. }
    );
    family(
        &mut o,
        "c300x_sip_registered",
        "gauge",
        "1 while registered with the intercom.",
    );
    let _ = writeln!(o, "c300x_sip_registered {}", u8::from(registered));
    let ev = shared.state.intercom.events();
    for (name, help, value) in [
        ("c300x_rings_total", "Doorbell rings.", &ev.rings),
        ("c300x_unlocks_total", "Successful unlocks.", &ev.unlocks),
        (
            "c300x_unlock_failures_total",
            "Unlocks the intercom refused or did not answer.",
            &ev.unlock_failures,
        ),
    ] {
        family(&mut o, name, "counter", help);
        let _ = writeln!(o, "{name} {}", value.load(Ordering::Relaxed));
    }
    family(
        &mut o,
        "c300x_ringing",
        "gauge",
        "1 while a ring is ringing.",
    );
    let _ = writeln!(o, "c300x_ringing {}", u8::from(ev.ringing().is_some()));
    connections(&mut o, shared);
    let servers = [("rtsp", &shared.stats.rtsp), ("http", &shared.stats.http)];
    talk(&mut o, &servers);
    o
}

fn connections(o: &mut String, shared: &Shared) {
    let servers = [("rtsp", &shared.stats.rtsp), ("http", &shared.stats.http)];
    family(
        o,
        "c300x_connections_accepted_total",
        "counter",
        "Connections admitted.",
    );
    for (name, s) in servers {
        let n = s.accepted.load(Ordering::Relaxed);
        let _ = writeln!(
            o,
            "c300x_connections_accepted_total{{server=\"{name}\"}} {n}"
        );
    }
    family(
        o,
        "c300x_connections_active",
        "gauge",
        "Connections open now.",
    );
    for (name, s) in servers {
        let n = s.active.load(Ordering::Relaxed);
        let _ = writeln!(o, "c300x_connections_active{{server=\"{name}\"}} {n}");
    }
    family(
        o,
        "c300x_connections_refused_total",
        "counter",
        "Connections refused (503; 429 on HTTP for auth_throttle), by cause (total_cap, per_ip_cap, auth_throttle).",
    );
    for (name, s) in servers {
        for (reason, n) in s.refused() {
            let _ = writeln!(
                o,
                "c300x_connections_refused_total{{server=\"{name}\",reason=\"{reason}\"}} {n}"
            );
        }
    }
    family(
        o,
        "c300x_connections_closed_total",
        "counter",
        "Connections ended, by reason (client, first_request_timeout, idle_timeout, ...).",
    );
    for (name, s) in servers {
        for (reason, n) in s.closed_by() {
            let _ = writeln!(
                o,
                "c300x_connections_closed_total{{server=\"{name}\",reason=\"{reason}\"}} {n}"
            );
        }
    }
    family(
        o,
        "c300x_requests_refused_total",
        "counter",
        "Requests answered 401 (no or wrong credentials) or 413 (body too large).",
    );
    for (name, s) in servers {
        for (status, n) in [("401", &s.unauthorized), ("413", &s.too_large)] {
            let n = n.load(Ordering::Relaxed);
            let _ = writeln!(
                o,
                "c300x_requests_refused_total{{server=\"{name}\",status=\"{status}\"}} {n}"
            );
        }
    }
}

/// Talk sessions and refusals per server (RTSP backchannel, HTTP push-to-talk).
fn talk(o: &mut String, servers: &[(&str, &ConnStats)]) {
    family(
        o,
        "c300x_talk_sessions_total",
        "counter",
        "Talk sessions that held a panel's talk (RTSP backchannel, HTTP push-to-talk).",
    );
    for (name, s) in servers {
        let n = s.talk_sessions.load(Ordering::Relaxed);
        let _ = writeln!(o, "c300x_talk_sessions_total{{server=\"{name}\"}} {n}");
    }
    family(
        o,
        "c300x_talk_refused_total",
        "counter",
        "Talk requests refused: busy (someone else talks; RTSP 453, HTTP 409) or no_call (503).",
    );
    for (name, s) in servers {
        for (reason, n) in [("busy", &s.talk_busy), ("no_call", &s.talk_failed)] {
            let n = n.load(Ordering::Relaxed);
            let _ = writeln!(
                o,
                "c300x_talk_refused_total{{server=\"{name}\",reason=\"{reason}\"}} {n}"
            );
        }
    }
}

pub async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&shared),
    )
}
