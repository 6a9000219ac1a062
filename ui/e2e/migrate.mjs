// End-to-end test of the Migrate dialog on the VM page against a real keel-hostd.
//   KEEL_UI_URL        base URL of the UI
//   KEEL_UI_PASSWORD   root password
//   KEEL_MIGRATE_VMID  vmid of a VM on the node the session lands on
//   KEEL_MIGRATE_TARGET  (optional) a cluster member to migrate to: the success path (the
//                      dialog offers it, shows the task's progress and the VM's new node);
//                      without it the node is standalone and the dialog shows the server's
//                      refusal (no other member) after its own check of a bad bandwidth.
//   CHROMIUM           browser binary (default /usr/bin/chromium)
// Prints "N passed, N failed" last; exits non-zero on any failure (screenshots in e2e/artifacts/).
import { BASE, env, expect, open, signIn, until } from "./harness.mjs";

const [VMID] = env("KEEL_MIGRATE_VMID");
const TARGET = process.env.KEEL_MIGRATE_TARGET ?? "";
const { page, step, finish } = await open("migrate");

await step("log in and open the Migrate dialog of the VM", async () => {
  await signIn(page);
  await page.goto(`${BASE}/vms/${VMID}`);
  await page.getByRole("heading", { level: 1, name: new RegExp(`^${VMID} · `) }).waitFor();
  await page.getByRole("button", { name: "Migrate…" }).click();
  await page.getByRole("dialog").waitFor();
});

if (!TARGET) {
  await step("standalone: no member offered, a bad bandwidth caught, the server's refusal shown", async () => {
    const dlg = page.getByRole("dialog");
    await dlg.getByTestId("migrate-no-members").waitFor();
    await dlg.getByLabel("Target node").fill("elsewhere");
    await dlg.getByLabel(/Bandwidth limit/).fill("0");
    await dlg.getByRole("button", { name: "Migrate", exact: true }).click();
    await dlg.getByRole("alert").filter({ hasText: "Bandwidth: use a whole number" }).waitFor();
    await dlg.getByLabel(/Bandwidth limit/).fill("");
    await dlg.getByRole("button", { name: "Migrate", exact: true }).click();
    const alert = dlg.getByRole("alert").filter({ hasText: "not in a cluster" });
    await alert.waitFor();
    expect((await alert.textContent()).includes("no other node to migrate to"), await alert.textContent());
  });
} else {
  await step(`migrate to ${TARGET}: progress, then the VM runs there`, async () => {
    const dlg = page.getByRole("dialog");
    const sel = dlg.getByLabel("Target node");
    await sel.waitFor();
    // the candidates arrive after the dialog opens (the cluster's members)
    await until("the target offered", () => sel.inputValue(), (v) => v === TARGET, 15_000);
    await dlg.getByRole("button", { name: "Migrate", exact: true }).click();
    await dlg.getByTestId("migrate-done").waitFor({ timeout: 120_000 });
    expect((await dlg.getByTestId("migrate-done").textContent()).includes(TARGET), "done names the target");
  });
}

await finish();
