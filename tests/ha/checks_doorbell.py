"""The doorbell moment as Home Assistant sees it (issue 16): the "Last ring" image entity shows
the ring's JPEG (the same bytes the bridge serves), the Answer / Hang up / Reject buttons drive
the ring and the doorbell event goes through answered, ended and missed; the indoor ringer
switch follows the unit's answer."""

import time

from common import check, log, until


def jpeg_size(data):
    """(width, height) from a baseline JPEG's SOF marker, or None."""
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xC2:
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + length
    return None


async def event_type(ha, entity, want, since_state, timeout=15):
    """Waits until the event entity fires `want` (a new state after `since_state`)."""
    async def fired():
        e = (await ha.states())[entity]
        a = e["attributes"]
        return e if e["state"] != since_state and a.get("event_type") == want else None
    return await until(f"event {want}", fired, timeout, every=0.1)


async def press(ha, entity):
    status, _ = await ha.post("/api/services/button/press", {"entity_id": entity})
    return status == 200


async def picture_buttons_and_events(ha, bridge, control, ids):
    ring = ids.get("_ring_event")
    image, event = ids["last_ring_doorbell"], ids["doorbell_doorbell"]
    ringing = ids["ringing_doorbell"]
    if not ring:
        check("the doorbell checks need the ring of the MQTT checks", False)
        return
    ring_id = ring["attributes"].get("ring_id")
    check("the ring event carries ring_id, time and snapshot_url",
          bool(ring_id) and ring["attributes"].get("snapshot_url", "").endswith(f"/rings/{ring_id}.jpg"),
          str({k: ring["attributes"].get(k) for k in ("ring_id", "time", "snapshot_url")}))

    async def shown():
        st = (await ha.states())[image]
        if st["state"] in ("unknown", "unavailable"):
            return None
        status, kind, body = await ha.get_bytes(f"/api/image_proxy/{image}")
        return (kind, body) if status == 200 else None

    got = await until("the image entity's picture", shown, 15, every=0.2)
    check("the Last ring image entity has a picture", got is not None)
    if got:
        kind, body = got
        check("it is a 400x288 JPEG", kind.startswith("image/jpeg") and jpeg_size(body) == (400, 288),
              f"{kind} {jpeg_size(body)} {len(body)} bytes")
        status, _, served = await bridge.get_bytes(f"/api/doorbell/rings/{ring_id}.jpg")
        check("the same picture as /api/doorbell/rings/<ring_id>.jpg", status == 200 and served == body,
              f"HTTP {status}, {len(served)} vs {len(body)} bytes")

    state = (await ha.states())[event]["state"]
    check("button Answer accepted", await press(ha, ids["answer_doorbell"]))
    e = await event_type(ha, event, "answered", state)
    check("answering makes the event answered (here)", e and e["attributes"].get("outcome") == "answered_here",
          str(e and e["attributes"]))

    async def ringing_off():
        return (await ha.states())[ringing]["state"] == "off"

    check("ringing turns off once answered", await until("ringing off", ringing_off, 10, every=0.2))
    state = e["state"] if e else state
    check("button Hang up accepted", await press(ha, ids["hang_up_doorbell"]))
    e = await event_type(ha, event, "ended", state)
    check("hanging up makes the event ended", e is not None)

    state = (await ha.states())[event]["state"]
    control.publish("c300x-test/ring", "20")
    e = await event_type(ha, event, "ring", state)
    check("a second ring", e is not None)
    state = e["state"] if e else state
    check("button Reject accepted", await press(ha, ids["reject_doorbell"]))
    e = await event_type(ha, event, "missed", state)
    check("rejecting makes the event missed (rejected)", e and e["attributes"].get("outcome") == "rejected",
          str(e and e["attributes"]))
    check("ringing is off after the reject", await until("ringing off", ringing_off, 10, every=0.2))

    ringer = ids["indoor_ringer"]

    async def ringer_is(want):
        return (await ha.states())[ringer]["state"] == want

    check("the indoor ringer shows the unit's answer (on)", await until("ringer on", lambda: ringer_is("on"), 15))
    t = time.monotonic()
    status, _ = await ha.post("/api/services/switch/turn_off", {"entity_id": ringer})
    check("switch.turn_off on the indoor ringer accepted", status == 200, f"HTTP {status}")

    async def muted():
        return "*#8**#33*0##" in control.bodies and await ringer_is("off")

    check("muting sends *#8**#33*0## and the state follows the unit (off)",
          await until("ringer off", muted, 15, every=0.2), f"{time.monotonic() - t:.1f}s")
    log("doorbell checks done")
