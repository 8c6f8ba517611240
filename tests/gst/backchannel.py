#!/usr/bin/python3
"""An ONVIF backchannel client for the RTSP talk tests: GStreamer's rtspsrc with
backchannel=onvif plays the panel's stream and, once playing, sends SECONDS of a 1 kHz tone
(audiotestsrc, live, 20 ms buffers) as PCMU or PCMA RTP through `push-backchannel-sample`.

usage: backchannel.py URL pcmu|pcma tcp|udp SECONDS
Prints what it did; exit 0 when the tone went out and the pipeline shut down cleanly,
2 when the server offered no backchannel, 3 on a pipeline error, 4 on a timeout."""

import ctypes
import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402


def main() -> int:
    url, law, proto, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    Gst.init(None)
    loop = GLib.MainLoop()
    state = {"rc": 0, "back": None, "sent": 0, "started": False}

    pipe = Gst.Pipeline.new("play")
    src = Gst.ElementFactory.make("rtspsrc", "src")
    src.set_property("location", url)
    src.set_property("latency", 0)
    Gst.util_set_object_arg(src, "backchannel", "onvif")
    Gst.util_set_object_arg(src, "protocols", proto)
    pipe.add(src)

    def select_stream(_src, idx, caps):
        s = caps.get_structure(0)
        print(f"stream {idx}: {caps.to_string()}", flush=True)
        if s.has_field("a-sendonly"):
            state["back"] = idx
        return True

    def pad_added(_src, pad):
        sink = Gst.ElementFactory.make("fakesink")
        sink.set_property("sync", False)
        pipe.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))
        # A pad means PLAY was answered and media flows: the backchannel is up too.
        GLib.idle_add(lambda: start_tone() or False)

    src.connect("select-stream", select_stream)
    src.connect("pad-added", pad_added)

    enc, pay = ("mulawenc", "rtppcmupay") if law == "pcmu" else ("alawenc", "rtppcmapay")
    tone = Gst.parse_launch(
        "audiotestsrc wave=sine freq=1000 volume=0.3 is-live=true samplesperbuffer=160 "
        f"num-buffers={int(seconds * 50)} ! audio/x-raw,rate=8000,channels=1 ! {enc} ! "
        f"{pay} min-ptime=20000000 max-ptime=20000000 ! appsink name=out emit-signals=true sync=true"
    )
    out = tone.get_by_name("out")

    # rtspsrc 1.22 unrefs the sample it is given although the binding keeps its own reference:
    # take one more for it (a PyGObject boxed wrapper hashes to its C pointer).
    libgst = ctypes.CDLL("libgstreamer-1.0.so.0")
    libgst.gst_mini_object_ref.argtypes = [ctypes.c_void_p]
    libgst.gst_mini_object_ref.restype = ctypes.c_void_p

    def new_sample(sink):
        sample = sink.emit("pull-sample")
        if sample is not None and state["back"] is not None:
            libgst.gst_mini_object_ref(hash(sample))
            if src.emit("push-backchannel-sample", state["back"], sample) == Gst.FlowReturn.OK:
                state["sent"] += 1
        return Gst.FlowReturn.OK

    out.connect("new-sample", new_sample)

    def start_tone():
        if state["started"]:
            return
        state["started"] = True
        if state["back"] is None:
            print("the server offered no backchannel", flush=True)
            state["rc"] = 2
            loop.quit()
            return
        print("playing; sending the tone", flush=True)
        tone.set_state(Gst.State.PLAYING)

    def on_bus(_bus, msg):
        if msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            print(f"error: {err.message} ({dbg})", flush=True)
            state["rc"] = 3
            loop.quit()
        return True

    def on_tone_bus(_bus, msg):
        if msg.type == Gst.MessageType.EOS:
            print(f"tone done: {state['sent']} packets pushed", flush=True)
            # Let the last packets leave, then TEARDOWN.
            GLib.timeout_add(1000, lambda: loop.quit() or False)
        elif msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            print(f"tone error: {err.message} ({dbg})", flush=True)
            state["rc"] = 3
            loop.quit()
        return True

    bus = pipe.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_bus)
    tbus = tone.get_bus()
    tbus.add_signal_watch()
    tbus.connect("message", on_tone_bus)

    def give_up():
        print("timed out", flush=True)
        state["rc"] = 4
        loop.quit()
        return False

    GLib.timeout_add_seconds(int(seconds) + 20, give_up)
    pipe.set_state(Gst.State.PLAYING)
    loop.run()
    tone.set_state(Gst.State.NULL)
    pipe.set_state(Gst.State.NULL)
    if state["rc"] == 0 and state["sent"] == 0:
        return 3
    return state["rc"]


if __name__ == "__main__":
    sys.exit(main())
