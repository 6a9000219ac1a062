// End-to-end test of the web UI's cluster page and node list against a real keel-hostd
// (a member of a real corosync/Pacemaker cluster, or a standalone node). No mocks: the page is
// checked against what the same hostd's API answers.
//   KEEL_UI_URL            base URL of the UI (default https://127.0.0.1:8006)
//   KEEL_PASSWORD          root password (also KEEL_UI_PASSWORD; default /var/lib/keel/root-password)
//   KEEL_UI_USER           user name (default root)
//   KEEL_EXPECT_STANDALONE 1: the node is not clustered; assert the empty state instead
//   KEEL_EXPECT_NODES      comma list of the members the page must show (exactly these)
//   KEEL_EXPECT_OFFLINE    comma list of those expected offline/unclean (default: none)
//   KEEL_EXPECT_QUORATE    1/0 (default 1)
//   KEEL_EXPECT_CLUSTER    the cluster name (optional)
//   KEEL_EXPECT_VIP        the floating management address ADDRESS/PREFIX (optional; else
//                          the card must say none is set)
//   KEEL_EXPECT_QDEVICE    the QDevice's host (optional; else the card must say none is
//                          configured); with a host its vote must be shown as the API counts it
//   KEEL_SKIP_REFRESH_CHECK 1: skip the 10 s auto-refresh check (a second run in one lab)
//   KEEL_EXPECT_FINGERPRINT the answering node's certificate fingerprint (optional; when set,
//                          the join command must carry exactly it)
//   KEEL_FENCE_TEST_NODE   a member to fence for real from the page (optional; not the answering node):
//                          the dialog needs its name typed, the task must succeed and the member's
//                          last fence test must then show "Passed"
// On a cluster, the Verify panel is run and must list exactly what GET /cluster/verify answers.
// The Storage page's Cluster pools section must match GET /cluster/storage-pools (or say the node
// is standalone), and its Create dialog must show the API's refusal of a missing device and, for
// an iscsi-gfs2 pool, check the CHAP secret's length, send the LUN and show the API's refusal.
// With the list (GET only) faked to hold a drbd-gfs2 pool in split brain, the health must say so
// and the Resolve split brain dialog must gate its button, POST the node chosen and show the real
// API's refusal (no such pool; 409 on a standalone node).
//   KEEL_FORBIDDEN_TEXT    comma list of strings (fence secrets) that must not appear in the page
//   KEEL_UI_SHOTS          screenshot directory (default e2e/artifacts/shots; docs/screenshots on purpose)
//   CHROMIUM               browser binary (default /usr/bin/chromium)
// Runs from inside a network namespace too: it needs only the URL and a local chromium.
// Prints "N passed, N failed" last; exits non-zero on any failure. Failure screenshots go to
// e2e/artifacts/; docs screenshots: cluster.png (clustered) or cluster-standalone.png.
import { chromium } from "playwright-core";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const env = process.env;
const BASE = (env.KEEL_UI_URL ?? "https://127.0.0.1:8006").replace(/\/$/, "");
const USER = env.KEEL_UI_USER ?? "root";
const PASSWORD = env.KEEL_PASSWORD ?? env.KEEL_UI_PASSWORD ?? readFileSync("/var/lib/keel/root-password", "utf8").trim();
const list = (s) => (s ?? "").split(",").map((x) => x.trim()).filter(Boolean);
const truthy = (s, dflt) => s === undefined || s === "" ? dflt : !/^(0|false|no)$/i.test(s);
const STANDALONE = truthy(env.KEEL_EXPECT_STANDALONE, false);
const EXPECT_NODES = list(env.KEEL_EXPECT_NODES);
const EXPECT_OFFLINE = list(env.KEEL_EXPECT_OFFLINE);
const EXPECT_QUORATE = truthy(env.KEEL_EXPECT_QUORATE, true);
const EXPECT_CLUSTER = env.KEEL_EXPECT_CLUSTER || null;
const EXPECT_FP = env.KEEL_EXPECT_FINGERPRINT || null;
const FORBIDDEN = list(env.KEEL_FORBIDDEN_TEXT);
const FENCE_TEST_NODE = env.KEEL_FENCE_TEST_NODE || null;
const EXPECT_VIP = env.KEEL_EXPECT_VIP || null;
const EXPECT_QDEVICE = env.KEEL_EXPECT_QDEVICE || null;
// KEEL_FENCE_CHANGE="NODE:PARAMS": change NODE's device from the page to the agent it has, with
// PARAMS (name=value lines separated by ";"): first with a misspelt name (refused, nothing
// changed), then as given (the fenceadd task runs). The netns lab gives the device it has.
const FENCE_CHANGE = env.KEEL_FENCE_CHANGE || null;
const ARTIFACTS = join(here, "artifacts");
const SHOTS = env.KEEL_UI_SHOTS ?? join(ARTIFACTS, "shots");
mkdirSync(ARTIFACTS, { recursive: true });
mkdirSync(SHOTS, { recursive: true });

