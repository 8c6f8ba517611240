//! The state table's edges: errors by state, driver failures, deadlines, malformed input, and
//! ids that follow the seed.

use std::time::{Duration, Instant};

use super::*;

#[test]
fn errors_by_state() {
    let mut h = Harness::new(Secrets::default());
    let url = "rtsp://127.0.0.1:8554/doorbell";
    let tcp = "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n";
    assert_eq!(
        h.raw(&format!("PLAY {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n")),
        454
    );
    assert_eq!(
        h.raw(&format!("PAUSE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n")),
        454
    );
    assert_eq!(
        h.raw(&format!("TEARDOWN {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n")),
        454
    );
    assert_eq!(
        h.raw(&format!(
            "GET_PARAMETER {url} RTSP/1.0\r\nCSeq: 1\r\nSession: X\r\n\r\n"
        )),
        454
    );
    assert_eq!(
        h.raw("DESCRIBE rtsp://h/nope RTSP/1.0\r\nCSeq: 1\r\n\r\n"),
        404
    );
    assert_eq!(
        h.raw(&format!(
            "SETUP {url}/trackID=7 RTSP/1.0\r\nCSeq: 1\r\n{tcp}\r\n"
        )),
        404
    );
    assert_eq!(
        h.raw(&format!(
            "SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 1\r\nTransport: RTP/AVP;multicast\r\n\r\n"
        )),
        461
    );
    assert_eq!(
        h.raw(&format!("ANNOUNCE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n")),
        405
    );
    assert_eq!(
        h.raw(&format!("FLY {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n")),
        501
    );
    assert!(h.log.joins.is_empty(), "errors start no call");
    // SETUP without DESCRIBE joins; another panel on the same connection is refused.
    assert_eq!(
        h.raw(&format!(
            "SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 2\r\n{tcp}\r\n"
        )),
        200
    );
    assert_eq!(h.s.phase(), Phase::Ready);
    assert_eq!(
        h.raw(&format!(
            "SETUP rtsp://h/garden/trackID=0 RTSP/1.0\r\nCSeq: 3\r\n{tcp}\r\n"
        )),
        459
    );
    assert_eq!(
        h.raw("DESCRIBE rtsp://h/garden RTSP/1.0\r\nCSeq: 3\r\n\r\n"),
        459
    );
    assert_eq!(
        h.raw(&format!(
            "PAUSE {url} RTSP/1.0\r\nCSeq: 4\r\nSession: x\r\n\r\n"
        )),
        200
    );
    assert_eq!(
        h.s.phase(),
        Phase::Ready,
        "PAUSE in Ready stays Ready (§A.1)"
    );
    assert_eq!(
        h.raw(&format!(
            "PLAY {url} RTSP/1.0\r\nCSeq: 5\r\nSession: x\r\n\r\n"
        )),
        200
    );
    assert_eq!(
        h.raw(&format!(
            "PAUSE {url} RTSP/1.0\r\nCSeq: 6\r\nSession: x\r\n\r\n"
        )),
        200
    );
    assert_eq!(h.s.phase(), Phase::Paused);
    assert_eq!(
        h.raw(&format!(
            "PLAY {url} RTSP/1.0\r\nCSeq: 7\r\nSession: x\r\n\r\n"
        )),
        200
    );
    assert_eq!(h.s.phase(), Phase::Playing);
    assert_eq!(h.log.plays, 2);
    assert_eq!(
        h.raw(&format!(
            "TEARDOWN {url} RTSP/1.0\r\nCSeq: 8\r\nSession: x\r\n\r\n"
        )),
        200
    );
    assert_eq!((h.s.phase(), h.log.releases), (Phase::Init, 1));
    // After a teardown another panel is fine.
    assert_eq!(
        h.raw("DESCRIBE rtsp://h/garden RTSP/1.0\r\nCSeq: 9\r\n\r\n"),
        200
    );
    assert_eq!(h.log.joins, ["doorbell", "garden"]);
}

