"""The camera as Home Assistant sees it after the bridge set it up by itself: one Generic Camera
entry named after the panel (`camera.doorbell`), a JPEG entity_picture, an HLS stream with
H.264 + AAC, the call ending ≤ linger + 35 s after HA stops reading, no second entry after a
restart, an updated entry after an RTSP port change, and the manual fallback when HA refuses."""

import json
import os
import subprocess
import tempfile
import time
from urllib.parse import urljoin

from common import check, log, skip, until

ENTITY = "camera.doorbell"


async def wait_camera(bridge, what, states=("ready", "manual"), timeout=240):
    async def done():
        cam, _ = await bridge.camera()
        return cam if cam and cam.get("state") in states else None
    t = time.monotonic()
    cam = await until(what, done, timeout, every=0.5)
    log(f"{what}: {json.dumps(cam)} after {time.monotonic() - t:.1f}s")
    return cam


async def one_entry(ha, what):
    entries = await ha.generic_entries()
    check(f"{what}: exactly one Generic Camera entry", len(entries) == 1,
          ", ".join(f"{e['title']} ({e['entry_id']})" for e in entries))
    return entries[0] if entries else None


async def created(ha, bridge):
    cam = await wait_camera(bridge, "camera setup")
    ok = cam and cam["state"] == "ready" and cam.get("action") == "created"
    if not check("the bridge created the Generic Camera by itself", ok, json.dumps(cam)):
        return None
    check("its entity id is camera.doorbell", cam.get("entity_id") == ENTITY, cam.get("entity_id"))
    entry = await one_entry(ha, "after set-up")
    if not entry:
        return None
    check("the entry is titled after the panel", entry["title"] == "Doorbell", entry["title"])
    check("the bridge reports that entry", cam.get("entry_id") == entry["entry_id"])
    (registry,) = await ha.ws([{"type": "config/entity_registry/list"}])
    mine = [e["entity_id"] for e in registry if e.get("config_entry_id") == entry["entry_id"]]
    check("camera.doorbell is the entry's entity", mine == [ENTITY], str(mine))
    options = await ha.entry_options(entry["entry_id"])
    check("stream source is the panel's RTSP URL over TCP",
          options.get("stream_source", "").endswith("/doorbell")
          and options.get("rtsp_transport") == "tcp", json.dumps(options))
    check("still image is the panel's snapshot URL",
          options.get("still_image_url", "").endswith("/api/doorbell/snapshot.jpg"))
    return entry


async def picture(ha):
    async def state():
        return (await ha.states()).get(ENTITY)
    st = await until("camera.doorbell state", state, 30)
    if not check("camera.doorbell has a state", st and st["state"] != "unavailable",
                 st["state"] if st else "missing"):
        return
    pic = st["attributes"].get("entity_picture", "")
    async with ha.s.get(ha.base + pic) as r:
        body = await r.read()
        check("entity_picture is a JPEG", r.status == 200 and body[:2] == b"\xff\xd8"
              and r.headers.get("Content-Type", "").startswith("image/jpeg"),
              f"HTTP {r.status} {r.headers.get('Content-Type')} {len(body)} bytes")


async def fetch(ha, url):
    async with ha.s.get(url) as r:
        if r.status != 200:
            raise RuntimeError(f"{url}: HTTP {r.status}")
        return await r.read()


def probe(data):
    with tempfile.NamedTemporaryFile(suffix=".mp4", delete=False) as f:
        f.write(data)
        path = f.name
    try:
        out = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                              "stream=codec_type,codec_name", "-of", "json", path],
                             capture_output=True, text=True, timeout=30)
        return sorted(s.get("codec_name") for s in json.loads(out.stdout or "{}").get("streams", []))
    finally:
        os.unlink(path)


