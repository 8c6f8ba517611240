#!/usr/bin/python3
"""The GStreamer reference for scripts/bench.sh: gst-rtsp-server relaying an H.264 + AAC clip
(made by bench.sh like the simulator's stream: 400x288, 10 fps, an IDR every 2 s, AAC-LC mono
16 kHz) to every reader from one shared pipeline, in real time, looping at the clip's end.

Usage: gst_rtsp_server.py CLIP.mp4 PORT  (serves rtsp://127.0.0.1:PORT/doorbell until SIGTERM)
Needs Debian's gir1.2-gst-rtsp-server-1.0 and python3-gst-1.0 (scripts/setup-debian.sh).
"""
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    clip, port = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    # One pipeline shared by every reader (like the bridge's one call per panel); the clip is
    # demuxed and payloaded, not decoded: a relay, as the bridge is.
    factory.set_launch(
        f"( filesrc location={clip} ! qtdemux name=d "
        "d.video_0 ! queue ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 "
        "d.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97 )"
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory("/doorbell", factory)
    if server.attach(None) == 0:
        print(f"gst_rtsp_server: cannot listen on 127.0.0.1:{port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    print(f"gst_rtsp_server: rtsp://127.0.0.1:{port}/doorbell", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
