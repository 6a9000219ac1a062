// End-to-end test of the access pages against a real keel-hostd (no mocks): root creates a
// group, a user in it, grants the user VMUser on one VM and makes a privilege-separated token
// through the UI; the user then signs in and finds the pages and buttons it may not use hidden
// or disabled with the privilege they need, while its own VM's power buttons stay usable; it
// changes its own password (a short one refused before sending).
//   KEEL_UI_URL        base URL (hostd serving ui/dist)
//   KEEL_UI_PASSWORD   root's password
//   KEEL_UI_VMID       a running VM the test user is granted VMUser on
//   KEEL_UI_OTHER_VMID another VM the user must not see
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
const OTHER = process.env.KEEL_UI_OTHER_VMID;
if (!PASSWORD || !VMID || !OTHER) {
  console.error("KEEL_UI_PASSWORD, KEEL_UI_VMID and KEEL_UI_OTHER_VMID are required");
  process.exit(2);
}
const ARTIFACTS = join(here, "artifacts");
mkdirSync(ARTIFACTS, { recursive: true });
const USER = "e2e-vmuser";
const USER_PW = "e2e-vmuser-password";

const userDir = mkdtempSync(join(tmpdir(), "keel-ui-access-"));
const browser = await chromium.launchPersistentContext(userDir, {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  ignoreHTTPSErrors: true,
  viewport: { width: 1280, height: 800 },
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = browser.pages()[0] ?? await browser.newPage();
page.setDefaultTimeout(20_000);
const pageErrors = [];
page.on("pageerror", (e) => pageErrors.push(String(e)));

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
    const f = join(ARTIFACTS, `access-${name.replace(/[^a-z0-9]+/gi, "-").toLowerCase()}.png`);
    await page.screenshot({ path: f, fullPage: true }).catch(() => {});
    log(`     screenshot: ${f}`);
  }
}
function expect(cond, msg) { if (!cond) throw new Error(msg); }
const main = () => page.getByRole("navigation", { name: "Main" });

async function signIn(user, pw) {
  await page.goto(`${BASE}/login`);
  await page.getByLabel("User name").fill(user);
  await page.getByLabel("Password").fill(pw);
  await page.getByRole("button", { name: "Sign in" }).click();
  await main().waitFor();
}

await step("root opens the Access page", async () => {
  await signIn("root", PASSWORD);
  await main().getByRole("link", { name: "Access" }).click();
  await page.getByRole("heading", { name: "Access" }).waitFor();
  await page.getByRole("tab", { name: "Users" }).click();
  await page.getByRole("table", { name: "Users" }).getByText("root", { exact: true }).waitFor();
});

await step("root creates a group and a user in it", async () => {
  await page.getByRole("tab", { name: "Groups" }).click();
  await page.getByLabel("Group name").fill("e2e-ops");
  await page.getByRole("button", { name: "Add group" }).click();
  await page.getByRole("table", { name: "Groups" }).getByText("e2e-ops").waitFor();
  await page.getByRole("tab", { name: "Users" }).click();
  await page.getByLabel("User name").fill(USER);
  await page.getByLabel("Password (8+ characters)").fill(USER_PW);
  await page.getByLabel("Groups (comma-separated)").fill("e2e-ops");
  await page.getByRole("button", { name: "Add user" }).click();
  const row = page.getByRole("table", { name: "Users" }).getByRole("row").filter({ hasText: USER });
  await row.getByText("e2e-ops").waitFor();
});

await step("root grants VMUser on one VM", async () => {
  await page.getByRole("tab", { name: "Permissions" }).click();
  await page.getByLabel("Path", { exact: true }).fill("/vms/x");
  await page.getByRole("alert").filter({ hasText: "is not a VM id" }).waitFor();
  await page.getByLabel("Path", { exact: true }).fill(`/vms/${VMID}`);
  await page.getByLabel("Role", { exact: true }).selectOption("VMUser");
  await page.getByLabel("To", { exact: true }).selectOption("users");
  await page.getByLabel("Name", { exact: true }).fill(USER);
  await page.getByRole("button", { name: "Grant" }).click();
  const row = page.getByRole("table", { name: "ACL" }).getByRole("row").filter({ hasText: `/vms/${VMID}` });
  await row.getByRole("cell", { name: "VMUser", exact: true }).waitFor();
});

await step("sign out; the user signs in and sees no Cluster page", async () => {
  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByLabel("User name").waitFor();
  await signIn(USER, USER_PW);
  await main().getByRole("link", { name: "Access" }).waitFor();
  // the permissions arrive shortly after sign-in; the Cluster link must then be gone
  for (let i = 0; i < 50 && await main().getByRole("link", { name: "Cluster" }).count(); i++) await page.waitForTimeout(200);
  expect(await main().getByRole("link", { name: "Cluster" }).count() === 0, "the Cluster link is shown to a VM user");
});

