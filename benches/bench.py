#!/usr/bin/python3
"""The side-by-side benchmark behind scripts/bench.sh (stdlib only; the bridge and the simulator
are separate processes, so the bridge's CPU and memory are its own).

Load: the simulator, the bridge (`run`, linger 1 h) and N RTSP readers over TCP interleaved
(N = 0 is a call kept up by the linger with no reader); CPU (user+sys from /proc/PID/stat) and max
RSS (VmRSS sampled every 0.25 s) of the server process only; the same readers against
benches/gst_rtsp_server.py relaying a clip of the same size and rate. Repeats are interleaved in
time (every N of both servers once per repeat). Join: a new reader on a live stream, PLAY sent →
first IDR. Cold start (a second bridge, linger 1 s): DESCRIBE → first IDR, minus the simulator's
answer delay; idle CPU/RSS after those calls; HLS cold (the first index.m3u8 on an idle hub, with an
RTSP reader started with it as the witness of the call's first keyframe): first playlist listing a
segment, seconds after that keyframe, the segment's duration, target and whether it starts with an
IDR; one MJPEG viewer's cost.
Ring → MQTT (a third pair, mosquitto): the simulator's ring line → the doorbell `event` message.
"""
import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

TICK = os.sysconf("SC_CLK_TCK")
ANSWER_DELAY_MS = 300


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def status_fields(path, keys):
    """The numeric fields `keys` of a /proc `status` file (kB for the memory ones)."""
    out = {}
    with open(path) as f:
        for line in f:
            key = line.split(":", 1)[0]
            if key in keys:
                out[key] = int(line.split()[1])
    return out


