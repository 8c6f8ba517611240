"""Home Assistant validates the shipped blueprints (blueprints/automation/c300x_bridge/*.yaml).

Builds a throw-away config dir with the blueprints, one automation per blueprint (sample inputs),
and a mobile_app phone in the registries (device actions need a real device), then runs HA's own
`check_config` (schema of the blueprint, its substitution, every trigger/condition/action). A
deliberately broken copy must be refused, so the check can fail. Run with the HA venv's python
(tests/ha/run.sh does); prints `blueprints: N passed, M failed`.
"""

import json
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCE = ROOT / "blueprints" / "automation" / "c300x_bridge"
PHONE = "0123456789abcdef0123456789abcdef"

INPUTS = {
    "doorbell_notification.yaml": {
        "doorbell": "event.bticino_c300x_doorbell",
        "last_ring_image": "image.bticino_c300x_last_ring",
        "notify_device": PHONE,
        "door_lock": "lock.bticino_c300x_door",
        "answer_button": "button.bticino_c300x_answer",
        "reject_button": "button.bticino_c300x_reject",
    },
    "missed_ring_notification.yaml": {
        "doorbell": "event.bticino_c300x_doorbell",
        "last_ring_image": "image.bticino_c300x_last_ring",
        "notify_device": PHONE,
    },
}

CONFIG_ENTRIES = {
    "version": 1, "minor_version": 1, "key": "core.config_entries",
    "data": {"entries": [{
        "entry_id": "c300xphoneentry", "version": 1, "domain": "mobile_app", "title": "Phone",
        "data": {"webhook_id": "c300x-test-hook", "device_id": "phone1",
                 "app_id": "io.homeassistant.companion.android", "app_name": "Home Assistant",
                 "app_version": "1.0", "device_name": "Phone", "manufacturer": "Test",
                 "model": "Phone", "os_name": "Android", "os_version": "14",
                 "supports_encryption": False,
                 "app_data": {"push_token": "t", "push_url": "https://example.invalid/push"}},
        "options": {}, "pref_disable_new_entities": False, "pref_disable_polling": False,
        "source": "registration", "unique_id": "phone1", "disabled_by": None}]},
}

DEVICES = {
    "version": 1, "minor_version": 1, "key": "core.device_registry",
    "data": {"devices": [{
        "area_id": None, "config_entries": ["c300xphoneentry"], "configuration_url": None,
        "connections": [], "disabled_by": None, "entry_type": None, "hw_version": None,
        "id": PHONE, "identifiers": [["mobile_app", "phone1"]], "manufacturer": "Test",
        "model": "Phone", "name_by_user": None, "name": "Phone", "sw_version": "14",
        "via_device_id": None}], "deleted_devices": []},
}


def config_dir(tmp: pathlib.Path, break_one: bool) -> pathlib.Path:
    """A config dir with the blueprints (one broken on request) and an automation for each."""
    cfg = tmp / ("broken" if break_one else "good")
    target = cfg / "blueprints" / "automation" / "c300x_bridge"
    shutil.copytree(SOURCE, target)
    if break_one:
        path = target / "doorbell_notification.yaml"
        text = path.read_text()
        assert "service: lock.open" in text
        path.write_text(text.replace("service: lock.open", "servce: lock.open"))
    storage = cfg / ".storage"
    storage.mkdir()
    (storage / "core.config_entries").write_text(json.dumps(CONFIG_ENTRIES))
    (storage / "core.device_registry").write_text(json.dumps(DEVICES))
    lines = ["homeassistant:", "  name: blueprint check", "automation:"]
    for name, inputs in INPUTS.items():
        lines += [f"  - id: {name.removesuffix('.yaml')}", "    use_blueprint:",
                  f"      path: c300x_bridge/{name}", "      input:"]
        lines += [f"        {k}: {v}" for k, v in inputs.items()]
    (cfg / "configuration.yaml").write_text("\n".join(lines) + "\n")
    return cfg


def check(cfg: pathlib.Path) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "homeassistant", "--script", "check_config", "-c", str(cfg),
         "--info", "automation"],
        capture_output=True, text=True, timeout=300)
    return out.stdout + out.stderr


def main() -> int:
    results = []
    shipped = sorted(p.name for p in SOURCE.glob("*.yaml"))
    results.append(("every shipped blueprint has sample inputs", shipped == sorted(INPUTS), shipped))
    with tempfile.TemporaryDirectory() as tmp:
        good = check(config_dir(pathlib.Path(tmp), break_one=False))
        errors = [l for l in good.splitlines() if "ERROR" in l or "Invalid config" in l]
        results.append(("HA accepts the blueprints and their automations", not errors, errors))
        for name in INPUTS:
            auto_id = name.removesuffix(".yaml")
            results.append((f"automation {auto_id} is configured", f"id: {auto_id}" in good, ""))
        broken = check(config_dir(pathlib.Path(tmp), break_one=True))
        refused = "generated invalid automation" in broken
        results.append(("a broken blueprint is refused (the check can fail)", refused, ""))
    failed = 0
    for what, ok, detail in results:
        print(f"{'PASS' if ok else 'FAIL'} {what}" + ("" if ok else f": {detail}"))
        failed += not ok
    print(f"blueprints: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