const userDir = mkdtempSync(join(tmpdir(), "keel-ui-cluster-"));
const browser = await chromium.launchPersistentContext(userDir, {
  executablePath: env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  ignoreHTTPSErrors: true,
  viewport: { width: 1280, height: 800 },
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const page = browser.pages()[0] ?? await browser.newPage();
page.setDefaultTimeout(20_000);
const pageErrors = [];
page.on("pageerror", (e) => pageErrors.push(String(e)));

let passed = 0, failed = 0, broken = false;
const ctx = {};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.log(...a);

async function step(name, fn, { critical = true } = {}) {
  if (broken) { failed++; log(`FAIL ${name} (skipped: an earlier step failed)`); return; }
  const t0 = Date.now();
  try {
    await fn();
    passed++;
    log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
  } catch (e) {
    failed++;
    if (critical) broken = true;
    log(`FAIL ${name}: ${e?.message?.split("\n")[0] ?? e}`);
    const f = join(ARTIFACTS, `cluster-${name.replace(/[^a-z0-9]+/gi, "-").toLowerCase()}.png`);
    await page.screenshot({ path: f, fullPage: true }).catch(() => {});
    log(`     screenshot: ${f}`);
  }
}
function expect(cond, msg) { if (!cond) throw new Error(msg); }
const sameSet = (a, b) => a.length === b.length && [...a].sort().join() === [...b].sort().join();

/** Call the API from the page (the UI's session cookie and CSRF token). */
async function api(method, path) {
  return page.evaluate(async ([method, path]) => {
    const r = await fetch(`/api/v1${path}`, { method, headers: { CSRFPreventionToken: sessionStorage.getItem("keel.csrf") ?? "" } });
    const text = await r.text();
    let body = text; try { body = JSON.parse(text); } catch { /* text */ }
    return { status: r.status, body };
  }, [method, path]);
}
async function clusterStatus() {
  const r = await api("GET", "/cluster/status");
  expect(r.status === 200, `GET /cluster/status answered ${r.status}: ${JSON.stringify(r.body).slice(0, 300)}`);
  return r.body;
}
const sidebarNodes = () => page.getByRole("group", { name: "Nodes" }).locator("button[data-node]");

await step("log in", async () => {
  await page.goto(`${BASE}/cluster`);
  await page.getByLabel("User name").fill(USER);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(/\/cluster$/);
  await page.getByRole("heading", { level: 1, name: /^Cluster/ }).waitFor();
  ctx.local = await page.evaluate(() => sessionStorage.getItem("keel.node"));
  ctx.status = await clusterStatus();
  log(`     answering node ${ctx.local}; API says clustered=${ctx.status.clustered} quorate=${ctx.status.quorate} ` +
    `votes=${ctx.status.total_votes}/${ctx.status.expected_votes} members=${ctx.status.members.map((m) => `${m.name}:${m.online ? "online" : "offline"}`).join(",")}`);
  expect(ctx.status.clustered === !STANDALONE, `API: clustered=${ctx.status.clustered}, expected ${!STANDALONE}`);
});

if (STANDALONE) {
  await step("standalone node: the cluster page explains how to form a cluster", async () => {
    await page.getByText("This node is not in a cluster").waitFor();
    const cmd = (await page.getByTestId("init-command").textContent())?.trim() ?? "";
    expect(/^keel cluster init\b/.test(cmd), `init command shown: ${cmd}`);
    await page.getByText("keel join …").waitFor();
    expect(await page.getByRole("table", { name: "Cluster members" }).count() === 0, "no members table on a standalone node");
    expect(await page.getByRole("button", { name: "Create join token" }).count() === 0, "no join token on a standalone node");
    expect(await page.getByRole("alert").count() === 0, `no error shown: ${await page.getByRole("alert").allTextContents()}`);
    await sleep(300);
    await page.screenshot({ path: join(SHOTS, "cluster-standalone.png") });
  });

  await step("node list shows the local node alone, online", async () => {
    const buttons = sidebarNodes();
    await buttons.first().waitFor();
    const names = await buttons.evaluateAll((bs) => bs.map((b) => b.dataset.node));
    expect(sameSet(names, [ctx.local]), `sidebar nodes ${names} = [${ctx.local}]`);
    expect(await buttons.first().getAttribute("data-state") === "online", "local node shown online");
    expect((await page.getByTestId("current-node").textContent()) === ctx.local, "header names the local node");
  });
} else {
  await step("cluster page shows the expected members and quorum", async () => {
    const s = ctx.status;
    if (EXPECT_CLUSTER) expect(s.name === EXPECT_CLUSTER, `API cluster name ${s.name} = ${EXPECT_CLUSTER}`);
    await page.getByRole("heading", { name: `Cluster ${s.name}` }).waitFor();
    const table = page.getByRole("table", { name: "Cluster members" });
    await table.waitFor();
    const want = EXPECT_NODES.length ? EXPECT_NODES : s.members.map((m) => m.name);
    expect(sameSet(s.members.map((m) => m.name), want), `API members ${s.members.map((m) => m.name)} = ${want}`);
    // The table follows the engines' state; poll it until it matches (membership may be settling).
    let shown = [];
    for (let i = 0; i < 20; i++) {
      shown = await table.locator("tbody tr").evaluateAll((rs) => rs.map((r) => ({ node: r.dataset.node, state: r.dataset.state })));
      const ok = sameSet(shown.map((r) => r.node), want) &&
        shown.every((r) => EXPECT_OFFLINE.includes(r.node) ? r.state !== "online" : r.state === "online");
      if (ok) break;
      await sleep(1000);
    }
    expect(sameSet(shown.map((r) => r.node), want), `members shown ${JSON.stringify(shown)} = ${want}`);
    for (const r of shown) {
      const wantOnline = !EXPECT_OFFLINE.includes(r.node);
      expect((r.state === "online") === wantOnline, `${r.node} shown ${r.state}, expected ${wantOnline ? "online" : "offline/unclean"}`);
    }
    const quorum = (await page.getByTestId("quorum").textContent())?.trim();
    expect(quorum === (EXPECT_QUORATE ? "Quorate" : "Not quorate"), `quorum shown: ${quorum}`);
    const now = await clusterStatus();
    expect(now.quorate === EXPECT_QUORATE, `API quorate=${now.quorate}, expected ${EXPECT_QUORATE}`);
    const votes = (await page.getByTestId("votes").textContent())?.trim() ?? "";
    expect(votes.startsWith(`${now.total_votes} of ${now.expected_votes} expected vote`), `votes shown "${votes}" vs API ${now.total_votes}/${now.expected_votes}`);
    if (now.dc) await page.locator(".card", { hasText: "Designated controller" }).getByText(now.dc, { exact: true }).waitFor();
    log(`     shown: ${quorum}, ${votes}; members ${shown.map((r) => `${r.node}:${r.state}`).join(", ")}`);
  });

  await step("the floating address card shows the address and its node as the API does", async () => {
    const card = page.getByRole("generic", { name: "Floating address" }).or(page.locator('.card[aria-label="Floating address"]')).first();
    await card.waitFor();
    if (!EXPECT_VIP) {
      await card.getByText("keel cluster vip set").waitFor();
      return;
    }
    await card.getByTestId("vip").getByText(EXPECT_VIP, { exact: true }).waitFor();
    const v = await page.evaluate(async () => (await fetch("/api/v1/cluster/vip")).json());
    expect(v.address === EXPECT_VIP && v.running_on, `API: ${JSON.stringify(v)}`);
    await card.getByTestId("vip-node").getByText(v.running_on, { exact: true }).waitFor({ timeout: 10_000 });
  });

  await step("the QDevice card shows it and its vote as the API does", async () => {
    const card = page.locator('.card[aria-label="QDevice"]');
    await card.waitFor();
    const q = (await clusterStatus()).qdevice;
    if (!EXPECT_QDEVICE) {
      expect(q && !q.configured, `API qdevice: ${JSON.stringify(q)}`);
      await card.getByText("None.").waitFor();
      return;
    }
    expect(q && q.configured && q.host === EXPECT_QDEVICE && q.votes === 1, `API qdevice: ${JSON.stringify(q)}`);
    await card.getByTestId("qdevice-host").getByText(EXPECT_QDEVICE, { exact: true }).waitFor();
    await card.getByTestId("qdevice-vote").getByText(`vote 1 · ${q.algorithm}`).waitFor({ timeout: 10_000 });
  });

  await step("fence devices are listed with secrets only as set", async () => {
    const r = await api("GET", "/cluster/fencing");
    expect(r.status === 200, `GET /cluster/fencing answered ${r.status}`);
    const devices = Array.isArray(r.body) ? r.body : (r.body.devices ?? []);
    if (!devices.length) { await page.getByText("No fence devices").waitFor(); return; }
    const table = page.getByRole("table", { name: "Fence devices" });
    await table.waitFor();
    for (const d of devices) {
      const row = table.locator(`tr[data-device="${d.id}"]`);
      await row.waitFor();
      for (const k of d.secret_keys) {
        const dd = row.locator("dt", { hasText: k }).locator("xpath=following-sibling::dd[1]");
        expect((await dd.textContent())?.trim() === "set", `secret ${d.id}.${k} shown as "set"`);
      }
    }
    const html = await page.content();
    for (const f of FORBIDDEN) expect(!html.includes(f), `a forbidden string (fence secret) appears in the page`);
    log(`     ${devices.length} fence device(s): ${devices.map((d) => `${d.id}→${d.node}`).join(", ")}`);
  });

  if (FENCE_CHANGE) {
    const [fnode, fparams] = [FENCE_CHANGE.slice(0, FENCE_CHANGE.indexOf(":")), FENCE_CHANGE.slice(FENCE_CHANGE.indexOf(":") + 1)];
    await step(`change the fence device of ${fnode} from the page: a bad parameter refused, then the fenceadd task`, async () => {
      const before = await api("GET", "/cluster/fencing");
      const dev = before.body.find((d) => d.node === fnode);
      expect(dev, `${fnode} has a device: ${JSON.stringify(before.body)}`);
      const table = page.getByRole("table", { name: "Fence devices" });
      await table.getByRole("button", { name: `Change the fence device of ${fnode}` }).click();
      const dialog = page.getByRole("dialog", { name: `Change the fence device of ${fnode}` });
      await dialog.waitFor();
      // the agent it has, preselected (a program of its own: "another fence agent")
      expect(await dialog.getByLabel("Agent program").inputValue() === dev.agent, `the program field shows ${dev.agent}`);
      // and the action it has (the API shows no other parameter of an agent's own)
      const shown = await dialog.getByLabel(/^Parameters/).inputValue();
      expect(shown === (dev.params.action ? `action=${dev.params.action}\n` : ""), `the Parameters field starts as ${JSON.stringify(shown)}`);
      const lines = fparams.split(";").join("\n");
      const [first] = fparams.split(";")[0].split("=");
      await dialog.getByLabel(/^Parameters/).fill(lines.replace(`${first}=`, `${first.replace(/_/g, "")}=`));
      await dialog.getByRole("button", { name: "Save device" }).click();
      const err = dialog.getByRole("alert");
      await err.waitFor({ timeout: 30_000 });
      const msg = (await err.textContent()) ?? "";
      expect(msg.includes(`params.${first.replace(/_/g, "")}`), `the refusal names the parameter: ${msg}`);
      const same = await api("GET", "/cluster/fencing");
      expect(JSON.stringify(same.body) === JSON.stringify(before.body), "the refused change changed the devices");
      log(`     refused: ${msg.slice(0, 160)}`);
      await dialog.getByLabel(/^Parameters/).fill(lines);
      const t0 = Date.now();
      await dialog.getByRole("button", { name: "Save device" }).click();
      await dialog.getByRole("alert").waitFor({ state: "detached", timeout: 10_000 });
      const outcome = await Promise.race([
        dialog.waitFor({ state: "detached", timeout: 120_000 }).then(() => null),
        dialog.locator(".alert-error").waitFor({ timeout: 120_000 }).then(() => dialog.locator(".alert-error").textContent()),
      ]);
      expect(outcome === null, `fenceadd failed: ${outcome}`);
      const here = (await clusterStatus()).local_node;
      const tasks = await api("GET", `/nodes/${encodeURIComponent(here)}/tasks?limit=20`);
      // the page's task, not the CLI's fence add of the lab's start
      const t = (Array.isArray(tasks.body) ? tasks.body : [])
        .find((x) => x.kind === "fenceadd" && x.target === fnode && x.start_time * 1000 >= t0 - 5_000);
      expect(t && t.state === "ok", `the fenceadd task of ${fnode}: ${JSON.stringify(t)}`);
      const after = await api("GET", "/cluster/fencing");
      const d2 = after.body.find((d) => d.node === fnode);
      expect(d2 && d2.agent === dev.agent && d2.last_test === null, `${fnode}'s device after the change: ${JSON.stringify(d2)}`);
      log(`     ${fnode}'s device replaced from the page in ${((Date.now() - t0) / 1000).toFixed(1)}s (task ${t.upid})`);
    });
  }

  await step("sidebar lists every member with its online state", async () => {
    const want = EXPECT_NODES.length ? EXPECT_NODES : ctx.status.members.map((m) => m.name);
    const buttons = sidebarNodes();
    let got = [];
    for (let i = 0; i < 15; i++) {
      got = await buttons.evaluateAll((bs) => bs.map((b) => ({ node: b.dataset.node, state: b.dataset.state })));
      if (sameSet(got.map((g) => g.node), want) && got.every((g) => (g.state === "online") !== EXPECT_OFFLINE.includes(g.node))) break;
      await sleep(1000);
    }
    expect(sameSet(got.map((g) => g.node), want), `sidebar nodes ${JSON.stringify(got)} = ${want}`);
    for (const g of got) expect((g.state === "online") !== EXPECT_OFFLINE.includes(g.node), `sidebar: ${g.node} ${g.state}`);
  });

  await step("create a join token and show the exact join command", async () => {
    await page.getByRole("button", { name: "Create join token" }).click();
    const region = page.getByRole("region", { name: "Join token" });
    await region.waitFor();
    const token = (await region.getByTestId("join-token").textContent())?.trim() ?? "";
    const cmd = (await region.getByTestId("join-command").textContent())?.trim() ?? "";
    const expiry = (await region.getByTestId("join-expiry").textContent()) ?? "";
    expect(token.length >= 16, `token shown (${token.length} chars)`);
    expect(/expires in /.test(expiry), `expiry in the future: ${expiry}`);
    // The address: this node's API as the cluster records it (GET /cluster/nodes), else the URL's.
    const nodes = await api("GET", "/cluster/nodes");
    expect(nodes.status === 200, `GET /cluster/nodes answered ${nodes.status}`);
    const recorded = (nodes.body ?? []).find((n) => n.name === ctx.local)?.api;
    const host = (recorded || new URL(BASE).host).replace(/:8006$/, "").replace(/^\[([0-9a-f:.]+)\]$/i, "$1");
    const m = cmd.match(/^keel join (\S+) --fingerprint (\S+) --token (\S+)$/);
    expect(m, `command shape: ${cmd}`);
    expect(m[1] === host, `address ${m[1]} = ${host}`);
    expect(m[3] === token, "the command carries the token shown");
    if (EXPECT_FP) expect(m[2] === EXPECT_FP, `fingerprint ${m[2]} = ${EXPECT_FP}`);
    else expect(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/.test(m[2]) || m[2] === "<FINGERPRINT>", `fingerprint form: ${m[2]}`);
    ctx.token = token;
    log(`     ${cmd.replace(token, "<token>")}; ${expiry}`);
    await page.evaluate(() => window.scrollTo(0, 0));
    await sleep(300);
    await page.screenshot({ path: join(SHOTS, "cluster.png"), fullPage: true });
  });

  await step("Verify lists the same findings as GET /cluster/verify, with severity", async () => {
    const region = page.getByRole("region", { name: "Verify" });
    await region.getByRole("button", { name: "Run verify" }).click();
    const summary = (await region.getByTestId("verify-summary").textContent({ timeout: 60_000 })) ?? "";
    const r = await api("GET", "/cluster/verify");
    expect(r.status === 200, `GET /cluster/verify answered ${r.status}: ${JSON.stringify(r.body).slice(0, 300)}`);
    expect(summary.includes(`${r.body.errors} error(s)`) || (r.body.errors === 0 && r.body.warnings === 0 && summary.includes("No findings")),
      `summary "${summary}" for ${r.body.errors} error(s), ${r.body.warnings} warning(s)`);
    const rows = await region.locator("tr[data-code]").evaluateAll((trs) =>
      trs.map((t) => `${t.dataset.severity} ${t.dataset.code} ${t.children[2].textContent}`));
    const want = r.body.findings.map((f) => `${f.severity} ${f.code} ${f.node ?? "—"}`);
    expect(JSON.stringify(rows.sort()) === JSON.stringify(want.sort()), `rows ${JSON.stringify(rows)} = ${JSON.stringify(want)}`);
    log(`     verify: ${summary.trim()}`);
  });

  if (FENCE_TEST_NODE) {
    await step(`fence test of ${FENCE_TEST_NODE} from the page`, async () => {
      const row = page.getByRole("table", { name: "Cluster members" }).locator(`tr[data-node="${FENCE_TEST_NODE}"]`);
      await row.getByRole("button", { name: `Test fencing of ${FENCE_TEST_NODE}` }).click();
      const dialog = page.getByRole("dialog", { name: `Test fencing of ${FENCE_TEST_NODE}` });
      await dialog.waitFor();
      const go = dialog.getByRole("button", { name: "Fence node" });
      expect(await go.isDisabled(), "Fence node is disabled before the name is typed");
      await dialog.getByLabel(/Type the node name/).fill(`${FENCE_TEST_NODE}x`);
      expect(await go.isDisabled(), "Fence node stays disabled with a wrong name");
      await dialog.getByLabel(/Type the node name/).fill(FENCE_TEST_NODE);
      const t0 = Date.now();
      await go.click();
      const outcome = await Promise.race([
        dialog.waitFor({ state: "detached", timeout: 240_000 }).then(() => null),
        dialog.locator(".alert-error").waitFor({ timeout: 240_000 }).then(() => dialog.locator(".alert-error").textContent()),
      ]);
      expect(outcome === null, `fence test failed: ${outcome}`);
      await row.locator(".fence-test .badge", { hasText: /^Passed/ }).waitFor({ timeout: 30_000 });
      log(`     ${FENCE_TEST_NODE} fenced from the page in ${((Date.now() - t0) / 1000).toFixed(1)}s; row: ${(await row.textContent())?.replace(/\s+/g, " ")}`);
    });
  }

  await step("another node selected in the sidebar scopes the VM list to it", async () => {
    const other = (EXPECT_NODES.length ? EXPECT_NODES : ctx.status.members.map((m) => m.name))
      .find((n) => n !== ctx.local && !EXPECT_OFFLINE.includes(n));
    if (!other) { log("     (no other online member: skipped)"); return; }
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Virtual machines" }).click();
    const resp = page.waitForResponse((r) => r.url().includes(`/api/v1/nodes/${encodeURIComponent(other)}/vms`));
    await sidebarNodes().and(page.locator(`[data-node="${other}"]`)).click();
    const r = await resp;
    expect(r.status() === 200, `GET /nodes/${other}/vms answered ${r.status()}`);
    expect((await page.getByTestId("current-node").textContent()) === other, "header names the selected node");
    await page.getByRole("table", { name: "Virtual machines" }).or(page.getByText(/No virtual machines|no VMs/i)).first().waitFor();
    await sidebarNodes().and(page.locator(`[data-node="${ctx.local}"]`)).click();
    expect((await page.getByTestId("current-node").textContent()) === ctx.local, "back on the local node");
  }, { critical: false });
}

await step("Storage page: the Cluster pools section answers like the API; a bad pool is refused", async () => {
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Storage" }).click();
  const region = page.getByRole("region", { name: "Cluster pools" });
  await region.waitFor();
  const r = await api("GET", "/cluster/storage-pools");
  if (STANDALONE) {
    expect(r.status === 409, `GET /cluster/storage-pools on a standalone node answered ${r.status}`);
    await region.getByTestId("cluster-pools-standalone").waitFor();
  } else {
    expect(r.status === 200, `GET /cluster/storage-pools answered ${r.status}: ${JSON.stringify(r.body).slice(0, 300)}`);
    if (r.body.length === 0) await region.getByText("No cluster pools").waitFor();
    for (const p of r.body) await region.getByRole("table", { name: `Nodes of ${p.name}` }).waitFor();
    for (const p of r.body.filter((p) => p.type === "iscsi-gfs2")) {
      const table = region.getByRole("table", { name: `Nodes of ${p.name}` });
      await table.getByRole("columnheader", { name: "iSCSI session" }).waitFor();
      expect(await table.getByRole("columnheader", { name: "Connection" }).count() === 0, `${p.name}: DRBD columns on an iscsi-gfs2 pool`);
      const { lun, target, portal } = p.iscsi;
      await region.getByText(`LUN ${lun} of ${target} at ${portal}`).first().waitFor();
    }
  }
  await region.getByRole("button", { name: "Create cluster pool…" }).click();
  const dialog = page.getByRole("dialog");
  await dialog.getByLabel("Name").fill("Bad_Name");
  await dialog.getByText("1-30 of a-z, 0-9 and '-', starting with a letter.").waitFor();
  await dialog.getByLabel("Name").fill("uitest");
  await dialog.getByLabel("Device (the same on both nodes)").fill("/dev/keel-no-such-disk");
  await dialog.getByRole("button", { name: "Create", exact: true }).click();
  const alert = dialog.getByRole("alert");
  await alert.waitFor();
  log(`     refused: ${(await alert.innerText()).slice(0, 200)}`);
  await dialog.getByRole("button", { name: "Cancel" }).click();
  const after = await api("GET", "/cluster/storage-pools");
  expect(!(after.status === 200 && after.body.some((p) => p.name === "uitest")), "a pool uitest was made");

  // iscsi-gfs2: the secret's length is checked in the page; the POST (held back a moment so that
  // its status line can be seen) carries the LUN and no device; the API refuses it
  await region.getByRole("button", { name: "Create cluster pool…" }).click();
  await dialog.getByLabel("Type").selectOption("iscsi-gfs2");
  expect(await dialog.getByLabel("Device (the same on both nodes)").count() === 0, "the Device field shows for iscsi-gfs2");
  await dialog.getByLabel("Name").fill("uitest2");
  await dialog.getByLabel("Portal", { exact: true }).fill("192.0.2.1");
  await dialog.getByLabel("Target IQN", { exact: true }).fill("iqn.2024-01.lab.keel:none");
  expect(await dialog.getByLabel("LUN", { exact: true }).inputValue() === "0", "the LUN does not default to 0");
  await dialog.getByLabel("CHAP user", { exact: true }).fill("ui");
  await dialog.getByLabel("CHAP secret", { exact: true }).fill("short");
  await dialog.getByText("12 to 255 characters", { exact: true }).waitFor();
  const create = dialog.getByRole("button", { name: "Create", exact: true });
  expect(await create.isDisabled(), "Create is enabled with a 5-character CHAP secret");
  const secret = "Ui-Test-Secret16";
  await dialog.getByLabel("CHAP secret", { exact: true }).fill(secret);
  await dialog.getByText("12 to 255 characters", { exact: true }).waitFor({ state: "detached" });
  expect(await create.isEnabled(), "Create is disabled with every field filled");
  let sent = null;
  const hold = async (route) => {
    if (route.request().method() === "POST") { sent = route.request().postDataJSON(); await sleep(1500); }
    await route.continue();
  };
  await page.route("**/api/v1/cluster/storage-pools", hold);
  try {
    await create.click();
    await dialog.getByRole("status", { name: "Pool task" }).getByText("logging every node in to the LUN…").waitFor();
    const alert2 = dialog.getByRole("alert");
    await alert2.waitFor({ timeout: 180_000 });
    const text = await alert2.innerText();
    log(`     iscsi-gfs2 refused: ${text.slice(0, 200)}`);
    expect(!text.includes(secret), "the refusal shows the CHAP secret");
  } finally {
    await page.unroute("**/api/v1/cluster/storage-pools", hold);
  }
  const want = { name: "uitest2", type: "iscsi-gfs2", wipe: false,
    iscsi: { portal: "192.0.2.1", target: "iqn.2024-01.lab.keel:none", lun: 0, chap_user: "ui", chap_secret: secret } };
  const norm = (o) => JSON.stringify(o, Object.keys({ ...o, ...o?.iscsi }).sort());
  expect(sent && norm(sent) === norm(want), `the page sent ${JSON.stringify({ ...sent, iscsi: { ...sent?.iscsi, chap_secret: "…" } })}`);
  await dialog.getByRole("button", { name: "Cancel" }).click();
  const after2 = await api("GET", "/cluster/storage-pools");
  expect(!(after2.status === 200 && after2.body.some((p) => p.name === "uitest2")), "a pool uitest2 was made");

  // drbd-gfs2 split brain: only the list is faked (GET), with a pool uitest-sb whose two nodes are
  // StandAlone and sb-b saw the split brain; the resolve POST goes to the real API, which refuses
  // it (no such pool; 409 on a standalone node) and the dialog shows that
  const sbNode = (node, split_brain) => ({
    node, device: "/dev/keel-sb", connection: "StandAlone", role: "Primary", peer_role: "Unknown", disk: "UpToDate",
    peer_disk: "DUnknown", sync_percent: null, mounted: false, size_bytes: null, free_bytes: null, error: null, split_brain,
  });
  // beside it an iscsi-gfs2 pool uitest-ext that node sb-c (joined later) does not reach: the
  // Extend dialog POSTs the node to the real API, which refuses it the same way
  const extNode = (node) => ({
    node, device: "/dev/disk/by-path/ip-192.0.2.9:3260-iscsi-iqn.2024-01.test:ext-lun-0", connection: null, role: null,
    peer_role: null, disk: null, peer_disk: null, sync_percent: null, logged_in: true, mounted: true,
    size_bytes: 1 << 30, free_bytes: 1 << 29, error: null,
  });
  const fakePools = [{ name: "uitest-sb", type: "drbd-gfs2", path: "/var/lib/keel/pools/uitest-sb", state: "ready",
    nodes: [sbNode("sb-a", false), sbNode("sb-b", true)] },
  { name: "uitest-ext", type: "iscsi-gfs2", path: "/var/lib/keel/pools/uitest-ext", state: "ready",
    iscsi: { portal: "192.0.2.9:3260", target: "iqn.2024-01.test:ext", lun: 0, chap_user: "u" },
    notes: ["sb-c joined after uitest-ext was made"], not_on: ["sb-c"], nodes: [extNode("sb-a"), extNode("sb-b")] }];
  const fakeList = async (route) => {
    if (route.request().method() !== "GET") return route.continue();
    await route.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify(fakePools) });
  };
  const resolveUrl = "**/api/v1/cluster/storage-pools/uitest-sb/resolve-split-brain";
  const extendUrl = "**/api/v1/cluster/storage-pools/uitest-ext/extend";
  const posts = [];
  const watch = async (route) => {
    const q = route.request();
    posts.push({ method: q.method(), path: new URL(q.url()).pathname, body: q.postData() });
    await route.continue();
  };
  await page.route("**/api/v1/cluster/storage-pools", fakeList);
  await page.route(resolveUrl, watch);
  await page.route(extendUrl, watch);
  try {
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Cluster" }).click();
    await page.getByRole("heading", { level: 1, name: /^Cluster/ }).waitFor();
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Storage" }).click();
    await region.waitFor();
    const table = region.getByRole("table", { name: "Nodes of uitest-sb" });
    await table.waitFor();
    const panel = region.locator(".panel", { has: page.getByRole("table", { name: "Nodes of uitest-sb" }) });
    const poolBadge = (await panel.locator("h3 .badge").textContent()) ?? "";
    expect(poolBadge.includes("split brain"), `uitest-sb's health badge: ${poolBadge}`);
    const badgeB = (await table.getByRole("row").filter({ hasText: "sb-b" }).locator(".badge").textContent()) ?? "";
    expect(badgeB.startsWith("split brain: both nodes changed the pool while apart"), `sb-b's health badge: ${badgeB}`);
    const badgeA = (await table.getByRole("row").filter({ hasText: "sb-a" }).locator(".badge").textContent()) ?? "";
    expect(badgeA.startsWith("StandAlone: not replicating"), `sb-a's health badge: ${badgeA}`);
    const open = panel.getByRole("button", { name: "Resolve split brain of uitest-sb", exact: true });
    expect(await open.count() === 1, "no Resolve split brain button for uitest-sb");
    expect((await open.textContent())?.trim() === "Resolve split brain…", `the button says ${await open.textContent()}`);
    expect(await open.isEnabled(), "Resolve split brain… is disabled for root");
    await open.click();
    const sbDialog = page.getByRole("dialog", { name: "Resolve split brain of uitest-sb" });
    await sbDialog.waitFor();
    const group = sbDialog.getByRole("group", { name: "Discard the changes made on" });
    await group.waitFor();
    const radios = group.getByRole("radio");
    expect(await radios.count() === 2, `${await radios.count()} radios, not one per node`);
    for (const n of ["sb-a", "sb-b"])
      expect(!(await group.getByRole("radio", { name: n, exact: true }).isChecked()), `${n} is chosen before any click`);
    const marked = (await sbDialog.locator("#sb-state-sb-b").textContent()) ?? "";
    const unmarked = (await sbDialog.locator("#sb-state-sb-a").textContent()) ?? "";
    expect(marked.includes("StandAlone") && marked.includes("split brain"), `sb-b's state: ${marked}`);
    expect(unmarked.includes("StandAlone") && !unmarked.includes("split brain"), `sb-a's state: ${unmarked}`);
    const resolve = sbDialog.getByRole("button", { name: "Resolve", exact: true });
    const sure = sbDialog.getByLabel(/I understand that the changes made on/);
    expect(await resolve.isDisabled(), "Resolve is enabled before a node is chosen");
    expect(await sure.isDisabled(), "the confirmation is enabled before a node is chosen");
    await group.getByRole("radio", { name: "sb-b", exact: true }).check();
    expect(await sure.isEnabled(), "the confirmation stays disabled once a node is chosen");
    expect(await resolve.isDisabled(), "Resolve is enabled before the confirmation is ticked");
    await sure.check();
    expect(await resolve.isEnabled(), "Resolve stays disabled with a node chosen and the confirmation ticked");
    const answered = page.waitForResponse((r) => r.request().method() === "POST" &&
      new URL(r.url()).pathname === "/api/v1/cluster/storage-pools/uitest-sb/resolve-split-brain");
    await resolve.click();
    const status = (await answered).status();
    const sbAlert = sbDialog.getByRole("alert");
    await sbAlert.waitFor({ timeout: 60_000 });
    log(`     resolve split brain refused (${status}): ${(await sbAlert.innerText()).slice(0, 200)}`);
    expect(status === (STANDALONE ? 409 : 404), `the API answered the resolve POST ${status}, expected ${STANDALONE ? 409 : 404}`);
    expect(posts.length === 1, `${posts.length} request(s) to the resolve URL: ${JSON.stringify(posts)}`);
    const [sentSb] = posts;
    expect(sentSb.method === "POST" && sentSb.path === "/api/v1/cluster/storage-pools/uitest-sb/resolve-split-brain",
      `the page sent ${sentSb.method} ${sentSb.path}`);
    expect(JSON.stringify(JSON.parse(sentSb.body ?? "null")) === JSON.stringify({ discard: "sb-b" }), `the page sent the body ${sentSb.body}`);
    await sbDialog.getByRole("button", { name: "Cancel" }).click();
    await sbDialog.waitFor({ state: "detached" });

    // extend: no button on the drbd-gfs2 pool, "Extend to sb-c…" on the iscsi-gfs2 one
    expect(await panel.getByRole("button", { name: /^Extend cluster pool/ }).count() === 0,
      "an Extend button on the drbd-gfs2 pool");
    const extPanel = region.locator(".panel", { has: page.getByRole("table", { name: "Nodes of uitest-ext" }) });
    const ext = extPanel.getByRole("button", { name: "Extend cluster pool uitest-ext", exact: true });
    expect(await ext.count() === 1, "no Extend button for uitest-ext");
    expect((await ext.textContent())?.trim() === "Extend to sb-c…", `the button says ${await ext.textContent()}`);
    await ext.click();
    const extDialog = page.getByRole("dialog", { name: "Extend uitest-ext" });
    await extDialog.waitFor();
    const box = extDialog.getByRole("checkbox", { name: "sb-c" });
    expect(await box.isChecked(), "sb-c is not ticked in the Extend dialog");
    const go = extDialog.getByRole("button", { name: "Extend", exact: true });
    await box.uncheck();
    expect(await go.isDisabled(), "Extend is enabled with no node ticked");
    await box.check();
    const extAnswered = page.waitForResponse((r) => r.request().method() === "POST" &&
      new URL(r.url()).pathname === "/api/v1/cluster/storage-pools/uitest-ext/extend");
    await go.click();
    const extStatus = (await extAnswered).status();
    const extAlert = extDialog.getByRole("alert");
    await extAlert.waitFor({ timeout: 60_000 });
    log(`     extend refused (${extStatus}): ${(await extAlert.innerText()).slice(0, 200)}`);
    expect(extStatus === (STANDALONE ? 409 : 404), `the API answered the extend POST ${extStatus}, expected ${STANDALONE ? 409 : 404}`);
    const sentExt = posts.find((x) => x.path.endsWith("/extend"));
    expect(sentExt && JSON.stringify(JSON.parse(sentExt.body ?? "null")) === JSON.stringify({ nodes: ["sb-c"] }),
      `the page sent ${JSON.stringify(sentExt)}`);
    await extDialog.getByRole("button", { name: "Cancel" }).click();
    await extDialog.waitFor({ state: "detached" });
  } finally {
    await page.unroute("**/api/v1/cluster/storage-pools", fakeList);
    await page.unroute(resolveUrl, watch);
    await page.unroute(extendUrl, watch);
  }
});

