//! Unit tests of the bridge's SDP: the §4.1 offer byte for byte, the §4.2 answer as captured,
//! every `SdpError`, the doorbell answer, and the malformed corpus in tests/corpus/sdp/.

use std::net::IpAddr;

use super::*;
use crate::proto::srtp::SdesKey;

fn key(byte: u8) -> SdesKey {
    SdesKey::from_bytes(&[byte; 30]).expect("30 bytes")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn local() -> LocalMedia {
    LocalMedia {
        ip: ip("192.168.1.10"),
        audio_port: 20000,
        video_port: 20002,
        audio_key: key(1),
        video_key: key(2),
    }
}

const K1: &str = "inline:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB";
const K2: &str = "inline:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgIC";

/// The §4.1 offer with DEVADDR 20, our LAN address and fixed keys.
const OFFER: &str = "v=0\r\n\
o=- 4242 1 IN IP4 192.168.1.10\r\n\
s=-\r\n\
c=IN IP4 192.168.1.10\r\n\
t=0 0\r\n\
a=DEVADDR:20\r\n\
a=nortpproxy:yes\r\n\
m=audio 20000 RTP/SAVP 110\r\n\
a=rtpmap:110 speex/8000\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB\r\n\
m=video 20002 RTP/SAVP 96\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 profile-level-id=42801F\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgIC\r\n\
a=recvonly\r\n";

/// The intercom's 200 OK body in the shape of the real capture (§4.2, koush/scrypted#737).
const REAL_ANSWER: &str = "v=0\r\n\
o=c300x 1716 1716 IN IP4 192.168.1.40\r\n\
s=Talk\r\n\
c=IN IP4 192.168.1.40\r\n\
t=0 0\r\n\
m=audio 28836 RTP/SAVP 110\r\n\
a=rtpmap:110 speex/8000\r\n\
a=fmtp:110 vbr=on\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMD\r\n\
m=video 5788 RTP/SAVP 96\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 profile-level-id=42801F\r\n\
a=sendonly\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:BAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE\r\n";

fn parse(s: &str) -> Result<RemoteMedia, SdpError> {
    parse_remote(s.as_bytes())
}

#[test]
fn view_offer_is_the_documented_offer_byte_for_byte() {
    assert_eq!(K1, key(1).to_inline());
    assert_eq!(K2, key(2).to_inline());
    assert_eq!(view_offer(20, 4242, 1, &local()), OFFER);
}

#[test]
fn view_offer_puts_devaddr_before_the_first_m_line_and_speaks_ipv6() {
    let mut l = local();
    l.ip = ip("fd00::10");
    let offer = view_offer(21, 7, 8, &l);
    assert!(offer.starts_with("v=0\r\no=- 7 8 IN IP6 fd00::10\r\ns=-\r\nc=IN IP6 fd00::10\r\n"));
    let devaddr = offer.find("a=DEVADDR:21\r\n").expect("devaddr");
    assert!(devaddr < offer.find("m=").expect("m="));
    // Our own offer reads back with our keys (a self-check of writer against reader).
    let back = parse(&offer).expect("parses");
    assert_eq!(back.devaddr.as_deref(), Some("21"));
    assert_eq!((back.audio.pt, back.video.pt), (110, 96));
    assert_eq!(back.video.direction, Direction::RecvOnly);
    assert_eq!(back.audio.key, key(1));
}

#[test]
fn parses_the_real_c300x_answer() {
    let m = parse(REAL_ANSWER).expect("the captured answer parses");
    let intercom = ip("192.168.1.40");
    assert_eq!(
        m.audio,
        RemoteStream {
            ip: intercom,
            rtp_port: 28836,
            rtcp_port: 28837,
            pt: 110,
            key: key(3),
            crypto_tag: 1,
            direction: Direction::SendRecv,
            fmtp: Some("vbr=on".into()),
        }
    );
    assert_eq!(
        m.video,
        RemoteStream {
            ip: intercom,
            rtp_port: 5788,
            rtcp_port: 5789,
            pt: 96,
            key: key(4),
            crypto_tag: 1,
            direction: Direction::SendOnly,
            fmtp: Some("profile-level-id=42801F".into()),
        }
    );
    assert_eq!(m.devaddr, None);
}

#[test]
fn same_pt_on_both_lines_is_fine_because_pts_are_per_m_line() {
    // memphi2/ha-bticino-c300x offers 98 for both; the unit mirrors it.
    let answer = REAL_ANSWER
        .replace(":110", ":98")
        .replace(" 110\r\n", " 98\r\n");
    let answer = answer.replace(":96", ":98").replace(" 96\r\n", " 98\r\n");
    let m = parse(&answer).expect("parses");
    assert_eq!((m.audio.pt, m.video.pt), (98, 98));
}

#[test]
fn rtcp_attribute_overrides_port_plus_one() {
    let answer = REAL_ANSWER.replace(
        "a=fmtp:110 vbr=on\r\n",
        "a=fmtp:110 vbr=on\r\na=rtcp:30001 IN IP4 192.168.1.40\r\n",
    );
    let m = parse(&answer).expect("parses");
    assert_eq!((m.audio.rtp_port, m.audio.rtcp_port), (28836, 30001));
    assert_eq!(m.video.rtcp_port, 5789);
}

#[test]
fn media_level_connection_and_direction_win_over_session_level() {
    let answer = REAL_ANSWER
        .replace("t=0 0\r\n", "t=0 0\r\na=inactive\r\n")
        .replace("a=sendonly\r\n", "a=sendonly\r\nc=IN IP4 10.9.8.7\r\n");
    let m = parse(&answer).expect("parses");
    assert_eq!(m.audio.ip, ip("192.168.1.40"));
    assert_eq!(m.video.ip, ip("10.9.8.7"));
    assert_eq!(m.audio.direction, Direction::Inactive);
    assert_eq!(m.video.direction, Direction::SendOnly);
}

#[test]
fn picks_our_suite_after_an_unsupported_one_and_keeps_its_tag() {
    let k256 = format!("inline:{}", "BQUF".repeat(15));
    let answer = REAL_ANSWER.replace(
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:Aw",
        &format!("a=crypto:1 AES_256_CM_HMAC_SHA1_80 {k256}\r\na=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:Aw"),
    );
    let m = parse(&answer).expect("parses");
    assert_eq!((m.audio.crypto_tag, m.audio.key.clone()), (2, key(3)));
}

#[test]
fn pt_guess_only_when_unambiguous() {
    let sdp = |formats: &str, rtpmap: &str| {
        format!(
            "v=0\r\nc=IN IP4 10.0.0.5\r\nm=audio 4000 RTP/SAVP {formats}\r\n{rtpmap}a=crypto:1 AES_CM_128_HMAC_SHA1_80 {K1}\r\n\
             m=video 4002 RTP/SAVP 96\r\na=rtpmap:96 H264/90000\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 {K2}\r\n"
        )
    };
    let pt = |formats: &str, rtpmap: &str| parse(&sdp(formats, rtpmap)).map(|m| m.audio.pt);
    assert_eq!(pt("110", ""), Ok(110));
    assert_eq!(
        pt("110 101", "a=rtpmap:101 telephone-event/8000\r\n"),
        Ok(110)
    );
    let no_speex = Err(SdpError::NoCodec {
        media: "audio",
        wanted: "speex/8000",
    });
    assert_eq!(pt("110 111", ""), no_speex);
    assert_eq!(pt("0", ""), no_speex);
    assert_eq!(pt("110", "a=rtpmap:110 PCMU/8000\r\n"), no_speex);
    assert_eq!(pt("110", "a=rtpmap:110 speex/16000\r\n"), no_speex);
    assert_eq!(pt("110", "a=rtpmap:110 speex/8000/1\r\n"), Ok(110));
}

#[test]
fn every_error_variant() {
    let cases: Vec<(String, SdpError)> = vec![
        ("v=0\r\n".into(), SdpError::NoAudio),
        (
            REAL_ANSWER[..REAL_ANSWER.find("m=video").expect("video")].into(),
            SdpError::NoVideo,
        ),
        (
            REAL_ANSWER.replace("c=IN IP4 192.168.1.40\r\n", ""),
            SdpError::NoConnection { media: "audio" },
        ),
        (
            REAL_ANSWER.replace("H264/90000", "VP8/90000"),
            SdpError::NoCodec {
                media: "video",
                wanted: "H264/90000",
            },
        ),
        (
            REAL_ANSWER.replace("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:Aw", "a=x:"),
            SdpError::NoCrypto { media: "audio" },
        ),
        (
            REAL_ANSWER.replace("inline:BAQE", "inline:"),
            SdpError::BadCrypto {
                media: "video",
                detail: "a=crypto key has 27 bytes, expected 30 (16-byte key + 14-byte salt)"
                    .into(),
            },
        ),
        (
            REAL_ANSWER.replace("m=video 5788", "m=video 0"),
            SdpError::PortZero { media: "video" },
        ),
        (
            REAL_ANSWER.replace("s=Talk", "Talk"),
            SdpError::Syntax {
                line: "Talk".into(),
            },
        ),
        (
            REAL_ANSWER.replace("c=IN IP4 192.168.1.40", "c=IN IP4 intercom.local"),
            SdpError::Syntax {
                line: "c=IN IP4 intercom.local".into(),
            },
        ),
        (
            REAL_ANSWER.replace("a=sendonly", "a=rtcp:none"),
            SdpError::Syntax {
                line: "a=rtcp:none".into(),
            },
        ),
        ("a".repeat(MAX_SDP_LEN + 1), SdpError::TooLarge),
    ];
    for (body, want) in cases {
        assert_eq!(parse(&body), Err(want), "body:\n{body}");
    }
    // Errors say what is missing, for the logs.
    assert_eq!(
        SdpError::NoCrypto { media: "video" }.to_string(),
        "SDP video: no a=crypto with AES_CM_128_HMAC_SHA1_80"
    );
}

#[test]
fn syntax_errors_quote_a_bounded_part_of_the_line() {
    let long = format!("{}\r\n", "é".repeat(500));
    let Err(SdpError::Syntax { line }) = parse(&long) else {
        panic!("expected a syntax error");
    };
    assert_eq!(line.chars().count(), 80);
}

#[test]
fn a_rejected_stream_before_an_accepted_one_is_skipped() {
    let answer = REAL_ANSWER.replace("m=audio 28836", "m=audio 0 RTP/SAVP 0\r\nm=audio 28836");
    assert_eq!(parse(&answer).map(|m| m.audio.rtp_port), Ok(28836));
}

/// The unit's doorbell INVITE offer (§7): speex 96 + telephone-event 101, H.264 97.
fn doorbell_offer() -> RemoteMedia {
    let offer = REAL_ANSWER
        .replace("RTP/SAVP 110", "RTP/SAVP 96 101")
        .replace(
            ":110 speex/8000",
            ":96 speex/8000\r\na=rtpmap:101 telephone-event/8000",
        )
        .replace("video 5788 RTP/SAVP 96", "video 5788 RTP/SAVP 97")
        .replace("a=rtpmap:96 H264", "a=rtpmap:97 H264")
        .replace(
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:BA",
            "a=crypto:5 AES_CM_128_HMAC_SHA1_80 inline:BA",
        );
    let m = parse(&offer).expect("doorbell offer parses");
    assert_eq!((m.audio.pt, m.video.pt, m.video.crypto_tag), (96, 97, 5));
    m
}

#[test]
fn ring_answer_mirrors_pts_and_tags_and_has_no_devaddr() {
    let remote = doorbell_offer();
    let answer = ring_answer(99, &local(), &remote, true);
    let want = format!(
        "v=0\r\no=- 99 99 IN IP4 192.168.1.10\r\ns=-\r\nc=IN IP4 192.168.1.10\r\nt=0 0\r\n\
         m=audio 20000 RTP/SAVP 96\r\na=rtpmap:96 speex/8000\r\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 {K1}\r\n\
         m=video 20002 RTP/SAVP 97\r\na=rtpmap:97 H264/90000\r\na=fmtp:97 profile-level-id=42801F\r\n\
         a=crypto:5 AES_CM_128_HMAC_SHA1_80 {K2}\r\na=recvonly\r\n"
    );
    assert_eq!(answer, want);
    assert!(!answer.contains("DEVADDR") && !answer.contains("nortpproxy"));
}

#[test]
fn ring_answer_preview_has_inactive_audio() {
    let answer = ring_answer(99, &local(), &doorbell_offer(), false);
    assert!(answer.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB\r\na=inactive\r\nm=video"));
    let back = parse(&answer).expect("parses");
    assert_eq!(back.audio.direction, Direction::Inactive);
}

#[test]
fn ring_answer_round_trips_through_parse_remote() {
    let remote = doorbell_offer();
    let back = parse(&ring_answer(1, &local(), &remote, true)).expect("parses");
    assert_eq!(back.devaddr, None);
    assert_eq!(
        (back.audio.pt, back.video.pt),
        (remote.audio.pt, remote.video.pt)
    );
    assert_eq!(
        (back.audio.crypto_tag, back.video.crypto_tag),
        (remote.audio.crypto_tag, remote.video.crypto_tag)
    );
    assert_eq!((back.audio.key, back.video.key), (key(1), key(2)));
    assert_eq!((back.audio.rtp_port, back.audio.rtcp_port), (20000, 20001));
    assert_eq!(back.audio.direction, Direction::SendRecv);
    assert_eq!(back.video.direction, Direction::RecvOnly);
}

/// Expected outcome per corpus file: `Ok((audio PT, video PT))` or the error.
fn corpus_expectation(name: &str) -> Option<Result<(u8, u8), SdpError>> {
    let e = Err;
    Some(match name {
        "audio-port-zero.sdp" => e(SdpError::PortZero { media: "audio" }),
        "bad-port.sdp" => e(SdpError::Syntax {
            line: "m=audio 99999 RTP/SAVP 110".into(),
        }),
        "bom-latin1.sdp" => Ok((110, 96)),
        "cr-only.sdp" => Ok((110, 96)),
        "crypto-lifetime-mki.sdp" => Ok((110, 96)),
        "crypto-only-unsupported.sdp" => e(SdpError::NoCrypto { media: "video" }),
        "crypto-unsupported-suite-first.sdp" => Ok((110, 96)),
        "doorbell-offer.sdp" => Ok((96, 97)),
        "empty.sdp" => e(SdpError::NoAudio),
        "extra-codecs.sdp" => Ok((98, 98)),
        "garbage.bin" => e(SdpError::Syntax {
            line: "\u{fffd}\u{fffd}\0SIP/2.0 garbage\u{1}\u{2}".into(),
        }),
        "huge.sdp" => e(SdpError::TooLarge),
        "lf-only.sdp" => Ok((110, 96)),
        "lower-case.sdp" => Ok((110, 96)),
        "media-level-c.sdp" => Ok((110, 96)),
        "missing-c.sdp" => e(SdpError::NoConnection { media: "audio" }),
        "no-rtpmap.sdp" => Ok((110, 96)),
        "no-video.sdp" => e(SdpError::NoVideo),
        "plain-rtp-no-crypto.sdp" => e(SdpError::NoCrypto { media: "audio" }),
        "rtcp-attribute.sdp" => Ok((110, 96)),
        "same-pt-98.sdp" => Ok((98, 98)),
        "truncated-header.sdp" => e(SdpError::NoAudio),
        "truncated-key.sdp" => e(SdpError::BadCrypto {
            media: "video",
            detail: "a=crypto key `BAQEBAQEBAQEB` is not base64".into(),
        }),
        _ => return None,
    })
}

#[test]
fn malformed_corpus_gives_the_expected_result_for_every_file() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/sdp");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/corpus/sdp exists") {
        let path = entry.expect("dir entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let body = std::fs::read(&path).expect("readable");
        let want = corpus_expectation(&name)
            .unwrap_or_else(|| panic!("{name}: add its expected result to corpus_expectation"));
        let got = std::panic::catch_unwind(|| parse_remote(&body))
            .unwrap_or_else(|_| panic!("{name}: parse_remote panicked"));
        assert_eq!(got.map(|m| (m.audio.pt, m.video.pt)), want, "{name}");
        seen += 1;
    }
    assert!(seen >= 12, "only {seen} corpus files");
}

#[test]
fn corpus_details_that_the_pt_check_does_not_cover() {
    let read = |name: &str| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/corpus/sdp")
            .join(name);
        parse_remote(&std::fs::read(path).expect("corpus file")).expect("parses")
    };
    let m = read("media-level-c.sdp");
    assert_eq!(
        (m.audio.ip, m.video.ip),
        (ip("192.168.1.41"), ip("192.168.1.42"))
    );
    let m = read("rtcp-attribute.sdp");
    assert_eq!((m.audio.rtcp_port, m.video.rtcp_port), (28900, 5800));
    let m = read("crypto-unsupported-suite-first.sdp");
    assert_eq!((m.video.crypto_tag, m.video.key), (2, key(4)));
    let m = read("crypto-lifetime-mki.sdp");
    assert_eq!((m.audio.key, m.video.key), (key(3), key(4)));
    let m = read("lower-case.sdp");
    assert_eq!(m.video.direction, Direction::SendOnly);
    let m = read("extra-codecs.sdp");
    assert_eq!(
        (m.audio.rtp_port, m.video.rtp_port, m.video.rtcp_port),
        (7078, 9078, 9079)
    );
    let m = read("no-rtpmap.sdp");
    assert_eq!((m.audio.crypto_tag, m.video.crypto_tag), (7, 8));
}

#[test]
fn speex_vbr_follows_the_fmtp_of_the_chosen_pt() {
    let m = parse(REAL_ANSWER).expect("parses");
    assert_eq!(m.audio.speex_vbr(), SpeexVbr::On);
    // The fmtp of another PT on the line is not ours.
    let other = REAL_ANSWER.replace("a=fmtp:110 vbr=on", "a=fmtp:101 vbr=on");
    assert_eq!(parse(&other).expect("parses").audio.fmtp, None);
    assert_eq!(
        parse(&other).expect("parses").audio.speex_vbr(),
        SpeexVbr::Off
    );
    for (fmtp, vbr) in [
        (None, SpeexVbr::Off),
        (Some("vbr=on"), SpeexVbr::On),
        (Some("VBR = VAD"), SpeexVbr::Vad),
        (Some("mode=any;vbr=off"), SpeexVbr::Off),
        (Some("mode=3; vbr=on"), SpeexVbr::On),
        (Some("vbr=maybe"), SpeexVbr::Off),
        (Some("vbr"), SpeexVbr::Off),
    ] {
        assert_eq!(SpeexVbr::from_fmtp(fmtp), vbr, "{fmtp:?}");
    }
}
