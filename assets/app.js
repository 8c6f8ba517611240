// Status page logic for c300x-bridge: polls api/status, draws one card per panel, live view with
// hls.js (native HLS on Safari, MJPEG as the fallback), buttons for the API. Relative URLs only,
// so it works behind Home Assistant ingress. No build step.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const cards = new Map();
const demo = document.body.dataset.demo === "true";
let token = localStorage.getItem("c300x-token") || "";

function message(text, bad) {
  const m = $("#message");
  m.textContent = text;
  m.style.color = bad ? "var(--bad)" : "";
}

async function post(path, body) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = "Bearer " + token;
  const r = await fetch(path, { method: "POST", headers, body: body ? JSON.stringify(body) : "" });
  const data = await r.json().catch(() => ({}));
  if (r.status === 401) $("#token-box").hidden = false;
  if (!r.ok) throw new Error(data.detail || r.statusText);
  return data;
}

function action(label, fn) {
  return async () => {
    message(label + " …");
    try { await fn(); message(label + ": done"); } catch (e) { message(label + ": " + e.message, true); }
    refresh();
  };
}

function button(text, act, cls) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.dataset.action = act;
  if (cls) b.className = cls;
  return b;
}

function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString();
}

function makeCard(p) {
  const el = document.createElement("section");
  el.className = "card";
  el.dataset.panel = p.name;
  el.innerHTML = `<h2><span class="name"></span><span class="pill state"></span></h2>
    <div class="media"><img class="view still" alt="last picture"></div>
    <dl class="facts"></dl><div class="buttons"></div>`;
  $(".name", el).textContent = p.name;
  const base = "api/" + encodeURIComponent(p.name);
  const c = { el, base, name: p.name, hls: null, watching: false };
  const bar = $(".buttons", el);
  c.watch = button("Watch live", "watch");
  c.watch.onclick = () => (c.watching ? stopWatching(c) : watch(c));
  const unlock = button("Unlock", "unlock");
  unlock.onclick = action("Unlock " + p.name, () => post(base + "/unlock"));
  const light = button("Light", "light", "secondary");
  light.onclick = action("Light", () => post(base + "/light"));
  c.answer = button("Answer ring", "ring-answer", "ring");
  c.answer.onclick = action("Answer", () => post(base + "/ring-answer"));
  const hang = button("Hang up", "hangup", "secondary");
  hang.onclick = action("Hang up", () => post(base + "/hangup"));
  bar.append(c.watch, unlock, light, c.answer, hang);
  if (demo) {
    const ring = button("Ring the doorbell (demo)", "demo-ring", "ring");
    ring.onclick = action("Ring", () => post("api/demo/ring?panel=" + encodeURIComponent(p.name)));
    bar.append(ring);
  }
  $("#panels").append(el);
  cards.set(p.name, c);
  refreshStill(c);
  return c;
}

function refreshStill(c) {
  if (c.watching) return;
  const img = $(".still", c.el);
  if (img) img.src = c.base + "/snapshot.jpg?t=" + Date.now();
}

function mjpegFallback(c, why) {
  if (c.hls) { c.hls.destroy(); c.hls = null; }
  const img = document.createElement("img");
  img.className = "view live-mjpeg";
  img.alt = "live (MJPEG)";
  img.src = c.base + "/mjpeg";
  $(".media", c.el).replaceChildren(img);
  if (why) message("HLS unavailable (" + why + "), showing MJPEG");
}

function watch(c) {
  c.watching = true;
  c.watch.textContent = "Stop";
  const url = c.base + "/hls/index.m3u8";
  const video = document.createElement("video");
  video.className = "view live";
  video.muted = true;
  video.autoplay = true;
  video.playsInline = true;
  video.controls = true;
  $(".media", c.el).replaceChildren(video);
  if (window.Hls && Hls.isSupported()) {
    const hls = new Hls({ lowLatencyMode: true, manifestLoadingTimeOut: 30000, manifestLoadingMaxRetry: 2 });
    c.hls = hls;
    hls.on(Hls.Events.ERROR, (_, data) => {
      if (data.fatal) mjpegFallback(c, data.details);
    });
    hls.loadSource(url);
    hls.attachMedia(video);
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = url;
  } else {
    mjpegFallback(c, "no HLS support");
    return;
  }
  video.play().catch(() => {});
}