#[test]
fn driver_failures_and_streams_without_audio() {
    let url = "rtsp://127.0.0.1:8554/doorbell";
    let mut h = Harness::new(Secrets::default());
    h.join_fails = true;
    assert_eq!(
        h.raw(&format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n")),
        503
    );
    assert_eq!(h.s.panel(), None);
    let mut h = Harness::new(Secrets::default());
    h.udp_fails = true;
    let udp = "Transport: RTP/AVP;unicast;client_port=5000-5001\r\n";
    assert_eq!(
        h.raw(&format!(
            "SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 1\r\n{udp}\r\n"
        )),
        461
    );
    assert_eq!(h.s.phase(), Phase::Init);
    let mut h = Harness::new(Secrets::default());
    h.audio = false;
    assert_eq!(
        h.raw(&format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n")),
        200
    );
    assert!(!String::from_utf8_lossy(&h.log.responses[0].body).contains("m=audio"));
    let tcp = "Transport: RTP/AVP/TCP;unicast;interleaved=2-3\r\n";
    assert_eq!(
        h.raw(&format!(
            "SETUP {url}/trackID=1 RTSP/1.0\r\nCSeq: 2\r\n{tcp}\r\n"
        )),
        404
    );
    // `?audio=0` leaves the audio track out of the SDP.
    let mut h = Harness::new(Secrets::default());
    assert_eq!(
        h.raw(&format!(
            "DESCRIBE {url}?audio=0 RTSP/1.0\r\nCSeq: 1\r\n\r\n"
        )),
        200
    );
    assert!(!String::from_utf8_lossy(&h.log.responses[0].body).contains("m=audio"));
}

#[test]
fn deadlines_first_request_idle_and_session() {
    let s5 = Duration::from_secs(5);
    // Nothing sent: closed 5 s after the connection opened.
    let mut h = Harness::new(Secrets::default());
    let t0 = h.now;
    assert_eq!(h.s.poll_timeout(), Some(t0 + s5));
    h.s.handle_timeout(t0 + s5 - Duration::from_millis(1));
    h.drain();
    assert_eq!(h.log.closed, None);
    h.s.handle_timeout(t0 + s5);
    h.drain();
    assert_eq!(h.log.closed, Some(CloseReason::FirstRequestTimeout));
    assert_eq!(h.s.poll_timeout(), None);
    // One OPTIONS, then silence: the idle timeout.
    let mut h = Harness::new(Secrets::default());
    h.now += Duration::from_secs(2);
    h.raw("OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n");
    assert_eq!(h.s.poll_timeout(), Some(h.now + Duration::from_secs(30)));
    h.s.handle_timeout(h.now + Duration::from_secs(30));
    h.drain();
    assert_eq!(h.log.closed, Some(CloseReason::IdleTimeout));
    // A session: kept alive by RTCP (KeepAlive) and requests, closed 60 s after the last.
    let mut h = Harness::new(Secrets::default());
    h.replay(&capture("gst-tcp.bin"), None);
    assert_eq!(h.s.phase(), Phase::Playing);
    h.now += Duration::from_secs(50);
    h.s.handle(h.now, Input::KeepAlive);
    let deadline = h.s.poll_timeout().expect("deadline");
    assert_eq!(deadline, h.now + Duration::from_secs(60));
    h.s.handle_timeout(deadline - Duration::from_millis(1));
    h.drain();
    assert_eq!(h.log.closed, None);
    h.s.handle_timeout(deadline);
    h.drain();
    assert_eq!(h.log.closed, Some(CloseReason::SessionTimeout));
    // Nothing more happens once closed.
    h.raw("OPTIONS * RTSP/1.0\r\nCSeq: 9\r\n\r\n");
    assert_eq!(h.codes().last().map(String::as_str), Some("PLAY 200"));
}

#[test]
fn malformed_input_is_answered_400_then_closed() {
    let mut h = Harness::new(Secrets::default());
    h.s.handle(
        h.now,
        Input::Malformed {
            error: "malformed request: x".into(),
            cseq: Some(4),
        },
    );
    let (a, b) = (h.s.poll_action(), h.s.poll_action());
    assert!(
        matches!(a, Some(Action::Respond { cseq: Some(4), ref response }) if response.status == 400)
    );
    assert_eq!(b, Some(Action::Close(CloseReason::BadRequest)));
}

#[test]
fn session_ids_nonces_and_ssrcs_follow_the_seed() {
    let cfg = config(Secrets::default());
    let a = ServerSession::new(cfg.clone(), Instant::now(), 1);
    let b = ServerSession::new(cfg.clone(), Instant::now(), 1);
    let c = ServerSession::new(cfg, Instant::now(), 2);
    assert_eq!(a.nonce(), b.nonce());
    assert_ne!(a.nonce(), c.nonce());
    assert_eq!(a.nonce().len(), 32);
    let mut h = Harness::new(Secrets::default());
    h.replay(&capture("ffmpeg-tcp.bin"), None);
    let ssrcs: Vec<u32> = h
        .log
        .responses
        .iter()
        .filter_map(|r| {
            let t = &r.headers.iter().find(|(n, _)| n == "Transport")?.1;
            u32::from_str_radix(t.split("ssrc=").nth(1)?.split(';').next()?, 16).ok()
        })
        .collect();
    assert_eq!(ssrcs.len(), 2);
    assert_ne!(ssrcs[0], ssrcs[1]);
}
