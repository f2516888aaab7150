// The bearer token in Chromium: `node token.mjs BASE_URL TOKEN` against `auditrail play --web --token-file`:
// no token and a wrong one are 401; the right one (header, or `/?token=` once, which sets a cookie) lets in.
import { browser, check } from "./common.mjs";

const [base, token] = process.argv.slice(2);
const ctx = await browser();
const page = ctx.pages()[0] || (await ctx.newPage());
try {
  let r = await page.request.get(base + "/api/recordings");
  check(r.status() === 401, "no token: 401 (got " + r.status() + ")");
  r = await page.request.get(base + "/api/recordings", { headers: { Authorization: "Bearer wrong-token-0123456789" } });
  check(r.status() === 401, "a wrong token: 401 (got " + r.status() + ")");
  r = await page.goto(base + "/?token=wrong-token-0123456789");
  check(r.status() === 401, "a wrong token in the address: 401");
  r = await page.request.get(base + "/api/recordings", { headers: { Authorization: "Bearer " + token } });
  check(r.status() === 200, "the token as a bearer header: 200");
  await page.goto(base + "/?token=" + token);
  check(page.url() === base + "/", "the token leaves the address bar: " + page.url());
  await page.locator("table.recordings").waitFor();
  r = await page.goto(base + "/api/recordings");
  check(r.status() === 200, "the cookie lets the browser in");
} finally {
  await ctx.close();
}
