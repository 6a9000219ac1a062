// End-to-end test of the VM page's Snapshots tab and the disk resize action against a real
// keel-hostd (no mocks): on a stopped VM with one qcow2 disk, take two snapshots (the second
// shown as the first one's child and current), roll back to the first, delete the second, see a
// bad name refused before sending; grow the disk from the Hardware tab and see shrinking
// refused with the API's message; clone a new VM from the remaining snapshot through its Clone…
// action (the clone dialog with the snapshot preset, linked clone not offered).
//   KEEL_UI_URL        base URL (hostd serving ui/dist)
//   KEEL_UI_PASSWORD   root's password
//   KEEL_UI_VMID       a stopped VM whose only disk (disk0) is a 16 MiB qcow2 volume
//   KEEL_UI_CLONE_VMID vmid for the clone made from the snapshot
//   CHROMIUM           browser binary (default /usr/bin/chromium)
// Prints "N passed, N failed" last; exits non-zero on any failure (screenshots in e2e/artifacts/).
import { BASE, env, expect, open, signIn } from "./harness.mjs";

const [VMID, CLONE_VMID] = env("KEEL_UI_VMID", "KEEL_UI_CLONE_VMID");
const { page, step, finish } = await open("snapshots");
page.on("dialog", (d) => d.accept()); // the rollback and delete confirmations
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
  await signIn(page);
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

await step("clone a new VM from the first snapshot", async () => {
  await row("first").getByRole("button", { name: "Clone…" }).click();
  const dlg = page.getByRole("dialog");
  await dlg.getByText(`from snapshot first`).waitFor();
  expect(await dlg.getByLabel(/Linked clone/).isDisabled(), "linked clone offered for a snapshot");
  await dlg.getByLabel("New VM ID").fill(CLONE_VMID);
  await dlg.getByRole("button", { name: "Clone", exact: true }).click();
  await page.waitForURL(new RegExp(`/vms/${CLONE_VMID}$`), { timeout: 60_000 });
  await page.getByRole("heading", { level: 1, name: new RegExp(`^${CLONE_VMID} · `) }).waitFor();
  expect(await page.getByRole("dialog").count() === 0, "the clone dialog is still open on the clone's page");
  await page.goto(`${BASE}/vms/${VMID}?tab=snapshots`);
  await row("first").waitFor();
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

await finish();
