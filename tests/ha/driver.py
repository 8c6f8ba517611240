"""Real Home Assistant check for c300x-bridge (run by tests/ha/run.sh with the HA venv's Python).

Starts mosquitto and Home Assistant 2024.3.3 (config + .storage written here: onboarding done,
an owner with a long-lived token signed as HA signs its JWTs, the MQTT config entry), then the
bridge harness (`cargo test --test ha`, simulator + bridge), and asserts through HA's REST and
websocket APIs: device and entities, a ring changing the event entity, lock.unlock reaching the
simulator. Prints one PASS/FAIL line per check and a summary; exit code 0 only if all pass.
"""

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone

import aiohttp
import jwt
import paho.mqtt.client as paho

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE = "c300x_1234567"  # the simulator's domain is 1234567.bs.iotleg.com
HA_START_TIMEOUT = 240
# unique-id suffix -> (domain, device_class or None)
EXPECTED = {
    "doorbell_doorbell": ("event", "doorbell"),
    "lock_door": ("lock", None),
    "staircase_light": ("button", None),
    "answer": ("button", None),
    "hang_up": ("button", None),
    "restart_call": ("button", "restart"),
    "streaming_doorbell": ("switch", None),
    "voicemail": ("switch", None),
    "call_doorbell": ("binary_sensor", "running"),
    "sip_registered": ("binary_sensor", "connectivity"),
    "ringing": ("binary_sensor", None),
    "viewers_doorbell": ("sensor", None),
    "rtsp_url_doorbell": ("sensor", None),
    "snapshot_url_doorbell": ("sensor", None),
    "last_ring": ("sensor", "timestamp"),
}

results = []
T0 = time.monotonic()


