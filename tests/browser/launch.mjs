// Shared by the browser tests (play.mjs, screens.mjs, talk.mjs): Debian's headless Chromium in a
// fresh profile (Playwright passes it as --user-data-dir), with the flags this closed network
// needs — no background networking, component updates, sync or QUIC — plus the caller's own.
import { chromium } from "playwright-core";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A new empty profile directory (the caller removes it). */
export function newProfile() {
  return mkdtempSync(join(tmpdir(), "c300x-chromium-"));
}

/** Chromium on `profile` with a `{ width, height }` viewport and `extraArgs`. */
export function launch(profile, viewport, extraArgs = []) {
  return chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--autoplay-policy=no-user-gesture-required",
      ...extraArgs,
    ],
  });
}
