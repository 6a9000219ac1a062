// End-to-end test of hot-plug from the VM page's Hardware tab against a real keel-hostd (no
// mocks): on a running VM (the live ISO booted, one disk), add a virtio disk and a NIC, each
// reported as applied live, then remove both; no "Pending changes" badge at any point. Then a
// SATA disk, reported pending until the next cold boot, with the badge.
//   KEEL_UI_URL        base URL (hostd serving ui/dist)
//   KEEL_UI_PASSWORD   root's password
//   KEEL_UI_VMID       a running VM booted from the live ISO, with one disk (disk0)
//   KEEL_UI_BRIDGE     a host bridge for the NIC
//   CHROMIUM           browser binary (default /usr/bin/chromium)
// Prints "N passed, N failed" last; exits non-zero on any failure (screenshots in e2e/artifacts/).
import { chromium } from "playwright-core";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const BASE = (process.env.KEEL_UI_URL ?? "https://127.0.0.1:8006").replace(/\/$/, "");
const PASSWORD = process.env.KEEL_UI_PASSWORD;
const VMID = process.env.KEEL_UI_VMID;
const BRIDGE = process.env.KEEL_UI_BRIDGE;
if (!PASSWORD || !VMID || !BRIDGE) {
  console.error("KEEL_UI_PASSWORD, KEEL_UI_VMID and KEEL_UI_BRIDGE are required");
  process.exit(2);
}
const ARTIFACTS = join(here, "artifacts");
mkdirSync(ARTIFACTS, { recursive: true });

const userDir = mkdtempSync(join(tmpdir(), "keel-ui-hp-"));
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
// Remove asks for confirmation
page.on("dialog", (d) => d.accept());

let passed = 0, failed = 0, broken = false;
const log = (...a) => console.log(...a);
async function step(name, fn) {
  if (broken) { failed++; log(`FAIL ${name} (skipped: an earlier step failed)`); return; }
  const t0 = Date.now();
  try {
    await fn();
    passed++;
    log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
  } catch (e) {
    failed++;
    broken = true;
    log(`FAIL ${name}: ${e?.message?.split("\n")[0] ?? e}`);
    const f = join(ARTIFACTS, `hotplug-${name.replace(/[^a-z0-9]+/gi, "-").toLowerCase()}.png`);
    await page.screenshot({ path: f, fullPage: true }).catch(() => {});
    log(`     screenshot: ${f}`);
  }
}
function expect(cond, msg) { if (!cond) throw new Error(msg); }
const msg = () => page.getByRole("status", { name: "Device task" });
const badge = () => page.locator(".page-head").getByText("Pending changes");
const disks = () => page.getByRole("table", { name: "Disks" });
const nics = () => page.getByRole("table", { name: "Network interfaces" });
async function outcome(prefix) {
  await page.getByText(new RegExp(`^${prefix}: done, `)).waitFor();
  return msg().innerText();
}

await step("sign in and open the running VM's Hardware tab", async () => {
  await page.goto(`${BASE}/login`);
  await page.getByLabel("User name").fill("root");
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("navigation", { name: "Main" }).waitFor();
  await page.goto(`${BASE}/vms/${VMID}?tab=hardware`);
  await page.locator(".page-head").getByText(/running/i).waitFor();
  await disks().waitFor();
});

await step("add a virtio disk: attached live, no pending badge", async () => {
  await page.getByRole("button", { name: "Add disk…" }).click();
  await page.getByLabel("Size (MiB)").fill("0");
  await page.getByText("A whole number of MiB, at least 1.").waitFor();
  await page.getByLabel("Size (MiB)").fill("8");
  await page.getByRole("button", { name: "Add", exact: true }).click();
  const m = await outcome("Add disk");
  expect(m.includes("applied live: attached disk") && !m.includes("pending"), `outcome: ${m}`);
  await disks().getByText("disk1").waitFor();
  expect(await badge().count() === 0, "Pending changes badge after a live attach");
});

await step("add a NIC on the bridge: attached live", async () => {
  await page.getByRole("button", { name: "Add NIC…" }).click();
  await page.getByLabel("Attach to").selectOption("bridge");
  await page.getByLabel("Bridge").fill(BRIDGE);
  await page.getByRole("button", { name: "Add", exact: true }).click();
  const m = await outcome("Add NIC");
  expect(m.includes("applied live: attached NIC"), `outcome: ${m}`);
  await nics().getByText(`bridge ${BRIDGE}`).waitFor();
  expect(await badge().count() === 0, "Pending changes badge after a NIC attach");
});

await step("remove the NIC and the new disk: detached live", async () => {
  await nics().getByRole("button", { name: "Remove net0" }).click();
  let m = await outcome("Remove net0");
  expect(m.includes("detached"), `outcome: ${m}`);
  await page.getByText("No network interfaces.").waitFor();
  await disks().getByRole("button", { name: "Remove disk1" }).click();
  m = await outcome("Remove disk1");
  expect(m.includes("detached") && !m.includes("pending"), `outcome: ${m}`);
  await disks().getByText("disk1").waitFor({ state: "detached" });
  expect(await badge().count() === 0, "Pending changes badge after the detaches");
});

await step("a SATA disk is saved but pending, with the badge", async () => {
  await page.getByRole("button", { name: "Add disk…" }).click();
  await page.getByLabel("Size (MiB)").fill("8");
  await page.getByLabel("Bus").selectOption("sata");
  await page.getByRole("button", { name: "Add", exact: true }).click();
  const m = await outcome("Add disk");
  expect(m.includes("pending until the next cold boot") && m.includes("sata bus"), `outcome: ${m}`);
  await badge().waitFor();
});

await step("no page errors", async () => {
  expect(pageErrors.length === 0, pageErrors.join("; "));
});

await browser.close();
rmSync(userDir, { recursive: true, force: true });
log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
