// Opens the bridge's status page in Debian's headless Chromium, clicks "Watch live" on the first
// panel and waits until its <video> has played past 2 s. Prints one JSON line with what it saw
// (firstFrameMs: click → the video's first played frame, polled every 50 ms); exits non-zero on
// failure. Usage: node play.mjs <page url> <screenshot.png> [timeout ms]
import { rmSync } from "node:fs";
import { launch, newProfile } from "./launch.mjs";

const [url, shot, timeoutArg] = process.argv.slice(2);
if (!url || !shot) {
  console.error("usage: node play.mjs <url> <screenshot.png> [timeout ms]");
  process.exit(2);
}
const timeout = Number(timeoutArg || 45000);
const profile = newProfile();
const started = Date.now();
let context;
let code = 0;
try {
  context = await launch(profile, { width: 1000, height: 800 });
  const page = context.pages()[0] || (await context.newPage());
  const logs = [];
  page.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on("response", (r) => { if (r.status() >= 400) logs.push(`${r.status()} ${r.url()}`); });
  await page.goto(url, { waitUntil: "load" });
  const mse = await page.evaluate(() =>
    window.MediaSource ? MediaSource.isTypeSupported('video/mp4; codecs="avc1.42c015,mp4a.40.2"') : false);
  await page.click('section.card button[data-action="watch"]');
  const clicked = Date.now();
  let state = {};
  let firstFrameMs = null;
  try {
    await page.waitForFunction(() => {
      const v = document.querySelector("video.live");
      return v && v.currentTime > 0 && v.videoWidth > 0;
    }, null, { timeout, polling: 50 });
    firstFrameMs = Date.now() - clicked;
    await page.waitForFunction(() => {
      const v = document.querySelector("video.live");
      return v && v.currentTime > 2 && v.videoWidth > 0;
    }, null, { timeout, polling: 250 });
  } catch (e) {
    code = 1;
    logs.push("wait: " + e.message.split("\n")[0]);
  }
  state = await page.evaluate(() => {
    const v = document.querySelector("video.live");
    const img = document.querySelector("img.live-mjpeg");
    return v
      ? { currentTime: v.currentTime, videoWidth: v.videoWidth, videoHeight: v.videoHeight, hls: !!window.Hls }
      : { fallback: !!img, message: document.querySelector("#message")?.textContent };
  });
  await page.screenshot({ path: shot });
  console.log(JSON.stringify({ ...state, mse, firstFrameMs, ms: Date.now() - started, logs: logs.slice(-20) }));
} catch (e) {
  console.error("play.mjs: " + e.message);
  code = 1;
} finally {
  if (context) await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(code);
