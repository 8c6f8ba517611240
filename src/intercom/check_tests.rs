//! Unit tests of `check`'s fix texts and skipped steps (no sockets).

use super::*;

fn cfg() -> Config {
    Config {
        intercom_sip_port: 5070,
        sip_domain: Some("1234567.bs.iotleg.com".into()),
        sip_user: "c300x-brige".into(),
        ..Config::default()
    }
}

#[test]
fn a_refused_connection_names_the_configured_port() {
    let fix = reach_fix(
        &cfg(),
        "TCP connect to 10.0.0.2:5070: Connection refused (os error 111)",
    );
    assert!(
        fix.starts_with("nothing accepts SIP on port 5070 (intercom_sip_port = 5070)"),
        "{fix}"
    );
    assert!(
        fix.contains("--transports") && fix.contains("set intercom_sip_port"),
        "{fix}"
    );
    let fix = reach_fix(&cfg(), "TCP connect to 10.0.0.2:5070: no answer in 3 s");
    assert!(
        fix.contains("open TCP/UDP 5070 (intercom_sip_port) and UDP 20000-20099"),
        "{fix}"
    );
}

#[test]
fn users_db_hint_has_the_domain_and_spots_a_typo() {
    let fix = register_fix(&cfg(), "REGISTER answered 404 Not Found");
    assert!(
        fix.contains("add `c300x-brige@1234567.bs.iotleg.com md5:<hash> ;`"),
        "{fix}"
    );
    assert!(
        fix.contains("did you mean `c300x-bridge`, the default?"),
        "{fix}"
    );
    let mut own = cfg();
    own.sip_user = "hass".into();
    let fix = register_fix(&own, "404");
    assert!(fix.contains("sip_user `hass` is mistyped:"), "{fix}");
    assert!(!fix.contains("did you mean"), "{fix}");
    assert!(
        register_fix(&own, "403 Domain forbidden").contains("sip_domain `1234567.bs.iotleg.com`")
    );
    assert_eq!(register_fix(&own, "401 Unauthorized"), EDIT_TRUSTED);
}

#[test]
fn skipped_steps_say_why() {
    let with_call = Options {
        message: true,
        call: Some(Duration::from_secs(5)),
    };
    let s = not_run(&with_call, Some("the registration failed"));
    assert_eq!(
        s.iter().map(|s| s.name).collect::<Vec<_>>(),
        ["message", "call"]
    );
    assert!(s.iter().all(|s| s.status == Status::Skip));
    assert_eq!(
        s[1].to_string(),
        "[skip] call       skipped: the registration failed; the test call needs it"
    );
    assert!(not_run(&with_call, None).is_empty());
    let without = Options {
        message: false,
        call: None,
    };
    let s = not_run(&without, None);
    assert_eq!(s.len(), 1);
    assert!(
        s[0].detail.starts_with("not tried: add --call"),
        "{:?}",
        s[0]
    );
}
