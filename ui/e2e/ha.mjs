// End-to-end test of the High availability page against a Keel-formed netns cluster (real
// corosync, Pacemaker, libvirtd; no mocks), run by tests/tests/netns_ha.rs once every node has
// passed a fence test: the shared pool is seen "ok" by every node and a pool on a missing
// directory is refused; HA on for a VM with a disk on node-local storage is refused with the
// reason; HA on for a VM on the shared pool through the dialog, the VM shown running under
// Pacemaker; the what-if preview of its node's failure names where it would restart; placement
// rules; node maintenance of an idle node (stopped VMs included: the request says so) and its end (through the end dialog, bringing VMs back); HA off; a fail count cleaned up; the VM
// page's HA and migration history gathered from every node.
//   KEEL_HA_VM        a running VM whose disk and ISO are on the shared pool (not HA)
//   KEEL_HA_LOCAL_VM  a VM with a disk on node-local storage
//   KEEL_HA_POOL      the shared pool's name
//   KEEL_HA_OTHER_VM  another HA VM (placement rules)
//   KEEL_HA_IDLE_NODE a node running no VM (maintenance)
// (and KEEL_UI_URL, KEEL_UI_PASSWORD, CHROMIUM: see harness.mjs)
import { BASE, env, expect, open, signIn } from "./harness.mjs";

const [VM, LOCAL_VM, POOL] = env("KEEL_HA_VM", "KEEL_HA_LOCAL_VM", "KEEL_HA_POOL");
const { page, step, finish } = await open("ha");
const haRow = (v) => page.getByRole("table", { name: "HA VMs" }).locator(`tr[data-vmid="${v}"]`);
const status = () => page.getByRole("status", { name: "HA task" });
const alert = () => page.getByRole("alert", { name: "HA task" });

await step("sign in and open High availability from the navigation", async () => {
  await signIn(page);
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "High availability" }).click();
  await page.getByRole("heading", { name: "High availability", level: 1 }).waitFor();
  expect(page.url() === `${BASE}/ha`, `at ${page.url()}`);
});

await step("the shared pool is usable on every node; a missing directory is refused", async () => {
  const r = page.getByRole("table", { name: "Shared pools" }).locator(`tr[data-pool="${POOL}"]`);
  await r.waitFor();
  expect(await r.locator('[data-ok="true"]').count() === 3, `not ok on 3 nodes: ${await r.innerText()}`);
  await page.getByLabel("Name", { exact: true }).fill("nowhere");
  await page.getByLabel("Path", { exact: true }).fill("/nonexistent/keel-ui");
  await page.getByRole("button", { name: "Add shared pool" }).click();
  await alert().getByText("is not a directory").waitFor();
});

await step("HA on for a VM with a node-local disk is refused with the reason", async () => {
  await page.getByRole("button", { name: "Make a VM highly available…" }).click();
  await page.getByLabel("VM", { exact: true }).selectOption(LOCAL_VM);
  await page.getByLabel("Priority").fill("x");
  await page.getByText("Priority is a whole number").waitFor();
  await page.getByLabel("Priority").fill("");
  await page.getByRole("button", { name: "Turn HA on" }).click();
  await alert().getByText("node-local storage").waitFor({ timeout: 60_000 });
});

await step("HA on through the dialog: the VM runs under Pacemaker", async () => {
  await page.getByRole("button", { name: "Make a VM highly available…" }).click();
  await page.getByLabel("VM", { exact: true }).selectOption(VM);
  await page.getByLabel("Priority").fill("5");
  await page.getByRole("button", { name: "Turn HA on" }).click();
  await status().getByText(`HA on for VM ${VM}: done.`).waitFor({ timeout: 90_000 });
  await haRow(VM).locator('td[data-node^="node"]').waitFor({ timeout: 30_000 });
  expect((await haRow(VM).innerText()).includes("started"), await haRow(VM).innerText());
});

await step("what-if: its node's failure restarts it on another node", async () => {
  const on = await haRow(VM).locator("td[data-node]").getAttribute("data-node");
  await page.getByLabel("Node", { exact: true }).selectOption(on);
  await page.getByRole("button", { name: "Simulate" }).click();
  const r = page.getByRole("table", { name: "What-if result" }).locator(`tr[data-vmid="${VM}"]`);
  await r.waitFor({ timeout: 30_000 });
  expect(await r.getAttribute("data-outcome") === "restarts", `outcome ${await r.getAttribute("data-outcome")}`);
  const after = await r.locator("td[data-after]").getAttribute("data-after");
  expect(after && after !== on, `would restart on ${after}, now on ${on}`);
});

