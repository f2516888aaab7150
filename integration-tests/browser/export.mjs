// An exported page in Chromium from file:// with no server: `node export.mjs FILE SECOND` — it opens paused
// on the screen of that second (top line `second NN`), with no request leaving the file, and plays from there.
import { browser, check, waitSecond, state, time } from "./common.mjs";

const [file, second] = process.argv.slice(2);
const ctx = await browser();
const page = ctx.pages()[0] || (await ctx.newPage());
const outside = [];
await ctx.route("**/*", (route) => {
  const url = route.request().url();
  if (url.startsWith("file:") || url.startsWith("data:") || url.startsWith("blob:")) { return route.continue(); }
  outside.push(url);
  return route.abort();
});
const errors = [];
page.on("pageerror", (e) => errors.push(String(e)));
try {
  await page.goto("file://" + file);
  await page.waitForFunction(() => document.body.dataset.ready === "true");
  await waitSecond(page, Number(second), "opens on the screen at " + second + " s");
  check(await state(page) === "paused", "opens paused");
  await page.waitForTimeout(700);
  await waitSecond(page, Number(second), "still there");
  if (Number(second) < 55) {
    await page.click("#play");
    await page.waitForFunction((s) => Number(document.body.dataset.time) > s + 1, Number(second), { timeout: 10000 });
    check((await time(page)) > Number(second), "plays on from there");
  }
  check(outside.length === 0, "no request left the file: " + outside.join(", "));
  check(errors.length === 0, "no script errors: " + errors.join("; "));
} finally {
  await ctx.close();
}
