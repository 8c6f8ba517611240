// Push-to-talk in Debian's headless Chromium with a fake microphone playing <wav>: opens the
// status page, clicks "Watch live" on the first panel, waits for the live call, then holds its
// "Hold to talk" button for <hold ms> from the press (the page says "Talking…" once the socket
// is open: microphone, worklet and handshake take part of the hold). Prints one JSON
// line with what the page showed; exits non-zero on failure.
// Usage: node talk.mjs <page url> <wav> <hold ms> [timeout ms]
import { rmSync } from "node:fs";
import { launch, newProfile } from "./launch.mjs";

const [url, wav, holdArg, timeoutArg] = process.argv.slice(2);
if (!url || !wav || !holdArg) {
  console.error("usage: node talk.mjs <url> <wav> <hold ms> [timeout ms]");
  process.exit(2);
}
const hold = Number(holdArg);
const timeout = Number(timeoutArg || 30000);
const profile = newProfile();
let context;
let code = 0;
const out = {};
try {
  context = await launch(profile, { width: 1000, height: 800 }, [
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    `--use-file-for-fake-audio-capture=${wav}`,
  ]);
  const page = context.pages()[0] || (await context.newPage());
  const logs = [];
  page.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
  await page.goto(url, { waitUntil: "load" });
  const talk = 'section.controls button[data-action="talk"]';
  const state = "section.controls .talk-state";
  await page.waitForSelector(talk, { timeout });
  out.before = await page.textContent(state);
  await page.click('section.card button[data-action="watch"]');
  await page.waitForFunction((s) => document.querySelector(s)?.dataset.state === "ready", state,
    { timeout, polling: 100 });
  out.ready = await page.textContent(state);
  const box = await page.locator(talk).boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  const pressed = Date.now();
  await page.mouse.down();
  await page.waitForFunction((s) => document.querySelector(s)?.dataset.state === "talking", state,
    { timeout, polling: 20 });
  out.talking = await page.textContent(state);
  out.open_ms = Date.now() - pressed;
  await page.waitForTimeout(Math.max(0, hold - (Date.now() - pressed)));
  await page.mouse.up();
  out.held_ms = Date.now() - pressed;
  // The page shows the panel's state again once the socket closed.
  await page.waitForFunction((s) => document.querySelector(s)?.dataset.state !== "talking", state,
    { timeout, polling: 50 });
  out.after = await page.textContent(state);
  out.logs = logs.slice(-20);
} catch (e) {
  console.error("talk.mjs: " + e.message);
  code = 1;
} finally {
  console.log(JSON.stringify(out));
  if (context) await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(code);
