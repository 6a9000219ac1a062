// End-to-end test of the Keel web UI against a real keel-hostd (no mocks).
//   KEEL_UI_URL       base URL of the UI (default https://127.0.0.1:8006: hostd serving ui/dist)
//   KEEL_UI_PASSWORD  root password (default: /var/lib/keel/root-password)
//   KEEL_UI_USER      user name (default root)
//   CHROMIUM          browser binary (default /usr/bin/chromium)
//   KEEL_UI_POOL      pool holding keel-live.iso (default local)
//   KEEL_UI_DEMO_NAME, KEEL_UI_DEMO_VMID  a running VM to look at (default keel-demo, 100)
//   KEEL_UI_VMID, KEEL_UI_VM_NAME         id and name of the VM the test creates
//                     (default: the first free id >= KEEL_E2E_MIN_VMID (500), e2e-ui-<id>)
// Prints "N passed, N failed" last; exits non-zero on any failure. Screenshots of failures go to
// e2e/artifacts/, screenshots of the main pages to e2e/artifacts/shots/ (KEEL_UI_SHOTS=docs/screenshots
// refreshes the documentation's pictures, on purpose only).
import { chromium } from "playwright-core";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const BASE = (process.env.KEEL_UI_URL ?? "https://127.0.0.1:8006").replace(/\/$/, "");
const USER = process.env.KEEL_UI_USER ?? "root";
const PASSWORD = process.env.KEEL_UI_PASSWORD ?? readFileSync("/var/lib/keel/root-password", "utf8").trim();
const POOL = process.env.KEEL_UI_POOL ?? "local";
const DEMO_NAME = process.env.KEEL_UI_DEMO_NAME ?? "keel-demo";
const DEMO_VMID = process.env.KEEL_UI_DEMO_VMID ?? "100";
const ARTIFACTS = join(here, "artifacts");
const SHOTS = process.env.KEEL_UI_SHOTS ?? join(ARTIFACTS, "shots");
mkdirSync(ARTIFACTS, { recursive: true });
mkdirSync(SHOTS, { recursive: true });