def log(msg):
    print(f"[ha {time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def check(name, ok, detail=""):
    results.append((name, bool(ok), detail))
    log(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")
    return ok


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


def write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f)


def write_ha_config(cfg, ha_port, broker_port):
    """configuration.yaml and .storage; returns the long-lived access token."""
    with open(os.path.join(cfg, "configuration.yaml"), "w") as f:
        f.write(
            "homeassistant:\n  name: c300x-test\n  time_zone: UTC\n  unit_system: metric\n"
            "  latitude: 0\n  longitude: 0\n  elevation: 0\n"
            f"http:\n  server_host: 127.0.0.1\n  server_port: {ha_port}\n"
            "api:\nconfig:\nwebsocket_api:\n"
            "logger:\n  default: warning\n  logs:\n    homeassistant.components.mqtt: info\n"
        )
    storage = os.path.join(cfg, ".storage")
    os.makedirs(storage)
    write_json(os.path.join(storage, "onboarding"), {
        "version": 4, "minor_version": 1, "key": "onboarding",
        "data": {"done": ["user", "core_config", "analytics", "integration"]},
    })
    user_id, token_id, jwt_key = uuid.uuid4().hex, uuid.uuid4().hex, secrets.token_hex(64)
    expiration = timedelta(days=3650)
    now = datetime.now(timezone.utc)
    write_json(os.path.join(storage, "auth"), {
        "version": 1, "minor_version": 1, "key": "auth",
        "data": {
            "users": [{
                "id": user_id, "group_ids": ["system-admin"], "is_owner": True,
                "is_active": True, "name": "Owner", "system_generated": False,
                "local_only": False,
            }],
            "groups": [
                {"id": "system-admin", "name": "Administrators"},
                {"id": "system-users", "name": "Users"},
                {"id": "system-read-only", "name": "Read Only"},
            ],
            "credentials": [],
            "refresh_tokens": [{
                "id": token_id, "user_id": user_id, "client_id": None,
                "client_name": "c300x-bridge test", "client_icon": None,
                "token_type": "long_lived_access_token", "created_at": now.isoformat(),
                "access_token_expiration": expiration.total_seconds(),
                "token": secrets.token_hex(64), "jwt_key": jwt_key,
                "last_used_at": None, "last_used_ip": None, "expire_at": None,
                "credential_id": None, "version": "2024.3.3",
            }],
        },
    })
    write_json(os.path.join(storage, "core.config_entries"), {
        "version": 1, "minor_version": 1, "key": "core.config_entries",
        "data": {"entries": [{
            "entry_id": uuid.uuid4().hex, "version": 1, "minor_version": 1,
            "domain": "mqtt", "title": "127.0.0.1",
            "data": {"broker": "127.0.0.1", "port": broker_port, "discovery": True,
                     "discovery_prefix": "homeassistant"},
            "options": {}, "pref_disable_new_entities": False, "pref_disable_polling": False,
            "source": "user", "unique_id": None, "disabled_by": None,
        }]},
    })
    # As HA's auth.async_create_access_token: HS256 over {iss, iat, exp} with the token's jwt_key.
    iat = int(time.time())
    return jwt.encode({"iss": token_id, "iat": iat, "exp": iat + int(expiration.total_seconds())},
                      jwt_key, algorithm="HS256")


class Mqtt:
    """paho client: publishes control messages, keeps the harness's message list."""

    def __init__(self, port):
        self.bodies = []
        self.c = paho.Client(client_id="c300x-ha-driver")
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.subscribe("c300x-test/messages", qos=1)
        self.c.loop_start()

    def _on_message(self, _c, _u, msg):
        try:
            self.bodies = json.loads(msg.payload or b"[]")
        except ValueError:
            pass

    def publish(self, topic, payload):
        self.c.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


async def ws_call(session, url, token, commands):
    """Runs websocket commands; returns their results in order."""
    out = []
    async with session.ws_connect(url) as ws:
        await ws.receive_json()  # auth_required
        await ws.send_json({"type": "auth", "access_token": token})
        msg = await ws.receive_json()
        if msg.get("type") != "auth_ok":
            raise RuntimeError(f"websocket auth failed: {msg}")
        for i, cmd in enumerate(commands, start=1):
            await ws.send_json({"id": i, **cmd})
            while True:
                msg = await ws.receive_json()
                if msg.get("id") == i and msg.get("type") == "result":
                    out.append(msg.get("result"))
                    break
    return out


async def until(what, fn, timeout, every=0.5):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = await fn()
            if last:
                return last
        except (aiohttp.ClientError, OSError, RuntimeError) as e:
            last = e
        await asyncio.sleep(every)
    log(f"timed out waiting for {what} (last: {last!r})")
    return None


async def checks(ha_port, token, mqtt, ha_log):
    base = f"http://127.0.0.1:{ha_port}"
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as s:
        async def api_ok():
            async with s.get(f"{base}/api/") as r:
                return r.status == 200

        t = time.monotonic()
        if not check("HA REST API answers with the token", await until("HA /api/", api_ok, HA_START_TIMEOUT)):
            return
        log(f"HA API up after {time.monotonic() - t:.1f}s")

        def mqtt_connected():
            with open(ha_log, errors="replace") as f:
                return "Connected to MQTT server" in f.read()

        async def mqtt_up():
            return mqtt_connected()

        if not check("HA connected to the test mosquitto", await until("HA MQTT", mqtt_up, 60)):
            return

        async def registry():
            devs, ents = await ws_call(s, f"{base}/api/websocket", token, [
                {"type": "config/device_registry/list"},
                {"type": "config/entity_registry/list"},
            ])
            dev = next((d for d in devs if ["mqtt", NODE] in d.get("identifiers", [])), None)
            if dev is None:
                return None
            mine = [e for e in ents if e.get("device_id") == dev["id"]]
            if len(mine) < len(EXPECTED):
                return None
            return dev, mine

        reg = await until("device and entities in the registry", registry, 60)
        if not check("device BTicino C300X is in the device registry", reg):
            return
        dev, ents = reg
        check("device name, manufacturer, model",
              (dev.get("name"), dev.get("manufacturer"), dev.get("model"))
              == ("BTicino C300X", "BTicino", "Classe 300X"),
              f"{dev.get('name')!r} {dev.get('manufacturer')!r} {dev.get('model')!r}")
        by_uid = {e["unique_id"]: e for e in ents}
        entity_ids = {}
        for suffix, (domain, _) in EXPECTED.items():
            e = by_uid.get(f"{NODE}_{suffix}")
            ok = e is not None and e["entity_id"].startswith(domain + ".")
            entity_ids[suffix] = e["entity_id"] if e else None
            check(f"entity {suffix} is a {domain}", ok, e["entity_id"] if e else "missing")
        check("no unexpected entities on the device", len(ents) == len(EXPECTED),
              f"{len(ents)} entities")

        async def states():
            async with s.get(f"{base}/api/states") as r:
                return {st["entity_id"]: st for st in await r.json()}

        async def all_available():
            st = await states()
            missing = [e for e in entity_ids.values()
                       if e is None or st.get(e, {}).get("state") in (None, "unavailable")]
            return st if not missing else None

        st = await until("entities available", all_available, 30)
        if not check("every entity is available (bridge online)", st):
            return
        for suffix, (_, device_class) in EXPECTED.items():
            if device_class:
                got = st[entity_ids[suffix]]["attributes"].get("device_class")
                check(f"{suffix} has device_class {device_class}", got == device_class, str(got))
        lock = entity_ids["lock_door"]
        check("lock state is locked", st[lock]["state"] == "locked", st[lock]["state"])
        check("SIP registered is on", st[entity_ids["sip_registered"]]["state"] == "on")
        check("RTSP URL sensor", st[entity_ids["rtsp_url_doorbell"]]["state"].startswith("rtsp://"),
              st[entity_ids["rtsp_url_doorbell"]]["state"])
        check("event lists ring/answered/missed/ended",
              st[entity_ids["doorbell_doorbell"]]["attributes"].get("event_types")
              == ["ring", "answered", "missed", "ended"])

        # HA subscribes to state topics ~1 s after discovery (home-assistant.md §5): settle first.
        await asyncio.sleep(2)
        event = entity_ids["doorbell_doorbell"]
        before = st[event]["state"]
        t = time.monotonic()
        mqtt.publish("c300x-test/ring", "20")

        async def rang():
            e = (await states())[event]
            return e if e["state"] != before else None

        e = await until("event entity to change", rang, 15, every=0.2)
        check("a ring changes the doorbell event entity", e,
              f"{before} -> {e['state'] if e else '?'} in {time.monotonic() - t:.2f}s")
        if e:
            a = e["attributes"]
            check("event attributes event_type=ring, panel, devaddr",
                  (a.get("event_type"), a.get("panel"), a.get("devaddr")) == ("ring", "doorbell", 20),
                  json.dumps({k: a.get(k) for k in ("event_type", "panel", "devaddr", "time")}))

        async def ringing_on():
            return (await states())[entity_ids["ringing"]]["state"] == "on"

        check("ringing binary sensor turns on", await until("ringing", ringing_on, 10, every=0.2))

        t = time.monotonic()
        async with s.post(f"{base}/api/services/lock/unlock", json={"entity_id": lock}) as r:
            check("lock.unlock service call accepted", r.status == 200, f"HTTP {r.status}")

        async def frames():
            return {"*8*19*20##", "*8*20*20##"} <= set(mqtt.bodies)

        check("lock.unlock made the simulator record *8*19*20## and *8*20*20##",
              await until("unlock frames", frames, 15, every=0.2),
              f"{mqtt.bodies} after {time.monotonic() - t:.2f}s")

        async def relocked():
            return (await states())[lock]["state"] == "locked"

        check("lock returns to locked after the pulse", await until("locked", relocked, 15))


def main():
    tmp = tempfile.mkdtemp(prefix="c300x-ha-")
    procs = []
    venv_bin = os.path.dirname(sys.executable)
    try:
        broker_port, ha_port = free_port(), free_port()
        conf = os.path.join(tmp, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {broker_port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        mosq = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        procs.append(("mosquitto", mosq))
        if not check("mosquitto listens", wait_port(broker_port, 10), f"port {broker_port}"):
            return 1
        cfg = os.path.join(tmp, "ha")
        os.makedirs(cfg)
        token = write_ha_config(cfg, ha_port, broker_port)
        ha_log = os.path.join(tmp, "ha.log")
        ha = subprocess.Popen([os.path.join(venv_bin, "hass"), "-c", cfg, "--skip-pip",
                               "--log-file", ha_log],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
        procs.append(("home assistant", ha))
        log(f"Home Assistant starting on 127.0.0.1:{ha_port} (config {cfg})")
        harness_log = open(os.path.join(tmp, "harness.log"), "w")
        env = dict(os.environ, C300X_HA_BROKER=f"127.0.0.1:{broker_port}")
        harness = subprocess.Popen(
            ["cargo", "test", "--quiet", "--test", "ha", "--", "--ignored", "--nocapture"],
            cwd=REPO, env=env, stdout=harness_log, stderr=subprocess.STDOUT,
            start_new_session=True)
        procs.append(("harness", harness))
        mqtt = Mqtt(broker_port)
        try:
            asyncio.run(checks(ha_port, token, mqtt, ha_log))
        finally:
            mqtt.publish("c300x-test/stop", "1")
            mqtt.close()
        try:
            harness.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        failed = [r for r in results if not r[1]]
        if failed:
            for path in (ha_log, harness_log.name):
                log(f"--- tail of {path}")
                with open(path, errors="replace") as f:
                    print("".join(f.readlines()[-40:]))
        return 1 if failed or not results else 0
    finally:
        for name, p in reversed(procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM) if name != "mosquitto" else p.terminate()
                    p.wait(timeout=20)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    p.kill()
        if os.environ.get("C300X_HA_KEEP"):
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    code = main()
    passed = sum(1 for r in results if r[1])
    # The line scripts/test.sh sums into the closing totals.
    failed = len(results) - passed
    print(f"ha: {passed} passed, {max(failed, 1) if code != 0 else failed} failed")
    print(f"\nreal Home Assistant check: {'PASS' if code == 0 else 'FAIL'} "
          f"({passed}/{len(results)} checks, {time.monotonic() - T0:.0f}s)")
    sys.exit(code)
