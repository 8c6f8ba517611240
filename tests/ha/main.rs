//! The bridge side of the real-Home-Assistant test (`tests/ha/run.sh` drives it): simulator +
//! intercom + hub + `mqtt::run` against the broker in `C300X_HA_BROKER` (`host:port`), remote-
//! controlled over MQTT (`c300x-test/ring`, `c300x-test/stop`; the simulator's received MESSAGE
//! bodies are published retained on `c300x-test/messages`). It is `#[ignore]`d so a plain
//! `cargo test` skips it (and counts it as skipped); run.sh runs it with `--ignored`.

use std::time::{Duration, Instant};

use c300x_bridge::config::Config;
use c300x_bridge::intercom::Intercom;
use c300x_bridge::intercom::sip::RegistrationState;
use c300x_bridge::media::hub::StreamHub;
use c300x_bridge::mqtt::{self, MqttSettings};
use c300x_bridge::sim::{SimConfig, Simulator};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;

const RTP_BASE: u16 = 45900;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real Home Assistant: run tests/ha/run.sh"]
async fn home_assistant_harness() {
    let broker = std::env::var("C300X_HA_BROKER")
        .expect("C300X_HA_BROKER=host:port (set by tests/ha/driver.py)");
    let (host, port) = broker
        .rsplit_once(':')
        .expect("C300X_HA_BROKER is host:port");
    let port: u16 = port.parse().expect("port");
    let limit = std::env::var("C300X_HA_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    let deadline = Instant::now() + Duration::from_secs(limit);

    let sim = Simulator::start(SimConfig::default()).await.expect("sim");
    let cfg = Config {
        intercom_host: Some(sim.sip_addr().ip().to_string()),
        intercom_sip_port: sim.sip_addr().port(),
        sip_domain: Some(sim.domain().to_owned()),
        rtp_port_min: RTP_BASE,
        rtp_port_max: RTP_BASE + 19,
        ..Config::default()
    };
    let stop = CancellationToken::new();
    let intercom = Intercom::start(&cfg, stop.clone()).await.expect("intercom");
    let mut reg = intercom.sip().registration();
    tokio::time::timeout(
        Duration::from_secs(10),
        reg.wait_for(|s| matches!(s, RegistrationState::Registered { .. })),
    )
    .await
    .expect("registered in time")
    .expect("agent alive");
    let hubs = StreamHub::for_panels(&cfg, &intercom, &stop);
    let settings = MqttSettings {
        host: host.to_owned(),
        port,
        ..MqttSettings::default()
    };
    let mqtt_stop = CancellationToken::new();
    let task = tokio::spawn(mqtt::run(settings, cfg, intercom, hubs, mqtt_stop.clone()));

    let mut opts = MqttOptions::new("c300x-ha-harness", host, port);
    opts.set_keep_alive(Duration::from_secs(10));
    let (control, mut events) = AsyncClient::new(opts, 64);
    control
        .subscribe("c300x-test/+", QoS::AtLeastOnce)
        .await
        .expect("sub");
    let mut published: Option<Vec<String>> = None;
    eprintln!("harness: bridge running against {broker}");
    while Instant::now() < deadline {
        let bodies = sim.stats().message_bodies();
        if published.as_ref() != Some(&bodies) {
            let json = serde_json::to_string(&bodies).expect("json");
            control
                .publish("c300x-test/messages", QoS::AtLeastOnce, true, json)
                .await
                .expect("publish");
            published = Some(bodies);
        }
        let ev = tokio::time::timeout(Duration::from_millis(100), events.poll()).await;
        match ev {
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) if !p.retain => match p.topic.as_str() {
                "c300x-test/ring" => {
                    let devaddr = String::from_utf8_lossy(&p.payload)
                        .trim()
                        .parse()
                        .unwrap_or(20);
                    eprintln!("harness: ringing panel {devaddr}");
                    // The handle is dropped: the ring stays pending until it ends by itself.
                    let _ = sim.ring(devaddr).await.expect("ring");
                }
                "c300x-test/stop" => break,
                _ => {}
            },
            Ok(Err(e)) => {
                eprintln!("harness: control connection: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            _ => {}
        }
    }
    let _ = control
        .publish(
            "c300x-test/messages",
            QoS::AtLeastOnce,
            true,
            Vec::<u8>::new(),
        )
        .await;
    let _ = events.poll().await;
    mqtt_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    stop.cancel();
    eprintln!("harness: stopped");
}
