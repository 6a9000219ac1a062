// End-to-end test of the Backup jobs page and the Backups tab's Prune… dialog against a real
// keel-hostd (no mocks): create a job for a stopped VM through the dialog (a misspelled weekday
// refused before sending), run it now twice and see its last run ok with a next run shown;
// prune the VM's backups to the newest one (dry-run preview, then the task); edit the job's
// schedule; delete the job. Then the Backup targets section: add an sftp target through the
// "Add target…" dialog (a wrong host key fingerprint refused on its field, naming both keys;
// then added with the key the host presents pinned and shown); try an nfs target (a malformed
// export refused before sending; a well-formed one the server cannot mount refused with the
// mount's error in the dialog, and no target added).
//   KEEL_UI_URL          base URL (hostd serving ui/dist)
//   KEEL_UI_PASSWORD     root's password
//   KEEL_UI_VMID         a stopped VM with one small qcow2 disk and no backups
//   KEEL_BACKUP_TARGET   the name of a dir backup target on the node (the only one)
//   KEEL_JOB_ID          the job's id
//   KEEL_SFTP_LOCATION   user@127.0.0.1:PORT:/dir of an sshd the driver started
//   KEEL_SFTP_KEY        the private key file hostd authenticates with
//   KEEL_SFTP_FINGERPRINT that sshd's host key fingerprint (SHA256:…)
//   CHROMIUM             browser binary (default /usr/bin/chromium)
// Prints "N passed, N failed" last; exits non-zero on any failure (screenshots in e2e/artifacts/).
import { BASE, PASSWORD, env, expect, open } from "./harness.mjs";

const [VMID, TARGET, JOB, SFTP, SFTP_KEY, SFTP_FP] = env("KEEL_UI_VMID", "KEEL_BACKUP_TARGET", "KEEL_JOB_ID",
  "KEEL_SFTP_LOCATION", "KEEL_SFTP_KEY", "KEEL_SFTP_FINGERPRINT");
const { page, step, finish } = await open("backup-jobs");
page.on("dialog", (d) => d.accept()); // confirmations
const jobRow = () => page.getByRole("table", { name: "Backup jobs" }).locator(`tr[data-job="${JOB}"]`);

await step("sign in and open Backup jobs from the navigation", async () => {
  await page.goto(`${BASE}/login`);
  await page.getByLabel("User name").fill("root");
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  const nav = page.getByRole("navigation", { name: "Main" });
  await nav.waitFor();
  await nav.getByRole("link", { name: "Backup jobs" }).click();
  await page.getByRole("heading", { name: "Backup jobs" }).waitFor();
  await page.getByText("No backup jobs on this node.").waitFor();
});

await step("create a job: a misspelled weekday refused before sending, then saved", async () => {
  await page.getByRole("button", { name: "New job…" }).click();
  const dlg = page.getByRole("dialog", { name: "New backup job" });
  await dlg.waitFor();
  await dlg.getByLabel("Job ID", { exact: true }).fill(JOB);
  await dlg.getByLabel("VMs", { exact: true }).fill(VMID);
  await dlg.getByLabel("Target", { exact: true }).selectOption(TARGET);
  await dlg.getByLabel("Schedule", { exact: true }).fill("mon..fry 21:00");
  await dlg.getByText('"fry" is not a weekday').waitFor();
  expect(await dlg.getByRole("button", { name: "Save" }).isDisabled(), "Save enabled with a bad schedule");
  await dlg.getByLabel("Schedule", { exact: true }).fill("sat 02:30");
  await dlg.getByLabel("Keep last", { exact: true }).fill("2");
  await dlg.getByRole("button", { name: "Save" }).click();
  await dlg.waitFor({ state: "detached" });
  await jobRow().waitFor();
  const text = await jobRow().innerText();
  expect(text.includes("sat 02:30") && text.includes(VMID) && text.includes("last 2") && text.includes("never"), `row: ${text}`);
  const next = await jobRow().locator("td[data-next]").innerText();
  expect(/\d{2}:\d{2}/.test(next), `no next run shown: ${next}`);
});

await step("run it now twice: last run ok", async () => {
  for (let i = 0; i < 2; i++) {
    await jobRow().getByRole("button", { name: "Run now" }).click();
    await page.getByText(`Backup job ${JOB}: done.`).waitFor({ timeout: 60_000 });
    // the second run's end is checked by the two backups the next step waits for
  }
  await jobRow().locator('td[data-last="ok"]').waitFor();
});

await step("prune the VM's backups to the newest: preview, then the task", async () => {
  await page.goto(`${BASE}/vms/${VMID}?tab=backups`);
  const rows = page.getByRole("table", { name: "Backups" }).locator("tbody tr");
  await page.waitForFunction(() => document.querySelectorAll('table[aria-label="Backups"] tbody tr').length === 2, null, { timeout: 15_000 });
  await page.getByRole("button", { name: "Prune…" }).click();
  const dlg = page.getByRole("dialog", { name: `Prune backups of VM ${VMID}` });
  await dlg.waitFor();
  await dlg.getByLabel("Keep last", { exact: true }).fill("1");
  await dlg.getByRole("button", { name: "Preview" }).click();
  const prev = dlg.getByRole("table", { name: "Prune preview" });
  await prev.waitFor();
  expect(await prev.locator('tr[data-prune="keep"]').count() === 1, "preview: not one kept");
  expect(await prev.locator('tr[data-prune="remove"]').count() === 1, "preview: not one removed");
  expect((await prev.innerText()).includes("keep-last"), "preview gives no reason");
  await dlg.getByRole("button", { name: "Prune (remove 1)" }).click();
  await dlg.waitFor({ state: "detached", timeout: 30_000 });
  await page.waitForFunction(() => document.querySelectorAll('table[aria-label="Backups"] tbody tr').length === 1, null, { timeout: 15_000 });
  expect(await rows.count() === 1, "not one backup left");
});

