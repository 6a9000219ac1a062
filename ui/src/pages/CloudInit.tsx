// The VM page's Cloud-init tab: the settings Keel writes into the VM's NoCloud seed (host name,
// user, password hash, SSH keys, an address per NIC, DNS, or your own user-data). Saving PUTs the
// VM's spec; hostd rewrites the seed at once and the guest applies it at its next boot
// (docs/cloud-init.md).
import { useEffect, useState } from "preact/hooks";
import { ApiError, get, np } from "../api";
import { usePermissions, whyNot } from "../access";
import { updateSpec, type Msg } from "./Hotplug";
import type { CloudInitSeed, CloudInitSpec, IpConfig, VmConfig } from "../types";

/** The form's fields, all strings (what the inputs hold). */
export interface CiForm {
  enabled: boolean;
  hostname: string;
  user: string;
  password_hash: string;
  ssh_keys: string;
  /** One per NIC: "dhcp", or an address with its gateway. */
  nics: { mode: "dhcp" | "static"; address: string; gateway: string }[];
  dns: string;
  search: string;
  user_data: string;
  pool: string;
}

export function toForm(ci: CloudInitSpec | undefined, nics: number): CiForm {
  const ip = ci?.ipconfig ?? [];
  return {
    enabled: !!ci,
    hostname: ci?.hostname ?? "",
    user: ci?.user ?? "",
    password_hash: ci?.password_hash ?? "",
    ssh_keys: (ci?.ssh_keys ?? []).join("\n"),
    nics: Array.from({ length: nics }, (_, i) => {
      const c = ip[i];
      return c && c.mode === "static"
        ? { mode: "static" as const, address: c.address, gateway: c.gateway ?? "" }
        : { mode: "dhcp" as const, address: "", gateway: "" };
    }),
    dns: (ci?.dns ?? []).join(", "),
    search: (ci?.search ?? []).join(", "),
    user_data: ci?.user_data ?? "",
    pool: ci?.pool ?? "",
  };
}

const list = (s: string) => s.split(/[\s,]+/).map((x) => x.trim()).filter(Boolean);

/** The settings to send (undefined: cloud-init off). Empty fields are left out; trailing DHCP
 *  NICs too (a NIC without an entry uses DHCP). */
export function fromForm(f: CiForm): CloudInitSpec | undefined {
  if (!f.enabled) return undefined;
  const ci: CloudInitSpec = {};
  if (f.hostname.trim()) ci.hostname = f.hostname.trim();
  if (f.user.trim()) ci.user = f.user.trim();
  if (f.password_hash.trim()) ci.password_hash = f.password_hash.trim();
  const keys = f.ssh_keys.split("\n").map((k) => k.trim()).filter((k) => k && !k.startsWith("#"));
  if (keys.length) ci.ssh_keys = keys;
  const ip: IpConfig[] = f.nics.map((n) => n.mode === "static"
    ? { mode: "static", address: n.address.trim(), ...(n.gateway.trim() ? { gateway: n.gateway.trim() } : {}) }
    : { mode: "dhcp" });
  while (ip.length && ip[ip.length - 1].mode === "dhcp") ip.pop();
  if (ip.length) ci.ipconfig = ip;
  if (list(f.dns).length) ci.dns = list(f.dns);
  if (list(f.search).length) ci.search = list(f.search);
  if (f.user_data.trim()) ci.user_data = f.user_data;
  if (f.pool.trim()) ci.pool = f.pool.trim();
  return ci;
}

