// Shared by the browser tests: Debian's Chromium (CHROMIUM) with a fresh profile (PROFILE_DIR), driven by
// playwright-core; and reading the terminal text asciinema-player shows.
import { chromium } from "playwright-core";

export async function browser() {
  return chromium.launchPersistentContext(process.env.PROFILE_DIR, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
    viewport: { width: 1400, height: 900 },
  });
}

export function check(ok, what) {
  if (!ok) { throw new Error("assertion failed: " + what); }
  console.log("ok: " + what);
}

// The terminal's text lines.
export async function screen(page) {
  return page.evaluate(() => {
    const t = document.querySelector(".ap-term-text") || document.querySelector(".ap-term");
    return t ? t.innerText : "";
  });
}

// Waits until the terminal's top line is `second NN` for the given second.
export async function waitSecond(page, n, what) {
  const want = "second " + String(n).padStart(2, "0");
  try {
    await page.waitForFunction((w) => {
      const t = document.querySelector(".ap-term-text") || document.querySelector(".ap-term");
      return t && t.innerText.split("\n")[0].trim() === w;
    }, want, { timeout: 10000 });
  } catch (e) {
    throw new Error(what + ": the terminal never showed " + want + "; it shows:\n" + (await screen(page)));
  }
  console.log("ok: " + what + " (" + want + ")");
}

export async function time(page) {
  return Number(await page.evaluate(() => document.body.dataset.time));
}

export async function state(page) {
  return page.evaluate(() => document.body.dataset.state);
}
