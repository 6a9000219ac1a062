// Shared scaffolding of the browser tests in this folder: environment, a headless Chromium with
// a throw-away profile, numbered steps that stop at the first failure (with a screenshot in
// e2e/artifacts/), sign-in, and the closing "N passed, N failed" line the Rust drivers check.
//   KEEL_UI_URL       base URL (hostd serving ui/dist)
//   KEEL_UI_PASSWORD  root's password
//   CHROMIUM          browser binary (default /usr/bin/chromium)
import { chromium } from "playwright-core";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const BASE = (process.env.KEEL_UI_URL ?? "https://127.0.0.1:8006").replace(/\/$/, "");
export const PASSWORD = process.env.KEEL_UI_PASSWORD;
const ARTIFACTS = join(here, "artifacts");

/** The named environment variables, or exit 2 saying which are missing. */
export function env(...names) {
  const missing = ["KEEL_UI_PASSWORD", ...names].filter((n) => !process.env[n]);
  if (missing.length) {
    console.error(`${missing.join(", ")} ${missing.length === 1 ? "is" : "are"} required`);
    process.exit(2);
  }
  return names.map((n) => process.env[n]);
}

export function expect(cond, msg) { if (!cond) throw new Error(msg); }

/** Poll `fn` (async, returns a value) until `ok(value)`, up to `ms`; throws with `what` and the
 *  last value. For what a page fills in after it appears (a select's options, a computed field). */
export async function until(what, fn, ok, ms = 30_000) {
  const t0 = Date.now();
  let v = await fn();
  while (!ok(v)) {
    if (Date.now() - t0 > ms) throw new Error(`${what}: still ${JSON.stringify(v)} after ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 100));
    v = await fn();
  }
  return v;
}

/** A headless Chromium for test `name`: returns { page, step, finish }. */
export async function open(name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const userDir = mkdtempSync(join(tmpdir(), `keel-ui-${name}-`));
  const browser = await chromium.launchPersistentContext(userDir, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    ignoreHTTPSErrors: true,
    viewport: { width: 1280, height: 800 },
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = browser.pages()[0] ?? await browser.newPage();
  page.setDefaultTimeout(30_000);
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  // what the page met on the way, printed with a failed step (a blank page says nothing itself)
  const trouble = [];
  const note = (m) => { if (trouble.length < 20) trouble.push(m); };
  page.on("console", (m) => { if (m.type() === "error") note(`console: ${m.text()}`); });
  page.on("requestfailed", (r) => note(`request failed: ${r.method()} ${r.url()} (${r.failure()?.errorText ?? "?"})`));
  page.on("response", (r) => { if (r.status() >= 500) note(`response ${r.status()}: ${r.request().method()} ${r.url()}`); });
  let passed = 0, failed = 0, broken = false;
  async function step(title, fn) {
    if (broken) { failed++; console.log(`FAIL ${title} (skipped: an earlier step failed)`); return; }
    const t0 = Date.now();
    try {
      await fn();
      passed++;
      console.log(`ok   ${title} (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
    } catch (e) {
      failed++;
      broken = true;
      console.log(`FAIL ${title}: ${e?.message?.split("\n")[0] ?? e}`);
      const state = await page.evaluate(() => `${document.readyState}, ${document.body?.innerText?.length ?? 0} characters of text`).catch((x) => String(x));
      console.log(`     page: ${page.url()} (${state})`);
      for (const m of [...pageErrors.map((x) => `page error: ${x}`), ...trouble]) console.log(`     ${m}`);
      const f = join(ARTIFACTS, `${name}-${title.replace(/[^a-z0-9]+/gi, "-").toLowerCase()}.png`);
      await page.screenshot({ path: f, fullPage: true }).catch(() => {});
      console.log(`     screenshot: ${f}`);
    }
  }
  async function finish() {
    await step("no page errors", async () => expect(pageErrors.length === 0, pageErrors.join("; ")));
    await browser.close();
    rmSync(userDir, { recursive: true, force: true });
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed ? 1 : 0);
  }
  return { page, step, finish };
}

/** Sign in as root and wait for the main navigation. */
export async function signIn(page) {
  await page.goto(`${BASE}/login`);
  const user = page.getByLabel("User name");
  // Once seen under a loaded CI (two TCG labs beside it): the page stayed blank, nothing
  // failed. Say so, with what the page reports, and load it once more; a page that does not
  // render twice fails the step.
  if (!(await user.waitFor({ timeout: 30_000 }).then(() => true, () => false))) {
    const state = await page.evaluate(() => `${document.readyState}, scripts: ${[...document.scripts].map((x) => x.src).join(" ")}`).catch((x) => String(x));
    console.log(`note: the sign-in form did not render in 30 s (${page.url()}: ${state}); loading the page again`);
    await page.reload();
  }
  await user.fill("root");
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("navigation", { name: "Main" }).waitFor();
}
