//! The flow logic against replies recorded from real Home Assistants (`tests/ha/fixtures/<version>/`,
//! captured with curl from HA 2024.3.3 and 2026.2.3 adding the simulator's camera).

use serde_json::{Value, json};

use super::*;
use crate::homeassistant::source::Authentication;

fn want() -> CameraSource {
    CameraSource {
        stream_source: "rtsp://127.0.0.1:18954/doorbell".into(),
        still_image_url: "http://127.0.0.1:18980/api/doorbell/snapshot.jpg".into(),
        username: None,
        password: None,
        authentication: Authentication::Basic,
    }
}

fn fixture(version: &str, name: &str) -> Value {
    let path = format!(
        "{}/tests/ha/fixtures/{version}/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Plays a flow against recorded replies; the bodies it sent, in order.
fn replay(flow: &mut Flow, replies: &[Value]) -> (Vec<Request>, Result<Next, FlowError>) {
    let mut sent = vec![flow.start()];
    for (i, reply) in replies.iter().enumerate() {
        let path = sent.last().map(|r| r.path.clone()).unwrap_or_default();
        match flow.on_reply(&path, 200, reply) {
            Ok(Next::Send(r)) => sent.push(r),
            other => {
                assert_eq!(i, replies.len() - 1, "the flow ended early: {other:?}");
                return (sent, other);
            }
        }
    }
    panic!("the flow did not end after {} replies", replies.len());
}

#[test]
fn create_on_2026_2_nests_the_advanced_section_and_confirms() {
    let v = "2026.2.3";
    let mut flow = Flow::new(FlowKind::Create, want());
    let replies = [
        fixture(v, "create-1-user"),
        fixture(v, "create-2-confirm"),
        fixture(v, "create-3-entry"),
    ];
    let (sent, end) = replay(&mut flow, &replies);
    assert_eq!(sent[0].path, "config/config_entries/flow");
    assert_eq!(sent[0].body.as_ref().expect("body")["handler"], "generic");
    let flow_id = replies[0]["flow_id"].as_str().expect("id");
    assert_eq!(
        sent[1].path,
        format!("config/config_entries/flow/{flow_id}")
    );
    assert_eq!(
        sent[1].body,
        Some(json!({
            "stream_source": "rtsp://127.0.0.1:18954/doorbell",
            "still_image_url": "http://127.0.0.1:18980/api/doorbell/snapshot.jpg",
            "advanced": {"framerate": 2.0, "verify_ssl": true, "rtsp_transport": "tcp",
                         "authentication": "basic"},
        }))
    );
    assert_eq!(sent[2].body, Some(json!({"confirmed_ok": true})));
    assert_eq!(
        end,
        Ok(Next::Done {
            entry_id: Some("01M8TS6CMNM66VMXY7AXYK98GF".into())
        })
    );
    assert_eq!(flow.abort_request(), None, "a finished flow needs no abort");
}

#[test]
fn update_on_2026_2_reads_current_values_and_sends_credentials() {
    let v = "2026.2.3";
    let init = fixture(v, "options-1-init");
    let Reply::Form { fields, .. } = parse_reply("x", &init).expect("form") else {
        panic!("not a form")
    };
    let current = current_settings(&fields);
    assert_eq!(
        current.stream_source.as_deref(),
        Some("rtsp://127.0.0.1:18954/doorbell")
    );
    assert_eq!(current.rtsp_transport.as_deref(), Some("tcp"));
    assert_eq!(current.username, None);
    assert!(differences(&current, &want()).is_empty());
    let mut with_user = want();
    with_user.username = Some("viewer".into());
    with_user.password = Some("pw".into());
    assert_eq!(
        differences(&current, &with_user),
        vec!["username", "password"]
    );
    let creds = fixture(v, "options-init-with-credentials");
    let Reply::Form { fields, .. } = parse_reply("x", &creds).expect("form") else {
        panic!("not a form")
    };
    assert!(differences(&current_settings(&fields), &with_user).is_empty());

    let mut flow = Flow::new(
        FlowKind::Update {
            entry_id: "01M8TS6CMNM66VMXY7AXYK98GF".into(),
        },
        with_user,
    );
    let replies = [
        init,
        fixture(v, "options-2-confirm"),
        fixture(v, "options-3-done"),
    ];
    let (sent, end) = replay(&mut flow, &replies);
    assert_eq!(sent[0].path, "config/config_entries/options/flow");
    assert_eq!(
        sent[0].body.as_ref().expect("body")["handler"],
        "01M8TS6CMNM66VMXY7AXYK98GF"
    );
    let body = sent[1].body.as_ref().expect("body");
    assert_eq!(body["username"], "viewer");
    assert_eq!(body["password"], "pw");
    assert_eq!(body["advanced"]["limit_refetch_to_url_change"], false);
    assert_eq!(end, Ok(Next::Done { entry_id: None }));
}

#[test]
fn a_refused_camera_names_each_field_and_can_be_aborted() {
    let mut flow = Flow::new(FlowKind::Create, want());
    let first = fixture("2026.2.3", "create-1-user");
    assert!(matches!(flow.on_reply("p", 200, &first), Ok(Next::Send(_))));
    let err = flow
        .on_reply("p", 200, &fixture("2026.2.3", "create-errors"))
        .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("still_image_url: the still image URL was not found (404)"),
        "{text}"
    );
    assert!(
        text.contains("stream_source: no stream within HA's 30 s limit"),
        "{text}"
    );
    assert!(err.is_transient());
    let abort = flow.abort_request().expect("abort");
    assert_eq!(abort.method, Method::Delete);
    assert!(
        abort
            .path
            .starts_with("config/config_entries/flow/01M8TS6T4YBN74580J7M9ZJXYB")
    );
}

#[test]
fn http_errors_carry_has_words() {
    let e = http_error(
        "config/config_entries/flow/x",
        400,
        &fixture("2026.2.3", "create-extra-key"),
    );
    assert_eq!(
        e.to_string(),
        "HTTP 400 from config/config_entries/flow/x: extra keys not allowed @ data['name']"
    );
    assert!(!e.is_transient());
    let mut flow = Flow::new(FlowKind::Create, want());
    let e = flow
        .on_reply(
            "config/config_entries/flow",
            404,
            &json!({"message": "Invalid handler specified"}),
        )
        .expect_err("404");
    assert!(e.to_string().contains("Invalid handler specified"), "{e}");
    assert!(
        flow.on_reply("x", 500, &Value::Null)
            .expect_err("500")
            .is_transient()
    );
}

#[test]
fn unknown_required_fields_stop_and_loops_are_caught() {
    let form = json!({"type": "form", "flow_id": "f", "step_id": "user", "errors": {},
        "data_schema": [
            {"type": "string", "name": "stream_source", "required": false},
            {"type": "string", "name": "camera_color", "required": false},
            {"type": "integer", "name": "spin_rate", "required": true, "default": 3},
            {"type": "string", "name": "serial", "required": true}]});
    let mut flow = Flow::new(FlowKind::Create, want());
    let e = flow.on_reply("p", 200, &form).expect_err("unknown");
    assert_eq!(
        e,
        FlowError::UnknownField {
            step: "user".into(),
            field: "serial".into()
        }
    );
    // The same form again without errors would loop: stop.
    let same = json!({"type": "form", "flow_id": "f", "step_id": "user", "errors": null,
        "data_schema": [{"type": "string", "name": "stream_source", "required": false}]});
    let mut flow = Flow::new(FlowKind::Create, want());
    assert!(matches!(flow.on_reply("p", 200, &same), Ok(Next::Send(_))));
    assert!(matches!(
        flow.on_reply("p", 200, &same),
        Err(FlowError::TooManySteps { .. })
    ));
    let aborted = json!({"type": "abort", "flow_id": "f", "reason": "already_configured"});
    let mut flow = Flow::new(FlowKind::Create, want());
    assert_eq!(
        flow.on_reply("p", 200, &aborted),
        Err(FlowError::Aborted {
            reason: "already_configured".into()
        })
    );
    assert!(parse_reply("p", &json!({"type": "menu"})).is_err());
}

#[test]
fn entries_list_is_filtered_by_domain() {
    let list = fixture("2026.2.3", "entries");
    let entries = crate::homeassistant::plan::entries_from_list(&list);
    assert_eq!(
        entries,
        vec![(
            "01M8TS6CMNM66VMXY7AXYK98GF".to_owned(),
            "127_0_0_1".to_owned()
        )]
    );
    let mixed = json!([{"entry_id": "m", "domain": "mqtt", "title": "x"}]);
    assert!(crate::homeassistant::plan::entries_from_list(&mixed).is_empty());
}

#[test]
fn registry_fixture_finds_the_camera() {
    let list = fixture("2026.2.3", "entity-registry-list");
    assert_eq!(
        crate::homeassistant::naming::entity_of_entry(
            &list["result"],
            "01M8TS6CMNM66VMXY7AXYK98GF"
        )
        .as_deref(),
        Some("camera.127_0_0_1")
    );
}

#[test]
fn create_and_update_on_2024_3_send_flat_fields_only() {
    let v = "2024.3.3";
    let mut flow = Flow::new(FlowKind::Create, want());
    let replies = [
        fixture(v, "create-1-user"),
        fixture(v, "create-2-confirm"),
        fixture(v, "create-3-entry"),
    ];
    let (sent, end) = replay(&mut flow, &replies);
    // Only the schema's keys: 2024.3 answers 400 "extra keys not allowed" to anything else.
    assert_eq!(
        sent[1].body,
        Some(json!({
            "still_image_url": "http://127.0.0.1:18980/api/doorbell/snapshot.jpg",
            "stream_source": "rtsp://127.0.0.1:18954/doorbell",
            "rtsp_transport": "tcp",
            "authentication": "basic",
            "framerate": 2.0,
            "verify_ssl": true,
        }))
    );
    assert_eq!(replies[1]["step_id"], "user_confirm_still");
    assert_eq!(sent[2].body, Some(json!({"confirmed_ok": true})));
    assert_eq!(
        end,
        Ok(Next::Done {
            entry_id: Some("319f673eca0041f31c650ebc988ecae3".into())
        })
    );

    let init = fixture(v, "options-1-init");
    let Reply::Form { fields, .. } = parse_reply("x", &init).expect("form") else {
        panic!("not a form")
    };
    let current = current_settings(&fields);
    assert_eq!(
        current.username.as_deref(),
        Some(""),
        "2024.3 suggests empty strings"
    );
    assert!(differences(&current, &want()).is_empty());
    let mut moved = want();
    moved.stream_source = "rtsp://127.0.0.1:18955/doorbell".into();
    assert_eq!(differences(&current, &moved), vec!["stream_source"]);
    let mut flow = Flow::new(
        FlowKind::Update {
            entry_id: "319f673eca0041f31c650ebc988ecae3".into(),
        },
        moved,
    );
    let replies = [
        init,
        fixture(v, "options-2-confirm"),
        fixture(v, "options-3-done"),
    ];
    let (sent, end) = replay(&mut flow, &replies);
    let body = sent[1].body.as_ref().expect("body");
    assert_eq!(body["stream_source"], "rtsp://127.0.0.1:18955/doorbell");
    assert_eq!(body["limit_refetch_to_url_change"], false);
    assert!(body.get("advanced").is_none());
    assert_eq!(replies[1]["step_id"], "confirm_still");
    assert_eq!(end, Ok(Next::Done { entry_id: None }));
}