const userDir = mkdtempSync(join(tmpdir(), "keel-ui-e2e-"));
const browser = await chromium.launchPersistentContext(userDir, {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  ignoreHTTPSErrors: true,
  viewport: { width: 1280, height: 800 },
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const page = browser.pages()[0] ?? await browser.newPage();
page.setDefaultTimeout(20_000);
const consoleErrors = [];
page.on("pageerror", (e) => consoleErrors.push(String(e)));
// hostd serves a Content-Security-Policy: anything it blocks is reported on the console
const cspViolations = [];
page.on("console", (m) => {
  if (m.type() === "error" && /Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
});

let passed = 0, failed = 0, broken = false;
const ctx = {};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.log(...a);

async function step(name, fn, { always = false, critical = true } = {}) {
  if (broken && !always) { failed++; log(`FAIL ${name} (skipped: an earlier step failed)`); return; }
  const t0 = Date.now();
  try {
    await fn();
    passed++;
    log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
  } catch (e) {
    failed++;
    if (!always && critical) broken = true;
    log(`FAIL ${name}: ${e?.message?.split("\n")[0] ?? e}`);
    const f = join(ARTIFACTS, `${name.replace(/[^a-z0-9]+/gi, "-").toLowerCase()}.png`);
    await page.screenshot({ path: f, fullPage: true }).catch(() => {});
    log(`     screenshot: ${f}`);
  }
}
const shot = (name) => page.screenshot({ path: join(SHOTS, `${name}.png`) });
function expect(cond, msg) { if (!cond) throw new Error(msg); }

/** Call the API from the page (uses the session cookie and CSRF token of the UI). */
async function api(method, path) {
  return page.evaluate(async ([method, path]) => {
    const r = await fetch(`/api/v1${path}`, { method, headers: { CSRFPreventionToken: sessionStorage.getItem("keel.csrf") ?? "" } });
    const text = await r.text();
    let body = text; try { body = JSON.parse(text); } catch { /* text */ }
    return { status: r.status, body };
  }, [method, path]);
}

await step("a deep link while signed out asks to sign in to continue there", async () => {
  await page.goto(`${BASE}/tasks`);
  await page.getByRole("status").filter({ hasText: "Sign in to continue to /tasks" }).waitFor();
  expect(page.url().includes("next=%2Ftasks"), `next route kept: ${page.url()}`);
}, { critical: false });

await step("login page rejects a wrong password", async () => {
  await page.goto(`${BASE}/`);
  await page.getByLabel("User name").waitFor();
  await shot("login");
  await page.getByLabel("User name").fill(USER);
  await page.getByLabel("Password").fill("definitely-wrong");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").filter({ hasText: "Wrong user name or password" }).waitFor();
  expect((await page.getByLabel("Password").inputValue()) === "", "the refused password is cleared");
});

await step("log in and see the node overview", async () => {
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: /^Node / }).waitFor();
  await page.getByText("logical CPUs").waitFor();
  const tcg = page.getByTestId("tcg-reason");
  if (await tcg.count()) {
    const why = (await tcg.textContent()) ?? "";
    expect(!/Assertion|qemu-system/.test(why), `TCG reason in words: ${why}`);
  }
  await page.getByRole("meter", { name: `Pool ${POOL} used` }).waitFor();
  ctx.node = await page.evaluate(() => sessionStorage.getItem("keel.node"));
  await sleep(300);
  await shot("overview");
});

await step("node list shows this node, online and selected", async () => {
  const nodes = page.getByRole("group", { name: "Nodes" }).locator("button[data-node]");
  await nodes.first().waitFor();
  const got = await nodes.evaluateAll((bs) => bs.map((b) => [b.dataset.node, b.dataset.state, b.getAttribute("aria-pressed")]));
  expect(JSON.stringify(got) === JSON.stringify([[ctx.node, "online", "true"]]), `node list ${JSON.stringify(got)}`);
  expect((await page.getByTestId("current-node").textContent()) === ctx.node, "header names the node");
}, { critical: false });

await step("VM list shows the demo VM", async () => {
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Virtual machines" }).click();
  await page.getByRole("table", { name: "Virtual machines" }).waitFor();
  await page.getByRole("link", { name: DEMO_NAME }).waitFor();
  await page.getByLabel("Filter by name").fill("zzz-nothing");
  await page.getByText("No VM matches this filter").waitFor();
  await page.getByLabel("Filter by name").fill("");
  await page.getByLabel("State").selectOption("running");
  await page.getByRole("link", { name: DEMO_NAME }).waitFor();
  await page.getByLabel("State").selectOption("");
  await page.evaluate(() => document.activeElement?.blur());
  await shot("vm-list");
});

await step("create wizard validates and creates a VM booting keel-live.iso", async () => {
  await page.getByRole("link", { name: "Create VM" }).click();
  const vmidBox = page.getByLabel("VM ID");
  await page.waitForFunction(() => (document.querySelector("#f-vmid")?.value ?? "") !== "");
  ctx.vmid = Number(await vmidBox.inputValue());
  expect(ctx.vmid >= 100, `vmid prefilled: ${ctx.vmid}`);
  // Keep test VMs out of the operator's range: use the lowest free id ≥ KEEL_E2E_MIN_VMID (500).
  const minId = Number(process.env.KEEL_E2E_MIN_VMID ?? 500);
  if (process.env.KEEL_UI_VMID) {
    ctx.vmid = Number(process.env.KEEL_UI_VMID);
    await vmidBox.fill(String(ctx.vmid));
  } else if (ctx.vmid < minId) {
    const used = new Set((await api("GET", `/nodes/${ctx.node}/vms`)).body.map((v) => v.vmid));
    ctx.vmid = minId;
    while (used.has(ctx.vmid)) ctx.vmid++;
    await vmidBox.fill(String(ctx.vmid));
  }
  ctx.name = process.env.KEEL_UI_VM_NAME ?? `e2e-ui-${ctx.vmid}`;
  await page.getByLabel("Name").fill("-bad name");
  await page.getByRole("button", { name: "Next" }).click();
  await page.locator("#f-name-error").waitFor();
  await page.getByLabel("Name").fill(ctx.name);
  // a vmid already used is refused at this first step, naming the VM that has it
  await vmidBox.fill(String(DEMO_VMID));
  await page.getByRole("button", { name: "Next" }).click();
  await page.locator("#f-vmid-error").filter({ hasText: `already used by VM "${DEMO_NAME}"` }).waitFor();
  await vmidBox.fill(String(ctx.vmid));
  await page.getByRole("button", { name: "Next" }).click();
  await page.getByLabel("vCPUs").fill("1");
  await page.getByLabel("Memory (MiB)").fill("8");
  await page.getByRole("button", { name: "Next" }).click();
  await page.locator("#f-memory_mib-error").filter({ hasText: "16" }).waitFor();
  await page.getByLabel("Memory (MiB)").fill("256");
  await page.getByRole("button", { name: "Next" }).click();
  const addDisk = page.getByRole("checkbox", { name: "Add a new disk" });
  expect(await addDisk.isChecked(), "a new disk is added by default");
  // the size hint follows the number typed
  await page.getByLabel("Disk size (MiB)").fill("20480");
  await page.locator("#f-disks_0__size_mib-hint").filter({ hasText: "20480 MiB = 20.0 GiB." }).waitFor();
  await page.getByLabel("Disk size (MiB)").fill("16");
  await page.locator("#f-disks_0__size_mib-hint").filter({ hasText: "16 MiB" }).waitFor();
  await page.getByLabel("CD-ROM ISO").selectOption(`${POOL}/keel-live.iso`);
  await page.getByRole("button", { name: "Next" }).click();
  await page.getByRole("checkbox", { name: "Add a network interface" }).waitFor();
  await page.getByRole("button", { name: "Next" }).click();
  const start = page.getByRole("checkbox", { name: "Start after create" });
  expect(await start.isChecked(), "start after create is checked");
  await shot("create-wizard");
  await page.getByRole("button", { name: "Create VM" }).click();
  await page.waitForURL(new RegExp(`/vms/${ctx.vmid}$`), { timeout: 90_000 });
  ctx.created = true;
});

await step("the new VM reaches running", async () => {
  await page.getByRole("heading", { name: `${ctx.vmid} · ${ctx.name}` }).waitFor();
  await page.locator(".page-head .badge", { hasText: "Running" }).waitFor({ timeout: 90_000 });
  expect(await page.getByRole("button", { name: "Start", exact: true }).isDisabled(), "Start is disabled while running");
  expect(await page.getByRole("button", { name: "Stop", exact: true }).isEnabled(), "Stop is enabled while running");
});

await step("console tab shows a live noVNC screen", async () => {
  await page.getByRole("tab", { name: "Console" }).click();
  await page.locator(".console .badge", { hasText: "Connected" }).waitFor({ timeout: 30_000 });
  const canvas = page.locator(".console-screen canvas");
  await canvas.waitFor();
  const snap = async () => createHash("sha256").update(await canvas.evaluate((c) => c.toDataURL("image/png"))).digest("hex");
  // The guest prints "KEEL-LIVE: tick N" every 2 s once booted (TCG boots take a while).
  let first = await snap();
  let changed = false;
  for (let i = 0; i < 30 && !changed; i++) {
    await sleep(3000);
    const next = await snap();
    if (next !== first) changed = true; else first = next;
  }
  expect(changed, "canvas content changed within 90 s");
  await sleep(4000);
  await shot("vm-console");
}, { critical: false });

await step("serial tab shows the guest's serial output", async () => {
  await page.getByRole("tab", { name: "Serial" }).click();
  await page.getByLabel("Serial console output").waitFor();
  await page.waitForFunction(() => (document.querySelector(".serial")?.textContent ?? "").includes("KEEL-LIVE"), null, { timeout: 60_000 });
}, { critical: false });

await step("stop the VM", async () => {
  await page.getByRole("tab", { name: "Summary" }).click();
  await page.getByRole("button", { name: "Stop", exact: true }).click();
  // "Stop: done." is shown when the task ends, then clears itself after a few seconds
  const done = page.getByRole("status").filter({ hasText: "Stop: done." });
  await done.waitFor({ timeout: 60_000 });
  await page.locator(".page-head .badge", { hasText: "Stopped" }).waitFor({ timeout: 60_000 });
  await done.waitFor({ state: "detached", timeout: 10_000 });
});

await step("summary says the stopped VM's guest agent cannot answer", async () => {
  const panel = page.locator('[aria-label="Guest agent"]');
  await panel.locator('[data-agent-state="not-running"]').waitFor({ timeout: 30_000 });
  await panel.getByText("its guest agent answers only while it runs").waitFor();
}, { critical: false });

await step("delete the VM with typed confirmation", async () => {
  await page.getByRole("button", { name: "Delete…" }).click();
  const dialog = page.getByRole("dialog", { name: `Delete VM ${ctx.vmid}` });
  await dialog.waitFor();
  const del = dialog.getByRole("button", { name: "Delete VM" });
  expect(await del.isDisabled(), "Delete is disabled before the name is typed");
  await dialog.getByLabel(/Type the VM name/).fill(ctx.name.slice(0, -1));
  expect(await del.isDisabled(), "Delete stays disabled with a wrong name");
  await dialog.getByLabel(/Type the VM name/).fill(ctx.name);
  await del.click();
  await page.waitForURL(/\/vms$/, { timeout: 60_000 });
  await page.getByTestId("flash").filter({ hasText: `VM ${ctx.vmid} (${ctx.name}) deleted.` }).waitFor();
  await page.getByRole("link", { name: DEMO_NAME }).waitFor();
  expect(await page.getByRole("link", { name: ctx.name }).count() === 0, "deleted VM is gone from the list");
  ctx.created = false;
});

await step("tasks page lists create, stop and delete with logs", async () => {
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Tasks" }).click();
  await page.getByRole("table", { name: "Tasks" }).waitFor();
  for (const kind of ["vmcreate", "vmstop", "vmdelete"]) {
    await page.locator(`tr[data-kind="${kind}"][data-target="${ctx.vmid}"]`).first().waitFor();
  }
  await page.locator(`tr[data-kind="vmcreate"][data-target="${ctx.vmid}"] a`).first().click();
  const logPanel = page.getByRole("complementary", { name: "Task log" });
  await logPanel.waitFor();
  await logPanel.locator(".badge", { hasText: "OK" }).waitFor();
  await page.waitForFunction(() => !(document.querySelector(".task-log .log")?.textContent ?? "").includes("(no log lines)"));
  // log times are 24-hour HH:MM:SS, like the table's
  const lines = ((await logPanel.locator(".log").textContent()) ?? "").split("\n").filter((l) => l.trim());
  expect(lines.length > 0 && lines.every((l) => /^\d\d:\d\d:\d\d  /.test(l)), `log times: ${lines.slice(0, 3).join(" | ")}`);
  // the log panel sits beside the tasks table, not over it
  // (the table's visible right edge: clipped by any scrolling ancestor), in a narrow window
  await page.setViewportSize({ width: 1024, height: 800 });
  const [right, left] = await page.evaluate(() => {
    const t = document.querySelector('table[aria-label="Tasks"]');
    let r = t.getBoundingClientRect().right;
    for (let e = t.parentElement; e && e !== document.body; e = e.parentElement)
      if (getComputedStyle(e).overflowX !== "visible") r = Math.min(r, e.getBoundingClientRect().right);
    return [r, document.querySelector(".task-log").getBoundingClientRect().left];
  });
  await page.setViewportSize({ width: 1280, height: 800 });
  expect(right <= left + 1, `the tasks table (visible to x=${right}) runs under the log panel (x=${left})`);
  await shot("tasks");
});

await step("storage page lists pools and volumes with upload", async () => {
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Storage" }).click();
  await page.getByRole("table", { name: "Storage pools" }).getByRole("link", { name: POOL, exact: true }).click();
  await page.getByRole("table", { name: `Volumes in ${POOL}` }).getByText("keel-live.iso").waitFor();
  // the demo VM boots from keel-live.iso: the volume says so and cannot be deleted
  await page.getByTestId("used-by-keel-live.iso").filter({ hasText: `VM ${DEMO_VMID} (${DEMO_NAME})` }).waitFor();
  expect(await page.getByRole("button", { name: "Delete volume keel-live.iso" }).isDisabled(), "Delete of a volume in use is disabled");
  await page.getByLabel("ISO or disk image").waitFor();
  await shot("storage");
}, { critical: false });

await step("upload an ISO with progress, then delete the volume", async () => {
  const name = `e2e-upload-${process.pid}.iso`;
  const file = join(userDir, name);
  writeFileSync(file, Buffer.alloc(3 * 1024 * 1024, 0x4b));
  await page.getByLabel("ISO or disk image").setInputFiles(file);
  await page.getByRole("button", { name: `Upload to ${POOL}` }).click();
  await page.getByRole("status").filter({ hasText: `${name} uploaded to ${POOL}` }).waitFor({ timeout: 60_000 });
  const table = page.getByRole("table", { name: `Volumes in ${POOL}` });
  await table.getByText(name).waitFor();
  await table.getByRole("button", { name: `Delete volume ${name}` }).click();
  const dialog = page.getByRole("dialog", { name: `Delete volume ${name}` });
  await dialog.getByRole("button", { name: "Delete volume" }).click();
  await dialog.waitFor({ state: "detached" });
  await table.getByText(name).waitFor({ state: "detached" });
}, { critical: false });

await step("Create pool…: an lvm-thin pool on a volume group this node lacks is refused, a dir pool is made and deleted", async () => {
  const name = `e2e-${process.pid}`;
  const dir = join(userDir, "pool-dir");
  mkdirSync(dir, { recursive: true });
  await page.getByRole("button", { name: "Create pool…" }).click();
  let dialog = page.getByRole("dialog", { name: "Create pool" });
  await dialog.getByLabel("Name").fill(name);
  await dialog.getByLabel("Volume group").fill("no-such-vg");
  await dialog.getByLabel("Size").fill("99%");
  await dialog.getByRole("alert").filter({ hasText: "1% to 95%" }).waitFor();
  expect(await dialog.getByRole("button", { name: "Create" }).isDisabled(), "Create is disabled while the size is out of range");
  await dialog.getByLabel("Size").fill("50%");
  await dialog.getByRole("button", { name: "Create" }).click();
  // the API's own words, before any task exists
  await dialog.getByRole("alert").filter({ hasText: 'volume group "no-such-vg" does not exist on this node' }).waitFor();
  await dialog.getByLabel("Type").selectOption("dir");
  await dialog.getByLabel("Directory").fill(dir);
  await dialog.getByRole("button", { name: "Create" }).click();
  await dialog.waitFor({ state: "detached", timeout: 60_000 });
  // the new pool is listed and selected, empty
  const row = page.getByRole("table", { name: "Storage pools" }).getByRole("row").filter({ hasText: name });
  await row.getByText(dir).waitFor();
  await page.getByRole("heading", { name: `Volumes in ${name}` }).waitFor();
  await shot("storage-pool-created");
  await page.getByRole("button", { name: `Delete pool ${name}` }).click();
  dialog = page.getByRole("dialog", { name: `Delete pool ${name}` });
  await dialog.getByText("the directory").waitFor();
  await dialog.getByRole("button", { name: "Delete pool" }).click();
  await dialog.waitFor({ state: "detached", timeout: 60_000 });
  await row.waitFor({ state: "detached" });
}, { critical: false });

await step("VM page of the demo VM with its console", async () => {
  // through the UI, not a reload: the recent-tasks bar (this session's tasks) stays shown
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Virtual machines" }).click();
  await page.getByRole("link", { name: DEMO_NAME }).click();
  await page.getByRole("tab", { name: "Console" }).click();
  expect(page.url().endsWith(`/vms/${DEMO_VMID}?tab=console`), `console tab URL: ${page.url()}`);
  await page.locator(".console .badge", { hasText: "Connected" }).waitFor({ timeout: 30_000 });
  // scrolled into view (as focusing the console does), its bottom edge is not under the fixed
  // recent-tasks bar
  await page.locator(".taskbar").waitFor();
  await page.setViewportSize({ width: 1280, height: 600 }); // a laptop's window: the page scrolls
  const hit = await page.evaluate(() => {
    const c = document.querySelector(".console-screen");
    c.scrollIntoView({ block: "end" });
    const r = c.getBoundingClientRect();
    const e = document.elementFromPoint(r.left + r.width / 2, r.bottom - 3);
    return { inside: !!e && c.contains(e), at: e?.className ?? String(e) };
  });
  await page.setViewportSize({ width: 1280, height: 800 });
  expect(hit.inside, `the console's bottom edge is covered by ${hit.at}`);
  await sleep(3000);
  await shot("vm-page-demo-console");
}, { critical: false });

await step("summary of the demo VM shows its guest agent's host name, OS and addresses", async () => {
  // the demo VM has the agent channel; the live ISO's qemu-ga answers (iso/live/README.md)
  await page.goto(`${BASE}/vms/${DEMO_VMID}`);
  const panel = page.locator('[aria-label="Guest agent"]');
  await panel.locator('[data-agent-state="ok"]').waitFor({ timeout: 90_000 });
  await panel.getByText("keel-live", { exact: true }).waitFor();
  await panel.getByText("Keel live guest 1 (busybox)").waitFor();
  await panel.getByRole("table", { name: "Guest addresses" }).getByText("127.0.0.1/8").waitFor();
  await shot("vm-guest-agent");
}, { critical: false });

/** Pixels of a uPlot chart's canvas in a line's colour (rgb within 12): the series is drawn. */
async function chartPixels(testid, rgb) {
  return page.getByTestId(testid).locator("canvas").evaluate((c, rgb) => {
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i + 3] > 200 && Math.abs(d[i] - rgb[0]) < 12 && Math.abs(d[i + 1] - rgb[1]) < 12 && Math.abs(d[i + 2] - rgb[2]) < 12) n++;
    }
    return n;
  }, rgb);
}
const LINE_BLUE = [0x1f, 0x6f, 0xb2];

