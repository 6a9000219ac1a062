// End-to-end test of the Networks page against a real keel-hostd and libvirtd (no mocks): a NAT
// network that a running VM uses offers no Stop or Delete and says which VM holds it; a new NAT
// network is created through the dialog, its autostart turned off, stopped, started and deleted,
// each step checked in the table.
//   KEEL_NET_USED      a NAT network with a running VM on it (KEEL_NET_USED_VMID)
//   KEEL_NET_NEW       the name of the network to create (must not exist)
//   KEEL_NET_CIDR      its gateway address/prefix
// (and KEEL_UI_URL, KEEL_UI_PASSWORD, CHROMIUM: see harness.mjs)
import { BASE, env, expect, open, signIn } from "./harness.mjs";

const [USED, USED_VM, NEW, CIDR] = env("KEEL_NET_USED", "KEEL_NET_USED_VMID", "KEEL_NET_NEW", "KEEL_NET_CIDR");
const { page, step, finish } = await open("networks");
const row = (n) => page.getByRole("table", { name: "Networks" }).locator(`tr[data-network="${n}"]`);
const status = () => page.getByRole("status", { name: "Network task" });

await step("sign in and open Networks from the navigation", async () => {
  await signIn(page);
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Networks" }).click();
  await page.getByRole("heading", { name: "Networks" }).waitFor();
  await row(USED).waitFor();
  expect(page.url() === `${BASE}/networks`, `at ${page.url()}`);
});

await step("a network a running VM uses: Stop and Delete disabled, saying which VM", async () => {
  const r = row(USED);
  expect((await r.innerText()).includes(USED_VM), "the user VM is not listed");
  const stop = r.getByRole("button", { name: "Stop", exact: true });
  expect(await stop.isDisabled(), "Stop enabled on a network a running VM uses");
  expect((await stop.getAttribute("title") ?? "").includes(`${USED_VM} (`), `Stop title: ${await stop.getAttribute("title")}`);
  expect(await r.getByRole("button", { name: "Delete…" }).isDisabled(), "Delete enabled on a used network");
});

await step("create a NAT network through the dialog (a bad address refused first)", async () => {
  await page.getByRole("button", { name: "Create network…" }).click();
  await page.getByLabel("Name").fill(NEW);
  await page.getByLabel("Gateway address").fill("10.1.2.3");
  await page.getByText("Give the gateway address with its prefix").waitFor();
  expect(await page.getByRole("button", { name: "Create", exact: true }).isDisabled(), "Create enabled with a bad address");
  await page.getByLabel("Gateway address").fill(CIDR);
  await page.getByRole("button", { name: "Create", exact: true }).click();
  await status().getByText(`Create ${NEW}: done.`).waitFor({ timeout: 60_000 });
  await row(NEW).locator('td[data-active="true"]').waitFor();
  expect((await row(NEW).innerText()).includes(CIDR), "the address is not shown");
});

await step("autostart off, then stop and start it", async () => {
  const toggle = () => page.getByRole("button", { name: `Autostart ${NEW}` });
  expect(await toggle().getAttribute("aria-pressed") === "true", "autostart not on after create");
  await toggle().click();
  await status().getByText(`Autostart of ${NEW} off.`).waitFor();
  await page.locator(`tr[data-network="${NEW}"] button[aria-pressed="false"]`).waitFor();
  await row(NEW).getByRole("button", { name: "Stop", exact: true }).click();
  await status().getByText(`Stop ${NEW}: done.`).waitFor({ timeout: 60_000 });
  await row(NEW).locator('td[data-active="false"]').waitFor();
  expect(await toggle().getAttribute("aria-pressed") === "false", "autostart back on");
  await row(NEW).getByRole("button", { name: "Start", exact: true }).click();
  await status().getByText(`Start ${NEW}: done.`).waitFor({ timeout: 60_000 });
  await row(NEW).locator('td[data-active="true"]').waitFor();
});

await step("on a short window the dialog stays inside it and scrolls", async () => {
  await page.setViewportSize({ width: 1280, height: 360 });
  await page.getByRole("button", { name: "Create network…" }).click();
  const dlg = page.getByRole("dialog", { name: "Create a network" });
  await dlg.waitFor();
  const box = await dlg.boundingBox();
  expect(box && box.y >= 0 && box.y + box.height <= 360, `dialog box ${JSON.stringify(box)} outside a 360 px window`);
  const [sh, ch] = await dlg.evaluate((e) => [e.scrollHeight, e.clientHeight]);
  expect(sh > ch, `the dialog does not scroll (scrollHeight ${sh}, clientHeight ${ch})`);
  await dlg.getByRole("button", { name: "Cancel" }).click();
  await dlg.waitFor({ state: "detached" });
  await page.setViewportSize({ width: 1280, height: 800 });
});

await step("delete it with confirmation", async () => {
  await row(NEW).getByRole("button", { name: "Delete…" }).click();
  await page.getByRole("dialog", { name: `Delete network ${NEW}` }).getByRole("button", { name: "Delete", exact: true }).click();
  await status().getByText(`Delete ${NEW}: done.`).waitFor({ timeout: 60_000 });
  await row(NEW).waitFor({ state: "detached" });
});

await finish();
