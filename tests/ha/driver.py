"""Real Home Assistant check for c300x-bridge (run by tests/ha/run.sh for each HA version).

Starts mosquitto and Home Assistant (hasetup.py: ready-made config, 2024.3.3 from a venv or
2026.2.3 in a trixie chroot), then the bridge harness (`cargo test --test ha`: simulator + the
whole bridge, configured through C300X_* variables, camera auto-setup pointed at this HA), and
checks through HA's REST and websocket APIs: every MQTT entity, a ring, an unlock
(checks_mqtt.py), the ring's picture on the image entity, the ring buttons and the event types
(checks_doorbell.py), the Generic Camera the bridge creates, its picture and HLS stream, the call's
end, restarts and a changed RTSP port (checks_camera.py). One PASS/FAIL/SKIP line per check
and a summary; exit code 0 only if none failed.
    driver.py --version 2026.2.3 --home ~/.cache/c300x-bridge/ha-2026.2.3-trixie
"""

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import aiohttp

import checks_camera
import checks_doorbell
import checks_mqtt
import common
from common import Bridge, Control, Ha, check, log, until
from hasetup import HomeAssistant

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HA_START_TIMEOUT = 240
LINGER = 5


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


async def checks(ha_sys, ports, token, control, ha_log):
    async with aiohttp.ClientSession() as s:
        ha = Ha(s, ports["ha"], token)
        bridge = Bridge(s, ports["http"])

        async def api_ok():
            status, _ = await ha.get("/api/")
            return status == 200

        t = time.monotonic()
        if not check("HA REST API answers with the token",
                     await until("HA /api/", api_ok, HA_START_TIMEOUT)):
            return
        log(f"HA {ha_sys.version} API up after {time.monotonic() - t:.1f}s")

        async def mqtt_up():
            with open(ha_log, errors="replace") as f:
                return ha_sys.mqtt_ready_marker() in f.read()

        if not check("HA connected to the test mosquitto", await until("HA MQTT", mqtt_up, 60)):
            return
        ids = await checks_mqtt.entities(ha)
        if ids:
            await checks_mqtt.ring_and_unlock(ha, control, ids)
            await checks_doorbell.picture_buttons_and_events(ha, bridge, control, ids)
        entry = await checks_camera.created(ha, bridge)
        if entry:
            await checks_camera.picture(ha)
            stopped = await checks_camera.hls(ha)
            if stopped:
                await checks_camera.call_ends(bridge, stopped, LINGER, ha_sys.modern)
            await checks_camera.restarts(ha, bridge, control, entry, free_port(), ids)


def harness_env(ports, token):
    """The bridge's options as C300X_* variables (nothing else of ours leaks in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("C300X_")}
    env.update({
        "C300X_MQTT_URL": f"mqtt://127.0.0.1:{ports['broker']}",
        "C300X_HOMEASSISTANT_URL": f"http://127.0.0.1:{ports['ha']}",
        "C300X_HOMEASSISTANT_TOKEN": token,
        "C300X_RTSP_PORT": str(ports["rtsp"]),
        "C300X_HTTP_PORT": str(ports["http"]),
        "C300X_DATA_DIR": ports["data_dir"],
        "C300X_CLIP_DIR": os.path.join(ports["data_dir"], "clips"),
        "C300X_LINGER_SECONDS": str(LINGER),
        "C300X_ADVERTISE_ADDRESS": "127.0.0.1",
    })
    return env


def main(version, home):
    tmp = tempfile.mkdtemp(prefix="c300x-ha-driver-")
    procs = []
    ha_sys = HomeAssistant(version, home)
    cfg_host = None
    try:
        ports = {k: free_port() for k in ("broker", "ha", "rtsp", "http")}
        ports["data_dir"] = os.path.join(tmp, "data")
        conf = os.path.join(tmp, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {ports['broker']} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        mosq = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        procs.append(("mosquitto", mosq))
        if not check("mosquitto listens", wait_port(ports["broker"], 10), f"port {ports['broker']}"):
            return 1
        cfg_host, cfg_seen = ha_sys.make_config_dir()
        token = ha_sys.write_config(cfg_host, ports["ha"], ports["broker"])
        ha_log = os.path.join(cfg_host, "ha.log")
        procs.append(("home assistant", ha_sys.start(cfg_seen, cfg_seen + "/ha.log")))
        log(f"Home Assistant {version} starting on 127.0.0.1:{ports['ha']} (config {cfg_host})")
        harness_log = open(os.path.join(tmp, "harness.log"), "w")
        harness = subprocess.Popen(
            ["cargo", "test", "--quiet", "--test", "ha", "--", "--ignored", "--nocapture"],
            cwd=REPO, env=harness_env(ports, token), stdout=harness_log,
            stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(("harness", harness))
        control = Control(ports["broker"])
        try:
            asyncio.run(checks(ha_sys, ports, token, control, ha_log))
        finally:
            control.publish("c300x-test/stop", "1")
            control.close()
        try:
            harness.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        failed = [r for r in common.results if r[1] is False]
        if failed:
            for path in (ha_log, harness_log.name):
                log(f"--- tail of {path}")
                with open(path, errors="replace") as f:
                    print("".join(f.readlines()[-60:]))
        return 1 if failed or not common.results else 0
    finally:
        for name, p in reversed(procs):
            if p.poll() is None:
                try:
                    if name == "mosquitto":
                        p.terminate()
                    else:
                        os.killpg(p.pid, signal.SIGTERM)
                    p.wait(timeout=30)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    p.kill()
        keep = os.environ.get("C300X_HA_KEEP")
        for d in (tmp, cfg_host):
            if d and keep:
                log(f"kept {d}")
            elif d:
                shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--version", required=True)
    ap.add_argument("--home", required=True, help="the HA venv (2024.3) or chroot root (2026.2)")
    args = ap.parse_args()
    code = main(args.version, args.home)
    passed = sum(1 for r in common.results if r[1] is True)
    failed = sum(1 for r in common.results if r[1] is False)
    skipped = sum(1 for r in common.results if r[1] is None)
    # The line scripts/test.sh sums into the closing totals.
    print(f"ha: {passed} passed, {max(failed, 1) if code != 0 else failed} failed, {skipped} skipped")
    print(f"\nreal Home Assistant {args.version} check: {'PASS' if code == 0 else 'FAIL'} "
          f"({passed}/{len(common.results)} checks, {time.monotonic() - common.T0:.0f}s)")
    sys.exit(code)