def switches(pid):
    """Context switches of every thread of `pid` so far: one per wake-up of a sleeping thread,
    a count that the machine's other load does not change (unlike CPU time)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = status_fields(f"/proc/{pid}/task/{tid}/status",
                                   ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"))
        except FileNotFoundError:
            continue  # a thread that ended meanwhile
        total += sum(fields.values())
    return total


def rss_kb(pid):
    return status_fields(f"/proc/{pid}/status", ("VmRSS",)).get("VmRSS", 0)


def rss_split_kb(pid):
    """RssAnon / RssFile / RssShmem of `pid` (kB): heap and stacks vs mapped files (the binary,
    shared libraries)."""
    return status_fields(f"/proc/{pid}/status", ("RssAnon", "RssFile", "RssShmem"))


def links_ffmpeg_dynamically(pid):
    with open(f"/proc/{pid}/maps") as f:
        return any("libavcodec" in line for line in f)


def summary(values):
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


# ---------------------------------------------------------------- an RTSP reader (TCP interleaved)


def is_idr(payload):
    if not payload:
        return False
    t = payload[0] & 0x1F
    if t == 5:
        return True
    if t == 28 and len(payload) > 1:
        return payload[1] & 0x80 != 0 and payload[1] & 0x1F == 5
    if t == 24:
        i = 1
        while i + 2 <= len(payload):
            size = int.from_bytes(payload[i:i + 2], "big")
            if i + 2 < len(payload) and payload[i + 2] & 0x1F == 5:
                return True
            i += 2 + size
    return False


class Reader:
    """DESCRIBE, SETUP video (+ audio), PLAY; notes when the first IDR arrives, then drains."""

    def __init__(self, url):
        self.url = url
        self.t_describe = self.t_play = self.t_idr = None
        self.bytes = 0
        self.task = None
        self.writer = None

    async def _request(self, reader, writer, method, url, cseq, extra=""):
        writer.write(f"{method} {url} RTSP/1.0\r\nCSeq: {cseq}\r\nUser-Agent: c300x-bench\r\n{extra}\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        text = head.decode("latin-1")
        m = re.search(r"(?i)content-length:\s*(\d+)", text)
        body = await reader.readexactly(int(m.group(1))) if m else b""
        if " 200 " not in text.split("\r\n", 1)[0]:
            raise RuntimeError(f"{method}: {text.splitlines()[0]}")
        return text, body.decode("latin-1")

    async def run(self):
        host, port = re.match(r"rtsp://([^:/]+):(\d+)", self.url).groups()
        reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 20)
        self.writer = writer
        self.t_describe = time.monotonic()
        head, sdp = await self._request(reader, writer, "DESCRIBE", self.url, 1, "Accept: application/sdp\r\n")
        m = re.search(r"(?i)content-base:\s*(\S+)", head)
        base = m.group(1) if m else self.url + "/"
        controls = []
        for media in re.split(r"\r?\nm=", sdp)[1:]:
            c = re.search(r"a=control:(\S+)", media)
            ctl = c.group(1) if c else ""
            controls.append(ctl if ctl.startswith("rtsp://") else base.rstrip("/") + "/" + ctl)
        session = ""
        for i, ctl in enumerate(controls[:2]):
            head, _ = await self._request(
                reader, writer, "SETUP", ctl, 2 + i,
                f"Transport: RTP/AVP/TCP;unicast;interleaved={2 * i}-{2 * i + 1}\r\n{session}")
            sid = re.search(r"(?i)session:\s*([^;\r\n]+)", head).group(1)
            session = f"Session: {sid}\r\n"
        self.t_play = time.monotonic()
        writer.write(f"PLAY {base} RTSP/1.0\r\nCSeq: 9\r\n{session}\r\n".encode())
        await writer.drain()
        buf = b""
        while self.t_idr is None:
            chunk = await reader.read(65536)
            if not chunk:
                raise RuntimeError("closed before an IDR")
            buf += chunk
            while True:
                if buf.startswith(b"$"):
                    if len(buf) < 4:
                        break
                    n = int.from_bytes(buf[2:4], "big")
                    if len(buf) < 4 + n:
                        break
                    ch, pkt, buf = buf[1], buf[4:4 + n], buf[4 + n:]
                    if ch == 0 and len(pkt) > 12 and is_idr(pkt[12 + 4 * (pkt[0] & 0x0F):]):
                        self.t_idr = time.monotonic()
                        break
                elif buf.startswith(b"RTSP/1.0"):
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    buf = buf[end + 4:]
                elif buf:
                    raise RuntimeError(f"unexpected bytes {buf[:8]!r}")
                else:
                    break
        while True:  # drain, as a player would
            chunk = await reader.read(262144)
            if not chunk:
                return
            self.bytes += len(chunk)

    def start(self):
        self.task = asyncio.ensure_future(self.run())
        return self

    async def stop(self):
        if self.writer:
            self.writer.close()
        if self.task:
            self.task.cancel()
            try:
                await self.task
            except BaseException:
                pass


async def wait_idr(readers, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if all(r.t_idr for r in readers):
            return True
        for r in readers:
            if r.task.done() and r.task.exception():
                raise r.task.exception()
        await asyncio.sleep(0.05)
    return False


async def measure(pid, seconds):
    """CPU (% of one core) and max RSS (MB) of `pid` over `seconds`."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    peak = 0
    while time.monotonic() - t0 < seconds:
        peak = max(peak, rss_kb(pid))
        await asyncio.sleep(0.25)
    cpu = (cpu_seconds(pid) - c0) / (time.monotonic() - t0) * 100
    return cpu, peak / 1024


# ---------------------------------------------------------------- processes


class Procs:
    def __init__(self, log_dir):
        self.procs = []
        self.log_dir = log_dir

    def start(self, name, args, stdout=None):
        log = open(os.path.join(self.log_dir, f"{name}.log"), "w")
        p = subprocess.Popen(args, stdout=stdout or log, stderr=log)
        self.procs.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop_all(self):
        for p in reversed(self.procs):
            self.stop(p)


