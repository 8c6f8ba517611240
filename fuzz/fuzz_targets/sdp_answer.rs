//! Fuzzes `proto::sdp::parse_remote` (the intercom's answer or doorbell offer): never panics, and
//! whatever it accepts, our `ring_answer` to it parses back with the same PTs and crypto tags.
#![no_main]

use c300x_bridge::proto::sdp::{LocalMedia, parse_remote, ring_answer};
use c300x_bridge::proto::srtp::SdesKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(remote) = parse_remote(data) else {
        return;
    };
    let local = LocalMedia {
        ip: std::net::IpAddr::from([192, 168, 1, 10]),
        audio_port: 20000,
        video_port: 20002,
        audio_key: SdesKey::from_bytes(&[1; 30]).expect("30 bytes"),
        video_key: SdesKey::from_bytes(&[2; 30]).expect("30 bytes"),
    };
    for audio_active in [true, false] {
        let answer = ring_answer(1, &local, &remote, audio_active);
        let back = parse_remote(answer.as_bytes()).expect("our own answer parses");
        assert_eq!(
            (back.audio.pt, back.video.pt),
            (remote.audio.pt, remote.video.pt)
        );
        assert_eq!(
            (back.audio.crypto_tag, back.video.crypto_tag),
            (remote.audio.crypto_tag, remote.video.crypto_tag)
        );
        assert_eq!(
            (back.audio.key, back.video.key),
            (local.audio_key.clone(), local.video_key.clone())
        );
    }
});
