//! The ONVIF backchannel through the session: a DESCRIBE without `Require` answers today's SDP
//! byte for byte (golden), with it the same text plus the sendonly PCMU/PCMA section; other
//! option tags get 551 + `Unsupported`; the backchannel SETUP (interleaved and UDP) takes the
//! panel's talk first (453 when busy), and TEARDOWN gives it back.

use super::*;

const URL: &str = "rtsp://127.0.0.1:8554/doorbell";
const REQUIRE: &str = "Require: www.onvif.org/ver20/backchannel\r\n";

/// Today's DESCRIBE answer for the harness's seed (7) and stream, byte for byte.
const GOLDEN: &str = "v=0\r\no=- 8308050873407804673 1 IN IP4 0.0.0.0\r\ns=doorbell\r\n\
c=IN IP4 0.0.0.0\r\nt=0 0\r\na=tool:c300x-bridge\r\na=range:npt=0-\r\na=control:*\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
a=fmtp:96 packetization-mode=1;profile-level-id=42C01F;sprop-parameter-sets=Z0LAHw==,aM48gA==\r\n\
a=control:trackID=0\r\nm=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/16000/1\r\n\
a=fmtp:97 streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;\
indexdeltalength=3;config=1408\r\na=control:trackID=1\r\n";

fn describe(h: &mut Harness, extra: &str) -> u16 {
    h.raw(&format!(
        "DESCRIBE {URL} RTSP/1.0\r\nCSeq: 2\r\nAccept: application/sdp\r\n{extra}\r\n"
    ))
}

fn setup(h: &mut Harness, track: u8, transport: &str, extra: &str) -> u16 {
    let session =
        h.s.session_id()
            .map(|id| format!("Session: {id}\r\n"))
            .unwrap_or_default();
    h.raw(&format!(
        "SETUP {URL}/trackID={track} RTSP/1.0\r\nCSeq: 3\r\nTransport: {transport}\r\n{session}{extra}\r\n"
    ))
}

fn body(h: &Harness) -> String {
    let r = h.log.responses.last().expect("a response");
    String::from_utf8(r.body.clone()).expect("utf-8")
}

fn last_header(h: &Harness, name: &str) -> Option<String> {
    let r = h.log.responses.last()?;
    let v = r.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name));
    v.map(|(_, v)| v.clone())
}

#[test]
fn describe_without_require_is_todays_sdp_and_with_it_gains_the_backchannel() {
    let mut plain = Harness::new(Secrets::default());
    assert_eq!(describe(&mut plain, ""), 200);
    assert_eq!(body(&plain), GOLDEN);

    let mut back = Harness::new(Secrets::default());
    assert_eq!(describe(&mut back, REQUIRE), 200);
    let expected = format!(
        "{GOLDEN}m=audio 0 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=control:trackID=2\r\na=sendonly\r\n"
    );
    assert_eq!(body(&back), expected);
    assert!(back.log.talks.is_empty(), "DESCRIBE takes no talk");
}

#[test]
fn unsupported_option_tags_get_551_and_no_call() {
    let mut h = Harness::new(Secrets::default());
    let code = describe(
        &mut h,
        "Require: www.onvif.org/ver20/backchannel, play.basic\r\n",
    );
    assert_eq!(code, 551);
    assert_eq!(
        last_header(&h, "Unsupported").as_deref(),
        Some("play.basic")
    );
    assert!(h.log.joins.is_empty());
    // OPTIONS and SETUP are checked too.
    let code = h.raw("OPTIONS * RTSP/1.0\r\nCSeq: 3\r\nRequire: x-y\r\n\r\n");
    assert_eq!(code, 551);
    assert_eq!(
        setup(&mut h, 0, "RTP/AVP/TCP;interleaved=0-1", "Require: z\r\n"),
        551
    );
}

#[test]
fn backchannel_setup_takes_the_talk_over_tcp_and_udp_and_teardown_returns_it() {
    // Interleaved: the Talk comes before the track, the answer names channels 4-5 by default.
    let mut h = Harness::new(Secrets::default());
    assert_eq!(describe(&mut h, REQUIRE), 200);
    assert_eq!(
        setup(&mut h, 0, "RTP/AVP/TCP;unicast;interleaved=0-1", ""),
        200
    );
    assert_eq!(setup(&mut h, 2, "RTP/AVP/TCP;unicast", ""), 200);
    assert_eq!(h.log.talks, ["doorbell"]);
    assert_eq!(
        h.log.tracks.last(),
        Some(&(
            TrackKind::Backchannel,
            TrackSink::Interleaved { rtp: 4, rtcp: 5 }
        ))
    );
    let transport = last_header(&h, "Transport").expect("Transport");
    assert!(transport.contains("interleaved=4-5"), "{transport}");
    // A second SETUP of the same track keeps the talk it has.
    assert_eq!(setup(&mut h, 2, "RTP/AVP/TCP;interleaved=6-7", ""), 200);
    assert_eq!(h.log.talks.len(), 1);
    let id = h.s.session_id().expect("session").to_owned();
    let teardown = format!("TEARDOWN {URL} RTSP/1.0\r\nCSeq: 9\r\nSession: {id}\r\n\r\n");
    assert_eq!(h.raw(&teardown), 200);
    assert_eq!(h.log.releases, 1);
    // After TEARDOWN the talk is taken again.
    assert_eq!(describe(&mut h, REQUIRE), 200);
    assert_eq!(setup(&mut h, 2, "RTP/AVP/TCP;interleaved=4-5", ""), 200);
    assert_eq!(h.log.talks.len(), 2);

    // UDP: the talk, then the port pair; a Require on the SETUP alone also offers the track.
    let mut h = Harness::new(Secrets::default());
    let code = setup(&mut h, 2, "RTP/AVP;unicast;client_port=5000-5001", REQUIRE);
    assert_eq!(code, 200);
    assert_eq!(h.log.talks, ["doorbell"]);
    let want = TrackSink::Udp {
        client: (5000, 5001),
        server: (20100, 20101),
    };
    assert_eq!(h.log.tracks.last(), Some(&(TrackKind::Backchannel, want)));
}

#[test]
fn backchannel_refusals() {
    // Someone else talks: 453 and no track.
    let mut h = Harness::new(Secrets::default());
    h.talk_busy = true;
    assert_eq!(describe(&mut h, REQUIRE), 200);
    assert_eq!(setup(&mut h, 2, "RTP/AVP/TCP;interleaved=4-5", ""), 453);
    assert!(h.log.tracks.is_empty());
    assert!(body(&h).contains("someone else is talking"));

    // Not offered (no Require anywhere): the track does not exist.
    let mut h = Harness::new(Secrets::default());
    assert_eq!(describe(&mut h, ""), 200);
    assert_eq!(setup(&mut h, 2, "RTP/AVP/TCP;interleaved=4-5", ""), 404);
    assert!(h.log.talks.is_empty());

    // Without credentials when they are configured: 401 before any talk or call.
    let mut h = Harness::new(admin());
    assert_eq!(describe(&mut h, REQUIRE), 401);
    assert_eq!(
        setup(&mut h, 2, "RTP/AVP/TCP;interleaved=4-5", REQUIRE),
        401
    );
    assert!(h.log.talks.is_empty() && h.log.joins.is_empty());
}
