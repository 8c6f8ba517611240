"""Shared pieces of the real-HA check: PASS/FAIL bookkeeping, polling, HA's REST and websocket
APIs, the bridge's /api/status and the MQTT control client of the harness."""

import asyncio
import json
import time

import aiohttp
import paho.mqtt.client as paho

T0 = time.monotonic()
results = []  # (name, ok, detail); ok is None for a skipped check


def log(msg):
    print(f"[ha {time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def check(name, ok, detail=""):
    results.append((name, bool(ok), detail))
    log(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")
    return ok


def skip(name, why):
    results.append((name, None, why))
    log(f"SKIP {name}: {why}")


async def until(what, fn, timeout, every=0.5):
    """Polls `fn` until it returns something truthy; None after `timeout` seconds."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = await fn()
            if last:
                return last
        except (aiohttp.ClientError, OSError, RuntimeError, ValueError, KeyError) as e:
            last = e
        await asyncio.sleep(every)
    log(f"timed out waiting for {what} (last: {last!r})")
    return None


class Ha:
    """HA's REST and websocket APIs with the test's long-lived token."""

    def __init__(self, session, port, token):
        self.s = session
        self.base = f"http://127.0.0.1:{port}"
        self.token = token
        self.headers = {"Authorization": f"Bearer {token}"}

    async def get(self, path):
        async with self.s.get(self.base + path, headers=self.headers) as r:
            return r.status, await r.json(content_type=None)

    async def post(self, path, body):
        async with self.s.post(self.base + path, json=body, headers=self.headers) as r:
            return r.status, await r.json(content_type=None)

    async def get_bytes(self, path):
        """Status, content type and body of a non-JSON resource (an image)."""
        async with self.s.get(self.base + path, headers=self.headers) as r:
            return r.status, r.headers.get("Content-Type", ""), await r.read()

    async def delete(self, path):
        async with self.s.delete(self.base + path, headers=self.headers) as r:
            return r.status

    async def states(self):
        status, body = await self.get("/api/states")
        if status != 200:
            raise RuntimeError(f"/api/states: HTTP {status}")
        return {st["entity_id"]: st for st in body}

    async def ws(self, commands):
        """Runs websocket commands; their results in order (an error result raises)."""
        out = []
        async with self.s.ws_connect(self.base + "/api/websocket") as ws:
            await ws.receive_json()  # auth_required
            await ws.send_json({"type": "auth", "access_token": self.token})
            msg = await ws.receive_json()
            if msg.get("type") != "auth_ok":
                raise RuntimeError(f"websocket auth failed: {msg}")
            for i, cmd in enumerate(commands, start=1):
                await ws.send_json({"id": i, **cmd})
                while True:
                    msg = await ws.receive_json()
                    if msg.get("id") == i and msg.get("type") == "result":
                        if not msg.get("success"):
                            raise RuntimeError(f"{cmd['type']}: {msg.get('error')}")
                        out.append(msg.get("result"))
                        break
        return out

    async def generic_entries(self):
        status, body = await self.get("/api/config/config_entries/entry?domain=generic")
        if status != 200:
            raise RuntimeError(f"entries: HTTP {status}")
        return [e for e in body if e.get("domain") == "generic"]

    async def entry_options(self, entry_id):
        """The options form's suggested values of an entry (its current settings)."""
        status, form = await self.post("/api/config/config_entries/options/flow",
                                       {"handler": entry_id})
        if status != 200:
            raise RuntimeError(f"options flow: HTTP {status} {form}")
        await self.delete(f"/api/config/config_entries/options/flow/{form['flow_id']}")
        values = {}

        def walk(fields):
            for f in fields:
                if f.get("type") == "expandable":
                    walk(f.get("schema", []))
                v = (f.get("description") or {}).get("suggested_value")
                if v is not None:
                    values[f["name"]] = v
        walk(form.get("data_schema") or [])
        return values


class Bridge:
    """The bridge's own HTTP API (the harness runs it on a port the driver chose)."""

    def __init__(self, session, port):
        self.s = session
        self.base = f"http://127.0.0.1:{port}"

    async def status(self):
        async with self.s.get(self.base + "/api/status") as r:
            return await r.json()

    async def get_bytes(self, path):
        async with self.s.get(self.base + path) as r:
            return r.status, r.headers.get("Content-Type", ""), await r.read()

    async def camera(self, panel="doorbell"):
        st = await self.status()
        p = next(p for p in st["panels"] if p["name"] == panel)
        return p["ha_camera"], p


class Control:
    """paho client: the harness's control topics and what it publishes back."""

    def __init__(self, port):
        self.bodies = []
        self.generation = 0
        self.c = paho.Client(client_id="c300x-ha-driver")
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.subscribe("c300x-test/messages", qos=1)
        self.c.subscribe("c300x-test/generation", qos=1)
        self.c.loop_start()

    def _on_message(self, _c, _u, msg):
        try:
            if msg.topic.endswith("/messages"):
                self.bodies = json.loads(msg.payload or b"[]")
            else:
                self.generation = int(msg.payload or b"0")
        except ValueError:
            pass

    def publish(self, topic, payload):
        self.c.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()
