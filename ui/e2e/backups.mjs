// End-to-end test of the VM page's Backups tab against a real keel-hostd (no mocks): on a
// stopped VM with one qcow2 disk and one dir backup target, take a full backup through the
// "Back up now" dialog and see it listed (kind, size, unverified), verify it (state "ok"
// shown), see a bad restore VM ID refused before sending, restore it into a new VM and see the
// task succeed and the new VM exist, then restore it over the (stopped) VM itself.
//   KEEL_UI_URL          base URL (hostd serving ui/dist)
//   KEEL_UI_PASSWORD     root's password
//   KEEL_UI_VMID         a stopped VM with one small qcow2 disk and no backups
//   KEEL_BACKUP_TARGET   the name of a dir backup target on the node
//   KEEL_RESTORE_VMID    a free VM id to restore into
//   KEEL_RESTORE_NAME    the restored VM's name
//   CHROMIUM             browser binary (default /usr/bin/chromium)
// Prints "N passed, N failed" last; exits non-zero on any failure (screenshots in e2e/artifacts/).
import { BASE, env, expect, open, signIn, until } from "./harness.mjs";

const [VMID, TARGET, NEW_VMID, NEW_NAME] = env("KEEL_UI_VMID", "KEEL_BACKUP_TARGET", "KEEL_RESTORE_VMID", "KEEL_RESTORE_NAME");
const { page, step, finish } = await open("backups");
const table = () => page.getByRole("table", { name: "Backups" });
const rows = () => table().locator("tbody tr");
let id = null;

await step("sign in and open the Backups tab", async () => {
  await signIn(page);
  await page.goto(`${BASE}/vms/${VMID}?tab=backups`);
  await page.getByRole("tab", { name: "Backups" }).waitFor();
  await page.getByText("No backups of this VM yet.").waitFor();
  expect(await page.getByRole("region", { name: "No backup target" }).count() === 0, "the no-target help is shown although a target exists");
});

await step("back up now (full) to the target: listed with kind, size and unverified", async () => {
  await page.getByRole("button", { name: "Back up now…" }).click();
  await page.getByLabel("Target", { exact: true }).selectOption(TARGET);
  await page.locator("#backup-full").check();
  await page.getByRole("button", { name: "Back up", exact: true }).click();
  await page.getByText(`Backup to ${TARGET}: done.`).waitFor({ timeout: 120_000 });
  await rows().first().waitFor();
  expect(await rows().count() === 1, `expected one backup, got ${await rows().count()}`);
  const r = rows().first();
  id = await r.getAttribute("data-backup");
  expect(/^\d{8}T\d{6}Z/.test(id ?? ""), `backup id ${id}`);
  const text = await r.innerText();
  expect(text.includes(TARGET) && text.includes("full") && text.includes("unverified"), `row: ${text}`);
  expect(/\d+(\.\d+)? (B|KiB|MiB)/.test(text), `no size in the row: ${text}`);
});

await step("verify it: state ok shown", async () => {
  const r = table().locator(`tr[data-backup="${id}"]`);
  await r.getByRole("button", { name: "Verify" }).click();
  await page.getByText(`Verify ${id}: done.`).waitFor({ timeout: 60_000 });
  await r.locator('td[data-verify="ok"]').waitFor();
  expect((await r.innerText()).includes("ok"), "verify state not shown");
});

await step("a bad new VM ID is refused before sending", async () => {
  await table().locator(`tr[data-backup="${id}"]`).getByRole("button", { name: "Restore…" }).click();
  const dlg = page.getByRole("dialog", { name: `Restore backup ${id} of VM ${VMID}` });
  await dlg.waitFor();
  const input = dlg.getByLabel("New VM ID");
  // the dialog asks for the next free VM ID when it opens; type only once it is filled in, the
  // way a person would, and say what the dialog shows if the error does not appear
  await page.waitForFunction(() => document.querySelector("#restore-vmid")?.value !== "", null, { timeout: 30_000 })
    .catch(() => {});
  await input.fill("12");
  const shown = await dlg.getByText("The new VM ID must be a number").waitFor({ timeout: 15_000 }).then(() => true, () => false);
  if (!shown) {
    const open = await dlg.isVisible();
    throw new Error(`no VM ID error after typing 12: dialog ${open ? "open" : "closed"}, field holds ` +
      `${open ? JSON.stringify(await input.inputValue()) : "-"}, dialog text: ${open ? JSON.stringify(await dlg.innerText()) : "-"}`);
  }
  expect(await dlg.getByRole("button", { name: "Restore", exact: true }).isDisabled(), "submit enabled with a bad VM ID");
  await dlg.getByRole("button", { name: "Cancel" }).click();
  await dlg.waitFor({ state: "detached" });
});

await step("restore it into a new VM: the task succeeds and the VM exists", async () => {
  await table().locator(`tr[data-backup="${id}"]`).getByRole("button", { name: "Restore…" }).click();
  await page.waitForFunction(() => document.querySelector("#restore-vmid")?.value !== "", null, { timeout: 30_000 })
    .catch(() => {});
  await page.getByLabel("New VM ID").fill(NEW_VMID);
  await page.getByLabel("New name").fill(NEW_NAME);
  await until("a pool chosen for the disks", () => page.getByLabel("Pool for the disks").inputValue(), (v) => v !== "");
  await page.getByRole("button", { name: "Restore", exact: true }).click();
  await page.getByText(`Restore ${id} to VM ${NEW_VMID}: done.`).waitFor({ timeout: 120_000 });
  await page.goto(`${BASE}/vms/${NEW_VMID}`);
  await page.getByText(NEW_NAME).first().waitFor();
});

await step("restore it over the VM itself: the dialog warns, the task succeeds", async () => {
  await page.goto(`${BASE}/vms/${VMID}?tab=backups`);
  await table().locator(`tr[data-backup="${id}"]`).getByRole("button", { name: "Restore…" }).click();
  const dlg = page.getByRole("dialog", { name: `Restore backup ${id} of VM ${VMID}` });
  await dlg.waitFor();
  await dlg.getByLabel(`Restore over VM ${VMID}`, { exact: false }).check();
  expect(await dlg.getByLabel("New VM ID").count() === 0, "the new VM ID field is still shown with replace");
  const note = await dlg.getByRole("note").innerText();
  expect(note.includes("must be stopped") && note.includes("lost"), `no warning: ${note}`);
  await dlg.getByRole("button", { name: `Replace VM ${VMID}`, exact: true }).click();
  await page.getByText(`Restore ${id} over VM ${VMID}: done.`).waitFor({ timeout: 120_000 });
});

await finish();
