import { useEffect, useState } from "preact/hooks";
import { NOTICE_MS, takeFlash } from "../flash";
import { ApiError, get, notifyTask, np, post } from "../api";
import { Empty, ErrorBox, Loading, VmStateBadge } from "../components";
import { TemplateBadge } from "./Clone";
import { usePoll } from "../hooks";
import { usePermissions, whyNot } from "../access";
import { formatMib, formatUptime, powerAllowed, vmStateBadge } from "../logic";
import type { TaskRef, VmState, VmSummary } from "../types";

const STATES: VmState[] = ["running", "paused", "suspended", "shutdown", "stopped", "crashed", "unknown"];

export function VmList() {
  const { data, error, refresh } = usePoll(() => get<VmSummary[]>(np("/vms")), 2500);
  const noCreate = whyNot(usePermissions(), "VM.Allocate", "/vms");
  const [filter, setFilter] = useState("");
  const [stateFilter, setStateFilter] = useState("");
  const [selected, setSelected] = useState<Set<number>>(new Set());
  const [bulkMsg, setBulkMsg] = useState<{ ok: string[]; failed: string[] } | null>(null);
  // "VM 500 (web1) deleted." after the delete dialog came back here, for a few seconds
  const [flash, setFlashText] = useState<string | null>(() => takeFlash());
  useEffect(() => {
    if (!flash) return;
    const t = window.setTimeout(() => setFlashText(null), NOTICE_MS);
    return () => clearTimeout(t);
  }, [flash]);
  const vms = (data ?? []).filter((v) =>
    v.name.toLowerCase().includes(filter.trim().toLowerCase()) && (!stateFilter || v.state === stateFilter));
  const ids = vms.filter((v) => v.vmid !== null).map((v) => v.vmid!);
  const allSelected = ids.length > 0 && ids.every((i) => selected.has(i));
  const toggle = (id: number) => {
    const s = new Set(selected);
    s.has(id) ? s.delete(id) : s.add(id);
    setSelected(s);
  };
  const bulk = async (op: "start" | "shutdown" | "stop") => {
    const targets = (data ?? []).filter((v) => v.vmid !== null && selected.has(v.vmid));
    const ok: string[] = [];
    const failed: string[] = [];
    await Promise.all(targets.map(async (v) => {
      if (op === "start" && v.template) { failed.push(`${v.vmid} ${v.name}: is a template (clone it)`); return; }
      if (!powerAllowed(op, v.state)) { failed.push(`${v.vmid} ${v.name}: is ${v.state}`); return; }
      try {
        const r = await post<TaskRef>(np(`/vms/${v.vmid}/status/${op}`));
        notifyTask(r.upid);
        ok.push(`${v.vmid}`);
      } catch (e) { failed.push(`${v.vmid} ${v.name}: ${(e as ApiError).message}`); }
    }));
    setBulkMsg({ ok, failed });
    setTimeout(refresh, 800);
  };
  const nSel = [...selected].filter((i) => (data ?? []).some((v) => v.vmid === i)).length;
  return (
    <section aria-labelledby="vms-title">
      <div class="page-head">
        <h1 id="vms-title">Virtual machines</h1>
        <span class="spacer" />
        {noCreate
          ? <button type="button" class="btn btn-primary" disabled title={noCreate}>Create VM</button>
          : <a class="btn btn-primary" href="/vms/new">Create VM</a>}
      </div>
      <div class="toolbar" role="search">
        <div class="field-inline">
          <label for="vm-filter">Filter by name</label>
          <input id="vm-filter" type="search" value={filter} placeholder="e.g. web" onInput={(e) => setFilter(e.currentTarget.value)} />
        </div>
        <div class="field-inline">
          <label for="vm-state-filter">State</label>
          <select id="vm-state-filter" value={stateFilter} onChange={(e) => setStateFilter(e.currentTarget.value)}>
            <option value="">All states</option>
            {STATES.map((s) => <option value={s}>{vmStateBadge(s).label}</option>)}
          </select>
        </div>
        <span class="spacer" />
        <span class="muted small" aria-live="polite">{nSel ? `${nSel} selected` : ""}</span>
        <button type="button" class="btn" disabled={!nSel} onClick={() => bulk("start")}>Start selected</button>
        <button type="button" class="btn" disabled={!nSel} onClick={() => bulk("shutdown")}>Shut down selected</button>
        <button type="button" class="btn btn-danger-outline" disabled={!nSel} onClick={() => bulk("stop")}>Stop selected</button>
      </div>
      {flash && <div class="alert alert-info" role="status" data-testid="flash">{flash}</div>}
      {bulkMsg && (
        <div class={`alert ${bulkMsg.failed.length ? "alert-warn" : "alert-info"}`} role="status">
          {bulkMsg.ok.length > 0 && <div>Task started for VM {bulkMsg.ok.join(", ")}.</div>}
          {bulkMsg.failed.map((f) => <div>Skipped {f}</div>)}
          <button type="button" class="link-btn" onClick={() => setBulkMsg(null)}>Dismiss</button>
        </div>
      )}
      <ErrorBox error={error} title="Cannot list VMs" />
      {!data && !error && <Loading what="VMs" />}
      {data && data.length === 0 && (
        <Empty title="No virtual machines yet">
          <p>Upload an installer ISO on the <a href="/storage">Storage</a> page, then <a href="/vms/new">create a VM</a> that boots it.</p>
        </Empty>
      )}
      {data && data.length > 0 && (
        <table class="table" aria-label="Virtual machines">
          <thead>
            <tr>
              <th class="col-check"><input type="checkbox" aria-label="Select all shown VMs" checked={allSelected}
                onChange={() => setSelected(allSelected ? new Set() : new Set(ids))} /></th>
              <th>VM ID</th><th>Name</th><th>State</th><th class="num">vCPUs</th><th class="num">Memory</th><th class="num">Uptime</th>
            </tr>
          </thead>
          <tbody>
            {vms.map((v) => (
              <tr key={v.uuid}>
                <td class="col-check">{v.vmid !== null &&
                  <input type="checkbox" aria-label={`Select VM ${v.vmid} ${v.name}`} checked={selected.has(v.vmid)} onChange={() => toggle(v.vmid!)} />}</td>
                <td class="mono">{v.vmid ?? <span class="muted" title="Defined outside Keel: adopt it to manage it">—</span>}</td>
                <td>{v.vmid !== null ? <a href={`/vms/${v.vmid}`}>{v.name}</a> : <>{v.name} <span class="muted small">(not managed)</span></>}
                  {v.template && <> <TemplateBadge /> <a class="small" href={`/vms/${v.vmid}`} title="Open the template to clone it">Clone…</a></>}</td>
                <td><VmStateBadge state={v.state} /></td>
                <td class="num">{v.vcpus}</td>
                <td class="num">{formatMib(v.memory_mib)}</td>
                <td class="num">{v.state === "running" ? formatUptime(v.uptime_s) : "—"}</td>
              </tr>
            ))}
            {vms.length === 0 && <tr><td colSpan={7} class="muted center">No VM matches this filter. <button type="button" class="link-btn" onClick={() => { setFilter(""); setStateFilter(""); }}>Clear filters</button></td></tr>}
          </tbody>
        </table>
      )}
    </section>
  );
}