async def hls(ha):
    """Reads HA's HLS stream once (master, media playlist, init, a segment); the time of the
    last request, or None."""
    t = time.monotonic()
    try:
        (res,) = await ha.ws([{"type": "camera/stream", "entity_id": ENTITY, "format": "hls"}])
    except RuntimeError as e:
        check("camera/stream gives an HLS URL", False, str(e))
        return None
    master_url = urljoin(ha.base + "/", res["url"])
    master = (await fetch(ha, master_url)).decode(errors="replace")
    log(f"master playlist after {time.monotonic() - t:.1f}s")
    codecs = next((line for line in master.splitlines() if "CODECS" in line), "")
    check("camera/stream: HLS master playlist announces H.264 and AAC",
          "avc1" in codecs and "mp4a" in codecs, codecs)
    media = next((line for line in master.splitlines() if line and not line.startswith("#")), None)
    if not media:
        check("master playlist names a media playlist", False, master[:200])
        return time.monotonic()
    media_url = urljoin(master_url, media)

    async def segment_listed():
        text = (await fetch(ha, media_url)).decode(errors="replace")
        return text if "#EXTINF" in text else None

    playlist = await until("an HLS segment", segment_listed, 60, every=1)
    if not check("the media playlist lists a segment", playlist):
        return time.monotonic()
    lines = playlist.splitlines()
    init = next(line.split('URI="')[1].split('"')[0] for line in lines if line.startswith("#EXT-X-MAP"))
    seg = next(lines[i + 1] for i, line in enumerate(lines)
               if line.startswith("#EXTINF") and i + 1 < len(lines))
    data = await fetch(ha, urljoin(media_url, init)) + await fetch(ha, urljoin(media_url, seg))
    last = time.monotonic()
    codecs = probe(data)
    check("HA's HLS segment has H.264 video and AAC audio (ffprobe)", codecs == ["aac", "h264"],
          f"{codecs} after {last - t:.1f}s")
    return last


async def call_ends(bridge, stopped_reading, linger, modern):
    if not modern:
        skip("the call ends ≤ linger + 35 s after HA stops reading",
             "HA 2024.3 keeps an idle stream 300 s (OUTPUT_IDLE_TIMEOUT)")
        return

    async def ended():
        _, panel = await bridge.camera()
        return panel if panel.get("call_id") is None else None

    p = await until("the call to end", ended, linger + 35 + 60, every=0.5)
    took = time.monotonic() - stopped_reading
    check(f"the call ends ≤ linger + 35 s = {linger + 35} s after HA stops reading",
          p is not None and took <= linger + 35, f"{took:.1f}s (state {p and p.get('state')})")


async def restart(bridge, control, overrides, what):
    gen = control.generation
    control.publish("c300x-test/restart", json.dumps(overrides))

    async def next_gen():
        return control.generation > gen
    await until("the bridge to restart", next_gen, 60, every=0.2)
    return await wait_camera(bridge, what, timeout=180)


async def restarts(ha, bridge, control, entry, new_rtsp_port, ids):
    cam = await restart(bridge, control, {}, "camera after a restart")
    check("after a restart the camera is unchanged", cam and cam.get("action") == "unchanged"
          and cam.get("entry_id") == entry["entry_id"], json.dumps(cam))
    await one_entry(ha, "after a restart")

    moved = str(new_rtsp_port)
    cam = await restart(bridge, control, {"rtsp_port": moved}, "camera after an RTSP port change")
    check("a changed RTSP port updates the entry", cam and cam.get("action") == "updated"
          and cam.get("entry_id") == entry["entry_id"], json.dumps(cam))
    after = await one_entry(ha, "after the port change")
    if after:
        options = await ha.entry_options(after["entry_id"])
        check("the entry's stream source has the new port",
              f":{moved}/doorbell" in options.get("stream_source", ""), options.get("stream_source"))
    (registry,) = await ha.ws([{"type": "config/entity_registry/list"}])
    mine = [e["entity_id"] for e in registry if e.get("config_entry_id") == entry["entry_id"]]
    check("the entity is still camera.doorbell", mine == [ENTITY], str(mine))

    cam = await restart(bridge, control, {"homeassistant_token": "not-a-token"},
                        "camera with a wrong token")
    check("a refused token is reported, not silent (status page: manual + reason)",
          cam and cam["state"] == "manual" and "refused the token" in cam.get("reason", ""),
          cam and cam.get("reason"))
    check("the status page offers the URLs and the my.home-assistant.io link",
          cam and cam.get("setup_link", "").startswith("https://my.home-assistant.io/redirect/")
          and cam.get("stream_source", "").startswith("rtsp://"))
    sensor = ids and ids.get("camera_setup_doorbell")

    async def sensor_manual():
        st = (await ha.states()).get(sensor)
        return st if st and st["state"] == "manual" else None
    st = await until("the camera-setup sensor", sensor_manual, 20) if sensor else None
    check("the diagnostic MQTT sensor says manual, with the link and both URLs",
          st and st["attributes"].get("setup_link", "").startswith("https://my.home-assistant.io")
          and st["attributes"].get("still_image_url", "").endswith("/snapshot.jpg"),
          json.dumps(st["attributes"]) if st else "missing")
