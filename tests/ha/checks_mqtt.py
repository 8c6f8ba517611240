"""The MQTT side as Home Assistant sees it: the device and every discovered entity, a ring
changing the doorbell event, lock.unlock reaching the simulator as both OpenWebNet frames.
The doorbell's picture, buttons and other event types: checks_doorbell.py."""

import asyncio
import json
import time

from common import check, log, until

NODE = "c300x_1234567"  # the simulator's domain is 1234567.bs.iotleg.com
# unique-id suffix -> (domain, device_class or None)
EXPECTED = {
    "doorbell_doorbell": ("event", "doorbell"),
    "lock_door": ("lock", None),
    "staircase_light": ("button", None),
    "restart_call": ("button", "restart"),
    "answer_doorbell": ("button", None),
    "hang_up_doorbell": ("button", None),
    "reject_doorbell": ("button", None),
    "streaming_doorbell": ("switch", None),
    "voicemail": ("switch", None),
    "call_doorbell": ("binary_sensor", "running"),
    "sip_registered": ("binary_sensor", "connectivity"),
    "ringing_doorbell": ("binary_sensor", None),
    "last_ring_doorbell": ("image", None),
    "indoor_ringer": ("switch", None),
    "viewers_doorbell": ("sensor", None),
    "rtsp_url_doorbell": ("sensor", None),
    "snapshot_url_doorbell": ("sensor", None),
    "camera_setup_doorbell": ("sensor", None),
    "last_ring": ("sensor", "timestamp"),
}


async def entities(ha):
    """Device, entities, availability; the entity ids by unique-id suffix (None on failure)."""
    async def registry():
        devs, ents = await ha.ws([
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
        return None
    dev, ents = reg
    check("device name, manufacturer, model",
          (dev.get("name"), dev.get("manufacturer"), dev.get("model"))
          == ("BTicino C300X", "BTicino", "Classe 300X"),
          f"{dev.get('name')!r} {dev.get('manufacturer')!r} {dev.get('model')!r}")
    by_uid = {e["unique_id"]: e for e in ents}
    ids = {}
    for suffix, (domain, _) in EXPECTED.items():
        e = by_uid.get(f"{NODE}_{suffix}")
        ids[suffix] = e["entity_id"] if e else None
        check(f"entity {suffix} is a {domain}", e is not None and e["entity_id"].startswith(domain + "."),
              e["entity_id"] if e else "missing")
    check("no unexpected entities on the device", len(ents) == len(EXPECTED), f"{len(ents)} entities")

    async def all_available():
        st = await ha.states()
        missing = [e for e in ids.values()
                   if e is None or st.get(e, {}).get("state") in (None, "unavailable")]
        return st if not missing else None

    st = await until("entities available", all_available, 30)
    if not check("every entity is available (bridge online)", st):
        return None
    for suffix, (_, device_class) in EXPECTED.items():
        if device_class:
            got = st[ids[suffix]]["attributes"].get("device_class")
            check(f"{suffix} has device_class {device_class}", got == device_class, str(got))
    lock = ids["lock_door"]
    check("lock state is locked", st[lock]["state"] == "locked", st[lock]["state"])
    check("SIP registered is on", st[ids["sip_registered"]]["state"] == "on")
    check("RTSP URL sensor", st[ids["rtsp_url_doorbell"]]["state"].startswith("rtsp://"),
          st[ids["rtsp_url_doorbell"]]["state"])
    check("event lists ring/answered/missed/ended",
          st[ids["doorbell_doorbell"]]["attributes"].get("event_types")
          == ["ring", "answered", "missed", "ended"])
    return ids


async def ring_and_unlock(ha, control, ids):
    # HA subscribes to state topics ~1 s after discovery (home-assistant.md §5): settle first.
    await asyncio.sleep(2)
    event = ids["doorbell_doorbell"]
    before = (await ha.states())[event]["state"]
    t = time.monotonic()
    control.publish("c300x-test/ring", "20")

    async def rang():
        e = (await ha.states())[event]
        return e if e["state"] != before else None

    e = await until("event entity to change", rang, 15, every=0.05)
    check("a ring changes the doorbell event entity", e,
          f"{before} -> {e['state'] if e else '?'} in {time.monotonic() - t:.2f}s "
          "(ring → event, seen through HA's REST API)")
    if e:
        a = e["attributes"]
        check("event attributes event_type=ring, panel, devaddr",
              (a.get("event_type"), a.get("panel"), a.get("devaddr")) == ("ring", "doorbell", 20),
              json.dumps({k: a.get(k) for k in ("event_type", "panel", "devaddr", "time")}))

    async def ringing_on():
        return (await ha.states())[ids["ringing_doorbell"]]["state"] == "on"

    check("ringing binary sensor turns on", await until("ringing", ringing_on, 10, every=0.2))
    ids["_ring_event"] = e

    lock = ids["lock_door"]
    t = time.monotonic()
    status, _ = await ha.post("/api/services/lock/unlock", {"entity_id": lock})
    check("lock.unlock service call accepted", status == 200, f"HTTP {status}")

    async def frames():
        return {"*8*19*20##", "*8*20*20##"} <= set(control.bodies)

    check("lock.unlock made the simulator record *8*19*20## and *8*20*20##",
          await until("unlock frames", frames, 15, every=0.2),
          f"{control.bodies} after {time.monotonic() - t:.2f}s")

    async def relocked():
        return (await ha.states())[lock]["state"] == "locked"

    check("lock returns to locked after the pulse", await until("locked", relocked, 15))
    log("MQTT checks done")