def wait_port(port, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def start_pair(procs, binary, name, linger, extra_sim=(), extra_set=()):
    """A simulator and a bridge pointed at it; returns (sim, bridge, rtsp_url, http_base)."""
    sip = free_port()
    sim = procs.start(f"{name}-sim", [binary, "sim", "--sip-port", str(sip),
                                       "--answer-delay-ms", str(ANSWER_DELAY_MS), *extra_sim],
                      stdout=subprocess.PIPE if extra_sim else None)
    wait_port(sip)
    rtsp, http = free_port(), free_port()
    rtp = free_port() // 2 * 2
    rtp = 40000 + (rtp % 10000) // 2 * 2
    sets = {"intercom_sip_port": sip, "rtsp_port": rtsp, "http_port": http,
            "rtp_port_min": rtp, "rtp_port_max": rtp + 99, "linger_seconds": linger,
            # One call for the whole run (the default restarts it every 5 minutes).
            "max_call_seconds": 86400,
            "max_connections": 1000, "max_connections_per_ip": 1000,
            "data_dir": tempfile.mkdtemp(prefix="c300x-bench-"), "log_level": "warn"}
    sets.update(dict(extra_set))
    args = [binary, "run", "--intercom-host", "127.0.0.1", "--sip-domain", "1234567.bs.iotleg.com"]
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    bridge = procs.start(f"{name}-bridge", args)
    wait_port(rtsp)
    wait_port(http)
    time.sleep(1.5)  # registered
    return sim, bridge, f"rtsp://127.0.0.1:{rtsp}/doorbell", f"http://127.0.0.1:{http}"


# ---------------------------------------------------------------- phases


async def load_point(pid, url, n, seconds, keep_call):
    if n == 0 and keep_call:
        r = Reader(url).start()  # a call, then no reader: the linger keeps it up
        await wait_idr([r], 20)
        await r.stop()
        await asyncio.sleep(1)
    readers = [Reader(url).start() for _ in range(n)]
    ok = await wait_idr(readers, 30) if readers else True
    await asyncio.sleep(2)
    w0, t0 = switches(pid), time.monotonic()
    cpu, rss = await measure(pid, seconds)
    wakes = (switches(pid) - w0) / (time.monotonic() - t0)
    got = sum(1 for r in readers if r.t_idr and not r.task.done())
    for r in readers:
        await r.stop()
    await asyncio.sleep(1)
    return {"cpu": cpu, "rss": rss, "wakes": wakes, "served": got if n else 0, "all_started": ok}


async def joins(url, count):
    warm = Reader(url).start()
    await wait_idr([warm], 20)
    out = []
    for _ in range(count):
        r = Reader(url).start()
        await wait_idr([r], 10)
        if r.t_idr:
            out.append((r.t_idr - r.t_play) * 1000)
        await r.stop()
        await asyncio.sleep(0.3)
    await warm.stop()
    return out


async def cold_starts(url, count, linger):
    out = []
    for _ in range(count):
        r = Reader(url).start()
        await wait_idr([r], 20)
        if r.t_idr:
            out.append((r.t_idr - r.t_describe) * 1000 - ANSWER_DELAY_MS)
        await r.stop()
        await asyncio.sleep(linger + 1.5)  # linger, BYE: the next one is cold again
    return out


def http_get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def fragment_starts_with_idr(data):
    """Whether an fMP4 fragment's mdat starts (after SEI etc.) with an IDR slice (AVCC, 4-byte
    lengths; the bridge writes the video sample first)."""
    at = data.find(b"mdat")
    if at < 0:
        return False
    i = at + 4
    while i + 5 <= len(data):
        t = data[i + 4] & 0x1F
        if t in (1, 5):
            return t == 5
        i += 4 + int.from_bytes(data[i:i + 4], "big")
    return False


async def hls_cold(base, rtsp_url, linger):
    """The first index.m3u8 on an idle hub until it lists a segment. An RTSP reader started at
    the same moment sees the call's first IDR: `after_keyframe_s` is the playlist's time minus
    that one (both ride the same call; the hub hands both the same keyframe)."""
    t0 = time.monotonic()
    witness = Reader(rtsp_url).start()
    url = f"{base}/api/doorbell/hls/index.m3u8"
    out = None
    while time.monotonic() - t0 < 30:
        try:
            text = (await asyncio.to_thread(http_get, url)).decode()
        except Exception:
            text = ""
        m = re.search(r"#EXTINF:([\d.]+),\s*\n(\S+)", text)
        if m:
            elapsed = time.monotonic() - t0
            target = re.search(r"#EXT-X-TARGETDURATION:(\d+)", text)
            seg = await asyncio.to_thread(http_get, url.rsplit("/", 1)[0] + "/" + m.group(2))
            await wait_idr([witness], 5)
            key = witness.t_idr - t0 if witness.t_idr else None
            out = {"first_playlist_s": elapsed, "first_segment_s": float(m.group(1)),
                   "target_duration": int(target.group(1)) if target else None,
                   "first_keyframe_s": key,
                   "after_keyframe_s": elapsed - key if key is not None else None,
                   "starts_with_idr": fragment_starts_with_idr(seg)}
            break
        await asyncio.sleep(0.05)
    await witness.stop()
    # The HLS session ends 4 s after the last poll, then the linger: the next one is cold.
    await asyncio.sleep(linger + 8)
    return out


async def mjpeg_cost(pid, base, seconds):
    def pull(stop):
        with urllib.request.urlopen(f"{base}/api/doorbell/mjpeg", timeout=20) as resp:
            while not stop["stop"]:
                if not resp.read(65536):
                    return

    stop = {"stop": False}
    fut = asyncio.ensure_future(asyncio.to_thread(pull, stop))
    await asyncio.sleep(4)
    cpu, rss = await measure(pid, seconds)
    stop["stop"] = True
    await asyncio.wait([fut], timeout=5)
    return cpu, rss


async def ring_to_mqtt(binary, procs, rings, log_dir):
    broker = free_port()
    procs.start("mosquitto", ["mosquitto", "-p", str(broker)])
    wait_port(broker)
    sub = procs.start("mosquitto_sub", ["mosquitto_sub", "-p", str(broker), "-v", "-t", "c300x/#"],
                      stdout=subprocess.PIPE)
    sim, bridge, _, _ = start_pair(procs, binary, "ring", 1, extra_sim=("--ring-every", "1"),
                                   extra_set=(("mqtt_url", f"mqtt://127.0.0.1:{broker}"),))
    loop = asyncio.get_running_loop()
    ring_times, event_times = [], []

    def follow(pipe, pattern, out):
        for raw in pipe:  # MQTT payloads include JPEGs: bytes, decoded leniently
            if re.search(pattern, raw.decode("utf-8", "replace")):
                out.append(time.monotonic())

    loop.run_in_executor(None, follow, sim.stdout, r"^ring \(panel", ring_times)
    loop.run_in_executor(None, follow, sub.stdout, r'/doorbell \{.*"event_type":"ring"', event_times)
    end = time.monotonic() + rings * 1.0 + 15
    while len(event_times) < rings and time.monotonic() < end:
        await asyncio.sleep(0.2)
    # Each event to the nearest ring line (rings are 1 s apart; the simulator prints its line once
    # the INVITE is sent, so an event may even be seen a little before it: values can be < 0).
    lat = []
    for t in event_times[:rings]:
        if ring_times:
            nearest = min(ring_times, key=lambda r: abs(t - r))
            lat.append((t - nearest) * 1000)
    for p in (bridge, sim, sub):
        procs.stop(p)
    return lat


# ---------------------------------------------------------------- main


def fmt(s, unit="", digits=2):
    if not s:
        return "n/a"
    return f"{s['median']:.{digits}f}{unit} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--clip", required=True)
    ap.add_argument("--gst", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--readers", default="0,1,10,50,100,200")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cold", type=int, default=20)
    ap.add_argument("--idle-calls", type=int, default=50,
                    help="calls on the cold-start bridge before its idle CPU/RSS (at least --cold)")
    ap.add_argument("--joins", type=int, default=10)
    ap.add_argument("--rings", type=int, default=100)
    ap.add_argument("--hls", type=int, default=3, help="HLS cold starts")
    ap.add_argument("--profile", type=int, metavar="N", default=None,
                    help="only profile the bridge with N readers (perf record, Debian's linux-perf)")
    a = ap.parse_args()
    if a.profile is not None:
        await profile(a)
        return
    ns = [int(x) for x in a.readers.split(",") if x.strip()]  # none: only the latency phases
    log_dir = tempfile.mkdtemp(prefix="c300x-bench-logs-")
    procs = Procs(log_dir)
    result = {"machine": {"cpus": os.cpu_count(), "uname": " ".join(os.uname())},
              "settings": vars(a), "logs": log_dir}
    try:
        if ns:
            sim, bridge, url, _ = start_pair(procs, a.bin, "load", 3600)
            gport = free_port()
            gst = procs.start("gst", ["/usr/bin/python3", a.gst, a.clip, str(gport)])
            wait_port(gport)
            gurl = f"rtsp://127.0.0.1:{gport}/doorbell"
            points = {("bridge", n): [] for n in ns} | {("gstreamer", n): [] for n in ns}
            for rep in range(a.repeats):
                for n in ns:
                    for name, pid, u in (("bridge", bridge.pid, url), ("gstreamer", gst.pid, gurl)):
                        p = await load_point(pid, u, n, a.seconds, name == "bridge")
                        points[(name, n)].append(p)
                        print(f"repeat {rep + 1} {name:9} N={n:3}: {p['cpu']:.2f} % CPU, {p['rss']:.1f} MB, "
                              f"{p['wakes']:.0f} switches/s, "
                              f"{p['served']} served", file=sys.stderr, flush=True)
            load = {}
            for n in ns:
                row = {}
                for name in ("bridge", "gstreamer"):
                    ps = points[(name, n)]
                    row[name] = {"cpu_pct": summary([p["cpu"] for p in ps]),
                                 "rss_mb": summary([p["rss"] for p in ps]),
                                 "switches_per_s": summary([p["wakes"] for p in ps]),
                                 "served_min": min(p["served"] for p in ps)}
                g = row["gstreamer"]["cpu_pct"]["median"]
                row["cpu_ratio"] = row["bridge"]["cpu_pct"]["median"] / g if g > 0 else None
                load[str(n)] = row
            result["load"] = load
            result["join_ms"] = {"bridge": await joins(url, a.joins), "gstreamer": await joins(gurl, a.joins)}
            for p in (gst, bridge, sim):
                procs.stop(p)

        if a.cold > 0 or a.hls > 0:  # both 0: the load phase alone
            sim, bridge, url, http = start_pair(procs, a.bin, "cold", 1)
        if a.cold > 0:
            fresh = rss_split_kb(bridge.pid) | {"rss": rss_kb(bridge.pid)}
            cold = await cold_starts(url, a.cold, 1)
            result["cold_start_ms"] = {"values": cold, "median": statistics.median(cold) if cold else None,
                                       "p95": pct(cold, 95) if cold else None}
            # More calls the same way, up to --idle-calls, for the idle figure (latencies unused).
            await cold_starts(url, max(0, a.idle_calls - a.cold), 1)
            await asyncio.sleep(3)
            cpu, rss = await measure(bridge.pid, min(a.seconds, 10))
            split = rss_split_kb(bridge.pid)
            result["idle_after_calls"] = {
                "calls": max(a.cold, a.idle_calls), "cpu_pct": cpu, "rss_mb": rss,
                "anon_mb": split.get("RssAnon", 0) / 1024, "file_mb": split.get("RssFile", 0) / 1024,
                "shmem_mb": split.get("RssShmem", 0) / 1024,
                "fresh_mb": {k: v / 1024 for k, v in fresh.items()},
                "ffmpeg": "dynamic" if links_ffmpeg_dynamically(bridge.pid) else "static"}
        if a.hls > 0:
            result["hls_cold"] = [await hls_cold(http, url, 1) for _ in range(a.hls)]
        if a.cold > 0:
            keep = Reader(url).start()
            await wait_idr([keep], 20)
            base_cpu, _ = await measure(bridge.pid, min(a.seconds, 10))
            with_mjpeg, _ = await mjpeg_cost(bridge.pid, http, min(a.seconds, 10))
            await keep.stop()
            result["mjpeg_viewer"] = {"cpu_pct_with_one_rtsp_reader": base_cpu,
                                      "cpu_pct_plus_one_mjpeg_viewer": with_mjpeg,
                                      "cost_pct": with_mjpeg - base_cpu}
        if a.cold > 0 or a.hls > 0:
            for p in (bridge, sim):
                procs.stop(p)

        if shutil.which("mosquitto") and a.rings > 0:
            lat = await ring_to_mqtt(a.bin, procs, a.rings, log_dir)
            result["ring_to_mqtt_ms"] = {"count": len(lat), "p50": pct(lat, 50) if lat else None,
                                         "p99": pct(lat, 99) if lat else None, "values": lat}
    finally:
        procs.stop_all()

    with open(a.out, "w") as f:
        json.dump(result, f, indent=1, default=str)
    print_table(result)