if (!truthy(env.KEEL_SKIP_REFRESH_CHECK, false)) await step("the page refreshes itself, and pauses while the tab is hidden", async () => {
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Cluster" }).click();
  await page.getByRole("heading", { level: 1, name: /^Cluster/ }).waitFor();
  let n = 0;
  const count = (r) => { if (r.url().endsWith("/api/v1/cluster/status")) n++; };
  page.on("request", count);
  await sleep(4000);
  const visible = n;
  expect(visible >= 1, `${visible} status requests in 4 s while visible (every 3 s)`);
  await page.evaluate(() => {
    Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
    document.dispatchEvent(new Event("visibilitychange"));
  });
  await sleep(500);
  n = 0;
  await sleep(5000);
  const hidden = n;
  await page.evaluate(() => {
    Object.defineProperty(document, "hidden", { configurable: true, get: () => false });
    document.dispatchEvent(new Event("visibilitychange"));
  });
  await sleep(1500);
  const resumed = n - hidden;
  page.off("request", count);
  log(`     status requests: ${visible} in 4 s visible, ${hidden} in 5 s hidden (poll every 3 s), ${resumed} within 1.5 s of showing again`);
  expect(hidden === 0, `no polling while hidden (${hidden} requests)`);
  expect(resumed >= 1, "polling resumes when the tab is shown");
}, { critical: false });

await step("log out", async () => {
  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByText("You are signed out").waitFor();
}, { critical: false });

if (pageErrors.length) { log(`page errors: ${pageErrors.join(" | ")}`); failed++; }
await browser.close();
rmSync(userDir, { recursive: true, force: true });
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
