import { useState } from "preact/hooks";
import { ApiError, runTask } from "../api";
import { Modal } from "../components";
import { FENCE_AGENTS, fenceAgentOf, parseKeyValues } from "../cluster";
import type { FenceDeviceInfo } from "../types";

/**
 * `POST /cluster/fencing`: create or replace the fence device of one node (the `fenceadd` task,
 * followed with its log: minutes for sbd and watchdog devices). Refusals (400/409) come before
 * anything changes and are shown as the API words them.
 */
export function FenceDeviceDialog({ nodes, node: initialNode, devices, fromRow, onClose }: {
  nodes: string[]; node: string; devices: FenceDeviceInfo[]; fromRow: boolean; onClose: () => void;
}) {
  const [node, setNode] = useState(initialNode);
  const current = devices.find((d) => d.node === node);
  // what a device has that the API shows, filled in when it is changed (parameters the agent
  // was given and secrets are not returned: they are given again)
  const prefill = (d: FenceDeviceInfo | undefined) => {
    const wire = d ? (d.agent === "fence_sbd" ? "sbd" : d.agent === "fence_watchdog" ? "watchdog" : d.agent) : "fence_ipmilan";
    const known = FENCE_AGENTS.some((a) => a.kind === wire);
    return {
      kind: known ? wire : "other",
      program: known ? "" : wire,
      params: d?.params?.action ? `action=${d.params.action}\n` : "",
      delay: d?.delay_base_s != null ? String(d.delay_base_s) : "",
    };
  };
  const first = prefill(current);
  const [kind, setKind] = useState(first.kind);
  const [program, setProgram] = useState(first.program);
  const [params, setParams] = useState(first.params);
  const [password, setPassword] = useState("");
  const [secrets, setSecrets] = useState("");
  const [delay, setDelay] = useState(first.delay);
  const [busy, setBusy] = useState(false);
  const [progress, setProgress] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const choose = (n: string) => {
    setNode(n);
    const p = prefill(devices.find((d) => d.node === n));
    setKind(p.kind); setProgram(p.program); setParams(p.params); setDelay(p.delay);
  };
  const info = FENCE_AGENTS.find((a) => a.kind === kind) ?? FENCE_AGENTS[0];
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    const a = fenceAgentOf(kind, program);
    if (!a.agent) { setError(a.error); return; }
    const p = parseKeyValues(params, "parameter");
    if (p.error) { setError(p.error); return; }
    // only what the chosen agent shows is sent
    const s = parseKeyValues(kind === "other" ? secrets : "", "secret", { trimValues: false });
    if (s.error) { setError(s.error); return; }
    const secretValues = info.password ? (password ? { password } : {}) : s.values;
    const d = kind === "watchdog" || delay.trim() === "" ? null : Number(delay);
    if (d !== null && (!Number.isInteger(d) || d < 0 || d > 120)) { setError("the fence delay is whole seconds, 0 to 120 (5 to 15 is typical for two nodes)"); return; }
    setBusy(true); setProgress(null);
    try {
      await runTask("POST", "/cluster/fencing",
        { node, agent: a.agent, params: p.values, secrets: secretValues, delay_base_s: d },
        (_t, lines) => { if (lines.length) setProgress(lines[lines.length - 1].line); });
      onClose();
    } catch (err) {
      const m = (err as Error).message;
      setError(err instanceof ApiError && err.field ? `${err.field}: ${m}` : m);
      setBusy(false);
    }
  };
  return (
    <Modal title={fromRow ? `Change the fence device of ${initialNode}` : "Add a fence device"} onClose={() => { if (!busy) onClose(); }}>
      <form onSubmit={submit}>
        {current && <div class="alert alert-warn">{node} has a device ({current.id}, {current.agent}): its whole configuration
          is replaced — give every parameter, the password and the delay again (the action and delay it has are filled
          in) — and its fence test no longer counts: test it again afterwards.</div>}
        <div class="field"><label for="fd-node">Node fenced by the device</label>
          <select id="fd-node" value={node} disabled={busy || fromRow} onChange={(e) => choose(e.currentTarget.value)}>
            {nodes.map((n) => <option value={n}>{n}</option>)}
          </select></div>
        <div class="field"><label for="fd-agent">Agent</label>
          <select id="fd-agent" value={kind} disabled={busy} onChange={(e) => setKind(e.currentTarget.value)}>
            {FENCE_AGENTS.map((a) => <option value={a.kind}>{a.label}</option>)}
          </select></div>
        {kind === "other" && <div class="field"><label for="fd-program">Agent program</label>
          <input id="fd-program" class="mono" value={program} placeholder="fence_virsh" disabled={busy} autoComplete="off"
            onInput={(e) => setProgram(e.currentTarget.value)} />
          <p class="small muted">Installed in /usr/sbin on every node that may run the device (all but {node}).</p></div>}
        <div class="field"><label for="fd-params">Parameters (name=value, one per line)</label>
          <textarea id="fd-params" class="mono" rows={4} value={params} disabled={busy} spellcheck={false}
            onInput={(e) => setParams(e.currentTarget.value)} />
          <p class="small muted">{info.params}</p></div>
        {info.password && <div class="field"><label for="fd-password">BMC password</label>
          <input id="fd-password" type="password" value={password} disabled={busy} autoComplete="new-password"
            onInput={(e) => setPassword(e.currentTarget.value)} />
          <p class="small muted">Kept only in Pacemaker's CIB-secrets files on the nodes, never in the CIB or a log.</p></div>}
        {kind === "other" && <div class="field"><label for="fd-secrets">Secrets (name=value, one per line)</label>
          <textarea id="fd-secrets" class="mono" rows={2} value={secrets} disabled={busy} spellcheck={false}
            onInput={(e) => setSecrets(e.currentTarget.value)} /></div>}
        {kind !== "watchdog" && <div class="field"><label for="fd-delay">Fence delay (seconds, optional)</label>
          <input id="fd-delay" type="text" inputMode="numeric" value={delay} disabled={busy}
            onInput={(e) => setDelay(e.currentTarget.value)} />
          <p class="small muted">In a two-node cluster, a delay on one node's device decides which node survives a split.</p></div>}
        {(kind === "sbd" || kind === "watchdog") && <p class="small muted">sbd is set up on every node and Pacemaker restarted
          where it started before it: this takes a few minutes, followed below.</p>}
        {busy && <p class="small muted" role="status">Configuring… {progress ?? ""}</p>}
        {error && <div class="alert alert-error" role="alert">{error}</div>}
        <div class="modal-actions">
          <button type="button" class="btn" onClick={onClose} disabled={busy}>Cancel</button>
          <button type="submit" class="btn btn-primary" disabled={busy}>{busy ? "Configuring…" : "Save device"}</button>
        </div>
      </form>
    </Modal>
  );
}