async def profile(a):
    """`perf record` of the bridge with N readers for --seconds; the report goes to stdout."""
    log_dir = tempfile.mkdtemp(prefix="c300x-bench-logs-")
    procs = Procs(log_dir)
    try:
        sim, bridge, url, _ = start_pair(procs, a.bin, "profile", 3600)
        keep = Reader(url).start()
        await wait_idr([keep], 20)
        await keep.stop()
        readers = [Reader(url).start() for _ in range(a.profile)]
        if readers:
            await wait_idr(readers, 30)
        await asyncio.sleep(2)
        data = os.path.join(os.path.dirname(a.out), f"perf-{a.profile}.data")
        c0 = cpu_seconds(bridge.pid)
        rec = await asyncio.create_subprocess_exec(
            "perf", "record", "-F", "2999", "-g", "-o", data, "-p", str(bridge.pid), "--",
            "sleep", str(a.seconds), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await rec.wait()
        cpu = (cpu_seconds(bridge.pid) - c0) / a.seconds * 100
        for r in readers:
            await r.stop()
    finally:
        procs.stop_all()
    print(f"bridge with {a.profile} readers: {cpu:.2f} % CPU while recorded; {data}")
    report = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort",
                             "dso,symbol", "--percent-limit", "1.5", "-g", "none"],
                            capture_output=True, text=True)
    print("\n".join(l for l in report.stdout.splitlines() if l and not l.startswith("#")))