function stopWatching(c) {
  c.watching = false;
  c.watch.textContent = "Watch live";
  if (c.hls) { c.hls.destroy(); c.hls = null; }
  $(".media", c.el).innerHTML = '<img class="view still" alt="last picture">';
  refreshStill(c);
}

function fact(dl, k, v) {
  const dt = document.createElement("dt");
  dt.textContent = k;
  const dd = document.createElement("dd");
  dd.textContent = v == null || v === "" ? "—" : v;
  dl.append(dt, dd);
}

function render(s) {
  const sip = $("#sip");
  sip.textContent = "SIP " + s.sip.state + (s.sip.reason ? ": " + s.sip.reason : "");
  sip.className = "pill " + (s.sip.registered ? "ok" : "bad");
  $("#streaming").checked = s.streaming_allowed;
  for (const p of s.panels) {
    const c = cards.get(p.name) || makeCard(p);
    const st = $(".state", c.el);
    st.textContent = p.state;
    st.className = "pill state state-" + p.state;
    const dl = $(".facts", c.el);
    dl.replaceChildren();
    fact(dl, "DEVADDR", p.devaddr);
    fact(dl, "viewers", p.viewers);
    fact(dl, "picture", p.width ? `${p.width}×${p.height} @ ${p.fps ? p.fps.toFixed(1) : "?"} fps` : null);
    fact(dl, "call", p.call_id);
    fact(dl, "last ring", when(p.last_ring));
    fact(dl, "calls", p.calls_started);
    if (p.last_error) fact(dl, "last error", p.last_error);
    c.answer.hidden = !s.ringing;
  }
  const rings = $("#rings");
  rings.replaceChildren();
  for (const r of s.recent_rings) {
    const li = document.createElement("li");
    li.textContent = when(r.at) + " — " + (r.panel || "?");
    rings.append(li);
  }
  if (!s.recent_rings.length) rings.innerHTML = '<li class="muted">none yet</li>';
  $("#counters").textContent = `rings ${s.rings} · unlocks ${s.unlocks} · unlock failures ${s.unlock_failures}`;
}

// Credentials and the URLs to paste into Home Assistant or an NVR: the bridge answers only
// through ingress or to a client that proved the credentials already.
async function loadAccess() {
  try {
    const r = await fetch("api/access");
    if (!r.ok) return;
    const a = await r.json();
    const dl = $("#access-facts");
    dl.replaceChildren();
    if (a.open) {
      $("#access-note").textContent = "No credentials are configured: anyone who can reach this host can watch and open the door.";
    } else {
      $("#access-note").textContent = a.generated
        ? "Generated by the add-on and kept in /data/credentials.json; set rtsp_user, rtsp_password or api_token to choose your own."
        : "The credentials from the configuration.";
      if (a.user) fact(dl, "user", a.user);
      if (a.password) fact(dl, "password", a.password);
      if (a.api_token) fact(dl, "API token", a.api_token);
    }
    for (const p of a.panels) {
      fact(dl, p.name + " RTSP", p.rtsp);
      fact(dl, p.name + " snapshot", p.snapshot);
    }
    $("#access").hidden = false;
  } catch (e) {
    /* not shown: the page works without it */
  }
}

async function refresh() {
  try {
    const r = await fetch("api/status");
    render(await r.json());
  } catch (e) {
    message("status unavailable: " + e.message, true);
  }
}

$("#streaming").onchange = (e) =>
  action("Streaming", () => post("api/streaming", { enabled: e.target.checked }))();
$("#token-box").onsubmit = (e) => {
  e.preventDefault();
  token = $("#token").value.trim();
  localStorage.setItem("c300x-token", token);
  $("#token-box").hidden = true;
};

loadAccess();
refresh().then(() => {
  const want = new URLSearchParams(location.search).get("watch");
  if (want) {
    const c = cards.get(want) || cards.values().next().value;
    if (c) watch(c);
  }
});
setInterval(refresh, 2000);
setInterval(() => cards.forEach(refreshStill), 10000);