export function CloudInit({ vmid, config, onChanged }: { vmid: number; config?: VmConfig; onChanged: () => void }) {
  const perms = usePermissions();
  const no = whyNot(perms, "VM.Config", `/vms/${vmid}`);
  const nics = config?.spec.nics ?? [];
  const [f, setF] = useState<CiForm>(toForm(config?.spec.cloud_init, nics.length));
  const [msg, say] = useState<Msg>(null);
  const [busy, setBusy] = useState(false);
  const [seed, setSeed] = useState<CloudInitSeed | string | null>(null);
  const showSeed = async () => {
    try {
      setSeed(await get<CloudInitSeed>(np(`/vms/${vmid}/cloud-init`)));
    } catch (e) {
      setSeed((e as ApiError).message);
    }
  };
  // The page re-reads the configuration now and then: reset the form only when the saved
  // settings (or the NICs) changed, never under the operator's typing.
  const saved = JSON.stringify([config?.spec.cloud_init ?? null, nics.map((n) => n.mac ?? "")]);
  useEffect(() => { setF(toForm(config?.spec.cloud_init, nics.length)); }, [saved]);
  if (!config) return null;
  const set = (p: Partial<CiForm>) => setF({ ...f, ...p });
  const setNic = (i: number, p: Partial<CiForm["nics"][number]>) =>
    set({ nics: f.nics.map((n, j) => (j === i ? { ...n, ...p } : n)) });
  const save = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    const spec = { ...config.spec, cloud_init: fromForm(f) };
    if (!spec.cloud_init) delete spec.cloud_init;
    await updateSpec(vmid, "Save cloud-init", spec, say);
    setBusy(false);
    onChanged();
  };
  const id = (s: string) => `ci-${s}`;
  return (
    <form class="panel" onSubmit={save} aria-label="Cloud-init settings">
      <h2>Cloud-init</h2>
      <p class="muted small">
        Keel writes these settings into a NoCloud seed (a small ISO labelled <span class="mono">cidata</span>, attached as a second CD-ROM).
        The guest's cloud-init applies them at its next boot. Passwords are given as a hash only
        (<span class="mono">mkpasswd -m sha-512</span> or <span class="mono">openssl passwd -6</span>).
      </p>
      <div class="field">
        <label><input type="checkbox" checked={f.enabled} onChange={(e) => set({ enabled: e.currentTarget.checked })} /> Use cloud-init</label>
      </div>
      {f.enabled && <>
        <div class="grid-2">
          <div class="field"><label for={id("hostname")}>Host name</label>
            <input id={id("hostname")} value={f.hostname} placeholder={config.spec.name} onInput={(e) => set({ hostname: e.currentTarget.value })} /></div>
          <div class="field"><label for={id("user")}>User</label>
            <input id={id("user")} value={f.user} placeholder="the image's default user" onInput={(e) => set({ user: e.currentTarget.value })} /></div>
          <div class="field"><label for={id("pw")}>Password hash</label>
            <input id={id("pw")} class="mono" value={f.password_hash} placeholder="$6$… (empty: password login locked)" onInput={(e) => set({ password_hash: e.currentTarget.value })} /></div>
          <div class="field"><label for={id("pool")}>Seed pool</label>
            <input id={id("pool")} value={f.pool} placeholder="the first disk's pool" onInput={(e) => set({ pool: e.currentTarget.value })} /></div>
        </div>
        <div class="field"><label for={id("keys")}>SSH public keys (one per line)</label>
          <textarea id={id("keys")} class="mono" rows={3} value={f.ssh_keys} onInput={(e) => set({ ssh_keys: e.currentTarget.value })} /></div>
        {nics.length === 0 && <p class="muted small">This VM has no NIC: add one on the Hardware tab to give it an address.</p>}
        {f.nics.map((n, i) => (
          <fieldset class="field" aria-label={`net${i} address`}>
            <legend>net{i} {nics[i]?.mac ? <span class="mono small muted">{nics[i].mac}</span> : null}</legend>
            <select aria-label={`net${i} mode`} value={n.mode} onChange={(e) => setNic(i, { mode: e.currentTarget.value as "dhcp" | "static" })}>
              <option value="dhcp">DHCP</option><option value="static">Static</option>
            </select>
            {n.mode === "static" && <>
              <input aria-label={`net${i} address/prefix`} placeholder="192.0.2.10/24" value={n.address} onInput={(e) => setNic(i, { address: e.currentTarget.value })} />
              <input aria-label={`net${i} gateway`} placeholder="gateway (optional)" value={n.gateway} onInput={(e) => setNic(i, { gateway: e.currentTarget.value })} />
            </>}
          </fieldset>
        ))}
        <div class="grid-2">
          <div class="field"><label for={id("dns")}>DNS servers</label>
            <input id={id("dns")} value={f.dns} placeholder="192.0.2.53, 2001:db8::53" onInput={(e) => set({ dns: e.currentTarget.value })} /></div>
          <div class="field"><label for={id("search")}>Search domains</label>
            <input id={id("search")} value={f.search} onInput={(e) => set({ search: e.currentTarget.value })} /></div>
        </div>
        <div class="field"><label for={id("ud")}>Your own user-data (replaces user, password and keys)</label>
          <textarea id={id("ud")} class="mono" rows={4} value={f.user_data} placeholder="#cloud-config" onInput={(e) => set({ user_data: e.currentTarget.value })} /></div>
      </>}
      {msg && <div class={`alert alert-${msg.tone}`} role={msg.tone === "error" ? "alert" : "status"} aria-label="Cloud-init task">{msg.text}</div>}
      <div class="toolbar">
        <button type="submit" class="btn btn-primary" disabled={!!no || busy} title={no ?? "Save; the guest applies the settings at its next boot"}>
          {busy ? "Saving…" : "Save"}
        </button>
        {config.spec.cloud_init && <button type="button" class="btn" onClick={showSeed}
          title="The files Keel writes into the seed ISO from the saved settings">Show the seed</button>}
      </div>
      {typeof seed === "string" && <div class="alert alert-error" role="alert">{seed}</div>}
      {seed && typeof seed !== "string" && (
        <div aria-label="Cloud-init seed" role="region">
          <p class="small muted">{seed.pool}/{seed.volume}, instance-id <span class="mono">{seed.instance_id}</span></p>
          {([["meta-data", seed.meta_data], ["user-data", seed.user_data], ["network-config", seed.network_config]] as const).map(([n, t]) => (
            <><h3 class="small">{n}</h3><pre class="mono small" aria-label={n}>{t}</pre></>
          ))}
        </div>
      )}
    </form>
  );
}