def print_table(r):
    print(f"machine: {r['machine']['cpus']} CPUs, {r['machine']['uname']}")
    s = r["settings"]
    print(f"{s['seconds']:g} s per point, {s['repeats']} repeats interleaved; median (min–max)\n")
    if "load" in r:
        print_load(r)
    if "cold_start_ms" in r:
        print_latencies(r)
    print_hls(r)
    print_rings(r)


def print_load(r):
    print("| readers | bridge CPU % | GStreamer CPU % | bridge/GStreamer | bridge max RSS MB | GStreamer max RSS MB "
          "| served (bridge/GStreamer) | context switches/s (bridge/GStreamer) |")
    print("|---|---|---|---|---|---|---|---|")
    for n, row in r["load"].items():
        b, g = row["bridge"], row["gstreamer"]
        ratio = f"{row['cpu_ratio']:.2f}" if row["cpu_ratio"] else "n/a"
        print(f"| {n} | {fmt(b['cpu_pct'])} | {fmt(g['cpu_pct'])} | {ratio} | {fmt(b['rss_mb'], '', 1)} | "
              f"{fmt(g['rss_mb'], '', 1)} | {b['served_min']}/{g['served_min']} | "
              f"{b['switches_per_s']['median']:.0f}/{g['switches_per_s']['median']:.0f} |")
    j = r["join_ms"]
    for name in ("bridge", "gstreamer"):
        v = j[name]
        if v:
            print(f"join (PLAY → first IDR), {name}: median {statistics.median(v):.1f} ms, max {max(v):.1f} ms ({len(v)} joins)")


