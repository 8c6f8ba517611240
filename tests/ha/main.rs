//! The bridge side of the real-Home-Assistant test (`tests/ha/run.sh` drives it): the simulator
//! and the whole bridge (`app::run`: RTSP, HTTP, MQTT, the Generic Camera setup), configured from
//! the `C300X_*` environment the driver sets (broker, HA URL and token, ports, data dir) with the
//! intercom keys pointed at the simulator. Remote-controlled over MQTT: `c300x-test/ring`
//! (payload: DEVADDR), `c300x-test/restart` (payload: JSON object of option overrides, e.g.
//! `{"rtsp_port": "18555"}`; the bridge stops and starts again with the same data dir),
//! `c300x-test/stop`. Publishes, retained: `c300x-test/messages` (the simulator's received
//! MESSAGE bodies) and `c300x-test/generation` (how many times the bridge has started).
//! It is `#[ignore]`d so a plain `cargo test` skips it; run.sh runs it with `--ignored`.

use std::time::{Duration, Instant};

use c300x_bridge::app;
use c300x_bridge::config::{self, Config, Sources};
use c300x_bridge::sim::{SimConfig, Simulator};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;

const RTP_BASE: u16 = 45900;

/// The bridge's configuration: the environment's `C300X_*` options, `overrides`, then the
/// simulator as the intercom.
fn bridge_config(sim: &Simulator, overrides: &[(String, String)]) -> Config {
    let sources = Sources::from_process_env(None, None, overrides.to_vec());
    let mut cfg = config::load(&sources).expect("the driver's C300X_* options are valid");
    cfg.intercom_host = Some(sim.sip_addr().ip().to_string());
    cfg.intercom_sip_port = sim.sip_addr().port();
    cfg.sip_domain = Some(sim.domain().to_owned());
    cfg.rtp_port_min = RTP_BASE;
    cfg.rtp_port_max = RTP_BASE + 39;
    cfg
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real Home Assistant: run tests/ha/run.sh"]
async fn home_assistant_harness() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info,rsipstack=warn")
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
    let limit = std::env::var("HA_TEST_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(900);
    let deadline = Instant::now() + Duration::from_secs(limit);
    let sim = Simulator::start(SimConfig::default()).await.expect("sim");
    let base = bridge_config(&sim, &[]);
    let broker = base.mqtt_url.clone().expect("C300X_MQTT_URL is set");

    let mut opts = MqttOptions::new("c300x-ha-harness", broker.host.clone(), broker.port);
    opts.set_keep_alive(Duration::from_secs(10));
    let (control, mut events) = AsyncClient::new(opts, 64);
    control
        .subscribe("c300x-test/+", QoS::AtLeastOnce)
        .await
        .expect("sub");

    let mut overrides: Vec<(String, String)> = Vec::new();
    let mut generation = 0u32;
    let mut published: Option<Vec<String>> = None;
    'bridges: while Instant::now() < deadline {
        let cfg = bridge_config(&sim, &overrides);
        let stop = CancellationToken::new();
        let bridge = tokio::spawn(app::run(cfg, stop.clone()));
        generation += 1;
        eprintln!("harness: bridge #{generation} running (overrides {overrides:?})");
        control
            .publish(
                "c300x-test/generation",
                QoS::AtLeastOnce,
                true,
                generation.to_string(),
            )
            .await
            .expect("publish");
        let next = loop {
            if Instant::now() >= deadline {
                break None;
            }
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
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) if !p.retain => {
                    let text = String::from_utf8_lossy(&p.payload).trim().to_owned();
                    match p.topic.as_str() {
                        "c300x-test/ring" => {
                            let devaddr = text.parse().unwrap_or(20);
                            eprintln!("harness: ringing panel {devaddr}");
                            // The ring stays pending until it ends by itself.
                            let _ = sim.ring(devaddr).await.expect("ring");
                        }
                        "c300x-test/restart" => {
                            let more: serde_json::Map<String, serde_json::Value> =
                                serde_json::from_str(&text).unwrap_or_default();
                            for (k, v) in more {
                                let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                                overrides.push((k, v));
                            }
                            break Some(());
                        }
                        "c300x-test/stop" => break None,
                        _ => {}
                    }
                }
                Ok(Err(e)) => {
                    eprintln!("harness: control connection: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                _ => {}
            }
        };
        stop.cancel();
        match tokio::time::timeout(Duration::from_secs(20), bridge).await {
            Ok(Ok(Ok(()))) => eprintln!("harness: bridge #{generation} stopped"),
            other => panic!("bridge #{generation} did not stop cleanly: {other:?}"),
        }
        if next.is_none() {
            break 'bridges;
        }
    }
    for topic in ["c300x-test/messages", "c300x-test/generation"] {
        let _ = control
            .publish(topic, QoS::AtLeastOnce, true, Vec::<u8>::new())
            .await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), events.poll()).await;
    sim.shutdown().await;
    eprintln!("harness: stopped");
}
