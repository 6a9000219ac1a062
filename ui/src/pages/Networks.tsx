import { useState } from "preact/hooks";
import { ApiError, currentNode, get, np, put } from "../api";
import { Empty, ErrorBox, Loading, Modal } from "../components";
import { usePoll } from "../hooks";
import { usePermissions, whyNot } from "../access";
import { runShown } from "./Snapshots";

import type { NetworkInfo } from "../types";

type Msg = { tone: "info" | "error"; text: string } | null;

/** Why a network cannot be stopped or deleted right now (null: it can). */
export function networkBlock(n: NetworkInfo, op: "stop" | "delete"): string | null {
  if (n.kind === "host_bridge") return "A host bridge is configured on the host, not through libvirt";
  const users = op === "stop" ? n.used_by.filter((u) => u.running) : n.used_by;
  if (users.length === 0) return null;
  const list = users.map((u) => `${u.vmid} (${u.name})`).join(", ");
  return op === "stop" ? `Running VMs use it: ${list}` : `VMs use it: ${list}; remove their NICs first`;
}

/** Client-side checks of the create form (the server checks again, with subnet overlaps). */
export function networkFormError(name: string, kind: string, cidr: string, bridge: string): string | null {
  if (!/^[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,49}$/.test(name)) return "The name may hold 1-50 letters, digits, '-', '_', '.' and '+' (not starting with '.').";
  if (kind === "nat" && !/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(cidr.trim())) return "Give the gateway address with its prefix, e.g. 10.99.0.1/24.";
  if (kind === "bridge" && !bridge.trim()) return "Choose the host bridge the network uses.";
  return null;
}

export function Networks() {
  const nets = usePoll(() => get<NetworkInfo[]>(np("/networks")), 10000);
  const perms = usePermissions();
  const noModify = whyNot(perms, "Sys.Modify", `/nodes/${currentNode()}`);
  const [msg, setMsg] = useState<Msg>(null);
  const [busy, setBusy] = useState(false);
  const [creating, setCreating] = useState(false);
  const [deleting, setDeleting] = useState<NetworkInfo | null>(null);
  const act = async (what: string, method: string, path: string, body?: unknown) => {
    setBusy(true);
    await runShown(what, method, path, body, setMsg);
    setBusy(false);
    nets.refresh();
  };
  const autostart = async (n: NetworkInfo, on: boolean) => {
    setBusy(true);
    try {
      await put(np(`/networks/${encodeURIComponent(n.name)}`), { autostart: on });
      setMsg({ tone: "info", text: `Autostart of ${n.name} ${on ? "on" : "off"}.` });
    } catch (e) {
      setMsg({ tone: "error", text: `Autostart of ${n.name} refused: ${(e as ApiError).message}` });
    }
    setBusy(false);
    nets.refresh();
  };
  const bridges = (nets.data ?? []).filter((n) => n.kind === "host_bridge").map((n) => n.name);
  return (
    <section aria-labelledby="net-title">
      <div class="page-head"><h1 id="net-title">Networks</h1></div>
      <div class="toolbar" role="toolbar" aria-label="Network actions">
        <button type="button" class="btn btn-primary" disabled={busy || !!noModify} title={noModify ?? "Create a libvirt network"}
          onClick={() => setCreating(true)}>Create network…</button>
      </div>
      {msg && <div class={`alert alert-${msg.tone}`} role={msg.tone === "error" ? "alert" : "status"} aria-label="Network task">{msg.text}</div>}
      <ErrorBox error={nets.error} title="Cannot list networks" />
      {!nets.data && !nets.error && <Loading what="networks" />}
      {nets.data && nets.data.length === 0 && <Empty title="No networks">Create a NAT network above, or a bridge on the host.</Empty>}
      {nets.data && nets.data.length > 0 && (
        <table class="table" aria-label="Networks">
          <thead><tr><th>Name</th><th>Kind</th><th>Bridge</th><th>Address</th><th>State</th><th>Autostart</th><th>Used by</th><th><span class="sr-only">Actions</span></th></tr></thead>
          <tbody>{nets.data.map((n) => {
            const host = n.kind === "host_bridge";
            const noStop = networkBlock(n, "stop");
            const noDel = networkBlock(n, "delete");
            return (
              <tr data-network={n.name}>
                <td class="mono">{n.name}</td>
                <td>{n.kind.replace("_", " ")}</td>
                <td class="mono small">{n.bridge ?? "—"}</td>
                <td class="mono small">{n.cidr ?? "—"}</td>
                <td data-active={String(n.active)}>{n.active ? <span class="badge badge-ok">Active</span> : <span class="badge badge-off">Inactive</span>}</td>
                <td>{host ? <span class="muted small">host</span> : (
                  <button type="button" class="btn btn-sm" aria-pressed={n.autostart} aria-label={`Autostart ${n.name}`}
                    disabled={busy || !!noModify} title={noModify ?? `Click to turn autostart ${n.autostart ? "off" : "on"} (start when the host boots)`}
                    onClick={() => autostart(n, !n.autostart)}>{n.autostart ? "On" : "Off"}</button>)}
                </td>
                <td class="small">{n.used_by.length ? n.used_by.map((u, i) => (
                  <>{i > 0 && ", "}<a href={`/vms/${u.vmid}`}>{u.vmid}</a>{u.running ? "" : <span class="muted"> (stopped)</span>}</>
                )) : <span class="muted">—</span>}</td>
                <td class="actions nowrap">{!host && (n.active ? (
                  <button type="button" class="btn btn-sm" disabled={busy || !!noModify || !!noStop} title={noModify ?? noStop ?? "Stop the network (its bridge and DHCP go away)"}
                    onClick={() => act(`Stop ${n.name}`, "POST", np(`/networks/${encodeURIComponent(n.name)}/stop`))}>Stop</button>
                ) : (
                  <button type="button" class="btn btn-sm" disabled={busy || !!noModify} title={noModify ?? "Start the network"}
                    onClick={() => act(`Start ${n.name}`, "POST", np(`/networks/${encodeURIComponent(n.name)}/start`))}>Start</button>
                ))}{" "}
                  {!host && <button type="button" class="btn btn-sm btn-danger-outline" disabled={busy || !!noModify || !!noDel}
                    title={noModify ?? noDel ?? "Delete the network"} onClick={() => setDeleting(n)}>Delete…</button>}
                </td>
              </tr>
            );
          })}</tbody>
        </table>
      )}
      {creating && <CreateNetwork bridges={bridges} onClose={() => setCreating(false)}
        onSubmit={(body) => { setCreating(false); act(`Create ${body.name}`, "POST", np("/networks"), body); }} />}
      {deleting && (
        <Modal title={`Delete network ${deleting.name}`} onClose={() => setDeleting(null)}>
          <p>The libvirt network <code>{deleting.name}</code> is stopped and its definition removed.</p>
          <div class="modal-actions">
            <button type="button" class="btn" onClick={() => setDeleting(null)}>Cancel</button>
            <button type="button" class="btn btn-danger" onClick={() => {
              const n = deleting;
              setDeleting(null);
              act(`Delete ${n.name}`, "DELETE", np(`/networks/${encodeURIComponent(n.name)}`));
            }}>Delete</button>
          </div>
        </Modal>
      )}
    </section>
  );
}

