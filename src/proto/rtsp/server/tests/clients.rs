//! The request sequences of real clients: ffmpeg, GStreamer (captured) and retina, with and
//! without Digest auth.

use super::*;

#[test]
fn real_clients_play_and_tear_down() {
    for (file, expect_codes, udp, pauses) in [
        (
            "ffmpeg-tcp.bin",
            vec![
                "OPTIONS 200",
                "DESCRIBE 200",
                "SETUP 200",
                "SETUP 200",
                "PLAY 200",
                "TEARDOWN 200",
            ],
            false,
            0,
        ),
        (
            "ffmpeg-udp.bin",
            vec![
                "OPTIONS 200",
                "DESCRIBE 200",
                "SETUP 200",
                "SETUP 200",
                "PLAY 200",
                "TEARDOWN 200",
            ],
            true,
            0,
        ),
        (
            "gst-tcp.bin",
            vec![
                "OPTIONS 200",
                "DESCRIBE 200",
                "SETUP 200",
                "SETUP 200",
                "PLAY 200",
            ],
            false,
            0,
        ),
        (
            "gst-udp.bin",
            vec![
                "OPTIONS 200",
                "DESCRIBE 200",
                "SETUP 200",
                "SETUP 200",
                "PLAY 200",
                "PAUSE 200",
                "TEARDOWN 200",
            ],
            true,
            1,
        ),
        (
            "retina-tcp.txt",
            vec![
                "DESCRIBE 200",
                "SETUP 200",
                "SETUP 200",
                "PLAY 200",
                "OPTIONS 200",
                "GET_PARAMETER 200",
                "TEARDOWN 200",
            ],
            false,
            0,
        ),
    ] {
        let mut h = Harness::new(Secrets::default());
        h.replay(&capture(file), None);
        assert_eq!(h.codes(), expect_codes, "{file}");
        assert_eq!(h.log.joins, vec!["doorbell".to_owned()], "{file}: one join");
        assert_eq!(h.log.plays, 1, "{file}");
        assert_eq!(h.log.pauses, pauses, "{file}");
        assert_eq!(h.log.tracks.len(), 2, "{file}");
        for (kind, sink) in &h.log.tracks {
            match (udp, sink, kind) {
                (false, TrackSink::Interleaved { rtp: 0, rtcp: 1 }, TrackKind::Video)
                | (false, TrackSink::Interleaved { rtp: 2, rtcp: 3 }, TrackKind::Audio)
                | (
                    true,
                    TrackSink::Udp {
                        server: (20100, 20101),
                        ..
                    },
                    _,
                ) => {}
                other => panic!("{file}: {other:?}"),
            }
        }
        let torn_down = expect_codes
            .last()
            .is_some_and(|c| c.starts_with("TEARDOWN"));
        assert_eq!(h.log.releases, usize::from(torn_down), "{file}");
        let want = if torn_down {
            Phase::Init
        } else {
            Phase::Playing
        };
        assert_eq!(h.s.phase(), want, "{file}");
        assert_eq!(h.log.closed, None, "{file}");
        // The DESCRIBE answer and the PLAY answer carry what clients need.
        let describe = h
            .log
            .responses
            .iter()
            .find(|r| r.body.starts_with(b"v=0"))
            .expect("sdp");
        let text = String::from_utf8_lossy(&describe.body);
        assert!(
            text.contains("m=video") && text.contains("m=audio"),
            "{file}: {text}"
        );
        assert!(
            describe
                .headers
                .iter()
                .any(|(n, v)| n == "Content-Base" && v.ends_with("/doorbell/"))
        );
        let play = h
            .log
            .responses
            .iter()
            .find(|r| r.headers.iter().any(|(n, _)| n == "RTP-Info"))
            .expect("play");
        let info = &play
            .headers
            .iter()
            .find(|(n, _)| n == "RTP-Info")
            .expect("info")
            .1;
        assert!(
            info.contains("/doorbell/trackID=0;seq=") && info.contains("trackID=1;seq="),
            "{info}"
        );
    }
}

#[test]
fn digest_clients_get_a_challenge_first_and_no_call_before_it_is_answered() {
    for (file, expect) in [
        (
            "ffmpeg-auth.bin",
            vec![
                "OPTIONS 200",
                "DESCRIBE 401",
                "DESCRIBE 200",
                "SETUP 200",
                "SETUP 200",
                "PLAY 200",
                "TEARDOWN 200",
            ],
        ),
        (
            "gst-auth.bin",
            vec![
                "OPTIONS 200",
                "DESCRIBE 401",
                "DESCRIBE 200",
                "SETUP 200",
                "SETUP 200",
                "PLAY 200",
            ],
        ),
    ] {
        let mut h = Harness::new(admin());
        h.replay(&capture(file), Some(("admin", "s3cret")));
        assert_eq!(h.codes(), expect, "{file}");
        assert_eq!(h.log.joins.len(), 1, "{file}");
        let challenge = &h.log.responses[1];
        assert_eq!(
            challenge
                .headers
                .iter()
                .filter(|(n, _)| n == "WWW-Authenticate")
                .count(),
            2
        );
    }
    // Wrong credentials: 401 for everything, never a join, closed after ten tries.
    let mut h = Harness::new(admin());
    h.replay(&capture("ffmpeg-auth.bin"), Some(("admin", "wrong")));
    assert!(h.log.joins.is_empty());
    assert!(
        h.codes()[1..].iter().all(|c| c.ends_with(" 401")),
        "{:?}",
        h.codes()
    );
    let mut h = Harness::new(admin());
    for _ in 0..10 {
        assert_eq!(
            h.raw("DESCRIBE rtsp://h/doorbell RTSP/1.0\r\nCSeq: 1\r\n\r\n"),
            401
        );
    }
    assert_eq!(h.log.closed, Some(CloseReason::AuthFailures));
    assert!(h.log.joins.is_empty());
}
