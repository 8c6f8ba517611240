// Status page logic for c300x-bridge: polls api/status and each panel's api/<panel>/rings; per
// panel a camera card (live view with hls.js, native HLS on Safari, MJPEG as the fallback) and a
// control group; the ringing alert with the ring's picture; recent rings with picture and clip;
// the Home Assistant camera setup. Relative URLs only (works behind HA ingress).
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const panels = new Map();
const demo = document.body.dataset.demo === "true";
let token = localStorage.getItem("c300x-token") || "";
let linger = 15;
let dismissedRing = null;
let lastStatus = null;
// From api/<panel>/rings: every panel's rings (newest first) and the pending ones; null when the
// doorbell API is not there (the page then lists api/status's recent rings).
let ringData = null;
// After "Stop", the page's HLS session holds its viewer for ~2 target durations before the linger.
const HLS_GRACE_S = 4;

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

function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k in e) e[k] = v; else e.setAttribute(k, v);
  }
  if (text != null) e.textContent = text;
  return e;
}

function button(text, act, cls) {
  const b = el("button", { type: "button", class: cls || "" }, text);
  b.dataset.action = act;
  return b;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "—";
}

function clock(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : "";
}

function title(name) {
  const s = name.replace(/[_-]/g, " ");
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function makePanel(p) {
  const base = "api/" + encodeURIComponent(p.name);
  const c = { name: p.name, base, hls: null, watching: false, lingerUntil: null, stoppedAt: null };
  // The camera card (left column): title, state, the picture, Watch live / Stop under it.
  c.card = el("section", { class: "card" });
  c.card.dataset.panel = p.name;
  c.card.innerHTML = `<h2><span class="name"></span><span class="pill state"></span></h2>
    <div class="media"><img class="view still" alt="last picture"></div>
    <div class="under"></div>`;
  $(".name", c.card).textContent = title(p.name);
  c.watch = button("Watch live", "watch");
  c.watch.onclick = () => (c.watching ? stopWatching(c) : watch(c));
  c.since = el("span", { class: "since" });
  $(".under", c.card).append(c.watch, c.since);
  $("#panels").append(c.card);

  // Its controls (right column): door, light, ring, push-to-talk (talk.js), facts.
  c.controls = el("section", { class: "box controls" });
  c.controls.dataset.panel = p.name;
  c.controls.append(el("h2", {}, title(p.name) + " controls"));
  const bar = el("div", { class: "buttons" });
  const unlock = button("Unlock", "unlock");
  unlock.onclick = action("Unlock " + p.name, () => post(base + "/unlock"));
  const light = button("Light", "light", "secondary");
  light.onclick = action("Light", () => post(base + "/light"));
  c.answer = button("Answer ring", "ring-answer", "ring");
  c.answer.onclick = action("Answer", () => post(base + "/ring-answer"));
  const hang = button("Hang up", "hangup", "secondary");
  hang.onclick = action("Hang up", () => post(base + "/hangup"));
  bar.append(unlock, light, c.answer, hang);
  if (demo) {
    const ring = button("Ring the doorbell (demo)", "demo-ring", "ring");
    ring.onclick = action("Ring", () => post("api/demo/ring?panel=" + encodeURIComponent(p.name)));
    bar.append(ring);
  }
  const talk = el("div", { class: "talk-slot" });
  talk.dataset.slot = "talk";
  c.talk = makeTalk(talk, base);
  c.facts = el("details", { class: "facts" });
  c.facts.append(el("summary", {}, "Details"), el("dl"));
  c.controls.append(bar, talk, c.facts);
  $("#controls").append(c.controls);
  panels.set(p.name, c);
  refreshStill(c);
  return c;
}

function refreshStill(c) {
  if (c.watching) return;
  const img = $(".still", c.card);
  if (img) img.src = c.base + "/snapshot.jpg?t=" + Date.now();
}

function mjpegFallback(c, why) {
  if (c.hls) { c.hls.destroy(); c.hls = null; }
  const img = el("img", { class: "view live-mjpeg", alt: "live (MJPEG)" });
  img.src = c.base + "/mjpeg";
  $(".media", c.card).replaceChildren(img);
  if (why) message("HLS unavailable (" + why + "), showing MJPEG");
}

function watch(c) {
  c.watching = true;
  c.stoppedAt = null;
  c.lingerUntil = null;
  c.watch.textContent = "Stop";
  const url = c.base + "/hls/index.m3u8";
  const video = el("video", { class: "view live" });
  video.muted = true;
  video.autoplay = true;
  video.playsInline = true;
  video.controls = true;
  $(".media", c.card).replaceChildren(video);
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
  c.stoppedAt = Date.now();
  c.lingerUntil = c.stoppedAt + (HLS_GRACE_S + linger) * 1000;
  c.watch.textContent = "Watch live";
  if (c.hls) { c.hls.destroy(); c.hls = null; }
  $(".media", c.card).innerHTML = '<img class="view still" alt="last picture">';
  refreshStill(c);
  if (lastStatus) render(lastStatus);
}

// What the state pill says: "lingering N s" once nobody (or only this page's ending HLS
// session) watches, instead of "live · 1 viewer".
function stateText(c, p) {
  const others = Object.entries(p.viewers_by_output || {})
    .filter(([k]) => k !== "hls").reduce((n, [, v]) => n + v, 0);
  const onlyOurEndingHls = c.stoppedAt && !c.watching && others === 0 && (p.viewers_by_output?.hls || 0) <= 1;
  if (p.state === "lingering" || (p.state === "live" && onlyOurEndingHls)) {
    if (p.state === "lingering" && !c.lingerSeen) {
      c.lingerSeen = true;
      c.lingerUntil = Date.now() + linger * 1000;
    }
    const left = c.lingerUntil ? Math.max(0, Math.round((c.lingerUntil - Date.now()) / 1000)) : linger;
    return { text: `lingering ${left} s`, cls: "lingering" };
  }
  c.lingerSeen = false;
  if (p.state === "idle" || p.state === "failed") { c.stoppedAt = null; c.lingerUntil = null; }
  if (p.state === "live") {
    return { text: `live · ${p.viewers} viewer${p.viewers === 1 ? "" : "s"}`, cls: "live" };
  }
  return { text: p.state === "starting" ? "starting …" : p.state, cls: p.state };
}

function fact(dl, k, v) {
  dl.append(el("dt", {}, k), el("dd", {}, v == null || v === "" ? "—" : String(v)));
}

function copyButton(text) {
  const b = el("button", { type: "button", class: "copy" }, "copy");
  b.onclick = () => navigator.clipboard?.writeText(text).then(() => message("copied"), () => {});
  return b;
}

function haCamera(cam) {
  const box = el("div", { class: "ha-camera" });
  box.dataset.state = cam.state;
  const name = title(cam.panel);
  if (cam.state === "ready") {
    box.classList.add("ok");
    box.append(el("div", { class: "headline" }, `${name}: in Home Assistant as ${cam.entity_id} (${cam.action})`));
    if (cam.note) box.append(el("p", { class: "reason" }, cam.note));
    return box;
  }
  const manual = cam.state === "manual" || cam.state === "off";
  if (manual) box.classList.add("manual");
  const head = {
    manual: `${name}: add the camera to Home Assistant by hand`,
    off: `${name}: automatic set-up is off (ha_camera: false); add it by hand`,
    waiting: `${name}: adding the camera to Home Assistant …`,
    working: `${name}: adding the camera to Home Assistant …`,
  }[cam.state] || name;
  box.append(el("div", { class: "headline" }, head));
  const why = cam.reason || cam.action;
  if (why) box.append(el("p", { class: "reason" }, (manual ? "Why: " : "") + why));
  const steps = el(manual ? "div" : "details");
  if (!manual) steps.append(el("summary", {}, "or add it by hand"));
  const link = el("a", { class: "button", href: cam.setup_link, target: "_blank", rel: "noopener" },
    "Open the Generic Camera dialog");
  steps.append(link);
  for (const [label, url] of [["Stream source (RTSP, TCP)", cam.stream_source], ["Still image URL", cam.still_image_url]]) {
    const row = el("div", { class: "url" });
    row.append(el("span", {}, label + ":"), el("code", {}, url), copyButton(url));
    steps.append(row);
  }
  if (cam.username) steps.append(el("p", {}, `User ${cam.username} with the RTSP password (basic authentication).`));
  steps.append(el("p", { class: "muted" }, `Then rename the entity to ${cam.entity_id}.`));
  box.append(steps);
  return box;
}

// Each panel's rings and pending ring (the ring list, the alert's picture).
async function fetchRings(s) {
  const all = [];
  const pending = [];
  let any = false;
  await Promise.all(s.panels.map(async (p) => {
    try {
      const r = await fetch("api/" + encodeURIComponent(p.name) + "/rings");
      if (!r.ok) return;
      const j = await r.json();
      any = true;
      if (j.pending) pending.push({ panel: p.name, ...j.pending });
      all.push(...j.rings);
    } catch (e) { /* the status poll reports trouble */ }
  }));
  all.sort((a, b) => (a.time < b.time ? 1 : -1));
  pending.sort((a, b) => (a.time < b.time ? 1 : -1));
  return any ? { rings: all.slice(0, 10), pending } : null;
}

// A ring's picture into `slot`, replacing the icon once it loads (it may not exist yet). Not
// lazy: the image is outside the document until it has loaded.
function ringPicture(slot, url) {
  if (slot.dataset.src === url) return;
  const img = el("img", { alt: "the ring's picture" });
  img.onload = () => { slot.dataset.src = url; slot.replaceChildren(img); };
  img.src = url;
}

function renderRingAlert(s) {
  const alert = $("#ring-alert");
  const pending = ringData && ringData.pending[0];
  const latest = pending
    ? { at: pending.time, panel: pending.panel }
    : s.recent_rings[0];
  const key = latest ? latest.at : null;
  const ringing = ringData ? !!pending : s.ringing;
  const show = ringing && key !== dismissedRing;
  alert.hidden = !show;
  $("#ring-reject").hidden = !pending;
  if (!show) return;
  const panel = (latest && latest.panel) || (s.panels[0] && s.panels[0].name);
  alert.dataset.panel = panel || "";
  alert.dataset.at = key || "";
  $("#ring-where").textContent = `${title(panel || "door")} · since ${clock(latest && latest.at)}`;
  if (pending) {
    ringPicture($('[data-slot="ring-snapshot"]'), `api/${encodeURIComponent(pending.panel)}/rings/${pending.ring_id}.jpg`);
  }
}

const OUTCOME = {
  pending: "ringing", answered_here: "answered here", answered_elsewhere: "answered elsewhere",
  rejected: "rejected", missed: "missed",
};

function renderRings(s) {
  const rings = $("#rings");
  rings.replaceChildren();
  if (!ringData) {
    for (const r of s.recent_rings) {
      const li = el("li");
      const thumb = el("span", { class: "thumb" });
      thumb.dataset.slot = "ring-thumb";
      li.append(thumb, el("span", { class: "when" }, `${when(r.at)} · ${title(r.panel || "?")}`));
      rings.append(li);
    }
  } else {
    for (const r of ringData.rings) {
      const li = el("li");
      const thumb = el("span", { class: "thumb" });
      thumb.dataset.slot = "ring-thumb";
      if (r.snapshot || r.outcome === "pending") ringPicture(thumb, r.snapshot_url);
      const text = el("span", { class: "when" }, `${when(r.time)} · ${title(r.panel)} · ${OUTCOME[r.outcome] || r.outcome}`);
      if (r.clip_url) {
        const clip = el("a", { href: r.clip_url, target: "_blank", rel: "noopener" },
          `clip ${Math.round(r.clip_seconds || 0)} s`);
        text.append(" · ", clip);
      }
      li.append(thumb, text);
      rings.append(li);
    }
  }
  if (!rings.children.length) rings.innerHTML = '<li class="muted">none yet</li>';
}

function render(s) {
  lastStatus = s;
  if (s.linger_seconds != null) linger = s.linger_seconds;
  const sip = $("#sip");
  sip.textContent = "SIP " + s.sip.state + (s.sip.reason ? ": " + s.sip.reason : "");
  sip.className = "pill " + (s.sip.registered ? "ok" : "bad");
  $("#streaming").checked = s.streaming_allowed;
  renderRingAlert(s);
  const cams = [];
  for (const p of s.panels) {
    const c = panels.get(p.name) || makePanel(p);
    const st = $(".state", c.card);
    const { text, cls } = stateText(c, p);
    st.textContent = text;
    st.className = "pill state state-" + cls;
    c.since.textContent = p.call_since ? "call since " + clock(p.call_since) : "";
    c.talk.update(p);
    const dl = $("dl", c.facts);
    dl.replaceChildren();
    fact(dl, "DEVADDR", p.devaddr);
    fact(dl, "picture", p.width ? `${p.width}×${p.height} @ ${p.fps ? p.fps.toFixed(1) : "?"} fps` : null);
    fact(dl, "viewers", Object.entries(p.viewers_by_output || {}).map(([k, v]) => `${k} ${v}`).join(", ") || "0");
    fact(dl, "last ring", when(p.last_ring));
    fact(dl, "calls", p.calls_started);
    if (p.last_error) fact(dl, "last error", p.last_error);
    c.answer.hidden = ringData ? !ringData.pending.some((r) => r.panel === p.name) : !s.ringing;
    if (p.ha_camera) cams.push(p.ha_camera);
  }
  const ha = $("#ha-cameras");
  ha.replaceChildren(...cams.map(haCamera));
  $("#ha-box").hidden = cams.length === 0;
  renderRings(s);
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
    const s = await r.json();
    ringData = await fetchRings(s);
    render(s);
  } catch (e) {
    message("status unavailable: " + e.message, true);
  }
}

function ringPanel() {
  const name = $("#ring-alert").dataset.panel;
  return panels.get(name) || panels.values().next().value;
}

$("#ring-answer").onclick = () => {
  const c = ringPanel();
  if (c) action("Answer", () => post(c.base + "/ring-answer"))();
};
$("#ring-watch").onclick = () => { const c = ringPanel(); if (c && !c.watching) watch(c); };
$("#ring-unlock").onclick = () => {
  const c = ringPanel();
  if (c) action("Unlock " + c.name, () => post(c.base + "/unlock"))();
};
$("#ring-reject").onclick = () => {
  const c = ringPanel();
  if (c) action("Reject", () => post(c.base + "/reject"))();
};
$("#ring-dismiss").onclick = () => {
  dismissedRing = $("#ring-alert").dataset.at || null;
  $("#ring-alert").hidden = true;
};
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
    const c = panels.get(want) || panels.values().next().value;
    if (c) watch(c);
  }
});
setInterval(refresh, 1000);
setInterval(() => panels.forEach(refreshStill), 10000);
