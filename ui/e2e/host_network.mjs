// End-to-end test of the Host network page against a real keel-hostd (no mocks) whose
// networkd directory is a scratch copy of an installed node's files: the table lists the live
// interfaces and Keel's bond/bridge (absent on this host); a VLAN with a bad id is refused before
// sending; a VLAN on bond0 is staged and its diff shown (the new .netdev, `VLAN=` added to the
// bond's .network); the staged change is DISCARDED. Never applies: this is the CI host.
//   KEEL_HN_LIVE   an interface that exists on this host (listed live)
// (and KEEL_UI_URL, KEEL_UI_PASSWORD, CHROMIUM: see harness.mjs)
import { BASE, env, expect, open, signIn } from "./harness.mjs";

const [LIVE] = env("KEEL_HN_LIVE");
const { page, step, finish } = await open("host_network");
const table = () => page.getByRole("table", { name: "Host interfaces" });
const row = (n) => table().locator(`tr[data-iface="${n}"]`);
const status = () => page.getByRole("status", { name: "Host network status" });

await step("sign in and open Host network from the navigation", async () => {
  await signIn(page);
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Host network" }).click();
  await page.getByRole("heading", { name: "Host network" }).waitFor();
  await row("bond0").waitFor();
  expect(page.url() === `${BASE}/host-network`, `at ${page.url()}`);
});

await step("the table lists live interfaces and Keel's configured ones", async () => {
  await row(LIVE).waitFor();
  expect(await row("bond0").getAttribute("data-managed") === "true", "bond0 not marked as Keel's");
  expect((await row("vmbr0").innerText()).includes("ports bond0"), await row("vmbr0").innerText());
  expect((await row("bond0.100").innerText()).includes("VLAN 100 on bond0"), await row("bond0.100").innerText());
  expect(await page.getByTestId("no-pending").isVisible(), "something is pending before the test staged anything");
});

await step("a bad VLAN id is refused before sending", async () => {
  await page.getByLabel("Kind").selectOption("vlan");
  await page.getByLabel("Parent").selectOption("bond0");
  await page.getByLabel("VLAN id").fill("5000");
  await page.getByText("The VLAN id is 1 to 4094.").waitFor();
  expect(await page.getByRole("button", { name: "Stage", exact: true }).isDisabled(), "Stage enabled with VLAN id 5000");
});

await step("the API's refusal is shown: a bridge on a NIC that bond0 holds", async () => {
  await page.getByLabel("Kind").selectOption("bridge");
  await page.getByLabel("Name").fill("vmbr9");
  await page.getByLabel("Ports").fill("ens3");
  await page.getByRole("button", { name: "Stage", exact: true }).click();
  await status().getByText("already enslaved to `bond0`").waitFor();
  expect(await page.getByTestId("no-pending").isVisible(), "a refused change was staged");
});

await step("stage a VLAN on bond0 and see the diff of the networkd files", async () => {
  await page.getByLabel("Kind").selectOption("vlan");
  await page.getByLabel("Name").fill("");
  await page.getByLabel("Parent").selectOption("bond0");
  await page.getByLabel("VLAN id").fill("200");
  await page.getByRole("button", { name: "Stage", exact: true }).click();
  await status().getByText("Stage VLAN 200 on bond0: done.").waitFor();
  const diff = page.getByTestId("pending-diff");
  await diff.waitFor();
  const text = await diff.innerText();
  expect(text.includes("+++ ") && text.includes("30-bond0.200.netdev"), text);
  expect(text.includes("+VLAN=bond0.200"), text);
  expect(text.includes("+Id=200"), text);
  expect(await page.locator(".diff-add").count() > 3, "no added lines marked");
});

await step("discard the staged change (never applied on the CI host)", async () => {
  await page.getByRole("button", { name: "Discard", exact: true }).click();
  await status().getByText("Discard network changes: done.").waitFor();
  await page.getByTestId("no-pending").waitFor();
});

await finish();
