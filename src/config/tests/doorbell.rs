//! The doorbell options: defaults (the add-on's, also outside it), typed values from a file and
//! from the environment, and one-line errors for impossible values.

use super::*;

#[test]
fn doorbell_defaults_preview_on_history_on_no_clip() {
    let c = Config::default();
    assert!(c.ring_preview && !c.ring_snapshot_call && c.ring_history);
    assert_eq!(c.ring_reject_code, 486);
    assert_eq!((c.ring_history_keep, c.ring_history_days), (100, 30));
    assert_eq!(c.ring_clip, Duration::ZERO);
    assert_eq!(c.clip_dir, PathBuf::from("/media/c300x"));
    assert_eq!(
        c.ring_history_max_age(),
        Some(Duration::from_secs(30 * 86_400))
    );
}

#[test]
fn doorbell_options_from_a_file_and_the_environment() {
    let (_dir, _path, c) = from_yaml(
        "ring_preview: false\nring_snapshot_call: true\nring_reject_code: \"603\"\n\
         ring_history_keep: 5\nring_history_days: 0\nring_clip_seconds: 20\nclip_dir: /tmp/rings\n",
    );
    let c = c.expect("valid");
    assert!(!c.ring_preview && c.ring_snapshot_call);
    assert_eq!(c.ring_reject_code, 603);
    assert_eq!(c.ring_history_keep, 5);
    assert_eq!(c.ring_history_max_age(), None, "0 days = no age limit");
    assert_eq!(c.ring_clip, Duration::from_secs(20));
    assert_eq!(c.clip_dir, PathBuf::from("/tmp/rings"));
    let c = from_env(&[
        ("C300X_RING_HISTORY", "off"),
        ("C300X_RING_REJECT_CODE", "480"),
    ])
    .expect("valid");
    assert!(!c.ring_history);
    assert_eq!(c.ring_reject_code, 480);
    // Printed back under the option keys, and loadable again.
    let yaml = c.to_masked_yaml();
    assert!(yaml.contains("ring_reject_code: 480") && yaml.contains("ring_clip_seconds: 0"));
    let (_dir, _path, again) = from_yaml(&yaml);
    assert_eq!(again.expect("loads"), c);
}

#[test]
fn doorbell_option_errors_name_the_key_and_what_is_allowed() {
    env_fails(
        &[("C300X_RING_REJECT_CODE", "404")],
        "ring_reject_code = 404 (from env C300X_RING_REJECT_CODE): must be one of \
         [403, 480, 486, 603]: the SIP status a rejected ring gets",
    );
    env_fails(
        &[("C300X_RING_CLIP_SECONDS", "301")],
        "ring_clip_seconds = 301 (from env C300X_RING_CLIP_SECONDS): must be a whole number \
         of seconds from 0 to 300",
    );
    env_fails(
        &[("C300X_RING_HISTORY_KEEP", "0")],
        "ring_history_keep = 0 (from env C300X_RING_HISTORY_KEEP): must be a number of rings \
         from 1 to 10000",
    );
    yaml_fails(
        "clip_dir: \"  \"\n",
        "clip_dir = \"  \"",
        "must be a directory path such as /media/c300x",
    );
    yaml_fails(
        "ring_preview: maybe\n",
        "ring_preview = \"maybe\"",
        "must be true or false",
    );
}