await step("the VM list shows only the granted VM; Create VM is disabled with the reason", async () => {
  await main().getByRole("link", { name: "Virtual machines" }).click();
  const table = page.getByRole("table", { name: "Virtual machines" });
  await table.waitFor();
  await table.getByRole("cell", { name: VMID, exact: true }).waitFor();
  expect(await table.getByRole("cell", { name: OTHER, exact: true }).count() === 0, `VM ${OTHER} is listed`);
  const create = page.getByRole("button", { name: "Create VM" });
  await create.waitFor();
  expect(await create.isDisabled(), "Create VM is enabled");
  const why = await create.getAttribute("title");
  expect(why?.includes("VM.Allocate on /vms"), `Create VM title: ${why}`);
});

await step("its VM's power buttons are usable, Delete is disabled with the reason", async () => {
  await page.goto(`${BASE}/vms/${VMID}`);
  const stop = page.getByRole("toolbar", { name: "VM actions" }).getByRole("button", { name: "Stop", exact: true });
  await stop.waitFor();
  for (let i = 0; i < 50 && await stop.isDisabled(); i++) await page.waitForTimeout(200);
  expect(!(await stop.isDisabled()), "Stop is disabled for the VM user of a running VM");
  const d = page.getByRole("button", { name: "Delete…" });
  for (let i = 0; i < 50 && !(await d.getAttribute("title"))?.includes("VM.Allocate"); i++) await page.waitForTimeout(200);
  expect(await d.isDisabled(), "Delete is enabled");
  expect((await d.getAttribute("title"))?.includes(`VM.Allocate on /vms/${VMID}`), `Delete title: ${await d.getAttribute("title")}`);
});

await step("the Access page explains what the user may not see or change", async () => {
  await page.goto(`${BASE}/access?tab=users`);
  await page.getByTestId("denied").filter({ hasText: "Sys.Audit on /access" }).waitFor();
  const add = page.getByRole("button", { name: "Add user" });
  // the privileges load after the page: wait for the reason to appear
  for (let i = 0; i < 50 && !(await add.getAttribute("title")); i++) await page.waitForTimeout(200);
  expect(await add.isDisabled(), "Add user is enabled");
  expect((await add.getAttribute("title"))?.includes("User.Modify on /access"), "Add user's reason");
  await page.getByRole("tab", { name: "Permissions" }).click();
  const mine = page.getByRole("table", { name: "Your privileges" }).getByRole("row").filter({ hasText: `/vms/${VMID}` });
  await mine.getByText("VM.PowerMgmt").waitFor();
  expect(await page.getByRole("button", { name: "Grant" }).isDisabled(), "Grant is enabled");
});

await step("the user makes a privilege-separated API token", async () => {
  await page.getByRole("tab", { name: "Password and API tokens" }).click();
  await page.getByLabel("Token id").fill("ci");
  await page.getByLabel("Expires after (days, blank = never)").fill("0");
  await page.getByRole("alert").filter({ hasText: "whole number of days" }).waitFor();
  await page.getByLabel("Expires after (days, blank = never)").fill("30");
  await page.getByRole("button", { name: "Create token" }).click();
  await page.getByTestId("token-secret").filter({ hasText: `${USER}!ci=` }).waitFor();
  const row = page.getByRole("table", { name: "API tokens" }).getByRole("row").filter({ hasText: `${USER}!ci` });
  await row.getByText("yes", { exact: true }).waitFor();
});

await step("the user changes its own password; the old one stops working", async () => {
  const NEW_PW = `${USER_PW}-2`;
  const form = page.getByRole("form", { name: "Change your password" });
  await form.getByLabel("Current password").fill(USER_PW);
  await form.getByLabel("New password", { exact: true }).fill("short");
  await form.getByLabel("New password, again").fill("short");
  await form.getByRole("alert").filter({ hasText: "at least 8 characters" }).waitFor();
  expect(await form.getByRole("button", { name: "Change password" }).isDisabled(), "a short password can be sent");
  await form.getByLabel("New password", { exact: true }).fill(NEW_PW);
  await form.getByLabel("New password, again").fill(NEW_PW);
  await form.getByRole("button", { name: "Change password" }).click();
  await form.getByText("Password changed").waitFor();
  const tryLogin = async (pw) => (await page.request.post(`${BASE}/api/v1/access/ticket`, {
    data: { username: USER, password: pw }, failOnStatusCode: false })).status();
  expect(await tryLogin(NEW_PW) === 200, "the new password does not log in");
  expect(await tryLogin(USER_PW) === 401, "the old password still logs in");
});

if (pageErrors.length) { failed++; log(`FAIL page errors: ${pageErrors.join(" | ")}`); }
await browser.close();
rmSync(userDir, { recursive: true, force: true });
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