await step("placement rules: a hard apart rule added, a contradicting one refused, then removed", async () => {
  const other = process.env.KEEL_HA_OTHER_VM;
  expect(other, "KEEL_HA_OTHER_VM (another HA VM) is required");
  await page.getByLabel("Rule id").fill("ui-apart");
  await page.getByLabel("Kind", { exact: true }).selectOption("apart");
  await page.getByLabel("VMs", { exact: true }).fill(VM);
  await page.getByText("An apart rule needs at least 2 VMs").waitFor();
  await page.getByLabel("VMs", { exact: true }).fill(`${VM},${other}`);
  await page.getByLabel("Hard").check();
  await page.getByRole("button", { name: "Add rule" }).click();
  await status().getByText("Rule ui-apart added.").waitFor();
  await page.getByRole("table", { name: "Placement rules" }).locator('tr[data-rule="ui-apart"]').waitFor();
  await page.getByLabel("Rule id").fill("ui-together");
  await page.getByLabel("Kind", { exact: true }).selectOption("together");
  await page.getByLabel("VMs", { exact: true }).fill(`${VM},${other}`);
  await page.getByLabel("Hard").check();
  await page.getByRole("button", { name: "Add rule" }).click();
  await alert().getByText("would have to run together").waitFor();
  await page.getByRole("table", { name: "Placement rules" }).locator('tr[data-rule="ui-apart"]').getByRole("button", { name: "Remove" }).click();
  await status().getByText("Rule ui-apart removed.").waitFor();
});

await step("node maintenance of an idle node, then its end", async () => {
  const idle = process.env.KEEL_HA_IDLE_NODE;
  expect(idle, "KEEL_HA_IDLE_NODE (a node running no VM) is required");
  const row = page.getByRole("table", { name: "Nodes" }).locator(`tr[data-node="${idle}"]`);
  await row.waitFor();
  expect(await row.getAttribute("data-standby") === "false", `already in standby: ${await row.innerText()}`);
  await row.getByRole("button", { name: "Maintenance", exact: true }).click();
  const start = page.getByRole("dialog", { name: `Maintenance of ${idle}` });
  const stopped = start.getByLabel("Also move the stopped VMs", { exact: false });
  expect(!(await stopped.isChecked()), "moving the stopped VMs is the default");
  await stopped.check();
  const sent = page.waitForRequest((r) => r.method() === "PUT" && r.url().endsWith(`/nodes/${idle}/maintenance`));
  await start.getByRole("button", { name: "Start maintenance" }).click();
  const body = JSON.parse((await sent).postData() ?? "{}");
  expect(body.enabled === true && body.include_stopped === true, `the request asked ${JSON.stringify(body)}`);
  await status().getByText(`Maintenance of ${idle}: done.`).waitFor({ timeout: 120_000 });
  await page.locator(`table[aria-label="Nodes"] tr[data-node="${idle}"][data-standby="true"]`).waitFor({ timeout: 30_000 });
  await row.getByRole("button", { name: "End maintenance" }).click();
  const dlg = page.getByRole("dialog", { name: `End maintenance of ${idle}` });
  await dlg.waitFor();
  const back = dlg.getByLabel("Bring back the VMs", { exact: false });
  expect(await back.isChecked(), "bringing the VMs back is not the default");
  await dlg.getByRole("button", { name: "End maintenance" }).click();
  // an idle node's maintenance moved nothing: the task says so and ends
  await status().getByText(`End of maintenance of ${idle}: done.`).waitFor({ timeout: 60_000 });
  await page.locator(`table[aria-label="Nodes"] tr[data-node="${idle}"][data-standby="false"]`).waitFor({ timeout: 30_000 });
});

await step("HA off: the VM leaves the table", async () => {
  await haRow(VM).getByRole("button", { name: "Turn HA off…" }).click();
  await page.getByRole("button", { name: "Turn HA off", exact: true }).click();
  await status().getByText(`HA off for VM ${VM}: done.`).waitFor({ timeout: 90_000 });
  await haRow(VM).waitFor({ state: "detached", timeout: 30_000 });
});

await step("VM 103's fail count cleaned up from the page", async () => {
  const other = process.env.KEEL_HA_OTHER_VM;
  const counts = haRow(other).locator("td[data-fail-counts]");
  expect((await counts.getAttribute("data-fail-counts")).includes(":1"), `fail counts: ${await counts.getAttribute("data-fail-counts")}`);
  await haRow(other).getByRole("button", { name: "Clean up" }).click();
  await status().getByText(`failures and fail counts of VM ${other} cleared`).waitFor({ timeout: 60_000 });
  await page.locator(`table[aria-label="HA VMs"] tr[data-vmid="${other}"] td[data-fail-counts=""]`).waitFor({ timeout: 30_000 });
});

await step("the VM page shows its HA and migration history from every node", async () => {
  await page.goto(`${BASE}/vms/${VM}`);
  await page.getByRole("tab", { name: "Tasks" }).click();
  const t = page.getByRole("table", { name: `HA and migration history of VM ${VM}` });
  await t.waitFor({ timeout: 30_000 });
  await t.locator('tr[data-kind="vmmigrate"]').first().waitFor({ timeout: 15_000 });
  const ha = await t.locator('tr[data-kind="vmha"]').count();
  expect(ha >= 2, `expected HA on and off in the history, found ${ha}: ${await t.innerText()}`);
});

await finish();
