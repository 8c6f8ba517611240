// Screenshots of the status page in Debian's headless Chromium while a simulated ring is on:
// 1280×900 (camera left, controls and rings right) and 390×844 (a phone: one column), then
// "Stop" and the state pill's text. Prints one JSON line with what it measured; the PNGs go to
// <out dir> (kept as CI artifacts). Usage: node screens.mjs <page url> <out dir> [timeout ms]
import { rmSync } from "node:fs";
import { join } from "node:path";
import { launch, newProfile } from "./launch.mjs";

const [url, out, timeoutArg] = process.argv.slice(2);
if (!url || !out) {
  console.error("usage: node screens.mjs <url> <out dir> [timeout ms]");
  process.exit(2);
}
const timeout = Number(timeoutArg || 45000);
const profile = newProfile();
const result = { shots: [], logs: [] };
let context;
let code = 0;

// Where the main blocks are: is the side column right of the cameras, or below them?
async function layout(page) {
  return page.evaluate(() => {
    const box = (sel) => document.querySelector(sel).getBoundingClientRect();
    const panels = box("#panels");
    const side = box("#side");
    const alert = document.querySelector("#ring-alert");
    const text = document.body.innerText;
    return {
      sideRight: side.left >= panels.right - 1,
      sideBelow: side.top >= panels.bottom - 1,
      alertVisible: !alert.hidden && alert.getBoundingClientRect().height > 0,
      alertText: alert.innerText.replace(/\s+/g, " ").trim(),
      overflowX: document.documentElement.scrollWidth > window.innerWidth,
      state: document.querySelector(".card .state")?.textContent,
      text,
    };
  });
}

try {
  context = await launch(profile, { width: 1280, height: 900 });
  const page = context.pages()[0] || (await context.newPage());
  page.on("console", (m) => result.logs.push(`${m.type()}: ${m.text()}`));
  await page.goto(url, { waitUntil: "load" });
  await page.click('section.card button[data-action="watch"]');
  await page.waitForFunction(() => {
    const v = document.querySelector("video.live");
    return v && v.currentTime > 1 && v.videoWidth > 0;
  }, null, { timeout, polling: 250 });
  await page.click('button[data-action="demo-ring"]');
  await page.waitForSelector("#ring-alert:not([hidden])", { timeout: 15000 });
  // The ring's picture replaces the alert's icon; the recent rings show it too.
  result.ringPicture = await page
    .waitForSelector('[data-slot="ring-snapshot"] img', { timeout: 15000 })
    .then(() => true, () => false);
  result.ringThumbs = await page
    .waitForSelector("#rings .thumb img", { timeout: 5000 })
    .then(() => page.evaluate(() => document.querySelectorAll("#rings .thumb img").length), () => 0);
  // The call id the API reports must not appear on the page.
  const status = await page.evaluate(() => fetch("api/status").then((r) => r.json()));
  result.callId = status.panels[0].call_id;
  await page.waitForTimeout(500);
  const wide = await layout(page);
  const wideShot = join(out, "status-page-1280x900.png");
  await page.screenshot({ path: wideShot });
  result.shots.push(wideShot);

  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(800);
  const phone = await layout(page);
  const phoneShot = join(out, "status-page-390x844.png");
  await page.screenshot({ path: phoneShot });
  const phoneFull = join(out, "status-page-390x844-full.png");
  await page.screenshot({ path: phoneFull, fullPage: true });
  result.shots.push(phoneShot, phoneFull);

  // "Stop": the pill says "lingering N s", not "live · 1 viewer".
  await page.click('section.card button[data-action="watch"]');
  await page.waitForTimeout(1200);
  result.afterStop = await page.evaluate(() => document.querySelector(".card .state").textContent);

  for (const l of [wide, phone]) {
    l.callIdShown = !!result.callId && l.text.includes(result.callId);
    delete l.text;
  }
  result.wide = wide;
  result.phone = phone;
} catch (e) {
  result.error = e.message.split("\n")[0];
  code = 1;
} finally {
  if (context) await context.close();
  rmSync(profile, { recursive: true, force: true });
}
result.logs = result.logs.slice(-20);
console.log(JSON.stringify(result));
process.exit(code);