await step("performance graphs of the demo VM and of the node draw their samples", async () => {
  // hostd samples every 10 s by default: the demo VM has run since before this script
  await page.goto(`${BASE}/vms/${DEMO_VMID}`);
  await page.getByRole("tab", { name: "Performance" }).click();
  expect(page.url().endsWith(`/vms/${DEMO_VMID}?tab=performance`), `performance tab URL: ${page.url()}`);
  for (const id of ["chart-cpu", "chart-memory", "chart-disk", "chart-net"]) {
    await page.getByTestId(id).locator("canvas").waitFor();
  }
  // the CPU chart holds the API's points and draws its line
  const api1 = await api("GET", `/nodes/${ctx.node}/vms/${DEMO_VMID}/metrics?range=hour`);
  expect(api1.status === 200 && api1.body.points.some((p) => p.cpu > 0), `VM metrics: ${JSON.stringify(api1.body)}`);
  await page.waitForFunction(() => Number(document.querySelector("[data-testid=chart-cpu]")?.dataset.points ?? 0) >= 1);
  expect(await chartPixels("chart-cpu", LINE_BLUE) > 5, "the CPU line is drawn");
  expect(await chartPixels("chart-memory", LINE_BLUE) > 5, "the used-memory line is drawn");
  await shot("vm-performance");
  // another range: the selector reads that range's ring
  await page.getByRole("radio", { name: "Day" }).click();
  await page.getByRole("radio", { name: "Day", checked: true }).waitFor();
  await page.getByText("one point per 5 min").waitFor();
  expect(await chartPixels("chart-cpu", LINE_BLUE) > 0, "the day's CPU point is drawn");
  // the node's graphs on the overview
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Overview" }).click();
  await page.getByRole("heading", { name: /^Node / }).waitFor();
  await page.getByTestId("chart-memory").locator("canvas").waitFor();
  await page.waitForFunction(() => Number(document.querySelector("[data-testid=chart-memory]")?.dataset.points ?? 0) >= 1);
  expect(await chartPixels("chart-memory", LINE_BLUE) > 5, "the node's used-memory line is drawn");
}, { critical: false });

