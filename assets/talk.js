// Push-to-talk of the status page (issue 17): a "Hold to talk" button per panel. Holding it
// opens the microphone (getUserMedia), an AudioWorklet (talk-worklet.js) turns it into 16-bit
// PCM, and a WebSocket to api/<panel>/talk carries it to the bridge, which speaks it into the
// panel's call (an idle panel gets a call). Releasing closes the socket: the panel hears silence.
// The state shown follows api/status: talking / someone else is talking / no call yet.
"use strict";

function makeTalk(slot, base) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "talk";
  b.dataset.action = "talk";
  b.textContent = "Hold to talk";
  const st = document.createElement("span");
  st.className = "talk-state";
  slot.append(b, st);
  let session = null;
  let last = null;
  // Until api/status catches up, our own talk shows there as "talking".
  let releasedAt = 0;

  function show(text, cls) {
    st.textContent = text;
    st.dataset.state = cls || "";
  }

  function cleanup(s) {
    if (s.ws) try { s.ws.close(); } catch (_) { /* already closed */ }
    if (s.stream) s.stream.getTracks().forEach((t) => t.stop());
    if (s.ctx) s.ctx.close().catch(() => {});
  }

  async function start() {
    if (session) return;
    const s = { ws: null, ctx: null, stream: null, stopped: false, opened: false };
    session = s;
    b.classList.add("held");
    show("Starting…", "starting");
    try {
      s.stream = await navigator.mediaDevices.getUserMedia({
        // No noise suppression or gain control: they fade a steady voice or tone out.
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false, autoGainControl: false },
      });
      s.ctx = new AudioContext();
      await s.ctx.audioWorklet.addModule("assets/talk-worklet.js");
      if (s.stopped) return cleanup(s);
      const url = new URL(base + "/talk?rate=" + s.ctx.sampleRate, location.href);
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      s.ws = new WebSocket(url);
      s.ws.binaryType = "arraybuffer";
      const node = new AudioWorkletNode(s.ctx, "pcm16-sender");
      node.port.onmessage = (ev) => {
        if (s.opened && s.ws.readyState === WebSocket.OPEN) s.ws.send(ev.data);
      };
      // A silent sink keeps the worklet pulled by the graph.
      const mute = s.ctx.createGain();
      mute.gain.value = 0;
      s.ctx.createMediaStreamSource(s.stream).connect(node).connect(mute).connect(s.ctx.destination);
      s.ws.onopen = () => {
        s.opened = true;
        if (!s.stopped) show("Talking…", "talking");
      };
      s.ws.onclose = () => {
        if (session !== s) return;
        stop();
        if (!s.opened) {
          // The handshake's status is not visible to scripts: ask api/status why.
          const busy = last && last.talk && last.talk.state !== "free";
          show(busy ? "Someone else is talking" : "Talk refused (no call, or no access)", "refused");
        }
      };
    } catch (e) {
      stop();
      show("Microphone unavailable: " + e.message, "refused");
    }
  }

  function stop() {
    const s = session;
    if (!s) return;
    session = null;
    s.stopped = true;
    b.classList.remove("held");
    cleanup(s);
    if (s.opened) {
      releasedAt = Date.now();
      show("Released", "released");
    }
    if (typeof refresh === "function") refresh();
  }

  b.addEventListener("pointerdown", (e) => { e.preventDefault(); start(); });
  for (const ev of ["pointerup", "pointercancel", "pointerleave"]) b.addEventListener(ev, stop);
  b.addEventListener("keydown", (e) => { if ((e.key === " " || e.key === "Enter") && !e.repeat) start(); });
  b.addEventListener("keyup", (e) => { if (e.key === " " || e.key === "Enter") stop(); });

  function update(p) {
    last = p;
    if (session) {
      b.disabled = false;
      return;
    }
    let t = (p.talk && p.talk.state) || "free";
    if (t !== "free" && Date.now() - releasedAt < 2000) t = "free";
    b.disabled = t !== "free";
    if (t !== "free") show("Someone else is talking", "busy");
    else if (p.state === "live") show("Call live: hold to talk", "ready");
    else show("No call: holding calls the panel", "idle");
  }

  return { update, talking: () => !!(session && session.opened) };
}
