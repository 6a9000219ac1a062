// End-to-end test of templates and clones in the web UI against a real keel-hostd (libvirt):
// "Convert to template" on a stopped VM, the template badge on its page and in the VM list,
// Start refused for it, then a linked clone made through the Clone dialog. Each step is
// checked against what the same hostd's API answers.
//   KEEL_UI_URL        base URL of the UI
//   KEEL_UI_PASSWORD   root password
//   KEEL_CLONE_SRC     vmid of a stopped VM with a qcow2 disk (becomes the template)
//   KEEL_CLONE_VMID    vmid for the linked clone
//   KEEL_CLONE_NAME    name for the linked clone
//   CHROMIUM           browser binary (default /usr/bin/chromium)
// Prints "N passed, N failed" last; exits non-zero on any failure (screenshots in e2e/artifacts/).
import { BASE, PASSWORD, env, expect, open } from "./harness.mjs";

const [SRC, NEW_ID, NEW_NAME] = env("KEEL_CLONE_SRC", "KEEL_CLONE_VMID", "KEEL_CLONE_NAME");
const { page, step, finish } = await open("clones");

/** Call the API from the page (the UI's session cookie and CSRF token). */
async function api(method, path) {
  return page.evaluate(async ([method, path]) => {
    const r = await fetch(`/api/v1${path}`, { method, headers: { CSRFPreventionToken: sessionStorage.getItem("keel.csrf") ?? "" } });
    const text = await r.text();
    let body = text; try { body = JSON.parse(text); } catch { /* text */ }
    return { status: r.status, body };
  }, [method, path]);
}
const node = () => page.evaluate(() => sessionStorage.getItem("keel.node"));

await step("log in and open the stopped VM", async () => {
  await page.goto(`${BASE}/vms/${SRC}`);
  await page.getByLabel("User name").fill("root");
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { level: 1, name: new RegExp(`^${SRC} · `) }).waitFor();
  expect(await page.getByTestId("template-badge").count() === 0, "not a template yet");
});

await step("Convert to template", async () => {
  page.once("dialog", (d) => d.accept());
  await page.getByRole("button", { name: "Convert to template" }).click();
  await page.getByTestId("template-badge").waitFor();
  const cfg = await api("GET", `/nodes/${await node()}/vms/${SRC}`);
  expect(cfg.body.template === true, `API: template=${cfg.body.template}`);
  expect(await page.getByRole("button", { name: "Start", exact: true }).isDisabled(), "Start is disabled for a template");
  expect(await page.getByRole("button", { name: "Convert to template" }).count() === 0, "no second conversion offered");
});

await step("the VM list shows the template badge and offers Clone", async () => {
  await page.goto(`${BASE}/vms`);
  const row = page.getByRole("row").filter({ has: page.getByRole("link", { name: "Clone…" }) });
  await row.first().waitFor();
  expect((await row.first().textContent()).includes(SRC), "the template's row has the Clone link and badge");
  await row.first().getByTestId("template-badge").waitFor();
});

await step("a linked clone through the Clone dialog", async () => {
  await page.goto(`${BASE}/vms/${SRC}`);
  await page.getByRole("button", { name: "Clone…" }).click();
  const dlg = page.getByRole("dialog");
  await dlg.waitFor();
  expect(await dlg.getByLabel(/Linked clone/).isChecked(), "linked is the default for a template");
  await dlg.getByLabel("New VM ID").fill(NEW_ID);
  await dlg.getByLabel("Name").fill(NEW_NAME);
  await dlg.getByRole("button", { name: "Clone", exact: true }).click();
  await page.waitForURL(new RegExp(`/vms/${NEW_ID}$`), { timeout: 60_000 });
  await page.getByRole("heading", { level: 1, name: `${NEW_ID} · ${NEW_NAME}` }).waitFor();
  const cfg = await api("GET", `/nodes/${await node()}/vms/${NEW_ID}`);
  expect(cfg.status === 200 && cfg.body.template === false, `API: the clone exists and is no template: ${JSON.stringify(cfg.body).slice(0, 200)}`);
  expect(cfg.body.spec.disks[0].volume === `vm-${NEW_ID}-disk-0.qcow2`, `clone's disk: ${JSON.stringify(cfg.body.spec.disks)}`);
  expect(await page.getByRole("button", { name: "Start", exact: true }).isEnabled(), "the clone can be started");
});

await finish();