await step("an expired session returns to the login page and back", async () => {
  await browser.clearCookies();
  await page.goto(`${BASE}/tasks`);
  await page.getByText("Your session expired").waitFor();
  expect(page.url().includes("next=%2Ftasks"), `next route kept: ${page.url()}`);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(/\/tasks$/);
  await page.getByRole("table", { name: "Tasks" }).waitFor();
});

await step("log out", async () => {
  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByText("You are signed out").waitFor();
}, { always: false });

// Cleanup: never leave the test VM behind, even after a failure.
if (ctx.created && ctx.vmid && ctx.node) {
  await step("cleanup of the test VM", async () => {
    if (!(await page.evaluate(() => !!sessionStorage.getItem("keel.csrf")))) {
      await page.goto(`${BASE}/login`);
      await page.getByLabel("Password").fill(PASSWORD);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByRole("heading", { name: /^Node / }).waitFor();
    }
    const p = `/nodes/${ctx.node}/vms/${ctx.vmid}`;
    await api("POST", `${p}/status/stop`);
    for (let i = 0; i < 30; i++) {
      const s = await api("GET", `${p}/status/current`);
      if (s.status !== 200 || s.body.state === "stopped") break;
      await sleep(1000);
    }
    const d = await api("DELETE", `${p}?purge_volumes=true`);
    expect(d.status === 202 || d.status === 404, `delete answered ${d.status}`);
  }, { always: true });
}

await step("everything above ran under hostd's Content-Security-Policy, nothing blocked", async () => {
  const r = await page.request.get(`${BASE}/`);
  const csp = r.headers()["content-security-policy"] ?? "";
  expect(csp.includes("frame-ancestors 'none'") && csp.includes("script-src 'self'"), `CSP header: ${csp}`);
  expect(r.headers()["x-frame-options"] === "DENY", "X-Frame-Options DENY");
  expect(cspViolations.length === 0, `CSP violations: ${cspViolations.join(" | ")}`);
}, { always: true });

if (consoleErrors.length) log(`page errors: ${consoleErrors.join(" | ")}`);
await browser.close();
rmSync(userDir, { recursive: true, force: true });
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
