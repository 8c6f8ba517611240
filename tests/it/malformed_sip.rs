//! Malformed SIP from the peer (tests/corpus/sip: truncated, oversized, garbage, lying
//! Content-Length) never panics the bridge's SIP stack, and never disturbs a working flow.

use std::time::Duration;

use c300x_bridge::config::{Config, SipTransport};
use c300x_bridge::intercom::Intercom;
use c300x_bridge::intercom::sip::{RegistrationState, decode_stream, parse_datagram};
use c300x_bridge::sim::{SimConfig, Simulator};
use tokio_util::sync::CancellationToken;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/sip");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .map(|e| {
            let p = e.expect("entry").path();
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("read"))
        })
        .collect();
    files.sort();
    assert!(files.len() >= 15, "corpus too small");
    files
}

#[test]
fn corpus_goes_through_both_parsers_without_panicking() {
    for (name, bytes) in corpus() {
        let datagram = parse_datagram(&bytes);
        let frames = decode_stream(&bytes);
        match name.as_str() {
            "valid_invite.txt" => {
                assert!(
                    datagram.as_deref().is_ok_and(|l| l.starts_with("INVITE ")),
                    "{datagram:?}"
                );
                assert!(
                    matches!(frames.first(), Some(Ok(l)) if l.starts_with("INVITE ")),
                    "{frames:?}"
                );
            }
            "garbage.txt" | "truncated_start_line.txt" | "bad_status.txt" | "no_version.txt" => {
                assert!(datagram.is_err(), "{name}: {datagram:?}");
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn malformed_datagrams_do_not_disturb_a_udp_bridge() {
    let sim = Simulator::start(SimConfig::default()).await.expect("sim");
    let cfg = Config {
        sip_transport: SipTransport::Udp,
        ..crate::rig::config_for(&sim)
    };
    let stop = CancellationToken::new();
    let intercom = Intercom::start(&cfg, stop.clone()).await.expect("start");
    crate::intercom_sip::registered(intercom.sip()).await;
    let bridge_addr = sim.registrations().await.expect("list")[0].source;
    let attacker = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    for (_, bytes) in corpus() {
        // Datagrams over 64 KiB cannot be sent; the first 60 KiB is malformed enough.
        let bytes = &bytes[..bytes.len().min(60_000)];
        attacker.send_to(bytes, bridge_addr).await.expect("send");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    intercom
        .sip()
        .message("*8*19*20##")
        .await
        .expect("the flow still works");
    assert!(matches!(
        *intercom.sip().registration().borrow(),
        RegistrationState::Registered { .. }
    ));
    assert_eq!(sim.stats().message_bodies(), ["*8*19*20##"]);
    stop.cancel();
}