function CreateNetwork({ bridges, onClose, onSubmit }: {
  bridges: string[]; onClose: () => void;
  onSubmit: (b: { name: string; kind: string; cidr?: string; bridge?: string; autostart: boolean }) => void;
}) {
  const [name, setName] = useState("");
  const [kind, setKind] = useState("nat");
  const [cidr, setCidr] = useState("");
  const [bridge, setBridge] = useState(bridges[0] ?? "");
  const [auto, setAuto] = useState(true);
  const err = name || cidr ? networkFormError(name, kind, cidr, bridge) : null;
  return (
    <Modal title="Create a network" onClose={onClose}>
      <form aria-label="Create network" onSubmit={(e) => {
        e.preventDefault();
        if (!err && name) onSubmit(kind === "nat"
          ? { name, kind, cidr: cidr.trim(), autostart: auto }
          : { name, kind, bridge, autostart: auto });
      }}>
        <div class="field"><label for="net-name">Name</label>
          <input id="net-name" value={name} onInput={(e) => setName(e.currentTarget.value)} /></div>
        <div class="field"><label for="net-kind">Kind</label>
          <select id="net-kind" value={kind} onChange={(e) => setKind(e.currentTarget.value)}>
            <option value="nat">NAT (libvirt bridge, DHCP, masquerade)</option>
            <option value="bridge">On a host bridge</option>
          </select></div>
        {kind === "nat" ? (
          <div class="field"><label for="net-cidr">Gateway address</label>
            <input id="net-cidr" value={cidr} placeholder="10.99.0.1/24" onInput={(e) => setCidr(e.currentTarget.value)} />
            <p class="muted small">DHCP hands out the upper half of the subnet; the lower half is for static addresses.</p></div>
        ) : (
          <div class="field"><label for="net-bridge">Host bridge</label>
            <select id="net-bridge" value={bridge} onChange={(e) => setBridge(e.currentTarget.value)}>
              {bridges.map((b) => <option value={b}>{b}</option>)}
            </select></div>
        )}
        <label class="check"><input type="checkbox" id="net-auto" checked={auto} onChange={(e) => setAuto(e.currentTarget.checked)} /> Start when the host boots</label>
        {err && <div class="field-error" role="alert">{err}</div>}
        <div class="modal-actions">
          <button type="button" class="btn" onClick={onClose}>Cancel</button>
          <button type="submit" class="btn btn-primary" disabled={!name || !!err}>Create</button>
        </div>
      </form>
    </Modal>
  );
}
