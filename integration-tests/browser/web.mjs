// The web player in Chromium: `node web.mjs BASE_URL SID SCREENSHOT` against `auditrail play --web` serving
// a recordings directory with the counting recording SID (top line `second NN` at second NN, 60 s), its
// events (an `exec` at 12.5 s), a symlink `evil.cast` pointing out of the directory, and three damaged
// recordings: `broken.cast` (a line that is not JSON at line 5), `truncated.cast` (cut inside its last
// event, line 12) and `badheader.cast` (asciicast version 9).
import { browser, check, screen, waitSecond, time, state } from "./common.mjs";

const [base, sid, shot] = process.argv.slice(2);
const ctx = await browser();
const page = ctx.pages()[0] || (await ctx.newPage());
const errors = [];
page.on("pageerror", (e) => errors.push(String(e)));
try {
  // The list: sid, user, server, start, duration.
  await page.goto(base + "/");
  const row = page.locator(`tr[data-sid="${sid}"]`);
  await row.waitFor();
  const cells = await row.locator("td").allInnerTexts();
  check(cells[0] === sid, "list shows the sid: " + cells.join(" | "));
  check(cells[1] === "alice", "list shows the user");
  check(cells[2] === "db1", "list shows the server");
  check(cells[3] === "2023-11-14 22:13:20", "list shows the start");
  check(cells[4] === "1:00", "list shows the duration");

  // The player page, paused at 0.
  await row.locator("a").click();
  await page.waitForFunction(() => document.body.dataset.ready === "true");
  await waitSecond(page, 0, "opens paused at the start");

  // Play, then pause: the clock moves, then stops.
  await page.click("#play");
  await page.waitForFunction(() => Number(document.body.dataset.time) > 2.2, null, { timeout: 10000 });
  await page.click("#play");
  await page.waitForFunction(() => document.body.dataset.state === "paused");
  const t0 = await time(page);
  await page.waitForTimeout(1200);
  const t1 = await time(page);
  check(Math.abs(t1 - t0) < 0.01, `pause holds the time (${t0} then ${t1})`);
  await waitSecond(page, Math.floor(t1), "the screen at the pause time");

  // Seek with the bar.
  await page.$eval("#seek", (el) => { el.value = "30.4"; el.dispatchEvent(new Event("change")); });
  await waitSecond(page, 30, "seek bar to 30.4 s");
  check(await state(page) === "paused", "a seek keeps it paused");

  // The event timeline: the exec event at 12.5 s, clicked, seeks there.
  const ev = page.locator("#events button.event", { hasText: "exec command=ls -la" });
  await ev.waitFor();
  check((await ev.locator(".at").innerText()) === "0:12", "the exec event is at 0:12");
  await ev.click();
  await waitSecond(page, 12, "click on the exec event");
  check(Math.abs((await time(page)) - 12.5) < 0.2, "time is the event's");

  // Speed: 8×, then play: 5 recorded seconds pass in well under 5 s.
  await page.selectOption("#speed", "8");
  await page.click("#play");
  await page.waitForFunction(() => Number(document.body.dataset.time) > 20, null, { timeout: 4000 });
  await page.click("#play");
  check(true, "8× playback passed 20 s within 4 s");
  await page.$eval("#seek", (el) => { el.value = "45"; el.dispatchEvent(new Event("change")); });
  await waitSecond(page, 45, "seek bar to 45 s after a speed change");
  await page.screenshot({ path: shot });
  console.log("screenshot: " + shot);
  console.log("terminal at 45 s:\n" + (await screen(page)));

  // Paths never leave the directory; unknown sids are 404 pages linking to the list. (The browser resolves
  // a literal `/..` itself; the Rust side of this test sends those unresolved.)
  for (const path of [
    "/api/cast/..%2F..%2Fetc%2Fpasswd", "/api/cast/%2Fetc%2Fpasswd", "/play/..%2Fs1", "/api/events/evil",
    "/api/cast/evil", "/play/evil", "/api/events/..%2Fx", "/assets/..%2Fapp.js", "//etc/passwd",
    "/play/nope",
  ]) {
    const r = await page.request.get(base + path);
    check(r.status() === 404, `${path} is 404 (got ${r.status()})`);
  }
  await page.goto(base + "/play/nope");
  check((await page.locator("a[href='/']").count()) === 1, "the 404 page links to the list");

  // A damaged recording plays what is readable and says what is wrong and where.
  await page.goto(base + "/play/broken");
  await page.waitForFunction(() => document.body.dataset.ready === "true");
  await page.waitForFunction(() => !document.getElementById("problems").hidden, null, { timeout: 10000 });
  const problems = await page.locator("#problems").innerText();
  check(/broken\.cast:5: not an event/.test(problems), "problems name file:line: " + problems);
  await page.$eval("#seek", (el) => { el.value = "9"; el.dispatchEvent(new Event("change")); });
  await waitSecond(page, 9, "the damaged recording plays past the bad line");

  // Cut inside its last event (a recorder killed mid-write): plays up to there, says where it ends.
  await page.goto(base + "/play/truncated");
  await page.waitForFunction(() => document.body.dataset.ready === "true");
  await page.waitForFunction(() => !document.getElementById("problems").hidden, null, { timeout: 10000 });
  const cut = await page.locator("#problems").innerText();
  check(/truncated\.cast:12: truncated/.test(cut), "a truncated file names its last line: " + cut);
  await page.$eval("#seek", (el) => { el.value = "8.5"; el.dispatchEvent(new Event("change")); });
  await waitSecond(page, 8, "the truncated recording plays up to its cut");

  // A header that is not asciicast: the list says why beside the row; the page says it too.
  await page.goto(base + "/");
  const why = await page.locator(`tr[data-sid="badheader"] + tr .problem`).innerText();
  check(/badheader\.cast:1: asciicast version 9 is not supported/.test(why), "the list names the bad header: " + why);
  await page.goto(base + "/play/badheader");
  await page.waitForFunction(() => !document.getElementById("problems").hidden, null, { timeout: 10000 });
  const bad = await page.locator("#problems").innerText();
  check(/badheader\.cast:1: asciicast version 9/.test(bad), "the page names the bad header: " + bad);
  check(errors.length === 0, "no script errors: " + errors.join("; "));
} finally {
  await ctx.close();
}
