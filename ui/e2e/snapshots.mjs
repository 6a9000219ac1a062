// End-to-end test of the VM page's Snapshots tab and the disk resize action against a real
// keel-hostd (no mocks): on a stopped VM with one qcow2 disk, take two snapshots (the second
// shown as the first one's child and current), roll back to the first, delete the second, see a
// bad name refused before sending; grow the disk from the Hardware tab and see shrinking
// refused with the API's message.
//   KEEL_UI_URL        base URL (hostd serving ui/dist)
//   KEEL_UI_PASSWORD   root's password
//   KEEL_UI_VMID       a stopped VM whose only disk (disk0) is a 16 MiB qcow2 volume
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
if (!PASSWORD || !VMID) {
  console.error("KEEL_UI_PASSWORD and KEEL_UI_VMID are required");
  process.exit(2);
}
const ARTIFACTS = join(here, "artifacts");
mkdirSync(ARTIFACTS, { recursive: true });

const userDir = mkdtempSync(join(tmpdir(), "keel-ui-snap-"));
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
// rollback and delete ask for confirmation
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
    const f = join(ARTIFACTS, `snapshots-${name.replace(/[^a-z0-9]+/gi, "-").toLowerCase()}.png`);
    await page.screenshot({ path: f, fullPage: true }).catch(() => {});
    log(`     screenshot: ${f}`);
  }
}
function expect(cond, msg) { if (!cond) throw new Error(msg); }
const table = () => page.getByRole("table", { name: "Snapshots" });
const row = (n) => table().locator(`tr[data-snapshot="${n}"]`);
const taskMsg = () => page.getByRole("status", { name: "Snapshot task" });

async function take(name, description) {
  await page.getByRole("button", { name: "Take snapshot…" }).click();
  await page.getByLabel("Name").fill(name);
  if (description) await page.getByLabel("Description").fill(description);
  await page.getByRole("button", { name: "Take snapshot", exact: true }).click();
  await page.getByText(`Snapshot ${name}: done.`).waitFor();
  await row(name).waitFor();
}

await step("sign in and open the Snapshots tab", async () => {
  await page.goto(`${BASE}/login`);
  await page.getByLabel("User name").fill("root");
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("navigation", { name: "Main" }).waitFor();
  await page.goto(`${BASE}/vms/${VMID}?tab=snapshots`);
  await page.getByRole("tab", { name: "Snapshots" }).waitFor();
  await page.getByText("No snapshots yet.").waitFor();
});

await step("a bad name is refused before sending; the memory box is off for a stopped VM", async () => {
  await page.getByRole("button", { name: "Take snapshot…" }).click();
  await page.getByLabel("Name").fill("1st");
  await page.getByText("Start with a letter").waitFor();
  expect(await page.getByRole("button", { name: "Take snapshot", exact: true }).isDisabled(), "submit enabled with a bad name");
  expect(await page.locator("#snap-memory").isDisabled(), "memory box enabled for a stopped VM");
  await page.getByRole("button", { name: "Cancel" }).click();
});

await step("take two snapshots: a tree with the current one marked", async () => {
  await take("first", "clean install");
  await take("second");
  const second = await row("second").innerText();
  expect(second.includes("└") && second.includes("current"), `second is not shown as first's current child: ${second}`);
  expect((await row("first").innerText()).includes("clean install"), "description missing");
});

await step("roll back to the first snapshot", async () => {
  await row("first").getByRole("button", { name: "Rollback" }).click();
  await page.getByText("Rollback to first: done.").waitFor();
  await row("first").getByText("current").waitFor();
});

await step("delete the second snapshot", async () => {
  await row("second").getByRole("button", { name: "Delete" }).click();
  await page.getByText("Delete second: done.").waitFor();
  await row("second").waitFor({ state: "detached" });
  expect(await taskMsg().count() === 1, "no task message shown");
});

await step("grow the disk from the Hardware tab; shrinking refused with the API's reason", async () => {
  await page.getByRole("tab", { name: "Hardware" }).click();
  const disks = page.getByRole("table", { name: "Disks" });
  await disks.getByRole("button", { name: "Resize…" }).click();
  await page.getByLabel("New size (MiB)").fill("8");
  await page.getByRole("button", { name: "Resize", exact: true }).click();
  await page.getByText("shrinking is not supported").waitFor();
  await page.getByLabel("New size (MiB)").fill("24");
  await page.getByRole("button", { name: "Resize", exact: true }).click();
  await disks.getByText("Resize disk0: done.").waitFor();
});

await step("no page errors", async () => {
  expect(pageErrors.length === 0, pageErrors.join("; "));
});

await browser.close();
rmSync(userDir, { recursive: true, force: true });
log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
