import { useState } from "preact/hooks";
import { ApiError, runTask } from "../api";
import { Modal } from "../components";
import { FENCE_AGENTS, fenceAgentOf, parseKeyValues } from "../cluster";

/**
 * `POST /cluster/fencing`: create or replace the fence device of one node (the `fenceadd` task,
 * followed with its log: minutes for sbd and watchdog devices). Refusals (400/409) come before
 * anything changes and are shown as the API words them.
 */
export function FenceDeviceDialog({ nodes, node: initialNode, agent: initialAgent, replacing, onClose }: {
  nodes: string[]; node: string; agent?: string; replacing: boolean; onClose: () => void;
}) {
  const known = FENCE_AGENTS.some((a) => a.kind === initialAgent);
  const [node, setNode] = useState(initialNode);
  const [kind, setKind] = useState(initialAgent ? (known ? initialAgent : "other") : "fence_ipmilan");
  const [program, setProgram] = useState(initialAgent && !known ? initialAgent : "");
  const [params, setParams] = useState("");
  const [password, setPassword] = useState("");
  const [secrets, setSecrets] = useState("");
  const [delay, setDelay] = useState("");
  const [busy, setBusy] = useState(false);
  const [progress, setProgress] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const info = FENCE_AGENTS.find((a) => a.kind === kind) ?? FENCE_AGENTS[0];
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    const a = fenceAgentOf(kind, program);
    if (!a.agent) { setError(a.error); return; }
    const p = parseKeyValues(params, "parameter");
    if (p.error) { setError(p.error); return; }
    const s = parseKeyValues(info.password ? "" : secrets, "secret");
    if (s.error) { setError(s.error); return; }
    const secretValues = info.password ? (password ? { password } : {}) : s.values;
    const d = delay.trim() === "" ? null : Number(delay);
    if (d !== null && (!Number.isInteger(d) || d < 0 || d > 60)) { setError("the fence delay is whole seconds, 0 to 60"); return; }
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
    <Modal title={replacing ? `Change the fence device of ${initialNode}` : "Add a fence device"} onClose={() => { if (!busy) onClose(); }}>
      <form onSubmit={submit}>
        {replacing && <div class="alert alert-warn">The whole configuration of the device is replaced (give every parameter
          and the password again), and its fence test no longer counts: test it again afterwards.</div>}
        <div class="field"><label for="fd-node">Node fenced by the device</label>
          <select id="fd-node" value={node} disabled={busy || replacing} onChange={(e) => setNode(e.currentTarget.value)}>
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
          <input id="fd-delay" type="number" min={0} max={60} value={delay} disabled={busy}
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
