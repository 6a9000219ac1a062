import { get, np } from "../api";
import { ErrorBox, Loading } from "../components";
import { usePoll } from "../hooks";
import type { AgentState, GuestAgentInfo } from "../types";

const STATE_LABEL: Record<AgentState, [string, string]> = {
  "ok": ["answering", "badge-ok"],
  "no-channel": ["no channel", "badge-off"],
  "not-running": ["VM not running", "badge-off"],
  "not-answering": ["not answering", "badge-warn"],
};

/** The VM summary's guest agent panel: state, host name, OS and the guest's addresses. */
export function GuestAgent({ vmid }: { vmid: number }) {
  const { data, error } = usePoll(() => get<GuestAgentInfo>(np(`/vms/${vmid}/agent`)), 5000, [vmid]);
  const [label, tone] = data ? STATE_LABEL[data.state] ?? [data.state, "badge-off"] : ["", ""];
  return (
    <div class="panel" aria-label="Guest agent">
      <h2>Guest agent</h2>
      <ErrorBox error={error} title="Cannot read the guest agent" />
      {!data && !error && <Loading what="guest agent" />}
      {data && (
        <dl class="kv">
          <dt>Agent</dt><dd><span class={`badge ${tone}`} data-agent-state={data.state}>{label}</span>
            {data.state !== "ok" && <div class="muted small">{data.message}</div>}</dd>
          {data.state === "ok" && <>
            <dt>Host name</dt><dd class="mono">{data.hostname ?? "—"}</dd>
            <dt>OS</dt><dd>{data.os?.pretty_name ?? data.os?.name ?? "—"}
              {data.os?.kernel_release && <span class="muted small"> (kernel {data.os.kernel_release})</span>}</dd>
            <dt>IP addresses</dt><dd>
              {data.interfaces.every((i) => i.addresses.length === 0) ? "—" : (
                <table class="table compact" aria-label="Guest addresses">
                  <thead><tr><th>Interface</th><th>MAC</th><th>Address</th></tr></thead>
                  <tbody>{data.interfaces.flatMap((i) => i.addresses.map((a) => (
                    <tr><td class="mono">{i.name}</td><td class="mono">{i.mac ?? "—"}</td><td class="mono">{a.address}/{a.prefix}</td></tr>
                  )))}</tbody>
                </table>
              )}</dd>
          </>}
        </dl>
      )}
    </div>
  );
}