await step("edit the schedule and make it a verify job, run it, then delete the job", async () => {
  await page.goto(`${BASE}/backup-jobs`);
  await jobRow().getByRole("button", { name: "Edit…" }).click();
  const dlg = page.getByRole("dialog", { name: `Edit backup job ${JOB}` });
  await dlg.waitFor();
  await dlg.getByLabel("Schedule", { exact: true }).fill("daily");
  await dlg.getByLabel("What it does", { exact: true }).selectOption("verify");
  expect(await dlg.getByLabel("Keep last", { exact: true }).count() === 0, "retention fields shown for a verify job");
  await dlg.getByRole("button", { name: "Save" }).click();
  await dlg.waitFor({ state: "detached" });
  await page.waitForFunction((j) => document.querySelector(`tr[data-job="${j}"]`)?.textContent?.includes("daily"), JOB);
  const text = await jobRow().innerText();
  expect(text.includes("verify") && !text.includes("last 2"), `row of the verify job: ${text}`);
  await jobRow().getByRole("button", { name: "Run now" }).click();
  await page.getByText(`Backup job ${JOB}: done.`).waitFor({ timeout: 60_000 });
  await jobRow().getByRole("button", { name: "Delete" }).click();
  await page.getByText("No backup jobs on this node.").waitFor();
});

await step("add an sftp target: a wrong host key refused naming both keys, then pinned and shown", async () => {
  const section = page.getByRole("region", { name: "Backup targets" });
  await section.getByRole("table", { name: "Backup targets" }).locator(`tr[data-target="${TARGET}"]`).waitFor();
  await section.getByRole("button", { name: "Add target…" }).click();
  const dlg = page.getByRole("dialog", { name: "Add backup target" });
  await dlg.waitFor();
  await dlg.getByLabel("Kind", { exact: true }).selectOption("sftp");
  await dlg.getByLabel("Target name", { exact: true }).fill(`${TARGET}-sftp`);
  await dlg.getByLabel("Remote location", { exact: true }).fill("not-a-location");
  await dlg.getByText("user@host[:port]:/absolute/path").waitFor();
  expect(await dlg.getByRole("button", { name: "Add target" }).isDisabled(), "submit enabled with a bad location");
  await dlg.getByLabel("Remote location", { exact: true }).fill(SFTP);
  await dlg.getByLabel("Private key file", { exact: true }).fill(SFTP_KEY);
  const wrong = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
  await dlg.getByLabel("Host key fingerprint (optional)", { exact: true }).fill(wrong);
  await dlg.getByRole("button", { name: "Add target" }).click();
  const err = dlg.getByText(`expected ${wrong}, seen ${SFTP_FP}`);
  await err.waitFor({ timeout: 30_000 });
  await dlg.getByLabel("Host key fingerprint (optional)", { exact: true }).fill("");
  await dlg.getByRole("button", { name: "Add target" }).click();
  await dlg.waitFor({ state: "detached", timeout: 30_000 });
  await page.getByText(`host key pinned: ${SFTP_FP}`).waitFor();
  const row = section.locator(`tr[data-target="${TARGET}-sftp"]`);
  await row.waitFor();
  const text = await row.innerText();
  expect(text.includes("sftp") && text.includes(SFTP_FP) && text.includes("ok"), `row: ${text}`);
  expect(/\d+(\.\d+)? (B|KiB|MiB|GiB|TiB)/.test(text), `no free space in the row: ${text}`);
});

await step("an nfs target: a malformed export refused before sending, an unmountable one refused by the server", async () => {
  const section = page.getByRole("region", { name: "Backup targets" });
  const posts = [];
  const onRequest = (r) => { if (r.method() === "POST" && r.url().includes("/backup-targets")) posts.push(r.url()); };
  page.on("request", onRequest);
  try {
    await section.getByRole("button", { name: "Add target…" }).click();
    const dlg = page.getByRole("dialog", { name: "Add backup target" });
    await dlg.waitFor();
    await dlg.getByLabel("Kind", { exact: true }).selectOption("nfs");
    expect(await dlg.getByLabel("Private key file", { exact: true }).count() === 0, "sftp fields shown for an nfs target");
    await dlg.getByLabel("Target name", { exact: true }).fill(`${TARGET}-nfs`);
    await dlg.getByLabel("NFS export", { exact: true }).fill("nas");
    await dlg.getByText("not an NFS export").waitFor();
    expect(await dlg.getByRole("button", { name: "Add target" }).isDisabled(), "submit enabled with a bad export");
    await dlg.getByLabel("NFS export", { exact: true }).press("Enter");
    expect(posts.length === 0, `sent with a bad export: ${posts.join(", ")}`);
    // nothing listens on 127.0.0.1:2049 here: the server's mount fails and nothing is saved
    await dlg.getByLabel("NFS export", { exact: true }).fill("127.0.0.1:/keel-e2e-nfs");
    await dlg.getByRole("button", { name: "Add target" }).click();
    await dlg.getByText("NFS export 127.0.0.1:/keel-e2e-nfs").waitFor({ timeout: 60_000 });
    expect(posts.length === 1, `not one request sent: ${posts.join(", ")}`);
    await dlg.getByRole("button", { name: "Cancel" }).click();
    await dlg.waitFor({ state: "detached" });
  } finally {
    page.off("request", onRequest);
  }
  await section.getByRole("table", { name: "Backup targets" }).locator(`tr[data-target="${TARGET}"]`).waitFor();
  expect(await section.locator(`tr[data-target="${TARGET}-nfs"]`).count() === 0, "the unmountable nfs target was added");
});

await finish();