def print_latencies(r):
    c = r["cold_start_ms"]
    if c["median"] is not None:
        print(f"cold start (DESCRIBE → first IDR − {ANSWER_DELAY_MS} ms answer delay): median {c['median']:.0f} ms, "
              f"p95 {c['p95']:.0f} ms ({len(c['values'])} calls)")
    i = r["idle_after_calls"]
    fr = i["fresh_mb"]
    print(f"idle after {i['calls']} calls: {i['cpu_pct']:.2f} % CPU, RSS {i['rss_mb']:.1f} MB "
          f"(anon {i['anon_mb']:.1f}, file {i['file_mb']:.1f}; FFmpeg {i['ffmpeg']}); before any call "
          f"{fr['rss']:.1f} MB (anon {fr.get('RssAnon', 0):.1f}, file {fr.get('RssFile', 0):.1f})")
    m = r["mjpeg_viewer"]
    print(f"MJPEG viewer: {m['cost_pct']:.2f} % of a core ({m['cpu_pct_plus_one_mjpeg_viewer']:.2f} % with it, "
          f"{m['cpu_pct_with_one_rtsp_reader']:.2f} % without)")


def print_hls(r):
    for h in r.get("hls_cold") or []:
        if not h:
            print("HLS cold: no playlist with a segment within 30 s")
            continue
        key = h["first_keyframe_s"]
        after = f"{h['after_keyframe_s']:.2f} s after the first keyframe ({key:.2f} s)" if key is not None \
            else "first keyframe not seen"
        print(f"HLS cold: first playlist with a segment after {h['first_playlist_s']:.2f} s, {after}; "
              f"first segment {h['first_segment_s']:.2f} s, TARGETDURATION {h['target_duration']}, "
              f"{'starts with an IDR' if h['starts_with_idr'] else 'NOT starting with an IDR'}")


def print_rings(r):
    rm = r.get("ring_to_mqtt_ms")
    if rm and rm["count"]:
        print(f"ring → MQTT event: p50 {rm['p50']:.1f} ms, p99 {rm['p99']:.1f} ms ({rm['count']} rings)")


if __name__ == "__main__":
    asyncio.run(main())
